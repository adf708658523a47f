//! The executor's login to the test server: the planner's Connect / Reconnect with the
//! engine's backoff, `--reconnect-for`, and the counters of connects and state lost.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Exec, Fail};
use crate::engine::bump;
use crate::plan::ConnectPlan;
use crate::resilience::ProdState;
use crate::wire::{WireConn, WireError};

/// A connection-level error (the connection cannot be used any more).
pub(super) fn is_unreachable(e: &WireError) -> bool {
    match e {
        WireError::Closed => true,
        WireError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::NotConnected
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

impl Exec {
    /// Log in (the planner's Connect / Reconnect), with the engine's backoff.
    pub(super) async fn connect(&mut self, p: ConnectPlan) -> Result<(), Fail> {
        self.drop_conn();
        if self.gave_up {
            return Err(Fail::Lost(
                "target_unavailable: stopped reconnecting (--reconnect-for)".into(),
            ));
        }
        if let Some(t) = self.retry_at {
            let back = self.ctx.up_epoch.load(Ordering::Relaxed) != self.down_epoch;
            if Instant::now() < t && !back {
                return Err(self
                    .retry_err
                    .clone()
                    .unwrap_or_else(|| Fail::Lost("target_unavailable".into())));
            }
        }
        let ctx = self.ctx.clone();
        let cfg = &ctx.cfg;
        let params = p.connect_params(&cfg.target);
        let addr = format!("{}:{}", cfg.target.host, cfg.target.port);
        let r = tokio::time::timeout(
            cfg.connect_timeout,
            WireConn::connect(addr.as_str(), params),
        )
        .await;
        let err = match r {
            Ok(Ok(c)) => {
                self.stats.connects += 1;
                if self.idle_closed {
                    self.stats.reopened_after_idle += 1;
                    self.idle_closed = false;
                } else if self.ever_connected {
                    self.stats.reconnects += 1;
                    ctx.live.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.note_state_lost();
                }
                self.prod_state = ProdState::default();
                ctx.live.connections_open.fetch_add(1, Ordering::Relaxed);
                self.ever_connected = true;
                if ctx.target_down.swap(false, Ordering::Relaxed) {
                    ctx.up_epoch.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target = %cfg.target, "test server reachable again");
                }
                self.backoff = cfg.backoff_min;
                self.retry_at = None;
                self.retry_err = None;
                self.down_since = None;
                self.conn = Some(c);
                return Ok(());
            }
            Ok(Err(WireError::Auth { code, message })) => {
                tracing::warn!(session = self.id, code, message = %message, "connect to target refused");
                Fail::Failed(format!("connect_refused: {code} {message}"))
            }
            Ok(Err(e)) if is_unreachable(&e) => {
                if !ctx.target_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target = %cfg.target, error = %e,
                        "test server unreachable: commands are counted as lost (target_unavailable) until it is back");
                }
                Fail::Lost(format!("target_unavailable: {e}"))
            }
            Ok(Err(e)) => {
                tracing::warn!(session = self.id, error = %e, "connect to target failed");
                Fail::Failed(format!("connect_error: {e}"))
            }
            Err(_) => Fail::Failed(format!(
                "connect_timeout: no handshake in {:?}",
                cfg.connect_timeout
            )),
        };
        self.stats.connect_failures += 1;
        let now = Instant::now();
        let since = *self.down_since.get_or_insert(now);
        if cfg
            .reconnect_for
            .is_some_and(|d| now.duration_since(since) >= d)
        {
            tracing::warn!(
                session = self.id,
                "target unreachable for longer than --reconnect-for: this session stops reconnecting"
            );
            self.gave_up = true;
            self.stats.sessions_gave_up = 1;
        }
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(cfg.backoff_max);
        self.down_epoch = ctx.up_epoch.load(Ordering::Relaxed);
        self.retry_err = Some(err.clone());
        Err(err)
    }

    /// After a reconnect: count the production state the new connection lacks.
    fn note_state_lost(&mut self) {
        let reasons = self.prod_state.reasons();
        if reasons.is_empty() {
            return;
        }
        tracing::warn!(session = self.id, state = ?reasons,
            "reconnected, but production's session state cannot be rebuilt: replay of this session may diverge");
        self.stats.sessions_state_lost = 1;
        for r in reasons {
            bump(&mut self.stats.state_lost, r);
        }
    }
}
