//! The message encoding on the stream: a version byte, then a postcard-encoded [`Batch`] of
//! session events (open, login, command with its production response, result checksum and raw
//! payload, close).
//!
//! The types here mirror `mrte_capture::event` field for field so that the capture's in-memory
//! types can change without breaking archived streams silently: a new layout gets a new
//! [`VERSION`] and old messages are refused with [`WireError::Version`], never misread. This
//! module does no I/O.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use mrte_capture::commit::{CommitMarks, TrxEnd};
use mrte_capture::event::{
    CloseReason, Command, CommandFlags, CommandRecord, FlowKey, Login, Param, PrepareOk, Response,
    ResponseStatus, ResultChecksum, SessionClose, SessionEvent, SessionOpen, Value,
};
use serde::{Deserialize, Serialize};

/// Version byte of the current encoding.
pub const VERSION: u8 = 2;

/// Decoding a message failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Empty message.
    #[error("empty message")]
    Empty,
    /// A version this build does not read.
    #[error("message version {0}, this build reads version {VERSION}")]
    Version(u8),
    /// The body does not decode.
    #[error("message body does not decode: {0}")]
    Body(#[from] postcard::Error),
}

/// One message: records of one partition, in capture order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Publisher run: time it started, µs since the epoch (session ids restart with each run).
    pub origin: u64,
    /// The records.
    pub records: Vec<Record>,
    /// End of capture: the publisher sends nothing more (records is empty).
    pub end: bool,
}

/// One session event with its place in its session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Capture session id (unique within `origin`).
    pub session: u64,
    /// Index of the event within its session, from 0 (the open), without gaps unless the
    /// publisher dropped events (counted there).
    pub idx: u64,
    /// The event.
    pub event: Ev,
}

/// A session event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Ev {
    /// Session opened.
    Open {
        /// Client end.
        client: SocketAddr,
        /// Server end.
        server: SocketAddr,
        /// First packet, µs.
        ts_us: u64,
        /// Seen mid-stream.
        midstream: bool,
    },
    /// Handshake result.
    Login(WLogin),
    /// A command with its production response.
    Command(Box<WCommand>),
    /// Session closed.
    Close {
        /// Time, µs.
        ts_us: u64,
        /// Reason code (see [`close_code`]).
        reason: u8,
    },
}

/// Mirror of [`Login`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct WLogin {
    pub ts_us: u64,
    pub user: Option<String>,
    pub db: Option<String>,
    pub capabilities: u32,
    pub mariadb_capabilities: u32,
    pub auth_plugin: Option<String>,
    pub collation: Option<u8>,
    pub server_version: Option<String>,
    pub connection_id: Option<u32>,
    pub tls: bool,
    pub compressed: bool,
    pub midstream: bool,
    pub ok: bool,
    pub error_code: Option<u16>,
}

/// Mirror of [`CommandRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct WCommand {
    pub seq: u64,
    pub ts_us: u64,
    pub command: WCmd,
    pub response: WResponse,
    pub db: Option<String>,
    pub user: Option<String>,
    /// midstream, after_gap, too_large, response_incomplete as bits 0..3.
    pub flags: u8,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub infile: Option<serde_bytes::ByteBuf>,
    /// Commit marks: end (0 none, 1 commit, 2 rollback, 3 read-only), order, commits before the
    /// request, commits before the response.
    pub commit: (u8, u64, u64, u64),
}

