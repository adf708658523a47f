//! A command's payload for the planner: the record's raw payload and LOCAL INFILE bytes as
//! captured; for a record without them (built by hand, or by a source that does not keep them)
//! the payload is rebuilt from the decoded fields.
//!
//! What the rebuild cannot give back exactly: COM_STMT_EXECUTE parameters that were not decoded
//! (`params_unknown`), parameter types are re-sent on every execute, query attribute types are
//! derived from their values, COM_INIT_DB names that were not UTF-8 (decoded lossily), and
//! commands with a body the decoder does not keep (COM_STMT_BULK_EXECUTE, COM_REFRESH, ...).

use bytes::Bytes;
use mrte_capture::event::{Command, CommandRecord, Value};
use mrte_capture::mysql::value::{types, write_lenenc, write_value};

use super::LoseReason;

use mrte_capture::mysql::consts::caps::QUERY_ATTRIBUTES;

/// What the capture gives the planner for one command: its payload (command byte first) and,
/// for a LOAD DATA LOCAL INFILE, the file bytes prod's client sent.
#[derive(Debug)]
pub(crate) struct Captured {
    pub payload: Bytes,
    pub local_infile: Option<Bytes>,
}

/// The captured payload of `rec` under the session's capabilities `caps`.
pub(crate) fn captured(rec: &CommandRecord, caps: u32) -> Result<Captured, LoseReason> {
    if !rec.raw.is_empty() {
        return Ok(Captured {
            payload: rec.raw.clone(),
            local_infile: rec.infile.clone(),
        });
    }
    Ok(Captured {
        payload: Bytes::from(rebuild(&rec.command, &rec.raw, caps)?),
        local_infile: rec.infile.clone(),
    })
}

fn attr_type(v: &Value) -> (u8, bool) {
    match v {
        Value::Null => (types::NULL, false),
        Value::Int(_) => (types::LONGLONG, false),
        Value::UInt(_) => (types::LONGLONG, true),
        Value::Float(_) => (types::FLOAT, false),
        Value::Double(_) => (types::DOUBLE, false),
        Value::Bytes(_) => (types::VAR_STRING, false),
        Value::Date { .. } => (types::DATETIME, false),
        Value::Time { .. } => (types::TIME, false),
    }
}

