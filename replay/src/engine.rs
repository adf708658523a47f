//! Replay engine: tokio workers, one test-server connection per captured session.
//!
//! # What it does
//! [`Engine::run`] takes the per-session streams that [`mrte_capture::ring::RingSink`] hands out
//! (live capture and offline pcap replay use the same path), and for each session spawns one
//! tokio task, the executor ([`crate::exec`]'s session task: a sans-IO [`crate::plan::Planner`]
//! carried out on mrte's own [`crate::wire::WireConn`]), which:
//! - keeps the session's identity (user and default database from its Login, COM_INIT_DB,
//!   COM_CHANGE_USER, each command's `db`; for sessions open before capture: production's
//!   processlist via `--prod`, else `--default-db`), mapped with `--user-map`/`--db-map`;
//! - opens its own connection to the target lazily on the first command to replay, with the
//!   capabilities and collation the prod client negotiated, and closes it on COM_QUIT, on the end
//!   of the session's stream (FIN, RST, capture idle/eviction, end of input) and after
//!   `idle_timeout` without events, so no connection outlives its session;
//! - replays every command byte for byte as captured (rewriting only statement ids, the schema
//!   under `--db-map` and credentials under `--user-map`), with the same pipelining as prod;
//! - applies [`crate::filter::Filters`] (read-only, dangerous, db/user/regex filters, sampling);
//! - paces commands per [`Pacing`] and records lag behind schedule;
//! - on a broken connection, reconnects with capped exponential backoff (50 ms doubling to
//!   500 ms) for as long as the run lasts, or until [`ReplayConfig::reconnect_for`]; as soon as
//!   one session reconnects after an outage the others retry at once;
//! - counts every command it takes: replayed, skipped (by [`crate::filter::SkipReason`]), lost
//!   or failed, each by reason ([`EngineStats`]); lost and failed commands are reported as
//!   [`Outcome`]s with a failure;
//! - runs each step inside `catch_unwind`: a panic drops the connection and counts the rest of
//!   the session as lost (`session_panic`); a session task that dies anyway is counted in
//!   `sessions_panicked` and the report's books do not balance.
//!
//! Session tasks run on the runtime that calls [`Engine::run`], or round-robin on the runtimes
//! given with [`Engine::with_workers`] (`--replay-threads`).
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
//! # What it does not do
//! It does not decode packets, compare prod with test, or format reports (see
//! [`crate::compare`] and [`crate::report`]). It never blocks the capture thread: it only pops
//! rings. Cross-session commit order (`--sync commit`) is the executor's, through [`crate::sync`].
//! mysql_async is used only
//! for control-plane queries (prod's processlist, [`crate::target`]), never to replay.
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

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use hdrhistogram::Histogram;
use mrte_capture::event::SessionEvent;
use mrte_capture::ring::SessionStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::filter::{Filters, SkipReason};
use crate::pacing::{Pacing, Timeline};
use crate::target::{Identities, ProdLookup, TargetDsn};
use crate::Outcome;

mod stats;
pub use stats::{EngineStats, LagStats, LiveCounters, LiveSnapshot};

/// Default [`ReplayConfig::max_replay_sessions`].
pub const DEFAULT_MAX_REPLAY_SESSIONS: usize = 2048;

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
    /// Attempts at sending again a transaction test's server chose as a deadlock victim where
    /// prod's did not (`--deadlock-retries`; 0: none).
    pub deadlock_retries: u32,
    /// Set test's session clock to prod's before statements that may read it (`--prod-clock`).
    pub prod_clock: bool,
    /// Set test's `insert_id` to prod's generated id before an INSERT (`--prod-insert-id`).
    pub prod_insert_id: bool,
    /// Most sessions replayed at once (`--max-replay-sessions`; 0: no bound). A session that
    /// arrives while this many are replayed is not replayed: its commands are taken from its
    /// ring as they come and counted as lost, reason `replay_backlog` (`sessions_shed`).
    pub max_replay_sessions: usize,
    /// Commit-order synchronisation (`--sync`, `--sync-timeout`).
    pub sync: crate::sync::SyncConfig,
    /// Global orders of commits the capture dropped on a full ring
    /// (`RingSink::report_dropped_commits`): the gate settles them instead of waiting.
    pub dropped_commits: Option<crossbeam_channel::Receiver<u64>>,
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
            deadlock_retries: crate::plan::DEFAULT_DEADLOCK_RETRIES,
            prod_clock: true,
            prod_insert_id: true,
            max_replay_sessions: DEFAULT_MAX_REPLAY_SESSIONS,
            sync: crate::sync::SyncConfig::default(),
            dropped_commits: None,
        }
    }
}

