//! One capture loop for every live source: a [`FrameSource`] (AF_XDP RX queue, libpcap handle)
//! hands frames with their receive times to [`run_capture`] (decode into a [`Pipeline`]) or
//! [`run_record`] (write a pcap), which own the stop conditions, the 100 ms counter publishing
//! and what happens when the interface goes away: the source is opened again every 250 ms for up
//! to [`REBIND_FOR`], else capture stops with an error in the log and the counters so far are
//! returned, so that callers still write their report.
//!
//! Counters are kept by their owners: the pipeline's own [`Stats`], the source's
//! [`SourceCounters`] (kernel drops, frames left to the kernel stack, untimed frames; carried over
//! re-binds) and the rings' [`crate::ring::RingStats`]; the loop puts them together only when it
//! publishes. It does not open sources (see `live`, `xdp`) nor decode anything itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::event::EventSink;
use crate::net::LinkType;
use crate::pipeline::Pipeline;
use crate::source::pcap::{PcapFileWriter, SourceError};
use crate::stats::Stats;

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

/// How long a source whose interface went away tries to open it again.
pub const REBIND_FOR: Duration = Duration::from_secs(30);

/// Counters a source owns (monotonic over the source's life, re-binds included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Frames the kernel dropped before the source read them.
    pub kernel_drops: u64,
    /// Frames the XDP program left to the kernel stack (not server-port TCP).
    pub filtered_in_kernel: u64,
    /// Frames without a kernel receive time (stamped with the wall clock at read time).
    pub untimed_frames: u64,
}

impl SourceCounters {
    /// Counters of a source opened again after `self` (the previous socket's totals).
    pub fn plus(self, o: SourceCounters) -> SourceCounters {
        SourceCounters {
            kernel_drops: self.kernel_drops + o.kernel_drops,
            filtered_in_kernel: self.filtered_in_kernel + o.filtered_in_kernel,
            untimed_frames: self.untimed_frames + o.untimed_frames,
        }
    }

    /// Copy into the published counters.
    pub fn write_to(&self, st: &mut Stats) {
        st.kernel_drops = self.kernel_drops;
        st.filtered_in_kernel = self.filtered_in_kernel;
        st.untimed_frames = self.untimed_frames;
    }
}

/// The source lost its interface (deleted, driver reset) or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLost(pub String);

/// A live packet source.
pub trait FrameSource {
    /// Link type of the frames.
    fn link(&self) -> LinkType;
    /// Hand the frames waiting to `f` with their receive times (µs since the Unix epoch), at most
    /// `max` where the source can stop within a batch; after a short wait when none is, return 0.
    fn next_batch<F: FnMut(&[u8], u64)>(&mut self, max: usize, f: F) -> Result<usize, SourceLost>;
    /// Housekeeping about every 100 ms: the counters so far, or the loss of the interface.
    fn poll(&mut self) -> Result<SourceCounters, SourceLost>;
    /// Open the interface again after a loss (the counters carry on).
    fn reopen(&mut self) -> Result<(), String>;
    /// Interface name, for messages.
    fn iface(&self) -> &str;
    /// When the capture ends (its duration), so that a source blocked on a quiet interface
    /// returns by then. The default ignores it (the source waits briefly anyway).
    fn set_deadline(&mut self, _at: Option<Instant>) {}
}

/// When to stop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many frames.
    pub count: Option<u64>,
}

/// After a loss: open the source again every 250 ms for up to [`REBIND_FOR`] or until `stop`;
/// false (and an error logged) when it could not.
pub fn rebind<S: FrameSource>(src: &mut S, stop: &AtomicBool, why: &SourceLost) -> bool {
    let iface = src.iface().to_string();
    tracing::warn!(
        "capture on {iface}: {}; re-opening the interface for up to {REBIND_FOR:?}",
        why.0
    );
    let until = Instant::now() + REBIND_FOR;
    let mut last = String::new();
    while Instant::now() < until && !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(250));
        match src.reopen() {
            Ok(()) => {
                tracing::warn!("capture on {iface}: re-bound, capturing again");
                return true;
            }
            Err(e) => {
                tracing::debug!("re-bind {iface}: {e}");
                last = e;
            }
        }
    }
    if !stop.load(Ordering::Acquire) {
        tracing::error!(
            "capture on {iface}: {}; could not re-open it within {REBIND_FOR:?} ({last}): \
             capture stops",
            why.0
        );
    }
    false
}

