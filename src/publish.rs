//! `mrte publish`: capture (a live interface or a capture file), decode, and publish the session
//! events to a NATS JetStream stream for `mrte play` on other hosts (mrte-dist does the work).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use mrte_capture::event::{EventSink, SessionEvent, SessionId};
use mrte_capture::pipeline::Pipeline;
use mrte_capture::stats::Stats;
use mrte_dist::publish::{PublishConfig, PublishCounters, PublishSink, PublishSummary, Publisher};

use crate::cli::{DecodeArgs, InputArgs};

/// Where the stream is.
#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma separated (nats://host:4222).
    #[arg(
        long = "nats",
        value_name = "URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// JetStream stream name (subjects NAME.p<k>).
    #[arg(long, value_name = "NAME", default_value = "mrte")]
    pub stream: String,
}

/// `mrte publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// File: `max` reads as fast as NATS takes it (waits, never drops); a factor (1 = captured
    /// pacing) plays the file like live traffic: a full buffer then drops, counted.
    #[arg(long, default_value = "max")]
    pub speed: String,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Partitions: a session goes to NAME.p<hash(session) mod P>.
    #[arg(long, default_value_t = 4, value_name = "P")]
    pub partitions: u32,
    /// Stream size limit in MiB when creating it (oldest messages go first; 0: none).
    #[arg(long, default_value_t = 0, value_name = "MIB")]
    pub max_bytes_mib: u64,
    /// Stream retention in seconds when creating it (0: until the size limit).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub max_age: f64,
    /// Stream and bucket replicas when creating them (3 in a 3-node cluster).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// A message is sent once its batch holds this many KiB...
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub batch_kib: usize,
    /// ... or once its first event is this many milliseconds old.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub batch_ms: u64,
    /// Most publishes awaiting their acknowledgement.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Most KiB queued or unacknowledged; beyond it messages are dropped (counted per session).
    #[arg(long, default_value_t = 256 << 10, value_name = "KIB")]
    pub buffer_kib: usize,
    /// Wait at most SECS at the end for NATS to acknowledge what is queued.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub flush_timeout: f64,
    /// No live line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

fn event_ts(e: &SessionEvent) -> u64 {
    match e {
        SessionEvent::Open(o) => o.ts_us,
        SessionEvent::Login(l) => l.ts_us,
        SessionEvent::Command(c) => c.ts_us,
        SessionEvent::Close(c) => c.ts_us,
    }
}

/// Plays a file's events at the captured pacing times `1/speed`.
struct Paced {
    inner: PublishSink,
    speed: f64,
    t0: Option<(Instant, u64)>,
}

impl EventSink for Paced {
    fn push(&mut self, id: SessionId, event: SessionEvent) {
        let ts = event_ts(&event);
        let (start, ts0) = *self.t0.get_or_insert((Instant::now(), ts));
        let due = start + Duration::from_secs_f64(ts.saturating_sub(ts0) as f64 / 1e6 / self.speed);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(10)));
            self.inner.tick();
        }
        self.inner.push(id, event);
    }
}

fn live_line(c: &PublishCounters, prev: &mut (u64, u64, Instant)) -> String {
    let r = Ordering::Relaxed;
    let (cm, by) = (c.commands.load(r), c.acked_bytes.load(r));
    let dt = prev.2.elapsed().as_secs_f64().max(1e-3);
    let s = format!(
        "publish {:>8.0} cmd/s {:>7.2} MB/s | acked {} msgs {} cmds | buffered {} KiB | dropped {} msgs {} cmds | retries {}{}",
        (cm - prev.0) as f64 / dt,
        (by - prev.1) as f64 / dt / 1e6,
        c.acked_messages.load(r),
        c.acked_commands.load(r),
        c.buffered_bytes.load(r) >> 10,
        c.dropped_messages.load(r),
        c.dropped_commands.load(r),
        c.retries.load(r),
        if c.disconnected.load(r) { " | NATS unreachable" } else { "" }
    );
    *prev = (cm, by, Instant::now());
    s
}