/// Mirror of [`Command`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum WCmd {
    Query {
        #[serde(with = "serde_bytes")]
        sql: Vec<u8>,
        attributes: Vec<(String, WValue)>,
    },
    InitDb(String),
    FieldList(String, String),
    Quit,
    Ping,
    Statistics,
    ProcessKill(u32),
    StmtPrepare(#[serde(with = "serde_bytes")] Vec<u8>),
    StmtExecute {
        stmt_id: u32,
        flags: u8,
        params: Vec<(u8, bool, WValue)>,
        params_unknown: bool,
    },
    StmtSendLongData(u32, u16, #[serde(with = "serde_bytes")] Vec<u8>),
    StmtClose(u32),
    StmtReset(u32),
    StmtFetch(u32, u32),
    ChangeUser {
        user: String,
        db: Option<String>,
        auth_plugin: Option<String>,
    },
    ResetConnection,
    SetOption(u16),
    BinlogDump(bool),
    Other(u8),
    Unknown(u8, u64),
}

/// Mirror of [`Value`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum WValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

/// Mirror of [`Response`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct WResponse {
    /// 0 ok, 1 err, 2 none.
    pub status: u8,
    pub error_code: Option<u16>,
    pub sql_state: Option<String>,
    pub error_message: Option<String>,
    pub rows: u64,
    pub columns: u32,
    pub result_sets: u32,
    pub affected: u64,
    pub last_insert_id: u64,
    pub warnings: u16,
    pub server_status: u16,
    /// stmt_id, num_columns, num_params, warnings.
    pub prepare_ok: Option<(u32, u16, u16, u16)>,
    pub local_infile: bool,
    pub infile_name: Option<String>,
    pub info: Option<String>,
    pub statistics: Option<String>,
    /// rows_ordered, rows_unordered, columns.
    pub checksum: Option<(u64, u64, u64)>,
    pub first_byte_us: Option<u64>,
    pub last_byte_us: Option<u64>,
}

/// Encode a batch: version byte, then the body.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serialising plain owned data into a Vec cannot fail.
    postcard::to_io(batch, &mut out).expect("postcard into a Vec");
    out
}

/// Decode a message made by [`encode`].
pub fn decode(msg: &[u8]) -> Result<Batch, WireError> {
    match msg.first() {
        None => Err(WireError::Empty),
        Some(&VERSION) => Ok(postcard::from_bytes(&msg[1..])?),
        Some(&v) => Err(WireError::Version(v)),
    }
}

/// The code of a close reason on the wire.
pub fn close_code(r: CloseReason) -> u8 {
    match r {
        CloseReason::Fin => 0,
        CloseReason::Rst => 1,
        CloseReason::Idle => 2,
        CloseReason::EndOfCapture => 3,
        CloseReason::Evicted => 4,
        CloseReason::Reused => 5,
        CloseReason::DecoderPanic => 6,
    }
}

fn close_reason(c: u8) -> CloseReason {
    match c {
        0 => CloseReason::Fin,
        1 => CloseReason::Rst,
        2 => CloseReason::Idle,
        4 => CloseReason::Evicted,
        5 => CloseReason::Reused,
        6 => CloseReason::DecoderPanic,
        _ => CloseReason::EndOfCapture,
    }
}

fn wvalue(v: &Value) -> WValue {
    match v {
        Value::Null => WValue::Null,
        Value::Int(i) => WValue::Int(*i),
        Value::UInt(u) => WValue::UInt(*u),
        Value::Float(f) => WValue::Float(*f),
        Value::Double(d) => WValue::Double(*d),
        Value::Bytes(b) => WValue::Bytes(b.to_vec()),
        Value::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => WValue::Date(*year, *month, *day, *hour, *minute, *second, *micros),
        Value::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        } => WValue::Time(*negative, *days, *hours, *minutes, *seconds, *micros),
    }
}

fn value(v: WValue) -> Value {
    match v {
        WValue::Null => Value::Null,
        WValue::Int(i) => Value::Int(i),
        WValue::UInt(u) => Value::UInt(u),
        WValue::Float(f) => Value::Float(f),
        WValue::Double(d) => Value::Double(d),
        WValue::Bytes(b) => Value::Bytes(b.into()),
        WValue::Date(year, month, day, hour, minute, second, micros) => Value::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        },
        WValue::Time(negative, days, hours, minutes, seconds, micros) => Value::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        },
    }
}

