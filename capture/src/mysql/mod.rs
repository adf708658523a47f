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
pub mod framing;
pub mod value;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::{
    Command, CommandFlags, CommandRecord, Login, PrepareOk, Response, ResponseStatus,
};
use command::{parse_command, StmtTable};
use framing::{Framer, Inflater, Packet};
use value::Reader;

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

/// `CapabilityFlags` bits the decoder uses.
pub mod caps {
    /// CLIENT_CONNECT_WITH_DB.
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    /// CLIENT_COMPRESS.
    pub const COMPRESS: u32 = 1 << 5;
    /// CLIENT_PROTOCOL_41.
    pub const PROTOCOL_41: u32 = 1 << 9;
    /// CLIENT_SSL.
    pub const SSL: u32 = 1 << 11;
    /// CLIENT_SECURE_CONNECTION.
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    /// CLIENT_PLUGIN_AUTH.
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    /// CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.
    pub const PLUGIN_AUTH_LENENC: u32 = 1 << 21;
    /// CLIENT_DEPRECATE_EOF.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
const SERVER_KEEP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitGreeting,
    AwaitHandshakeResponse,
    Auth,
    Command,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RespState {
    Start,
    Columns {
        left: u64,
        then_eof: bool,
    },
    ColumnsEof,
    Rows,
    PrepareDefs {
        left: u64,
        eof_after: bool,
        cols: u64,
    },
    PrepareEof {
        cols: u64,
    },
    FieldList,
    InfileUpload,
    InfileResult,
    ChangeUserAuth,
    Done,
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
    matches!(code, 0x01..=0x1f)
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

    fn on_greeting(&mut self, p: Packet<'_>) {
        let mut r = Reader::new(p.payload);
        match r.u8("greeting") {
            Ok(0x0a) => {}
            Ok(0xff) => {
                let (code, _, _) = parse_err(p.payload);
                self.login.error_code = code;
                return;
            }
            _ => {
                self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "not a MySQL greeting",
                )));
                return;
            }
        }
        self.phase = Phase::AwaitHandshakeResponse;
        self.login.server_version = Some(lossy(r.nul_str()));
        let Ok(conn_id) = r.u32("connection id") else {
            return;
        };
        self.login.connection_id = Some(conn_id);
        if r.take(9, "auth data 1").is_err() {
            return;
        }
        let lo = r.u16("caps").unwrap_or(0);
        let _charset = r.u8("charset");
        let _status = r.u16("status");
        let hi = r.u16("caps").unwrap_or(0);
        self.server_caps = u32::from(lo) | u32::from(hi) << 16;
        let _ = r.u8("auth len");
        let _ = r.take(10, "reserved");
        let _ = r.take(13, "auth data 2");
        if r.remaining() > 0 {
            self.login.auth_plugin = Some(lossy(r.nul_str()));
        }
    }

    fn on_handshake_response(&mut self, p: Packet<'_>, ts_us: u64) {
        let mut r = Reader::new(p.payload);
        let Ok(c) = r.u32("client caps") else {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "short handshake response",
            )));
            return;
        };
        if c & caps::PROTOCOL_41 == 0 {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "pre-4.1 handshake response",
            )));
            self.phase = Phase::Auth;
            return;
        }
        let negotiated = if self.server_caps != 0 {
            c & (self.server_caps | caps::SSL)
        } else {
            c
        };
        if p.len == 32 && c & caps::SSL != 0 {
            self.caps = negotiated;
            self.phase = Phase::Tls;
            self.login.tls = true;
            self.login.ts_us = ts_us;
            self.login.capabilities = negotiated;
            self.emit(ConnEvent::Anomaly(Anomaly::Tls));
            self.emit(ConnEvent::Login(self.login.clone()));
            return;
        }
        self.caps = negotiated;
        self.phase = Phase::Auth;
        if r.take(4 + 1 + 23, "handshake response").is_err() {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "short handshake response",
            )));
            return;
        }
        let user = lossy(r.nul_str());
        let auth_ok = if c & caps::PLUGIN_AUTH_LENENC != 0 {
            r.lenenc_bytes("auth response").is_ok()
        } else if c & caps::SECURE_CONNECTION != 0 {
            r.u8("auth len")
                .and_then(|n| r.take(usize::from(n), "auth response"))
                .is_ok()
        } else {
            r.nul_str();
            true
        };
        if !auth_ok {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "bad auth response",
            )));
        }
        if c & caps::CONNECT_WITH_DB != 0 {
            let db = r.nul_str();
            if !db.is_empty() {
                self.login.db = Some(lossy(db));
            }
        }
        if c & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
            self.login.auth_plugin = Some(lossy(r.nul_str()));
        }
        self.login.user = Some(user);
    }

    fn on_auth_server(&mut self, p: Packet<'_>, ts_us: u64) {
        match p.payload.first() {
            Some(0x00) => {
                self.login.ok = true;
                self.finish_login(ts_us);
                if self.caps & caps::COMPRESS != 0 {
                    self.enable_compress = true;
                    self.login.compressed = true;
                    self.emit(ConnEvent::Anomaly(Anomaly::Compressed));
                }
            }
            Some(0xff) => {
                let (code, _, _) = parse_err(p.payload);
                self.login.ok = false;
                self.login.error_code = code;
                self.finish_login(ts_us);
            }
            Some(0xfe) => {
                let mut r = Reader::new(&p.payload[1..]);
                if r.remaining() > 0 {
                    self.login.auth_plugin = Some(lossy(r.nul_str()));
                }
            }
            _ => {}
        }
    }

    fn finish_login(&mut self, ts_us: u64) {
        self.phase = Phase::Command;
        self.login.ts_us = ts_us;
        self.login.capabilities = self.caps;
        self.user = self.login.user.as_deref().map(Arc::from);
        self.db = self.login.db.as_deref().map(Arc::from);
        self.emit(ConnEvent::Login(self.login.clone()));
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

    fn on_server_packet(&mut self, p: Packet<'_>, ts_us: u64) {
        let dep = self.deprecate_eof();
        let dep_known = self.deprecate_eof_known;
        let Some(pend) = self.pending.as_mut() else {
            if !self.midstream && !self.after_gap {
                self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "server packet without a command",
                )));
            }
            return;
        };
        let pl = p.payload;
        let first = pl.first().copied();
        if first == Some(0xff) && pl.get(1..3) == Some(&[0xff, 0xff][..]) {
            return;
        }
        let is_eof = first == Some(0xfe) && p.len < 9;
        let is_ok_fe = first == Some(0xfe) && p.len < 0xff_ffff && (dep || !dep_known);
        let resp = &mut pend.rec.response;
        resp.first_byte_us.get_or_insert(ts_us);
        let mut infer: Option<bool> = None;
        let mut done = false;
        match pend.state {
            RespState::Done => {}
            RespState::Start | RespState::InfileResult => match first {
                Some(0x00)
                    if matches!(pend.rec.command, Command::StmtPrepare { .. })
                        && pend.state == RespState::Start =>
                {
                    let mut r = Reader::new(&pl[1..]);
                    let stmt_id = r.u32("stmt id").unwrap_or(0);
                    let num_columns = r.u16("columns").unwrap_or(0);
                    let num_params = r.u16("params").unwrap_or(0);
                    let _ = r.u8("filler");
                    let warnings = r.u16("warnings").unwrap_or(0);
                    resp.prepare_ok = Some(PrepareOk {
                        stmt_id,
                        num_columns,
                        num_params,
                        warnings,
                    });
                    resp.status = ResponseStatus::Ok;
                    resp.columns = u32::from(num_columns);
                    let eof_after = !dep;
                    pend.state = if num_params > 0 {
                        RespState::PrepareDefs {
                            left: u64::from(num_params),
                            eof_after,
                            cols: u64::from(num_columns),
                        }
                    } else if num_columns > 0 {
                        RespState::PrepareDefs {
                            left: u64::from(num_columns),
                            eof_after,
                            cols: 0,
                        }
                    } else {
                        RespState::Done
                    };
                    if !dep_known && (num_params > 0 || num_columns > 0) {
                        pend.state = RespState::Done;
                    }
                    done = pend.state == RespState::Done;
                }
                Some(0x00) => {
                    let more = apply_ok(resp, pl);
                    if more {
                        pend.state = RespState::Start;
                    } else {
                        done = true;
                    }
                }
                Some(0xff) => {
                    apply_err(resp, pl);
                    done = true;
                }
                Some(0xfb) if pend.state == RespState::Start => {
                    resp.local_infile = true;
                    pend.state = RespState::InfileUpload;
                }
                Some(0xfe) if matches!(pend.rec.command, Command::ChangeUser { .. }) => {
                    pend.state = RespState::ChangeUserAuth;
                }
                Some(_) if matches!(pend.rec.command, Command::Statistics) => {
                    resp.status = ResponseStatus::Ok;
                    done = true;
                }
                Some(_) => {
                    let mut r = Reader::new(pl);
                    match r.lenenc_int("column count") {
                        Ok(n) if n > 0 => {
                            let metadata_follows =
                                r.remaining() == 0 || r.u8("metadata follows").unwrap_or(1) != 0;
                            resp.result_sets += 1;
                            if resp.result_sets == 1 {
                                resp.columns = n.min(u64::from(u32::MAX)) as u32;
                            }
                            pend.seen_result = true;
                            pend.state = if metadata_follows {
                                RespState::Columns {
                                    left: n,
                                    then_eof: !dep || !dep_known,
                                }
                            } else if dep || !dep_known {
                                RespState::Rows
                            } else {
                                RespState::ColumnsEof
                            };
                        }
                        _ => {
                            self.events
                                .push_back(ConnEvent::Anomaly(Anomaly::DecodeError(
                                    "unexpected response",
                                )));
                            done = true;
                            pend.rec.flags.response_incomplete = true;
                        }
                    }
                }
                None => {}
            },
            RespState::Columns { left, then_eof } => {
                if first == Some(0xff) {
                    apply_err(resp, pl);
                    done = true;
                } else if left > 1 {
                    pend.state = RespState::Columns {
                        left: left - 1,
                        then_eof,
                    };
                } else if !dep_known || then_eof {
                    pend.state = RespState::ColumnsEof;
                } else {
                    pend.state = RespState::Rows;
                }
            }
            RespState::ColumnsEof => {
                if !dep_known {
                    if is_eof && p.len == 5 {
                        infer = Some(false);
                        let status = eof_status(pl);
                        pend.state = if status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                            RespState::Done
                        } else {
                            RespState::Rows
                        };
                        done = pend.state == RespState::Done;
                    } else {
                        infer = Some(true);
                        if first == Some(0xfe) && p.len < 0xff_ffff {
                            resp.status = ResponseStatus::Ok;
                            let more = apply_ok(resp, pl);
                            if !more {
                                done = true;
                            } else {
                                pend.state = RespState::Start;
                            }
                        } else if first == Some(0xff) {
                            apply_err(resp, pl);
                            done = true;
                        } else {
                            resp.rows += 1;
                            pend.state = RespState::Rows;
                        }
                    }
                } else if is_eof {
                    let status = eof_status(pl);
                    if status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        resp.status = ResponseStatus::Ok;
                        done = true;
                    } else {
                        pend.state = RespState::Rows;
                    }
                } else if first == Some(0xff) {
                    apply_err(resp, pl);
                    done = true;
                } else {
                    self.events
                        .push_back(ConnEvent::Anomaly(Anomaly::DecodeError(
                            "expected EOF after columns",
                        )));
                    resp.rows += 1;
                    pend.state = RespState::Rows;
                }
            }
            RespState::Rows => {
                if first == Some(0xff) {
                    apply_err(resp, pl);
                    done = true;
                } else if is_eof || is_ok_fe {
                    if !dep_known && !is_eof {
                        infer = Some(true);
                    }
                    resp.status = ResponseStatus::Ok;
                    let more = if is_eof && !dep {
                        let st = eof_status(pl);
                        resp.server_status = st;
                        resp.warnings = eof_warnings(pl);
                        st & SERVER_MORE_RESULTS_EXISTS != 0
                    } else {
                        apply_ok(resp, pl)
                    };
                    if more {
                        pend.state = RespState::Start;
                    } else {
                        done = true;
                    }
                } else {
                    resp.rows += 1;
                }
            }
            RespState::PrepareDefs {
                left,
                eof_after,
                cols,
            } => {
                if left > 1 {
                    pend.state = RespState::PrepareDefs {
                        left: left - 1,
                        eof_after,
                        cols,
                    };
                } else if eof_after {
                    pend.state = RespState::PrepareEof { cols };
                } else if cols > 0 {
                    pend.state = RespState::PrepareDefs {
                        left: cols,
                        eof_after,
                        cols: 0,
                    };
                } else {
                    done = true;
                }
            }
            RespState::PrepareEof { cols } => {
                if cols > 0 {
                    pend.state = RespState::PrepareDefs {
                        left: cols,
                        eof_after: !dep,
                        cols: 0,
                    };
                } else {
                    done = true;
                }
            }
            RespState::FieldList => {
                if first == Some(0xff) {
                    apply_err(resp, pl);
                    done = true;
                } else if is_eof || (first == Some(0xfe) && dep) {
                    resp.status = ResponseStatus::Ok;
                    done = true;
                }
            }
            RespState::InfileUpload => {}
            RespState::ChangeUserAuth => match first {
                Some(0x00) => {
                    apply_ok(resp, pl);
                    done = true;
                }
                Some(0xff) => {
                    apply_err(resp, pl);
                    done = true;
                }
                _ => {}
            },
        }
        if let Some(v) = infer {
            self.deprecate_eof_known = true;
            if v {
                self.caps |= caps::DEPRECATE_EOF;
            }
        }
        if done {
            self.complete(ts_us);
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

/// Apply an OK packet (0x00 or 0xFE header); returns SERVER_MORE_RESULTS_EXISTS.
fn apply_ok(resp: &mut Response, pl: &[u8]) -> bool {
    let mut r = Reader::new(pl.get(1..).unwrap_or_default());
    let affected = r.lenenc_int("affected rows").unwrap_or(0);
    let last_id = r.lenenc_int("last insert id").unwrap_or(0);
    let status = r.u16("status").unwrap_or(0);
    let warnings = r.u16("warnings").unwrap_or(0);
    resp.status = ResponseStatus::Ok;
    resp.affected += affected;
    resp.last_insert_id = last_id;
    resp.server_status = status;
    resp.warnings = warnings;
    status & SERVER_MORE_RESULTS_EXISTS != 0
}

fn parse_err(pl: &[u8]) -> (Option<u16>, Option<String>, Option<String>) {
    let mut r = Reader::new(pl.get(1..).unwrap_or_default());
    let code = r.u16("error code").ok();
    let mut state = None;
    if r.rest().first() == Some(&b'#') && r.remaining() >= 6 {
        let s = r.take(6, "sql state").unwrap_or_default();
        state = Some(lossy(&s[1..]));
    }
    (code, state, Some(lossy(r.rest())))
}

fn apply_err(resp: &mut Response, pl: &[u8]) {
    let (code, state, msg) = parse_err(pl);
    resp.status = ResponseStatus::Err;
    resp.error_code = code;
    resp.sql_state = state;
    resp.error_message = msg;
}

fn eof_status(pl: &[u8]) -> u16 {
    if pl.len() >= 5 {
        u16::from_le_bytes([pl[3], pl[4]])
    } else {
        0
    }
}

fn eof_warnings(pl: &[u8]) -> u16 {
    if pl.len() >= 3 {
        u16::from_le_bytes([pl[1], pl[2]])
    } else {
        0
    }
}

#[cfg(test)]
mod tests;
