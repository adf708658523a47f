//! Client command payloads (`COM_*`): checked parsing of one whole command packet payload into
//! [`crate::event::Command`], and the per-connection prepared-statement table that binary
//! parameter decoding needs. Does not do framing, compression or response pairing.

use rustc_hash::FxHashMap as HashMap;

use bytes::Bytes;

use crate::event::{Command, Param, Value};
use crate::mysql::consts::caps::{
    PLUGIN_AUTH as CLIENT_PLUGIN_AUTH, QUERY_ATTRIBUTES as CLIENT_QUERY_ATTRIBUTES,
    SECURE_CONNECTION as CLIENT_SECURE_CONNECTION,
};
use crate::mysql::consts::com;
use crate::mysql::params::{self, Params};
use crate::mysql::value::{read_value, Reader, WireError};

/// Why a command payload could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Empty payload.
    #[error("empty command packet")]
    Empty,
    /// Payload shorter than its fixed fields.
    #[error("{0} payload truncated")]
    Truncated(&'static str),
    /// A field holds an impossible value.
    #[error("{0}: invalid field")]
    Invalid(&'static str),
}

impl From<WireError> for CommandError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated(w) => CommandError::Truncated(w),
            WireError::Invalid(w) => CommandError::Invalid(w),
        }
    }
}

/// What the decoder remembers about one prepared statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StmtInfo {
    /// Parameter count from COM_STMT_PREPARE_OK (None: statement prepared before capture).
    pub num_params: Option<u16>,
    /// Parameter types (type, unsigned) of the last execute that sent them.
    pub param_types: Vec<(u8, bool)>,
    /// The PREPARE text, if seen.
    pub sql: Option<Bytes>,
}

/// Prepared statements of one connection, by server-assigned id.
#[derive(Clone, Debug, Default)]
pub struct StmtTable {
    stmts: HashMap<u32, StmtInfo>,
    last_prepared: Option<u32>,
    /// COM_STMT_SEND_LONG_DATA chunks waiting for the statement's next execute, by parameter.
    long_data: HashMap<u32, Vec<(u16, Vec<u8>)>>,
}

impl StmtTable {
    /// Remember a statement from its PREPARE text and PREPARE_OK.
    pub fn on_prepare_ok(&mut self, stmt_id: u32, num_params: u16, sql: Option<Bytes>) {
        self.last_prepared = Some(stmt_id);
        self.stmts.insert(
            stmt_id,
            StmtInfo {
                num_params: Some(num_params),
                param_types: Vec::new(),
                sql,
            },
        );
    }

    /// Forget a closed statement.
    pub fn on_close(&mut self, stmt_id: u32) {
        let key = self.resolve(stmt_id);
        self.stmts.remove(&key);
        self.long_data.remove(&key);
    }

    /// COM_STMT_RESET: long data sent so far is dropped.
    pub fn on_reset(&mut self, stmt_id: u32) {
        let key = self.resolve(stmt_id);
        self.long_data.remove(&key);
    }

    /// Keep a COM_STMT_SEND_LONG_DATA chunk for the statement's next execute.
    pub fn on_long_data(&mut self, stmt_id: u32, param_id: u16, data: &[u8]) {
        let key = self.resolve(stmt_id);
        let chunks = self.long_data.entry(key).or_default();
        match chunks.iter_mut().find(|(p, _)| *p == param_id) {
            Some((_, d)) => d.extend_from_slice(data),
            None => chunks.push((param_id, data.to_vec())),
        }
    }

