//! Sans-IO MySQL protocol decoder for one TCP connection, both directions.
//!
//! Fed in-order bytes per direction with the packet timestamp ([`Connection::handle_data`]), told
//! about holes ([`Connection::handle_gap`]) and the end ([`Connection::handle_close`]); yields
//! [`ConnEvent`]s from [`Connection::poll_event`]. It never touches sockets, clocks or threads.
//! It does not reassemble TCP (see [`crate::tcp`]) nor know about session tables or rings.
//!
//! Handshake (v10, HandshakeResponse41, auth switch / more data, SSLRequest: handshake.rs),
//! CLIENT_COMPRESS and 16 MiB+ payloads ([`framing`]), every command ([`command`]) and responses
//! ([`response`]) are decoded. Commands may be pipelined: each is paired with its response in
//! order however many are outstanding (pairing.rs) and keeps its raw payload for byte-exact
//! replay. Production latency is the response's last packet time minus the request's last packet
//! time. Sessions joined mid-stream, and streams after a gap, resynchronise on the first client
//! packet that is a whole, plausible command. Constants live in [`consts`].

pub mod command;
pub mod consts;
pub mod framing;
mod handshake;
mod pairing;
pub mod params;
pub mod response;
pub mod value;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;

pub use consts::caps;

use crate::event::{CommandRecord, Login};
use command::StmtTable;
use framing::{Framer, Inflater, Packet};

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (requests).
    ToServer,
    /// Server to client (responses).
    ToClient,
}

/// Decoder settings.
#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// Largest command payload kept whole; larger ones are counted as too large and skipped.
    pub max_command_bytes: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_command_bytes: 256 << 20,
        }
    }
}

/// Something the pipeline must count; never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Bytes that are not valid MySQL protocol in this state.
    DecodeError(&'static str),
    /// Lost bytes or framing loss made the decoder drop its position.
    Desync,
    /// The decoder found a reliable command boundary again after a gap or mid-stream start.
    Resync,
    /// A command over `max_command_bytes` was skipped.
    TooLarge,
    /// A command byte MySQL does not define.
    UnknownCommand(u8),
    /// The client sent an SSLRequest: the rest of the session is encrypted.
    Tls,
    /// CLIENT_COMPRESS was negotiated.
    Compressed,
    /// Bytes seen but not decoded, and why.
    Undecoded(Undecoded, u64),
}

/// Why seen bytes were not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undecoded {
    /// Never synchronised on a command boundary (mid-stream start, or not MySQL at all).
    Unsynced,
    /// Waiting for a command boundary after a TCP gap or a desync.
    AfterGap,
    /// Encrypted (after an SSLRequest).
    Tls,
    /// A command over the size cap.
    TooLarge,
    /// Part of a packet cut off by the end of the connection.
    Incomplete,
}

/// What the decoder yields.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnEvent {
    /// Handshake done (or inferred mid-stream).
    Login(Box<Login>),
    /// A command paired with its response.
    Command(Box<CommandRecord>),
    /// Something to count.
    Anomaly(Anomaly),
}

/// Server packet bytes kept: row hashes cover this many.
const SERVER_KEEP: usize = response::ROW_HASH_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitGreeting,
    AwaitHandshakeResponse,
    Auth,
    Command,
    Tls,
}

#[derive(Debug)]
struct DirState {
    framer: Framer,
    /// Allocated when CLIENT_COMPRESS is first used (an idle plain session holds none).
    inflater: Option<Box<Inflater>>,
    compressed: bool,
    synced: bool,
}

impl DirState {
    fn new(keep: usize) -> Self {
        Self {
            framer: Framer::new(keep),
            inflater: None,
            compressed: false,
            synced: true,
        }
    }

    fn reset(&mut self) {
        self.framer.reset();
        if let Some(i) = self.inflater.as_mut() {
            i.reset();
        }
    }

