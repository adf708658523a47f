//! The response reader, sans-IO: fed the packets of one command's response, it says when the
//! response is complete and sums it up in a [`Reply`]: OK / ERR / EOF (with and without
//! CLIENT_DEPRECATE_EOF), result sets (several with SERVER_MORE_RESULTS_EXISTS, text or binary,
//! cursors), PREPARE_OK with its definitions, LOCAL INFILE requests, COM_FIELD_LIST,
//! COM_STATISTICS, COM_STMT_FETCH.
//!
//! Rows are counted and hashed as raw packets, never decoded into values: an ordered hash and an
//! order-insensitive one ([`RowHash`]), and a hash of the column definitions without their
//! schema names (which `--db-map` changes). This is the replay side's reader until the shared
//! response state machine of the capture decoder takes its place; the connection uses only
//! [`ResponseReader::new`], [`ResponseReader::feed`] and [`ResponseReader::into_reply`].

use mrte_capture::event::{PrepareOk, ResponseStatus};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::auth::parse_err;
use super::packet::MAX_CHUNK;
use super::{com, status, WireError};

/// The shape of response a command gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, result sets or a LOCAL INFILE request (QUERY, STMT_EXECUTE, BULK_EXECUTE,
    /// PROCESS_INFO).
    Results,
    /// PREPARE_OK and its definitions, or ERR.
    Prepare,
    /// Rows then a terminator (STMT_FETCH).
    Fetch,
    /// Column definitions then EOF (FIELD_LIST).
    FieldList,
    /// One text packet (STATISTICS).
    Text,
    /// One OK, EOF or ERR packet (PING, INIT_DB, SET_OPTION, STMT_RESET, RESET_CONNECTION...).
    Status,
    /// No response (STMT_CLOSE, STMT_SEND_LONG_DATA, QUIT).
    Nothing,
}

impl Expect {
    /// The response shape of a command payload (first byte: the command).
    pub fn for_command(payload: &[u8]) -> Self {
        match payload.first().copied() {
            Some(com::QUERY | com::STMT_EXECUTE | com::STMT_BULK_EXECUTE | com::PROCESS_INFO) => {
                Self::Results
            }
            Some(com::STMT_PREPARE) => Self::Prepare,
            Some(com::STMT_FETCH) => Self::Fetch,
            Some(com::FIELD_LIST) => Self::FieldList,
            Some(com::STATISTICS) => Self::Text,
            Some(com::STMT_CLOSE | com::STMT_SEND_LONG_DATA | com::QUIT) => Self::Nothing,
            _ => Self::Status,
        }
    }
}

/// Row hashes of a response: both over the raw row packets of every result set, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RowHash {
    /// Changes when any row or the row order changes.
    pub ordered: u64,
    /// Changes when any row changes; not when rows are reordered (wrapping sum of row hashes).
    pub unordered: u64,
}

impl RowHash {
    /// Add one row packet's payload.
    #[inline]
    pub fn add(&mut self, row: &[u8]) {
        let r = xxh3_64(row);
        self.unordered = self.unordered.wrapping_add(r);
        self.ordered = xxh3_64_with_seed(&r.to_le_bytes(), self.ordered);
    }
}

/// Hash input of a column definition: everything after the catalog and schema fields.
pub fn column_def_tail(def: &[u8]) -> &[u8] {
    let mut at = 0;
    for _ in 0..2 {
        match lenenc(def.get(at..).unwrap_or_default()) {
            Some((n, used)) => at = at.saturating_add(used).saturating_add(n as usize),
            None => return def,
        }
    }
    def.get(at..).unwrap_or(def)
}

/// A length-encoded integer: (value, bytes used).
pub fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    match *b.first()? {
        n @ 0..=0xfa => Some((u64::from(n), 1)),
        0xfc => Some((
            u64::from(u16::from_le_bytes(b.get(1..3)?.try_into().ok()?)),
            3,
        )),
        0xfd => {
            let v = b.get(1..4)?;
            Some((
                u64::from(v[0]) | u64::from(v[1]) << 8 | u64::from(v[2]) << 16,
                4,
            ))
        }
        0xfe => Some((u64::from_le_bytes(b.get(1..9)?.try_into().ok()?), 9)),
        _ => None,
    }
}

/// One command's response, summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Ok, Err, or None (no response expected).
    pub status: ResponseStatus,
    /// Error code and message on Err.
    pub error: Option<(u16, String)>,
    /// Rows over all result sets.
    pub rows: u64,
    /// Affected rows (summed over OK packets).
    pub affected: u64,
    /// Last insert id of the last OK packet.
    pub last_insert_id: u64,
    /// Warnings of the last OK / EOF.
    pub warnings: u16,
    /// Server status of the last OK / EOF.
    pub server_status: u16,
    /// Result sets.
    pub result_sets: u32,
    /// Column definitions (all result sets; for PREPARE: result columns).
    pub columns: u32,
    /// Row hashes.
    pub hash: RowHash,
    /// Hash of column counts and column definitions without schema names.
    pub meta_hash: u64,
    /// PREPARE_OK.
    pub prepare: Option<PrepareOk>,
    /// File name of a LOCAL INFILE request.
    pub local_infile: Option<Vec<u8>>,
    /// COM_STATISTICS text.
    pub text: Option<String>,
    /// Packets read.
    pub packets: u32,
    /// Payload bytes read.
    pub bytes: u64,
    /// Send → last packet, microseconds (set by the connection).
    pub latency_us: u64,
}

