//! The per-session replay planner, sans-IO: fed one captured session's events
//! ([`Planner::handle_event`]) and the test server's answers ([`Planner::handle_response`],
//! [`Planner::handle_connection_lost`]), it yields [`Action`]s from [`Planner::poll_action`]:
//! connect, send these bytes, re-authenticate, disconnect, skip or lose a command, by reason.
//! It never touches sockets, clocks or threads.
//!
//! # Rules
//! - Every command is planned. Payloads go as captured and are rewritten only where they must:
//!   statement ids (prod → test, learned from both PREPARE_OKs), the schema of COM_INIT_DB and of
//!   a leading `USE db` under `--db-map` ([`rewrite`]). COM_CHANGE_USER becomes a
//!   re-authentication under `--user-map`; the login uses the prod client's capabilities and
//!   exactly the MariaDB extended capabilities prod's client and server negotiated (mid-stream:
//!   [`MIDSTREAM_MARIADB_CAPABILITIES`]; see [`ConnectPlan::mariadb_capabilities`]).
//! - Skipped, counted by [`SkipReason`]: replication commands, COM_SHUTDOWN and
//!   COM_PROCESS_KILL (never sent), unknown command bytes, payloads over the capture's cap,
//!   sessions that were sampled out, TLS or failed logins, and what the filters and `--read-only`
//!   reject (the statement's reason also covers its EXECUTE, LONG_DATA, CLOSE...).
//! - Lost, counted by [`LoseReason`]: a statement id never seen prepared, a re-PREPARE that
//!   failed; commands planned on a connection the executor reports gone are handed back to it.
//! - Pipelining: a command captured before the previous command's prod response ended is marked
//!   `pipelined` (the executor sends it without reading outstanding responses first). Several
//!   sends may be outstanding; the planner waits ([`Planner::is_waiting`]) only when a command
//!   needs a test statement id that is not known yet. MariaDB's id -1 ("last prepared") is kept
//!   while the test connection's last PREPARE is the one it refers to, so PREPARE + EXECUTE(-1)
//!   pipelines as prod did.
//! - After a reconnect, a statement is prepared again from its remembered text before its next
//!   use (as the engine does); a PREPARE answer for a statement gone meanwhile is closed. A
//!   statement the client closed keeps its test id: using it again gets the test server's own
//!   answer to the same mistake (ids are never reused on a connection).
//! - LOAD DATA LOCAL INFILE goes with the file bytes prod's client sent
//!   ([`SendPlan::local_infile`]: the executor uploads them when the server asks, inside the
//!   response, so they ride with the send rather than as an action of their own).
//!
//! # Contract with the executor
//! Poll until `None`. Each [`Action::Send`] with `expects_response` gets exactly one
//! [`Planner::handle_response`], in send order, unless [`Planner::handle_connection_lost`] is
//! called first (it forgets every outstanding response and hands back the commands planned but
//! not polled). A failed connect, and a connection the executor closes itself (idle timeout), are
//! lost connections.
//! [`Action::ChangeUser`]'s reply is the executor's alone. When `poll_action` gives `None` and
//! [`Planner::is_waiting`], read a response; otherwise feed the next event.
//!
//! # What it does not do
//! Pacing, timeouts, reconnect backoff, prod processlist look-ups (the executor's; see
//! [`Planner::needs_identity`]), response comparison, counting. It has no timers, so it takes
//! no clock. `USE` is rewritten only as the first statement of a text; schema names inside
//! other SQL (`db.table`) are not. The login's collation comes from the captured
//! HandshakeResponse41 (`None` mid-stream: the executor's default).

mod action;
mod clock;
mod payload;
mod retry;
pub mod rewrite;
mod rules;
mod shape;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use mrte_capture::event::{
    CommandRecord, Login, PrepareOk, ResponseStatus, SessionEvent, SessionOpen,
};
use mrte_capture::fingerprint::Fingerprinter;

pub use crate::filter::SkipReason;
pub use action::{
    Action, ChangeUserPlan, CmdInfo, ConnectPlan, LoseReason, Origin, PlanConfig, SendPlan,
    Synthetic, DEFAULT_DEADLOCK_RETRIES,
};
pub use clock::ClockStats;
pub use retry::{RetryRefused, RetryStats};