/// `raw`: the record's payload (execute parameters are decoded from it).
fn wcmd(c: &Command, raw: &[u8]) -> WCmd {
    match c {
        Command::Query { sql, attributes } => WCmd::Query {
            sql: sql.to_vec(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.clone(), wvalue(v)))
                .collect(),
        },
        Command::InitDb { schema } => WCmd::InitDb(schema.clone()),
        Command::FieldList { table, wildcard } => WCmd::FieldList(table.clone(), wildcard.clone()),
        Command::Quit => WCmd::Quit,
        Command::Ping => WCmd::Ping,
        Command::Statistics => WCmd::Statistics,
        Command::ProcessKill { connection_id } => WCmd::ProcessKill(*connection_id),
        Command::StmtPrepare { sql } => WCmd::StmtPrepare(sql.to_vec()),
        Command::StmtExecute {
            stmt_id,
            flags,
            params,
            params_unknown,
        } => WCmd::StmtExecute {
            stmt_id: *stmt_id,
            flags: *flags,
            params: params
                .decode(raw)
                .iter()
                .map(|p| (p.column_type, p.unsigned, wvalue(&p.value)))
                .collect(),
            params_unknown: *params_unknown,
        },
        Command::StmtSendLongData {
            stmt_id,
            param_id,
            data,
        } => WCmd::StmtSendLongData(*stmt_id, *param_id, data.to_vec()),
        Command::StmtClose { stmt_id } => WCmd::StmtClose(*stmt_id),
        Command::StmtReset { stmt_id } => WCmd::StmtReset(*stmt_id),
        Command::StmtFetch { stmt_id, num_rows } => WCmd::StmtFetch(*stmt_id, *num_rows),
        Command::ChangeUser {
            user,
            db,
            auth_plugin,
        } => WCmd::ChangeUser {
            user: user.clone(),
            db: db.clone(),
            auth_plugin: auth_plugin.clone(),
        },
        Command::ResetConnection => WCmd::ResetConnection,
        Command::SetOption { option } => WCmd::SetOption(*option),
        Command::BinlogDump { gtid } => WCmd::BinlogDump(*gtid),
        Command::Other { code } => WCmd::Other(*code),
        Command::Unknown { code, len } => WCmd::Unknown(*code, *len as u64),
    }
}

fn cmd(c: WCmd) -> Command {
    match c {
        WCmd::Query { sql, attributes } => Command::Query {
            sql: sql.into(),
            attributes: attributes.into_iter().map(|(k, v)| (k, value(v))).collect(),
        },
        WCmd::InitDb(schema) => Command::InitDb { schema },
        WCmd::FieldList(table, wildcard) => Command::FieldList { table, wildcard },
        WCmd::Quit => Command::Quit,
        WCmd::Ping => Command::Ping,
        WCmd::Statistics => Command::Statistics,
        WCmd::ProcessKill(connection_id) => Command::ProcessKill { connection_id },
        WCmd::StmtPrepare(sql) => Command::StmtPrepare { sql: sql.into() },
        WCmd::StmtExecute {
            stmt_id,
            flags,
            params,
            params_unknown,
        } => Command::StmtExecute {
            stmt_id,
            flags,
            params: params
                .into_iter()
                .map(|(column_type, unsigned, v)| Param {
                    column_type,
                    unsigned,
                    value: value(v),
                })
                .collect::<Vec<_>>()
                .into(),
            params_unknown,
        },
        WCmd::StmtSendLongData(stmt_id, param_id, data) => Command::StmtSendLongData {
            stmt_id,
            param_id,
            data: data.into(),
        },
        WCmd::StmtClose(stmt_id) => Command::StmtClose { stmt_id },
        WCmd::StmtReset(stmt_id) => Command::StmtReset { stmt_id },
        WCmd::StmtFetch(stmt_id, num_rows) => Command::StmtFetch { stmt_id, num_rows },
        WCmd::ChangeUser {
            user,
            db,
            auth_plugin,
        } => Command::ChangeUser {
            user,
            db,
            auth_plugin,
        },
        WCmd::ResetConnection => Command::ResetConnection,
        WCmd::SetOption(option) => Command::SetOption { option },
        WCmd::BinlogDump(gtid) => Command::BinlogDump { gtid },
        WCmd::Other(code) => Command::Other { code },
        WCmd::Unknown(code, len) => Command::Unknown {
            code,
            len: usize::try_from(len).unwrap_or(usize::MAX),
        },
    }
}

