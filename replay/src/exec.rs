//! The executor: one task per captured session that runs a [`Planner`] and
//! carries out its [`Action`]s on a [`WireConn`], with the engine's pacing, lag, reconnect
//! backoff, `--target-timeout`, panic containment and counters.
//!
//! # What it does
//! - Feeds the session's events to the planner, paced as the engine paces them (the command's
//!   scheduled time, lag recorded); looks up prod's processlist for sessions open before capture
//!   when the planner asks.
//! - Sends each payload as planned. A pipelined send goes out without reading the outstanding
//!   responses first; responses are read in send order and each command's latency runs from
//!   its own send to the end of its own response. Outstanding responses are read before a
//!   command that was not pipelined, before a pacing wait, and as soon as the session has no
//!   event ready (so an idle gap never counts as latency).
//! - Counts every captured command exactly once: replayed (one [`Outcome`] each; commands
//!   without a response on the wire are `replayed_no_response`), skipped (the planner's
//!   [`crate::filter::SkipReason`]), lost (the planner's [`crate::plan::LoseReason`], or sent
//!   with its fate unknown: `connection_lost`, `target_unavailable`, `shutdown`,
//!   `session_panic`), failed (`connect_refused`, `connect_timeout`, `connect_error`, `timeout`,
//!   `driver_error`). A command taken but not yet sent when shutdown comes is skipped
//!   (`shutdown`), as those still in the ring are.
//! - Connects lazily (the planner's Connect), reconnects with the engine's capped exponential
//!   backoff and `--reconnect-for`; a command met while waiting to retry gets the last connect
//!   error. A broken connection, a timeout, or a protocol error drops the connection: commands
//!   sent on it and not answered are lost (`connection_lost`), the timed-out one failed.
//! - A captured command test answered with ER_LOCK_DEADLOCK where prod did not goes back to
//!   the planner, which sends its transaction again (`--deadlock-retries`); the retry runs as
//!   soon as the answer is read, before the session's next command, and the command is counted
//!   once, with the retry's answer.
//! - Runs each step inside `catch_unwind`: a panic drops the connection and counts the
//!   session's unfinished commands and the rest of its stream as lost (`session_panic`).
//!
//! # What it does not do
//! No statement logic (the planner's), no response decoding (the wire connection's), no
//! comparison or report (it hands [`Outcome`]s to the engine's sink; the test side carries the
//! reply's result checksum, which the report compares with prod's).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mrte_capture::event::SessionEvent;
use mrte_capture::ring::SessionStream;
use tokio::sync::watch;

use crate::engine::{wait_shutdown, Ctx, EngineStats, ShutdownWatch};
use crate::filter::SkipReason;
use crate::pacing::{lag_us, Pacing, SessionClock};
use crate::plan::{Action, ChangeUserPlan, CmdInfo, Origin, PlanConfig, Planner};
use crate::resilience::{CatchUnwind, ProdState};
use crate::sync::Settled;
use crate::wire::{Reply, WireConn, WireError};

#[path = "exec_connect.rs"]
mod connect;
#[path = "exec_fate.rs"]
mod fate;
use connect::is_unreachable;

/// A command's fate when it got no answer.
#[derive(Clone, Debug)]
enum Fail {
    /// Not sent, or sent with its fate unknown.
    Lost(String),
    /// Tried, no server answer.
    Failed(String),
}

/// What a response on the wire belongs to.
enum Want {
    /// A send without an answer (QUIT, STMT_CLOSE, LONG_DATA): the connection hands back an
    /// empty reply, already counted.
    Nothing,
    /// The planner's own send (re-PREPARE, orphan close).
    Synthetic,
    /// A captured command.
    Captured(Box<CmdInfo>),
}

/// A send whose response is still to be read (its latency is the connection's: from the
/// command's send to its response's last packet).
struct Pending {
    want: Want,
}

/// A step of the session loop.
enum Step {
    /// Feed this event and run what it plans.
    Event(SessionEvent),
    /// Read every outstanding response.
    Drain,
}