    /// Forget everything (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        self.stmts.clear();
        self.last_prepared = None;
        self.long_data.clear();
    }

    /// Look a statement up.
    pub fn get(&self, stmt_id: u32) -> Option<&StmtInfo> {
        self.stmts.get(&self.resolve(stmt_id))
    }

    /// MariaDB's 0xFFFFFFFF means "the statement prepared last".
    fn resolve(&self, stmt_id: u32) -> u32 {
        if stmt_id == u32::MAX {
            self.last_prepared.unwrap_or(stmt_id)
        } else {
            stmt_id
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parse one whole command payload (first byte = command) under capability flags `caps`.
pub fn parse_command(
    payload: &[u8],
    caps: u32,
    stmts: &mut StmtTable,
) -> Result<Command, CommandError> {
    parse_command_shared(&Bytes::copy_from_slice(payload), caps, stmts)
}

/// [`parse_command`] of a payload already in a [`Bytes`]: statement texts are slices of it.
pub fn parse_command_shared(
    raw: &Bytes,
    caps: u32,
    stmts: &mut StmtTable,
) -> Result<Command, CommandError> {
    let payload = &raw[..];
    let (&code, body) = payload.split_first().ok_or(CommandError::Empty)?;
    let mut r = Reader::new(body);
    Ok(match code {
        com::QUIT => Command::Quit,
        com::INIT_DB => Command::InitDb { schema: text(body) },
        com::QUERY => parse_query(raw, body, caps)?,
        com::FIELD_LIST => {
            let table = text(r.nul_str());
            Command::FieldList {
                table,
                wildcard: text(r.rest()),
            }
        }
        com::STATISTICS => Command::Statistics,
        com::PROCESS_KILL => Command::ProcessKill {
            connection_id: r.u32("COM_PROCESS_KILL")?,
        },
        com::PING => Command::Ping,
        com::CHANGE_USER => parse_change_user(body, caps)?,
        com::BINLOG_DUMP => Command::BinlogDump { gtid: false },
        com::BINLOG_DUMP_GTID => Command::BinlogDump { gtid: true },
        com::STMT_PREPARE => Command::StmtPrepare {
            sql: raw.slice(1..),
        },
        com::STMT_EXECUTE => parse_execute(payload, body, caps, stmts)?,
        com::STMT_SEND_LONG_DATA => {
            let stmt_id = r.u32("COM_STMT_SEND_LONG_DATA")?;
            let param_id = r.u16("COM_STMT_SEND_LONG_DATA")?;
            stmts.on_long_data(stmt_id, param_id, r.rest());
            Command::StmtSendLongData {
                stmt_id,
                param_id,
                data: r.rest().into(),
            }
        }
        com::STMT_CLOSE => {
            let stmt_id = r.u32("COM_STMT_CLOSE")?;
            stmts.on_close(stmt_id);
            Command::StmtClose { stmt_id }
        }
        com::STMT_RESET => {
            let stmt_id = r.u32("COM_STMT_RESET")?;
            stmts.on_reset(stmt_id);
            Command::StmtReset { stmt_id }
        }
        com::SET_OPTION => Command::SetOption {
            option: r.u16("COM_SET_OPTION")?,
        },
        com::STMT_FETCH => Command::StmtFetch {
            stmt_id: r.u32("COM_STMT_FETCH")?,
            num_rows: r.u32("COM_STMT_FETCH")?,
        },
        com::RESET_CONNECTION => {
            stmts.clear();
            Command::ResetConnection
        }
        0x00 | 0x05..=0x08 | 0x0a | 0x0b | 0x0d | 0x0f | 0x10 | 0x13..=0x15 | 0x1d | 0xfa => {
            Command::Other { code }
        }
        _ => Command::Unknown {
            code,
            len: payload.len(),
        },
    })
}

fn parse_query(raw: &Bytes, body: &[u8], caps: u32) -> Result<Command, CommandError> {
    if caps & CLIENT_QUERY_ATTRIBUTES == 0 {
        return Ok(Command::Query {
            sql: raw.slice(1..),
            attributes: Vec::new(),
        });
    }
    let mut r = Reader::new(body);
    let count = r.lenenc_int("query attribute count")?;
    let _sets = r.lenenc_int("query attribute set count")?;
    let mut attributes = Vec::new();
    if count > 0 {
        let n = usize::try_from(count)
            .ok()
            .filter(|&n| n <= body.len())
            .ok_or(CommandError::Invalid("query attribute count"))?;
        let bitmap = r.take(n.div_ceil(8), "query attribute null bitmap")?;
        let bound = r.u8("new params bound flag")?;
        if bound != 1 {
            return Err(CommandError::Invalid("query attributes without types"));
        }
        let mut meta = Vec::with_capacity(n);
        for _ in 0..n {
            let ty = r.u8("attribute type")?;
            let flags = r.u8("attribute flags")?;
            let name = text(r.lenenc_bytes("attribute name")?);
            meta.push((ty, flags & 0x80 != 0, name));
        }
        for (i, (ty, unsigned, name)) in meta.into_iter().enumerate() {
            let v = if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                Value::Null
            } else {
                read_value(&mut r, ty, unsigned)?
            };
            attributes.push((name, v));
        }
    }
    Ok(Command::Query {
        sql: raw.slice_ref(r.rest()),
        attributes,
    })
}

fn parse_change_user(body: &[u8], caps: u32) -> Result<Command, CommandError> {
    let mut r = Reader::new(body);
    let user = text(r.nul_str());
    if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = r.u8("COM_CHANGE_USER auth length")?;
        r.take(usize::from(n), "COM_CHANGE_USER auth")?;
    } else {
        r.nul_str();
    }
    let db = text(r.nul_str());
    let mut auth_plugin = None;
    if r.remaining() >= 2 {
        r.u16("charset")?;
        if caps & CLIENT_PLUGIN_AUTH != 0 {
            auth_plugin = Some(text(r.nul_str()));
        }
    }
    Ok(Command::ChangeUser {
        user,
        db: (!db.is_empty()).then_some(db),
        auth_plugin,
    })
}

