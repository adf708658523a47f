//! `mrte run` (live capture + replay) and `mrte replay` (capture file + replay): the glue from
//! flags to the capture source, the replay engine, the comparison, the live line and the reports.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use mrte_capture::pipeline::Pipeline;
use mrte_capture::ring::RingSink;
use mrte_capture::stats::{LiveStats, Stats};
use mrte_replay::compare::Comparison;
use mrte_replay::engine::{Engine, EngineStats, LiveCounters, ReplayConfig};
use mrte_replay::filter::{FilterArgs, Filters};
use mrte_replay::pacing::Pacing;
use mrte_replay::report::{FailOn, Report};
use mrte_replay::sync::{SnapshotCheck, SyncConfig, SyncMode};
use mrte_replay::target::TargetDsn;

use crate::cli::{CaptureArgs, DecodeArgs};

/// Where and how to replay.
#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Test server, mysql://user@host[:port][/db]. Give the password with --target-password-file
    /// or MRTE_TARGET_PASSWORD (a password in the DSN is moved out of the process arguments at start).
    #[arg(long, value_name = "DSN")]
    pub target: String,
    /// Read the test server's password from this file (first line).
    #[arg(long, value_name = "FILE")]
    pub target_password_file: Option<PathBuf>,
    /// Give up on one replayed command after SECS (counted as failed, reason timeout).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub target_timeout: f64,
    /// Stop reconnecting a session once the target has been unreachable for SECS (default: retry
    /// every 50..500 ms for as long as the run lasts).
    #[arg(long, value_name = "SECS")]
    pub reconnect_for: Option<f64>,
    /// After SIGINT/SIGTERM, keep replaying what is queued for at most SECS; the rest is counted
    /// as skipped (shutdown). At the end of --duration/--count everything queued is replayed.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub drain_timeout: f64,
    /// Replay connection: `wire`, the only one (the planner on mrte's own MySQL wire connection:
    /// commands byte for byte, pipelining, every command type). Kept so scripts that name it
    /// still run; the mysql_async session path is gone.
    #[arg(long, default_value = "wire", value_name = "wire", value_parser = ["wire"], hide = true)]
    pub conn: String,
    /// Most sessions replayed at once; a session that opens while this many are replayed is
    /// not replayed (its commands are counted as lost, `replay_backlog`). 0: no bound.
    #[arg(long, default_value_t = mrte_replay::engine::DEFAULT_MAX_REPLAY_SESSIONS, value_name = "N")]
    pub max_replay_sessions: usize,
    /// Commit-order synchronisation: `commit` sends a command only after every prod commit that
    /// had completed before it (on prod) is done on test, so commits land in prod's order;
    /// `none` lets sessions run free. Default: `commit`, or `none` with --read-only.
    #[arg(long, value_name = "none|commit")]
    pub sync: Option<SyncMode>,
    /// A command held at the commit gate while no commit completes on test for SECS: the
    /// commits it waits for are released in prod order (counted as sync_timeouts in the report).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub sync_timeout: f64,
    /// Gate a command only on the commits before its prod request, not also on those before
    /// its prod response (the wire hint that keeps lock waits in prod's order).
    #[arg(long)]
    pub sync_no_hint: bool,
    /// A transaction that test's server chose as a deadlock victim where prod's did not (test
    /// answered ERR 1213, prod did not) is sent again, statement by statement, at most N times,
    /// so that test ends with what prod committed. 0: never (the deadlock stays a test-only
    /// error and the transaction is missing on test).
    #[arg(long, default_value_t = mrte_replay::plan::DEFAULT_DEADLOCK_RETRIES, value_name = "N")]
    pub deadlock_retries: u32,
    /// Give test prod's clock: before a statement that may read the time (a time function such
    /// as NOW(), or a write, where DEFAULT / ON UPDATE CURRENT_TIMESTAMP may), set test's session
    /// `timestamp` to the statement's capture time, so both servers store the same times.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub prod_clock: bool,
    /// Give test prod's auto-increment ids: before an INSERT or REPLACE whose prod OK reported a
    /// generated id, set test's session `insert_id` to it (in the same SET as the clock), so rows
    /// of concurrent sessions get prod's ids whatever order test runs them in.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub prod_insert_id: bool,
    /// The position scripts/snapshot.sh printed for the snapshot test was started from; the
    /// report says whether it matches prod's position when the capture started (needs --prod).
    #[arg(long, value_name = "POS")]
    pub snapshot_pos: Option<String>,
    /// Replay threads, each driving its share of the sessions (0: one thread for everything).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub replay_threads: usize,
    /// Map a production user to a test user: prod=test[:password] (repeatable).
    #[arg(long = "user-map", value_name = "PROD=TEST[:PW]")]
    pub user_map: Vec<String>,
    /// Map a production database to a test database: prod=test (repeatable).
    #[arg(long = "db-map", value_name = "PROD=TEST")]
    pub db_map: Vec<String>,
    /// Production DSN, to look up db/user of sessions open before capture in its processlist.
    #[arg(long, value_name = "DSN")]
    pub prod: Option<String>,
    /// Database for sessions open before capture when nothing else is known.
    #[arg(long)]
    pub default_db: Option<String>,
    /// Replay only what cannot write (SELECT, SHOW, SET session, BEGIN/COMMIT, ...); the rest is skipped and counted.
    #[arg(long)]
    pub read_only: bool,
    /// Replay statements that change users/grants or stop the server (skipped by default).
    #[arg(long)]
    pub allow_dangerous: bool,
    /// Only sessions whose database is one of these (repeatable).
    #[arg(long)]
    pub include_db: Vec<String>,
    /// Never sessions whose database is one of these (repeatable).
    #[arg(long)]
    pub exclude_db: Vec<String>,
    /// Only sessions of these users (repeatable).
    #[arg(long)]
    pub include_user: Vec<String>,
    /// Only statements matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub filter: Option<String>,
    /// Never statements matching this regex.
    #[arg(long, value_name = "REGEX")]
    pub exclude: Option<String>,
    /// Replay this percentage of sessions (whole sessions, chosen by hash).
    #[arg(long, value_name = "PCT")]
    pub sample: Option<f64>,
}