use mrte_capture::mysql::consts::com;

use mrte_capture::mysql::consts::caps::{MARIADB_STMT_BULK_OPERATIONS, QUERY_ATTRIBUTES};

/// MariaDB extended capabilities asked for a session whose handshake was not captured:
/// STMT_BULK_OPERATIONS only. It changes no response byte and lets a captured
/// COM_STMT_BULK_EXECUTE run (prod's client sends one only when it was negotiated);
/// EXTENDED_METADATA is not guessed (it adds type info to column definitions, which the
/// metadata hash leaves out either way).
pub const MIDSTREAM_MARIADB_CAPABILITIES: u32 = MARIADB_STMT_BULK_OPERATIONS;
/// MariaDB's "last prepared statement" id.
const LAST_PREPARED: u32 = u32::MAX;

/// A prepared statement's test-side state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TestStmt {
    Known(u32),
    /// PREPARE sent, answer not read yet.
    Pending,
    /// Not prepared on this connection (lost, never sent, or the test PREPARE failed).
    Absent,
}

#[derive(Clone, Debug)]
struct Stmt {
    sql: Bytes,
    fingerprint: Arc<str>,
    fingerprint_id: u64,
    example: crate::ExampleText,
    skip: Option<SkipReason>,
    /// Its text may read the session's clock.
    clock: bool,
    /// Its text is one INSERT or REPLACE.
    inserts: bool,
    test: TestStmt,
    /// Bumped on each PREPARE of this prod id: answers for an older one are orphans.
    gen: u64,
}

/// An answer the planner waits for, in send order.
#[derive(Clone, Copy, Debug)]
enum Outstanding {
    Prepare {
        prod_id: Option<u32>,
        gen: u64,
        epoch: u64,
    },
    /// A statement sent again by a deadlock retry; `prod_err`: prod answered it with an error.
    Retry {
        prod_err: bool,
    },
    /// The planner's `SET` of prod's clock and insert id.
    Clock,
    Other,
}

/// The last captured PREPARE (what prod's -1 refers to).
#[derive(Clone, Copy, Debug)]
struct LastPrepare {
    seq: u64,
    prod_id: Option<u32>,
    skip: Option<SkipReason>,
}

#[derive(Debug)]
struct Queued {
    rec: Box<CommandRecord>,
    /// A re-PREPARE was already planned for it.
    reprepared: bool,
}

#[derive(Debug)]
enum Item {
    Login(Box<Login>),
    Command(Queued),
    Close,
}

/// Filter verdict and fingerprint of a statement text.
#[derive(Clone, Debug)]
struct SqlFacts {
    skip: Option<SkipReason>,
    fingerprint: Arc<str>,
    fingerprint_id: u64,
    /// It may read the session's clock ([`clock::reads_clock`]).
    clock: bool,
    /// It is one INSERT or REPLACE ([`clock::inserts`]).
    inserts: bool,
}

/// Statements longer than this are not memoised.
const MEMO_MAX_LEN: usize = 512;
/// Memo entries before it starts again.
const MEMO_MAX: usize = 4096;
/// Memo look-ups per judgement of whether the statement memo pays.
const MEMO_WINDOW: u32 = 1024;
/// Statements planned without the statement memo after a window with few hits.
const MEMO_REST: u32 = 16 * 1024;
/// Closed statements remembered before the list starts again.
const CLOSED_MAX: usize = 1024;

/// Whether the statement memo pays, judged per window of look-ups.
#[derive(Debug, Default)]
struct MemoUse {
    lookups: u32,
    hits: u32,
    rest: u32,
}

impl MemoUse {
    /// Use the memo for this statement? (Counts the look-up.)
    fn take(&mut self) -> bool {
        if self.rest > 0 {
            self.rest -= 1;
            return false;
        }
        self.lookups += 1;
        true
    }

    fn hit(&mut self) {
        self.hits += 1;
    }

    /// After a miss: true when the memo should be emptied and rested.
    fn judge(&mut self) -> bool {
        if self.lookups < MEMO_WINDOW {
            return false;
        }
        let rest = self.hits * 4 < self.lookups;
        self.lookups = 0;
        self.hits = 0;
        if rest {
            self.rest = MEMO_REST;
        }
        rest
    }
}

