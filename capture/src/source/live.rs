//! Live capture: capture threads that each own a [`Pipeline`] and a [`RingSink`], fed by AF_XDP
//! (one socket and one pinned thread per RX queue, sockets from `xdp`) or by libpcap (the
//! fallback, one thread). Both are [`FrameSource`]s run by the one loop of [`frames`]
//! ([`run_capture`], [`run_record`]), which publishes counters every 100 ms and re-binds a
//! source whose interface went away. With several queues, a connection seen on more than one is
//! counted (`multi_queue_sessions`); `record` writes a pcap from one queue or from libpcap.
//!
//! It does not replay or print anything; consumers take [`SessionStream`]s from
//! [`LiveHandle::sessions`].

#[cfg(feature = "xdp")]
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(feature = "xdp")]
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;
#[cfg(feature = "xdp")]
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::net::LinkType;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::ring::{RingSink, SessionStream};
use crate::source::frames::{
    self, run_capture, run_record, FrameSource, Limits, RecordError, SourceCounters, SourceLost,
};
use crate::source::pcap::PcapFileWriter;
use crate::stats::{LiveStats, Stats};

pub use crate::source::frames::XdpMode;

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
    /// Where the rings report commits they dropped (see `RingSink::report_dropped_commits`).
    pub dropped_commits: Option<crossbeam_channel::Sender<u64>>,
    /// Hand the decoded events to consumers ([`LiveHandle::sessions`]). Off, every frame is
    /// still decoded and counted, but no session ring is made and the events are dropped in the
    /// capture thread: for a consumer that needs only the counters (`inspect -f summary`).
    pub events: bool,
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

/// Stops a live capture: sets its stop flag and wakes a capture thread blocked on a quiet port.
#[derive(Clone, Debug)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    /// Write end of the stop pipe whose read end is in the AF_XDP threads' poll(2) set.
    wake: Option<Arc<std::os::unix::net::UnixStream>>,
}

impl Stopper {
    fn new(flag: Arc<AtomicBool>) -> Self {
        Self { flag, wake: None }
    }

    /// Ask the capture to stop.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(w) = &self.wake {
            use std::io::Write;
            // Non-blocking: one byte makes the read end readable for good; a full pipe (stop
            // asked many times) already is.
            let _ = (&**w).write(&[1]);
        }
    }
}

/// A pipe for [`Stopper`]: (write end, read end), the write end non-blocking.
#[cfg(feature = "xdp")]
fn stop_pipe() -> Option<(
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
)> {
    let (w, r) = std::os::unix::net::UnixStream::pair().ok()?;
    w.set_nonblocking(true).ok()?;
    Some((w, r))
}

/// A running live capture.
#[derive(Debug)]
pub struct LiveHandle {
    sessions: Receiver<SessionStream>,
    /// Woken when a capture thread hands over a new session and when capture ends.
    news: Arc<atomic_waker::AtomicWaker>,
    live: Arc<LiveStats>,
    stop: Stopper,
    thread: Option<JoinHandle<Result<Stats, LiveError>>>,
    /// Which source runs, and why.
    pub source_note: String,
}

impl LiveHandle {
    /// New sessions, one stream each.
    pub fn sessions(&self) -> Receiver<SessionStream> {
        self.sessions.clone()
    }

    /// Wake `w` (once) when the next new session is handed over or capture ends; with
    /// [`SessionStream::next`] on every open stream, a consumer can wait for any of them
    /// without polling.
    pub fn register_waker(&self, w: &std::task::Waker) {
        self.news.register(w);
    }

    /// Counters published by the capture thread.
    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    /// Flag that stops the capture when set (a capture thread blocked on a quiet port sees it
    /// within a second; [`LiveHandle::stopper`] wakes it at once).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.flag.clone()
    }

    /// What stops the capture from another thread, waking it.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Ask the capture to stop.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The capture has ended by itself (duration, count) or after `stop`.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop the capture and wait for its thread; final counters.
    pub fn join(self) -> Result<Stats, LiveError> {
        self.stop();
        self.wait()
    }

    /// Wait for the capture to end by itself (its duration, count, or a [`Stopper`]); final
    /// counters.
    pub fn wait(mut self) -> Result<Stats, LiveError> {
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

/// libpcap on the live interface as a [`FrameSource`] (re-opened after a loss).
struct PcapLive<'a> {
    cfg: &'a LiveConfig,
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    /// Counters of the handles before the last re-open.
    carried: SourceCounters,
    now: SourceCounters,
}