/// Decode frames from `src` into `p` and `sink` until `stop`, the limits, or an interface loss
/// that re-binding does not cure. `publish` gets the pipeline's counters with the source's
/// written in about every 100 ms (`sink` lets it add the rings'); the final counters are
/// returned after [`Pipeline::finish`].
pub fn run_capture<S: FrameSource, K: EventSink>(
    src: &mut S,
    p: &mut Pipeline,
    sink: &mut K,
    limits: Limits,
    stop: &AtomicBool,
    mut publish: impl FnMut(&mut Stats, &K),
) -> Stats {
    let started = Instant::now();
    let mut last_pub = Instant::now();
    let mut frames = 0u64;
    let mut last_ts = 0;
    let mut link = src.link();
    let mut counters = SourceCounters::default();
    src.set_deadline(limits.duration.map(|d| started + d));
    while !stop.load(Ordering::Acquire)
        && limits.duration.is_none_or(|d| started.elapsed() < d)
        && limits.count.is_none_or(|n| frames < n)
    {
        let max = limits
            .count
            .map_or(usize::MAX, |n| n.saturating_sub(frames) as usize);
        let r = src.next_batch(max, |f, ts| {
            frames += 1;
            last_ts = ts;
            p.handle_frame(link, f, ts, sink);
        });
        sink.flush();
        let mut lost = r.err();
        if last_pub.elapsed() >= Duration::from_millis(100) {
            last_pub = Instant::now();
            match src.poll() {
                Ok(c) => counters = c,
                Err(e) => lost = lost.or(Some(e)),
            }
            counters.write_to(p.stats_mut());
            publish(p.stats_mut(), sink);
        }
        if let Some(e) = lost {
            if !rebind(src, stop, &e) {
                break;
            }
            link = src.link();
        }
    }
    if let Ok(c) = src.poll() {
        counters = c;
    }
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(last_ts, |d| d.as_micros() as u64);
    p.finish(now_us.max(last_ts), sink);
    counters.write_to(p.stats_mut());
    publish(p.stats_mut(), sink);
    p.stats().clone()
}

/// What [`run_record`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recorded {
    /// Frames written.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The source's counters.
    pub counters: SourceCounters,
}

/// Why [`run_record`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Writing the file failed.
    #[error(transparent)]
    File(#[from] SourceError),
    /// The interface went away and did not come back (or came back with another link type).
    #[error("{0}")]
    Lost(String),
}

/// Write frames from `src` to `w` until `stop` or the limits; an interface loss is re-bound
/// like [`run_capture`] does, else an error (the file written so far stays valid once the
/// caller finishes it).
pub fn run_record<S: FrameSource, W: std::io::Write>(
    src: &mut S,
    w: &mut PcapFileWriter<W>,
    limits: Limits,
    stop: &AtomicBool,
) -> Result<Recorded, RecordError> {
    let started = Instant::now();
    let mut last_poll = Instant::now();
    let link = src.link();
    let mut st = Recorded::default();
    let mut werr = None;
    src.set_deadline(limits.duration.map(|d| started + d));
    while !stop.load(Ordering::Acquire)
        && limits.duration.is_none_or(|d| started.elapsed() < d)
        && limits.count.is_none_or(|n| st.frames < n)
        && werr.is_none()
    {
        let max = limits
            .count
            .map_or(usize::MAX, |n| n.saturating_sub(st.frames) as usize);
        let r = src.next_batch(max, |f, ts| {
            if limits.count.is_some_and(|n| st.frames >= n) || werr.is_some() {
            } else if let Err(e) = w.write(f, ts) {
                werr = Some(e);
            } else {
                st.frames += 1;
                st.bytes += f.len() as u64;
            }
        });
        let mut lost = r.err();
        if last_poll.elapsed() >= Duration::from_millis(100) {
            last_poll = Instant::now();
            match src.poll() {
                Ok(c) => st.counters = c,
                Err(e) => lost = lost.or(Some(e)),
            }
        }
        if let Some(e) = lost {
            if !rebind(src, stop, &e) {
                return Err(RecordError::Lost(format!(
                    "{}; could not re-open it within {REBIND_FOR:?}",
                    e.0
                )));
            }
            if src.link() != link {
                return Err(RecordError::Lost(format!(
                    "{}; re-opened with another link type",
                    e.0
                )));
            }
        }
    }
    if let Some(e) = werr {
        return Err(e.into());
    }
    if let Ok(c) = src.poll() {
        st.counters = c;
    }
    Ok(st)
}
