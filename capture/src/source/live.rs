//! Live capture: capture threads that each own a [`Pipeline`] and a [`RingSink`], fed by AF_XDP
//! (one socket and one pinned thread per RX queue, sockets from `xdp`) or by libpcap (the
//! fallback, one thread), with counters published for live readers every 100 ms and kernel drops
//! taken from the sockets' statistics. With several queues, a connection seen on more than one is
//! counted (`multi_queue_sessions`); `record` writes a pcap from one queue or from libpcap.
//!
//! It does not replay or print anything; consumers take [`SessionStream`]s from
//! [`LiveHandle::sessions`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::net::LinkType;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::ring::{RingSink, SessionStream};
use crate::source::pcap::PcapFileWriter;
use crate::stats::{LiveStats, Stats};

/// Which packet source to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// AF_XDP if it binds, else libpcap.
    Auto,
    /// AF_XDP only.
    Xdp,
    /// libpcap only.
    Pcap,
}

/// Which XDP attach mode to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Zero-copy driver mode, else driver copy mode, else generic mode (generic first on a
    /// virtual interface).
    #[default]
    Auto,
    /// Driver mode, zero-copy only.
    ZeroCopy,
    /// Driver mode, copy.
    Driver,
    /// Generic (SKB) mode.
    Skb,
}

/// Live capture settings.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Interface (the mirror port).
    pub iface: String,
    /// Decode settings (server ports inside).
    pub pipeline: PipelineConfig,
    /// Source choice.
    pub source: SourceKind,
    /// AF_XDP attach mode.
    pub xdp_mode: XdpMode,
    /// Events per session ring.
    pub ring_capacity: usize,
    /// Most events queued over all rings (`RingSink::set_queue_limit`; 0: no bound).
    pub max_queued_events: usize,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Core to pin the capture thread to.
    pub core: Option<usize>,
    /// AF_XDP RX queues to read (0..queues), one socket and one thread each.
    pub queues: u32,
    /// Cores to pin the queue threads to, in queue order (falls back to `core` for queue 0).
    pub cores: Vec<usize>,
    /// AF_XDP busy polling: microseconds per poll (0: off, the thread sleeps when idle).
    pub busy_poll_usecs: u32,
}

/// Live source errors.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// libpcap failed.
    #[error("libpcap on {iface}: {msg}")]
    Pcap {
        /// Interface.
        iface: String,
        /// What libpcap said.
        msg: String,
    },
    /// AF_XDP was asked for but cannot run.
    #[error("AF_XDP on {iface}: {msg}")]
    Xdp {
        /// Interface.
        iface: String,
        /// Why.
        msg: String,
    },
    /// Writing the capture file failed.
    #[error(transparent)]
    File(#[from] crate::source::pcap::SourceError),
    /// The capture thread died.
    #[error("capture thread panicked")]
    Panicked,
}

/// A running live capture.
#[derive(Debug)]
pub struct LiveHandle {
    sessions: Receiver<SessionStream>,
    live: Arc<LiveStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Stats, LiveError>>>,
    /// Which source runs, and why.
    pub source_note: String,
}

impl LiveHandle {
    /// New sessions, one stream each.
    pub fn sessions(&self) -> Receiver<SessionStream> {
        self.sessions.clone()
    }

    /// Counters published by the capture thread.
    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    /// Flag that stops the capture when set.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Ask the capture to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// The capture has ended by itself (duration, count) or after `stop`.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Wait for the capture thread; final counters.
    pub fn join(mut self) -> Result<Stats, LiveError> {
        self.stop();
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| LiveError::Panicked)?,
            None => Err(LiveError::Panicked),
        }
    }
}

fn bpf_filter(ports: &[u16]) -> String {
    let p: Vec<String> = ports.iter().map(|p| format!("tcp port {p}")).collect();
    p.join(" or ")
}