fn wresponse(r: &Response) -> WResponse {
    WResponse {
        status: match r.status {
            ResponseStatus::Ok => 0,
            ResponseStatus::Err => 1,
            ResponseStatus::None => 2,
        },
        error_code: r.error_code,
        sql_state: r.sql_state.clone(),
        error_message: r.error_message.clone(),
        rows: r.rows,
        columns: r.columns,
        result_sets: r.result_sets,
        affected: r.affected,
        last_insert_id: r.last_insert_id,
        warnings: r.warnings,
        server_status: r.server_status,
        prepare_ok: r
            .prepare_ok
            .as_ref()
            .map(|p| (p.stmt_id, p.num_columns, p.num_params, p.warnings)),
        local_infile: r.local_infile,
        infile_name: r.infile_name.clone(),
        info: r.info.clone(),
        statistics: r.statistics.clone(),
        checksum: r
            .checksum
            .map(|c| (c.rows_ordered, c.rows_unordered, c.columns)),
        first_byte_us: r.first_byte_us,
        last_byte_us: r.last_byte_us,
    }
}

fn response(r: WResponse) -> Response {
    Response {
        status: match r.status {
            0 => ResponseStatus::Ok,
            1 => ResponseStatus::Err,
            _ => ResponseStatus::None,
        },
        error_code: r.error_code,
        sql_state: r.sql_state,
        error_message: r.error_message,
        rows: r.rows,
        columns: r.columns,
        result_sets: r.result_sets,
        affected: r.affected,
        last_insert_id: r.last_insert_id,
        warnings: r.warnings,
        server_status: r.server_status,
        prepare_ok: r
            .prepare_ok
            .map(|(stmt_id, num_columns, num_params, warnings)| PrepareOk {
                stmt_id,
                num_columns,
                num_params,
                warnings,
            }),
        local_infile: r.local_infile,
        infile_name: r.infile_name,
        info: r.info,
        statistics: r.statistics,
        checksum: r
            .checksum
            .map(|(rows_ordered, rows_unordered, columns)| ResultChecksum {
                rows_ordered,
                rows_unordered,
                columns,
            }),
        first_byte_us: r.first_byte_us,
        last_byte_us: r.last_byte_us,
    }
}

impl Ev {
    /// The wire form of a capture event.
    pub fn of(e: &SessionEvent) -> Self {
        match e {
            SessionEvent::Open(o) => Ev::Open {
                client: o.key.client,
                server: o.key.server,
                ts_us: o.ts_us,
                midstream: o.midstream,
            },
            SessionEvent::Login(l) => Ev::Login(WLogin {
                ts_us: l.ts_us,
                user: l.user.clone(),
                db: l.db.clone(),
                capabilities: l.capabilities,
                mariadb_capabilities: l.mariadb_capabilities,
                auth_plugin: l.auth_plugin.clone(),
                collation: l.collation,
                server_version: l.server_version.clone(),
                connection_id: l.connection_id,
                tls: l.tls,
                compressed: l.compressed,
                midstream: l.midstream,
                ok: l.ok,
                error_code: l.error_code,
            }),
            SessionEvent::Command(c) => Ev::Command(Box::new(WCommand {
                seq: c.seq,
                ts_us: c.ts_us,
                command: wcmd(&c.command, &c.raw),
                response: wresponse(&c.response),
                db: c.db.as_deref().map(str::to_owned),
                user: c.user.as_deref().map(str::to_owned),
                flags: u8::from(c.flags.midstream)
                    | u8::from(c.flags.after_gap) << 1
                    | u8::from(c.flags.too_large) << 2
                    | u8::from(c.flags.response_incomplete) << 3,
                raw: c.raw.to_vec(),
                infile: c
                    .infile
                    .as_ref()
                    .map(|b| serde_bytes::ByteBuf::from(b.to_vec())),
                commit: (
                    match c.commit.end {
                        None => 0,
                        Some(TrxEnd::Commit) => 1,
                        Some(TrxEnd::Rollback) => 2,
                        Some(TrxEnd::ReadOnly) => 3,
                    },
                    c.commit.order,
                    c.commit.before_request,
                    c.commit.before_response,
                ),
            })),
            SessionEvent::Close(c) => Ev::Close {
                ts_us: c.ts_us,
                reason: close_code(c.reason),
            },
        }
    }