/// Report outputs.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Write the JSON report here (schema: replay/REPORT.md).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Serve Prometheus metrics on ADDR (host:port, or a bare port for 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Exit non-zero when a condition holds, e.g. errors>0, p99_ratio>1.5, drops>0 (repeatable).
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<FailOn>,
    /// No live line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `mrte replay`.
#[derive(Args, Debug)]
pub struct ReplayFileArgs {
    /// Capture file (pcap or pcapng).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub file: PathBuf,
    /// Speed factor: 1.0 keeps the captured pacing per session, 2 is twice as fast, `max` does not wait.
    #[arg(long, default_value = "1.0")]
    pub speed: String,
    /// Shorten idle periods longer than SECS to SECS.
    #[arg(long, value_name = "SECS")]
    pub skip_idle: Option<f64>,
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub out: ReportArgs,
}

/// `mrte run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub out: ReportArgs,
}

pub(crate) fn replay_config(a: &ReplayArgs, pacing: Pacing) -> Result<ReplayConfig> {
    let mut target = TargetDsn::parse(&a.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    if let Some(f) = &a.target_password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--target-password-file {}", f.display()))?;
        target.password = Some(text.lines().next().unwrap_or("").to_owned());
    }
    let mut cfg = ReplayConfig::new(target);
    cfg.command_timeout = secs("--target-timeout", a.target_timeout)?;
    cfg.max_replay_sessions = a.max_replay_sessions;
    cfg.reconnect_for = a
        .reconnect_for
        .map(|s| secs("--reconnect-for", s))
        .transpose()?;
    for m in &a.user_map {
        cfg.identities
            .add_user_map(m)
            .map_err(|e| anyhow::anyhow!("--user-map {m}: {e}"))?;
    }
    for m in &a.db_map {
        cfg.identities
            .add_db_map(m)
            .map_err(|e| anyhow::anyhow!("--db-map {m}: {e}"))?;
    }
    if let Some(p) = &a.prod {
        cfg.prod = Some(TargetDsn::parse_no_env(p).map_err(|e| anyhow::anyhow!("--prod: {e}"))?);
    }
    cfg.default_db = a.default_db.clone();
    cfg.filters = Filters::from_args(&FilterArgs {
        include_db: a.include_db.clone(),
        exclude_db: a.exclude_db.clone(),
        include_user: a.include_user.clone(),
        filter: a.filter.clone(),
        exclude: a.exclude.clone(),
        sample_pct: a.sample,
        read_only: a.read_only,
        allow_dangerous: a.allow_dangerous,
    })
    .map_err(|e| anyhow::anyhow!("filters: {e}"))?;
    cfg.pacing = pacing;
    let mode = a.sync.unwrap_or(if a.read_only {
        SyncMode::None
    } else {
        SyncMode::Commit
    });
    cfg.sync = SyncConfig {
        mode,
        timeout: secs("--sync-timeout", a.sync_timeout)?,
        hint: !a.sync_no_hint,
    };
    cfg.deadlock_retries = a.deadlock_retries;
    cfg.prod_clock = a.prod_clock;
    cfg.prod_insert_id = a.prod_insert_id;
    Ok(cfg)
}