fn open_pcap(cfg: &LiveConfig) -> Result<(pcap::Capture<pcap::Active>, LinkType), LiveError> {
    let err = |e: pcap::Error| LiveError::Pcap {
        iface: cfg.iface.clone(),
        msg: e.to_string(),
    };
    let mut cap = pcap::Capture::from_device(cfg.iface.as_str())
        .map_err(err)?
        .promisc(true)
        .immediate_mode(true)
        .snaplen(262_144)
        .buffer_size(64 << 20)
        .timeout(100)
        .open()
        .map_err(err)?
        .setnonblock()
        .map_err(err)?;
    cap.filter(&bpf_filter(&cfg.pipeline.ports), true)
        .map_err(err)?;
    let link = LinkType::from_linktype(cap.get_datalink().0 as u32);
    Ok((cap, link))
}

/// How long a libpcap capture whose interface went away tries to open it again.
const REBIND_FOR: Duration = Duration::from_secs(30);

/// After a libpcap error (interface deleted, driver reset): open the interface again, every
/// 250 ms for up to [`REBIND_FOR`] or until `stop`; `None` when it could not.
fn rebind_pcap(
    cfg: &LiveConfig,
    stop: &AtomicBool,
    e: &pcap::Error,
) -> Option<(pcap::Capture<pcap::Active>, LinkType)> {
    tracing::warn!(
        "libpcap on {}: {e}; re-opening the interface for up to {REBIND_FOR:?}",
        cfg.iface
    );
    let until = Instant::now() + REBIND_FOR;
    while Instant::now() < until && !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(250));
        match open_pcap(cfg) {
            Ok(c) => {
                tracing::warn!("libpcap on {}: re-bound, capturing again", cfg.iface);
                return Some(c);
            }
            Err(err) => tracing::debug!("re-bind {}: {err}", cfg.iface),
        }
    }
    tracing::error!(
        "libpcap on {}: {e}; could not re-open it within {REBIND_FOR:?}: capture stops",
        cfg.iface
    );
    None
}

fn pin(core: Option<usize>) {
    if let Some(c) = core {
        if let Some(id) =
            core_affinity::get_core_ids().and_then(|ids| ids.into_iter().find(|i| i.id == c))
        {
            core_affinity::set_for_current(id);
        }
    }
}

