//! Decoded, session-level events: what the capture side hands to consumers (inspect, replay).
//!
//! These are validated representations, owned and `Send`, carried through the per-session rings.
//! This module holds no decoding logic; see [`crate::mysql`] for that.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

/// Capture-wide unique id of one TCP connection (one MySQL session).
pub type SessionId = u64;

/// Both ends of a session: the client and the server (the side whose port is a server port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FlowKey {
    /// The client end.
    pub client: SocketAddr,
    /// The server end (its port is one of the configured server ports).
    pub server: SocketAddr,
}

/// A session's [`EventSink::push_at`] slot before the sink gave one.
pub const NO_SLOT: u32 = u32::MAX;

/// One event of one session, in the order it happened on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// First packet of a new TCP connection was seen.
    Open(Box<SessionOpen>),
    /// The handshake finished (or, mid-stream, what could be inferred of it).
    Login(Box<Login>),
    /// A command, paired with its response when it has one.
    Command(Box<CommandRecord>),
    /// The connection ended.
    Close(SessionClose),
}

/// A new session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionOpen {
    /// Session id.
    pub id: SessionId,
    /// Client and server addresses.
    pub key: FlowKey,
    /// Time of the first packet, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The session was already open when capture started (no SYN/handshake seen).
    pub midstream: bool,
}

/// What the handshake established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Login {
    /// Time of the final OK/ERR of the handshake (or of inference).
    pub ts_us: u64,
    /// User name from HandshakeResponse41 (None mid-stream).
    pub user: Option<String>,
    /// Initial default database (CLIENT_CONNECT_WITH_DB), if any.
    pub db: Option<String>,
    /// Negotiated capability flags (client & server); mid-stream: inferred bits only.
    pub capabilities: u32,
    /// Negotiated MariaDB extended capability flags (client & server, from the last 4 filler
    /// bytes of HandshakeResponse41 and of the greeting when CLIENT_MYSQL is unset); 0 when
    /// either side is not MariaDB, and mid-stream.
    #[serde(skip_serializing_if = "is_zero")]
    pub mariadb_capabilities: u32,
    /// Authentication plugin name the client used.
    pub auth_plugin: Option<String>,
    /// Collation id the client asked for in HandshakeResponse41 (None mid-stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collation: Option<u8>,
    /// Server version string from the initial handshake.
    pub server_version: Option<String>,
    /// Connection id the server assigned (thread id).
    pub connection_id: Option<u32>,
    /// The client asked for TLS (SSLRequest); nothing after this is decodable.
    pub tls: bool,
    /// CLIENT_COMPRESS was negotiated.
    pub compressed: bool,
    /// Handshake was not seen; fields are inferred.
    pub midstream: bool,
    /// The server accepted the login (false: ERR or never confirmed).
    pub ok: bool,
    /// Error code when the login failed.
    pub error_code: Option<u16>,
}

impl Login {
    /// Nothing known yet (before the handshake, or a session joined mid-stream).
    pub fn unknown(midstream: bool) -> Self {
        Self {
            ts_us: 0,
            user: None,
            db: None,
            capabilities: 0,
            mariadb_capabilities: 0,
            auth_plugin: None,
            collation: None,
            server_version: None,
            connection_id: None,
            tls: false,
            compressed: false,
            midstream,
            ok: false,
            error_code: None,
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// FIN seen (from either side; both closed or COM_QUIT then FIN).
    Fin,
    /// RST seen.
    Rst,
    /// No packet for the idle timeout.
    Idle,
    /// Capture ended with the session still open.
    EndOfCapture,
    /// The session table was full and this session was evicted.
    Evicted,
    /// A new connection (client SYN with another initial sequence number) reused its addresses.
    Reused,
    /// Decoding this session panicked; it was dropped (later bytes open a new, mid-stream session).
    DecoderPanic,
}

/// End of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionClose {
    /// Time of the packet that closed it (or of the last packet, for idle/end of capture).
    pub ts_us: u64,
    /// Why.
    pub reason: CloseReason,
}

/// Per-command flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommandFlags {
    /// The session was first seen mid-stream.
    pub midstream: bool,
    /// This is the first command decoded after a TCP hole (lost bytes) and resynchronisation.
    pub after_gap: bool,
    /// The request exceeded the configured size cap; its payload was not kept.
    pub too_large: bool,
    /// The response could not be decoded fully (gap or desync while reading it).
    pub response_incomplete: bool,
}

