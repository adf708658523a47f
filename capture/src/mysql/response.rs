//! Command responses: OK, ERR, EOF, text and binary result sets (several with
//! SERVER_MORE_RESULTS_EXISTS), PREPARE_OK with its definitions, COM_FIELD_LIST, COM_STATISTICS,
//! LOCAL INFILE and the COM_CHANGE_USER auth exchange. It does not decode client commands.

use super::consts::{caps, status};
use super::value::Reader;
use super::{lossy, Anomaly, ConnEvent, Packet, Proto};
use crate::event::{Command, PrepareOk, Response, ResponseStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RespState {
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

impl Proto {
    pub(super) fn on_server_packet(&mut self, p: Packet<'_>, ts_us: u64) {
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
                        pend.state = if status & status::CURSOR_EXISTS != 0 {
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
                    if status & status::CURSOR_EXISTS != 0 {
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
                        st & status::MORE_RESULTS_EXISTS != 0
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
    status & status::MORE_RESULTS_EXISTS != 0
}

pub(super) fn parse_err(pl: &[u8]) -> (Option<u16>, Option<String>, Option<String>) {
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