/// Start capturing on `cfg.iface`: AF_XDP when asked or when `auto` and it binds, else libpcap.
pub fn start(cfg: LiveConfig) -> Result<LiveHandle, LiveError> {
    let note = match cfg.source {
        SourceKind::Pcap => "libpcap (asked for with --source pcap)".to_string(),
        SourceKind::Xdp | SourceKind::Auto => match start_xdp(&cfg) {
            Ok(h) => return Ok(h),
            Err(e) if cfg.source == SourceKind::Xdp => return Err(e),
            Err(e) => format!("libpcap, because AF_XDP did not bind: {e}"),
        },
    };
    let (mut cap, mut link) = open_pcap(&cfg)?;
    let (mut sink, rx) = RingSink::new(cfg.ring_capacity);
    sink.set_memory_budget(cfg.pipeline.max_memory);
    sink.set_queue_limit(cfg.max_queued_events);
    let live = Arc::new(LiveStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (live2, stop2) = (live.clone(), stop.clone());
    let iface = cfg.iface.clone();
    let thread = std::thread::Builder::new()
        .name("mrte-capture".into())
        .spawn(move || {
            pin(cfg.core);
            let mut p = Pipeline::new(cfg.pipeline.clone());
            let started = Instant::now();
            let mut last_pub = Instant::now();
            let mut last_ts = 0;
            let mut frames = 0u64;
            loop {
                if stop2.load(Ordering::Acquire)
                    || cfg.duration.is_some_and(|d| started.elapsed() >= d)
                    || cfg.count.is_some_and(|n| frames >= n)
                {
                    break;
                }
                match cap.next_packet() {
                    Ok(pkt) => {
                        let ts =
                            pkt.header.ts.tv_sec as u64 * 1_000_000 + pkt.header.ts.tv_usec as u64;
                        last_ts = ts;
                        frames += 1;
                        p.handle_frame(link, pkt.data, ts, &mut sink);
                    }
                    Err(pcap::Error::TimeoutExpired) => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => match rebind_pcap(&cfg, &stop2, &e) {
                        Some((c, l)) => (cap, link) = (c, l),
                        None => break,
                    },
                }
                if last_pub.elapsed() >= Duration::from_millis(100) {
                    last_pub = Instant::now();
                    if let Ok(s) = cap.stats() {
                        p.stats_mut().kernel_drops = u64::from(s.dropped) + u64::from(s.if_dropped);
                    }
                    let r = sink.stats();
                    p.stats_mut().ring_drops = r.dropped_events;
                    p.stats_mut().ring_overflow_sessions = r.overflowed_sessions;
                    live2.publish(p.stats());
                }
            }
            if let Ok(s) = cap.stats() {
                p.stats_mut().kernel_drops = u64::from(s.dropped) + u64::from(s.if_dropped);
            }
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(last_ts, |d| d.as_micros() as u64);
            p.finish(now_us.max(last_ts), &mut sink);
            sink.close_all();
            let r = sink.stats();
            p.stats_mut().ring_drops = r.dropped_events;
            p.stats_mut().ring_overflow_sessions = r.overflowed_sessions;
            live2.publish(p.stats());
            Ok(p.stats().clone())
        })
        .map_err(|_| LiveError::Panicked)?;
    tracing::info!("capture source on {iface}: {note}");
    Ok(LiveHandle {
        sessions: rx,
        live,
        stop,
        thread: Some(thread),
        source_note: note,
    })
}

#[cfg(not(feature = "xdp"))]
fn start_xdp(cfg: &LiveConfig) -> Result<LiveHandle, LiveError> {
    Err(LiveError::Xdp {
        iface: cfg.iface.clone(),
        msg: "this binary was built without the `xdp` feature".into(),
    })
}

/// Copy the AF_XDP socket's and XDP program's counters into `st`.
#[cfg(feature = "xdp")]
fn xdp_counters(src: &mut crate::source::xdp::XdpSource, st: &mut Stats) {
    st.kernel_drops = src.drops();
    let c = src.program_counters();
    st.filtered_in_kernel = c.passed;
    st.untimed_frames = c.untimed;
}

/// AF_XDP on RX queue 0 with mrte's XDP program, in the configured attach mode.
#[cfg(feature = "xdp")]
fn start_xdp(cfg: &LiveConfig) -> Result<LiveHandle, LiveError> {
    use crate::source::xdp::XdpSource;
    let (tx, rx) = crossbeam_channel::unbounded();
    let live = Arc::new(LiveStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (live2, stop2) = (live.clone(), stop.clone());
    let cfg2 = cfg.clone();
    let nq = cfg.queues.max(1);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<&'static str, String>>(1);
    let thread = std::thread::Builder::new()
        .name("mrte-xdp-0".into())
        .spawn(move || {
            let cfg = cfg2;
            pin(cfg.cores.first().copied().or(cfg.core));
            let opened = XdpSource::open(&cfg.iface, 0, cfg.xdp_mode, &cfg.pipeline.ports)
                .and_then(|first| {
                    let mut all = vec![first];
                    for q in 1..nq {
                        let s = all[0].open_queue(&cfg.iface, q)?;
                        all.push(s);
                    }
                    if cfg.busy_poll_usecs > 0 {
                        for s in &mut all {
                            s.set_busy_poll(cfg.busy_poll_usecs, 64)
                                .map_err(|e| format!("busy polling: {e}"))?;
                        }
                    }
                    Ok(all)
                });
            let mut sources = match opened {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(s[0].mode));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(LiveError::Xdp {
                        iface: cfg.iface.clone(),
                        msg: e,
                    });
                }
            };
            let shared = Arc::new(QueueShared {
                slots: Mutex::new(vec![Stats::default(); nq as usize]),
                map: Mutex::new(HashMap::new()),
                commits: Default::default(),
            });
            let mut others = Vec::new();
            for (i, src) in sources.drain(1..).enumerate() {
                let q = i as u32 + 1;
                let (cfg, tx, live, stop, shared) = (
                    cfg.clone(),
                    tx.clone(),
                    live2.clone(),
                    stop2.clone(),
                    shared.clone(),
                );
                let h = std::thread::Builder::new()
                    .name(format!("mrte-xdp-{q}"))
                    .spawn(move || {
                        pin(cfg.cores.get(q as usize).copied());
                        run_xdp_queue(src, q, &cfg, tx, &live, &stop, &shared)
                    })
                    .map_err(|_| LiveError::Panicked)?;
                others.push(h);
            }
            let src = sources.pop().ok_or(LiveError::Panicked)?;
            let mut total = run_xdp_queue(src, 0, &cfg, tx, &live2, &stop2, &shared);
            for h in others {
                let st = h.join().map_err(|_| LiveError::Panicked)?;
                total.merge(&st);
            }
            live2.publish(&total);
            Ok(total)
        })
        .map_err(|_| LiveError::Panicked)?;
    match ready_rx.recv() {
        Ok(Ok(mode)) => {
            let queues = if nq == 1 {
                "RX queue 0".to_string()
            } else {
                format!("RX queues 0-{}, a pinned thread each", nq - 1)
            };
            let busy = if cfg.busy_poll_usecs > 0 {
                format!(", busy polling {} us", cfg.busy_poll_usecs)
            } else {
                String::new()
            };
            let note = format!("AF_XDP, {mode} mode, {queues}, mrte XDP program{busy}");
            tracing::info!("capture source on {}: {note}", cfg.iface);
            Ok(LiveHandle {
                sessions: rx,
                live,
                stop,
                thread: Some(thread),
                source_note: note,
            })
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(LiveError::Xdp {
                iface: cfg.iface.clone(),
                msg: e,
            })
        }
        Err(_) => Err(LiveError::Panicked),
    }
}