impl<'a> PcapLive<'a> {
    fn open(cfg: &'a LiveConfig) -> Result<Self, LiveError> {
        let (cap, link) = open_pcap(cfg)?;
        Ok(Self {
            cfg,
            cap,
            link,
            carried: SourceCounters::default(),
            now: SourceCounters::default(),
        })
    }
}

impl FrameSource for PcapLive<'_> {
    fn link(&self) -> LinkType {
        self.link
    }

    fn next_batch<F: FnMut(&[u8], u64)>(
        &mut self,
        max: usize,
        mut f: F,
    ) -> Result<usize, SourceLost> {
        let mut n = 0;
        while n < max.min(256) {
            match self.cap.next_packet() {
                Ok(pkt) => {
                    let ts = pkt.header.ts.tv_sec as u64 * 1_000_000 + pkt.header.ts.tv_usec as u64;
                    f(pkt.data, ts);
                    n += 1;
                }
                Err(pcap::Error::TimeoutExpired) => {
                    if n == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    break;
                }
                Err(e) => return Err(SourceLost(format!("libpcap: {e}"))),
            }
        }
        Ok(n)
    }

    fn poll(&mut self) -> Result<SourceCounters, SourceLost> {
        if let Ok(s) = self.cap.stats() {
            self.now.kernel_drops = u64::from(s.dropped) + u64::from(s.if_dropped);
        }
        Ok(self.carried.plus(self.now))
    }

    fn reopen(&mut self) -> Result<(), String> {
        let (cap, link) = open_pcap(self.cfg).map_err(|e| e.to_string())?;
        self.carried = self.carried.plus(self.now);
        self.now = SourceCounters::default();
        (self.cap, self.link) = (cap, link);
        Ok(())
    }

    fn iface(&self) -> &str {
        &self.cfg.iface
    }
}

