//! The one sans-IO reader of command responses, shared by the capture decoder and replay's wire
//! connection: OK, ERR, EOF, text and binary result sets (several with SERVER_MORE_RESULTS_EXISTS),
//! cursors, PREPARE_OK with its definitions, COM_FIELD_LIST, COM_STATISTICS, LOCAL INFILE and the
//! COM_CHANGE_USER auth exchange.
//!
//! A [`ResponseReader`] is made for one command ([`Expect::for_command`]) and the session's
//! capability flags, then fed the server's packets one by one (whole logical packets: payload and
//! sequence id) until [`Step::Done`]; [`ResponseReader::response`] holds the outcome. Rows are
//! counted and hashed ([`crate::event::ResultChecksum`]), never decoded into values. It does not
//! frame bytes, decompress, pair commands with responses or read client packets.
//!
//! Row hash: xxh3-64 of a row packet's payload, of at most its first [`ROW_HASH_BYTES`] bytes,
//! seeded with its full length. Ordered: a multiply-rotate chain of row hashes; order-insensitive:
//! their wrapping sum. Columns: xxh3-64 of each column definition without catalog, schema and
//! display length, chained.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::consts::{caps, com, status};
use super::value::Reader;
use crate::event::{PrepareOk, Response, ResponseStatus, ResultChecksum};

/// Bytes of a row packet that its hash covers (with the full length as seed); the capture keeps
/// this many bytes of each server packet.
pub const ROW_HASH_BYTES: usize = 4096;

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// What kind of response a command gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY: OK, ERR, a LOCAL INFILE request or text result sets.
    Query,
    /// COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE: OK, ERR or binary result sets (a cursor: only
    /// the column definitions).
    Execute,
    /// COM_STMT_FETCH: binary rows then EOF, or ERR.
    Fetch,
    /// COM_STMT_PREPARE: PREPARE_OK and its definitions, or ERR.
    Prepare,
    /// COM_FIELD_LIST: column definitions then EOF, or ERR.
    FieldList,
    /// COM_STATISTICS: one text packet.
    Statistics,
    /// COM_CHANGE_USER: auth switch and auth data packets, then OK or ERR.
    ChangeUser,
    /// Commands answered by one OK, ERR or EOF (INIT_DB, PING, STMT_RESET, SET_OPTION, ...).
    Simple,
}

impl Expect {
    /// The response kind of command byte `code`; `None` when the server sends no response
    /// (COM_QUIT, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE) or a stream (binlog dumps).
    pub fn for_command(code: u8) -> Option<Expect> {
        Some(match code {
            com::QUIT
            | com::STMT_SEND_LONG_DATA
            | com::STMT_CLOSE
            | com::BINLOG_DUMP
            | com::BINLOG_DUMP_GTID => return None,
            com::QUERY => Expect::Query,
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => Expect::Execute,
            com::STMT_FETCH => Expect::Fetch,
            com::STMT_PREPARE => Expect::Prepare,
            com::FIELD_LIST => Expect::FieldList,
            com::STATISTICS => Expect::Statistics,
            com::CHANGE_USER => Expect::ChangeUser,
            _ => Expect::Simple,
        })
    }
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Feed the next server packet.
    NeedMore,
    /// The server asked for a LOCAL INFILE (file name in [`Response::infile_name`]): the client
    /// sends the file's packets and an empty packet; then feed the server's OK or ERR.
    LocalInfile,
    /// The response is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
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
    Infile,
    Auth,
    Done,
}

/// Reads the response to one command; see the module docs.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    expect: Expect,
    caps: u32,
    eof_known: bool,
    inferred: Option<bool>,
    state: State,
    resp: Response,
    sum: ResultChecksum,
    /// A result set came without its column definitions (MariaDB's cached metadata).
    metadata_skipped: bool,
    anomaly: Option<&'static str>,
    broken: bool,
    next_seq: u8,
    seq_mismatch: bool,
}