fn parse_execute(
    payload: &[u8],
    body: &[u8],
    caps: u32,
    stmts: &mut StmtTable,
) -> Result<Command, CommandError> {
    let mut r = Reader::new(body);
    let stmt_id = r.u32("COM_STMT_EXECUTE")?;
    let flags = r.u8("COM_STMT_EXECUTE")?;
    let _iterations = r.u32("COM_STMT_EXECUTE")?;
    let key = stmts.resolve(stmt_id);
    let mut caps_eff = caps;
    if caps & CLIENT_QUERY_ATTRIBUTES != 0 && flags & 0x08 == 0 {
        caps_eff &= !CLIENT_QUERY_ATTRIBUTES;
    }
    // Only statements that sent long data have an entry: no map probe otherwise.
    let long = if stmts.long_data.is_empty() {
        Vec::new()
    } else {
        stmts.long_data.remove(&key).unwrap_or_default()
    };
    let mut result = None;
    if let Some(info) = stmts.stmts.get_mut(&key).filter(|i| i.num_params.is_some()) {
        let n = usize::from(info.num_params.unwrap_or_default());
        let mut rr = r;
        if caps_eff & CLIENT_QUERY_ATTRIBUTES != 0 && n > 0 {
            rr.lenenc_int("parameter count")?;
        }
        if let Some((params, sent)) =
            params::parse(payload, &mut rr, n, caps_eff, &info.param_types, &long)?
        {
            if sent {
                params.remember_types(&mut info.param_types);
            }
            result = Some(params);
        }
    } else {
        let mut found: Option<(usize, Params)> = None;
        let mut ambiguous = false;
        for n in 0..=body.len().min(512) {
            let mut rr = r;
            if let Ok(Some((p, _))) = params::parse(payload, &mut rr, n, caps_eff, &[], &long) {
                if rr.remaining() == 0 && (n > 0 || r.remaining() == 0) {
                    if found.is_some() {
                        ambiguous = true;
                        break;
                    }
                    found = Some((n, p));
                }
            }
        }
        if let (Some((n, p)), false) = (found, ambiguous) {
            let e = stmts.stmts.entry(key).or_default();
            e.num_params = Some(n as u16);
            p.remember_types(&mut e.param_types);
            result = Some(p);
        }
    }
    Ok(match result {
        Some(params) => Command::StmtExecute {
            stmt_id,
            flags,
            params,
            params_unknown: false,
        },
        None => Command::StmtExecute {
            stmt_id,
            flags,
            params: Params::default(),
            params_unknown: true,
        },
    })
}