fn limits(cfg: &LiveConfig) -> Limits {
    Limits {
        duration: cfg.duration,
        count: cfg.count,
    }
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

/// An AF_XDP capture thread runs at `xdp::CAPTURE_NICE` where allowed: its ring holds tens of
/// milliseconds of traffic, less than a busy machine's scheduler can keep it waiting.
#[cfg(feature = "xdp")]
fn raise_priority() {
    if !crate::source::xdp::raise_thread_priority() {
        tracing::debug!(
            "capture thread keeps its priority (nice {} not permitted)",
            crate::source::xdp::CAPTURE_NICE
        );
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
    let (cap, link) = open_pcap(&cfg)?;
    let (mut ring, rx) = RingSink::new(cfg.ring_capacity);
    if let Some(tx) = &cfg.dropped_commits {
        ring.report_dropped_commits(tx.clone());
    }
    ring.set_memory_budget(cfg.pipeline.max_memory);
    ring.set_queue_limit(cfg.max_queued_events);
    let news = Arc::new(atomic_waker::AtomicWaker::new());
    let news2 = news.clone();
    let mut sink = Gate {
        ring,
        on: cfg.events,
        news: news.clone(),
    };
    let live = Arc::new(LiveStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (live2, stop2) = (live.clone(), stop.clone());
    let iface = cfg.iface.clone();
    let thread = std::thread::Builder::new()
        .name("mrte-capture".into())
        .spawn(move || {
            pin(cfg.core);
            let mut src = PcapLive {
                cfg: &cfg,
                cap,
                link,
                carried: SourceCounters::default(),
                now: SourceCounters::default(),
            };
            let mut p = Pipeline::new(cfg.pipeline.clone());
            let st = run_capture(
                &mut src,
                &mut p,
                &mut sink,
                limits(&cfg),
                &stop2,
                |st, sink: &Gate<Arc<atomic_waker::AtomicWaker>>| {
                    let r = sink.ring.stats();
                    st.ring_drops = r.dropped_events;
                    st.ring_overflow_sessions = r.overflowed_sessions;
                    live2.publish(st);
                },
            );
            sink.ring.close_all();
            let mut st = st;
            let r = sink.ring.stats();
            st.ring_drops = r.dropped_events;
            st.ring_overflow_sessions = r.overflowed_sessions;
            live2.publish(&st);
            news2.wake();
            Ok(st)
        })
        .map_err(|_| LiveError::Panicked)?;
    tracing::info!("capture source on {iface}: {note}");
    Ok(LiveHandle {
        sessions: rx,
        news,
        live,
        stop: Stopper::new(stop),
        thread: Some(thread),
        source_note: note,
    })
}

/// A capture thread's sink: the session rings, or nothing when events are off; wakes `news` at
/// each new session handed over.
struct Gate<W: std::ops::Deref<Target = atomic_waker::AtomicWaker>> {
    ring: RingSink,
    on: bool,
    news: W,
}

impl<W: std::ops::Deref<Target = atomic_waker::AtomicWaker>> crate::event::EventSink for Gate<W> {
    #[inline]
    fn push(&mut self, id: crate::event::SessionId, event: crate::event::SessionEvent) {
        let mut slot = crate::event::NO_SLOT;
        self.push_at(&mut slot, id, event);
    }

    #[inline]
    fn push_at(
        &mut self,
        slot: &mut u32,
        id: crate::event::SessionId,
        event: crate::event::SessionEvent,
    ) {
        if self.on {
            let open = matches!(event, crate::event::SessionEvent::Open(_));
            self.ring.push_at(slot, id, event);
            if open {
                self.news.wake();
            }
        }
    }

    fn flush(&mut self) {
        if self.on {
            self.ring.flush();
        }
    }
}

#[cfg(not(feature = "xdp"))]
fn start_xdp(cfg: &LiveConfig) -> Result<LiveHandle, LiveError> {
    Err(LiveError::Xdp {
        iface: cfg.iface.clone(),
        msg: "this binary was built without the `xdp` feature".into(),
    })
}

/// One AF_XDP RX queue as a [`FrameSource`]. With one queue, a lost interface is bound again
/// (new socket, program attached again); with several, the queues share one program, and a
/// loss stops capture with that said.
#[cfg(feature = "xdp")]
struct XdpQueue<'a> {
    cfg: &'a LiveConfig,
    queue: u32,
    src: Option<crate::source::xdp::XdpSource>,
    ifindex: i32,
    /// The program's counters cover every queue: queue 0 reports them.
    program: bool,
    carried: SourceCounters,
    now: SourceCounters,
    last_clock: Instant,
    /// Read end of the stop pipe, for sockets bound again.
    stop_fd: Option<std::os::unix::net::UnixStream>,
    deadline: Option<Instant>,
    /// The current socket's drops by reason, as last read.
    drops: crate::source::xdp::XdpDrops,
}

#[cfg(feature = "xdp")]
impl Drop for XdpQueue<'_> {
    /// Loss is counted in `kernel_drops`; the reasons go to the log once, at the end.
    fn drop(&mut self) {
        let d = self.drops;
        if d.total() > 0 {
            tracing::warn!(
                "AF_XDP on {} queue {}: the kernel dropped {} frames (socket counters: {} \
                 rx_dropped, {} RX ring full, {} fill ring empty{}): the capture thread fell \
                 behind",
                self.cfg.iface,
                self.queue,
                d.total(),
                d.rx_dropped,
                d.rx_ring_full,
                d.fill_ring_empty,
                if d.zero_copy {
                    ""
                } else {
                    ", counted in rx_dropped in copy mode"
                }
            );
        }
    }
}

#[cfg(feature = "xdp")]
impl<'a> XdpQueue<'a> {
    fn new(
        cfg: &'a LiveConfig,
        queue: u32,
        mut src: crate::source::xdp::XdpSource,
        stop_fd: Option<std::os::unix::net::UnixStream>,
    ) -> Self {
        if let Some(fd) = stop_fd.as_ref().and_then(|f| f.try_clone().ok()) {
            src.set_stop_fd(fd.into());
        }
        Self {
            cfg,
            queue,
            ifindex: src.ifindex(),
            src: Some(src),
            program: queue == 0,
            carried: SourceCounters::default(),
            now: SourceCounters::default(),
            last_clock: Instant::now(),
            stop_fd,
            deadline: None,
            drops: Default::default(),
        }
    }
}

#[cfg(feature = "xdp")]
impl FrameSource for XdpQueue<'_> {
    fn link(&self) -> LinkType {
        LinkType::Ethernet
    }

    /// A whole RX batch is always taken (its frames go back to the kernel together).
    fn next_batch<F: FnMut(&[u8], u64)>(&mut self, _: usize, f: F) -> Result<usize, SourceLost> {
        let Some(src) = self.src.as_mut() else {
            return Err(SourceLost("no socket".into()));
        };
        src.recv_batch(f)
            .map_err(|e| SourceLost(format!("AF_XDP queue {}: {e}", self.queue)))
    }

    fn poll(&mut self) -> Result<SourceCounters, SourceLost> {
        let Some(src) = self.src.as_mut() else {
            return Err(SourceLost("no socket".into()));
        };
        if self.last_clock.elapsed() >= Duration::from_secs(1) {
            self.last_clock = Instant::now();
            src.refresh_clock();
        }
        let d = src.drops();
        self.now.kernel_drops = d.total();
        self.drops = d;
        if self.program {
            let c = src.program_counters();
            self.now.filtered_in_kernel = c.passed;
            self.now.untimed_frames = c.untimed;
        }
        let total = self.carried.plus(self.now);
        // A deleted interface leaves the socket bound to nothing: no error, no frames.
        match crate::source::xdp::ifindex_of(&self.cfg.iface) {
            Ok(i) if i == self.ifindex => Ok(total),
            Ok(_) => Err(SourceLost(format!(
                "AF_XDP: {} was deleted and created again",
                self.cfg.iface
            ))),
            Err(_) => Err(SourceLost(format!("AF_XDP: {} went away", self.cfg.iface))),
        }
    }

    fn reopen(&mut self) -> Result<(), String> {
        use crate::source::xdp::XdpSource;
        if self.cfg.queues > 1 {
            return Err(format!(
                "{} RX queues share one XDP program and are not re-bound one by one; restart mrte",
                self.cfg.queues
            ));
        }
        if self.src.take().is_some() {
            self.carried = self.carried.plus(self.now);
            self.now = SourceCounters::default();
        }
        let cfg = self.cfg;
        let mut s = XdpSource::open(&cfg.iface, self.queue, cfg.xdp_mode, &cfg.pipeline.ports)?;
        if cfg.busy_poll_usecs > 0 {
            s.set_busy_poll(cfg.busy_poll_usecs, 64)
                .map_err(|e| format!("busy polling: {e}"))?;
        }
        if let Some(fd) = self.stop_fd.as_ref().and_then(|f| f.try_clone().ok()) {
            s.set_stop_fd(fd.into());
        }
        s.set_deadline(self.deadline);
        self.ifindex = s.ifindex();
        self.src = Some(s);
        Ok(())
    }

    fn iface(&self) -> &str {
        &self.cfg.iface
    }

    fn set_deadline(&mut self, at: Option<Instant>) {
        self.deadline = at;
        if let Some(s) = self.src.as_mut() {
            s.set_deadline(at);
        }
    }
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
    let (wake, stop_fd) = match stop_pipe() {
        Some((w, r)) => (Some(Arc::new(w)), Some(r)),
        None => (None, None),
    };
    let news = Arc::new(atomic_waker::AtomicWaker::new());
    let news2 = news.clone();
    let thread = std::thread::Builder::new()
        .name("mrte-xdp-0".into())
        .spawn(move || {
            let cfg = cfg2;
            pin(cfg.cores.first().copied().or(cfg.core));
            raise_priority();
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
                let news = news2.clone();
                let stop_fd = stop_fd.as_ref().and_then(|f| f.try_clone().ok());
                let h = std::thread::Builder::new()
                    .name(format!("mrte-xdp-{q}"))
                    .spawn(move || {
                        pin(cfg.cores.get(q as usize).copied());
                        raise_priority();
                        run_xdp_queue(src, q, &cfg, tx, &live, &stop, &shared, stop_fd, &news)
                    })
                    .map_err(|_| LiveError::Panicked)?;
                others.push(h);
            }
            let src = sources.pop().ok_or(LiveError::Panicked)?;
            let mut total =
                run_xdp_queue(src, 0, &cfg, tx, &live2, &stop2, &shared, stop_fd, &news2);
            for h in others {
                let st = h.join().map_err(|_| LiveError::Panicked)?;
                total.merge(&st);
            }
            live2.publish(&total);
            news2.wake();
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
                news,
                live,
                stop: Stopper { flag: stop, wake },
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

/// The sink of one RX queue's capture thread: the session rings (events off: nothing), plus
/// (with several queues) a check at each session's open that no other queue carries the same
/// connection.
#[cfg(feature = "xdp")]
struct QueueSink<'a> {
    gate: Gate<&'a atomic_waker::AtomicWaker>,
    queue: u32,
    shared: Option<&'a QueueShared>,
    keys: HashMap<crate::event::SessionId, crate::event::FlowKey>,
    multi: u64,
}

#[cfg(feature = "xdp")]
impl crate::event::EventSink for QueueSink<'_> {
    fn push(&mut self, id: crate::event::SessionId, event: crate::event::SessionEvent) {
        let mut slot = crate::event::NO_SLOT;
        self.push_at(&mut slot, id, event);
    }

    fn push_at(
        &mut self,
        slot: &mut u32,
        id: crate::event::SessionId,
        event: crate::event::SessionEvent,
    ) {
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
        self.gate.push_at(slot, id, event);
    }

    fn flush(&mut self) {
        self.gate.flush();
    }
}