    /// Time of the event, µs since the epoch.
    pub fn ts_us(&self) -> u64 {
        match self {
            Ev::Open { ts_us, .. } | Ev::Close { ts_us, .. } => *ts_us,
            Ev::Login(l) => l.ts_us,
            Ev::Command(c) => c.ts_us,
        }
    }

    /// Is this a command?
    pub fn is_command(&self) -> bool {
        matches!(self, Ev::Command(_))
    }

    /// Back to a capture event of session `id`.
    pub fn into_event(self, id: u64) -> SessionEvent {
        match self {
            Ev::Open {
                client,
                server,
                ts_us,
                midstream,
            } => SessionEvent::Open(Box::new(SessionOpen {
                id,
                key: FlowKey { client, server },
                ts_us,
                midstream,
            })),
            Ev::Login(l) => SessionEvent::Login(Box::new(Login {
                ts_us: l.ts_us,
                user: l.user,
                db: l.db,
                capabilities: l.capabilities,
                mariadb_capabilities: l.mariadb_capabilities,
                auth_plugin: l.auth_plugin,
                collation: l.collation,
                server_version: l.server_version,
                connection_id: l.connection_id,
                tls: l.tls,
                compressed: l.compressed,
                midstream: l.midstream,
                ok: l.ok,
                error_code: l.error_code,
            })),
            Ev::Command(c) => {
                let c = *c;
                SessionEvent::Command(Box::new(CommandRecord {
                    seq: c.seq,
                    ts_us: c.ts_us,
                    command: cmd(c.command),
                    response: response(c.response),
                    db: c.db.map(Arc::from),
                    user: c.user.map(Arc::from),
                    flags: CommandFlags {
                        midstream: c.flags & 1 != 0,
                        after_gap: c.flags & 2 != 0,
                        too_large: c.flags & 4 != 0,
                        response_incomplete: c.flags & 8 != 0,
                    },
                    raw: Bytes::from(c.raw),
                    infile: c.infile.map(|b| Bytes::from(b.into_vec())),
                    commit: CommitMarks {
                        end: match c.commit.0 {
                            1 => Some(TrxEnd::Commit),
                            2 => Some(TrxEnd::Rollback),
                            3 => Some(TrxEnd::ReadOnly),
                            _ => None,
                        },
                        order: c.commit.1,
                        before_request: c.commit.2,
                        before_response: c.commit.3,
                    },
                }))
            }
            Ev::Close { ts_us, reason } => SessionEvent::Close(SessionClose {
                ts_us,
                reason: close_reason(reason),
            }),
        }
    }

    /// Bytes this event adds to a batch, roughly (for the size bound).
    pub fn approx_len(&self) -> usize {
        match self {
            Ev::Command(c) => 64 + c.raw.len() + c.command_len(),
            _ => 64,
        }
    }
}