/// Encode a COM_STMT_EXECUTE payload (with types sent) for `params`; the inverse of parsing.
pub fn encode_execute(stmt_id: u32, params: &[Param]) -> Vec<u8> {
    let mut out = vec![0x17];
    out.extend_from_slice(&stmt_id.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        let mut bitmap = vec![0u8; params.len().div_ceil(8)];
        for (i, p) in params.iter().enumerate() {
            if p.value == Value::Null {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bitmap);
        out.push(1);
        for p in params {
            out.push(p.column_type);
            out.push(if p.unsigned { 0x80 } else { 0 });
        }
        for p in params {
            crate::mysql::value::write_value(&mut out, p.column_type, &p.value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::value::types;
    use proptest::prelude::*;

    /// A COM_STMT_EXECUTE as sysbench's point select sends it: stmt 1, one LONG param = 4993, types sent.
    const SYSBENCH_EXECUTE: &[u8] = &[
        0x17, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x81,
        0x13, 0x00, 0x00,
    ];

    #[test]
    fn simple_commands() {
        let mut t = StmtTable::default();
        assert_eq!(parse_command(&[0x01], 0, &mut t), Ok(Command::Quit));
        assert_eq!(
            parse_command(b"\x02sbtest", 0, &mut t),
            Ok(Command::InitDb {
                schema: "sbtest".into()
            })
        );
        assert_eq!(
            parse_command(b"\x04t1\0%", 0, &mut t),
            Ok(Command::FieldList {
                table: "t1".into(),
                wildcard: "%".into()
            })
        );
        assert_eq!(
            parse_command(&[0x0c, 7, 0, 0, 0], 0, &mut t),
            Ok(Command::ProcessKill { connection_id: 7 })
        );
        assert_eq!(
            parse_command(&[0x0c, 7], 0, &mut t),
            Err(CommandError::Truncated("COM_PROCESS_KILL"))
        );
        assert_eq!(
            parse_command(&[0x99, 1, 2], 0, &mut t),
            Ok(Command::Unknown { code: 0x99, len: 3 })
        );
        assert_eq!(parse_command(&[], 0, &mut t), Err(CommandError::Empty));
        assert_eq!(
            parse_command(&[0x1b, 1, 0], 0, &mut t),
            Ok(Command::SetOption { option: 1 })
        );
    }

    #[test]
    fn query_with_attributes() {
        let mut p = vec![0x03, 1, 1, 0, 1, types::VAR_STRING, 0, 3];
        p.extend_from_slice(b"key");
        p.push(2);
        p.extend_from_slice(b"vv");
        p.extend_from_slice(b"SELECT 1");
        let mut t = StmtTable::default();
        let c = parse_command(&p, CLIENT_QUERY_ATTRIBUTES, &mut t).unwrap();
        assert_eq!(
            c,
            Command::Query {
                sql: b"SELECT 1".as_slice().into(),
                attributes: vec![("key".into(), Value::Bytes(b"vv".as_slice().into()))]
            }
        );
        let c = parse_command(b"\x03\0\x01SELECT 2", CLIENT_QUERY_ATTRIBUTES, &mut t).unwrap();
        assert_eq!(c.sql(), Some(&b"SELECT 2"[..]));
    }

    #[test]
    fn execute_known_then_remembered_types() {
        let mut t = StmtTable::default();
        t.on_prepare_ok(
            1,
            1,
            Some(b"SELECT c FROM sbtest1 WHERE id=?".as_slice().into()),
        );
        let c = parse_command(SYSBENCH_EXECUTE, 0, &mut t).unwrap();
        let Command::StmtExecute {
            params,
            params_unknown,
            ..
        } = c
        else {
            panic!()
        };
        assert!(!params_unknown);
        assert_eq!(
            params.decode(SYSBENCH_EXECUTE).into_owned(),
            vec![Param {
                column_type: 3,
                unsigned: false,
                value: Value::Int(4993)
            }]
        );
        let again = [0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0];
        let Command::StmtExecute { params, .. } = parse_command(&again, 0, &mut t).unwrap() else {
            panic!()
        };
        assert_eq!(params.decode(&again)[0].value, Value::Int(10));
    }

    #[test]
    fn execute_of_statement_prepared_before_capture_is_inferred() {
        let mut t = StmtTable::default();
        let c = parse_command(SYSBENCH_EXECUTE, 0, &mut t).unwrap();
        let Command::StmtExecute {
            params,
            params_unknown,
            ..
        } = c
        else {
            panic!()
        };
        assert!(!params_unknown);
        assert_eq!(params.len(), 1);
        assert_eq!(t.get(1).and_then(|i| i.num_params), Some(1));
        let again = [0x17, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0];
        let Command::StmtExecute { params_unknown, .. } = parse_command(&again, 0, &mut t).unwrap()
        else {
            panic!()
        };
        assert!(params_unknown);
    }

    fn arb_param() -> impl Strategy<Value = Param> {
        prop_oneof![
            Just(Param {
                column_type: types::NULL,
                unsigned: false,
                value: Value::Null
            }),
            any::<i8>().prop_map(|v| Param {
                column_type: types::TINY,
                unsigned: false,
                value: Value::Int(v.into())
            }),
            any::<i16>().prop_map(|v| Param {
                column_type: types::SHORT,
                unsigned: false,
                value: Value::Int(v.into())
            }),
            any::<i32>().prop_map(|v| Param {
                column_type: types::LONG,
                unsigned: false,
                value: Value::Int(v.into())
            }),
            any::<i64>().prop_map(|v| Param {
                column_type: types::LONGLONG,
                unsigned: false,
                value: Value::Int(v)
            }),
            any::<u64>().prop_map(|v| Param {
                column_type: types::LONGLONG,
                unsigned: true,
                value: Value::UInt(v)
            }),
            any::<u32>().prop_map(|v| Param {
                column_type: types::FLOAT,
                unsigned: false,
                value: Value::Float(f32::from_bits(v & 0x7f7f_ffff))
            }),
            any::<u64>().prop_map(|v| Param {
                column_type: types::DOUBLE,
                unsigned: false,
                value: Value::Double(f64::from_bits(v & 0x7fef_ffff_ffff_ffff))
            }),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| Param {
                column_type: types::VAR_STRING,
                unsigned: false,
                value: Value::Bytes(v.into())
            }),
            "[0-9]{1,10}\\.[0-9]{1,5}".prop_map(|s| Param {
                column_type: types::NEWDECIMAL,
                unsigned: false,
                value: Value::Bytes(s.into_bytes().into())
            }),
            (
                0u16..9999,
                1u8..13,
                1u8..29,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000
            )
                .prop_map(|(year, month, day, hour, minute, second, micros)| Param {
                    column_type: types::DATETIME,
                    unsigned: false,
                    value: Value::Date {
                        year,
                        month,
                        day,
                        hour,
                        minute,
                        second,
                        micros
                    }
                }),
            (
                any::<bool>(),
                0u32..35,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000
            )
                .prop_map(|(negative, days, hours, minutes, seconds, micros)| Param {
                    column_type: types::TIME,
                    unsigned: false,
                    value: Value::Time {
                        negative,
                        days,
                        hours,
                        minutes,
                        seconds,
                        micros
                    }
                }),
        ]
    }

    proptest! {
        #[test]
        fn execute_round_trips(params in proptest::collection::vec(arb_param(), 0..20), id in any::<u32>()) {
            let id = id % 1000;
            let payload = encode_execute(id, &params);
            let mut t = StmtTable::default();
            t.on_prepare_ok(id, params.len() as u16, None);
            let c = parse_command(&payload, 0, &mut t).unwrap();
            let Command::StmtExecute { stmt_id, flags, params: got, params_unknown } = c else {
                panic!("not an execute: {c:?}")
            };
            prop_assert_eq!((stmt_id, flags, params_unknown), (id, 0, false));
            prop_assert_eq!(got.decode(&payload).into_owned(), params);
        }

        #[test]
        fn any_bytes_never_panic(p in proptest::collection::vec(any::<u8>(), 0..200), caps in any::<u32>()) {
            let mut t = StmtTable::default();
            let _ = parse_command(&p, caps, &mut t);
        }
    }
}
