//! Replay engine: tokio workers, one test-server connection per captured session.
//!
//! # What it does
//! [`Engine::run`] takes the per-session streams that [`mrte_capture::ring::RingSink`] hands out
//! (live capture and offline pcap replay use the same path), and for each session spawns one
//! tokio task that:
//! - keeps the session's identity (user and default database from its Login, COM_INIT_DB,
//!   COM_CHANGE_USER, each command's `db`; for sessions open before capture: production's
//!   processlist via `--prod`, else `--default-db`), mapped with `--user-map`/`--db-map`;
//! - opens its own [`mysql_async::Conn`] to the target lazily on the first command to replay,
//!   closes it on COM_QUIT, on the end of the session's stream (FIN, RST, capture idle/eviction,
//!   end of input) and after `idle_timeout` without events, so no connection outlives its session;
//! - replays commands in captured order: COM_QUERY as raw bytes (multi-statements on, every result
//!   set drained, rows and affected rows summed), COM_INIT_DB (as `USE`), prepared statements
//!   with a production-id → test-statement map and typed binary parameters (long data
//!   accumulated and bound at the next execute), COM_PING, COM_RESET_CONNECTION,
//!   COM_CHANGE_USER; the rest is skipped and counted by [`SkipReason`];
//! - applies [`Filters`] (read-only, dangerous, db/user/regex filters, sampling);
//! - paces commands per [`Pacing`] and records lag behind schedule;
//! - on a broken connection, reconnects with capped exponential backoff (50 ms doubling to
//!   500 ms) for as long as the run lasts, or until [`ReplayConfig::reconnect_for`]; as soon as
//!   one session reconnects after an outage the others retry at once. The session's database is
//!   re-established and statements re-prepared from their remembered PREPARE text; production
//!   state a new connection lacks (open transaction, temporary tables, user or session
//!   variables) is counted in `state_lost`;
//! - counts every command it takes: replayed, skipped (by [`SkipReason`]), lost (not sent or fate
//!   unknown: `target_unavailable`, `connection_lost`, `unknown_statement`, `session_panic`...)
//!   or failed (tried, no server answer: `connect_refused`, `connect_timeout`, `timeout`,
//!   `driver_error`); lost and failed commands are reported as [`Outcome`]s with a failure;
//! - runs each command inside `catch_unwind`: a panic (a driver bug) drops the connection and
//!   counts that command and the rest of the session as lost (`session_panic`); a session task
//!   that dies anyway is counted in `sessions_panicked` and the report's books do not balance.
//!
//! Session tasks run on the runtime that calls [`Engine::run`], or round-robin on the runtimes
//! given with [`Engine::with_workers`] (`--replay-threads`). A statement's filter verdict and
//! fingerprint are memoised by exact text for the run.
//!
//! Each replayed command (and each command that failed to replay) yields one [`Outcome`], given
//! to the caller's sink right away from the session's task (the sink is behind a mutex: keep it
//! cheap and non-blocking), in no particular order across sessions. Commands
//! without a response on the wire (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) and
//! skipped commands yield no Outcome; they are counted in [`EngineStats`].
//!
//! # Offline replay and backpressure
//! Offline, the reader feeds the same `RingSink`; with `Pacing::Offline` the engine sleeps until
//! each command's scheduled time. So that a reader faster than the replay does not overflow the
//! bounded rings, the offline CLI turns on `RingSink::set_wait_when_full(true)`: the reader then
//! waits for ring space instead of dropping (a session more than one ring behind holds the reader
//! back). Live capture keeps the default never-wait mode: overflow is counted per session
//! (`sessions_overflowed`, `ring_dropped_events`) and such sessions are diverged.
//!
//! # Known limits
//! - COM_INIT_DB is sent as `USE \`db\`` and COM_PING/COM_RESET_CONNECTION/COM_CHANGE_USER via
//!   mysql_async's own calls (it has no raw-command API); COM_SET_OPTION (multi-statements are
//!   always on), COM_STMT_FETCH (cursor executes read all rows at once), COM_FIELD_LIST and
//!   COM_STATISTICS are skipped and counted; COM_STMT_RESET only drops pending long data.
//! - Query attributes (CLIENT_QUERY_ATTRIBUTES) are not sent; LOAD DATA LOCAL INFILE is skipped.
//! - A PREPARE text containing `:name` outside quotes is rewritten by mysql_async's named-parameter
//!   parser.
//! - After a reconnect the session's database and prepared statements are restored; session
//!   variables, temporary tables and an open transaction are not (counted, see above).
//!
//! # What it does not do
//! It does not decode packets, compare prod with test, or format reports (see
//! [`crate::compare`] and [`crate::report`]). It never blocks the capture thread: it only pops
//! rings. Cross-session ordering (commit order) is not enforced.
//!
//! # Use
//! ```no_run
//! # async fn f(rx: crossbeam_channel::Receiver<mrte_capture::ring::SessionStream>) {
//! use mrte_replay::engine::{Engine, ReplayConfig};
//! use mrte_replay::target::TargetDsn;
//! let cfg = ReplayConfig::new(TargetDsn::parse("mysql://root@127.0.0.1:3307/test").unwrap());
//! let engine = Engine::new(cfg);
//! let live = engine.live(); // read `live.snapshot()` each second from another task
//! let stats = engine
//!     .run(rx, |outcome| drop(outcome), async { let _ = tokio::signal::ctrl_c().await; })
//!     .await;
//! println!("{}", serde_json::to_string(&stats).unwrap());
//! # }
//! ```
//! `run` returns when the session channel is disconnected (the `RingSink` was dropped) and every
//! session has finished, or soon after `shutdown` resolves (events still queued are counted as
//! skipped with reason `shutdown`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use hdrhistogram::Histogram;
use mrte_capture::event::{
    Command, CommandRecord, FlowKey, Login, Param, ResponseStatus, SessionEvent,
};
use mrte_capture::fingerprint::{fingerprint_id, Fingerprinter};
use mrte_capture::ring::SessionStream;
use mysql_async::prelude::Queryable;
use mysql_async::{
    BinaryProtocol, ChangeUserOpts, Conn, Params, QueryResult, Statement, TextProtocol,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::classify::{classify_command_code, StatementClass};
use crate::filter::{Filters, SkipReason};
use crate::pacing::{lag_us, Pacing, SessionClock, Timeline};
use crate::resilience::{CatchUnwind, ProdState};
use crate::target::{Identities, ProdLookup, TargetDsn};
use crate::{Outcome, TestResponse};

#[path = "exec.rs"]
mod exec;
pub use exec::ConnKind;

/// Everything the engine needs to know.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// The test server.
    pub target: TargetDsn,
    /// `--user-map`, `--db-map`.
    pub identities: Identities,
    /// `--prod DSN`: production, for processlist lookups of sessions open before capture.
    pub prod: Option<TargetDsn>,
    /// `--default-db`: database of sessions open before capture when nothing else is known
    /// (falls back to the target DSN's database).
    pub default_db: Option<String>,
    /// Filters and safety.
    pub filters: Filters,
    /// Live or offline pacing.
    pub pacing: Pacing,
    /// Close a session's test connection after this long without events.
    pub idle_timeout: Duration,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Give up on one command after this long (`--target-timeout`; the connection is then
    /// dropped and the command counted as failed, reason `timeout`).
    pub command_timeout: Duration,
    /// First reconnect delay after a failed connect; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Stop reconnecting once the target has been unreachable this long for a session
    /// (`--reconnect-for`); `None`: keep trying as long as the run lasts.
    pub reconnect_for: Option<Duration>,
    /// Longest example statement kept in an Outcome, bytes.
    pub example_len: usize,
    /// The replay connection (`--conn`).
    pub conn: ConnKind,
}

impl ReplayConfig {
    /// Defaults: live pacing, no filters (dangerous statements skipped), 660 s idle timeout
    /// (a safety net just above the capture's own 600 s session idle timeout), 30 s per
    /// command, reconnects every 50 ms doubling to 500 ms for as long as the run lasts.
    pub fn new(target: TargetDsn) -> Self {
        Self {
            target,
            identities: Identities::default(),
            prod: None,
            default_db: None,
            filters: Filters::all(),
            pacing: Pacing::Live,
            idle_timeout: Duration::from_secs(660),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            reconnect_for: None,
            example_len: 512,
            conn: ConnKind::default(),
        }
    }
}

/// Counters readable while the engine runs (e.g. once per second for the live line).
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Sessions received from capture.
    pub sessions: AtomicU64,
    /// Sessions currently being replayed.
    pub active_sessions: AtomicU64,
    /// Test connections currently open.
    pub connections_open: AtomicU64,
    /// Commands taken from the rings.
    pub commands_seen: AtomicU64,
    /// Commands replayed that got a response (OK or ERR).
    pub replayed: AtomicU64,
    /// Replayed commands the test server answered with ERR.
    pub test_errors: AtomicU64,
    /// Commands skipped by a filter or rule.
    pub skipped: AtomicU64,
    /// Commands that could not be replayed (connection down, unknown statement, ...).
    pub lost: AtomicU64,
    /// Commands tried that failed (connect refused, timeout, driver error).
    pub failed: AtomicU64,
    /// Reconnects after a lost connection.
    pub reconnects: AtomicU64,
    /// Commands replayed that expect no response (QUIT, STMT_CLOSE, SEND_LONG_DATA).
    pub replayed_no_response: AtomicU64,
    /// Lag of the latest command, µs.
    pub lag_last_us: AtomicU64,
    /// Largest lag so far, µs.
    pub lag_max_us: AtomicU64,
}