/// One RX queue's capture loop: its own pipeline (session ids `q + 1`, `q + 1 + n`, ...) and
/// rings, until stopped; returns its counters.
#[cfg(feature = "xdp")]
#[allow(clippy::too_many_arguments)]
fn run_xdp_queue(
    src: crate::source::xdp::XdpSource,
    q: u32,
    cfg: &LiveConfig,
    tx: crossbeam_channel::Sender<SessionStream>,
    live: &LiveStats,
    stop: &AtomicBool,
    shared: &QueueShared,
    stop_fd: Option<std::os::unix::net::UnixStream>,
    news: &atomic_waker::AtomicWaker,
) -> Stats {
    let nq = cfg.queues.max(1);
    let mut ring = RingSink::with_sender(cfg.ring_capacity, tx);
    if let Some(tx) = &cfg.dropped_commits {
        ring.report_dropped_commits(tx.clone());
    }
    ring.set_memory_budget(cfg.pipeline.max_memory / nq as usize);
    ring.set_queue_limit(cfg.max_queued_events.div_ceil(nq as usize));
    let mut sink = QueueSink {
        gate: Gate {
            ring,
            on: cfg.events,
            news,
        },
        queue: q,
        shared: (nq > 1).then_some(shared),
        keys: HashMap::new(),
        multi: 0,
    };
    let mut p = Pipeline::new(cfg.pipeline.clone());
    p.set_session_ids(u64::from(q) + 1, u64::from(nq));
    if nq > 1 {
        // One queue keeps the pipeline's own clock: no lock per command.
        p.set_commit_clock(shared.commits.clone());
    }
    let mut src = XdpQueue::new(cfg, q, src, stop_fd);
    let ring_counters = |st: &mut Stats, sink: &QueueSink| {
        let r = sink.gate.ring.stats();
        st.ring_drops = r.dropped_events;
        st.ring_overflow_sessions = r.overflowed_sessions;
        st.multi_queue_sessions = sink.multi;
    };
    let mut st = run_capture(
        &mut src,
        &mut p,
        &mut sink,
        limits(cfg),
        stop,
        |st, sink| {
            ring_counters(st, sink);
            if nq == 1 {
                live.publish(st);
            } else {
                shared.publish(q, st, live);
            }
        },
    );
    sink.gate.ring.close_all();
    ring_counters(&mut st, &sink);
    if nq > 1 {
        shared.publish(q, &st, live);
    }
    st
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
    let mut src = PcapLive::open(cfg)?;
    tracing::info!("recording {} to {} with {note}", cfg.iface, path.display());
    let mut w = PcapFileWriter::create(path, src.link)?;
    let r = run_record(&mut src, &mut w, limits(cfg), &stop);
    let r = finish_record(r, w, note, |msg| LiveError::Pcap {
        iface: cfg.iface.clone(),
        msg,
    })?;
    Ok(r)
}

