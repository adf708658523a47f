//! Commit points from the wire (issue 11): which commands ended a transaction on prod, in what
//! global order their commits completed, and how many prod commits had completed before each
//! command was sent.
//!
//! Two sans-IO parts:
//! - [`TrxTracker`], one per session (owned by the decoder): follows SERVER_STATUS_IN_TRANS of
//!   the session's OK/EOF packets and classifies each command's response as the end of a
//!   transaction that changed data ([`TrxEnd::Commit`]: COMMIT, an implicit commit, XA COMMIT,
//!   an autocommit statement whose OK reports affected rows, autocommit DDL), a ROLLBACK
//!   ([`TrxEnd::Rollback`]: also a deadlock's rollback, COM_RESET_CONNECTION / COM_CHANGE_USER
//!   in a transaction), or a COMMIT of a transaction that wrote nothing ([`TrxEnd::ReadOnly`]).
//! - [`CommitClock`], one per capture (owned by the pipeline, which sees every session's records
//!   in capture-time order): numbers the [`TrxEnd::Commit`]s 1, 2, ... in the order they are
//!   handed out and gives every command its watermarks ([`CommitMarks::before_request`],
//!   [`CommitMarks::before_response`]): the number of commits whose response had ended before
//!   the command's request (response) time.
//!
//! What it does not do: wait for anything (that is the replay's `sync` gate), or parse SQL beyond
//! its first keyword. A transaction that only took locks (UPDATE matching no row) is not a
//! commit point. A session seen mid-stream starts with its transaction state unknown: its first
//! COMMIT is a commit point whatever it wrote.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::event::{Command, CommandRecord, Response, ResponseStatus};
use crate::mysql::consts::status;

/// How a command ended a transaction on prod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrxEnd {
    /// Its response ended a transaction that changed data: a commit point.
    Commit,
    /// It rolled a transaction back.
    Rollback,
    /// It committed a transaction that changed nothing (not a commit point).
    ReadOnly,
}

/// A command's commit-order marks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommitMarks {
    /// How this command ended a transaction on prod, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<TrxEnd>,
    /// Global order (1, 2, ...) of this commit among every session's commits; 0 unless
    /// `end == Some(Commit)`. Its prod commit time is the response's last packet.
    pub order: u64,
    /// Prod commits completed (response ended) before this command's request was sent.
    pub before_request: u64,
    /// Prod commits completed before this command's response began (at least
    /// `before_request`; more when the command waited on prod, e.g. for another
    /// transaction's row locks).
    pub before_response: u64,
}

/// ER_LOCK_DEADLOCK: the server rolled the transaction back.
pub const ER_LOCK_DEADLOCK: u16 = 1213;

/// The first SQL keyword, upper-cased (comments and spaces skipped), at most 16 bytes.
pub fn first_keyword(sql: &[u8]) -> ([u8; 16], usize) {
    let mut i = 0;
    // Most statements start with their keyword: no spaces nor comments to skip.
    if !sql.first().is_some_and(u8::is_ascii_alphabetic) {
        match skip_to_keyword(sql) {
            Some(at) => i = at,
            None => return ([0; 16], 0),
        }
    }
    let mut out = [0u8; 16];
    let rest = &sql[i.min(sql.len())..];
    let mut n = 0;
    for (o, &b) in out.iter_mut().zip(rest) {
        if !b.is_ascii_alphabetic() {
            break;
        }
        *o = b & !0x20;
        n += 1;
    }
    (out, n)
}

/// Where the first keyword starts, past spaces, `(` and comments; None in an unterminated
/// comment.
#[inline(never)]
fn skip_to_keyword(sql: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        while i < sql.len() && (sql[i].is_ascii_whitespace() || sql[i] == b'(') {
            i += 1;
        }
        let rest = &sql[i.min(sql.len())..];
        if rest.starts_with(b"/*") {
            i += rest[2..].windows(2).position(|w| w == b"*/")? + 4;
        } else if rest.starts_with(b"#") || rest.starts_with(b"-- ") {
            i += rest.iter().position(|&b| b == b'\n')? + 1;
        } else {
            return Some(i);
        }
    }
}

/// The first two keywords' start (for `XA COMMIT`, `ROLLBACK TO`, `COMMIT AND CHAIN`).
fn second_keyword(sql: &[u8]) -> ([u8; 16], usize) {
    let (_, n) = first_keyword(sql);
    if n == 0 {
        return ([0; 16], 0);
    }
    // Skip to just after the first keyword's occurrence.
    let upper: Vec<u8> = sql.iter().map(|b| b.to_ascii_uppercase()).collect();
    let (k, _) = first_keyword(sql);
    match upper.windows(n).position(|w| w == &k[..n]) {
        Some(p) => first_keyword(&sql[p + n..]),
        None => ([0; 16], 0),
    }
}