/// What the capture threads of several RX queues share: their latest counters (summed for the
/// live copy every 100 ms) and, per open connection, the queue that first saw it.
#[cfg(feature = "xdp")]
struct QueueShared {
    slots: Mutex<Vec<Stats>>,
    map: Mutex<HashMap<crate::event::FlowKey, (u32, bool)>>,
    /// One commit order across the queues' pipelines (issue 11).
    commits: crate::commit::SharedCommitClock,
}

#[cfg(feature = "xdp")]
impl QueueShared {
    /// Store one queue's counters and publish the sum.
    fn publish(&self, q: u32, st: &Stats, live: &LiveStats) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots[q as usize] = st.clone();
        let mut sum = Stats::default();
        for s in slots.iter() {
            sum.merge(s);
        }
        live.publish(&sum);
    }
}

/// The sink of one RX queue's capture thread: the session rings, plus (with several queues) a
/// check at each session's open that no other queue carries the same connection.
#[cfg(feature = "xdp")]
struct QueueSink<'a> {
    ring: RingSink,
    queue: u32,
    shared: Option<&'a QueueShared>,
    keys: HashMap<crate::event::SessionId, crate::event::FlowKey>,
    multi: u64,
}

#[cfg(feature = "xdp")]
impl crate::event::EventSink for QueueSink<'_> {
    fn push(&mut self, id: crate::event::SessionId, event: crate::event::SessionEvent) {
        use crate::event::SessionEvent;
        if let Some(shared) = self.shared {
            match &event {
                SessionEvent::Open(o) => {
                    let mut map = shared.map.lock().unwrap_or_else(|e| e.into_inner());
                    match map.get_mut(&o.key) {
                        Some((q, counted)) if *q != self.queue => {
                            if !*counted {
                                *counted = true;
                                self.multi += 1;
                            }
                        }
                        Some(_) => {}
                        None => {
                            map.insert(o.key, (self.queue, false));
                        }
                    }
                    self.keys.insert(id, o.key);
                }
                SessionEvent::Close(_) => {
                    if let Some(k) = self.keys.remove(&id) {
                        let mut map = shared.map.lock().unwrap_or_else(|e| e.into_inner());
                        if map.get(&k).is_some_and(|(q, _)| *q == self.queue) {
                            map.remove(&k);
                        }
                    }
                }
                _ => {}
            }
        }
        self.ring.push(id, event);
    }
}