impl ResponseReader {
    /// A reader for a command of kind `expect` sent under negotiated capability flags `caps`
    /// (CLIENT_DEPRECATE_EOF, CLIENT_SESSION_TRACK are read), whose last packet had sequence id
    /// `cmd_seq` (0 for a one-packet command).
    pub fn new(expect: Expect, caps: u32, cmd_seq: u8) -> Self {
        Self {
            expect,
            caps,
            eof_known: true,
            inferred: None,
            state: if expect == Expect::Fetch {
                State::Rows
            } else {
                State::Start
            },
            resp: Response::default(),
            sum: ResultChecksum::default(),
            metadata_skipped: false,
            anomaly: None,
            broken: false,
            next_seq: cmd_seq.wrapping_add(1),
            seq_mismatch: false,
        }
    }

    /// Make this reader what [`ResponseReader::new`] would (then
    /// [`ResponseReader::eof_unknown`] when `eof_unknown`), in place. Only for a recycled
    /// reader whose response was taken ([`ResponseReader::take_response`]): the response,
    /// already empty, is not rewritten.
    #[inline]
    pub(crate) fn renew(&mut self, expect: Expect, caps: u32, cmd_seq: u8, eof_unknown: bool) {
        debug_assert_eq!(self.resp, Response::default());
        self.expect = expect;
        self.caps = caps;
        self.eof_known = !eof_unknown;
        self.inferred = None;
        self.state = if expect == Expect::Fetch {
            State::Rows
        } else {
            State::Start
        };
        self.sum = ResultChecksum::default();
        self.metadata_skipped = false;
        self.anomaly = None;
        self.broken = false;
        self.next_seq = cmd_seq.wrapping_add(1);
        self.seq_mismatch = false;
    }

    /// Whether CLIENT_DEPRECATE_EOF is in force is not known (session joined mid-stream): infer
    /// it from the packets; see [`ResponseReader::inferred_deprecate_eof`].
    pub fn eof_unknown(mut self) -> Self {
        self.eof_known = false;
        self
    }

    /// The kind this reader was made for.
    pub fn expect(&self) -> Expect {
        self.expect
    }

    /// The response so far (complete after [`Step::Done`]).
    pub fn response(&self) -> &Response {
        &self.resp
    }

    /// The response, with its checksum set when it had result sets.
    pub fn into_response(mut self) -> Response {
        self.set_checksum();
        self.resp
    }

    /// The response, with its checksum set when it had result sets, taken out (the reader is
    /// left with an empty one: made again with [`ResponseReader::new`] to be reused).
    pub fn take_response(&mut self) -> Response {
        self.set_checksum();
        std::mem::take(&mut self.resp)
    }

    /// The response, with its checksum set when it had result sets, left in place (for the
    /// caller to read, then move out with [`std::mem::take`] so the reader can be renewed).
    pub fn finish_response(&mut self) -> &mut Response {
        self.set_checksum();
        &mut self.resp
    }

    fn set_checksum(&mut self) {
        if self.resp.result_sets > 0 || self.resp.rows > 0 || self.expect == Expect::FieldList {
            let mut sum = self.sum;
            if self.metadata_skipped {
                sum.columns = ResultChecksum::COLUMNS_UNKNOWN;
            }
            self.resp.checksum = Some(sum);
        }
    }

    /// The response could not be read (an impossible first packet).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Mutable access to the response (timestamps are the caller's).
    pub fn response_mut(&mut self) -> &mut Response {
        &mut self.resp
    }

    /// The response is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The server asked for a LOCAL INFILE and its OK/ERR has not come yet.
    pub fn in_local_infile(&self) -> bool {
        self.state == State::Infile
    }

    /// A COM_CHANGE_USER auth exchange is going on.
    pub fn in_auth(&self) -> bool {
        self.expect == Expect::ChangeUser && self.state != State::Done
    }

    /// No packet has been fed yet.
    pub fn at_start(&self) -> bool {
        self.state == State::Start && self.resp.first_byte_us.is_none()
    }

