//! Frames in, session events out: slicing ([`crate::net`]), the session table, TCP reassembly
//! ([`crate::tcp`]) and MySQL decoding ([`crate::mysql`]), pushing [`SessionEvent`]s into an
//! [`EventSink`]. Sans-IO: time comes from the frame; no sockets, clocks or threads.
//!
//! Per frame the hot path does no allocation and takes no lock: a session-table lookup, the
//! in-order reassembly fast path and the decoder. Sessions open on a SYN or on the first segment
//! carrying payload (then mid-stream), close on FIN from both sides, RST, idleness, eviction or
//! [`Pipeline::finish`].

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

use crate::event::{
    CloseReason, EventSink, FlowKey, SessionClose, SessionEvent, SessionId, SessionOpen,
};
use crate::mysql::{Anomaly, ConnEvent, Connection, DecoderConfig, Direction};
use crate::net::{slice_tcp, LinkType, Skip, TcpSegment};
use crate::stats::Stats;
use crate::tcp::{seq_lt, Chunk, Stream};

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
    /// Out-of-order span buffered per direction before a hole is declared (a TCP window or more;
    /// rounded down to a power of two).
    pub max_ooo_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            ports: vec![3306],
            decoder: DecoderConfig::default(),
            max_sessions: 1 << 20,
            idle_timeout_us: 600_000_000,
            max_ooo_bytes: 16 << 20,
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