impl WCommand {
    fn command_len(&self) -> usize {
        match &self.command {
            WCmd::Query { sql, .. } | WCmd::StmtPrepare(sql) => sql.len(),
            WCmd::StmtExecute { params, .. } => params.len() * 16,
            WCmd::StmtSendLongData(_, _, d) => d.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SessionEvent> {
        let key = FlowKey {
            client: "198.18.0.1:40000".parse().unwrap(),
            server: "[2001:db8::1]:3306".parse().unwrap(),
        };
        vec![
            SessionEvent::Open(Box::new(SessionOpen {
                id: 7,
                key,
                ts_us: 1,
                midstream: false,
            })),
            SessionEvent::Login(Box::new(Login {
                ts_us: 2,
                user: Some("app".into()),
                db: None,
                capabilities: 0xa285,
                mariadb_capabilities: 0x1c,
                auth_plugin: Some("mysql_native_password".into()),
                collation: Some(45),
                server_version: Some("11.4".into()),
                connection_id: Some(9),
                tls: false,
                compressed: false,
                midstream: false,
                ok: true,
                error_code: None,
            })),
            SessionEvent::Command(Box::new(CommandRecord {
                seq: 0,
                ts_us: 3,
                command: Command::StmtExecute {
                    stmt_id: 1,
                    flags: 0,
                    params: vec![
                        Param {
                            column_type: 8,
                            unsigned: true,
                            value: Value::UInt(u64::MAX),
                        },
                        Param {
                            column_type: 12,
                            unsigned: false,
                            value: Value::Date {
                                year: 2026,
                                month: 12,
                                day: 2,
                                hour: 1,
                                minute: 2,
                                second: 3,
                                micros: 4,
                            },
                        },
                        Param {
                            column_type: 252,
                            unsigned: false,
                            value: Value::Bytes(b"\x00\xff".to_vec().into()),
                        },
                    ]
                    .into(),
                    params_unknown: false,
                },
                response: Response {
                    status: ResponseStatus::Err,
                    error_code: Some(1146),
                    checksum: Some(ResultChecksum {
                        rows_ordered: 1,
                        rows_unordered: 2,
                        columns: 3,
                    }),
                    prepare_ok: Some(PrepareOk {
                        stmt_id: 1,
                        num_columns: 2,
                        num_params: 3,
                        warnings: 4,
                    }),
                    info: Some("x".into()),
                    last_byte_us: Some(5),
                    ..Response::default()
                },
                db: Some(Arc::from("shop")),
                user: None,
                flags: CommandFlags {
                    midstream: false,
                    after_gap: true,
                    too_large: false,
                    response_incomplete: true,
                },
                raw: Bytes::from_static(b"\x17\x01\x00\x00\x00"),
                infile: Some(Bytes::from_static(b"a,b\n")),
                commit: CommitMarks {
                    end: Some(TrxEnd::Commit),
                    order: 3,
                    before_request: 1,
                    before_response: 2,
                },
            })),
            SessionEvent::Close(SessionClose {
                ts_us: 9,
                reason: CloseReason::Rst,
            }),
        ]
    }

    #[test]
    fn every_event_round_trips() {
        let evs = sample();
        let batch = Batch {
            origin: 42,
            records: evs
                .iter()
                .enumerate()
                .map(|(i, e)| Record {
                    session: 7,
                    idx: i as u64,
                    event: Ev::of(e),
                })
                .collect(),
            end: false,
        };
        let msg = encode(&batch);
        assert_eq!(msg[0], VERSION);
        let back = decode(&msg).expect("decodes");
        assert_eq!(back, batch);
        let again: Vec<SessionEvent> = back
            .records
            .into_iter()
            .map(|r| r.event.into_event(7))
            .collect();
        assert_eq!(again, evs);
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        assert!(matches!(decode(&[]), Err(WireError::Empty)));
        assert!(matches!(decode(&[9, 1, 2]), Err(WireError::Version(9))));
        let msg = encode(&Batch {
            origin: 1,
            records: vec![Record {
                session: 1,
                idx: 0,
                event: Ev::Close {
                    ts_us: 1,
                    reason: 0,
                },
            }],
            end: true,
        });
        for cut in 1..msg.len() {
            let _ = decode(&msg[..cut]);
        }
        let mut junk = vec![VERSION];
        junk.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let _ = decode(&junk);
    }
}