    /// The sequence id the next server packet should carry.
    pub fn next_seq(&self) -> u8 {
        self.next_seq
    }

    /// Some packet carried another sequence id than expected.
    pub fn seq_mismatch(&self) -> bool {
        self.seq_mismatch
    }

    /// The client sent a packet within this exchange (LOCAL INFILE data, auth data): the server
    /// continues after its sequence id.
    pub fn client_packet(&mut self, seq: u8) {
        self.next_seq = seq.wrapping_add(1);
    }

    /// DEPRECATE_EOF as inferred from the packets, when it was unknown and could be told.
    pub fn inferred_deprecate_eof(&self) -> Option<bool> {
        self.inferred
    }

    /// [`ResponseReader::take_anomaly`] has something.
    #[inline]
    pub fn has_anomaly(&self) -> bool {
        self.anomaly.is_some()
    }

    /// A packet that broke the protocol (the reader went on as best it could), once.
    pub fn take_anomaly(&mut self) -> Option<&'static str> {
        self.anomaly.take()
    }

    /// Abandon the response (lost bytes, connection closed): done, checksum kept as is.
    pub fn abandon(&mut self) {
        self.state = State::Done;
    }

    fn dep(&self) -> bool {
        self.caps & caps::DEPRECATE_EOF != 0
    }

    /// Feed one whole server packet: its sequence id, the payload bytes kept (the first
    /// [`ROW_HASH_BYTES`] at least) and the full payload length.
    #[inline]
    pub fn feed(&mut self, seq: u8, payload: &[u8], len: usize) -> Step {
        if seq != self.next_seq {
            self.seq_mismatch = true;
        }
        // A payload of 16 MiB or more took several packets, each with its own sequence id.
        self.next_seq = seq.wrapping_add(1).wrapping_add((len / 0xff_ffff) as u8);
        if self.state == State::Rows && !matches!(payload.first(), Some(0xfe | 0xff) | None) {
            self.row(payload, len);
            return Step::NeedMore;
        }
        self.feed_slow(payload, len)
    }

    /// Feed the whole row packets at the start of `data` (framed bytes: 4-byte headers and
    /// payloads) exactly as [`ResponseReader::feed`] would one by one, stopping before the first
    /// packet that is not a plain row of the current result set (EOF, OK, ERR, empty, 16 MiB or
    /// more, a sequence id out of order) or not whole. Returns the bytes consumed; 0 unless the
    /// reader is among result rows.
    #[inline]
    pub fn feed_rows(&mut self, data: &[u8]) -> usize {
        if self.state != State::Rows {
            return 0;
        }
        let mut rest = data;
        while let [l0, l1, l2, seq, body @ ..] = rest {
            let len = usize::from(*l0) | usize::from(*l1) << 8 | usize::from(*l2) << 16;
            if *seq != self.next_seq
                || len == 0
                || len == 0xff_ffff
                || body.len() < len
                || matches!(body[0], 0xfe | 0xff)
            {
                break;
            }
            self.next_seq = seq.wrapping_add(1);
            let (payload, after) = body.split_at(len);
            self.row(payload, len);
            rest = after;
        }
        data.len() - rest.len()
    }

    #[inline]
    fn row(&mut self, payload: &[u8], len: usize) {
        self.resp.rows += 1;
        let h = xxh3_64_with_seed(&payload[..payload.len().min(ROW_HASH_BYTES)], len as u64);
        self.sum.rows_unordered = self.sum.rows_unordered.wrapping_add(h);
        self.sum.rows_ordered = (self.sum.rows_ordered ^ h)
            .wrapping_mul(MIX)
            .rotate_left(29);
    }

    /// Hash of one column definition: table, org_table, name, org_name, character set, type,
    /// flags, decimals. Not hashed: catalog, schema (`--db-map` changes it), the display length,
    /// and MariaDB's extended metadata (present only when the client asked for
    /// MARIADB_CLIENT_EXTENDED_METADATA, which prod's client and the replay may not share).
    fn column(&mut self, pl: &[u8]) {
        let h = memo_column_hash(pl);
        self.sum.columns = (self.sum.columns ^ h).wrapping_mul(MIX).rotate_left(29);
    }

    /// [`ResponseReader::column`]'s hash of one column definition.
    fn column_hash(pl: &[u8]) -> u64 {
        match (Self::column_names(pl), pl.len().checked_sub(12)) {
            // `t` is the start of the 12 fixed bytes (after their 0x0c length).
            (Some((start, end)), Some(t)) if end < t => {
                let a = xxh3_64_with_seed(&pl[start..end], 1);
                a ^ xxh3_64_with_seed(&pl[t + 6..t + 10], 2).rotate_left(17)
                    ^ xxh3_64_with_seed(&pl[t..t + 2], 4).rotate_left(41)
            }
            _ => xxh3_64_with_seed(pl, 3),
        }
    }

    /// Where table, org_table, name and org_name of a column definition start and end (after
    /// catalog and schema); None when the definition is cut short or a length is not a valid
    /// length-encoded integer.
    #[inline]
    fn column_names(pl: &[u8]) -> Option<(usize, usize)> {
        // Names shorter than 251 bytes have a one-byte length: no reader needed.
        let mut at = 0;
        let mut start = 0;
        for i in 0..6 {
            if i == 2 {
                start = at;
            }
            let n = *pl.get(at)?;
            if n >= 0xfb {
                return Self::column_names_slow(pl);
            }
            at += 1 + usize::from(n);
            if at > pl.len() {
                return None;
            }
        }
        Some((start, at))
    }

    #[inline(never)]
    fn column_names_slow(pl: &[u8]) -> Option<(usize, usize)> {
        let mut r = Reader::new(pl);
        r.lenenc_bytes("catalog")
            .and_then(|_| r.lenenc_bytes("schema"))
            .map(|_| pl.len() - r.remaining())
            .and_then(|start| {
                for what in ["table", "org_table", "name", "org_name"] {
                    r.lenenc_bytes(what)?;
                }
                Ok((start, pl.len() - r.remaining()))
            })
            .ok()
    }

    fn set_anomaly(&mut self, what: &'static str) {
        self.anomaly.get_or_insert(what);
    }

    #[inline(never)]
    fn feed_slow(&mut self, pl: &[u8], len: usize) -> Step {
        let first = pl.first().copied();
        // MariaDB progress report: not part of the response proper.
        if first == Some(0xff) && pl.get(1..3) == Some(&[0xff, 0xff][..]) {
            return Step::NeedMore;
        }
        let dep = self.dep();
        let dep_known = self.eof_known;
        let is_eof = first == Some(0xfe) && len < 9;
        let is_ok_fe = first == Some(0xfe) && len < 0xff_ffff && (dep || !dep_known);
        let mut infer: Option<bool> = None;
        let mut done = false;
        let mut step = Step::NeedMore;
        match self.state {
            State::Done => self.set_anomaly("server packet after the response"),
            State::Auth => match first {
                Some(0x00) => {
                    self.ok(pl);
                    done = true;
                }
                Some(0xff) => done = self.err(pl),
                _ => {}
            },
            State::Start | State::Infile => match first {
                Some(0x00) if self.expect == Expect::Prepare && self.state == State::Start => {
                    done = self.prepare_ok(pl, dep, dep_known);
                }
                Some(0x00) => done = !self.ok(pl),
                Some(0xff) => done = self.err(pl),
                _ if self.state == State::Infile => {
                    self.set_anomaly("expected OK after LOCAL INFILE");
                    done = true;
                }
                Some(0xfb) if self.expect == Expect::Query => {
                    self.resp.local_infile = true;
                    self.resp.infile_name = Some(lossy(&pl[1..]));
                    self.state = State::Infile;
                    step = Step::LocalInfile;
                }
                Some(_) if self.expect == Expect::ChangeUser => self.state = State::Auth,
                Some(_) if self.expect == Expect::Statistics => {
                    self.resp.status = ResponseStatus::Ok;
                    self.resp.statistics = Some(lossy(pl));
                    done = true;
                }
                Some(0xfe) if self.expect == Expect::Simple => {
                    if len >= 7 {
                        self.ok(pl);
                    } else {
                        self.eof(pl);
                    }
                    done = true;
                }
                Some(_) if self.expect == Expect::FieldList => {
                    self.resp.columns += 1;
                    self.column(pl);
                    self.state = State::FieldList;
                }
                Some(_) => {
                    let mut r = Reader::new(pl);
                    match r.lenenc_int("column count") {
                        Ok(n)
                            if n > 0 && matches!(self.expect, Expect::Query | Expect::Execute) =>
                        {
                            let metadata_follows =
                                r.remaining() == 0 || r.u8("metadata follows").unwrap_or(1) != 0;
                            self.resp.result_sets += 1;
                            if self.resp.result_sets == 1 {
                                self.resp.columns = n.min(u64::from(u32::MAX)) as u32;
                            }
                            self.sum.columns =
                                (self.sum.columns ^ n).wrapping_mul(MIX).rotate_left(29);
                            self.metadata_skipped |= !metadata_follows;
                            self.state = if metadata_follows {
                                State::Columns {
                                    left: n,
                                    then_eof: !dep || !dep_known,
                                }
                            } else if dep || !dep_known {
                                State::Rows
                            } else {
                                State::ColumnsEof
                            };
                        }
                        _ => {
                            self.set_anomaly("unexpected response");
                            self.broken = true;
                            done = true;
                        }
                    }
                }
                None => {}
            },
            State::Columns { left, then_eof } => {
                if first == Some(0xff) {
                    done = self.err(pl);
                } else {
                    self.column(pl);
                    self.state = if left > 1 {
                        State::Columns {
                            left: left - 1,
                            then_eof,
                        }
                    } else if !dep_known || then_eof {
                        State::ColumnsEof
                    } else {
                        State::Rows
                    };
                }
            }
            State::ColumnsEof => {
                if !dep_known {
                    if is_eof && len == 5 {
                        infer = Some(false);
                        done = self.after_columns_eof(pl);
                    } else {
                        infer = Some(true);
                        if first == Some(0xfe) && len < 0xff_ffff {
                            done = !self.ok(pl);
                        } else if first == Some(0xff) {
                            done = self.err(pl);
                        } else {
                            self.state = State::Rows;
                            self.row(pl, len);
                        }
                    }
                } else if is_eof {
                    done = self.after_columns_eof(pl);
                } else if first == Some(0xff) {
                    done = self.err(pl);
                } else {
                    self.set_anomaly("expected EOF after columns");
                    self.state = State::Rows;
                    self.row(pl, len);
                }
            }
            State::Rows => {
                if first == Some(0xff) {
                    done = self.err(pl);
                } else if is_eof || is_ok_fe {
                    if !dep_known && !is_eof {
                        infer = Some(true);
                    }
                    let more = if is_eof && !dep {
                        self.eof(pl)
                    } else {
                        self.ok(pl)
                    };
                    done = !more;
                } else {
                    self.row(pl, len);
                }
            }
            State::PrepareDefs {
                left,
                eof_after,
                cols,
            } => {
                self.state = if left > 1 {
                    State::PrepareDefs {
                        left: left - 1,
                        eof_after,
                        cols,
                    }
                } else if eof_after {
                    State::PrepareEof { cols }
                } else if cols > 0 {
                    State::PrepareDefs {
                        left: cols,
                        eof_after,
                        cols: 0,
                    }
                } else {
                    done = true;
                    State::Done
                };
            }
            State::PrepareEof { cols } => {
                if cols > 0 {
                    self.state = State::PrepareDefs {
                        left: cols,
                        eof_after: !dep,
                        cols: 0,
                    };
                } else {
                    done = true;
                }
            }
            State::FieldList => {
                if first == Some(0xff) {
                    done = self.err(pl);
                } else if is_eof || (first == Some(0xfe) && dep) {
                    self.resp.status = ResponseStatus::Ok;
                    done = true;
                } else {
                    self.resp.columns += 1;
                    self.column(pl);
                }
            }
        }
        if let Some(v) = infer {
            self.eof_known = true;
            self.inferred = Some(v);
            if v {
                self.caps |= caps::DEPRECATE_EOF;
            } else {
                self.caps &= !caps::DEPRECATE_EOF;
            }
        }
        if done {
            self.state = State::Done;
            self.set_checksum();
            return Step::Done;
        }
        step
    }

    /// EOF after column definitions: rows follow, unless a cursor was opened. Returns done.
    fn after_columns_eof(&mut self, pl: &[u8]) -> bool {
        let st = eof_status(pl);
        if st & status::CURSOR_EXISTS != 0 {
            self.eof(pl);
            true
        } else {
            self.state = State::Rows;
            false
        }
    }

    fn prepare_ok(&mut self, pl: &[u8], dep: bool, dep_known: bool) -> bool {
        let mut r = Reader::new(&pl[1..]);
        let stmt_id = r.u32("stmt id").unwrap_or(0);
        let num_columns = r.u16("columns").unwrap_or(0);
        let num_params = r.u16("params").unwrap_or(0);
        let _ = r.u8("filler");
        let warnings = r.u16("warnings").unwrap_or(0);
        self.resp.prepare_ok = Some(PrepareOk {
            stmt_id,
            num_columns,
            num_params,
            warnings,
        });
        self.resp.status = ResponseStatus::Ok;
        self.resp.columns = u32::from(num_columns);
        let eof_after = !dep;
        self.state = if num_params > 0 {
            State::PrepareDefs {
                left: u64::from(num_params),
                eof_after,
                cols: u64::from(num_columns),
            }
        } else if num_columns > 0 {
            State::PrepareDefs {
                left: u64::from(num_columns),
                eof_after,
                cols: 0,
            }
        } else {
            State::Done
        };
        // Without knowing DEPRECATE_EOF the definitions cannot be counted: stop here.
        !dep_known || self.state == State::Done
    }

    /// Apply an OK packet (0x00 or 0xFE header); returns SERVER_MORE_RESULTS_EXISTS (and then
    /// expects the next result).
    fn ok(&mut self, pl: &[u8]) -> bool {
        // The usual OK (and DEPRECATE_EOF's end of rows): one-byte counts, no info.
        if let [_, a, l, s0, s1, w0, w1] = *pl {
            if a < 0xfb && l < 0xfb {
                let st = u16::from_le_bytes([s0, s1]);
                self.resp.info = None;
                self.resp.status = ResponseStatus::Ok;
                self.resp.affected = self.resp.affected.saturating_add(u64::from(a));
                self.resp.last_insert_id = u64::from(l);
                self.resp.server_status = st;
                self.resp.warnings = u16::from_le_bytes([w0, w1]);
                let more = st & status::MORE_RESULTS_EXISTS != 0;
                if more {
                    self.state = State::Start;
                }
                return more;
            }
        }
        self.ok_slow(pl)
    }

    #[inline(never)]
    fn ok_slow(&mut self, pl: &[u8]) -> bool {
        let mut r = Reader::new(pl.get(1..).unwrap_or_default());
        let affected = r.lenenc_int("affected rows").unwrap_or(0);
        let last_id = r.lenenc_int("last insert id").unwrap_or(0);
        let st = r.u16("status").unwrap_or(0);
        let warnings = r.u16("warnings").unwrap_or(0);
        let info = if self.caps & caps::SESSION_TRACK != 0 {
            r.lenenc_bytes("info").unwrap_or_default()
        } else {
            r.rest()
        };
        self.resp.info = (!info.is_empty()).then(|| lossy(info));
        self.resp.status = ResponseStatus::Ok;
        // Summed over a multi-result response; a hostile server's counts saturate.
        self.resp.affected = self.resp.affected.saturating_add(affected);
        self.resp.last_insert_id = last_id;
        self.resp.server_status = st;
        self.resp.warnings = warnings;
        let more = st & status::MORE_RESULTS_EXISTS != 0;
        if more {
            self.state = State::Start;
        }
        more
    }

    /// Apply an EOF packet; returns SERVER_MORE_RESULTS_EXISTS (and then expects the next result).
    fn eof(&mut self, pl: &[u8]) -> bool {
        let st = eof_status(pl);
        self.resp.status = ResponseStatus::Ok;
        self.resp.server_status = st;
        self.resp.warnings = if pl.len() >= 3 {
            u16::from_le_bytes([pl[1], pl[2]])
        } else {
            0
        };
        let more = st & status::MORE_RESULTS_EXISTS != 0;
        if more {
            self.state = State::Start;
        }
        more
    }

    /// Apply an ERR packet; always done.
    fn err(&mut self, pl: &[u8]) -> bool {
        let (code, state, msg) = parse_err(pl);
        self.resp.status = ResponseStatus::Err;
        self.resp.error_code = code;
        self.resp.sql_state = state;
        self.resp.error_message = msg;
        true
    }
}