/// One command of a session with its production response.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRecord {
    /// Index of the command within its session, from 0.
    pub seq: u64,
    /// Time of the request's last packet, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The decoded command.
    pub command: Command,
    /// The production response, paired with the command.
    pub response: Response,
    /// Current default database when the command was sent, as far as the decoder knows, given
    /// only when it changed: the decoder sets `db` and `user` on a session's first record and on
    /// the first record after either changed, and leaves both `None` on the others (an `Arc`
    /// clone per command costs two locked increments); a consumer keeps the last ones seen for
    /// the session ([`Identity`]). A record the rings drop hands its values to the session's
    /// next record.
    pub db: Option<Arc<str>>,
    /// Current user, as far as the decoder knows; given only when it changed, as `db`.
    pub user: Option<Arc<str>>,
    /// Flags.
    pub flags: CommandFlags,
    /// The command packet payload as the client sent it (decompressed, continuations joined),
    /// for byte-exact replay; empty when `flags.too_large`.
    pub raw: Bytes,
    /// LOCAL INFILE: the file bytes the client sent (its packets' payloads joined, without the
    /// final empty packet).
    pub infile: Option<Bytes>,
    /// Commit-order marks: whether this command ended a transaction on prod, its commit's global
    /// order, and how many prod commits had completed before it (see [`crate::commit`]).
    pub commit: crate::commit::CommitMarks,
}

/// A client command (`COM_*`), named as the MySQL manual does.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// COM_QUERY: SQL text (raw bytes, not necessarily UTF-8) and query attributes.
    Query {
        /// The statement text (a slice of the record's `raw` payload, not a copy).
        sql: Bytes,
        /// CLIENT_QUERY_ATTRIBUTES name/value pairs, if any.
        attributes: Vec<(String, Value)>,
    },
    /// COM_INIT_DB: change default schema.
    InitDb {
        /// Schema name.
        schema: String,
    },
    /// COM_FIELD_LIST (deprecated).
    FieldList {
        /// Table name.
        table: String,
        /// Field wildcard.
        wildcard: String,
    },
    /// COM_QUIT.
    Quit,
    /// COM_PING.
    Ping,
    /// COM_STATISTICS.
    Statistics,
    /// COM_PROCESS_KILL.
    ProcessKill {
        /// Connection id to kill.
        connection_id: u32,
    },
    /// COM_STMT_PREPARE.
    StmtPrepare {
        /// The statement text (a slice of the record's `raw` payload, not a copy).
        sql: Bytes,
    },
    /// COM_STMT_EXECUTE with decoded binary parameters.
    StmtExecute {
        /// Production statement id.
        stmt_id: u32,
        /// Cursor flags.
        flags: u8,
        /// Parameters in order; empty when the statement has none. Kept as their layout in the
        /// record's `raw` payload: [`Params::decode`] builds the values.
        params: Params,
        /// Parameters could not be decoded (unknown param count, types never sent).
        params_unknown: bool,
    },
    /// COM_STMT_SEND_LONG_DATA.
    StmtSendLongData {
        /// Statement id.
        stmt_id: u32,
        /// Parameter index.
        param_id: u16,
        /// Chunk of data.
        data: Box<[u8]>,
    },
    /// COM_STMT_CLOSE.
    StmtClose {
        /// Statement id.
        stmt_id: u32,
    },
    /// COM_STMT_RESET.
    StmtReset {
        /// Statement id.
        stmt_id: u32,
    },
    /// COM_STMT_FETCH.
    StmtFetch {
        /// Statement id.
        stmt_id: u32,
        /// Number of rows asked for.
        num_rows: u32,
    },
    /// COM_CHANGE_USER.
    ChangeUser {
        /// New user.
        user: String,
        /// New default database.
        db: Option<String>,
        /// Auth plugin.
        auth_plugin: Option<String>,
    },
    /// COM_RESET_CONNECTION.
    ResetConnection,
    /// COM_SET_OPTION (0 = multi statements on, 1 = off).
    SetOption {
        /// Option value.
        option: u16,
    },
    /// COM_BINLOG_DUMP or COM_BINLOG_DUMP_GTID: a replica's stream, never replayed.
    BinlogDump {
        /// True for COM_BINLOG_DUMP_GTID.
        gtid: bool,
    },
    /// Another known command byte (COM_SLEEP, COM_DEBUG, COM_REFRESH, COM_SHUTDOWN, ...).
    Other {
        /// The command byte.
        code: u8,
    },
    /// A command byte MySQL does not define.
    Unknown {
        /// The command byte.
        code: u8,
        /// Payload length.
        len: usize,
    },
}

