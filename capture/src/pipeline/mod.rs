//! Frames in, session events out: slicing ([`crate::net`]), the session table
//! ([`crate::table`]), TCP reassembly ([`crate::tcp`]) and MySQL decoding ([`crate::mysql`]),
//! pushing [`SessionEvent`]s into an [`EventSink`]. Sans-IO: time comes from the frame; no
//! sockets, clocks or threads.
//!
//! Per frame the hot path does no allocation and takes no lock: a session-table lookup, an O(1)
//! move to the recent end of the least-recently-used list, the in-order reassembly fast path and
//! the decoder. Sessions open on a SYN or on the first segment carrying payload (then
//! mid-stream), close on FIN from both sides, RST, idleness, eviction or [`Pipeline::finish`].
//!
//! Bounds: at most `max_sessions` sessions (the least recently used is evicted, counted); idle
//! sessions expire from the cold end of the list without scanning the table; sessions idle for
//! [`COLD_US`] have their buffers freed; the bytes held in reassembly, held segments and decoder
//! buffers of all sessions stay under `max_memory` (the session that crosses it drops its
//! buffers, counted). A panic while decoding a session is caught: that session is dropped and
//! counted, capture goes on.
//!
//! Files: this one holds the settings, the pipeline and its per-frame entry
//! ([`Pipeline::handle_frame`]); `segment.rs` the path of a segment of a known session;
//! `lifecycle.rs` opening, closing and expiring sessions; `session.rs` one session's state and its
//! reassembly.

mod lifecycle;
mod segment;
mod session;
#[cfg(test)]
mod tests;

use crate::commit::{CommitClock, SharedCommitClock};
use crate::event::{CloseReason, EventSink, FlowKey, SessionId};
use crate::mysql::{DecoderConfig, Direction, Lent};
use crate::net::{slice_tcp, LinkType, Skip};
use crate::shard::{Mark, Shard};
use crate::stats::Stats;
use crate::table::Table;
use session::{Key, Session};

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Server ports (a session is a TCP connection to one of them).
    pub ports: Vec<u16>,
    /// MySQL decoder settings.
    pub decoder: DecoderConfig,
    /// Most sessions tracked at once; beyond it the least recently used is evicted.
    pub max_sessions: usize,
    /// A session with no packet for this long is closed (microseconds of capture time).
    pub idle_timeout_us: u64,
    /// Out-of-order span buffered per direction before a hole is declared (a TCP window or more;
    /// rounded down to a power of two).
    pub max_ooo_bytes: usize,
    /// Most bytes held at once over all sessions in reassembly buffers, held segments and
    /// decoder buffers (partial and large commands); 0: no limit.
    pub max_memory: usize,
}

/// Default `max_sessions`.
pub const DEFAULT_MAX_SESSIONS: usize = 1 << 20;
/// Default `max_memory` (1 GiB).
pub const DEFAULT_MAX_MEMORY: usize = 1 << 30;
/// The session table's index is sized once for `max_sessions`, up to this many (18 bytes per
/// session: 8-byte buckets at most 7/8 full, rounded up to a power of two, plus a control byte).
const MAX_PRESIZE: usize = 1 << 17;
/// Sessions without a packet for this long (capture time) have their buffers freed.
pub const COLD_US: u64 = 2_000_000;

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            ports: vec![3306],
            decoder: DecoderConfig::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout_us: 600_000_000,
            max_ooo_bytes: 16 << 20,
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// The pipeline's commit clock: its own (no lock per command) unless shared with the pipelines
/// of other RX queues.
#[derive(Debug)]
enum Clock {
    Own(CommitClock),
    Shared(SharedCommitClock),
}

impl Clock {
    #[inline]
    fn mark(&mut self, rec: &mut crate::event::CommandRecord) {
        match self {
            Clock::Own(c) => c.mark(rec),
            Clock::Shared(c) => c.mark(rec),
        }
    }
}

