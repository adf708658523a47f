//! One session's state and its TCP side: the table key, the [`Session`] (decoder, both
//! reassembly streams, segments held for cross-direction reordering) and the functions that run a
//! segment through reassembly into the decoder. No events, counters or table here: the pipeline
//! drains the decoder ([`super::segment`]) and owns the books ([`super::lifecycle`]).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::event::{FlowKey, SessionId};
use crate::mysql::{Connection, Direction};
use crate::tcp::{seq_lt, Chunk, Stream};

/// A segment held back because it acknowledges peer bytes not seen yet (cross-direction reordering).
pub(super) struct Held {
    pub(super) dir: Direction,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) syn: bool,
    pub(super) fin: bool,
    pub(super) payload: Vec<u8>,
    pub(super) missing: u32,
    pub(super) ts_us: u64,
}

/// Most segments held per session before the peer's hole is declared lost.
pub(super) const MAX_HELD: usize = 64;
/// Longest a segment is held (capture time) before the peer's hole is declared lost.
pub(super) const MAX_HOLD_US: u64 = 200_000;

/// The table's key: a [`FlowKey`] in 36 bytes instead of 64 (IPv4 as IPv4-mapped IPv6). The
/// addresses are held as words, not byte arrays: built and hashed in registers (a byte-wise
/// key read back as words stalls the lookup on store forwarding).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub(super) client: [u64; 2],
    pub(super) server: [u64; 2],
    pub(super) client_port: u16,
    pub(super) server_port: u16,
}

impl std::hash::Hash for Key {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.client[0]);
        h.write_u64(self.client[1]);
        h.write_u64(self.server[0]);
        h.write_u64(self.server[1]);
        h.write_u32(u32::from(self.client_port) << 16 | u32::from(self.server_port));
    }
}

/// An address as IPv6 (IPv4 mapped), in two words.
#[inline]
pub(super) fn ip16(a: &SocketAddr) -> [u64; 2] {
    match a.ip() {
        IpAddr::V4(v4) => [0, 0xffff_0000_0000 | u64::from(u32::from(v4))],
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            [(x >> 64) as u64, x as u64]
        }
    }
}

pub(super) fn ip_of(b: [u64; 2]) -> IpAddr {
    let v6 = Ipv6Addr::from(u128::from(b[0]) << 64 | u128::from(b[1]));
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl Key {
    #[inline]
    pub(super) fn new(k: &FlowKey) -> Self {
        Self {
            client: ip16(&k.client),
            server: ip16(&k.server),
            client_port: k.client.port(),
            server_port: k.server.port(),
        }
    }

    pub(super) fn flow(&self) -> FlowKey {
        FlowKey {
            client: SocketAddr::new(ip_of(self.client), self.client_port),
            server: SocketAddr::new(ip_of(self.server), self.server_port),
        }
    }
}

pub(super) struct Session {
    pub(super) id: SessionId,
    /// Segments held until the peer bytes they acknowledge are seen, oldest first (at most
    /// [`MAX_HELD`] + 1: a `Vec`, 8 bytes smaller than a `VecDeque`).
    pub(super) held: Vec<Held>,
    pub(super) conn: Connection,
    pub(super) to_server: Stream,
    pub(super) to_client: Stream,
    pub(super) last_us: u64,
    /// Bytes this session had buffered when last accounted (`buffered()`, which fits).
    pub(super) mem: u32,
    /// Where the sink keeps this session ([`crate::event::EventSink::push_at`]).
    pub(super) sink_slot: u32,
    pub(super) tls: bool,
    pub(super) compressed: bool,
}

impl Session {
    /// The decoder and the stream of direction `dir`.
    pub(super) fn parts(&mut self, dir: Direction) -> (&mut Connection, &mut Stream) {
        match dir {
            Direction::ToServer => (&mut self.conn, &mut self.to_server),
            Direction::ToClient => (&mut self.conn, &mut self.to_client),
        }
    }

    /// Bytes buffered now (reassembly, held segments, decoder), at most `u32::MAX` (what
    /// `mem` holds; a session's buffers are bounded far below it).
    #[inline]
    pub(super) fn buffered(&self) -> usize {
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
    pub(super) fn shrink_idle(&mut self) {
        if self.held.is_empty() {
            self.held = Vec::new();
        }
        self.conn.shrink_idle();
    }
}

/// Run one segment through its direction's reassembly into the decoder.
#[allow(clippy::too_many_arguments)]
pub(super) fn process(
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
pub(super) fn flush_all(sess: &mut Session, ts_us: u64, max_ooo: usize) -> &mut Connection {
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
pub(super) fn release_held(sess: &mut Session, now_us: u64, max_ooo: usize, force: bool) {
    while let Some(h) = sess.held.first() {
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
            let Some(h) = pop_held(&mut sess.held) else {
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
        let Some(h) = pop_held(&mut sess.held) else {
            return;
        };
        process(
            sess, h.dir, h.seq, h.syn, h.fin, &h.payload, h.missing, h.ts_us, max_ooo,
        );
    }
}

/// The oldest held segment.
fn pop_held(held: &mut Vec<Held>) -> Option<Held> {
    (!held.is_empty()).then(|| held.remove(0))
}

#[inline]
pub(super) fn feed(conn: &mut Connection, dir: Direction, c: Chunk<'_>, ts_us: u64) {
    match c {
        Chunk::Data(d) => conn.handle_data(dir, d, ts_us),
        Chunk::Gap(n) => conn.handle_gap(dir, n, ts_us),
    }
}
