//! Prod's clock and auto-increment ids on test, as statement-based replication carries them:
//! before a statement that may read the session's time, the planner sets test's session
//! `timestamp` to the moment prod's server got it (the request's capture time), so that NOW(),
//! CURRENT_TIMESTAMP, UNIX_TIMESTAMP() and a column's DEFAULT / ON UPDATE CURRENT_TIMESTAMP give
//! test the values prod had; before an INSERT or REPLACE whose prod OK reported a generated id, it
//! sets `insert_id` to that id, so concurrent sessions' rows get prod's ids whatever order test's
//! server runs them in. Both go in one `SET`. A forced `insert_id` that the statement did not
//! use (prod's OK reports explicit ids too) would stay for the session's next generated id, so
//! the next write after one clears it (`insert_id=0`) unless it brings its own.
//!
//! A statement "may read the clock" when it names a time function, or when it writes (a default,
//! a trigger, a procedure can read the time without naming it): [`reads_clock`]. The session's
//! timestamp stays fixed once set, so a statement that goes a second or more after the last set
//! (in prod's time) sets it again too, whatever it reads. A new connection starts on the server's
//! own clock.
//!
//! Not covered: SYSDATE() (the system clock, unless the server runs with `--sysdate-is-now`),
//! UUID(), RAND(). Precision is the capture's: prod's server clock and the capturing host's differ
//! by the mirror's delay and the hosts' skew, so seconds match and fractions of a second do not.

use bytes::Bytes;

use super::*;

/// Prod time after which a statement sets test's clock again even if it reads no time, µs.
const REFRESH_US: u64 = 1_000_000;

/// What the prod clock cost a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockStats {
    /// `SET` statements sent (timestamp, insert_id or both).
    pub sets: u64,
    /// Of those, how many gave an `insert_id`.
    pub insert_ids: u64,
    /// Of those, answered with an error (the session stops setting it).
    pub errors: u64,
}

/// Whether `sql` may read the session's clock: it writes (first keyword INSERT, REPLACE,
/// UPDATE, DELETE, LOAD, CALL, CREATE, ALTER, EXECUTE) or names a time function.
pub(crate) fn reads_clock(sql: &[u8]) -> bool {
    const WRITES: [&[u8]; 9] = [
        b"INSERT", b"REPLACE", b"UPDATE", b"DELETE", b"LOAD", b"CALL", b"CREATE", b"ALTER",
        b"EXECUTE",
    ];
    let word = first_word(sql);
    if WRITES.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        return true;
    }
    names_time_function(sql)
}

/// Whether `sql` is one INSERT or REPLACE (no `;`: the OK of a multi-statement text carries the
/// last statement's id, not the first's).
pub(crate) fn inserts(sql: &[u8]) -> bool {
    let word = first_word(sql);
    (word.eq_ignore_ascii_case(b"INSERT") || word.eq_ignore_ascii_case(b"REPLACE"))
        && !sql.contains(&b';')
}

/// The first word of a statement, after blanks, comments and opening parentheses.
fn first_word(sql: &[u8]) -> &[u8] {
    let mut i = 0;
    loop {
        match sql.get(i..) {
            Some([b' ' | b'\t' | b'\r' | b'\n' | b'(', ..]) => i += 1,
            Some([b'/', b'*', rest @ ..]) => match rest.windows(2).position(|w| w == b"*/") {
                Some(p) => i += 2 + p + 2,
                None => return &[],
            },
            Some([b'#', ..] | [b'-', b'-', b' ' | b'\t' | b'\n', ..]) => {
                match sql[i..].iter().position(|&b| b == b'\n') {
                    Some(p) => i += p + 1,
                    None => return &[],
                }
            }
            Some(rest) => {
                let n = rest
                    .iter()
                    .position(|b| !b.is_ascii_alphabetic())
                    .unwrap_or(rest.len());
                return &rest[..n];
            }
            None => return &[],
        }
    }
}