    fn shrink_idle(&mut self) {
        self.framer.shrink_idle();
        if self.inflater.as_ref().is_some_and(|i| i.is_idle()) {
            self.inflater = None;
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.framer.buffered_bytes() + self.inflater.as_ref().map_or(0, |i| i.buffered_bytes())
    }
}

/// The protocol state machine behind the framers.
#[derive(Debug)]
struct Proto {
    phase: Phase,
    midstream: bool,
    caps: u32,
    server_caps: u32,
    deprecate_eof_known: bool,
    /// The handshake's login, allocated when a handshake is seen (a session joined mid-stream,
    /// as most of a flood's, never needs one: its inferred login is built when it is sent).
    login: Option<Box<Login>>,
    /// The login event was sent (mid-stream: sent once, on the first synchronised command).
    login_sent: bool,
    /// CLIENT_COMPRESS is in use.
    compressed: bool,
    pending: VecDeque<pairing::Pending>,
    pending_bytes: usize,
    stmts: StmtTable,
    events: VecDeque<ConnEvent>,
    next_seq: u64,
    db: Option<Arc<str>>,
    user: Option<Arc<str>>,
    /// `db`/`user` went out with a record since they last changed: later records carry `None`.
    identity_sent: bool,
    after_gap: bool,
    enable_compress: bool,
    max_command: usize,
    /// Transaction state for commit points (issue 11).
    trx: crate::commit::TrxTracker,
    /// Buffers lent by the caller through [`Connection::swap_arena`] (one set for every
    /// session of a pipeline); a decoder fed by [`Connection::handle_data`] alone makes its own.
    /// Boxed: an idle session holds a pointer, not the buffers.
    arena: Option<Box<Lent>>,
}

/// What a pipeline lends the session it feeds, so that records of every session share the
/// allocations: the command arena (payloads are copied here and split off as shared
/// [`bytes::Bytes`]: one allocation per [`pairing::ARENA_CHUNK`] bytes of commands instead of
/// two per command) and a spare response reader (a command's reader box goes back here when
/// its record is built, and the next command's reader is made in it).
#[derive(Debug, Default)]
pub struct Lent {
    arena: BytesMut,
    reader: Option<Box<response::ResponseReader>>,
}

/// Decoder state for one connection.
#[derive(Debug)]
pub struct Connection {
    client: DirState,
    server: DirState,
    proto: Proto,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn known_command(code: u8) -> bool {
    (consts::com::QUIT..=consts::com::RESET_CONNECTION).contains(&code)
}

impl Connection {
    /// A decoder for a connection seen from its SYN (`midstream = false`) or joined mid-stream.
    pub fn new(cfg: DecoderConfig, midstream: bool) -> Self {
        let keep = cfg.max_command_bytes;
        let mut client = DirState::new(keep);
        let mut server = DirState::new(SERVER_KEEP);
        if midstream {
            client.synced = false;
            server.synced = false;
        }
        Self {
            client,
            server,
            proto: Proto {
                phase: if midstream {
                    Phase::Command
                } else {
                    Phase::AwaitGreeting
                },
                midstream,
                caps: if midstream {
                    caps::PROTOCOL_41 | caps::SECURE_CONNECTION
                } else {
                    0
                },
                server_caps: 0,
                deprecate_eof_known: !midstream,
                login: None,
                login_sent: false,
                compressed: false,
                pending: VecDeque::new(),
                pending_bytes: 0,
                stmts: StmtTable::default(),
                events: VecDeque::new(),
                next_seq: 0,
                db: None,
                user: None,
                identity_sent: false,
                after_gap: false,
                enable_compress: false,
                max_command: cfg.max_command_bytes,
                trx: crate::commit::TrxTracker::new(midstream),
                arena: None,
            },
        }
    }

    /// Exchange the decoder's lent buffers ([`Lent`]) with `arena`. A pipeline lends one set to
    /// the session it feeds and takes it back after, so records of every session share its
    /// allocations; a decoder used alone keeps its own.
    pub fn swap_arena(&mut self, arena: &mut Option<Box<Lent>>) {
        std::mem::swap(&mut self.proto.arena, arena);
    }