fn new_lag_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// What the session tasks share.
pub(crate) struct Ctx {
    pub(crate) cfg: ReplayConfig,
    pub(crate) live: Arc<LiveCounters>,
    pub(crate) totals: Mutex<(EngineStats, Histogram<u64>)>,
    pub(crate) sink: Mutex<Box<dyn FnMut(Outcome) + Send>>,
    pub(crate) timeline: Timeline,
    pub(crate) prod: Option<ProdLookup>,
    pub(crate) target_down: AtomicBool,
    /// Bumped each time a connect succeeds after the target was down: sessions waiting out a
    /// backoff retry at once instead of at their next scheduled attempt.
    pub(crate) up_epoch: AtomicU64,
    /// The commit gate (`--sync commit`).
    pub(crate) sync: Option<Arc<crate::sync::CommitGate>>,
}

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
            sync: (self.cfg.sync.mode == crate::sync::SyncMode::Commit).then(|| {
                Arc::new(
                    crate::sync::CommitGate::new(self.cfg.sync)
                        .with_dropped(self.cfg.dropped_commits.clone()),
                )
            }),
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
        // The bridge sleeps until a session arrives or `stop` is dropped (no 20 ms poll).
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let bridge = tokio::task::spawn_blocking(move || {
            let mut left = Vec::new();
            loop {
                crossbeam_channel::select! {
                    recv(sessions) -> s => match s {
                        Ok(s) => {
                            if let Err(e) = sess_tx.send(s) {
                                left.push(e.0);
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                    recv(stop_rx) -> _ => break,
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
                        let max = ctx.cfg.max_replay_sessions;
                        if max > 0 && ctx.live.active_sessions.load(Ordering::Relaxed) >= max as u64 {
                            tasks.spawn(shed_task(ctx.clone(), s, sd_rx.clone()));
                            continue;
                        }
                        // Counted here, not when the task first runs, so a burst of new
                        // sessions cannot overshoot the bound.
                        ctx.live.active_sessions.fetch_add(1, Ordering::Relaxed);
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
        drop(stop);
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
        stats.sync = ctx.sync.as_ref().map(|g| g.stats());
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

pub(crate) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// [`wait_shutdown`] made cheap to poll once per session step: one waiter, registered with
/// the channel once per session (not once per step), and polled again only when the
/// channel's version moved or the task's waker changed. An unchanged version with the same
/// waker registered means no shutdown was sent since the waiter last looked, and the send
/// wakes that waker, so shutdown is seen as soon as with a fresh [`wait_shutdown`] per step.
pub(crate) struct ShutdownWatch {
    /// Never marked seen: `has_changed` turns true at the first send after it was cloned.
    probe: watch::Receiver<bool>,
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// The waker `wait` was last left pending with.
    waker: Option<std::task::Waker>,
    done: bool,
}

impl ShutdownWatch {
    pub(crate) fn new(sd: &watch::Receiver<bool>) -> Self {
        let mut rx = sd.clone();
        Self {
            probe: sd.clone(),
            wait: Box::pin(async move { wait_shutdown(&mut rx).await }),
            waker: None,
            done: false,
        }
    }

    /// Resolves once shutdown was sent (at once if it already was).
    pub(crate) fn wait(&mut self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_shutdown(cx))
    }

    fn poll_shutdown(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(());
        }
        if let Some(w) = &self.waker {
            if w.will_wake(cx.waker()) && matches!(self.probe.has_changed(), Ok(false)) {
                return Poll::Pending;
            }
        }
        match self.wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                Poll::Ready(())
            }
            Poll::Pending => {
                if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    self.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

struct ActiveGuard(Arc<LiveCounters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A replayed session (already counted in `active_sessions`).
async fn session_task(ctx: Arc<Ctx>, stream: SessionStream, sd: watch::Receiver<bool>) {
    let _guard = ActiveGuard(ctx.live.clone());
    crate::exec::session_task(ctx, stream, sd).await
}

/// A session over [`ReplayConfig::max_replay_sessions`]: its events are taken as they come (so
/// its ring holds nothing) and its commands counted as lost, `replay_backlog`.
async fn shed_task(ctx: Arc<Ctx>, mut stream: SessionStream, mut sd: watch::Receiver<bool>) {
    let mut stats = EngineStats {
        sessions_shed: 1,
        sessions_midstream: u64::from(stream.open.midstream),
        ..EngineStats::default()
    };
    let take = |ev: SessionEvent, stats: &mut EngineStats| {
        if matches!(ev, SessionEvent::Command(_)) {
            stats.commands_seen += 1;
            bump(&mut stats.lost, LOST_BACKLOG);
            ctx.live.commands_seen.fetch_add(1, Ordering::Relaxed);
            ctx.live.lost.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        let ev = tokio::select! {
            biased;
            _ = wait_shutdown(&mut sd) => break,
            ev = stream.next() => ev,
        };
        match ev {
            Some(ev) => take(ev, &mut stats),
            None => break,
        }
    }
    while let Some(ev) = stream.try_pop() {
        take(ev, &mut stats);
    }
    let dropped = stream.dropped();
    if dropped > 0 {
        stats.sessions_overflowed = 1;
        stats.ring_dropped_events = dropped;
        stats.ring_dropped_commands = stream.dropped_commands();
    }
    if stats.lost_total() > 0 {
        stats.sessions_with_losses = 1;
    }
    ctx.totals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .merge(&stats);
}

/// Lost reason of the commands of a session over [`ReplayConfig::max_replay_sessions`].
pub const LOST_BACKLOG: &str = "replay_backlog";

pub(crate) fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(v) => *v += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}