/// The file of a recording finished (also after an error, so that what was written stays a
/// valid pcap), and its counters.
fn finish_record<W: std::io::Write>(
    r: Result<frames::Recorded, RecordError>,
    w: PcapFileWriter<W>,
    source: String,
    lost: impl FnOnce(String) -> LiveError,
) -> Result<RecordStats, LiveError> {
    let done = w.finish();
    let r = match r {
        Ok(r) => r,
        Err(RecordError::File(e)) => return Err(e.into()),
        Err(RecordError::Lost(msg)) => return Err(lost(msg)),
    };
    done?;
    Ok(RecordStats {
        source,
        frames: r.frames,
        bytes: r.bytes,
        kernel_drops: r.counters.kernel_drops,
        filtered_in_kernel: r.counters.filtered_in_kernel,
        untimed_frames: r.counters.untimed_frames,
    })
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
    raise_priority();
    let src = XdpSource::open(&cfg.iface, 0, cfg.xdp_mode, &cfg.pipeline.ports).map_err(xerr)?;
    let note = format!("AF_XDP, {} mode, RX queue 0, mrte XDP program", src.mode);
    tracing::info!("recording {} to {} with {note}", cfg.iface, path.display());
    let mut w = PcapFileWriter::create(path, LinkType::Ethernet)?;
    let mut src = XdpQueue::new(cfg, 0, src, None);
    let r = run_record(&mut src, &mut w, limits(cfg), stop);
    finish_record(r, w, note, xerr)
}