impl Reply {
    /// As the engine's [`crate::TestResponse`].
    pub fn to_test_response(&self) -> crate::TestResponse {
        crate::TestResponse {
            status: self.status,
            error_code: self.error.as_ref().map(|e| e.0),
            error_message: self.error.as_ref().map(|e| e.1.clone()),
            rows: self.rows,
            affected: self.affected,
            latency_us: self.latency_us,
        }
    }
}

/// What the reader wants after a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Feed the next packet.
    More,
    /// The response is complete.
    Done,
    /// The server asks for a LOCAL INFILE file (name in [`Reply::local_infile`]): send its
    /// bytes and an empty packet, then go on feeding.
    LocalInfile,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    Params(u16, u16),
    ParamsEof(u16),
    PrepColumns(u16),
    PrepColumnsEof,
    FieldDefs,
    Done,
}

/// The response state machine of one command.
#[derive(Debug)]
pub struct ResponseReader {
    expect: Expect,
    deprecate_eof: bool,
    st: St,
    reply: Reply,
}

fn proto(what: &str) -> WireError {
    WireError::Protocol(what.to_owned())
}

fn is_terminator(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < MAX_CHUNK
}

impl ResponseReader {
    /// A reader for a response of shape `expect`; `deprecate_eof`: CLIENT_DEPRECATE_EOF was
    /// negotiated.
    pub fn new(expect: Expect, deprecate_eof: bool) -> Self {
        let st = match expect {
            Expect::Fetch => St::Rows,
            Expect::FieldList => St::FieldDefs,
            Expect::Nothing => St::Done,
            _ => St::First,
        };
        Self {
            expect,
            deprecate_eof,
            st,
            reply: Reply::default(),
        }
    }

    /// The response is complete.
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// The summary (complete or not).
    pub fn into_reply(self) -> Reply {
        self.reply
    }

    /// The summary so far.
    pub fn reply(&self) -> &Reply {
        &self.reply
    }

    fn err(&mut self, p: &[u8]) -> Feed {
        let (code, msg) = parse_err(p);
        self.reply.status = ResponseStatus::Err;
        self.reply.error = Some((code, msg));
        self.st = St::Done;
        Feed::Done
    }

    /// OK packet (0x00 or, as a terminator under DEPRECATE_EOF, 0xFE): returns status flags.
    fn ok(&mut self, p: &[u8]) -> Result<u16, WireError> {
        let b = p.get(1..).unwrap_or_default();
        let (aff, u1) = lenenc(b).ok_or_else(|| proto("OK: affected rows"))?;
        let (id, u2) = lenenc(&b[u1..]).ok_or_else(|| proto("OK: insert id"))?;
        let rest = &b[u1 + u2..];
        let st = rest
            .get(..2)
            .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
        let w = rest
            .get(2..4)
            .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
        self.reply.affected = self.reply.affected.saturating_add(aff);
        self.reply.last_insert_id = id;
        self.reply.server_status = st;
        self.reply.warnings = w;
        self.reply.status = ResponseStatus::Ok;
        Ok(st)
    }

    /// EOF packet: returns status flags.
    fn eof(&mut self, p: &[u8]) -> u16 {
        let w = p.get(1..3).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
        let st = p.get(3..5).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
        self.reply.warnings = w;
        self.reply.server_status = st;
        self.reply.status = ResponseStatus::Ok;
        st
    }

    fn terminator(&mut self, p: &[u8]) -> Result<u16, WireError> {
        if self.deprecate_eof {
            self.ok(p)
        } else {
            Ok(self.eof(p))
        }
    }

    fn after_set(&mut self, st: u16) -> Feed {
        if st & status::MORE_RESULTS != 0 && self.expect == Expect::Results {
            self.st = St::First;
            Feed::More
        } else {
            self.st = St::Done;
            Feed::Done
        }
    }

    fn column(&mut self, def: &[u8]) {
        self.reply.columns += 1;
        self.reply.meta_hash = xxh3_64_with_seed(column_def_tail(def), self.reply.meta_hash);
    }

