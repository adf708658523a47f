//! Sans-IO MySQL protocol decoder for one TCP connection, both directions.
//!
//! Fed in-order bytes per direction with the packet timestamp ([`Connection::handle_data`]), told
//! about holes ([`Connection::handle_gap`]) and the end ([`Connection::handle_close`]); yields
//! [`ConnEvent`]s from [`Connection::poll_event`]. It never touches sockets, clocks or threads.
//! It does not reassemble TCP (see [`crate::tcp`]) nor know about session tables or rings.
//!
//! Handshake (v10, HandshakeResponse41, auth switch / more data, SSLRequest), CLIENT_COMPRESS,
//! 16 MiB+ payloads, every command, and responses (OK, ERR, EOF, text and binary result sets,
//! multiple result sets, PREPARE_OK, LOCAL INFILE) are decoded. Each command is paired with its
//! response; production latency is the response's last packet time minus the request's last
//! packet time. Sessions joined mid-stream, and streams after a gap, resynchronise on the first
//! client packet that is a whole, plausible command.

pub mod command;
pub mod consts;
pub mod framing;
mod handshake;
pub mod response;
pub mod value;

use std::collections::VecDeque;
use std::sync::Arc;

pub use consts::caps;

use crate::event::{Command, CommandFlags, CommandRecord, Login, Response, ResponseStatus};
use command::{parse_command, StmtTable};
use framing::{Framer, Inflater, Packet};
use response::RespState;

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
}

/// What the decoder yields.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnEvent {
    /// Handshake done (or inferred mid-stream).
    Login(Login),
    /// A command paired with its response.
    Command(Box<CommandRecord>),
    /// Something to count.
    Anomaly(Anomaly),
}

const SERVER_KEEP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitGreeting,
    AwaitHandshakeResponse,
    Auth,
    Command,
    Tls,
}

#[derive(Debug)]
struct Pending {
    rec: CommandRecord,
    state: RespState,
    seen_result: bool,
}

#[derive(Debug)]
struct DirState {
    framer: Framer,
    inflater: Inflater,
    compressed: bool,
    synced: bool,
}

impl DirState {
    fn new(keep: usize) -> Self {
        Self {
            framer: Framer::new(keep),
            inflater: Inflater::default(),
            compressed: false,
            synced: true,
        }
    }

    fn reset(&mut self) {
        self.framer.reset();
        self.inflater.reset();
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
    login: Login,
    pending: Option<Pending>,
    stmts: StmtTable,
    events: VecDeque<ConnEvent>,
    next_seq: u64,
    db: Option<Arc<str>>,
    user: Option<Arc<str>>,
    after_gap: bool,
    enable_compress: bool,
    max_command: usize,
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
                login: Login {
                    ts_us: 0,
                    user: None,
                    db: None,
                    capabilities: 0,
                    auth_plugin: None,
                    server_version: None,
                    connection_id: None,
                    tls: false,
                    compressed: false,
                    midstream,
                    ok: false,
                    error_code: None,
                },
                pending: None,
                stmts: StmtTable::default(),
                events: VecDeque::new(),
                next_seq: 0,
                db: None,
                user: None,
                after_gap: false,
                enable_compress: false,
                max_command: cfg.max_command_bytes,
            },
        }
    }

    /// Feed in-order bytes of one direction, with the timestamp of the segment that carried them.
    pub fn handle_data(&mut self, dir: Direction, data: &[u8], ts_us: u64) {
        if data.is_empty() || self.proto.phase == Phase::Tls {
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
            if let Some(p) = proto.pending.as_mut() {
                p.rec.response.first_byte_us.get_or_insert(ts_us);
            }
        }
        if !d.synced {
            match dir {
                Direction::ToServer => {
                    if !proto.try_sync_client(d, data) {
                        return;
                    }
                    d.synced = true;
                    peer.reset();
                    peer.synced = true;
                    proto.events.push_back(ConnEvent::Anomaly(Anomaly::Resync));
                    if proto.midstream && proto.login.ts_us == 0 {
                        proto.login.ts_us = ts_us;
                        proto.login.midstream = true;
                        proto.login.capabilities = proto.caps;
                        proto.login.compressed = d.compressed;
                        proto
                            .events
                            .push_back(ConnEvent::Login(proto.login.clone()));
                    }
                }
                Direction::ToClient => return,
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
            self.proto
                .events
                .push_back(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "connection closed mid-packet",
                )));
        }
        let incomplete = self
            .proto
            .pending
            .as_ref()
            .is_some_and(|p| p.state != RespState::Done);
        self.proto.flush_pending(ts_us, incomplete);
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.proto.events.pop_front()
    }
}