/// Longest column definition whose hash is remembered.
const MEMO_BYTES: usize = 88;
/// Column definitions remembered (a power of two).
const MEMO_SLOTS: usize = 8;

/// A remembered column definition and its hash; `len` 0 is an empty slot.
#[derive(Clone, Copy)]
struct MemoSlot {
    len: u8,
    hash: u64,
    bytes: [u8; MEMO_BYTES],
}

const EMPTY_SLOT: MemoSlot = MemoSlot {
    len: 0,
    hash: 0,
    bytes: [0; MEMO_BYTES],
};

thread_local! {
    /// The hashes of the column definitions met last on this thread, by their bytes: the same
    /// statements come back with the same definitions, and a comparison costs less than the
    /// three hashes (the hash is a function of the bytes alone: no reader state is kept).
    static COLUMN_MEMO: std::cell::RefCell<[MemoSlot; MEMO_SLOTS]> =
        const { std::cell::RefCell::new([EMPTY_SLOT; MEMO_SLOTS]) };
}

/// [`ResponseReader::column_hash`] of `pl`, remembered for short definitions.
fn memo_column_hash(pl: &[u8]) -> u64 {
    let n = pl.len();
    if n == 0 || n > MEMO_BYTES {
        return ResponseReader::column_hash(pl);
    }
    // Definitions of one statement differ in their names' middle and their type bytes.
    let at =
        (n * 31 + usize::from(pl[n / 2]) + usize::from(pl[n.saturating_sub(6)])) & (MEMO_SLOTS - 1);
    COLUMN_MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let slot = &mut m[at];
        if usize::from(slot.len) == n && slot.bytes[..n] == *pl {
            return slot.hash;
        }
        let h = ResponseReader::column_hash(pl);
        slot.len = n as u8;
        slot.hash = h;
        slot.bytes[..n].copy_from_slice(pl);
        h
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An ERR packet's code, SQL state and message.
pub fn parse_err(pl: &[u8]) -> (Option<u16>, Option<String>, Option<String>) {
    let mut r = Reader::new(pl.get(1..).unwrap_or_default());
    let code = r.u16("error code").ok();
    let mut state = None;
    if r.rest().first() == Some(&b'#') && r.remaining() >= 6 {
        let s = r.take(6, "sql state").unwrap_or_default();
        state = Some(lossy(&s[1..]));
    }
    (code, state, Some(lossy(r.rest())))
}

fn eof_status(pl: &[u8]) -> u16 {
    if pl.len() >= 5 {
        u16::from_le_bytes([pl[3], pl[4]])
    } else {
        0
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