/// A copy of [`LiveCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveSnapshot {
    /// See [`LiveCounters::sessions`].
    pub sessions: u64,
    /// See [`LiveCounters::active_sessions`].
    pub active_sessions: u64,
    /// See [`LiveCounters::connections_open`].
    pub connections_open: u64,
    /// See [`LiveCounters::commands_seen`].
    pub commands_seen: u64,
    /// See [`LiveCounters::replayed`].
    pub replayed: u64,
    /// See [`LiveCounters::test_errors`].
    pub test_errors: u64,
    /// See [`LiveCounters::skipped`].
    pub skipped: u64,
    /// See [`LiveCounters::lost`].
    pub lost: u64,
    /// See [`LiveCounters::failed`].
    pub failed: u64,
    /// See [`LiveCounters::reconnects`].
    pub reconnects: u64,
    /// See [`LiveCounters::lag_last_us`].
    pub lag_last_us: u64,
    /// See [`LiveCounters::lag_max_us`].
    pub lag_max_us: u64,
}

impl LiveCounters {
    /// Read all counters.
    pub fn snapshot(&self) -> LiveSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LiveSnapshot {
            sessions: l(&self.sessions),
            active_sessions: l(&self.active_sessions),
            connections_open: l(&self.connections_open),
            commands_seen: l(&self.commands_seen),
            replayed: l(&self.replayed),
            test_errors: l(&self.test_errors),
            skipped: l(&self.skipped),
            lost: l(&self.lost),
            failed: l(&self.failed),
            reconnects: l(&self.reconnects),
            lag_last_us: l(&self.lag_last_us),
            lag_max_us: l(&self.lag_max_us),
        }
    }
}

/// Lag behind schedule, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LagStats {
    /// Commands measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// Final engine counters, for the report (alongside the comparison).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Sessions received from capture.
    pub sessions: u64,
    /// Sessions with at least one command sent to the test server.
    pub sessions_replayed: u64,
    /// Sessions first seen mid-stream (open before capture).
    pub sessions_midstream: u64,
    /// Mid-stream sessions whose user/db came from production's processlist.
    pub sessions_processlist_resolved: u64,
    /// Sessions that lost events to a full ring (diverged: commands missing).
    pub sessions_overflowed: u64,
    /// Sessions with at least one lost command.
    pub sessions_with_losses: u64,
    /// Session tasks that died of a panic outside a command (a bug; their commands are
    /// unaccounted and the report says the books do not balance).
    pub sessions_panicked: u64,
    /// Sessions where replaying a command panicked: that command and the rest of the session
    /// are counted as lost, reason `session_panic`.
    pub sessions_command_panicked: u64,
    /// Sessions that stopped reconnecting after `reconnect_for` (`--reconnect-for`).
    pub sessions_gave_up: u64,
    /// Sessions reconnected while production held state a new connection lacks.
    pub sessions_state_lost: u64,
    /// That state, by kind (open_transaction, temporary_tables, user_variables,
    /// session_variables), one count per reconnect.
    pub state_lost: BTreeMap<String, u64>,
    /// Sessions received but never started because of shutdown.
    pub sessions_not_started: u64,
    /// Events lost to full rings.
    pub ring_dropped_events: u64,
    /// Of those, commands.
    pub ring_dropped_commands: u64,
    /// Commands taken from the rings.
    pub commands_seen: u64,
    /// Commands replayed that got a response (OK or ERR).
    pub replayed: u64,
    /// Commands sent that have no response (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    pub replayed_no_response: u64,
    /// Replayed commands the test server answered with ERR.
    pub test_errors: u64,
    /// Replayed commands whose production response was ERR.
    pub prod_errors: u64,
    /// Skipped commands by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Commands that could not be replayed, by reason.
    pub lost: BTreeMap<String, u64>,
    /// Commands tried that failed without a server answer (connect refused, timeout, driver
    /// error), by reason.
    pub failed: BTreeMap<String, u64>,
    /// Commands decoded right after a capture gap (TCP hole).
    pub commands_after_gap: u64,
    /// Test connections opened.
    pub connects: u64,
    /// Of those, re-opened after a lost connection.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections closed by the engine's idle timeout.
    pub idle_closes: u64,
    /// Connections opened again for a session after an idle close (not counted as reconnects).
    pub reopened_after_idle: u64,
    /// Connections dropped after an I/O error or command timeout.
    pub connections_lost: u64,
    /// Lag behind schedule (offline: behind captured pacing; live: behind packet time).
    pub lag_us: LagStats,
}

impl EngineStats {
    /// Total skipped commands.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Total lost commands.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Total failed commands.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Commands with a known fate: replayed (with or without response), skipped, lost or
    /// failed. Equals `commands_seen` when nothing went unaccounted.
    pub fn accounted(&self) -> u64 {
        self.replayed
            + self.replayed_no_response
            + self.skipped_total()
            + self.lost_total()
            + self.failed_total()
    }