struct Exec {
    ctx: Arc<Ctx>,
    id: u64,
    client: std::net::SocketAddr,
    planner: Planner,
    conn: Option<WireConn>,
    pending: VecDeque<Pending>,
    identity_checked: bool,
    ever_connected: bool,
    idle_closed: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    retry_err: Option<Fail>,
    down_since: Option<Instant>,
    down_epoch: u64,
    gave_up: bool,
    prod_state: ProdState,
    clock: Option<SessionClock>,
    last_lag_us: u64,
    lag: Option<Vec<u64>>,
    /// Capture time the previous command's prod response ended.
    prev_end_us: u64,
    stats: EngineStats,
    /// Commits taken and not settled on the gate yet: (seq, global order).
    owed: VecDeque<(u64, u64)>,
    /// `--target-timeout` of the response being read: one timer per session, moved forward
    /// before each read (tokio extends a registered timer without touching the timer wheel;
    /// a `timeout()` per command registered and removed one each time).
    read_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The last response read (reused: see [`Self::read_one`]).
    reply: Reply,
    /// A captured command's bytes are being written (or a CHANGE_USER is on the wire) and it
    /// is not in `pending`: if shutdown interrupts now, its fate is unknown (lost), not unsent.
    sending: bool,
    /// An action polled from the planner waits on a drain: a deadlock retry cannot go first.
    holding_action: bool,
}