/// Whether `sql` names a function or keyword that reads the clock (a word that starts with one
/// of these; `NOW` only as a call). Words inside literals count too: a spare `SET` costs little.
fn names_time_function(sql: &[u8]) -> bool {
    const WORDS: [&[u8]; 7] = [
        b"CURRENT_TIME", // CURRENT_TIME, CURRENT_TIMESTAMP
        b"CURRENT_DATE",
        b"CURDATE",
        b"CURTIME",
        b"LOCALTIME", // LOCALTIME, LOCALTIMESTAMP
        b"UNIX_TIMESTAMP",
        b"UTC_", // UTC_DATE, UTC_TIME, UTC_TIMESTAMP
    ];
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    for (i, &b) in sql.iter().enumerate() {
        if !matches!(b | 0x20, b'c' | b'l' | b'u' | b'n') || (i > 0 && ident(sql[i - 1])) {
            continue;
        }
        let rest = &sql[i..];
        let starts = |w: &[u8]| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
        if WORDS.iter().any(|w| starts(w)) {
            return true;
        }
        if starts(b"NOW") {
            let after = rest[3..].iter().find(|b| !b.is_ascii_whitespace());
            if after == Some(&b'(') {
                return true;
            }
        }
    }
    false
}

/// COM_QUERY `SET timestamp=<seconds>.<microseconds>, insert_id=<id>` (either part may be
/// absent, not both), with an empty query-attribute block when the session negotiated
/// CLIENT_QUERY_ATTRIBUTES.
pub(crate) fn set_session(ts_us: Option<u64>, insert_id: Option<u64>, caps: Option<u32>) -> Bytes {
    let mut p = vec![com::QUERY];
    if caps.unwrap_or(0) & QUERY_ATTRIBUTES != 0 {
        p.extend_from_slice(&[0, 1]);
    }
    let mut sql = String::from("SET ");
    if let Some(t) = ts_us {
        sql += &format!("timestamp={}.{:06}", t / 1_000_000, t % 1_000_000);
    }
    if let Some(id) = insert_id {
        if ts_us.is_some() {
            sql += ", ";
        }
        sql += &format!("insert_id={id}");
    }
    p.extend_from_slice(sql.as_bytes());
    Bytes::from(p)
}

impl Planner {
    /// Before a captured command goes: set test's clock to its prod time when it may read it
    /// (`clock`: the statement's [`reads_clock`]) or when the last set is a second old, and
    /// `insert_id` to prod's generated id when it is one INSERT (`inserts`) prod's OK gave one.
    pub(super) fn clock_before(&mut self, rec: &CommandRecord, clock: bool, inserts: bool) {
        if self.clock_off {
            return;
        }
        let stale = self
            .clock_us
            .is_some_and(|t| rec.ts_us >= t.saturating_add(REFRESH_US));
        let ts = (self.cfg.prod_clock
            && rec.ts_us > 0
            && (clock || stale)
            && self.clock_us != Some(rec.ts_us))
        .then_some(rec.ts_us);
        let r = &rec.response;
        let insert_id = (self.cfg.prod_insert_id
            && inserts
            && r.status == ResponseStatus::Ok
            && r.affected > 0
            && r.last_insert_id > 0)
            .then_some(r.last_insert_id)
            // A write after a forced id it may not have used: clear it.
            .or((clock && self.insert_id_pending).then_some(0));
        if ts.is_none() && insert_id.is_none() {
            return;
        }
        self.outstanding.push_back(Outstanding::Clock);
        self.out.push_back(Action::Send(SendPlan {
            payload: set_session(ts, insert_id, self.capabilities),
            expects_response: true,
            pipelined: self.pipelined(rec),
            local_infile: None,
            origin: Origin::Synthetic(Synthetic::ProdClock),
        }));
        if ts.is_some() {
            self.clock_us = ts;
        }
        if let Some(id) = insert_id {
            self.insert_id_pending = id > 0;
        }
        self.clock_stats.sets += 1;
        self.clock_stats.insert_ids += u64::from(insert_id.is_some_and(|id| id > 0));
    }

    /// Test answered a `SET timestamp` with an error: the session stops setting it.
    pub(super) fn clock_answered(&mut self, status: ResponseStatus) {
        if status == ResponseStatus::Err {
            self.clock_stats.errors += 1;
            self.clock_off = true;
            self.clock_us = None;
            self.insert_id_pending = false;
        }
    }

    /// What the prod clock cost this session so far.
    pub fn clock_stats(&self) -> ClockStats {
        self.clock_stats
    }
}