/// One RX queue's capture loop: its own pipeline (session ids `q + 1`, `q + 1 + n`, ...) and
/// rings, until stopped; returns its counters.
#[cfg(feature = "xdp")]
fn run_xdp_queue(
    mut src: crate::source::xdp::XdpSource,
    q: u32,
    cfg: &LiveConfig,
    tx: crossbeam_channel::Sender<SessionStream>,
    live: &LiveStats,
    stop: &AtomicBool,
    shared: &QueueShared,
) -> Stats {
    let nq = cfg.queues.max(1);
    let mut ring = RingSink::with_sender(cfg.ring_capacity, tx);
    ring.set_memory_budget(cfg.pipeline.max_memory / nq as usize);
    ring.set_queue_limit(cfg.max_queued_events.div_ceil(nq as usize));
    let mut sink = QueueSink {
        ring,
        queue: q,
        shared: (nq > 1).then_some(shared),
        keys: HashMap::new(),
        multi: 0,
    };
    let mut p = Pipeline::new(cfg.pipeline.clone());
    p.set_session_ids(u64::from(q) + 1, u64::from(nq));
    p.set_commit_clock(shared.commits.clone());
    let started = Instant::now();
    let mut last_pub = Instant::now();
    let mut last_clock = Instant::now();
    let mut frames = 0u64;
    let link = LinkType::Ethernet;
    let counters = |src: &mut crate::source::xdp::XdpSource, st: &mut Stats, sink: &QueueSink| {
        // The program's counters cover every queue: queue 0's thread reports them.
        if q == 0 {
            xdp_counters(src, st);
        } else {
            st.kernel_drops = src.drops();
        }
        let r = sink.ring.stats();
        st.ring_drops = r.dropped_events;
        st.ring_overflow_sessions = r.overflowed_sessions;
        st.multi_queue_sessions = sink.multi;
    };
    while !stop.load(Ordering::Acquire)
        && cfg.duration.is_none_or(|d| started.elapsed() < d)
        && cfg.count.is_none_or(|n| frames < n)
    {
        let r = src.recv_batch(|f, ts| {
            frames += 1;
            p.handle_frame(link, f, ts, &mut sink);
        });
        if let Err(e) = r {
            tracing::error!("AF_XDP on {} queue {q}: {e}", cfg.iface);
            break;
        }
        if last_pub.elapsed() >= Duration::from_millis(100) {
            last_pub = Instant::now();
            if last_clock.elapsed() >= Duration::from_secs(1) {
                last_clock = last_pub;
                src.refresh_clock();
            }
            counters(&mut src, p.stats_mut(), &sink);
            if nq == 1 {
                live.publish(p.stats());
            } else {
                shared.publish(q, p.stats(), live);
            }
        }
    }
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    p.finish(now_us, &mut sink);
    sink.ring.close_all();
    counters(&mut src, p.stats_mut(), &sink);
    if nq > 1 {
        shared.publish(q, p.stats(), live);
    }
    p.stats().clone()
}

/// Counters of `mrte record`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecordStats {
    /// Which source recorded.
    pub source: String,
    /// Frames written.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Frames the kernel dropped.
    pub kernel_drops: u64,
    /// Frames the XDP program left to the kernel stack (AF_XDP).
    pub filtered_in_kernel: u64,
    /// Frames without a kernel timestamp, written with the wall clock at read time (AF_XDP).
    pub untimed_frames: u64,
}

