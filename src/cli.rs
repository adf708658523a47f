//! Command-line interface: argument definitions and the glue from subcommands to the crates.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mrte_capture::event::{EventSink, SessionEvent};
use mrte_capture::mysql::DecoderConfig;
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_capture::ring::SessionStream;
use mrte_capture::source::live::{LiveConfig, LiveHandle, SourceKind, XdpMode};
use mrte_capture::source::pcap::SourceError;
use mrte_capture::stats::Stats;

use crate::inspect::{Format, InspectSink};

/// MySQL real-time traffic emulator: decode MySQL sessions off a mirror port or a capture file and
/// replay them on a test server, comparing production and test latency per query fingerprint.
#[derive(Parser, Debug)]
#[command(name = "mrte", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Decode MySQL traffic from a capture file (-r) or a live interface (-i) and print it.
    Inspect(InspectArgs),
    /// Write the server-port traffic of a live interface to a pcap file (tcpdump/Wireshark read it).
    Record(RecordArgs),
    /// Capture live on a mirror port, replay every session on a test server, compare, report.
    Run(crate::replay_cmd::RunArgs),
    /// Replay the sessions of a capture file on a test server, compare, report.
    Replay(crate::replay_cmd::ReplayFileArgs),
    /// Capture (-i) or read (-r) and publish the session events to a NATS JetStream stream.
    Publish(crate::publish::PublishArgs),
    /// Replay some partitions of a NATS JetStream stream on a test server (one player).
    Play(crate::play::PlayArgs),
    /// One report merged from every player of a NATS JetStream stream.
    Report(crate::report_cmd::ReportCmdArgs),
}

/// Where packets come from: a capture file (-r) or a live interface (-i) (inspect, publish).
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Capture file to read (pcap or pcapng).
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        required_unless_present = "iface"
    )]
    pub file: Option<PathBuf>,
    /// Live interface to capture from (a mirror/SPAN port).
    #[arg(short = 'i', long = "iface", conflicts_with = "file")]
    pub iface: Option<String>,
    /// Live: stop after this many seconds.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Live: packet source (auto, xdp, pcap).
    #[arg(long, default_value = "auto", value_parser = ["auto", "xdp", "pcap"])]
    pub source: String,
    #[command(flatten)]
    pub xdp: XdpArgs,
}

impl InputArgs {
    /// The live capture settings (default ring sizes), or an error when no interface is given.
    pub fn live(&self) -> Result<CaptureArgs> {
        let Some(iface) = self.iface.clone() else {
            anyhow::bail!("give -r FILE or -i IFACE");
        };
        Ok(CaptureArgs {
            iface,
            source: self.source.clone(),
            xdp: self.xdp.clone(),
            duration: self.duration,
            count: None,
            ring: 65536,
            max_queued_events: mrte_capture::ring::DEFAULT_QUEUE_LIMIT,
            core: None,
        })
    }
}

/// Hand every event of a live capture to `sink`, in order per session, until the capture ends
/// (its duration, or SIGINT); `idle` is called on every pass. An empty pass sleeps 1 ms, doubling
/// up to 16 ms while nothing comes (events arriving at a moderate rate are taken in batches, not
/// one wake-up each); after that the thread waits for a real wake-up: the next event of any open
/// session, a new session, or the end of capture, and at most `max_wait` (`idle` runs at least
/// that often). A quiet capture then costs no wake-ups. Returns the capture counters.
pub fn pump_live<S: EventSink>(
    handle: LiveHandle,
    sink: &mut S,
    idle: fn(&mut S),
    max_wait: std::time::Duration,
) -> Result<Stats> {
    use std::task::{Context, Poll, Wake, Waker};
    /// Unparks the consumer thread.
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let stopper = handle.stopper();
    stop_on_signal(move || stopper.stop());
    let rx = handle.sessions();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut streams: Vec<SessionStream> = Vec::new();
    const NAP_MIN: std::time::Duration = std::time::Duration::from_millis(1);
    const NAP_MAX: std::time::Duration = std::time::Duration::from_millis(16);
    let mut nap = NAP_MIN;
    loop {
        while let Ok(s) = rx.try_recv() {
            sink.push(s.open.id, SessionEvent::Open(Box::new(s.open.clone())));
            streams.push(s);
        }
        let mut got = false;
        streams.retain_mut(|s| {
            while let Some(ev) = s.try_pop() {
                if !matches!(ev, SessionEvent::Open(_)) {
                    sink.push(s.open.id, ev);
                }
                got = true;
            }
            !s.is_finished()
        });
        idle(sink);
        if got {
            nap = NAP_MIN;
            continue;
        }
        if handle.is_finished() && streams.is_empty() && rx.is_empty() {
            break;
        }
        if nap < NAP_MAX.min(max_wait) {
            std::thread::sleep(nap);
            nap *= 2;
            continue;
        }
        // Quiet: arm every wake-up source, then check once more before parking (an event
        // pushed before a stream was armed is seen here; one pushed after wakes us).
        handle.register_waker(&waker);
        for s in &mut streams {
            let mut next = s.next();
            match std::pin::Pin::new(&mut next).poll(&mut cx) {
                Poll::Ready(Some(ev)) => {
                    if !matches!(ev, SessionEvent::Open(_)) {
                        sink.push(s.open.id, ev);
                    }
                    got = true;
                }
                // Finished: the next pass drops it.
                Poll::Ready(None) => got = true,
                Poll::Pending => {}
            }
        }
        if got || !rx.is_empty() || handle.is_finished() {
            nap = NAP_MIN;
            continue;
        }
        std::thread::park_timeout(max_wait);
    }
    Ok(handle.join()?)
}