/// Capture counters as JSON, with commands by name (the report's `captured` section).
pub fn capture_json(st: &Stats) -> String {
    let mut v = serde_json::to_value(st).unwrap_or_default();
    let by: serde_json::Map<String, serde_json::Value> = st
        .commands
        .0
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (code.to_string(), serde_json::Value::from(*n)))
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("commands_by_code".into(), serde_json::Value::Object(by));
    }
    v.to_string()
}

/// `mrte publish`.
pub fn publish(a: PublishArgs) -> Result<ExitCode> {
    let mut cfg = PublishConfig::new(&a.nats.url, &a.nats.stream);
    cfg.partitions = a.partitions;
    cfg.max_bytes = if a.max_bytes_mib == 0 {
        -1
    } else {
        i64::try_from(a.max_bytes_mib << 20).unwrap_or(i64::MAX)
    };
    cfg.max_age = Duration::try_from_secs_f64(a.max_age).context("--max-age")?;
    cfg.replicas = a.replicas;
    cfg.batch_bytes = a.batch_kib.max(1) << 10;
    cfg.batch_delay = Duration::from_millis(a.batch_ms.max(1));
    cfg.window = a.window.max(1);
    cfg.buffer_bytes = a.buffer_kib.max(1) << 10;
    let (publisher, mut sink) = Publisher::start(cfg)?;
    let counters = publisher.counters();
    let done = Arc::new(AtomicBool::new(false));
    if !a.quiet {
        let (c, d) = (counters.clone(), done.clone());
        std::thread::spawn(move || {
            let mut prev = (0, 0, Instant::now());
            while !d.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_secs(1));
                if !d.load(Ordering::Acquire) {
                    eprintln!("{}", live_line(&c, &mut prev));
                }
            }
        });
    }
    let started = Instant::now();
    let stats = if let Some(file) = &a.input.file {
        let mut pipeline = Pipeline::new(a.decode.pipeline_config());
        let res = if a.speed == "max" {
            sink.set_wait_when_full(true);
            let r = mrte_capture::source::pcap::run_file(file, &mut pipeline, &mut sink);
            sink.finish();
            r
        } else {
            let speed: f64 = a
                .speed
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .context("--speed: a positive factor or max")?;
            let mut paced = Paced {
                inner: sink,
                speed,
                t0: None,
            };
            let r = mrte_capture::source::pcap::run_file(file, &mut pipeline, &mut paced);
            sink = paced.inner;
            sink.finish();
            r
        };
        res.with_context(|| format!("reading {}", file.display()))?;
        pipeline.stats().clone()
    } else {
        let handle = crate::cli::start_capture(&a.input.live()?, &a.decode)?;
        let stats = crate::cli::pump_live(
            handle,
            &mut sink,
            PublishSink::tick,
            std::time::Duration::from_millis(16),
        )?;
        sink.finish();
        stats
    };
    let by_session = sink.dropped_by_session();
    drop(sink);
    let summary = PublishSummary {
        dropped_by_session: by_session.into_iter().take(100).collect(),
        capture: capture_json(&stats),
        ..PublishSummary::default()
    };
    let res = publisher.join(
        Duration::try_from_secs_f64(a.flush_timeout).unwrap_or(Duration::from_secs(60)),
        summary,
    );
    done.store(true, Ordering::Release);
    let s = res?;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    println!("{}", serde_json::to_string(&s)?);
    eprintln!(
        "published {} commands in {} messages ({:.1} MB) in {secs:.2} s: {:.0} commands/s, {:.2} MB/s; \
         dropped {} commands ({} messages, {} sessions), retried {} publishes",
        s.acked_commands,
        s.acked_messages,
        s.acked_bytes as f64 / 1e6,
        s.acked_commands as f64 / secs,
        s.acked_bytes as f64 / secs / 1e6,
        s.dropped_commands,
        s.dropped_messages,
        s.dropped_by_session.len(),
        s.retries
    );
    Ok(ExitCode::SUCCESS)
}