#[inline(always)]
fn is(k: &([u8; 16], usize), word: &[u8]) -> bool {
    &k.0[..k.1] == word
}

/// `word` (upper-case letters, at most 8) packed as [`keyword_code`] packs a keyword.
const fn kw(word: &[u8]) -> u64 {
    let mut code = 0u64;
    let mut i = 0;
    while i < word.len() {
        code |= (word[i] as u64) << (8 * i);
        i += 1;
    }
    code
}

/// The first keyword (as [`first_keyword`] finds it) packed into a `u64`, one upper-cased
/// letter a byte from the low end; 0 when it is empty, longer than 8 letters, or cannot be one
/// of the keywords [`TrxTracker::observe`] looks for (told by its first two letters: most
/// statements, SELECT, UPDATE, INSERT, DELETE, are not packed at all).
#[inline]
fn keyword_code(sql: &[u8]) -> u64 {
    let mut i = 0;
    if !sql.first().is_some_and(u8::is_ascii_alphabetic) {
        match skip_to_keyword(sql) {
            Some(at) => i = at,
            None => return 0,
        }
    }
    let rest = &sql[i.min(sql.len())..];
    // Only ASCII letters map to b'A'..=b'Z' once bit 5 is cleared.
    let c0 = rest.first().map_or(0, |b| b & !0x20);
    let c1 = rest.get(1).map_or(0, |b| b & !0x20);
    let may_be = matches!(
        (c0, c1),
        (b'X', b'A')
            | (b'R', b'O' | b'E')
            | (b'C', b'O' | b'R' | b'A')
            | (b'B', b'E')
            | (b'S', b'T')
            | (b'A', b'L')
            | (b'D', b'R')
            | (b'T', b'R')
            | (b'G', b'R')
    );
    if !may_be {
        return 0;
    }
    let mut code = 0u64;
    for (n, &b) in rest.iter().take(9).enumerate() {
        if !b.is_ascii_alphabetic() {
            break;
        }
        if n == 8 {
            return 0;
        }
        code |= u64::from(b & !0x20) << (8 * n);
    }
    code
}

/// Statements that change schema or data even when their OK reports no affected rows (DML
/// that reports none changed nothing).
fn is_write_keyword(k: u64) -> bool {
    const WRITES: [u64; 8] = [
        kw(b"CREATE"),
        kw(b"ALTER"),
        kw(b"DROP"),
        kw(b"RENAME"),
        kw(b"TRUNCATE"),
        kw(b"GRANT"),
        kw(b"REVOKE"),
        kw(b"CALL"),
    ];
    k != 0 && WRITES.contains(&k)
}

/// One session's transaction state, as its responses show it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrxTracker {
    /// SERVER_STATUS_IN_TRANS of the last status seen; None before the first (mid-stream).
    in_trans: Option<bool>,
    /// The open transaction changed data.
    wrote: bool,
}

impl TrxTracker {
    /// A tracker for a session whose start was seen (not in a transaction, autocommit unknown).
    pub fn new(midstream: bool) -> Self {
        Self {
            in_trans: (!midstream).then_some(false),
            wrote: false,
        }
    }