pub use crate::mysql::consts::{admin_command_name, command_name};
pub use crate::mysql::params::Params;

impl Command {
    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::Query { .. } => 0x03,
            Command::InitDb { .. } => 0x02,
            Command::FieldList { .. } => 0x04,
            Command::Quit => 0x01,
            Command::Ping => 0x0e,
            Command::Statistics => 0x09,
            Command::ProcessKill { .. } => 0x0c,
            Command::StmtPrepare { .. } => 0x16,
            Command::StmtExecute { .. } => 0x17,
            Command::StmtSendLongData { .. } => 0x18,
            Command::StmtClose { .. } => 0x19,
            Command::StmtReset { .. } => 0x1a,
            Command::StmtFetch { .. } => 0x1c,
            Command::ChangeUser { .. } => 0x11,
            Command::ResetConnection => 0x1f,
            Command::SetOption { .. } => 0x1b,
            Command::BinlogDump { gtid: false } => 0x12,
            Command::BinlogDump { gtid: true } => 0x1e,
            Command::Other { code } | Command::Unknown { code, .. } => *code,
        }
    }

    /// The `COM_*` name.
    pub fn name(&self) -> &'static str {
        command_name(self.code())
    }

    /// SQL text of COM_QUERY / COM_STMT_PREPARE.
    pub fn sql(&self) -> Option<&[u8]> {
        match self {
            Command::Query { sql, .. } | Command::StmtPrepare { sql } => Some(sql),
            _ => None,
        }
    }
}

/// A binary-protocol parameter: its MySQL column type, signedness and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// `MYSQL_TYPE_*` code as sent (or remembered from the previous execute).
    pub column_type: u8,
    /// The unsigned flag (0x80 of the type's second byte).
    pub unsigned: bool,
    /// The decoded value.
    pub value: Value,
}

/// A decoded binary-protocol value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Signed integer (TINY, SHORT, INT24, LONG, LONGLONG, YEAR).
    Int(i64),
    /// Unsigned integer (same types with the unsigned flag).
    UInt(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// Length-encoded bytes: strings, DECIMAL/NEWDECIMAL text, JSON, BLOBs, BIT, ENUM, SET, GEOMETRY.
    Bytes(Box<[u8]>),
    /// DATE, DATETIME, TIMESTAMP.
    Date {
        /// Year.
        year: u16,
        /// Month.
        month: u8,
        /// Day.
        day: u8,
        /// Hour.
        hour: u8,
        /// Minute.
        minute: u8,
        /// Second.
        second: u8,
        /// Microseconds.
        micros: u32,
    },
    /// TIME.
    Time {
        /// Negative interval.
        negative: bool,
        /// Days.
        days: u32,
        /// Hours.
        hours: u8,
        /// Minutes.
        minutes: u8,
        /// Seconds.
        seconds: u8,
        /// Microseconds.
        micros: u32,
    },
}

/// Outcome of a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// OK packet, EOF-terminated result set(s), PREPARE_OK, or a text reply (COM_STATISTICS).
    Ok,
    /// ERR packet.
    Err,
    /// No response (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) or none seen.
    #[default]
    None,
}

/// COM_STMT_PREPARE_OK.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrepareOk {
    /// Statement id the server assigned.
    pub stmt_id: u32,
    /// Number of result columns.
    pub num_columns: u16,
    /// Number of parameters.
    pub num_params: u16,
    /// Warnings.
    pub warnings: u16,
}