/// `raw`: the record's payload, which execute parameters are decoded from (empty for records
/// built by hand, whose parameters are decoded already).
fn rebuild(cmd: &Command, raw: &[u8], caps: u32) -> Result<Vec<u8>, LoseReason> {
    let mut out = vec![cmd.code()];
    match cmd {
        Command::Query { sql, attributes } => {
            if caps & QUERY_ATTRIBUTES != 0 {
                write_lenenc(&mut out, attributes.len() as u64);
                write_lenenc(&mut out, 1);
                if !attributes.is_empty() {
                    let mut bitmap = vec![0u8; attributes.len().div_ceil(8)];
                    for (i, (_, v)) in attributes.iter().enumerate() {
                        if *v == Value::Null {
                            bitmap[i / 8] |= 1 << (i % 8);
                        }
                    }
                    out.extend_from_slice(&bitmap);
                    out.push(1);
                    for (name, v) in attributes {
                        let (ty, unsigned) = attr_type(v);
                        out.extend_from_slice(&[ty, if unsigned { 0x80 } else { 0 }]);
                        write_lenenc(&mut out, name.len() as u64);
                        out.extend_from_slice(name.as_bytes());
                    }
                    for (_, v) in attributes {
                        write_value(&mut out, attr_type(v).0, v);
                    }
                }
            }
            out.extend_from_slice(sql);
        }
        Command::StmtPrepare { sql } => out.extend_from_slice(sql),
        Command::InitDb { schema } => out.extend_from_slice(schema.as_bytes()),
        Command::FieldList { table, wildcard } => {
            out.extend_from_slice(table.as_bytes());
            out.push(0);
            out.extend_from_slice(wildcard.as_bytes());
        }
        Command::Quit | Command::Ping | Command::Statistics | Command::ResetConnection => {}
        Command::ProcessKill { connection_id } => {
            out.extend_from_slice(&connection_id.to_le_bytes())
        }
        Command::StmtExecute {
            stmt_id,
            flags,
            params,
            params_unknown,
        } => {
            if *params_unknown {
                return Err(LoseReason::ParamsUnknown);
            }
            let params = params.decode(raw);
            if caps & QUERY_ATTRIBUTES != 0 && !params.is_empty() {
                return Err(LoseReason::PayloadUnavailable);
            }
            out.extend_from_slice(&stmt_id.to_le_bytes());
            out.push(*flags);
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
                for p in params.iter() {
                    out.extend_from_slice(&[p.column_type, if p.unsigned { 0x80 } else { 0 }]);
                }
                for p in params.iter() {
                    write_value(&mut out, p.column_type, &p.value);
                }
            }
        }
        Command::StmtSendLongData {
            stmt_id,
            param_id,
            data,
        } => {
            out.extend_from_slice(&stmt_id.to_le_bytes());
            out.extend_from_slice(&param_id.to_le_bytes());
            out.extend_from_slice(data);
        }
        Command::StmtClose { stmt_id } | Command::StmtReset { stmt_id } => {
            out.extend_from_slice(&stmt_id.to_le_bytes())
        }
        Command::StmtFetch { stmt_id, num_rows } => {
            out.extend_from_slice(&stmt_id.to_le_bytes());
            out.extend_from_slice(&num_rows.to_le_bytes());
        }
        Command::SetOption { option } => out.extend_from_slice(&option.to_le_bytes()),
        // Sent through a re-authentication, not as a payload.
        Command::ChangeUser { .. } => {}
        // Commands without a body: the command byte is the whole payload.
        Command::Other {
            code: 0x00 | 0x0a | 0x0b | 0x0d | 0x0f | 0x10 | 0x1d,
        } => {}
        Command::Other { .. } | Command::BinlogDump { .. } | Command::Unknown { .. } => {
            return Err(LoseReason::PayloadUnavailable)
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mrte_capture::event::Param;
    use mrte_capture::mysql::command::{parse_command, StmtTable};

    fn round_trip(payload: &[u8], caps: u32) {
        let mut t = StmtTable::default();
        t.on_prepare_ok(7, 2, None);
        let cmd = parse_command(payload, caps, &mut t).unwrap();
        assert_eq!(rebuild(&cmd, payload, caps).unwrap(), payload, "{cmd:?}");
    }

    #[test]
    fn rebuilds_what_the_decoder_parsed() {
        round_trip(b"\x03select 1", 0);
        round_trip(b"\x03\x00\x01select 1", QUERY_ATTRIBUTES);
        round_trip(b"\x02db", 0);
        round_trip(b"\x04t\x00%", 0);
        round_trip(b"\x16select ?", 0);
        round_trip(&[0x19, 7, 0, 0, 0], 0);
        round_trip(&[0x1a, 7, 0, 0, 0], 0);
        round_trip(&[0x1c, 7, 0, 0, 0, 10, 0, 0, 0], 0);
        round_trip(&[0x1b, 1, 0], 0);
        round_trip(&[0x18, 7, 0, 0, 0, 1, 0, b'x', b'y'], 0);
        round_trip(&[0x0e], 0);
        round_trip(&[0x0a], 0);
        // EXECUTE of statement 7 with (LONGLONG 5, NULL).
        let mut ex = vec![0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0b10, 1, 8, 0, 6, 0];
        ex.extend_from_slice(&5u64.to_le_bytes());
        round_trip(&ex, 0);
    }

    #[test]
    fn what_it_cannot_rebuild() {
        let ex = Command::StmtExecute {
            stmt_id: 1,
            flags: 0,
            params: vec![].into(),
            params_unknown: true,
        };
        assert_eq!(rebuild(&ex, &[], 0), Err(LoseReason::ParamsUnknown));
        let ex = Command::StmtExecute {
            stmt_id: 1,
            flags: 0,
            params: vec![Param {
                column_type: 8,
                unsigned: false,
                value: Value::Int(1),
            }]
            .into(),
            params_unknown: false,
        };
        assert_eq!(
            rebuild(&ex, &[], QUERY_ATTRIBUTES),
            Err(LoseReason::PayloadUnavailable)
        );
        assert_eq!(
            rebuild(&Command::Other { code: 0xfa }, &[], 0),
            Err(LoseReason::PayloadUnavailable)
        );
    }
}