    /// Add another worker's (or player's) counters; `sessions`, `sessions_panicked`,
    /// `sessions_not_started` and lag are left to the caller.
    pub fn merge(&mut self, o: &EngineStats) {
        self.sessions_replayed += o.sessions_replayed;
        self.sessions_midstream += o.sessions_midstream;
        self.sessions_processlist_resolved += o.sessions_processlist_resolved;
        self.sessions_overflowed += o.sessions_overflowed;
        self.sessions_with_losses += o.sessions_with_losses;
        self.ring_dropped_events += o.ring_dropped_events;
        self.ring_dropped_commands += o.ring_dropped_commands;
        self.commands_seen += o.commands_seen;
        self.replayed += o.replayed;
        self.replayed_no_response += o.replayed_no_response;
        self.test_errors += o.test_errors;
        self.prod_errors += o.prod_errors;
        for (k, v) in &o.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.lost {
            *self.lost.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.failed {
            *self.failed.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.state_lost {
            *self.state_lost.entry(k.clone()).or_default() += v;
        }
        self.sessions_command_panicked += o.sessions_command_panicked;
        self.sessions_gave_up += o.sessions_gave_up;
        self.sessions_state_lost += o.sessions_state_lost;
        self.commands_after_gap += o.commands_after_gap;
        self.connects += o.connects;
        self.reconnects += o.reconnects;
        self.connect_failures += o.connect_failures;
        self.idle_closes += o.idle_closes;
        self.reopened_after_idle += o.reopened_after_idle;
        self.connections_lost += o.connections_lost;
    }
}

fn new_lag_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

struct Ctx {
    cfg: ReplayConfig,
    live: Arc<LiveCounters>,
    totals: Mutex<(EngineStats, Histogram<u64>)>,
    sink: Mutex<Box<dyn FnMut(Outcome) + Send>>,
    timeline: Timeline,
    prod: Option<ProdLookup>,
    target_down: AtomicBool,
    /// Bumped each time a connect succeeds after the target was down: sessions waiting out a
    /// backoff retry at once instead of at their next scheduled attempt.
    up_epoch: AtomicU64,
    /// Statement facts by exact text, shared by the sessions of one run.
    sql_memo: Mutex<HashMap<Box<[u8]>, SqlFacts>>,
}

/// What the engine works out from a statement's text alone: the filter/safety verdict and the
/// fingerprint with its id.
#[derive(Clone, Debug)]
struct SqlFacts {
    skip: Option<SkipReason>,
    fingerprint: Arc<str>,
    fingerprint_id: u64,
}

/// Statements longer than this are not memoised.
const SQL_MEMO_MAX_LEN: usize = 512;
/// Entries in the memo before it starts again.
const SQL_MEMO_MAX_ENTRIES: usize = 1 << 16;

/// The replay engine: configuration and live counters; [`Engine::run`] does the work.
#[derive(Debug)]
pub struct Engine {
    cfg: ReplayConfig,
    live: Arc<LiveCounters>,
    workers: Vec<tokio::runtime::Handle>,
}

impl Engine {
    /// An engine for `cfg`.
    pub fn new(cfg: ReplayConfig) -> Self {
        Self {
            cfg,
            live: Arc::new(LiveCounters::default()),
            workers: Vec::new(),
        }
    }

    /// Run session tasks on these runtimes, round-robin (each typically a current-thread
    /// runtime on its own thread), instead of the runtime that calls [`Engine::run`].
    pub fn with_workers(mut self, workers: Vec<tokio::runtime::Handle>) -> Self {
        self.workers = workers;
        self
    }

    /// Live counters, readable while [`Engine::run`] runs.
    pub fn live(&self) -> Arc<LiveCounters> {
        self.live.clone()
    }

    /// Replay every session from `sessions` until the channel disconnects and all sessions end,
    /// or until `shutdown` resolves; hand each [`Outcome`] to `sink`; return the final counters.
    pub async fn run<S, F>(
        mut self,
        sessions: Receiver<SessionStream>,
        sink: S,
        shutdown: F,
    ) -> EngineStats
    where
        S: FnMut(Outcome) + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let skip_idle = match self.cfg.pacing {
            Pacing::Offline { skip_idle, .. } => skip_idle,
            Pacing::Live => None,
        };
        let ctx = Arc::new(Ctx {
            prod: self.cfg.prod.clone().map(ProdLookup::new),
            target_down: AtomicBool::new(false),
            up_epoch: AtomicU64::new(0),
            sql_memo: Mutex::new(HashMap::new()),
            cfg: self.cfg,
            live: self.live,
            totals: Mutex::new((EngineStats::default(), new_lag_histogram())),
            sink: Mutex::new(Box::new(sink)),
            timeline: Timeline::new(skip_idle),
        });

        let (sd_tx, sd_rx) = watch::channel(false);
        let shutdown_task = tokio::spawn(async move {
            shutdown.await;
            let _ = sd_tx.send(true);
            std::future::pending::<()>().await;
        });

        let (sess_tx, mut sess_rx) = mpsc::unbounded_channel::<SessionStream>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_b = stop.clone();
        let bridge = tokio::task::spawn_blocking(move || {
            let mut left = Vec::new();
            while !stop_b.load(Ordering::Relaxed) {
                match sessions.recv_timeout(Duration::from_millis(20)) {
                    Ok(s) => {
                        if let Err(e) = sess_tx.send(s) {
                            left.push(e.0);
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            left.extend(sessions.try_iter());
            left
        });

        let workers = std::mem::take(&mut self.workers);
        let mut next_worker = 0usize;
        let mut tasks = JoinSet::new();
        let mut panicked = 0u64;
        let mut sd = sd_rx.clone();
        loop {
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut sd) => break,
                s = sess_rx.recv() => match s {
                    Some(s) => {
                        ctx.live.sessions.fetch_add(1, Ordering::Relaxed);
                        let t = session_task(ctx.clone(), s, sd_rx.clone());
                        if workers.is_empty() {
                            tasks.spawn(t);
                        } else {
                            tasks.spawn_on(t, &workers[next_worker % workers.len()]);
                            next_worker += 1;
                        }
                    }
                    None => break,
                },
                Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = r {
                        panicked += 1;
                        tracing::error!(error = %e, "replay session task died: its commands are unaccounted");
                    }
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        sess_rx.close();
        let mut unstarted = Vec::new();
        while let Ok(s) = sess_rx.try_recv() {
            unstarted.push(s);
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                panicked += 1;
                tracing::error!(error = %e, "replay session task died: its commands are unaccounted");
            }
        }
        unstarted.extend(bridge.await.unwrap_or_default());
        let not_started = unstarted.len() as u64;
        let mut unstarted_commands = 0u64;
        let mut unstarted_dropped = (0u64, 0u64);
        for mut s in unstarted {
            ctx.live.sessions.fetch_add(1, Ordering::Relaxed);
            unstarted_dropped.0 += s.dropped();
            unstarted_dropped.1 += s.dropped_commands();
            while let Some(ev) = s.try_pop() {
                if matches!(ev, SessionEvent::Command(_)) {
                    unstarted_commands += 1;
                }
            }
        }
        shutdown_task.abort();
        let (mut stats, lag) = {
            let g = ctx.totals.lock().unwrap_or_else(|e| e.into_inner());
            (g.0.clone(), g.1.clone())
        };
        stats.sessions = ctx.live.sessions.load(Ordering::Relaxed);
        stats.sessions_panicked = panicked;
        stats.sessions_not_started = not_started;
        stats.ring_dropped_events += unstarted_dropped.0;
        stats.ring_dropped_commands += unstarted_dropped.1;
        if unstarted_commands > 0 {
            stats.commands_seen += unstarted_commands;
            *stats
                .skipped
                .entry(SkipReason::Shutdown.as_str().to_owned())
                .or_default() += unstarted_commands;
        }
        stats.lag_us = LagStats {
            count: lag.len(),
            p50: if lag.is_empty() {
                0
            } else {
                lag.value_at_quantile(0.5)
            },
            p99: if lag.is_empty() {
                0
            } else {
                lag.value_at_quantile(0.99)
            },
            max: if lag.is_empty() { 0 } else { lag.max() },
        };
        drop(ctx);
        stats
    }
}

/// Convenience: `Engine::new(cfg).run(...)`.
pub async fn run<S, F>(
    cfg: ReplayConfig,
    sessions: Receiver<SessionStream>,
    sink: S,
    shutdown: F,
) -> EngineStats
where
    S: FnMut(Outcome) + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    Engine::new(cfg).run(sessions, sink, shutdown).await
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

struct ActiveGuard(Arc<LiveCounters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn session_task(ctx: Arc<Ctx>, mut stream: SessionStream, mut sd: watch::Receiver<bool>) {
    ctx.live.active_sessions.fetch_add(1, Ordering::Relaxed);
    let _guard = ActiveGuard(ctx.live.clone());
    if ctx.cfg.conn == ConnKind::Wire {
        return exec::session_task(ctx, stream, sd).await;
    }
    let mut s = Session::new(ctx.clone(), &stream);
    let mut shut = false;
    let mut panicked_at = false;
    loop {
        let ev = {
            let next = async {
                if s.conn.is_some() {
                    tokio::time::timeout(s.ctx.cfg.idle_timeout, stream.next()).await
                } else {
                    Ok(stream.next().await)
                }
            };
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut sd) => { shut = true; break; }
                ev = next => ev,
            }
        };
        match ev {
            Err(_idle) => {
                s.stats.idle_closes += 1;
                s.idle_closed = true;
                s.disconnect().await;
            }
            Ok(None) => break,
            Ok(Some(ev)) => {
                let before = s.stats.accounted();
                let is_command = matches!(ev, SessionEvent::Command(_));
                let mut sd2 = sd.clone();
                let done = tokio::select! {
                    biased;
                    r = CatchUnwind::new(s.handle(ev, &mut sd)) => Some(r),
                    _ = wait_shutdown(&mut sd2) => None,
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
                        if is_command && s.stats.accounted() == before {
                            s.lose("session_panic");
                        }
                        s.stats.sessions_command_panicked += 1;
                        s.forget_conn();
                        panicked_at = true;
                        break;
                    }
                    None => {
                        // Interrupted mid-command: the connection is in an unknown state.
                        if is_command && s.stats.accounted() == before {
                            s.lose("shutdown");
                        }
                        s.disconnect().await;
                        shut = true;
                        break;
                    }
                }
            }
        }
    }
    if panicked_at {
        // Count what the session still sends, until its stream ends or shutdown.
        loop {
            let ev = tokio::select! {
                biased;
                _ = wait_shutdown(&mut sd) => { shut = true; break; }
                ev = stream.next() => ev,
            };
            match ev {
                Some(SessionEvent::Command(_)) => {
                    s.stats.commands_seen += 1;
                    s.ctx.live.commands_seen.fetch_add(1, Ordering::Relaxed);
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
                s.stats.commands_seen += 1;
                s.ctx.live.commands_seen.fetch_add(1, Ordering::Relaxed);
                s.skip(SkipReason::Shutdown);
            }
        }
    }
    s.disconnect().await;
    let dropped = stream.dropped();
    if dropped > 0 {
        s.stats.sessions_overflowed += 1;
        s.stats.ring_dropped_events += dropped;
        s.stats.ring_dropped_commands += stream.dropped_commands();
    }
    s.finish();
}

struct StmtEntry {
    sql: Arc<[u8]>,
    fingerprint: Arc<str>,
    fingerprint_id: u64,
    example: Arc<str>,
    skip: Option<SkipReason>,
    test: Option<Statement>,
    long_data: BTreeMap<u16, Vec<u8>>,
}

enum Exec {
    Done(TestResponse),
    /// Not sent, or sent with its fate unknown (target down, connection lost, unknown id).
    Lost(String),
    /// Tried and failed without a server answer (connect refused, timeout, driver error).
    Failed(String),
}

/// Why the session has no connection right now.
#[derive(Clone, Debug)]
enum ConnErr {
    Lost(String),
    Failed(String),
}

impl From<ConnErr> for Exec {
    fn from(e: ConnErr) -> Self {
        match e {
            ConnErr::Lost(r) => Exec::Lost(r),
            ConnErr::Failed(r) => Exec::Failed(r),
        }
    }
}

struct Session {
    ctx: Arc<Ctx>,
    key: FlowKey,
    id: u64,
    midstream: bool,
    last_lag_us: u64,
    user: Option<String>,
    db: Option<String>,
    identity_checked: bool,
    skip_all: Option<SkipReason>,
    conn: Option<Conn>,
    ever_connected: bool,
    idle_closed: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// The last connect error, repeated for commands met while waiting to retry.
    retry_err: Option<ConnErr>,
    /// Since when the target has been unreachable for this session.
    down_since: Option<Instant>,
    /// `Ctx::up_epoch` when the last connect failed.
    down_epoch: u64,
    gave_up: bool,
    /// Production state since the test connection was opened.
    prod_state: ProdState,
    stmts: HashMap<u32, StmtEntry>,
    last_prepared: Option<u32>,
    clock: Option<SessionClock>,
    stats: EngineStats,
    /// Lag samples not yet merged into the shared histogram (`None`: lag not measured).
    lag: Option<Vec<u64>>,
    fps: FpCache,
}

/// Per-session fingerprint memo: reusable fingerprinting buffers, and each fingerprint's shared
/// text and 64-bit id, so a repeated query shape costs no allocation and no MD5.
#[derive(Debug, Default)]
struct FpCache {
    fingerprinter: Fingerprinter,
    known: HashMap<Box<str>, (Arc<str>, u64)>,
}

impl FpCache {
    /// Bound on remembered fingerprints per session; the memo restarts when it is reached.
    const MAX: usize = 4096;

    /// Fingerprint text and id of `sql`.
    fn of_sql(&mut self, sql: &[u8]) -> (Arc<str>, u64) {
        let fp = self.fingerprinter.fingerprint(sql);
        Self::lookup(&mut self.known, fp)
    }

    /// Id of an already fingerprinted text.
    fn id_of(&mut self, fp: &str) -> u64 {
        Self::lookup(&mut self.known, fp).1
    }

    fn lookup(known: &mut HashMap<Box<str>, (Arc<str>, u64)>, fp: &str) -> (Arc<str>, u64) {
        if let Some((text, id)) = known.get(fp) {
            return (text.clone(), *id);
        }
        if known.len() >= Self::MAX {
            known.clear();
        }
        let text: Arc<str> = Arc::from(fp);
        let id = fingerprint_id(fp);
        known.insert(fp.into(), (text.clone(), id));
        (text, id)
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(v) => *v += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

fn truncate_example(sql: &[u8], max: usize) -> Arc<str> {
    let cut = &sql[..sql.len().min(max)];
    Arc::from(String::from_utf8_lossy(cut).as_ref())
}

fn to_value(p: &Param) -> mysql_async::Value {
    use mrte_capture::event::Value as V;
    use mysql_async::Value as M;
    match &p.value {
        V::Null => M::NULL,
        V::Int(i) => M::Int(*i),
        V::UInt(u) => M::UInt(*u),
        V::Float(f) => M::Float(*f),
        V::Double(d) => M::Double(*d),
        V::Bytes(b) => M::Bytes(b.to_vec()),
        V::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => M::Date(*year, *month, *day, *hour, *minute, *second, *micros),
        V::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        } => M::Time(*negative, *days, *hours, *minutes, *seconds, *micros),
    }
}

/// A connect error that means the server is not there (refused, reset, closed mid-handshake).
fn is_unreachable(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Io(_)
            | mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)
    )
}

fn is_connection_error(e: &mysql_async::Error) -> bool {
    use mysql_async::DriverError as D;
    match e {
        mysql_async::Error::Server(_) => false,
        mysql_async::Error::Driver(d) => !matches!(
            d,
            D::StmtParamsMismatch { .. }
                | D::StmtParamsNumberExceedsLimit { .. }
                | D::Params(_)
                | D::MixedParams
                | D::FromValue { .. }
                | D::FromRow { .. }
                | D::LocalInfile(_)
        ),
        _ => true,
    }
}

async fn drain<P: mysql_async::prelude::Protocol>(
    qr: &mut QueryResult<'_, 'static, P>,
) -> Result<(u64, u64), mysql_async::Error> {
    let mut rows = 0u64;
    let mut affected = 0u64;
    loop {
        if qr.columns_ref().is_empty() {
            affected += qr.affected_rows();
        }
        if qr.is_empty() {
            break;
        }
        qr.for_each(|_| rows += 1).await?;
    }
    Ok((rows, affected))
}

impl Session {
    fn new(ctx: Arc<Ctx>, stream: &SessionStream) -> Self {
        let open = &stream.open;
        let skip_all = if ctx.cfg.filters.session_sampled(&open.key) {
            None
        } else {
            Some(SkipReason::SampledOut)
        };
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
        let mut stats = EngineStats::default();
        if open.midstream {
            stats.sessions_midstream = 1;
        }
        let backoff = ctx.cfg.backoff_min;
        let lag = if matches!(ctx.cfg.pacing, Pacing::Offline { speed: None, .. }) {
            None
        } else {
            Some(Vec::new())
        };
        Self {
            key: open.key,
            id: open.id,
            midstream: open.midstream,
            last_lag_us: 0,
            ctx,
            user: None,
            db: None,
            identity_checked: false,
            skip_all,
            conn: None,
            ever_connected: false,
            idle_closed: false,
            backoff,
            retry_at: None,
            retry_err: None,
            down_since: None,
            down_epoch: 0,
            gave_up: false,
            prod_state: ProdState::default(),
            stmts: HashMap::new(),
            last_prepared: None,
            clock,
            stats,
            lag,
            fps: FpCache::default(),
        }
    }

    fn finish(mut self) {
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

    fn flush_lag(&mut self) {
        if let Some(buf) = self.lag.as_mut() {
            let mut g = self.ctx.totals.lock().unwrap_or_else(|e| e.into_inner());
            for v in buf.drain(..) {
                g.1.saturating_record(v);
            }
        }
    }

    fn skip(&mut self, r: SkipReason) {
        bump(&mut self.stats.skipped, r.as_str());
        self.ctx.live.skipped.fetch_add(1, Ordering::Relaxed);
    }

    fn on_login(&mut self, l: &Login) {
        if l.user.is_some() {
            self.user = l.user.clone();
        }
        if l.db.is_some() {
            self.db = l.db.clone();
        }
        if self.skip_all == Some(SkipReason::SampledOut) {
            return;
        }
        if l.tls {
            self.skip_all = Some(SkipReason::Tls);
        } else if !l.ok && !l.midstream && l.error_code.is_some() {
            self.skip_all.get_or_insert(SkipReason::LoginFailed);
        }
    }

    async fn resolve_identity(&mut self) {
        if self.identity_checked {
            return;
        }
        self.identity_checked = true;
        if !self.midstream || (self.user.is_some() && self.db.is_some()) {
            return;
        }
        if let Some(prod) = &self.ctx.prod {
            let found = tokio::time::timeout(
                self.ctx.cfg.connect_timeout * 2,
                prod.lookup(self.key.client),
            )
            .await;
            match found {
                Err(_) => tracing::warn!(session = self.id, "prod processlist lookup timed out"),
                Ok(Ok(Some(info))) => {
                    self.stats.sessions_processlist_resolved += 1;
                    if self.user.is_none() {
                        self.user = info.user;
                    }
                    if self.db.is_none() {
                        self.db = info.db;
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(session = self.id, error = %e, "prod processlist lookup failed")
                }
            }
        }
        if self.db.is_none() {
            self.db = self
                .ctx
                .cfg
                .default_db
                .clone()
                .or_else(|| self.ctx.cfg.target.db.clone());
        }
    }

    /// Handle one event; true when shutdown interrupted it.
    async fn handle(&mut self, ev: SessionEvent, sd: &mut watch::Receiver<bool>) -> bool {
        match ev {
            SessionEvent::Open(_) => false,
            SessionEvent::Login(l) => {
                self.on_login(&l);
                false
            }
            SessionEvent::Close(_) => {
                self.disconnect().await;
                false
            }
            SessionEvent::Command(rec) => self.command(*rec, sd).await,
        }
    }

    async fn command(&mut self, rec: CommandRecord, sd: &mut watch::Receiver<bool>) -> bool {
        self.stats.commands_seen += 1;
        self.ctx.live.commands_seen.fetch_add(1, Ordering::Relaxed);
        if rec.flags.after_gap {
            self.stats.commands_after_gap += 1;
        }
        if let Some(u) = &rec.user {
            if self.user.as_deref() != Some(&**u) {
                self.user = Some(u.to_string());
            }
        }
        if let Some(d) = &rec.db {
            if self.db.as_deref() != Some(&**d) {
                self.db = Some(d.to_string());
            }
        }
        if let Some(r) = self.skip_all {
            self.skip(r);
            return false;
        }
        self.resolve_identity().await;
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
            let now_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            self.record_lag(now_us.saturating_sub(rec.ts_us));
        }
        self.dispatch(rec).await;
        false
    }

    fn record_lag(&mut self, lag: u64) {
        self.last_lag_us = lag;
        if let Some(buf) = self.lag.as_mut() {
            buf.push(lag.max(1));
            if buf.len() >= 256 {
                self.flush_lag();
            }
        }
        self.ctx.live.lag_last_us.store(lag, Ordering::Relaxed);
        self.ctx.live.lag_max_us.fetch_max(lag, Ordering::Relaxed);
    }

    fn identity_skip(&self, db: Option<&str>) -> Option<SkipReason> {
        self.ctx
            .cfg
            .filters
            .check_identity(db, self.user.as_deref())
    }

    async fn dispatch(&mut self, mut rec: CommandRecord) {
        // MariaDB's "last prepared statement" id (prepare + execute sent together).
        if let Command::StmtExecute { stmt_id, .. }
        | Command::StmtSendLongData { stmt_id, .. }
        | Command::StmtClose { stmt_id }
        | Command::StmtReset { stmt_id } = &mut rec.command
        {
            if *stmt_id == u32::MAX {
                if let Some(last) = self.last_prepared {
                    *stmt_id = last;
                }
            }
        }
        let f = &self.ctx.cfg.filters;
        if rec.flags.too_large && rec.command.sql().is_some_and(|s| s.is_empty()) {
            self.skip(SkipReason::TooLarge);
            return;
        }
        if !matches!(
            rec.command,
            Command::Quit | Command::InitDb { .. } | Command::StmtClose { .. }
        ) {
            if let Some(r) = self.identity_skip(self.db.as_deref()) {
                self.skip(r);
                return;
            }
        }
        match &rec.command {
            Command::Query { sql, .. } => {
                if rec.response.local_infile {
                    self.skip(SkipReason::LocalInfile);
                    return;
                }
                let facts = self.sql_facts(sql);
                if let Some(r) = facts.skip {
                    self.skip(r);
                    return;
                }
                if rec.response.status != ResponseStatus::Err {
                    self.prod_state.observe(sql);
                }
                let res = self.run_query(sql).await;
                let example = truncate_example(sql, self.ctx.cfg.example_len);
                let name = rec.command.name();
                self.emit_fp(
                    &rec,
                    name,
                    facts.fingerprint,
                    facts.fingerprint_id,
                    example,
                    res,
                );
            }
            Command::InitDb { schema } => {
                if let Some(r) = self.identity_skip(Some(schema)) {
                    self.db = Some(schema.clone());
                    self.skip(r);
                    return;
                }
                let test_db = self.ctx.cfg.identities.map_db(schema).to_owned();
                let sql = format!("USE `{}`", test_db.replace('`', "``"));
                let res = self.run_query(sql.as_bytes()).await;
                if matches!(&res, Exec::Done(t) if t.status == ResponseStatus::Ok) {
                    self.db = Some(schema.clone());
                }
                self.emit(&rec, Arc::from("COM_INIT_DB"), Arc::from(sql.as_str()), res);
            }
            Command::Quit => {
                if self.conn.is_some() {
                    self.stats.replayed_no_response += 1;
                    self.ctx.live.replayed_no_response.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.skip(SkipReason::NothingToSend);
                }
                self.disconnect().await;
            }
            Command::Ping => {
                let res = self
                    .timed(|c| Box::pin(async move { c.ping().await.map(|_| (0, 0)) }))
                    .await;
                self.emit(&rec, Arc::from("COM_PING"), Arc::from("COM_PING"), res);
            }
            Command::Statistics => self.skip(SkipReason::Statistics),
            Command::FieldList { .. } => self.skip(SkipReason::FieldList),
            Command::StmtFetch { .. } => self.skip(SkipReason::StmtFetch),
            Command::SetOption { .. } => self.skip(SkipReason::SetOption),
            Command::BinlogDump { .. } => self.skip(SkipReason::Replication),
            Command::Unknown { .. } => self.skip(SkipReason::UnknownCommand),
            Command::ProcessKill { .. } => match f.check_class(StatementClass::Dangerous) {
                Some(r) => self.skip(r),
                None => self.skip(SkipReason::Unsupported),
            },
            Command::Other { code } => {
                let r = match *code {
                    mrte_capture::mysql::consts::com::REGISTER_SLAVE => SkipReason::Replication,
                    c => match classify_command_code(c).and_then(|k| f.check_class(k)) {
                        Some(r) => r,
                        None => SkipReason::Unsupported,
                    },
                };
                self.skip(r);
            }
            Command::StmtPrepare { sql } => self.prepare(&rec, sql.clone()).await,
            Command::StmtExecute { .. } => self.execute(&rec).await,
            Command::StmtSendLongData {
                stmt_id,
                param_id,
                data,
            } => match self.stmts.get_mut(stmt_id) {
                Some(e) if e.skip.is_none() => {
                    e.long_data
                        .entry(*param_id)
                        .or_default()
                        .extend_from_slice(data);
                    self.stats.replayed_no_response += 1;
                    self.ctx.live.replayed_no_response.fetch_add(1, Ordering::Relaxed);
                }
                Some(e) => {
                    let r = e.skip.unwrap_or(SkipReason::StatementSkipped);
                    self.skip(r);
                }
                None => self.lose("unknown_statement"),
            },
            Command::StmtReset { stmt_id } => {
                if let Some(e) = self.stmts.get_mut(stmt_id) {
                    e.long_data.clear();
                }
                self.skip(SkipReason::StmtReset);
            }
            Command::StmtClose { stmt_id } => match self.stmts.remove(stmt_id) {
                Some(e) => match (e.skip, e.test) {
                    (Some(r), _) => self.skip(r),
                    (None, Some(stmt)) => {
                        if self.conn.is_none() {
                            self.skip(SkipReason::NothingToSend);
                        }
                        if let Some(c) = self.conn.as_mut() {
                            let ok =
                                tokio::time::timeout(self.ctx.cfg.command_timeout, c.close(stmt))
                                    .await
                                    .map(|r| r.is_ok())
                                    .unwrap_or(false);
                            if ok {
                                self.stats.replayed_no_response += 1;
                    self.ctx.live.replayed_no_response.fetch_add(1, Ordering::Relaxed);
                            } else {
                                self.drop_conn();
                                self.lose("connection_lost");
                            }
                        }
                    }
                    (None, None) => self.skip(SkipReason::NothingToSend),
                },
                None => self.lose("unknown_statement"),
            },
            Command::ChangeUser { user, db, .. } => {
                let (tu, tp) = self
                    .ctx
                    .cfg
                    .identities
                    .map_user(Some(user), &self.ctx.cfg.target);
                let opts = ChangeUserOpts::default()
                    .with_user(Some(tu.to_owned()))
                    .with_pass(tp.map(str::to_owned))
                    .with_db_name(
                        db.as_deref()
                            .map(|d| self.ctx.cfg.identities.map_db(d).to_owned()),
                    );
                let res = self
                    .timed(|c| Box::pin(async move { c.change_user(opts).await.map(|_| (0, 0)) }))
                    .await;
                if rec.response.status != ResponseStatus::Err {
                    self.user = Some(user.clone());
                    self.db = db.clone();
                    self.stmts.clear();
                }
                self.emit(
                    &rec,
                    Arc::from("COM_CHANGE_USER"),
                    Arc::from("COM_CHANGE_USER"),
                    res,
                );
            }
            Command::ResetConnection => {
                let res = self
                    .timed(|c| Box::pin(async move { c.reset().await.map(|_| (0, 0)) }))
                    .await;
                self.stmts.clear();
                self.emit(
                    &rec,
                    Arc::from("COM_RESET_CONNECTION"),
                    Arc::from("COM_RESET_CONNECTION"),
                    res,
                );
            }
        }
    }

    async fn prepare(&mut self, rec: &CommandRecord, sql: Box<[u8]>) {
        let prod_id = rec.response.prepare_ok.as_ref().map(|p| p.stmt_id);
        self.last_prepared = prod_id;
        let (fingerprint, fingerprint_id) = self.fps.of_sql(&sql);
        let mut entry = StmtEntry {
            sql: Arc::from(sql),
            fingerprint_id,
            fingerprint,
            example: Arc::from(""),
            skip: None,
            test: None,
            long_data: BTreeMap::new(),
        };
        entry.example = truncate_example(&entry.sql, self.ctx.cfg.example_len);
        entry.skip = self.ctx.cfg.filters.check_sql(&entry.sql);
        if let Some(r) = entry.skip {
            self.skip(r);
            if let Some(id) = prod_id {
                self.stmts.insert(id, entry);
            }
            return;
        }
        let sql = entry.sql.clone();
        let mut prepared = None;
        let res = self
            .timed_with(
                |c| {
                    Box::pin(async move {
                        let st = c.prep(&*sql).await?;
                        Ok(((0, 0), Some(st)))
                    })
                },
                &mut prepared,
            )
            .await;
        self.emit(
            rec,
            Arc::from("COM_STMT_PREPARE"),
            entry.example.clone(),
            res,
        );
        match prod_id {
            Some(id) => {
                entry.test = prepared;
                if let Some(old) = self.stmts.insert(id, entry) {
                    self.close_quietly(old).await;
                }
            }
            None => {
                if let Some(st) = prepared {
                    self.close_quietly(StmtEntry {
                        test: Some(st),
                        ..entry
                    })
                    .await;
                }
            }
        }
    }

    async fn close_quietly(&mut self, e: StmtEntry) {
        if let (Some(st), Some(c)) = (e.test, self.conn.as_mut()) {
            if tokio::time::timeout(self.ctx.cfg.command_timeout, c.close(st))
                .await
                .map(|r| r.is_err())
                .unwrap_or(true)
            {
                self.drop_conn();
            }
        }
    }

    async fn execute(&mut self, rec: &CommandRecord) {
        let Command::StmtExecute {
            stmt_id,
            params,
            params_unknown,
            ..
        } = &rec.command
        else {
            return;
        };
        let Some(entry) = self.stmts.get(stmt_id) else {
            self.emit(
                rec,
                Arc::from("COM_STMT_EXECUTE"),
                Arc::from(""),
                Exec::Lost(format!(
                    "unknown_statement: statement {stmt_id} was not prepared in the capture"
                )),
            );
            return;
        };
        if let Some(r) = entry.skip {
            self.skip(r);
            return;
        }
        let (fp, fp_id, example, sql) = (
            entry.fingerprint.clone(),
            entry.fingerprint_id,
            entry.example.clone(),
            entry.sql.clone(),
        );
        if *params_unknown {
            self.emit_fp(
                rec,
                "COM_STMT_EXECUTE",
                fp,
                fp_id,
                example,
                Exec::Lost("params_unknown".into()),
            );
            return;
        }
        if let Err(e) = self.ensure_conn().await {
            self.emit_fp(rec, "COM_STMT_EXECUTE", fp, fp_id, example, e.into());
            return;
        }
        // Re-prepare after a reconnect (or a failed earlier prepare) from the remembered text.
        let stmt = match self.stmts.get(stmt_id).and_then(|e| e.test.clone()) {
            Some(st) => st,
            None => {
                let mut st = None;
                let res = self
                    .timed_with(
                        |c| {
                            Box::pin(async move {
                                let s = c.prep(&*sql).await?;
                                Ok(((0, 0), Some(s)))
                            })
                        },
                        &mut st,
                    )
                    .await;
                match st {
                    Some(st) => {
                        if let Some(e) = self.stmts.get_mut(stmt_id) {
                            e.test = Some(st.clone());
                        }
                        st
                    }
                    None => {
                        self.emit_fp(rec, "COM_STMT_EXECUTE", fp, fp_id, example, res);
                        return;
                    }
                }
            }
        };
        let mut values: Vec<mysql_async::Value> = params.iter().map(to_value).collect();
        if let Some(e) = self.stmts.get_mut(stmt_id) {
            for (idx, data) in std::mem::take(&mut e.long_data) {
                if let Some(v) = values.get_mut(usize::from(idx)) {
                    *v = mysql_async::Value::Bytes(data);
                }
            }
        }
        let p = if values.is_empty() {
            Params::Empty
        } else {
            Params::Positional(values)
        };
        let res = self
            .timed(|c| {
                Box::pin(async move {
                    let mut qr: QueryResult<'_, 'static, BinaryProtocol> =
                        c.exec_iter(&stmt, p).await?;
                    drain(&mut qr).await
                })
            })
            .await;
        self.emit_fp(rec, "COM_STMT_EXECUTE", fp, fp_id, example, res);
    }

    /// Filter verdict and fingerprint of a statement, memoised by exact text for the run (the
    /// same text always gets the same answers: the filters are fixed for a run).
    fn sql_facts(&mut self, sql: &[u8]) -> SqlFacts {
        let memo = sql.len() <= SQL_MEMO_MAX_LEN;
        if memo {
            let m = self.ctx.sql_memo.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = m.get(sql) {
                return f.clone();
            }
        }
        let (fingerprint, fingerprint_id) = self.fps.of_sql(sql);
        let facts = SqlFacts {
            skip: self.ctx.cfg.filters.check_sql(sql),
            fingerprint,
            fingerprint_id,
        };
        if memo {
            let mut m = self.ctx.sql_memo.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() >= SQL_MEMO_MAX_ENTRIES {
                m.clear();
            }
            m.insert(sql.into(), facts.clone());
        }
        facts
    }

    async fn run_query(&mut self, sql: &[u8]) -> Exec {
        let sql: Vec<u8> = sql.to_vec();
        self.timed(|c| {
            Box::pin(async move {
                let mut qr: QueryResult<'_, 'static, TextProtocol> = c.query_iter(sql).await?;
                drain(&mut qr).await
            })
        })
        .await
    }

    async fn timed<F>(&mut self, f: F) -> Exec
    where
        F: for<'c> FnOnce(
                &'c mut Conn,
            ) -> std::pin::Pin<
                Box<dyn Future<Output = Result<(u64, u64), mysql_async::Error>> + Send + 'c>,
            > + Send
            + 'static,
    {
        let mut none: Option<()> = None;
        self.timed_with(
            |c| {
                Box::pin(async move {
                    let r = f(c).await?;
                    Ok((r, None))
                })
            },
            &mut none,
        )
        .await
    }

    /// Run `f` on the connection (connecting first if needed), timing it; connection errors and
    /// timeouts drop the connection.
    async fn timed_with<T, F>(&mut self, f: F, out: &mut Option<T>) -> Exec
    where
        F: for<'c> FnOnce(
                &'c mut Conn,
            ) -> std::pin::Pin<
                Box<
                    dyn Future<Output = Result<((u64, u64), Option<T>), mysql_async::Error>>
                        + Send
                        + 'c,
                >,
            > + Send,
        T: Send,
    {
        if let Err(e) = self.ensure_conn().await {
            return e.into();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Exec::Lost("connection_lost".into());
        };
        let start = Instant::now();
        let r = tokio::time::timeout(self.ctx.cfg.command_timeout, f(conn)).await;
        let latency_us = start.elapsed().as_micros() as u64;
        match r {
            Err(_) => {
                tracing::debug!(session = self.id, "command timed out on the test server");
                self.drop_conn();
                Exec::Failed(format!(
                    "timeout: no answer in {:?}",
                    self.ctx.cfg.command_timeout
                ))
            }
            Ok(Ok(((rows, affected), v))) => {
                *out = v;
                Exec::Done(TestResponse {
                    status: ResponseStatus::Ok,
                    rows,
                    affected,
                    latency_us,
                    ..TestResponse::default()
                })
            }
            Ok(Err(mysql_async::Error::Server(e))) => Exec::Done(TestResponse {
                status: ResponseStatus::Err,
                error_code: Some(e.code),
                error_message: Some(e.message),
                latency_us,
                ..TestResponse::default()
            }),
            Ok(Err(e)) if is_connection_error(&e) => {
                tracing::debug!(session = self.id, error = %e, "test connection lost");
                self.drop_conn();
                Exec::Lost("connection_lost".into())
            }
            Ok(Err(e)) => Exec::Failed(format!("driver_error: {e}")),
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
        for e in self.stmts.values_mut() {
            e.test = None;
        }
    }

    async fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            self.ctx
                .live
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            let _ = tokio::time::timeout(Duration::from_secs(2), c.disconnect()).await;
        }
        for e in self.stmts.values_mut() {
            e.test = None;
        }
    }