/// How a statement id resolves on the test connection.
enum Resolved {
    Id(u32),
    Wait,
    Reprepare(u32),
    Skip(SkipReason),
    Lose(LoseReason),
}

/// The planner of one captured session.
#[derive(Debug)]
pub struct Planner {
    cfg: Arc<PlanConfig>,
    user: Option<String>,
    db: Option<String>,
    midstream: bool,
    capabilities: Option<u32>,
    /// The prod session's negotiated MariaDB extended capabilities (None mid-stream).
    mariadb_capabilities: Option<u32>,
    collation: Option<u16>,
    skip_all: Option<SkipReason>,
    connected: bool,
    ever_connected: bool,
    /// Bumped whenever the test connection's statements are all gone.
    epoch: u64,
    next_gen: u64,
    stmts: HashMap<u32, Stmt>,
    /// Prod → test ids of statements closed on this connection: a client that uses one again
    /// gets the test server's own answer to the same mistake (ids are never reused).
    closed: HashMap<u32, u32>,
    last_prepare: Option<LastPrepare>,
    /// Seq of the captured PREPARE last sent on the test connection (synthetic ones clear it).
    test_last_prepare: Option<u64>,
    prev_response_end: Option<u64>,
    incoming: VecDeque<Item>,
    out: VecDeque<Action>,
    outstanding: VecDeque<Outstanding>,
    waiting: bool,
    fp: Fingerprinter,
    memo: rustc_hash::FxHashMap<Box<[u8]>, SqlFacts>,
    /// Facts per statement shape (or exact text, see `memo_by_shape`). It costs a hash and a
    /// copy of every new shape: it is used only while shapes repeat (at least one look-up in four hits over a window of `MEMO_WINDOW`),
    /// else rested for `MEMO_REST` statements, then tried again.
    memo_use: MemoUse,
    /// Key the memo by statement shape (no `--filter` / `--exclude` regex set), not exact text.
    memo_by_shape: bool,
    /// The memo key being looked up (reused buffer).
    memo_key: Vec<u8>,
    /// Each fingerprint's shared text and id, so a repeated query shape with new literals costs
    /// no MD5 and no allocation (bounded by `MEMO_MAX`, cleared when full).
    fps: rustc_hash::FxHashMap<Box<str>, (Arc<str>, u64)>,
    /// Facts of the command being planned (QUERY / PREPARE).
    facts: Option<SqlFacts>,
    /// Prod's open transaction as sent to test, for deadlock retries.
    trx: retry::TrxLog,
    /// A deadlock retry in progress: nothing else is planned until it is over.
    retry: Option<retry::Retry>,
    retry_stats: RetryStats,
    /// Test's session timestamp as last set (prod time, µs); `None`: the server's own clock.
    clock_us: Option<u64>,
    /// Test refused a `SET timestamp`: not tried again in this session.
    clock_off: bool,
    /// A forced `insert_id` was sent that the statement may not have used.
    insert_id_pending: bool,
    clock_stats: ClockStats,
}

impl Planner {
    /// A planner for the session `open`.
    pub fn new(cfg: Arc<PlanConfig>, open: &SessionOpen) -> Self {
        let skip_all = (!cfg.filters.session_sampled(&open.key)).then_some(SkipReason::SampledOut);
        let memo_by_shape = cfg.filters.filter.is_none() && cfg.filters.exclude.is_none();
        Self {
            cfg,
            user: None,
            db: None,
            midstream: open.midstream,
            capabilities: None,
            mariadb_capabilities: None,
            collation: None,
            skip_all,
            connected: false,
            ever_connected: false,
            epoch: 0,
            next_gen: 0,
            stmts: HashMap::new(),
            closed: HashMap::new(),
            last_prepare: None,
            test_last_prepare: None,
            prev_response_end: None,
            incoming: VecDeque::new(),
            out: VecDeque::new(),
            outstanding: VecDeque::new(),
            waiting: false,
            fp: Fingerprinter::default(),
            memo: rustc_hash::FxHashMap::default(),
            memo_use: MemoUse::default(),
            memo_by_shape,
            memo_key: Vec::new(),
            fps: rustc_hash::FxHashMap::default(),
            facts: None,
            trx: retry::TrxLog::new(open.midstream),
            retry: None,
            retry_stats: RetryStats::default(),
            clock_us: None,
            clock_off: false,
            insert_id_pending: false,
            clock_stats: ClockStats::default(),
        }
    }

