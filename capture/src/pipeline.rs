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

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::BytesMut;

use crate::commit::{CommitClock, SharedCommitClock};
use crate::event::{
    CloseReason, EventSink, FlowKey, SessionClose, SessionEvent, SessionId, SessionOpen,
};
use crate::mysql::{Anomaly, ConnEvent, Connection, DecoderConfig, Direction, Undecoded};
use crate::net::{slice_tcp, LinkType, Skip, TcpSegment};
use crate::shard::{Mark, Shard};
use crate::stats::Stats;
use crate::table::Table;
use crate::tcp::{seq_lt, Chunk, Stream};

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

/// A segment held back because it acknowledges peer bytes not seen yet (cross-direction reordering).
struct Held {
    dir: Direction,
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    payload: Vec<u8>,
    missing: u32,
    ts_us: u64,
}

/// Most segments held per session before the peer's hole is declared lost.
const MAX_HELD: usize = 64;
/// Longest a segment is held (capture time) before the peer's hole is declared lost.
const MAX_HOLD_US: u64 = 200_000;

/// The table's key: a [`FlowKey`] in 36 bytes instead of 64 (IPv4 as IPv4-mapped IPv6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: [u8; 16],
    server: [u8; 16],
    client_port: u16,
    server_port: u16,
}

fn ip16(a: &SocketAddr) -> [u8; 16] {
    match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ip_of(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Key {
    #[inline]
    fn new(k: &FlowKey) -> Self {
        Self {
            client: ip16(&k.client),
            server: ip16(&k.server),
            client_port: k.client.port(),
            server_port: k.server.port(),
        }
    }

    fn flow(&self) -> FlowKey {
        FlowKey {
            client: SocketAddr::new(ip_of(self.client), self.client_port),
            server: SocketAddr::new(ip_of(self.server), self.server_port),
        }
    }
}

struct Session {
    id: SessionId,
    held: VecDeque<Held>,
    conn: Connection,
    to_server: Stream,
    to_client: Stream,
    last_us: u64,
    /// Bytes this session had buffered when last accounted (`buffered()`, which fits).
    mem: u32,
    tls: bool,
    compressed: bool,
}

impl Session {
    /// The decoder and the stream of direction `dir`.
    fn parts(&mut self, dir: Direction) -> (&mut Connection, &mut Stream) {
        match dir {
            Direction::ToServer => (&mut self.conn, &mut self.to_server),
            Direction::ToClient => (&mut self.conn, &mut self.to_client),
        }
    }

    /// Bytes buffered now (reassembly, held segments, decoder), at most `u32::MAX` (what
    /// `mem` holds; a session's buffers are bounded far below it).
    #[inline]
    fn buffered(&self) -> usize {
        let held: usize = if self.held.is_empty() {
            0
        } else {
            self.held.iter().map(|h| h.payload.len()).sum()
        };
        (self.to_server.held_bytes()
            + self.to_client.held_bytes()
            + held
            + self.conn.buffered_bytes())
        .min(u32::MAX as usize)
    }

    /// Free what an idle session does not need.
    fn shrink_idle(&mut self) {
        if self.held.is_empty() {
            self.held = VecDeque::new();
        }
        self.conn.shrink_idle();
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
    arena: Option<Box<BytesMut>>,
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
        let seg = match slice_tcp(link, frame) {
            Ok(s) => s,
            Err(skip) => {
                if !self.counts_flowless() {
                    return;
                }
                self.count_frame(frame);
                let k = &mut self.stats.skipped;
                match skip {
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
                self.segment(i, dir, &seg, ts_us, sink);
                return;
            }
            self.close(i, ts_us, CloseReason::Reused, sink);
        }
        let opening = seg.flags.syn || !seg.payload.is_empty() || seg.missing > 0;
        if !opening || seg.flags.rst {
            self.stats.skipped.untracked += 1;
            return;
        }
        if self.table.len() >= self.cfg.max_sessions.max(1) {
            if let Some(oldest) = self.table.oldest() {
                self.close(oldest, ts_us, CloseReason::Evicted, sink);
            }
        }
        let midstream = !seg.flags.syn;
        let id = self.next_id;
        self.next_id += self.id_step;
        self.stats.sessions += 1;
        self.stats.active_sessions += 1;
        if midstream {
            self.stats.midstream_sessions += 1;
        }
        sink.push(
            id,
            SessionEvent::Open(Box::new(SessionOpen {
                id,
                key: flow,
                ts_us,
                midstream,
            })),
        );
        let i = self.table.insert(
            key,
            Box::new(Session {
                id,
                held: VecDeque::new(),
                conn: Connection::new(self.cfg.decoder.clone(), midstream),
                to_server: Stream::default(),
                to_client: Stream::default(),
                last_us: ts_us,
                mem: 0,
                tls: false,
                compressed: false,
            }),
        );
        self.segment(i, dir, &seg, ts_us, sink);
        // Most sessions opened mid-stream by one segment stay idle for long: give the buffers
        // its first events needed back now (one free per session, not per packet).
        if let Some(sess) = self.table.get_mut_checked(i) {
            sess.shrink_idle();
            let now = sess.buffered();
            self.buffered = self.buffered - (sess.mem as usize) + now;
            sess.mem = now as u32;
        }
    }

    /// One segment of session `i`, panics contained; closes the session when it ends.
    fn segment<S: EventSink>(
        &mut self,
        i: u32,
        dir: Direction,
        seg: &TcpSegment<'_>,
        ts_us: u64,
        sink: &mut S,
    ) {
        let max_ooo = self.cfg.max_ooo_bytes;
        let Self {
            stats,
            table,
            commits,
            ..
        } = self;
        let sess = table.get_mut(i);
        sess.conn.swap_arena(&mut self.arena);
        let r = catch_unwind(AssertUnwindSafe(|| {
            Self::on_segment(stats, commits, sess, dir, seg, ts_us, max_ooo, sink)
        }));
        match r {
            Ok(close) => {
                self.table.get_mut(i).conn.swap_arena(&mut self.arena);
                self.account(i, ts_us, sink);
                if let Some(reason) = close {
                    self.close(i, ts_us, reason, sink);
                }
            }
            Err(_) => self.panicked(i, seg.payload.len(), ts_us, sink),
        }
    }

    /// Update the memory books after session `i` changed; over the limit, it drops its buffers.
    #[inline]
    fn account<S: EventSink>(&mut self, i: u32, ts_us: u64, sink: &mut S) {
        let sess = self.table.get_mut(i);
        let now = sess.buffered();
        if now == (sess.mem as usize) {
            return;
        }
        let grew = now > (sess.mem as usize);
        self.buffered = self.buffered - (sess.mem as usize) + now;
        sess.mem = now as u32;
        self.stats.peak_buffered_bytes = self.stats.peak_buffered_bytes.max(self.buffered as u64);
        if let Some(s) = self.shard.as_mut() {
            s.note(self.buffered);
        }
        // The session whose growth crossed the limit pays for it.
        if !grew || self.cfg.max_memory == 0 || self.buffered <= self.cfg.max_memory {
            return;
        }
        self.stats.memory_drops += 1;
        let max_ooo = self.cfg.max_ooo_bytes;
        let Self {
            stats,
            table,
            commits,
            ..
        } = self;
        let sess = table.get_mut(i);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let conn = flush_all(sess, ts_us, max_ooo);
            if conn.buffered_bytes() > 0 {
                conn.handle_gap(Direction::ToServer, 0, ts_us);
                conn.handle_gap(Direction::ToClient, 0, ts_us);
            }
            sess.shrink_idle();
            Self::drain(stats, commits, sess, sink);
        }));
        if r.is_err() {
            self.panicked(i, 0, ts_us, sink);
            return;
        }
        let sess = self.table.get_mut(i);
        let now = sess.buffered();
        self.buffered = self.buffered - (sess.mem as usize) + now;
        sess.mem = now as u32;
    }

    /// Decoding session `i` panicked: drop it (its state is suspect), count it, go on.
    #[cold]
    fn panicked<S: EventSink>(&mut self, i: u32, bytes: usize, ts_us: u64, sink: &mut S) {
        let Some(key) = self.table.key(i) else {
            return;
        };
        let Some(sess) = self.table.remove(i) else {
            return;
        };
        self.buffered -= sess.mem as usize;
        let lost = (bytes + (sess.mem as usize)) as u64;
        self.stats.decoder_panics += 1;
        self.stats.undecoded.decoder_panic += lost;
        self.stats.undecoded_bytes += lost;
        self.stats.desyncs += 1;
        self.stats.active_sessions = self.stats.active_sessions.saturating_sub(1);
        tracing::error!(
            session = sess.id,
            client = %key.flow().client,
            "decoder panicked; session dropped, capture goes on"
        );
        let id = sess.id;
        // Its buffers may be inconsistent; dropping them must not take capture down either.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(sess)));
        sink.push(
            id,
            SessionEvent::Close(SessionClose {
                ts_us,
                reason: CloseReason::DecoderPanic,
            }),
        );
    }

    /// One segment of a known session; the close reason when the session ends with it.
    #[allow(clippy::too_many_arguments)]
    fn on_segment<S: EventSink>(
        stats: &mut Stats,
        commits: &mut Clock,
        sess: &mut Session,
        dir: Direction,
        seg: &TcpSegment<'_>,
        ts_us: u64,
        max_ooo: usize,
        sink: &mut S,
    ) -> Option<CloseReason> {
        sess.last_us = ts_us;
        #[cfg(test)]
        if seg.payload.starts_with(TEST_PANIC) {
            panic!("forced decoder panic (test)");
        }
        let peer_next = match dir {
            Direction::ToServer => sess.to_client.next_seq(),
            Direction::ToClient => sess.to_server.next_seq(),
        };
        let early = seg.flags.ack
            && (!seg.payload.is_empty() || seg.flags.fin)
            && peer_next.is_some_and(|n| seq_lt(n, seg.ack));
        if early || sess.held.iter().any(|h| h.dir == dir) {
            stats.out_of_order += 1;
            sess.held.push_back(Held {
                dir,
                seq: seg.seq,
                ack: seg.ack,
                syn: seg.flags.syn,
                fin: seg.flags.fin,
                payload: seg.payload.to_vec(),
                missing: seg.missing,
                ts_us,
            });
        } else {
            process(
                sess,
                dir,
                seg.seq,
                seg.flags.syn,
                seg.flags.fin,
                seg.payload,
                seg.missing,
                ts_us,
                max_ooo,
            );
        }
        let rst = seg.flags.rst && sess.held.is_empty();
        release_held(sess, ts_us, max_ooo, false);
        let done =
            rst || (sess.held.is_empty() && sess.to_server.finished && sess.to_client.finished);
        Self::drain(stats, commits, sess, sink);
        done.then_some(if seg.flags.rst {
            CloseReason::Rst
        } else {
            CloseReason::Fin
        })
    }

    fn drain<S: EventSink>(
        stats: &mut Stats,
        commits: &mut Clock,
        sess: &mut Session,
        sink: &mut S,
    ) {
        while let Some(ev) = sess.conn.poll_event() {
            match ev {
                ConnEvent::Login(l) => sink.push(sess.id, SessionEvent::Login(l)),
                ConnEvent::Command(mut c) => {
                    commits.mark(&mut c);
                    stats.commands.add(c.command.code());
                    sink.push(sess.id, SessionEvent::Command(c));
                }
                ConnEvent::Anomaly(a) => match a {
                    Anomaly::DecodeError(what) => {
                        stats.decode_errors += 1;
                        tracing::debug!(session = %sess.id, "decode error: {what}");
                    }
                    Anomaly::Desync => stats.desyncs += 1,
                    Anomaly::Resync => stats.resyncs += 1,
                    Anomaly::TooLarge => stats.too_large += 1,
                    Anomaly::UnknownCommand(_) => stats.unknown_commands += 1,
                    Anomaly::Tls => {
                        if !sess.tls {
                            sess.tls = true;
                            stats.tls_sessions += 1;
                        }
                    }
                    Anomaly::Compressed => {
                        if !sess.compressed {
                            sess.compressed = true;
                            stats.compressed_sessions += 1;
                        }
                    }
                    Anomaly::Undecoded(why, n) => {
                        stats.undecoded_bytes += n;
                        let u = &mut stats.undecoded;
                        match why {
                            Undecoded::Unsynced => u.unsynced += n,
                            Undecoded::AfterGap => u.after_gap += n,
                            Undecoded::Tls => u.tls += n,
                            Undecoded::TooLarge => u.too_large += n,
                            Undecoded::Incomplete => u.incomplete += n,
                        }
                    }
                },
            }
        }
    }

    fn close<S: EventSink>(&mut self, i: u32, ts_us: u64, reason: CloseReason, sink: &mut S) {
        let max_ooo = self.cfg.max_ooo_bytes;
        let Self {
            stats,
            table,
            commits,
            ..
        } = self;
        let Some(sess) = table.get_mut_checked(i) else {
            return;
        };
        sess.conn.swap_arena(&mut self.arena);
        let r = catch_unwind(AssertUnwindSafe(|| {
            flush_all(sess, ts_us, max_ooo).handle_close(ts_us);
            Self::drain(stats, commits, sess, sink);
        }));
        if r.is_err() {
            self.panicked(i, 0, ts_us, sink);
            return;
        }
        if let Some(sess) = self.table.get_mut_checked(i) {
            sess.conn.swap_arena(&mut self.arena);
        }
        let Some(sess) = self.table.remove(i) else {
            return;
        };
        self.buffered -= sess.mem as usize;
        for s in [sess.to_server.stats(), sess.to_client.stats()] {
            self.stats.gaps += s.gaps;
            self.stats.gap_bytes += s.gap_bytes;
            self.stats.retransmitted_bytes += s.retransmitted_bytes;
            self.stats.out_of_order += s.out_of_order;
            self.stats.ooo_overflow += s.ooo_overflow;
        }
        self.stats.active_sessions = self.stats.active_sessions.saturating_sub(1);
        match reason {
            CloseReason::Idle => self.stats.idle_evicted += 1,
            CloseReason::Evicted => self.stats.table_evicted += 1,
            _ => {}
        }
        sink.push(sess.id, SessionEvent::Close(SessionClose { ts_us, reason }));
        if self.retiring {
            // What the close allocated (its event queue) goes back now, for the next one.
            let mut sess = sess;
            sess.shrink_idle();
            self.retired.push(sess);
        }
    }

    /// Close sessions idle for longer than the timeout and free the buffers of sessions idle for
    /// [`COLD_US`], as of `now_us` (capture time). Walks only the cold end of the table.
    pub fn handle_timeout<S: EventSink>(&mut self, now_us: u64, sink: &mut S) {
        let limit = self.cfg.idle_timeout_us;
        while let Some(i) = self.table.oldest() {
            let last = self.table.get(i).map_or(now_us, |s| s.last_us);
            if now_us.saturating_sub(last) <= limit {
                break;
            }
            self.close(i, last, CloseReason::Idle, sink);
        }
        while let Some(i) = self.table.next_cold() {
            let sess = self.table.get_mut(i);
            if now_us.saturating_sub(sess.last_us) < COLD_US {
                break;
            }
            sess.shrink_idle();
            let now = sess.buffered();
            self.buffered = self.buffered - (sess.mem as usize) + now;
            sess.mem = now as u32;
            self.table.mark_cold(i);
        }
    }

    /// End of capture: flush and close every session. Their memory is freed when the pipeline
    /// is dropped: a process about to exit may `std::mem::forget` it instead (after a flood,
    /// freeing 200 000 sessions one by one, then the allocator giving their pages back at exit,
    /// cost a tenth of the run).
    pub fn finish<S: EventSink>(&mut self, ts_us: u64, sink: &mut S) {
        let mut open: Vec<(SessionId, u32)> = self.table.iter().map(|(i, s)| (s.id, i)).collect();
        open.sort_unstable_by_key(|(id, _)| *id);
        self.table.forget_keys();
        self.retiring = true;
        self.retired.reserve_exact(open.len());
        for (_, i) in open {
            self.close(i, ts_us, CloseReason::EndOfCapture, sink);
        }
        self.retiring = false;
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

/// Run one segment through its direction's reassembly into the decoder.
#[allow(clippy::too_many_arguments)]
fn process(
    sess: &mut Session,
    dir: Direction,
    seq: u32,
    syn: bool,
    fin: bool,
    payload: &[u8],
    missing: u32,
    ts_us: u64,
    max_ooo: usize,
) {
    let (conn, stream) = sess.parts(dir);
    stream.handle_segment(seq, syn, fin, payload, missing, max_ooo, &mut |c| {
        feed(conn, dir, c, ts_us)
    });
}

/// Release held segments and flush both streams into the decoder, declaring every hole lost.
fn flush_all(sess: &mut Session, ts_us: u64, max_ooo: usize) -> &mut Connection {
    release_held(sess, ts_us, max_ooo, true);
    let Session {
        conn,
        to_server,
        to_client,
        ..
    } = sess;
    to_server.flush(&mut |c| feed(conn, Direction::ToServer, c, ts_us));
    to_client.flush(&mut |c| feed(conn, Direction::ToClient, c, ts_us));
    conn
}

/// Process held segments whose acknowledged peer bytes have now been seen, in arrival order. When
/// the peer's hole is evidently permanent (too many or too old held segments, the peer moving on
/// past it, or `force`), declare the missing peer bytes lost and go on.
fn release_held(sess: &mut Session, now_us: u64, max_ooo: usize, force: bool) {
    while let Some(h) = sess.held.front() {
        let (peer, peer_dir) = match h.dir {
            Direction::ToServer => (&sess.to_client, Direction::ToClient),
            Direction::ToClient => (&sess.to_server, Direction::ToServer),
        };
        let covered = peer.next_seq().is_none_or(|n| !seq_lt(n, h.ack)) || peer.finished;
        if !covered {
            let give_up = force
                || sess.held.len() > MAX_HELD
                || now_us.saturating_sub(h.ts_us) > MAX_HOLD_US
                || peer.buffered() > 0;
            if !give_up {
                return;
            }
            let Some(h) = sess.held.pop_front() else {
                return;
            };
            let (conn, peer) = sess.parts(peer_dir);
            peer.declare_lost_until(h.ack, &mut |c| feed(conn, peer_dir, c, now_us));
            process(
                sess, h.dir, h.seq, h.syn, h.fin, &h.payload, h.missing, h.ts_us, max_ooo,
            );
            let (conn, peer) = sess.parts(peer_dir);
            peer.drain_ready(&mut |c| feed(conn, peer_dir, c, now_us));
            continue;
        }
        let Some(h) = sess.held.pop_front() else {
            return;
        };
        process(
            sess, h.dir, h.seq, h.syn, h.fin, &h.payload, h.missing, h.ts_us, max_ooo,
        );
    }
}

#[inline]
fn feed(conn: &mut Connection, dir: Direction, c: Chunk<'_>, ts_us: u64) {
    match c {
        Chunk::Data(d) => conn.handle_data(dir, d, ts_us),
        Chunk::Gap(n) => conn.handle_gap(dir, n, ts_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn frame(client_port: u16, to_server: bool, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (s, d, sp, dp) = if to_server {
            ([198, 18, 0, 1], [198, 18, 0, 2], client_port, 3306)
        } else {
            ([198, 18, 0, 2], [198, 18, 0, 1], 3306, client_port)
        };
        let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(s, d, 64)
            .tcp(sp, dp, seq, 1000);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('F') {
            b = b.fin();
        }
        if flags.contains('R') {
            b = b.rst();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn data(client_port: u16, to_server: bool, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let (s, d, sp, dp) = if to_server {
            ([198, 18, 0, 1], [198, 18, 0, 2], client_port, 3306)
        } else {
            ([198, 18, 0, 2], [198, 18, 0, 1], 3306, client_port)
        };
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(s, d, 64)
            .tcp(sp, dp, seq, 1000)
            .ack(ack);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn mysql(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn response_seen_before_its_request_is_held_not_lost() {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let q1 = mysql(0, b"\x03SELECT 1");
        let q2 = mysql(0, b"\x03SELECT 2");
        let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
        let (c0, s0) = (1000u32, 5000u32);
        let c1 = c0 + q1.len() as u32;
        let c2 = c1 + q2.len() as u32;
        let s1 = s0 + ok.len() as u32;
        p.handle_frame(LinkType::Ethernet, &data(7, true, c0, s0, &q1), 10, &mut ev);
        p.handle_frame(
            LinkType::Ethernet,
            &data(7, false, s0, c1, &ok),
            20,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &data(7, false, s1, c2, &ok),
            40,
            &mut ev,
        );
        p.handle_frame(LinkType::Ethernet, &data(7, true, c1, s1, &q2), 30, &mut ev);
        p.finish(50, &mut ev);
        let cmds: Vec<_> = ev
            .iter()
            .filter_map(|(_, e)| match e {
                SessionEvent::Command(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[1].command.sql(), Some(&b"SELECT 2"[..]));
        assert_eq!(cmds[1].response.status, crate::event::ResponseStatus::Ok);
        assert_eq!(p.stats().gaps, 0);
        assert_eq!(p.stats().decode_errors, 0);
        assert_eq!(p.stats().out_of_order, 1);
    }

    #[test]
    fn a_lost_request_is_declared_when_the_client_moves_on() {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let q1 = mysql(0, b"\x03SELECT 1");
        let q2 = mysql(0, b"\x03SELECT 2");
        let q3 = mysql(0, b"\x0e");
        let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
        let (c0, s0) = (1000u32, 5000u32);
        let c1 = c0 + q1.len() as u32;
        let c2 = c1 + q2.len() as u32;
        let s1 = s0 + ok.len() as u32;
        let s2 = s1 + ok.len() as u32;
        p.handle_frame(LinkType::Ethernet, &data(7, true, c0, s0, &q1), 10, &mut ev);
        p.handle_frame(
            LinkType::Ethernet,
            &data(7, false, s0, c1, &ok),
            20,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &data(7, false, s1, c2, &ok),
            40,
            &mut ev,
        );
        p.handle_frame(LinkType::Ethernet, &data(7, true, c2, s2, &q3), 50, &mut ev);
        p.handle_frame(
            LinkType::Ethernet,
            &data(7, false, s2, c2 + q3.len() as u32, &ok),
            60,
            &mut ev,
        );
        p.finish(70, &mut ev);
        assert_eq!(p.stats().gaps, 1);
        assert_eq!(p.stats().gap_bytes, q2.len() as u64);
        let cmds: Vec<_> = ev
            .iter()
            .filter_map(|(_, e)| match e {
                SessionEvent::Command(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(cmds.last().map(|c| c.command.name()), Some("COM_PING"));
        assert!(cmds.last().is_some_and(|c| c.flags.after_gap));
        assert_eq!(
            cmds.last().map(|c| c.response.status),
            Some(crate::event::ResponseStatus::Ok)
        );
        assert_eq!(cmds.len(), 2);
        assert_eq!(p.stats().decode_errors, 0);
    }

    fn opens_closes(ev: &[(SessionId, SessionEvent)]) -> (usize, Vec<CloseReason>) {
        let opens = ev
            .iter()
            .filter(|(_, e)| matches!(e, SessionEvent::Open(_)))
            .count();
        let closes = ev
            .iter()
            .filter_map(|(_, e)| match e {
                SessionEvent::Close(c) => Some(c.reason),
                _ => None,
            })
            .collect();
        (opens, closes)
    }

    #[test]
    fn a_new_syn_on_the_same_ports_starts_a_new_session() {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let f = |port, to_server, seq, flags: &str| frame(port, to_server, seq, flags, b"");
        p.handle_frame(LinkType::Ethernet, &f(4000, true, 10, "S"), 1, &mut ev);
        p.handle_frame(LinkType::Ethernet, &f(4000, true, 10, "S"), 2, &mut ev);
        p.handle_frame(LinkType::Ethernet, &f(4000, false, 50, "S"), 3, &mut ev);
        assert_eq!(
            opens_closes(&ev),
            (1, vec![]),
            "a retransmitted SYN is the same connection"
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(4000, true, 11, "", b"q"),
            4,
            &mut ev,
        );
        p.handle_frame(LinkType::Ethernet, &f(4000, true, 7000, "S"), 5, &mut ev);
        assert_eq!(opens_closes(&ev), (2, vec![CloseReason::Reused]));
        assert_eq!(p.stats().sessions, 2);
        assert_eq!(p.open_sessions(), 1);
    }

    #[test]
    fn lifecycle_fin_rst_midstream_and_skips() {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        p.handle_frame(
            LinkType::Ethernet,
            &frame(1000, true, 10, "S", b""),
            1,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(1000, false, 50, "S", b""),
            2,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(1000, true, 11, "F", b""),
            3,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(1000, false, 51, "F", b""),
            4,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(2000, true, 99, "", b"x"),
            5,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(2000, false, 7, "R", b""),
            6,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(3000, true, 5, "", b""),
            7,
            &mut ev,
        );
        p.handle_frame(LinkType::Ethernet, &[0u8; 10], 8, &mut ev);
        let (opens, closes) = opens_closes(&ev);
        assert_eq!(opens, 2);
        assert_eq!(closes, vec![CloseReason::Fin, CloseReason::Rst]);
        let s = p.stats();
        assert_eq!(
            (s.sessions, s.midstream_sessions, s.active_sessions),
            (2, 1, 0)
        );
        assert_eq!(
            (s.skipped.untracked, s.skipped.malformed, s.packets),
            (1, 1, 8)
        );
    }

    #[test]
    fn idle_eviction_table_bound_and_finish() {
        let mut p = Pipeline::new(PipelineConfig {
            max_sessions: 2,
            idle_timeout_us: 5_000_000,
            ..PipelineConfig::default()
        });
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let t0 = 1_000_000_000;
        p.handle_frame(
            LinkType::Ethernet,
            &frame(1, true, 1, "S", b""),
            t0,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(2, true, 1, "S", b""),
            t0 + 1,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(3, true, 1, "S", b""),
            t0 + 2,
            &mut ev,
        );
        assert_eq!(p.stats().table_evicted, 1);
        p.handle_frame(
            LinkType::Ethernet,
            &frame(3, true, 2, "", b"q"),
            t0 + 10_000_000,
            &mut ev,
        );
        assert_eq!(p.stats().idle_evicted, 2);
        p.finish(t0 + 11_000_000, &mut ev);
        let (opens, closes) = opens_closes(&ev);
        assert_eq!(opens, 4);
        assert_eq!(
            closes,
            vec![
                CloseReason::Evicted,
                CloseReason::Idle,
                CloseReason::Idle,
                CloseReason::EndOfCapture
            ]
        );
        assert_eq!(p.stats().midstream_sessions, 1);
        assert_eq!(p.stats().active_sessions, 0);
    }

    #[test]
    fn other_ports_and_gaps_counted() {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let mut f = frame(1, true, 1, "", b"abc");
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        p.handle_frame(LinkType::Ethernet, &f, 1, &mut ev);
        assert_eq!(p.stats().skipped.other_port, 1);
        p.handle_frame(
            LinkType::Ethernet,
            &frame(5, true, 100, "", b"abc"),
            2,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(5, true, 110, "", b"def"),
            3,
            &mut ev,
        );
        p.finish(4, &mut ev);
        assert_eq!(p.stats().gaps, 1);
        assert_eq!(p.stats().gap_bytes, 7);
        assert_eq!(p.stats().out_of_order, 1);
    }

    fn commands(ev: &[(SessionId, SessionEvent)]) -> Vec<(SessionId, Vec<u8>)> {
        ev.iter()
            .filter_map(|(id, e)| match e {
                SessionEvent::Command(c) => {
                    Some((*id, c.command.sql().unwrap_or_default().to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_decoder_panic_closes_that_session_and_capture_goes_on() {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let q = |sql: &[u8]| mysql(0, &[b"\x03", sql].concat());
        let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
        let one = |p: &mut Pipeline, ev: &mut Vec<_>, port, sql: &[u8], t| {
            let q = q(sql);
            p.handle_frame(LinkType::Ethernet, &data(port, true, 100, 900, &q), t, ev);
            let after = 100 + q.len() as u32;
            p.handle_frame(
                LinkType::Ethernet,
                &data(port, false, 900, after, &ok),
                t + 1,
                ev,
            );
        };
        one(&mut p, &mut ev, 10, b"SELECT 1", 10);
        p.handle_frame(
            LinkType::Ethernet,
            &data(11, true, 100, 900, TEST_PANIC),
            20,
            &mut ev,
        );
        assert_eq!(p.stats().decoder_panics, 1);
        assert_eq!(p.stats().undecoded.decoder_panic, TEST_PANIC.len() as u64);
        assert_eq!(p.open_sessions(), 1, "the panicking session is gone");
        one(&mut p, &mut ev, 12, b"SELECT 3", 30);
        // The same connection goes on: it is picked up again mid-stream.
        one(&mut p, &mut ev, 11, b"SELECT 2", 40);
        p.finish(50, &mut ev);
        let sqls: Vec<Vec<u8>> = commands(&ev).into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            sqls,
            vec![
                b"SELECT 1".to_vec(),
                b"SELECT 3".to_vec(),
                b"SELECT 2".to_vec()
            ]
        );
        let (opens, closes) = opens_closes(&ev);
        assert_eq!(opens, 4);
        assert_eq!(
            closes
                .iter()
                .filter(|r| **r == CloseReason::DecoderPanic)
                .count(),
            1
        );
        assert_eq!(p.stats().decoder_panics, 1);
        assert_eq!(p.stats().active_sessions, 0);
    }

    #[test]
    fn the_memory_limit_drops_the_buffers_of_the_session_crossing_it() {
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let hole = |p: &mut Pipeline, ev: &mut Vec<_>, port, t| {
            p.handle_frame(
                LinkType::Ethernet,
                &frame(port, true, 100, "", b"abc"),
                t,
                ev,
            );
            p.handle_frame(
                LinkType::Ethernet,
                &frame(port, true, 200, "", &[7; 600]),
                t + 1,
                ev,
            );
        };
        let mut free = Pipeline::new(PipelineConfig::default());
        hole(&mut free, &mut ev, 5, 1);
        let one = free.buffered_bytes();
        assert!(one >= 600, "{one}");
        let mut p = Pipeline::new(PipelineConfig {
            max_memory: one + one / 2,
            ..PipelineConfig::default()
        });
        hole(&mut p, &mut ev, 5, 1);
        assert_eq!((p.buffered_bytes(), p.stats().memory_drops), (one, 0));
        hole(&mut p, &mut ev, 6, 3);
        assert_eq!(p.stats().memory_drops, 1);
        assert_eq!(
            p.buffered_bytes(),
            one,
            "the crossing session let go of its buffer"
        );
        assert_eq!(p.stats().peak_buffered_bytes, 2 * one as u64);
        p.finish(5, &mut ev);
        assert_eq!(p.buffered_bytes(), 0);
        assert_eq!(p.stats().gaps, 2);
    }

    #[test]
    fn idle_sessions_expire_from_the_cold_end_without_a_scan() {
        let mut p = Pipeline::new(PipelineConfig {
            idle_timeout_us: 10_000_000,
            max_sessions: 3,
            ..PipelineConfig::default()
        });
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        let t0 = 1_000_000_000;
        for (k, port) in [1u16, 2, 3].into_iter().enumerate() {
            p.handle_frame(
                LinkType::Ethernet,
                &frame(port, true, 1, "", b"q"),
                t0 + k as u64,
                &mut ev,
            );
        }
        // Session 1 is used again: session 2 is now the least recently used.
        p.handle_frame(
            LinkType::Ethernet,
            &frame(1, true, 2, "", b"q"),
            t0 + 5,
            &mut ev,
        );
        p.handle_frame(
            LinkType::Ethernet,
            &frame(4, true, 1, "", b"q"),
            t0 + 6,
            &mut ev,
        );
        let closed: Vec<SessionId> = ev
            .iter()
            .filter_map(|(id, e)| matches!(e, SessionEvent::Close(_)).then_some(*id))
            .collect();
        assert_eq!(closed, vec![2]);
        assert_eq!(p.stats().table_evicted, 1);
        p.handle_timeout(t0 + 10_000_004, &mut ev);
        assert_eq!(p.open_sessions(), 2, "only session 3 was idle long enough");
        p.handle_timeout(t0 + 10_000_007, &mut ev);
        assert_eq!(p.open_sessions(), 0);
        assert_eq!(p.stats().idle_evicted, 3);
    }
}
#[cfg(test)]
mod size_tests {
    /// A session joined mid-stream holds its boxed `Session` (this), one waiting command, and
    /// its slab slot: kept within mimalloc's 512-byte class so that a flood of 200 000 idle
    /// sessions stays under 256 MiB (bench/README "Session flood").
    #[test]
    fn a_session_fits_in_512_bytes() {
        assert!(
            std::mem::size_of::<super::Session>() <= 512,
            "Session is {} bytes",
            std::mem::size_of::<super::Session>()
        );
    }
}