fn feed_dir(proto: &mut Proto, d: &mut DirState, dir: Direction, data: &[u8], ts_us: u64) {
    if d.compressed {
        let DirState {
            framer, inflater, ..
        } = d;
        let r = inflater.feed(data, &mut |plain| {
            framer.feed(plain, &mut |p| {
                if !proto.count_row(dir, &p) {
                    proto.on_packet(dir, p, ts_us);
                }
            });
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
        d.framer.feed(data, &mut |p| {
            if !proto.count_row(dir, &p) {
                proto.on_packet(dir, p, ts_us);
            }
        });
    }
}

impl Proto {
    fn emit(&mut self, ev: ConnEvent) {
        self.events.push_back(ev);
    }

    fn deprecate_eof(&self) -> bool {
        self.caps & caps::DEPRECATE_EOF != 0
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
                            self.login.compressed = true;
                            self.emit(ConnEvent::Anomaly(Anomaly::Compressed));
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    fn flush_pending(&mut self, ts_us: u64, incomplete: bool) {
        if let Some(mut p) = self.pending.take() {
            if incomplete {
                p.rec.flags.response_incomplete = true;
                if p.rec.response.last_byte_us.is_none() && p.rec.response.first_byte_us.is_some() {
                    p.rec.response.last_byte_us = Some(ts_us);
                }
            }
            self.emit(ConnEvent::Command(Box::new(p.rec)));
        }
    }

    /// Count `p` if it is one more row of the result set being received (the common case,
    /// kept out of `on_packet` so that a run of rows costs no call).
    #[inline(always)]
    fn count_row(&mut self, dir: Direction, p: &Packet<'_>) -> bool {
        if dir != Direction::ToClient || !matches!(self.phase, Phase::Command) {
            return false;
        }
        match self.pending.as_mut() {
            Some(pend)
                if matches!(pend.state, RespState::Rows)
                    && !matches!(p.payload.first(), Some(0xfe | 0xff) | None) =>
            {
                pend.rec.response.rows += 1;
                true
            }
            _ => false,
        }
    }

    #[inline(never)]
    fn on_packet(&mut self, dir: Direction, p: Packet<'_>, ts_us: u64) {
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
            Phase::Command => match dir {
                Direction::ToServer => self.on_client_packet(p, ts_us),
                Direction::ToClient => {
                    if !self.count_row(dir, &p) {
                        self.on_server_packet(p, ts_us)
                    }
                }
            },
        }
    }

    fn on_client_packet(&mut self, p: Packet<'_>, ts_us: u64) {
        if let Some(pend) = self.pending.as_mut() {
            match pend.state {
                RespState::InfileUpload => {
                    if p.len == 0 {
                        pend.state = RespState::InfileResult;
                    }
                    pend.rec.ts_us = ts_us;
                    return;
                }
                RespState::ChangeUserAuth => return,
                _ if p.seq != 0 => {
                    if matches!(pend.rec.command, Command::ChangeUser { .. }) {
                        return;
                    }
                }
                _ => {}
            }
        }
        if p.seq != 0 {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "client packet out of sequence",
            )));
            return;
        }
        self.flush_pending(ts_us, true);
        let mut flags = CommandFlags {
            midstream: self.midstream,
            after_gap: std::mem::take(&mut self.after_gap),
            ..CommandFlags::default()
        };
        let Some(&code) = p.payload.first() else {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError("empty command")));
            return;
        };
        let command = if p.truncated || p.len > self.max_command {
            flags.too_large = true;
            self.emit(ConnEvent::Anomaly(Anomaly::TooLarge));
            match code {
                0x03 => Command::Query {
                    sql: Box::default(),
                    attributes: Vec::new(),
                },
                0x16 => Command::StmtPrepare {
                    sql: Box::default(),
                },
                _ => Command::Unknown { code, len: p.len },
            }
        } else {
            match parse_command(p.payload, self.caps, &mut self.stmts) {
                Ok(c) => c,
                Err(_) => {
                    self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                        "malformed command",
                    )));
                    Command::Unknown { code, len: p.len }
                }
            }
        };
        if let Command::Unknown { code, .. } = command {
            if !flags.too_large {
                self.emit(ConnEvent::Anomaly(Anomaly::UnknownCommand(code)));
            }
        }
        let no_response = matches!(
            command,
            Command::Quit
                | Command::StmtClose { .. }
                | Command::StmtSendLongData { .. }
                | Command::BinlogDump { .. }
        );
        let state = match command {
            Command::StmtFetch { .. } => RespState::Rows,
            Command::FieldList { .. } => RespState::FieldList,
            _ => RespState::Start,
        };
        let rec = CommandRecord {
            seq: self.next_seq,
            ts_us,
            command,
            response: Response::default(),
            db: self.db.clone(),
            user: self.user.clone(),
            flags,
        };
        self.next_seq += 1;
        if no_response {
            self.emit(ConnEvent::Command(Box::new(rec)));
        } else {
            self.pending = Some(Pending {
                rec,
                state,
                seen_result: false,
            });
        }
    }

    fn complete(&mut self, ts_us: u64) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        p.state = RespState::Done;
        p.rec.response.last_byte_us = Some(ts_us);
        if p.rec.response.status == ResponseStatus::Ok {
            match &p.rec.command {
                Command::InitDb { schema } => self.db = Some(Arc::from(schema.as_str())),
                Command::ChangeUser { user, db, .. } => {
                    self.user = Some(Arc::from(user.as_str()));
                    self.db = db.as_deref().map(Arc::from);
                    self.stmts.clear();
                }
                Command::Query { sql, .. } => {
                    if let Some(db) = use_statement(sql) {
                        self.db = Some(Arc::from(db.as_str()));
                    }
                }
                Command::StmtPrepare { sql } => {
                    if let Some(ok) = &p.rec.response.prepare_ok {
                        self.stmts
                            .on_prepare_ok(ok.stmt_id, ok.num_params, Some(sql.clone()));
                    }
                }
                _ => {}
            }
        }
        self.emit(ConnEvent::Command(Box::new(p.rec)));
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
