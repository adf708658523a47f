//! `mrte play`: a player. Replays the sessions of some partitions of a NATS JetStream stream on a
//! test server with the ordinary replay engine; mrte-dist does the consuming and checkpointing.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use mrte_dist::play::{PlayConfig, Start};
use mrte_replay::compare::Comparison;
use mrte_replay::engine::Engine;
use mrte_replay::pacing::Pacing;

use crate::publish::NatsArgs;
use crate::replay_cmd::{replay_config, runtime, ReplayArgs, Workers};

/// `mrte play`.
#[derive(Args, Debug)]
pub struct PlayArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Partitions to replay, e.g. 0,1 (players on other hosts take the others).
    #[arg(long, value_delimiter = ',', value_name = "LIST", required = true)]
    pub partitions: Vec<u32>,
    /// Player name: durable consumers NAME-p<k>, state key player.NAME (default: from the
    /// partitions). A restarted player with the same name resumes where it stopped.
    #[arg(long)]
    pub name: Option<String>,
    /// A new player starts at the oldest message kept (the default).
    #[arg(long, conflicts_with_all = ["since", "new"])]
    pub from_start: bool,
    /// A new player starts at messages stored at or after TIME (RFC 3339, e.g. 2026-12-02T01:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// A new player takes only messages published from now on.
    #[arg(long)]
    pub new: bool,
    /// Seconds between checkpoints (counters and positions stored, messages acknowledged).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub checkpoint: f64,
    /// Most commands handed to the engine and not yet replayed (a checkpoint waits for them;
    /// a command replayed after the last checkpoint is sent again if the player is killed).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_ahead: u64,
    /// Keep waiting for messages after the publisher's end of capture.
    #[arg(long)]
    pub follow: bool,
    /// Bucket replicas when creating it.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Speed factor: 1.0 keeps the captured pacing per session, `max` does not wait.
    #[arg(long, default_value = "max")]
    pub speed: String,
    /// Shorten idle periods longer than SECS to SECS.
    #[arg(long, value_name = "SECS")]
    pub skip_idle: Option<f64>,
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// No live line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `mrte play`.
pub fn play(a: PlayArgs) -> Result<ExitCode> {
    let speed = Pacing::parse_speed(&a.speed).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pacing = Pacing::Offline {
        speed,
        skip_idle: a.skip_idle.map(Duration::from_secs_f64),
    };
    // Commit-order sync needs every session's commits; a player sees only its partitions, so it
    // is off unless asked for (then commits of other players' sessions time out, counted).
    let mut ra = a.replay.clone();
    match ra.sync {
        None => ra.sync = Some(mrte_replay::sync::SyncMode::None),
        Some(mrte_replay::sync::SyncMode::Commit) => tracing::warn!(
            "--sync commit on a player: commits of sessions in other players' partitions are never \
             seen here and are released only by --sync-timeout"
        ),
        Some(_) => {}
    }
    let rcfg = replay_config(&ra, pacing)?;
    let target = rcfg.target.to_string();
    let start = match (&a.since, a.new) {
        (Some(t), _) => Start::Since(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--since {t}: expected RFC 3339"))?,
        ),
        (None, true) => Start::New,
        _ => Start::FromStart,
    };
    let mut parts = a.partitions.clone();
    parts.sort_unstable();
    parts.dedup();
    let name = a.name.clone().unwrap_or_else(|| {
        format!(
            "p{}",
            parts
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("-")
        )
    });
    let cfg = PlayConfig {
        url: a.nats.url.clone(),
        stream: a.nats.stream.clone(),
        partitions: parts,
        name: name.clone(),
        start,
        checkpoint: Duration::try_from_secs_f64(a.checkpoint)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--checkpoint: a positive number of seconds")?,
        follow: a.follow,
        target: target.clone(),
        replicas: a.replicas,
        max_ahead: a.max_ahead,
    };
    let engine = Engine::new(rcfg);
    let live = engine.live();
    let cmp = Arc::new(Mutex::new(Comparison::default()));
    let stop = Arc::new(AtomicBool::new(false));
    crate::cli::stop_on_sigint(stop.clone());
    let done = Arc::new(AtomicBool::new(false));
    if !a.quiet {
        let (l, d) = (live.clone(), done.clone());
        std::thread::spawn(move || {
            let mut prev = (0u64, Instant::now());
            while !d.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_secs(1));
                let s = l.snapshot();
                let dt = prev.1.elapsed().as_secs_f64().max(1e-3);
                eprintln!(
                    "play {:>7.0} qps, {} sessions | replayed {} test errs {} skipped {} lost {} failed {}",
                    (s.replayed - prev.0) as f64 / dt,
                    s.active_sessions,
                    s.replayed,
                    s.test_errors,
                    s.skipped,
                    s.lost,
                    s.failed
                );
                prev = (s.replayed, Instant::now());
            }
        });
    }
    let workers = Workers::start(a.replay.replay_threads)?;
    let engine = engine.with_workers(workers.handles.clone());
    let cmp2 = cmp.clone();
    let started = Instant::now();
    let out = mrte_dist::play::run(cfg, cmp, live, stop, move |rx| match runtime() {
        Ok(rt) => rt.block_on(engine.run(
            rx,
            move |o| {
                if let Ok(mut c) = cmp2.lock() {
                    c.record(&o);
                }
            },
            std::future::pending::<()>(),
        )),
        Err(e) => {
            tracing::error!("replay runtime: {e}");
            Default::default()
        }
    });
    done.store(true, Ordering::Release);
    drop(workers);
    let out = out?;
    let s = &out.state;
    println!(
        "player {name} (partitions {:?}) on {target}: {} commands fed over all runs, this run {:.1} s; runs {}, \
         checkpoints {}, duplicates skipped {}, gaps {}, sessions resumed {}",
        s.partitions,
        s.fed_commands,
        started.elapsed().as_secs_f64(),
        s.runs,
        s.checkpoints,
        s.duplicates,
        s.gaps,
        s.resumed_sessions
    );
    Ok(ExitCode::SUCCESS)
}