    /// Feed one packet payload.
    pub fn feed(&mut self, p: &[u8]) -> Result<Feed, WireError> {
        self.reply.packets += 1;
        self.reply.bytes += p.len() as u64;
        let first = p.first().copied();
        match self.st {
            St::Done => Err(proto("packet after the response ended")),
            St::First => match (self.expect, first) {
                (_, Some(0xff)) => Ok(self.err(p)),
                (Expect::Text, _) => {
                    self.reply.status = ResponseStatus::Ok;
                    self.reply.text = Some(String::from_utf8_lossy(p).into_owned());
                    self.st = St::Done;
                    Ok(Feed::Done)
                }
                (Expect::Prepare, Some(0x00)) => self.prepare_ok(p),
                (_, Some(0x00)) => {
                    let st = self.ok(p)?;
                    Ok(self.after_set(st))
                }
                (Expect::Results, Some(0xfb)) => {
                    self.reply.local_infile = Some(p[1..].to_vec());
                    Ok(Feed::LocalInfile)
                }
                (Expect::Results, Some(_)) => {
                    let (n, used) = lenenc(p).ok_or_else(|| proto("column count"))?;
                    if n == 0 || used != p.len() {
                        return Err(proto("bad column count packet"));
                    }
                    self.reply.result_sets += 1;
                    self.reply.meta_hash =
                        xxh3_64_with_seed(&n.to_le_bytes(), self.reply.meta_hash);
                    self.st = St::Columns(n);
                    Ok(Feed::More)
                }
                (_, Some(0xfe)) => {
                    self.eof(p);
                    self.st = St::Done;
                    Ok(Feed::Done)
                }
                _ => Err(proto("unexpected first response packet")),
            },
            St::Columns(left) => {
                if first == Some(0xff) {
                    return Ok(self.err(p));
                }
                self.column(p);
                self.st = match left - 1 {
                    0 if self.deprecate_eof => St::Rows,
                    0 => St::ColumnsEof,
                    l => St::Columns(l),
                };
                Ok(Feed::More)
            }
            St::ColumnsEof => match first {
                Some(0xfe) => {
                    let st = self.eof(p);
                    if st & status::CURSOR_EXISTS != 0 {
                        self.st = St::Done;
                        return Ok(Feed::Done);
                    }
                    self.st = St::Rows;
                    Ok(Feed::More)
                }
                Some(0xff) => Ok(self.err(p)),
                _ => Err(proto("want EOF after column definitions")),
            },
            St::Rows => {
                if is_terminator(p) {
                    let st = self.terminator(p)?;
                    return Ok(self.after_set(st));
                }
                if first == Some(0xff) {
                    return Ok(self.err(p));
                }
                self.reply.rows += 1;
                self.reply.hash.add(p);
                Ok(Feed::More)
            }
            St::Params(left, cols) => {
                if first == Some(0xff) {
                    return Ok(self.err(p));
                }
                self.st = match left - 1 {
                    0 if !self.deprecate_eof => St::ParamsEof(cols),
                    0 => self.prep_cols(cols),
                    l => St::Params(l, cols),
                };
                Ok(self.done_or(Feed::More))
            }
            St::ParamsEof(cols) => {
                if first != Some(0xfe) {
                    return Err(proto("want EOF after parameter definitions"));
                }
                self.st = self.prep_cols(cols);
                Ok(self.done_or(Feed::More))
            }
            St::PrepColumns(left) => {
                if first == Some(0xff) {
                    return Ok(self.err(p));
                }
                self.column(p);
                self.st = match left - 1 {
                    0 if !self.deprecate_eof => St::PrepColumnsEof,
                    0 => St::Done,
                    l => St::PrepColumns(l),
                };
                Ok(self.done_or(Feed::More))
            }
            St::PrepColumnsEof => {
                if first != Some(0xfe) {
                    return Err(proto("want EOF after column definitions"));
                }
                self.st = St::Done;
                Ok(Feed::Done)
            }
            St::FieldDefs => {
                if is_terminator(p) {
                    self.terminator(p)?;
                    self.st = St::Done;
                    return Ok(Feed::Done);
                }
                if first == Some(0xff) {
                    return Ok(self.err(p));
                }
                self.column(p);
                Ok(Feed::More)
            }
        }
    }

    fn done_or(&self, f: Feed) -> Feed {
        if self.st == St::Done {
            Feed::Done
        } else {
            f
        }
    }

    fn prep_cols(&self, cols: u16) -> St {
        if cols == 0 {
            St::Done
        } else {
            St::PrepColumns(cols)
        }
    }

    fn prepare_ok(&mut self, p: &[u8]) -> Result<Feed, WireError> {
        if p.len() < 12 {
            return Err(proto("short PREPARE_OK"));
        }
        let u16at = |i: usize| u16::from_le_bytes([p[i], p[i + 1]]);
        let ok = PrepareOk {
            stmt_id: u32::from_le_bytes([p[1], p[2], p[3], p[4]]),
            num_columns: u16at(5),
            num_params: u16at(7),
            warnings: u16at(10),
        };
        self.reply.status = ResponseStatus::Ok;
        self.reply.warnings = ok.warnings;
        self.st = if ok.num_params > 0 {
            St::Params(ok.num_params, ok.num_columns)
        } else {
            self.prep_cols(ok.num_columns)
        };
        self.reply.prepare = Some(ok);
        Ok(self.done_or(Feed::More))
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