/// Payload that makes the test build's decoder panic.
#[cfg(test)]
pub(crate) const TEST_PANIC: &[u8] = b"\xffmrte-test-panic";

/// The decode path shared by live capture and pcap files.
pub struct Pipeline {
    cfg: PipelineConfig,
    stats: Stats,
    table: Table<Key, Session>,
    /// Bytes buffered over all sessions (as last accounted).
    buffered: usize,
    next_id: SessionId,
    id_step: SessionId,
    last_sweep_us: u64,
    port_bitmap: Box<[u64; 1024]>,
    /// Numbers prod commits and marks each command's commit watermarks (shared by the pipelines
    /// of a multi-queue capture).
    commits: Clock,
    /// Command arena lent to the session being fed (see [`Connection::swap_arena`]).
    arena: Option<Box<Lent>>,
    /// This pipeline's share of the flows when several decode one file ([`crate::shard`]).
    shard: Option<Box<Shard>>,
    /// Sessions closed by [`Pipeline::finish`], freed with the pipeline (a process that exits
    /// right after may skip freeing them: see [`Pipeline::finish`]).
    #[allow(clippy::vec_box)] // the closed sessions' own boxes, kept, not moved
    retired: Vec<Box<Session>>,
    retiring: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("cfg", &self.cfg)
            .field("sessions", &self.table.len())
            .field("buffered", &self.buffered)
            .finish()
    }
}

impl Pipeline {
    /// Number sessions `first`, `first + step`, ... (one pipeline per RX queue: ids stay unique).
    pub fn set_session_ids(&mut self, first: SessionId, step: SessionId) {
        self.next_id = first.max(1);
        self.id_step = step.max(1);
    }

    /// Share `clock` with other pipelines (one per RX queue): commits are numbered across all.
    pub fn set_commit_clock(&mut self, clock: SharedCommitClock) {
        self.commits = Clock::Shared(clock);
    }

    /// Commits and rollbacks seen so far (by every pipeline sharing this one's clock).
    pub fn commit_counts(&self) -> (u64, u64) {
        match &self.commits {
            Clock::Own(c) => (c.commits(), c.rollbacks()),
            Clock::Shared(c) => c.counts(),
        }
    }