/// Checksums of a response's result sets (all result sets of the response together). Rows are
/// hashed as sent (text or binary protocol), never decoded; see [`crate::mysql::response`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResultChecksum {
    /// Rows in order: differs when the rows or their order differ.
    pub rows_ordered: u64,
    /// Rows as a multiset: equal when only the order differs.
    pub rows_unordered: u64,
    /// Column definitions (table, names, character set, type, flags, decimals; not the schema);
    /// [`ResultChecksum::COLUMNS_UNKNOWN`] when a result set came without them (a client with
    /// MariaDB's cached metadata: COM_STMT_EXECUTE answers skip them).
    pub columns: u64,
}

impl ResultChecksum {
    /// `columns` of a result whose column definitions were not sent: not compared.
    pub const COLUMNS_UNKNOWN: u64 = 0;
}

/// The production server's response to one command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Response {
    /// ok / err / none.
    pub status: ResponseStatus,
    /// ERR code.
    pub error_code: Option<u16>,
    /// ERR SQL state.
    pub sql_state: Option<String>,
    /// ERR message.
    pub error_message: Option<String>,
    /// Rows returned (sum over all result sets).
    pub rows: u64,
    /// Columns of the first result set.
    pub columns: u32,
    /// Number of result sets (multi-statements, CALL).
    pub result_sets: u32,
    /// Affected rows (sum over all OK packets).
    pub affected: u64,
    /// Last insert id of the last OK packet.
    pub last_insert_id: u64,
    /// Warnings of the last OK/EOF packet.
    pub warnings: u16,
    /// Server status flags of the last OK/EOF packet.
    pub server_status: u16,
    /// PREPARE_OK details for COM_STMT_PREPARE.
    pub prepare_ok: Option<PrepareOk>,
    /// The server asked for a LOCAL INFILE.
    pub local_infile: bool,
    /// The file name of that request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infile_name: Option<String>,
    /// Human-readable info of the last OK packet (`Rows matched: 1  Changed: 1 ...`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// The COM_STATISTICS reply text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<String>,
    /// Checksums of the result sets, when there was at least one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ResultChecksum>,
    /// Time of the first response packet, microseconds since the Unix epoch.
    pub first_byte_us: Option<u64>,
    /// Time of the last response packet, microseconds since the Unix epoch.
    pub last_byte_us: Option<u64>,
}

impl CommandRecord {
    /// Production latency: time of the response's last packet minus time of the request's last packet.
    pub fn prod_us(&self) -> Option<u64> {
        self.response
            .last_byte_us
            .map(|t| t.saturating_sub(self.ts_us))
    }

    /// Time to first response byte, from the request's last packet.
    pub fn first_byte_latency_us(&self) -> Option<u64> {
        self.response
            .first_byte_us
            .map(|t| t.saturating_sub(self.ts_us))
    }
}

/// A session's default database and user as its records give them (each record sets only
/// what changed): feed every command record of the session in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Default database, as of the last record absorbed.
    pub db: Option<Arc<str>>,
    /// User, as of the last record absorbed.
    pub user: Option<Arc<str>>,
}

impl Identity {
    /// Take what `rec` says changed.
    pub fn absorb(&mut self, rec: &CommandRecord) {
        if let Some(d) = &rec.db {
            self.db = Some(d.clone());
        }
        if let Some(u) = &rec.user {
            self.user = Some(u.clone());
        }
    }
}

/// Where the pipeline puts session events (rings, an in-thread printer, a test vector).
pub trait EventSink {
    /// Take one event of session `id`; must not block.
    fn push(&mut self, id: SessionId, event: SessionEvent);

    /// [`EventSink::push`] with `slot`, where the sink may note where it keeps the session so
    /// the next push finds it without a lookup: the driver keeps one per session, starting at
    /// [`NO_SLOT`], and passes it back with each of the session's events. A sink may ignore it
    /// (the default) or find it stale; it never trusts it without checking `id`.
    #[inline]
    fn push_at(&mut self, slot: &mut u32, id: SessionId, event: SessionEvent) {
        let _ = slot;
        self.push(id, event);
    }

    /// End of a batch of frames. A sink that has seen one flush may defer per-push work (the
    /// rings' consumer wake-ups) to the next, so a driver that calls it must keep calling it
    /// after every batch (and when idle); one that never does gets every push done at once.
    fn flush(&mut self) {}
}

impl EventSink for Vec<(SessionId, SessionEvent)> {
    fn push(&mut self, id: SessionId, event: SessionEvent) {
        Vec::push(self, (id, event));
    }
}