/// Live capture settings.
#[derive(Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Interface to capture from (the mirror/SPAN port).
    #[arg(short = 'i', long = "iface")]
    pub iface: String,
    /// Packet source: auto (AF_XDP, else libpcap), xdp, pcap.
    #[arg(long, default_value = "auto", value_parser = ["auto", "xdp", "pcap"])]
    pub source: String,
    #[command(flatten)]
    pub xdp: XdpArgs,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Events each per-session ring holds; a full ring drops (counted), never blocks capture.
    #[arg(long, default_value_t = 65536)]
    pub ring: usize,
    /// Most events queued over all session rings (the replay's backlog while the test server
    /// lags). Past it, a session holding more than its share drops new events (counted as ring
    /// drops, `queue_limited_events`); sessions that keep up lose nothing. 0: no bound.
    #[arg(long, default_value_t = mrte_capture::ring::DEFAULT_QUEUE_LIMIT, value_name = "N")]
    pub max_queued_events: usize,
    /// Core to pin the capture thread to.
    #[arg(long)]
    pub core: Option<usize>,
}

/// AF_XDP settings of a live capture.
#[derive(Args, Debug, Clone)]
pub struct XdpArgs {
    /// AF_XDP attach mode: auto (zero-copy, else native copy, else generic; generic first on a
    /// virtual interface), zc, drv (native copy) or skb (generic).
    #[arg(long, env = "MRTE_XDP_MODE", default_value = "auto", value_parser = ["auto", "zc", "drv", "skb"])]
    pub xdp_mode: String,
    /// AF_XDP: RX queues to read (0..N), one socket and one pinned thread each; both directions of
    /// a connection must hash to the same queue (symmetric RSS).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub queues: u32,
    /// AF_XDP: cores for the queue threads, in queue order (e.g. 2,3).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub cores: Vec<usize>,
    /// AF_XDP: busy-poll the device for up to this many microseconds per call instead of
    /// sleeping when idle (SO_PREFER_BUSY_POLL; spends the whole core; native driver mode).
    #[arg(long, default_value_t = 0, value_name = "USECS")]
    pub busy_poll: u32,
}

/// `mrte record`.
#[derive(Args, Debug)]
pub struct RecordArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Output pcap file.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub file: PathBuf,
    /// Server port (repeatable).
    #[arg(short = 'p', long = "port", default_value = "3306")]
    pub ports: Vec<u16>,
}

/// What decoding needs to know.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Server port (repeatable); a session is a TCP connection to one of them.
    #[arg(short = 'p', long = "port", default_value = "3306")]
    pub ports: Vec<u16>,
    /// Largest command kept whole, in MiB; bigger ones are counted as too large.
    #[arg(long, default_value_t = 256)]
    pub max_command_mib: usize,
    /// Close sessions idle for this many seconds (capture time).
    #[arg(long, default_value_t = 600)]
    pub idle_timeout: u64,
    /// Out-of-order bytes held per direction before a hole is declared lost.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_ooo_bytes: usize,
    /// Most sessions tracked at once; beyond it the least recently used is evicted (counted).
    #[arg(long, default_value_t = mrte_capture::pipeline::DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,
    /// Budget in MiB for bytes held over all sessions (reassembly, held segments, partial and
    /// large commands); the session that crosses it drops its buffers (counted). 0: no limit.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_memory: usize,
}