    /// A pipeline with an empty session table.
    pub fn new(cfg: PipelineConfig) -> Self {
        let mut port_bitmap = Box::new([0u64; 1024]);
        for &p in &cfg.ports {
            port_bitmap[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        let table = Table::with_hint(cfg.max_sessions.min(MAX_PRESIZE));
        Self {
            cfg,
            stats: Stats::default(),
            table,
            buffered: 0,
            next_id: 1,
            id_step: 1,
            last_sweep_us: 0,
            port_bitmap,
            commits: Clock::Own(CommitClock::new()),
            arena: Some(Box::default()),
            shard: None,
            retired: Vec::new(),
            retiring: false,
        }
    }

    /// Decode only the flows of shard `index` of `count` (frames of no flow: shard 0), while
    /// still sweeping idle sessions on every frame, as one of `count` pipelines fed the same
    /// frames (see [`crate::shard`]); [`Pipeline::shard_log`] then gives its memory log.
    pub fn set_shard(&mut self, index: u32, count: u32) {
        self.shard = (count > 1).then(|| Box::new(Shard::new(index, count)));
    }

    /// The per-frame memory log of a sharded pipeline, for [`crate::shard::merge_peaks`].
    pub fn shard_log(&mut self) -> Vec<Mark> {
        self.shard
            .as_mut()
            .map(|s| s.take_log())
            .unwrap_or_default()
    }

    /// Frames of no flow are shard 0's.
    #[inline]
    fn counts_flowless(&self) -> bool {
        self.shard.as_ref().is_none_or(|s| s.index == 0)
    }

    /// Settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    #[inline]
    fn is_server_port(&self, p: u16) -> bool {
        self.port_bitmap[usize::from(p >> 6)] & (1 << (p & 63)) != 0
    }

    /// Decode one captured frame of link type `link` taken at `ts_us` (µs since the Unix epoch).
    #[inline]
    pub fn handle_frame<S: EventSink>(
        &mut self,
        link: LinkType,
        frame: &[u8],
        ts_us: u64,
        sink: &mut S,
    ) {
        if self.shard.is_none() {
            return self.frame(link, frame, ts_us, sink);
        }
        if let Some(s) = self.shard.as_mut() {
            s.next_frame();
        }
        self.frame(link, frame, ts_us, sink);
        let buffered = self.buffered;
        if let Some(s) = self.shard.as_mut() {
            s.end_frame(buffered);
        }
    }

    #[inline]
    fn count_frame(&mut self, frame: &[u8]) {
        self.stats.packets += 1;
        self.stats.bytes += frame.len() as u64;
    }

    fn frame<S: EventSink>(&mut self, link: LinkType, frame: &[u8], ts_us: u64, sink: &mut S) {
        if ts_us >= self.last_sweep_us + 1_000_000 {
            if self.last_sweep_us != 0 {
                self.handle_timeout(ts_us, sink);
            }
            self.last_sweep_us = ts_us;
        }
        // Borrowed out of the result, not moved: a move copies the segment through memory in
        // wide loads of narrower stores (a store-forwarding stall on every frame).
        let sliced = slice_tcp(link, frame);
        let seg = match &sliced {
            Ok(s) => s,
            Err(skip) => {
                if !self.counts_flowless() {
                    return;
                }
                self.count_frame(frame);
                let k = &mut self.stats.skipped;
                match *skip {
                    Skip::UnsupportedLink => k.unsupported_link += 1,
                    Skip::Malformed => k.malformed += 1,
                    Skip::NotIp => k.not_ip += 1,
                    Skip::NotTcp => k.not_tcp += 1,
                    Skip::IpFragment => k.ip_fragment += 1,
                }
                return;
            }
        };
        let dir = if self.is_server_port(seg.dst.port()) {
            Direction::ToServer
        } else if self.is_server_port(seg.src.port()) {
            Direction::ToClient
        } else {
            if self.counts_flowless() {
                self.count_frame(frame);
                self.stats.skipped.other_port += 1;
            }
            return;
        };
        let flow = match dir {
            Direction::ToServer => FlowKey {
                client: seg.src,
                server: seg.dst,
            },
            Direction::ToClient => FlowKey {
                client: seg.dst,
                server: seg.src,
            },
        };
        let key = Key::new(&flow);
        if let Some(s) = &self.shard {
            if !s.owns(Table::<Key, Session>::hash(&key)) {
                return;
            }
        }
        self.count_frame(frame);
        if seg.missing > 0 {
            self.stats.skipped.truncated += 1;
        }
        if let Some(i) = self.table.find(&key) {
            // A client SYN with a new initial sequence number: the addresses and ports were
            // reused by a new connection, which must not inherit the old one's decoder state.
            let reused = dir == Direction::ToServer
                && seg.flags.syn
                && !seg.flags.ack
                && self
                    .table
                    .get_mut(i)
                    .to_server
                    .next_seq()
                    .is_some_and(|n| n != seg.seq.wrapping_add(1));
            if !reused {
                self.table.touch(i);
                self.segment(i, dir, seg, ts_us, sink);
                return;
            }
            self.close(i, ts_us, CloseReason::Reused, sink);
        }
        self.open(key, flow, dir, seg, ts_us, sink);
    }

    /// Counters so far (gap counters of still-open sessions are added when they close).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Mutable counters (sources add kernel drops, rings add ring drops).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Sessions currently tracked.
    pub fn open_sessions(&self) -> usize {
        self.table.len()
    }

    /// Bytes currently buffered over all sessions (reassembly, held segments, decoder).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }
}
