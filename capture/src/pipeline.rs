//! Frames in, session events out: slicing ([`crate::net`]), the session table, TCP reassembly
//! ([`crate::tcp`]) and MySQL decoding ([`crate::mysql`]), pushing [`SessionEvent`]s into an
//! [`EventSink`]. Sans-IO: time comes from the frame; no sockets, clocks or threads.
//!
//! [`SessionEvent`]: crate::event::SessionEvent

use crate::event::EventSink;
use crate::mysql::DecoderConfig;
use crate::net::LinkType;
use crate::stats::Stats;

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Server ports (a session is a TCP connection to one of them).
    pub ports: Vec<u16>,
    /// MySQL decoder settings.
    pub decoder: DecoderConfig,
    /// Most sessions tracked at once; beyond it the idlest is evicted.
    pub max_sessions: usize,
    /// A session with no packet for this long is closed (microseconds of capture time).
    pub idle_timeout_us: u64,
    /// Out-of-order bytes buffered per direction before a hole is declared.
    pub max_ooo_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            ports: vec![3306],
            decoder: DecoderConfig::default(),
            max_sessions: 1 << 20,
            idle_timeout_us: 600_000_000,
            max_ooo_bytes: 1 << 20,
        }
    }
}

/// The decode path shared by live capture and pcap files.
#[derive(Debug)]
pub struct Pipeline {
    cfg: PipelineConfig,
    stats: Stats,
}

impl Pipeline {
    /// A pipeline with an empty session table.
    pub fn new(cfg: PipelineConfig) -> Self {
        Self {
            cfg,
            stats: Stats::default(),
        }
    }

    /// Settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Decode one captured frame of link type `link` taken at `ts_us` (µs since the Unix epoch).
    pub fn handle_frame<S: EventSink>(&mut self, link: LinkType, frame: &[u8], ts_us: u64, sink: &mut S) {
        let _ = (link, frame, ts_us, sink);
        unimplemented!("pipeline")
    }

    /// Close sessions idle for longer than the timeout, as of `now_us` (capture time).
    pub fn handle_timeout<S: EventSink>(&mut self, now_us: u64, sink: &mut S) {
        let _ = (now_us, sink);
    }

    /// End of capture: flush and close every session.
    pub fn finish<S: EventSink>(&mut self, ts_us: u64, sink: &mut S) {
        let _ = (ts_us, sink);
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Mutable counters (sources add kernel drops, rings add ring drops).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }
}