fn on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s}: expected on or off")),
    }
}

fn secs(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("{flag} {s}: expected a positive number of seconds"))
}

/// Create (or truncate) a file only its owner can read: reports hold production SQL and values.
pub fn create_private(p: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    // An existing file keeps its mode on open: tighten it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

fn write_private(p: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = create_private(p).with_context(|| format!("creating {}", p.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", p.display()))
}

/// Shared state the live line and the metrics endpoint read.
struct Live {
    capture: Arc<LiveStats>,
    engine: Arc<LiveCounters>,
    cmp: Arc<Mutex<Comparison>>,
}

impl Live {
    fn line(&self, prev: &mut (u64, u64, u64, Instant)) -> String {
        let r = Ordering::Relaxed;
        let c = &self.capture;
        let e = self.engine.snapshot();
        let (pk, cm, rp) = (c.packets.load(r), c.commands.load(r), e.replayed);
        let dt = prev.3.elapsed().as_secs_f64().max(1e-3);
        let s = format!(
            "capture {:>8.0} pps {:>7.0} cmd/s | replay {:>7.0} qps, {} sessions, lag {:.1} ms | drops kernel {} ring {} gaps {} | decode errs {} undecoded {} B panics {} | test errs {} skipped {} lost {} failed {}",
            (pk - prev.0) as f64 / dt,
            (cm - prev.1) as f64 / dt,
            (rp - prev.2) as f64 / dt,
            e.active_sessions,
            e.lag_last_us as f64 / 1000.0,
            c.kernel_drops.load(r),
            c.ring_drops.load(r),
            c.gaps.load(r),
            c.decode_errors.load(r),
            c.undecoded_bytes.load(r),
            c.decoder_panics.load(r),
            e.test_errors,
            e.skipped,
            e.lost,
            e.failed
        );
        *prev = (pk, cm, rp, Instant::now());
        match c.multi_queue_sessions.load(r) {
            0 => s,
            n => format!("{s} | multi-queue sessions {n}"),
        }
    }
}

/// `--metrics`: the capture's and the player's collectors on one endpoint.
fn serve_metrics(addr: &str, live: &Live) -> Result<()> {
    let registry = crate::metrics::registry(vec![
        Box::new(crate::metrics::CaptureCollector::new(live.capture.clone())),
        Box::new(crate::metrics::ReplayCollector::new(
            live.engine.clone(),
            Some(live.capture.clone()),
            live.cmp.clone(),
        )),
    ])?;
    crate::metrics::serve(addr, registry)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn finish(
    mode: &str,
    target: &str,
    started: Instant,
    cmp: &Comparison,
    eng: &EngineStats,
    cap: &Stats,
    out: &ReportArgs,
    interrupted: bool,
    snapshot: Option<SnapshotCheck>,
) -> Result<ExitCode> {
    let mut report = Report::build(mode, target, started.elapsed().as_secs_f64(), cmp, eng, cap);
    if let Some(c) = snapshot {
        report.sync.get_or_insert_with(Default::default).snapshot = Some(c);
    }
    if interrupted {
        report.mark_interrupted(eng);
    }
    println!("{}", report.to_text());
    if let Some(p) = &out.report {
        write_private(p, &report.to_json())?;
        println!("JSON report: {}", p.display());
    }
    if let Some(p) = &out.html {
        write_private(p, &report.to_html())?;
        println!("HTML report: {}", p.display());
    }
    let books = &report.accounting;
    if !books.balanced {
        tracing::error!(
            unaccounted = books.unaccounted,
            sessions_died = books.sessions_died,
            "the books do not balance: some captured commands have no known fate (--fail-on unaccounted>0 makes this fail the run)"
        );
    }
    let failed: Vec<String> = out
        .fail_on
        .iter()
        .filter(|f| f.fails(&report))
        .map(|f| format!("{f} (value {})", f.value(&report)))
        .collect();
    if books.nothing_replayed() {
        eprintln!(
            "mrte: nothing could be replayed: {} commands lost, {} failed (see the reasons above)",
            books.lost, books.failed
        );
        return Ok(ExitCode::from(1));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("mrte: --fail-on conditions hold: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// The replay runtime: one thread drives every session's connection. On a machine where the
/// target server shares the cores, a multi-thread runtime spends more on waking idle workers than
/// it gains (measured: 16.8k vs sysbench's 40.6k queries/s with 2 workers).
/// Replay worker threads, each driving a current-thread runtime; sessions are spread over them.
pub(crate) struct Workers {
    pub(crate) handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// `n` worker threads (0: none, sessions run on the engine's own runtime).
    pub(crate) fn start(n: usize) -> Result<Self> {
        let mut w = Workers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n {
            let rt = runtime()?;
            w.handles.push(rt.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            w.stops.push(tx);
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("mrte-replay-{i}"))
                    .spawn(move || {
                        rt.block_on(async {
                            let _ = rx.await;
                        });
                    })?,
            );
        }
        Ok(w)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("mrte-replay")
        .build()?)
}

fn spawn_live_line(live: Arc<Live>, done: Arc<AtomicBool>, quiet: bool) {
    if quiet {
        return;
    }
    std::thread::spawn(move || {
        let mut prev = (0, 0, 0, Instant::now());
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_secs(1));
            if done.load(Ordering::Acquire) {
                break;
            }
            eprintln!("{}", live.line(&mut prev));
        }
    });
}

/// `mrte replay -r FILE`.
pub fn replay_file(a: ReplayFileArgs) -> Result<ExitCode> {
    let speed = Pacing::parse_speed(&a.speed).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pacing = Pacing::Offline {
        speed,
        skip_idle: a.skip_idle.map(Duration::from_secs_f64),
    };
    let cfg = replay_config(&a.replay, pacing)?;
    let target = cfg.target.to_string();
    let engine = Engine::new(cfg);
    let cmp = Arc::new(Mutex::new(Comparison::default()));
    let capture_live = Arc::new(LiveStats::default());
    let live = Arc::new(Live {
        capture: capture_live.clone(),
        engine: engine.live(),
        cmp: cmp.clone(),
    });
    if let Some(m) = &a.out.metrics {
        serve_metrics(m, &live)?;
    }
    let started = Instant::now();
    let (mut sink, rx) = RingSink::new(4096);
    sink.set_wait_when_full(true);
    let file = a.file.clone();
    let pcfg = a.decode.pipeline_config();
    let reader = std::thread::Builder::new()
        .name("mrte-reader".into())
        .spawn(move || -> Result<Stats> {
            let mut p = Pipeline::new(pcfg);
            let r = mrte_capture::source::pcap::run_file(&file, &mut p, &mut sink);
            sink.close_all();
            let rs = sink.stats();
            p.stats_mut().ring_drops = rs.dropped_events;
            capture_live.publish(p.stats());
            r.with_context(|| format!("reading {}", file.display()))?;
            Ok(p.stats().clone())
        })?;
    let done = Arc::new(AtomicBool::new(false));
    spawn_live_line(live.clone(), done.clone(), a.out.quiet);
    let cmp2 = cmp.clone();
    let workers = Workers::start(a.replay.replay_threads)?;
    let engine = engine.with_workers(workers.handles.clone());
    let interrupted = Arc::new(AtomicBool::new(false));
    let int2 = interrupted.clone();
    let eng = runtime()?.block_on(engine.run(
        rx,
        move |o| {
            if let Ok(mut c) = cmp2.lock() {
                c.record(&o);
            }
        },
        async move {
            stop_signal().await;
            int2.store(true, Ordering::Release);
            tracing::warn!("signal received: stopping the replay, writing the report");
        },
    ));
    done.store(true, Ordering::Release);
    let cap = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let cmp = cmp
        .lock()
        .map_err(|_| anyhow::anyhow!("comparison lock poisoned"))?;
    finish(
        "replay",
        &target,
        started,
        &cmp,
        &eng,
        &cap,
        &a.out,
        interrupted.load(Ordering::Acquire),
        a.replay.snapshot_pos.as_deref().map(|p| {
            mrte_replay::sync::snapshot::check(
                p,
                Err("offline replay: prod's position when the capture started is unknown; compare it with scripts/snapshot.sh pos run then".into()),
            )
        }),
    )
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// `mrte run -i IFACE`.
pub fn run_live(a: RunArgs) -> Result<ExitCode> {
    let mut cfg = replay_config(&a.replay, Pacing::Live)?;
    // A commit dropped on a full ring will never reach the gate: the rings say which.
    let (dropped_tx, dropped_rx) = crossbeam_channel::bounded(1 << 16);
    cfg.dropped_commits = Some(dropped_rx);
    let target = cfg.target.to_string();
    let engine = Engine::new(cfg);
    let handle = crate::cli::start_capture_reporting(&a.capture, &a.decode, Some(dropped_tx))?;
    let cmp = Arc::new(Mutex::new(Comparison::default()));
    let live = Arc::new(Live {
        capture: handle.live(),
        engine: engine.live(),
        cmp: cmp.clone(),
    });
    if let Some(m) = &a.out.metrics {
        serve_metrics(m, &live)?;
    }
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    spawn_live_line(live.clone(), done.clone(), a.out.quiet);
    let rx = handle.sessions();
    // A signal sets `signalled`; the capture thread below then stops the capture.
    let signalled = Arc::new(AtomicBool::new(false));
    crate::cli::stop_on_sigint(signalled.clone());
    let cmp2 = cmp.clone();
    let rt = runtime()?;
    // Prod's position now that the capture runs: equal to the snapshot's, nothing was missed.
    let snapshot = a.replay.snapshot_pos.as_deref().map(|p| {
        let at_start = match &a.replay.prod {
            Some(prod) => match TargetDsn::parse_no_env(prod) {
                Ok(dsn) => rt.block_on(mrte_replay::sync::snapshot::prod_position(&dsn, p)),
                Err(e) => Err(format!("--prod: {e}")),
            },
            None => Err("no --prod to read prod's position at capture start".into()),
        };
        mrte_replay::sync::snapshot::check(p, at_start)
    });
    let workers = Workers::start(a.replay.replay_threads)?;
    let engine = engine.with_workers(workers.handles.clone());
    let sig2 = signalled.clone();
    let capture_thread = std::thread::spawn(move || {
        while !handle.is_finished() && !sig2.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.join()
    });
    let drain = secs("--drain-timeout", a.replay.drain_timeout)?;
    let sig3 = signalled.clone();
    let eng = rt.block_on(engine.run(
        rx,
        move |o| {
            if let Ok(mut c) = cmp2.lock() {
                c.record(&o);
            }
        },
        async move {
            // After a signal what is queued gets `drain` to replay; then the rest is counted as
            // skipped (shutdown), so a slow or frozen target cannot hold the exit. At the end of
            // --duration/--count everything queued is replayed.
            while !sig3.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(drain).await;
            tracing::warn!(
                "--drain-timeout {drain:?} reached: the commands still queued are counted as skipped (shutdown)"
            );
        },
    ));
    done.store(true, Ordering::Release);
    let cap = capture_thread
        .join()
        .map_err(|_| anyhow::anyhow!("capture thread panicked"))??;
    let cmp = cmp
        .lock()
        .map_err(|_| anyhow::anyhow!("comparison lock poisoned"))?;
    finish(
        "run",
        &target,
        started,
        &cmp,
        &eng,
        &cap,
        &a.out,
        signalled.load(Ordering::Acquire),
        snapshot,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Cmd};

    fn replay_args(extra: &[&str]) -> super::ReplayArgs {
        let mut argv = vec![
            "mrte",
            "replay",
            "-r",
            "x.pcap",
            "--target",
            "mysql://u@h/db",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").cmd {
            Cmd::Replay(a) => a.replay,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prod_clock_and_insert_id_default_on_and_take_on_or_off() {
        let a = replay_args(&[]);
        assert!(a.prod_clock && a.prod_insert_id);
        let a = replay_args(&["--prod-clock", "off", "--prod-insert-id", "off"]);
        assert!(!a.prod_clock && !a.prod_insert_id);
        let a = replay_args(&["--prod-clock=on", "--prod-insert-id", "on"]);
        assert!(a.prod_clock && a.prod_insert_id);
        let bad = [
            "mrte",
            "replay",
            "-r",
            "x",
            "--target",
            "mysql://u@h",
            "--prod-clock",
            "yes",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
    }
}