    /// Feed the session's next event.
    pub fn handle_event(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Open(_) => {}
            SessionEvent::Login(l) if self.incoming.is_empty() && self.out.is_empty() => {
                self.on_login(&l)
            }
            SessionEvent::Login(l) => self.incoming.push_back(Item::Login(l)),
            SessionEvent::Command(rec) => self.handle_command(rec),
            SessionEvent::Close(_) => self.incoming.push_back(Item::Close),
        }
    }

    /// Feed the session's next command.
    pub fn handle_command(&mut self, rec: Box<CommandRecord>) {
        if self.incoming.is_empty() {
            self.absorb_identity(&rec);
        }
        self.incoming.push_back(Item::Command(Queued {
            rec,
            reprepared: false,
        }));
    }

    /// The test server's answer to the oldest outstanding send: its status and, for a
    /// PREPARE, its PREPARE_OK.
    pub fn handle_response(&mut self, status: ResponseStatus, prepare: Option<&PrepareOk>) {
        self.handle_answer(status, None, prepare);
    }

    /// [`Self::handle_response`] with the error code of an ERR answer.
    pub fn handle_answer(
        &mut self,
        status: ResponseStatus,
        error_code: Option<u16>,
        prepare: Option<&PrepareOk>,
    ) {
        self.waiting = false;
        let Some(o) = self.outstanding.pop_front() else {
            return;
        };
        let (prod_id, gen, epoch) = match o {
            Outstanding::Prepare {
                prod_id,
                gen,
                epoch,
            } => (prod_id, gen, epoch),
            Outstanding::Retry { prod_err } => {
                self.retry_answered(prod_err, status, error_code);
                return;
            }
            Outstanding::Clock => {
                self.clock_answered(status);
                return;
            }
            Outstanding::Other => {
                self.trx.answered(error_code);
                return;
            }
        };
        let test_id = prepare
            .filter(|_| status == ResponseStatus::Ok)
            .map(|p| p.stmt_id);
        if epoch != self.epoch {
            return;
        }
        let entry = prod_id.and_then(|id| self.stmts.get_mut(&id));
        match entry {
            Some(e) if e.gen == gen => {
                e.test = test_id.map_or(TestStmt::Absent, TestStmt::Known);
            }
            _ => {
                if let Some(t) = test_id {
                    self.out.push_back(rules::close_orphan(t));
                }
            }
        }
    }

    /// Prod's server rolled the last answered command's transaction back (ER_LOCK_DEADLOCK) and
    /// test's did not: roll test's back before anything else goes, so that what the client does
    /// next (often BEGIN, which would commit on test) finds the state prod had.
    pub fn mirror_rollback(&mut self) {
        if !self.connected {
            return;
        }
        // Answers come in send order: this send goes first of what is queued.
        let queued = self
            .out
            .iter()
            .filter(|a| matches!(a, Action::Send(s) if s.expects_response))
            .count();
        let at = self.outstanding.len().saturating_sub(queued);
        self.outstanding.insert(at, Outstanding::Other);
        self.out.push_front(Action::Send(SendPlan {
            payload: Bytes::from_static(b"\x03ROLLBACK"),
            expects_response: true,
            pipelined: false,
            local_infile: None,
            origin: Origin::Synthetic(Synthetic::MirrorRollback),
        }));
    }

    /// The test connection is gone (or a connect failed): outstanding answers are forgotten and
    /// test statements must be prepared again. Returns the captured commands already planned on
    /// it but not yet polled: they were not sent, their fate (lost, failed) is the executor's.
    pub fn handle_connection_lost(&mut self) -> Vec<Box<CmdInfo>> {
        self.waiting = false;
        self.drop_connection();
        let mut dropped: Vec<Box<CmdInfo>> = self.take_retry().into_iter().collect();
        for a in std::mem::take(&mut self.out) {
            match a {
                Action::Send(SendPlan {
                    origin: Origin::Captured(cmd),
                    ..
                })
                | Action::ChangeUser(ChangeUserPlan { cmd, .. }) => dropped.push(cmd),
                a @ (Action::Skip { .. } | Action::Lose { .. }) => self.out.push_back(a),
                _ => {}
            }
        }
        dropped
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.drive();
        self.out.pop_front()
    }

    /// The planner waits for the answer to an outstanding send before it can go on.
    pub fn is_waiting(&self) -> bool {
        self.waiting && self.out.is_empty()
    }

    /// Sends whose answers have not been handed back.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// The session was open before capture and its user or database is unknown: the executor
    /// may look it up (prod's processlist) and call [`Self::set_identity`] before polling.
    pub fn needs_identity(&self) -> bool {
        self.midstream && (self.user.is_none() || self.db.is_none())
    }

    /// User and database found for a session open before capture (missing ones stay unknown).
    pub fn set_identity(&mut self, user: Option<String>, db: Option<String>) {
        if self.user.is_none() {
            self.user = user;
        }
        if self.db.is_none() {
            self.db = db;
        }
    }

    fn drive(&mut self) {
        if self.retry.is_some() {
            self.drive_retry();
            return;
        }
        while self.out.is_empty() && !self.waiting {
            let Some(item) = self.incoming.pop_front() else {
                return;
            };
            match item {
                Item::Login(l) => self.on_login(&l),
                Item::Close => {
                    if self.connected {
                        self.out.push_back(Action::Disconnect);
                    }
                    self.drop_connection();
                }
                Item::Command(q) => {
                    if let Err(q) = self.plan(q) {
                        self.incoming.push_front(Item::Command(q));
                        self.waiting = true;
                    }
                }
            }
        }
    }

    fn drop_connection(&mut self) {
        self.connected = false;
        self.outstanding.clear();
        self.clock_us = None;
        self.insert_id_pending = false;
        self.trx.connection_lost();
        self.epoch += 1;
        self.test_last_prepare = None;
        self.closed.clear();
        for s in self.stmts.values_mut() {
            s.test = TestStmt::Absent;
        }
    }

    fn on_login(&mut self, l: &Login) {
        if l.user.is_some() {
            self.user = l.user.clone();
        }
        if l.db.is_some() {
            self.db = l.db.clone();
        }
        if !l.midstream {
            self.capabilities = Some(l.capabilities);
            self.mariadb_capabilities = Some(l.mariadb_capabilities);
        }
        if let Some(c) = l.collation {
            self.collation = Some(u16::from(c));
        }
        if self.skip_all == Some(SkipReason::SampledOut) {
            return;
        }
        if l.tls {
            self.skip_all = Some(SkipReason::Tls);
        } else if !l.ok && !l.midstream && l.error_code.is_some() {
            self.skip_all.get_or_insert(SkipReason::LoginFailed);
        }
    }

    /// Test user and password for a prod user.
    fn credentials(&self, user: Option<&str>) -> (String, Option<String>) {
        let (u, p) = self.cfg.identities.map_user(user, &self.cfg.target);
        (u.to_owned(), p.map(str::to_owned))
    }

    fn ensure_connected(&mut self) {
        if self.connected {
            return;
        }
        let (user, password) = self.credentials(self.user.as_deref());
        let db = match &self.db {
            Some(d) => Some(d.clone()),
            None if self.midstream => self.cfg.default_db.clone(),
            None => None,
        }
        .map(|d| self.cfg.identities.map_db(&d).to_owned());
        let plan = ConnectPlan {
            user,
            password,
            db,
            capabilities: self.capabilities,
            collation: self.collation,
            mariadb_capabilities: self
                .mariadb_capabilities
                .unwrap_or(MIDSTREAM_MARIADB_CAPABILITIES),
        };
        self.out.push_back(if self.ever_connected {
            Action::Reconnect(plan)
        } else {
            Action::Connect(plan)
        });
        self.connected = true;
        self.ever_connected = true;
    }
}