    /// The command `cmd` got `resp`; `prepared_sql` is the PREPARE text of an EXECUTE. Returns
    /// how the command ended a transaction, if it did.
    pub fn observe(
        &mut self,
        cmd: &Command,
        prepared_sql: Option<&[u8]>,
        resp: &Response,
    ) -> Option<TrxEnd> {
        let sql = match cmd {
            Command::Query { sql, .. } => Some(&sql[..]),
            Command::StmtExecute { .. } => prepared_sql,
            Command::ResetConnection | Command::ChangeUser { .. } => {
                if resp.status != ResponseStatus::Ok {
                    return None;
                }
                let was = self.in_trans == Some(true);
                let wrote = std::mem::take(&mut self.wrote);
                self.in_trans = Some(false);
                return (was && wrote).then_some(TrxEnd::Rollback);
            }
            _ => return None,
        };
        match resp.status {
            ResponseStatus::Ok => {}
            ResponseStatus::Err => {
                if resp.error_code == Some(ER_LOCK_DEADLOCK) && self.in_trans == Some(true) {
                    self.in_trans = Some(false);
                    self.wrote = false;
                    return Some(TrxEnd::Rollback);
                }
                return None;
            }
            ResponseStatus::None => return None,
        }
        let key = sql.map_or(0, keyword_code);
        let before = self.in_trans;
        let now = resp.server_status & status::IN_TRANS != 0;
        self.in_trans = Some(now);
        let changed = resp.affected > 0 || (resp.result_sets == 0 && is_write_keyword(key));
        let sql = sql.unwrap_or_default();
        if key == kw(b"XA") && is(&second_keyword(sql), b"COMMIT") {
            self.wrote = false;
            return Some(TrxEnd::Commit);
        }
        let rollback = key == kw(b"ROLLBACK") && !is(&second_keyword(sql), b"TO");
        let explicit_end = rollback || key == kw(b"COMMIT");
        let end = match before {
            Some(true) if !now || key == kw(b"BEGIN") || key == kw(b"START") => {
                let wrote = std::mem::take(&mut self.wrote) || (changed && !now);
                if rollback {
                    Some(TrxEnd::Rollback)
                } else if wrote {
                    Some(TrxEnd::Commit)
                } else {
                    Some(TrxEnd::ReadOnly)
                }
            }
            // Mid-stream: the transaction's start was not seen.
            None if explicit_end => {
                self.wrote = false;
                Some(if rollback {
                    TrxEnd::Rollback
                } else {
                    TrxEnd::Commit
                })
            }
            _ if !now && changed => Some(TrxEnd::Commit),
            _ => None,
        };
        if now && changed {
            self.wrote = true;
        }
        end
    }
}

/// How long commit times are remembered for watermarks (capture time, µs): a command sent
/// longer ago than this before its record is handed out gets a lower (safe) watermark.
const WINDOW_US: u64 = 60_000_000;
/// Most commit times remembered.
const MAX_REMEMBERED: usize = 1 << 20;

/// The global commit order of one capture: numbers commits and gives watermarks.
#[derive(Debug, Default)]
pub struct CommitClock {
    /// Commits numbered so far.
    commits: u64,
    /// Commits forgotten from the front of `times` (all older than every kept one).
    forgotten: u64,
    /// Commit times (prod response end, µs), sorted.
    times: VecDeque<u64>,
    /// Rollbacks seen.
    rollbacks: u64,
}

impl CommitClock {
    /// A clock with no commit yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits numbered so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Rollbacks seen so far.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks
    }

    /// Commits whose prod response ended before `t_us`.
    pub fn completed_before(&self, t_us: u64) -> u64 {
        // Records come in capture order: usually every remembered commit is older.
        if self.times.back().is_none_or(|&c| c < t_us) {
            return self.forgotten + self.times.len() as u64;
        }
        self.forgotten + self.times.partition_point(|&c| c < t_us) as u64
    }

    /// Mark `rec` (handed out in capture order): its watermarks, and its number if it commits.
    pub fn mark(&mut self, rec: &mut CommandRecord) {
        let m = &mut rec.commit;
        m.before_request = self.completed_before(rec.ts_us);
        m.before_response = rec
            .response
            .first_byte_us
            .map_or(m.before_request, |t| self.completed_before(t))
            .max(m.before_request);
        match m.end {
            Some(TrxEnd::Commit) => {
                self.commits += 1;
                m.order = self.commits;
                let t = rec.response.last_byte_us.unwrap_or(rec.ts_us);
                if self.times.back().is_none_or(|&c| c <= t) {
                    self.times.push_back(t);
                } else {
                    let at = self.times.partition_point(|&c| c <= t);
                    self.times.insert(at, t);
                }
                self.forget(t);
            }
            Some(TrxEnd::Rollback) => self.rollbacks += 1,
            _ => {}
        }
    }

    fn forget(&mut self, newest: u64) {
        while let Some(&old) = self.times.front() {
            if self.times.len() > MAX_REMEMBERED || old + WINDOW_US < newest {
                self.times.pop_front();
                self.forgotten += 1;
            } else {
                break;
            }
        }
    }
}

/// A [`CommitClock`] shared by the pipelines of one capture (one per RX queue): commits are
/// numbered in the order the pipelines hand them out, watermarks count by prod time.
#[derive(Clone, Debug, Default)]
pub struct SharedCommitClock(Arc<Padded>);

/// The lock on its own cache lines: it is taken once per command, and an allocation sharing
/// its line with one another thread writes (a ring's consumer side) made each take a miss.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(Mutex<CommitClock>);