    /// Feed in-order bytes of one direction, with the timestamp of the segment that carried them.
    pub fn handle_data(&mut self, dir: Direction, data: &[u8], ts_us: u64) {
        if data.is_empty() {
            return;
        }
        if self.proto.phase == Phase::Tls {
            self.proto.undecoded(Undecoded::Tls, data.len());
            return;
        }
        let Connection {
            client,
            server,
            proto,
        } = self;
        let (d, peer) = match dir {
            Direction::ToServer => (client, server),
            Direction::ToClient => (server, client),
        };
        if dir == Direction::ToClient {
            if let Some(p) = proto.pending.front_mut() {
                p.first_byte(ts_us, &mut proto.arena);
            }
        }
        if !d.synced {
            match dir {
                Direction::ToServer => {
                    if !proto.try_sync_client(d, data) {
                        proto.undecoded_unsynced(data.len());
                        return;
                    }
                    d.synced = true;
                    peer.reset();
                    peer.synced = true;
                    proto.events.push_back(ConnEvent::Anomaly(Anomaly::Resync));
                    if proto.midstream && !proto.login_sent {
                        proto.login_sent = true;
                        let mut login = Login::unknown(true);
                        login.ts_us = ts_us;
                        login.capabilities = proto.caps;
                        login.compressed = d.compressed;
                        proto.events.push_back(ConnEvent::Login(Box::new(login)));
                    }
                }
                Direction::ToClient => {
                    proto.undecoded_unsynced(data.len());
                    return;
                }
            }
        }
        feed_dir(proto, d, dir, data, ts_us);
        if proto.enable_compress {
            proto.enable_compress = false;
            if !d.framer.is_mid_packet() {
                d.compressed = true;
                peer.compressed = true;
            }
        }
    }

    /// `lost` bytes of `dir` will never arrive; resynchronise at the next reliable boundary.
    pub fn handle_gap(&mut self, dir: Direction, lost: u64, ts_us: u64) {
        let _ = lost;
        if self.proto.phase == Phase::Tls {
            return;
        }
        self.proto
            .events
            .push_back(ConnEvent::Anomaly(Anomaly::Desync));
        self.proto.after_gap = true;
        if matches!(
            self.proto.phase,
            Phase::AwaitGreeting | Phase::AwaitHandshakeResponse | Phase::Auth
        ) {
            self.proto.phase = Phase::Command;
            self.proto.midstream = true;
            self.proto.deprecate_eof_known = false;
            self.proto.caps |= caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
        }
        let partial = match dir {
            Direction::ToServer => self.client.framer.partial_bytes(),
            Direction::ToClient => self.server.framer.partial_bytes(),
        };
        self.proto.undecoded(Undecoded::AfterGap, partial);
        match dir {
            Direction::ToServer => {
                self.client.reset();
                self.client.synced = false;
                self.proto.flush_pending(ts_us, true);
            }
            Direction::ToClient => {
                self.server.reset();
                self.server.synced = false;
                self.proto.flush_pending(ts_us, true);
            }
        }
    }

    /// The connection ended: flush a pending command (with whatever response was seen).
    pub fn handle_close(&mut self, ts_us: u64) {
        if self.proto.phase != Phase::Tls
            && (self.client.framer.is_mid_packet() || self.server.framer.is_mid_packet())
        {
            let partial = self.client.framer.partial_bytes() + self.server.framer.partial_bytes();
            self.proto.undecoded(Undecoded::Incomplete, partial);
            self.proto
                .events
                .push_back(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "connection closed mid-packet",
                )));
        }
        self.proto.flush_pending(ts_us, true);
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.proto.events.pop_front()
    }

    /// Free buffers an idle connection does not need (event queue, framer and inflater
    /// buffers); they are allocated again on next use.
    pub fn shrink_idle(&mut self) {
        if self.proto.events.is_empty() {
            self.proto.events = VecDeque::new();
        }
        if self.proto.pending.is_empty() {
            self.proto.pending = VecDeque::new();
        }
        self.proto.arena = None;
        self.client.shrink_idle();
        self.server.shrink_idle();
    }

    /// Bytes held in framer and inflater buffers (partial packets, large commands).
    pub fn buffered_bytes(&self) -> usize {
        self.client.buffered_bytes() + self.server.buffered_bytes()
    }
}

fn feed_dir(proto: &mut Proto, d: &mut DirState, dir: Direction, data: &[u8], ts_us: u64) {
    if d.compressed {
        let DirState {
            framer, inflater, ..
        } = d;
        let inflater = inflater.get_or_insert_with(Box::default);
        let r = inflater.feed(data, &mut |plain| {
            framer.feed_bulk(plain, &mut |p, rest| proto.on_packet(dir, p, rest, ts_us));
        });
        if r.is_err() {
            proto
                .events
                .push_back(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "bad compressed packet",
                )));
            d.reset();
            if dir == Direction::ToServer {
                d.synced = false;
            }
        }
    } else {
        d.framer
            .feed_bulk(data, &mut |p, rest| proto.on_packet(dir, p, rest, ts_us));
    }
}