impl DecodeArgs {
    /// Pipeline settings from the flags.
    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig {
            ports: self.ports.clone(),
            decoder: DecoderConfig {
                max_command_bytes: self.max_command_mib.saturating_mul(1 << 20),
            },
            idle_timeout_us: self.idle_timeout.saturating_mul(1_000_000),
            max_ooo_bytes: self.max_ooo_bytes,
            max_sessions: self.max_sessions,
            max_memory: self.max_memory.saturating_mul(1 << 20),
        }
    }
}

/// `mrte inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write output here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Threads decoding a capture file when the output is the summary: each decodes its share
    /// of the flows (session and memory bounds split between them); 0: one per CPU, up to 4.
    /// Other formats and live capture use one.
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Set up tracing on stderr.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .init();
}

/// Run a parsed command line.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Inspect(a) => inspect(a),
        Cmd::Record(a) => record(a),
        Cmd::Run(a) => crate::replay_cmd::run_live(a),
        Cmd::Replay(a) => crate::replay_cmd::replay_file(a),
        Cmd::Publish(a) => crate::publish::publish(a),
        Cmd::Play(a) => crate::play::play(a),
        Cmd::Report(a) => crate::report_cmd::report(a),
    }
}

fn output(path: &Option<PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            crate::replay_cmd::create_private(p)
                .with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
    })
}

fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let out = output(&a.output)?;
    let mut sink = InspectSink::new(a.format, out);
    if let Some(file) = &a.input.file {
        let threads = crate::inspect::file_threads(a.format, a.threads, a.decode.max_sessions);
        if threads > 1 {
            let cfg = a.decode.pipeline_config();
            let run = mrte_capture::source::pcap::run_file_sharded(file, &cfg, threads, |_| {
                crate::inspect::Discard
            });
            // The process exits next: the kernel takes the sessions' memory back at once.
            std::mem::forget(run.pipelines);
            if matches!(run.result, Ok(()) | Err(SourceError::Damaged { .. })) {
                sink.finish(&run.stats, None).or_else(ignore_broken_pipe)?;
            }
            run.result
                .with_context(|| format!("reading {}", file.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut pipeline = Pipeline::new(a.decode.pipeline_config());
    if let Some(file) = &a.input.file {
        let res = mrte_capture::source::pcap::run_file(file, &mut pipeline, &mut sink);
        // A damaged file: what was decoded before the damage is still reported, then the error.
        let stats = pipeline.stats().clone();
        // The process exits next: the kernel takes the sessions' memory back at once.
        std::mem::forget(pipeline);
        if matches!(res, Ok(()) | Err(SourceError::Damaged { .. })) {
            sink.finish(&stats, None).or_else(ignore_broken_pipe)?;
        }
        res.with_context(|| format!("reading {}", file.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let live = a.input.live()?;
    if a.format == Format::Summary {
        // The summary is the capture's counters: every frame is decoded in the capture thread,
        // and its events end there instead of crossing to this thread to be dropped.
        let mut cfg = live_config(&live, a.decode.pipeline_config());
        cfg.events = false;
        let handle = mrte_capture::source::live::start(cfg)?;
        let stopper = handle.stopper();
        stop_on_signal(move || stopper.stop());
        let stats = handle.wait()?;
        sink.finish(&stats, None).or_else(ignore_broken_pipe)?;
        return Ok(ExitCode::SUCCESS);
    }
    let handle = start_capture(&live, &a.decode)?;
    let stats = pump_live(handle, &mut sink, |_| {}, std::time::Duration::from_secs(1))?;
    sink.finish(&stats, None).or_else(ignore_broken_pipe)?;
    Ok(ExitCode::SUCCESS)
}

/// Start live capture as the flags say.
pub fn start_capture(c: &CaptureArgs, d: &DecodeArgs) -> Result<LiveHandle> {
    start_capture_reporting(c, d, None)
}

/// [`start_capture`], the rings reporting the commits they drop to `dropped_commits`.
pub fn start_capture_reporting(
    c: &CaptureArgs,
    d: &DecodeArgs,
    dropped_commits: Option<crossbeam_channel::Sender<u64>>,
) -> Result<LiveHandle> {
    let mut cfg = live_config(c, d.pipeline_config());
    cfg.dropped_commits = dropped_commits;
    Ok(mrte_capture::source::live::start(cfg)?)
}

fn live_config(c: &CaptureArgs, pipeline: PipelineConfig) -> LiveConfig {
    LiveConfig {
        iface: c.iface.clone(),
        pipeline,
        source: match c.source.as_str() {
            "xdp" => SourceKind::Xdp,
            "pcap" => SourceKind::Pcap,
            _ => SourceKind::Auto,
        },
        xdp_mode: match c.xdp.xdp_mode.as_str() {
            "zc" => XdpMode::ZeroCopy,
            "drv" => XdpMode::Driver,
            "skb" => XdpMode::Skb,
            _ => XdpMode::Auto,
        },
        ring_capacity: c.ring,
        max_queued_events: c.max_queued_events,
        duration: c.duration.map(std::time::Duration::from_secs_f64),
        count: c.count,
        core: c.core,
        queues: c.xdp.queues,
        cores: c.xdp.cores.clone(),
        busy_poll_usecs: c.xdp.busy_poll,
        dropped_commits: None,
        events: true,
    }
}

/// Set `flag` on SIGINT/SIGTERM.
pub fn stop_on_sigint(flag: Arc<AtomicBool>) {
    stop_on_signal(move || flag.store(true, Ordering::Release));
}

/// Call `stop` on SIGINT/SIGTERM.
pub fn stop_on_signal(stop: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        });
        tracing::warn!("signal received: stopping capture, flushing counters");
        stop();
    });
}

fn record(a: RecordArgs) -> Result<ExitCode> {
    let pipeline = PipelineConfig {
        ports: a.ports.clone(),
        ..PipelineConfig::default()
    };
    let cfg = live_config(&a.capture, pipeline);
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_sigint(stop.clone());
    // The capture holds production traffic: owner-only, before the writer opens it.
    drop(
        crate::replay_cmd::create_private(&a.file)
            .with_context(|| format!("creating {}", a.file.display()))?,
    );
    let st = match mrte_capture::source::live::record(&cfg, &a.file, stop) {
        Ok(st) => st,
        Err(e) => {
            if std::fs::metadata(&a.file).is_ok_and(|m| m.len() == 0) {
                // Failed before writing anything (no permission, no such interface).
                let _ = std::fs::remove_file(&a.file);
                return Err(e.into());
            }
            // A write error (disk full) can leave half a record at the end: cut back to the
            // last whole one so the file stays a valid pcap.
            return match keep_whole_records(&a.file) {
                Ok((frames, bytes)) => Err(anyhow::Error::new(e).context(format!(
                    "recording to {} stopped; the file keeps {frames} whole frames ({bytes} bytes) and is a valid pcap",
                    a.file.display()
                ))),
                Err(r) => Err(anyhow::Error::new(e).context(format!(
                    "recording to {} stopped, and it could not be repaired: {r}",
                    a.file.display()
                ))),
            };
        }
    };
    println!("{}", serde_json::to_string(&st)?);
    eprintln!(
        "recorded {} frames ({} bytes) to {} with {}; kernel dropped {}, left to the stack by \
         the XDP program {}, without kernel timestamp {}",
        st.frames,
        st.bytes,
        a.file.display(),
        st.source,
        st.kernel_drops,
        st.filtered_in_kernel,
        st.untimed_frames
    );
    Ok(ExitCode::SUCCESS)
}

/// Truncate a classic pcap file after its last whole record; (records kept, file length).
fn keep_whole_records(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut magic = [0u8; 24];
    if len < 24 {
        f.set_len(0)?;
        return Ok((0, 0));
    }
    f.read_exact(&mut magic)?;
    let big = match magic[0..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return Err(io::Error::other("not a pcap file")),
    };
    let (mut pos, mut n) = (24u64, 0u64);
    let mut h = [0u8; 16];
    while pos + 16 <= len {
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut h)?;
        let b = [h[8], h[9], h[10], h[11]];
        let incl = u64::from(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        });
        if pos + 16 + incl > len {
            break;
        }
        pos += 16 + incl;
        n += 1;
    }
    if pos < len {
        f.set_len(pos)?;
    }
    f.sync_all()?;
    Ok((n, pos))
}

fn ignore_broken_pipe(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}