impl SharedCommitClock {
    /// Mark `rec` (see [`CommitClock::mark`]).
    pub fn mark(&self, rec: &mut CommandRecord) {
        let Padded(m) = &*self.0;
        m.lock().unwrap_or_else(|e| e.into_inner()).mark(rec);
    }

    /// (commits, rollbacks) so far.
    pub fn counts(&self) -> (u64, u64) {
        let Padded(m) = &*self.0;
        let g = m.lock().unwrap_or_else(|e| e.into_inner());
        (g.commits, g.rollbacks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sql: &str) -> Command {
        Command::Query {
            sql: sql.as_bytes().to_vec().into(),
            attributes: Vec::new(),
        }
    }

    fn ok(status: u16, affected: u64) -> Response {
        Response {
            status: ResponseStatus::Ok,
            server_status: status,
            affected,
            ..Response::default()
        }
    }

    const AC: u16 = status::AUTOCOMMIT;
    const TX: u16 = status::AUTOCOMMIT | status::IN_TRANS;

    #[test]
    fn keywords_skip_comments() {
        assert!(is(&first_keyword(b"  /* x */ -- y\n commit"), b"COMMIT"));
        assert!(is(&first_keyword(b"# c\nXA COMMIT 'x'"), b"XA"));
        assert!(is(&second_keyword(b"xa commit 'x'"), b"COMMIT"));
        assert!(is(&second_keyword(b"ROLLBACK TO SAVEPOINT a"), b"TO"));
        assert_eq!(first_keyword(b"/* unterminated").1, 0);
        assert_eq!(first_keyword(b"").1, 0);
    }

    /// The packed keyword tells every keyword `observe` looks for exactly as `first_keyword`
    /// does, and nothing else matches.
    #[test]
    fn packed_keywords_match_first_keyword() {
        let words: [&[u8]; 13] = [
            b"CREATE",
            b"ALTER",
            b"DROP",
            b"RENAME",
            b"TRUNCATE",
            b"GRANT",
            b"REVOKE",
            b"CALL",
            b"XA",
            b"COMMIT",
            b"ROLLBACK",
            b"BEGIN",
            b"START",
        ];
        let texts: [&[u8]; 22] = [
            b"commit",
            b"  /* x */ -- y\n Commit work",
            b"COMMITTED",
            b"COMMI",
            b"xa commit 'x'",
            b"x",
            b"XAB",
            b"rollback to a",
            b"ROLLBACKS",
            b"(start transaction)",
            b"SELECT 1",
            b"select_1",
            b"UPDATE t SET a=1",
            b"truncate t",
            b"TRUNCATEX",
            b"call p()",
            b"CAL",
            b"/* unterminated",
            b"",
            b"b\xc5gin",
            b"beg1n",
            b"DROP\xffTABLE",
        ];
        for t in texts {
            let code = keyword_code(t);
            let k = first_keyword(t);
            for w in words {
                assert_eq!(code == kw(w), is(&k, w), "{:?} {:?}", t, w);
            }
            assert_eq!(is_write_keyword(code), words[..8].iter().any(|w| is(&k, w)));
        }
    }

    #[test]
    fn explicit_transactions() {
        let mut t = TrxTracker::new(false);
        assert_eq!(t.observe(&q("BEGIN"), None, &ok(TX, 0)), None);
        assert_eq!(t.observe(&q("SELECT 1"), None, &ok(TX, 0)), None);
        assert_eq!(
            t.observe(&q("COMMIT"), None, &ok(AC, 0)),
            Some(TrxEnd::ReadOnly)
        );
        assert_eq!(t.observe(&q("BEGIN"), None, &ok(TX, 0)), None);
        assert_eq!(t.observe(&q("UPDATE t SET a=1"), None, &ok(TX, 1)), None);
        assert_eq!(
            t.observe(&q("COMMIT"), None, &ok(AC, 0)),
            Some(TrxEnd::Commit)
        );
        assert_eq!(t.observe(&q("BEGIN"), None, &ok(TX, 0)), None);
        assert_eq!(t.observe(&q("DELETE FROM t"), None, &ok(TX, 3)), None);
        assert_eq!(
            t.observe(&q("rollback"), None, &ok(AC, 0)),
            Some(TrxEnd::Rollback)
        );
        // An implicit commit: BEGIN inside a transaction that wrote.
        t.observe(&q("BEGIN"), None, &ok(TX, 0));
        t.observe(&q("INSERT INTO t VALUES (1)"), None, &ok(TX, 1));
        assert_eq!(
            t.observe(&q("BEGIN"), None, &ok(TX, 0)),
            Some(TrxEnd::Commit)
        );
        // DDL inside a transaction commits it.
        t.observe(&q("UPDATE t SET a=2"), None, &ok(TX, 1));
        assert_eq!(
            t.observe(&q("CREATE TABLE u (a int)"), None, &ok(AC, 0)),
            Some(TrxEnd::Commit)
        );
    }

    #[test]
    fn autocommit_statements_and_deadlocks() {
        let mut t = TrxTracker::new(false);
        assert_eq!(t.observe(&q("SET @a=1"), None, &ok(AC, 0)), None);
        assert_eq!(t.observe(&q("SELECT 1"), None, &ok(AC, 0)), None);
        assert_eq!(
            t.observe(&q("UPDATE t SET a=1 WHERE 0"), None, &ok(AC, 0)),
            None
        );
        assert_eq!(
            t.observe(&q("INSERT INTO t VALUES (1)"), None, &ok(AC, 1)),
            Some(TrxEnd::Commit)
        );
        assert_eq!(
            t.observe(&q("CREATE TABLE x (a int)"), None, &ok(AC, 0)),
            Some(TrxEnd::Commit)
        );
        let exec = Command::StmtExecute {
            stmt_id: 1,
            flags: 0,
            params: Default::default(),
            params_unknown: false,
        };
        assert_eq!(
            t.observe(&exec, Some(b"UPDATE t SET a=?"), &ok(AC, 1)),
            Some(TrxEnd::Commit)
        );
        t.observe(&q("BEGIN"), None, &ok(TX, 0));
        t.observe(&q("UPDATE t SET a=1"), None, &ok(TX, 1));
        let dead = Response {
            status: ResponseStatus::Err,
            error_code: Some(ER_LOCK_DEADLOCK),
            ..Response::default()
        };
        assert_eq!(
            t.observe(&q("UPDATE t SET a=2"), None, &dead),
            Some(TrxEnd::Rollback)
        );
        // XA COMMIT always commits; a mid-stream session's first COMMIT does too.
        assert_eq!(
            t.observe(&q("XA COMMIT 'x'"), None, &ok(AC, 0)),
            Some(TrxEnd::Commit)
        );
        let mut m = TrxTracker::new(true);
        assert_eq!(
            m.observe(&q("COMMIT"), None, &ok(AC, 0)),
            Some(TrxEnd::Commit)
        );
        assert_eq!(m.observe(&q("COMMIT"), None, &ok(AC, 0)), None);
    }

    #[test]
    fn clock_numbers_commits_and_counts_those_before() {
        let mut c = CommitClock::new();
        let rec = |ts: u64, first: u64, last: u64, end: Option<TrxEnd>| CommandRecord {
            seq: 0,
            ts_us: ts,
            command: q("x"),
            response: Response {
                first_byte_us: Some(first),
                last_byte_us: Some(last),
                ..Response::default()
            },
            db: None,
            user: None,
            flags: Default::default(),
            raw: Default::default(),
            infile: None,
            commit: CommitMarks {
                end,
                ..CommitMarks::default()
            },
        };
        let mut a = rec(10, 20, 20, Some(TrxEnd::Commit));
        c.mark(&mut a);
        assert_eq!((a.commit.order, a.commit.before_request), (1, 0));
        // Sent before commit 1 ended, answered after it: waited for it.
        let mut b = rec(15, 25, 25, Some(TrxEnd::Commit));
        c.mark(&mut b);
        assert_eq!(b.commit.order, 2);
        assert_eq!((b.commit.before_request, b.commit.before_response), (0, 1));
        let mut r = rec(30, 31, 31, None);
        c.mark(&mut r);
        assert_eq!((r.commit.before_request, r.commit.before_response), (2, 2));
        let mut rb = rec(40, 41, 41, Some(TrxEnd::Rollback));
        c.mark(&mut rb);
        assert_eq!((rb.commit.order, c.rollbacks(), c.commits()), (0, 1, 2));
        // Far in the future: old times are forgotten but still counted.
        let mut z = rec(
            WINDOW_US * 3,
            WINDOW_US * 3,
            WINDOW_US * 3,
            Some(TrxEnd::Commit),
        );
        c.mark(&mut z);
        assert_eq!(z.commit.before_request, 2);
        assert_eq!(c.completed_before(WINDOW_US * 4), 3);
        assert_eq!(c.times.len(), 1);
    }
}