impl Proto {
    fn emit(&mut self, ev: ConnEvent) {
        self.events.push_back(ev);
    }

    fn undecoded(&mut self, why: Undecoded, n: usize) {
        if n > 0 {
            self.emit(ConnEvent::Anomaly(Anomaly::Undecoded(why, n as u64)));
        }
    }

    /// Bytes dropped while waiting for a command boundary.
    fn undecoded_unsynced(&mut self, n: usize) {
        let why = if self.after_gap {
            Undecoded::AfterGap
        } else {
            Undecoded::Unsynced
        };
        self.undecoded(why, n);
    }

    /// Is `data` (client bytes at an unknown position) the start of a whole, plausible command?
    fn try_sync_client(&mut self, d: &mut DirState, data: &[u8]) -> bool {
        if data.len() >= 5 {
            let len = usize::from(data[0]) | usize::from(data[1]) << 8 | usize::from(data[2]) << 16;
            let seq = data[3];
            let code = data[4];
            if seq == 0
                && len >= 1
                && known_command(code)
                && (len + 4 == data.len()
                    || (len + 4 > data.len()
                        && data.len() >= 1200
                        && matches!(code, 0x03 | 0x16 | 0x17)))
            {
                return true;
            }
            if data.len() >= 12 {
                let clen = len;
                let plen =
                    usize::from(data[4]) | usize::from(data[5]) << 8 | usize::from(data[6]) << 16;
                if clen + 7 == data.len() {
                    let mut probe = Inflater::default();
                    let mut first: Option<Vec<u8>> = None;
                    let ok = probe
                        .feed(data, &mut |plain| {
                            if first.is_none() {
                                first = Some(plain[..plain.len().min(5)].to_vec());
                            }
                        })
                        .is_ok();
                    if let (true, Some(f)) = (ok, first) {
                        if f.len() == 5
                            && f[3] == 0
                            && known_command(f[4])
                            && (plen == 0 || plen >= 5)
                        {
                            d.compressed = true;
                            self.compressed = true;
                            self.emit(ConnEvent::Anomaly(Anomaly::Compressed));
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// One packet of `dir`, followed in the fed bytes by `rest`; returns how many bytes of
    /// `rest` were consumed too (result rows read in one run, see [`pairing`]).
    #[inline]
    fn on_packet(&mut self, dir: Direction, p: Packet<'_>, rest: &[u8], ts_us: u64) -> usize {
        if self.phase == Phase::Command {
            return match dir {
                Direction::ToServer => {
                    self.on_client_packet(p, ts_us);
                    0
                }
                Direction::ToClient => self.on_server_packet(p, rest, ts_us),
            };
        }
        match self.phase {
            Phase::Tls => {}
            Phase::AwaitGreeting => {
                if dir == Direction::ToClient {
                    self.on_greeting(p);
                } else {
                    self.phase = Phase::AwaitHandshakeResponse;
                    self.on_handshake_response(p, ts_us);
                }
            }
            Phase::AwaitHandshakeResponse => {
                if dir == Direction::ToServer {
                    self.on_handshake_response(p, ts_us);
                } else {
                    self.on_auth_server(p, ts_us);
                }
            }
            Phase::Auth => {
                if dir == Direction::ToClient {
                    self.on_auth_server(p, ts_us);
                }
            }
            Phase::Command => {}
        }
        0
    }
}

/// `USE db` (any case, optional backticks, trailing `;`/space) → db.
fn use_statement(sql: &[u8]) -> Option<String> {
    let s = sql.trim_ascii();
    if s.len() < 4 || !s[..3].eq_ignore_ascii_case(b"use") || !s[3].is_ascii_whitespace() {
        return None;
    }
    let db = std::str::from_utf8(&s[4..]).ok()?;
    let db = db.trim().trim_end_matches(';').trim().trim_matches('`');
    (!db.is_empty() && !db.contains(char::is_whitespace)).then(|| db.to_string())
}

#[cfg(test)]
mod tests;