/// A session's task (called by the engine's session task).
pub(crate) async fn session_task(
    ctx: Arc<Ctx>,
    mut stream: SessionStream,
    mut sd: watch::Receiver<bool>,
) {
    let mut s = Exec::new(ctx, &stream);
    // One shutdown waiter for the whole session, raced against every step (a fresh
    // `wait_shutdown` per step registered and removed a channel waiter each time).
    let mut sdw = ShutdownWatch::new(&sd);
    let mut shut = false;
    let mut panicked = false;
    loop {
        let step = if !s.pending.is_empty() {
            match stream.try_pop() {
                Some(ev) => Step::Event(ev),
                None => Step::Drain,
            }
        } else {
            let next = async {
                if s.conn.is_some() {
                    tokio::time::timeout(s.ctx.cfg.idle_timeout, stream.next()).await
                } else {
                    Ok(stream.next().await)
                }
            };
            tokio::select! {
                biased;
                _ = sdw.wait() => { shut = true; break; }
                ev = next => match ev {
                    Err(_idle) => {
                        s.stats.idle_closes += 1;
                        s.idle_closed = true;
                        s.close().await;
                        s.connection_gone("connection_lost");
                        continue;
                    }
                    Ok(None) => break,
                    Ok(Some(ev)) => Step::Event(ev),
                },
            }
        };
        // Pinned here, not boxed: no allocation and copy of the step's future per step.
        let done = {
            let work = std::pin::pin!(s.step(step, &mut sd));
            tokio::select! {
                biased;
                r = CatchUnwind::new(work) => Some(r),
                _ = sdw.wait() => None,
            }
        };
        match done {
            Some(Ok(false)) => {}
            Some(Ok(true)) => {
                shut = true;
                break;
            }
            Some(Err(msg)) => {
                tracing::error!(session = s.id, panic = %msg,
                    "replaying a command panicked: the rest of this session is counted as lost (session_panic)");
                s.stats.sessions_command_panicked += 1;
                s.abandon("session_panic");
                panicked = true;
                break;
            }
            None => {
                s.abandon_shutdown();
                shut = true;
                break;
            }
        }
    }
    if !shut && !panicked {
        let done = {
            let work = std::pin::pin!(s.finish_stream());
            tokio::select! {
                biased;
                r = CatchUnwind::new(work) => Some(r),
                _ = sdw.wait() => None,
            }
        };
        match done {
            Some(Ok(())) => {}
            Some(Err(msg)) => {
                tracing::error!(session = s.id, panic = %msg, "replaying a session's end panicked");
                s.stats.sessions_command_panicked += 1;
                s.abandon("session_panic");
            }
            None => {
                s.abandon_shutdown();
                shut = true;
            }
        }
    }
    if panicked {
        loop {
            let ev = tokio::select! {
                biased;
                _ = sdw.wait() => { shut = true; break; }
                ev = stream.next() => ev,
            };
            match ev {
                Some(SessionEvent::Command(_)) => {
                    s.seen();
                    s.lose("session_panic");
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    if shut {
        while let Some(ev) = stream.try_pop() {
            if matches!(ev, SessionEvent::Command(_)) {
                s.seen();
                s.skip(SkipReason::Shutdown);
            }
        }
    }
    s.close().await;
    let dropped = stream.dropped();
    if dropped > 0 {
        s.stats.sessions_overflowed += 1;
        s.stats.ring_dropped_events += dropped;
        s.stats.ring_dropped_commands += stream.dropped_commands();
    }
    s.finish();
}

fn plan_config(ctx: &Ctx) -> PlanConfig {
    let cfg = &ctx.cfg;
    let mut p = PlanConfig::new(cfg.target.clone());
    p.identities = cfg.identities.clone();
    p.default_db = cfg.default_db.clone().or_else(|| cfg.target.db.clone());
    p.filters = cfg.filters.clone();
    p.example_len = cfg.example_len;
    p.deadlock_retries = cfg.deadlock_retries;
    p.prod_clock = cfg.prod_clock;
    p.prod_insert_id = cfg.prod_insert_id;
    p
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Exec {
    fn new(ctx: Arc<Ctx>, stream: &SessionStream) -> Self {
        let open = &stream.open;
        let clock = match ctx.cfg.pacing {
            Pacing::Offline {
                speed: Some(speed),
                skip_idle,
            } => {
                let (anchor, offset) = ctx.timeline.open_session(open.ts_us, Instant::now());
                Some(SessionClock::new(
                    anchor, offset, open.ts_us, speed, skip_idle,
                ))
            }
            Pacing::Offline { speed: None, .. } => {
                ctx.timeline.open_session(open.ts_us, Instant::now());
                None
            }
            Pacing::Live => None,
        };
        let lag = if matches!(ctx.cfg.pacing, Pacing::Offline { speed: None, .. }) {
            None
        } else {
            Some(Vec::new())
        };
        let mut stats = EngineStats::default();
        if open.midstream {
            stats.sessions_midstream = 1;
        }
        Self {
            planner: Planner::new(Arc::new(plan_config(&ctx)), open),
            id: open.id,
            client: open.key.client,
            conn: None,
            pending: VecDeque::new(),
            holding_action: false,
            identity_checked: false,
            ever_connected: false,
            idle_closed: false,
            backoff: ctx.cfg.backoff_min,
            retry_at: None,
            retry_err: None,
            down_since: None,
            down_epoch: 0,
            gave_up: false,
            prod_state: ProdState::default(),
            clock,
            last_lag_us: 0,
            lag,
            prev_end_us: 0,
            stats,
            owed: VecDeque::new(),
            read_timer: Box::pin(tokio::time::sleep(ctx.cfg.command_timeout)),
            reply: Reply::default(),
            sending: false,
            ctx,
        }
    }

    fn finish(mut self) {
        self.settle_all();
        let r = self.planner.retry_stats();
        self.stats.deadlock_retries += r.transactions;
        self.stats.deadlock_retry_attempts += r.attempts;
        self.stats.deadlock_retry_statements += r.statements;
        self.stats.deadlock_retries_abandoned += r.abandoned;
        let c = self.planner.clock_stats();
        self.stats.prod_clock_sets += c.sets;
        self.stats.prod_clock_errors += c.errors;
        self.stats.prod_insert_ids += c.insert_ids;
        if self.stats.replayed + self.stats.replayed_no_response > 0 {
            self.stats.sessions_replayed = 1;
        }
        if self.stats.lost_total() > 0 {
            self.stats.sessions_with_losses = 1;
        }
        let mut g = self.ctx.totals.lock().unwrap_or_else(|e| e.into_inner());
        g.0.merge(&self.stats);
        for v in self.lag.take().unwrap_or_default() {
            g.1.saturating_record(v);
        }
    }

    fn record_lag(&mut self, lag: u64) {
        self.last_lag_us = lag;
        if let Some(buf) = self.lag.as_mut() {
            buf.push(lag.max(1));
            if buf.len() >= 256 {
                let mut g = self.ctx.totals.lock().unwrap_or_else(|e| e.into_inner());
                for v in buf.drain(..) {
                    g.1.saturating_record(v);
                }
            }
        }
        self.ctx.live.lag_last_us.store(lag, Ordering::Relaxed);
        self.ctx.live.lag_max_us.fetch_max(lag, Ordering::Relaxed);
    }

    /// One step of the session loop; true when shutdown interrupted it.
    async fn step(&mut self, step: Step, sd: &mut watch::Receiver<bool>) -> bool {
        match step {
            Step::Drain => {
                self.drain().await;
                // A deadlock retry the answers started goes now.
                self.run_actions().await;
                false
            }
            Step::Event(ev) => self.event(ev, sd).await,
        }
    }

    async fn event(&mut self, ev: SessionEvent, sd: &mut watch::Receiver<bool>) -> bool {
        let is_command = if let SessionEvent::Command(rec) = &ev {
            self.seen();
            if rec.flags.after_gap {
                self.stats.commands_after_gap += 1;
            }
            let pipelined = rec.ts_us < self.prev_end_us;
            self.prev_end_us = rec.response.last_byte_us.unwrap_or(rec.ts_us);
            if !pipelined {
                // Before the planner plans it: a connection that breaks meanwhile is reopened.
                self.drain().await;
                // What the answers queued goes now (a deadlock victim's ROLLBACK: prod's locks
                // were gone at once, so test's must not outlive a pacing sleep or a gate wait).
                self.run_actions().await;
            }
            if let Some(due) = self.clock.as_mut().map(|c| c.due(rec.ts_us)) {
                tokio::select! {
                    biased;
                    _ = wait_shutdown(sd) => {
                        self.skip(SkipReason::Shutdown);
                        return true;
                    }
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
                self.record_lag(lag_us(due, Instant::now()));
            } else if self.ctx.cfg.pacing == Pacing::Live {
                self.record_lag(now_us().saturating_sub(rec.ts_us));
            }
            if let Some(gate) = self.ctx.sync.clone() {
                if rec.commit.order > 0 {
                    gate.note_commit();
                    self.owed.push_back((rec.seq, rec.commit.order));
                }
                let w = gate.watermark(&rec.commit);
                if !gate.ready(w) {
                    // Our own commits must be read before we wait for others', and a ROLLBACK
                    // their answers queued must go: a gate wait holding a deadlock victim's
                    // locks on test blocks the very commit it waits for (until --sync-timeout).
                    self.drain().await;
                    self.run_actions().await;
                    tokio::select! {
                        biased;
                        _ = wait_shutdown(sd) => {
                            self.skip(SkipReason::Shutdown);
                            return true;
                        }
                        _ = gate.wait(w, self.id, rec.seq) => {}
                    }
                }
            }
            true
        } else {
            false
        };
        self.planner.handle_event(ev);
        if is_command && !self.identity_checked && self.planner.needs_identity() {
            self.identity_checked = true;
            self.resolve_identity().await;
        }
        self.run_actions().await;
        false
    }

    /// The end of the session's stream: what is planned runs, responses are read, the
    /// connection closes.
    async fn finish_stream(&mut self) {
        self.run_actions().await;
        self.drain().await;
        // An answer read last may have started a deadlock retry: it runs to its end.
        while self.planner.retrying() && self.conn.is_some() {
            self.run_actions().await;
            self.drain().await;
        }
        self.close().await;
        let _ = self.planner.handle_connection_lost();
        for _ in 0..self.unaccounted() {
            tracing::warn!(session = self.id, "a command was left without a fate");
            self.lose("unplanned");
        }
    }

    async fn resolve_identity(&mut self) {
        let Some(prod) = &self.ctx.prod else {
            return;
        };
        let found =
            tokio::time::timeout(self.ctx.cfg.connect_timeout * 2, prod.lookup(self.client)).await;
        match found {
            Err(_) => tracing::warn!(session = self.id, "prod processlist lookup timed out"),
            Ok(Ok(Some(info))) => {
                self.stats.sessions_processlist_resolved += 1;
                self.planner.set_identity(info.user, info.db);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(session = self.id, error = %e, "prod processlist lookup failed")
            }
        }
    }

    /// Poll the planner until it has nothing to do, reading responses when it waits.
    async fn run_actions(&mut self) {
        loop {
            while let Some(a) = self.planner.poll_action() {
                self.act(a).await;
            }
            if !self.planner.is_waiting() {
                return;
            }
            if self.pending.is_empty() || self.conn.is_none() {
                // Nothing will answer: the planner's view and ours disagree.
                self.broken(None);
            } else {
                self.read_one().await;
            }
        }
    }

    async fn act(&mut self, a: Action) {
        match a {
            Action::Connect(p) | Action::Reconnect(p) => {
                if let Err(f) = self.connect(p).await {
                    for c in self.planner.handle_connection_lost() {
                        self.fail(c, f.clone());
                    }
                }
            }
            Action::Send(s) => {
                if !s.pipelined {
                    self.holding_action = true;
                    self.drain().await;
                    self.holding_action = false;
                }
                let want = match s.origin {
                    Origin::Captured(c) if s.expects_response => Want::Captured(c),
                    Origin::Captured(c) => {
                        if self.conn.is_none() {
                            self.fail(c, Fail::Lost("connection_lost".into()));
                            return;
                        }
                        self.stats.replayed_no_response += 1;
                        self.ctx
                            .live
                            .replayed_no_response
                            .fetch_add(1, Ordering::Relaxed);
                        Want::Nothing
                    }
                    Origin::Synthetic(_) if s.expects_response => Want::Synthetic,
                    Origin::Synthetic(_) => Want::Nothing,
                };
                let Some(conn) = self.conn.as_mut() else {
                    if let Want::Captured(c) = want {
                        self.fail(c, Fail::Lost("connection_lost".into()));
                    }
                    return;
                };
                if s.payload.first() == Some(&crate::wire::com::QUERY) {
                    self.prod_state.observe(&s.payload[1..]);
                }
                let infile = s.local_infile.map(|b| b.to_vec());
                self.sending = matches!(want, Want::Captured(_));
                // One `send` without a timer when the socket has room (the usual case); the
                // timed, waiting write only for what is left.
                let r = match conn
                    .queue(&s.payload, infile)
                    .and_then(|()| conn.try_flush())
                {
                    Ok(true) => Ok(Ok(())),
                    Ok(false) => {
                        tokio::time::timeout(self.ctx.cfg.command_timeout, conn.flush_queued())
                            .await
                    }
                    Err(e) => Ok(Err(e)),
                };
                self.pending.push_back(Pending { want });
                self.sending = false;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(session = self.id, error = %e, "send failed");
                        self.broken(None);
                    }
                    Err(_) => self.broken(None),
                }
            }
            Action::ChangeUser(cu) => self.change_user(cu).await,
            Action::Disconnect => self.close().await,
            Action::Skip { reason, seq, .. } => {
                self.skip(reason);
                self.settle(seq, Settled::GivenUp);
            }
            Action::Lose { cmd, reason } => self.fail(cmd, Fail::Lost(reason.as_str().into())),
        }
    }

    async fn change_user(&mut self, cu: ChangeUserPlan) {
        self.holding_action = true;
        self.drain().await;
        self.holding_action = false;
        let Some(conn) = self.conn.as_mut() else {
            self.fail(cu.cmd, Fail::Lost("connection_lost".into()));
            return;
        };
        let sent = Instant::now();
        let pw = cu.password.as_deref().unwrap_or("");
        self.sending = true;
        let r = tokio::time::timeout(
            self.ctx.cfg.command_timeout,
            conn.change_user(&cu.user, pw, cu.db.as_deref()),
        )
        .await;
        self.sending = false;
        match r {
            Ok(Ok(reply)) => {
                self.prod_state = ProdState::default();
                let mut test = reply.to_test_response();
                test.latency_us = sent.elapsed().as_micros() as u64;
                self.done(cu.cmd, test);
            }
            Ok(Err(e)) => {
                self.fail(cu.cmd, self.error_fate(&e));
                self.broken(None);
            }
            Err(_) => {
                self.fail(cu.cmd, self.timeout_fate());
                self.broken(None);
            }
        }
    }

    fn timeout_fate(&self) -> Fail {
        Fail::Failed(format!(
            "timeout: no answer in {:?}",
            self.ctx.cfg.command_timeout
        ))
    }

    fn error_fate(&self, e: &WireError) -> Fail {
        if is_unreachable(e) {
            Fail::Lost("connection_lost".into())
        } else {
            Fail::Failed(format!("driver_error: {e}"))
        }
    }

    /// Read the oldest outstanding response.
    async fn read_one(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            self.broken(None);
            return;
        };
        self.read_timer
            .as_mut()
            .reset(tokio::time::Instant::now() + self.ctx.cfg.command_timeout);
        let timer = self.read_timer.as_mut();
        // Read into the session's reply buffer: the reply (a few hundred bytes) is not moved
        // through the select's output and the match per response.
        let r = tokio::select! {
            biased;
            r = conn.read_response_into(&mut self.reply) => Ok(r),
            () = timer => Err(()),
        };
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        match r {
            Ok(Ok(())) => match p.want {
                Want::Nothing => {}
                Want::Synthetic => self.planner.handle_answer(
                    self.reply.status,
                    self.reply.error.as_ref().map(|e| e.0),
                    self.reply.prepare.as_ref(),
                ),
                Want::Captured(c) => {
                    self.planner.handle_answer(
                        self.reply.status,
                        self.reply.error.as_ref().map(|e| e.0),
                        self.reply.prepare.as_ref(),
                    );
                    let test = self.reply.to_test_response();
                    self.done(c, test);
                }
            },
            Ok(Err(e)) => {
                tracing::debug!(session = self.id, error = %e, "test connection lost");
                let f = self.error_fate(&e);
                self.broken(Some((p, f)));
            }
            Err(_) => {
                tracing::debug!(session = self.id, "command timed out on the test server");
                let f = self.timeout_fate();
                self.broken(Some((p, f)));
            }
        }
    }

    /// Read every outstanding response.
    async fn drain(&mut self) {
        while !self.pending.is_empty() {
            if self.conn.is_none() {
                self.broken(None);
                return;
            }
            self.read_one().await;
        }
    }

    /// The connection broke (or cannot be trusted): `first` gets its own fate, the other
    /// unanswered commands and those planned on it are lost.
    fn broken(&mut self, first: Option<(Pending, Fail)>) {
        if let Some((
            Pending {
                want: Want::Captured(c),
                ..
            },
            f,
        )) = first
        {
            self.fail(c, f);
        }
        for p in std::mem::take(&mut self.pending) {
            if let Want::Captured(c) = p.want {
                self.fail(c, Fail::Lost("connection_lost".into()));
            }
        }
        self.drop_conn();
        self.connection_gone("connection_lost");
    }

    /// Tell the planner the connection is gone; what it had planned on it is lost.
    fn connection_gone(&mut self, reason: &str) {
        for c in self.planner.handle_connection_lost() {
            self.fail(c, Fail::Lost(reason.into()));
        }
    }

    fn drop_conn(&mut self) {
        if self.conn.take().is_some() {
            self.stats.connections_lost += 1;
            self.ctx
                .live
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Read what is outstanding and close the connection (COM_QUIT).
    async fn close(&mut self) {
        self.drain().await;
        if let Some(c) = self.conn.take() {
            self.ctx
                .live
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
        }
    }
}