/// Write the server-port traffic of `cfg.iface` to a pcap at `path` until stopped.
///
/// AF_XDP (with mrte's XDP program selecting server-port TCP and stamping kernel receive times)
/// when `cfg.source` allows and it binds, else libpcap with a BPF filter; `SourceKind::Xdp`
/// fails rather than falling back.
pub fn record(
    cfg: &LiveConfig,
    path: &Path,
    stop: Arc<AtomicBool>,
) -> Result<RecordStats, LiveError> {
    let note = match cfg.source {
        SourceKind::Pcap => "libpcap (asked for with --source pcap)".to_string(),
        SourceKind::Xdp | SourceKind::Auto => match record_xdp(cfg, path, &stop) {
            Ok(st) => return Ok(st),
            Err(e) if cfg.source == SourceKind::Xdp => return Err(e),
            Err(e) => format!("libpcap, because AF_XDP did not bind: {e}"),
        },
    };
    let (mut cap, link) = open_pcap(cfg)?;
    tracing::info!("recording {} to {} with {note}", cfg.iface, path.display());
    let mut w = PcapFileWriter::create(path, link)?;
    let mut st = RecordStats {
        source: note,
        ..RecordStats::default()
    };
    let started = Instant::now();
    while !stop.load(Ordering::Acquire)
        && cfg.duration.is_none_or(|d| started.elapsed() < d)
        && cfg.count.is_none_or(|n| st.frames < n)
    {
        match cap.next_packet() {
            Ok(pkt) => {
                let ts = pkt.header.ts.tv_sec as u64 * 1_000_000 + pkt.header.ts.tv_usec as u64;
                w.write(pkt.data, ts)?;
                st.frames += 1;
                st.bytes += pkt.data.len() as u64;
            }
            Err(pcap::Error::TimeoutExpired) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => match rebind_pcap(cfg, &stop, &e) {
                Some((c, l)) if l == link => cap = c,
                Some(_) => {
                    return Err(LiveError::Pcap {
                        iface: cfg.iface.clone(),
                        msg: format!("{e}; re-opened with another link type"),
                    })
                }
                None => {
                    return Err(LiveError::Pcap {
                        iface: cfg.iface.clone(),
                        msg: format!("{e}; could not re-open it within {REBIND_FOR:?}"),
                    })
                }
            },
        }
    }
    if let Ok(s) = cap.stats() {
        st.kernel_drops = u64::from(s.dropped) + u64::from(s.if_dropped);
    }
    w.finish()?;
    Ok(st)
}

#[cfg(not(feature = "xdp"))]
fn record_xdp(cfg: &LiveConfig, _: &Path, _: &AtomicBool) -> Result<RecordStats, LiveError> {
    Err(LiveError::Xdp {
        iface: cfg.iface.clone(),
        msg: "this binary was built without the `xdp` feature".into(),
    })
}

/// `record` on AF_XDP: the frames the XDP program selects (server-port TCP, and IP fragments
/// and cut TCP headers it cannot judge) written with their kernel receive times.
#[cfg(feature = "xdp")]
fn record_xdp(cfg: &LiveConfig, path: &Path, stop: &AtomicBool) -> Result<RecordStats, LiveError> {
    use crate::source::xdp::XdpSource;
    let xerr = |msg: String| LiveError::Xdp {
        iface: cfg.iface.clone(),
        msg,
    };
    if cfg.queues > 1 {
        return Err(xerr(format!(
            "record reads one RX queue ({} asked for); steer the mirror traffic to queue 0",
            cfg.queues
        )));
    }
    pin(cfg.cores.first().copied().or(cfg.core));
    let mut src =
        XdpSource::open(&cfg.iface, 0, cfg.xdp_mode, &cfg.pipeline.ports).map_err(xerr)?;
    let note = format!("AF_XDP, {} mode, RX queue 0, mrte XDP program", src.mode);
    tracing::info!("recording {} to {} with {note}", cfg.iface, path.display());
    let mut w = PcapFileWriter::create(path, LinkType::Ethernet)?;
    let mut st = RecordStats {
        source: note,
        ..RecordStats::default()
    };
    let started = Instant::now();
    let mut last_clock = Instant::now();
    let mut werr = None;
    while !stop.load(Ordering::Acquire)
        && cfg.duration.is_none_or(|d| started.elapsed() < d)
        && cfg.count.is_none_or(|n| st.frames < n)
        && werr.is_none()
    {
        src.recv_batch(|f, ts| {
            if cfg.count.is_some_and(|n| st.frames >= n) {
            } else if let Err(e) = w.write(f, ts) {
                werr.get_or_insert(e);
            } else {
                st.frames += 1;
                st.bytes += f.len() as u64;
            }
        })
        .map_err(|e| xerr(e.to_string()))?;
        if last_clock.elapsed() >= Duration::from_secs(1) {
            last_clock = Instant::now();
            src.refresh_clock();
        }
    }
    if let Some(e) = werr {
        return Err(e.into());
    }
    let mut s = Stats::default();
    xdp_counters(&mut src, &mut s);
    st.kernel_drops = s.kernel_drops;
    st.filtered_in_kernel = s.filtered_in_kernel;
    st.untimed_frames = s.untimed_frames;
    w.finish()?;
    Ok(st)
}