struct Session {
    id: SessionId,
    held: VecDeque<Held>,
    conn: Connection,
    to_server: Stream,
    to_client: Stream,
    last_us: u64,
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
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The decode path shared by live capture and pcap files.
pub struct Pipeline {
    cfg: PipelineConfig,
    stats: Stats,
    sessions: FastMap<FlowKey, Session>,
    next_id: SessionId,
    id_step: SessionId,
    last_sweep_us: u64,
    port_bitmap: Box<[u64; 1024]>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("cfg", &self.cfg)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Pipeline {
    /// Number sessions `first`, `first + step`, ... (one pipeline per RX queue: ids stay unique).
    pub fn set_session_ids(&mut self, first: SessionId, step: SessionId) {
        self.next_id = first.max(1);
        self.id_step = step.max(1);
    }

    /// A pipeline with an empty session table.
    pub fn new(cfg: PipelineConfig) -> Self {
        let mut port_bitmap = Box::new([0u64; 1024]);
        for &p in &cfg.ports {
            port_bitmap[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        Self {
            cfg,
            stats: Stats::default(),
            sessions: FastMap::default(),
            next_id: 1,
            id_step: 1,
            last_sweep_us: 0,
            port_bitmap,
        }
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
    pub fn handle_frame<S: EventSink>(
        &mut self,
        link: LinkType,
        frame: &[u8],
        ts_us: u64,
        sink: &mut S,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += frame.len() as u64;
        if ts_us >= self.last_sweep_us + 1_000_000 {
            if self.last_sweep_us != 0 {
                self.handle_timeout(ts_us, sink);
            }
            self.last_sweep_us = ts_us;
        }
        let seg = match slice_tcp(link, frame) {
            Ok(s) => s,
            Err(skip) => {
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
            self.stats.skipped.other_port += 1;
            return;
        };
        if seg.missing > 0 {
            self.stats.skipped.truncated += 1;
        }
        let key = match dir {
            Direction::ToServer => FlowKey {
                client: seg.src,
                server: seg.dst,
            },
            Direction::ToClient => FlowKey {
                client: seg.dst,
                server: seg.src,
            },
        };
        let max_ooo = self.cfg.max_ooo_bytes;
        if let Some(sess) = self.sessions.get_mut(&key) {
            // A client SYN with a new initial sequence number: the addresses and ports were
            // reused by a new connection, which must not inherit the old one's decoder state.
            let reused = dir == Direction::ToServer
                && seg.flags.syn
                && !seg.flags.ack
                && sess
                    .to_server
                    .next_seq()
                    .is_some_and(|n| n != seg.seq.wrapping_add(1));
            if !reused {
                if let Some(reason) =
                    Self::on_segment(&mut self.stats, sess, dir, &seg, ts_us, max_ooo, sink)
                {
                    self.close(&key, ts_us, reason, sink);
                }
                return;
            }
            self.close(&key, ts_us, CloseReason::Reused, sink);
        }
        let opening = seg.flags.syn || !seg.payload.is_empty() || seg.missing > 0;
        if !opening || seg.flags.rst {
            self.stats.skipped.untracked += 1;
            return;
        }
        if self.sessions.len() >= self.cfg.max_sessions {
            self.evict_idlest(ts_us, sink);
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
                key,
                ts_us,
                midstream,
            })),
        );
        let sess = self.sessions.entry(key).or_insert(Session {
            id,
            held: VecDeque::new(),
            conn: Connection::new(self.cfg.decoder.clone(), midstream),
            to_server: Stream::default(),
            to_client: Stream::default(),
            last_us: ts_us,
            tls: false,
            compressed: false,
        });
        if let Some(reason) =
            Self::on_segment(&mut self.stats, sess, dir, &seg, ts_us, max_ooo, sink)
        {
            self.close(&key, ts_us, reason, sink);
        }
    }

    /// One segment of a known session; the close reason when the session ends with it.
    fn on_segment<S: EventSink>(
        stats: &mut Stats,
        sess: &mut Session,
        dir: Direction,
        seg: &TcpSegment<'_>,
        ts_us: u64,
        max_ooo: usize,
        sink: &mut S,
    ) -> Option<CloseReason> {
        sess.last_us = ts_us;
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
        Self::drain(stats, sess, sink);
        done.then_some(if seg.flags.rst {
            CloseReason::Rst
        } else {
            CloseReason::Fin
        })
    }

    fn drain<S: EventSink>(stats: &mut Stats, sess: &mut Session, sink: &mut S) {
        while let Some(ev) = sess.conn.poll_event() {
            match ev {
                ConnEvent::Login(l) => sink.push(sess.id, SessionEvent::Login(Box::new(l))),
                ConnEvent::Command(c) => {
                    stats.commands.add(c.command.code());
                    sink.push(sess.id, SessionEvent::Command(c));
                }
                ConnEvent::Anomaly(a) => match a {
                    Anomaly::DecodeError(_) => stats.decode_errors += 1,
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
                },
            }
        }
    }

    fn close<S: EventSink>(
        &mut self,
        key: &FlowKey,
        ts_us: u64,
        reason: CloseReason,
        sink: &mut S,
    ) {
        let Some(mut sess) = self.sessions.remove(key) else {
            return;
        };
        release_held(&mut sess, ts_us, self.cfg.max_ooo_bytes, true);
        {
            let Session {
                conn,
                to_server,
                to_client,
                ..
            } = &mut sess;
            to_server.flush(&mut |c| feed(conn, Direction::ToServer, c, ts_us));
            to_client.flush(&mut |c| feed(conn, Direction::ToClient, c, ts_us));
            conn.handle_close(ts_us);
        }
        for s in [&sess.to_server.stats, &sess.to_client.stats] {
            self.stats.gaps += s.gaps;
            self.stats.gap_bytes += s.gap_bytes;
            self.stats.retransmitted_bytes += s.retransmitted_bytes;
            self.stats.out_of_order += s.out_of_order;
            self.stats.ooo_overflow += s.ooo_overflow;
        }
        Self::drain(&mut self.stats, &mut sess, sink);
        self.stats.active_sessions = self.stats.active_sessions.saturating_sub(1);
        match reason {
            CloseReason::Idle => self.stats.idle_evicted += 1,
            CloseReason::Evicted => self.stats.table_evicted += 1,
            _ => {}
        }
        sink.push(sess.id, SessionEvent::Close(SessionClose { ts_us, reason }));
    }

    fn evict_idlest<S: EventSink>(&mut self, ts_us: u64, sink: &mut S) {
        if let Some(key) = self
            .sessions
            .iter()
            .min_by_key(|(_, s)| s.last_us)
            .map(|(k, _)| *k)
        {
            self.close(&key, ts_us, CloseReason::Evicted, sink);
        }
    }

    /// Close sessions idle for longer than the timeout, as of `now_us` (capture time).
    pub fn handle_timeout<S: EventSink>(&mut self, now_us: u64, sink: &mut S) {
        let limit = self.cfg.idle_timeout_us;
        let idle: Vec<FlowKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| now_us.saturating_sub(s.last_us) > limit)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            let last = self.sessions.get(&k).map_or(now_us, |s| s.last_us);
            self.close(&k, last, CloseReason::Idle, sink);
        }
    }

    /// End of capture: flush and close every session.
    pub fn finish<S: EventSink>(&mut self, ts_us: u64, sink: &mut S) {
        let mut keys: Vec<(SessionId, FlowKey)> =
            self.sessions.iter().map(|(k, s)| (s.id, *k)).collect();
        keys.sort_unstable_by_key(|(id, _)| *id);
        for (_, k) in keys {
            self.close(&k, ts_us, CloseReason::EndOfCapture, sink);
        }
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
        self.sessions.len()
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
}