    /// Drop the connection after a panic mid-command (its state is unknown).
    fn forget_conn(&mut self) {
        self.drop_conn();
    }

    async fn ensure_conn(&mut self) -> Result<(), ConnErr> {
        if self.conn.is_some() {
            return Ok(());
        }
        if self.gave_up {
            return Err(ConnErr::Lost(
                "target_unavailable: stopped reconnecting (--reconnect-for)".into(),
            ));
        }
        if let Some(t) = self.retry_at {
            let back = self.ctx.up_epoch.load(Ordering::Relaxed) != self.down_epoch;
            if Instant::now() < t && !back {
                return Err(self
                    .retry_err
                    .clone()
                    .unwrap_or_else(|| ConnErr::Lost("target_unavailable".into())));
            }
        }
        let ctx = self.ctx.clone();
        let cfg = &ctx.cfg;
        let (user, pass) = cfg.identities.map_user(self.user.as_deref(), &cfg.target);
        let db = self.db.as_deref().map(|d| cfg.identities.map_db(d));
        let opts = cfg.target.opts(user, pass, db);
        let err = match tokio::time::timeout(cfg.connect_timeout, Conn::new(opts)).await {
            Ok(Ok(c)) => {
                self.stats.connects += 1;
                if self.idle_closed {
                    self.stats.reopened_after_idle += 1;
                    self.idle_closed = false;
                } else if self.ever_connected {
                    self.stats.reconnects += 1;
                    self.ctx.live.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.note_state_lost();
                }
                self.prod_state = ProdState::default();
                self.ctx
                    .live
                    .connections_open
                    .fetch_add(1, Ordering::Relaxed);
                self.ever_connected = true;
                if self.ctx.target_down.swap(false, Ordering::Relaxed) {
                    self.ctx.up_epoch.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target = %cfg.target, "test server reachable again");
                }
                self.backoff = cfg.backoff_min;
                self.retry_at = None;
                self.retry_err = None;
                self.down_since = None;
                self.conn = Some(c);
                return Ok(());
            }
            Ok(Err(mysql_async::Error::Server(e))) => {
                // Access denied, unknown database: a config problem, not an outage; back off too.
                tracing::warn!(session = self.id, code = e.code, message = %e.message, "connect to target refused");
                ConnErr::Failed(format!("connect_refused: {} {}", e.code, e.message))
            }
            Ok(Err(e)) if is_unreachable(&e) => {
                if !self.ctx.target_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target = %self.ctx.cfg.target, error = %e,
                        "test server unreachable: commands are counted as lost (target_unavailable) until it is back");
                }
                ConnErr::Lost(format!("target_unavailable: {e}"))
            }
            Ok(Err(e)) => {
                tracing::warn!(session = self.id, error = %e, "connect to target failed");
                ConnErr::Failed(format!("connect_error: {e}"))
            }
            Err(_) => ConnErr::Failed(format!(
                "connect_timeout: no handshake in {:?}",
                self.ctx.cfg.connect_timeout
            )),
        };
        self.stats.connect_failures += 1;
        let now = Instant::now();
        let since = *self.down_since.get_or_insert(now);
        if self
            .ctx
            .cfg
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
        self.schedule_retry();
        self.down_epoch = self.ctx.up_epoch.load(Ordering::Relaxed);
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

    fn schedule_retry(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(self.ctx.cfg.backoff_max);
    }

    fn lose(&mut self, reason: &str) {
        bump(&mut self.stats.lost, reason);
        self.ctx.live.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn emit(&mut self, rec: &CommandRecord, fp: Arc<str>, example: Arc<str>, res: Exec) {
        let id = self.fps.id_of(&fp);
        let name = rec.command.name();
        self.emit_fp(rec, name, fp, id, example, res);
    }

    fn emit_fp(
        &mut self,
        rec: &CommandRecord,
        command: &'static str,
        fingerprint: Arc<str>,
        fingerprint_id: u64,
        example: Arc<str>,
        res: Exec,
    ) {
        let (test, failure) = match res {
            Exec::Done(t) => {
                self.stats.replayed += 1;
                self.ctx.live.replayed.fetch_add(1, Ordering::Relaxed);
                if t.status == ResponseStatus::Err {
                    self.stats.test_errors += 1;
                    self.ctx.live.test_errors.fetch_add(1, Ordering::Relaxed);
                }
                if rec.response.status == ResponseStatus::Err {
                    self.stats.prod_errors += 1;
                }
                (Some(t), None)
            }
            Exec::Lost(reason) => {
                let key = reason.split(':').next().unwrap_or("lost").to_owned();
                self.lose(&key);
                (None, Some(reason))
            }
            Exec::Failed(reason) => {
                let key = reason.split(':').next().unwrap_or("failed").to_owned();
                bump(&mut self.stats.failed, &key);
                self.ctx.live.failed.fetch_add(1, Ordering::Relaxed);
                (None, Some(reason))
            }
        };
        let o = Outcome {
            session: self.id,
            command,
            fingerprint,
            fingerprint_id,
            example,
            prod: rec.response.clone(),
            prod_us: rec.prod_us(),
            test,
            failure,
            lag_us: self.last_lag_us,
        };
        let mut sink = self.ctx.sink.lock().unwrap_or_else(|e| e.into_inner());
        (*sink)(o);
    }
}
