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
//!   re-authentication under `--user-map`; the login uses the prod client's capabilities.
//! - Skipped, counted by [`SkipReason`]: replication commands, COM_SHUTDOWN and
//!   COM_PROCESS_KILL (never sent), unknown command bytes, payloads over the capture's cap,
//!   sessions that were sampled out, TLS or failed logins, and what the filters and `--read-only`
//!   reject (the statement's reason also covers its EXECUTE, LONG_DATA, CLOSE...).
//! - Lost, counted by [`LoseReason`]: a statement id never seen prepared, a re-PREPARE that failed,
//!   commands queued when the executor reports the connection gone.
//! - Pipelining: a command captured before the previous command's prod response ended is marked
//!   `pipelined` (the executor sends it without reading outstanding responses first). Several
//!   sends may be outstanding; the planner waits ([`Planner::is_waiting`]) only when a command
//!   needs a test statement id that is not known yet. MariaDB's id -1 ("last prepared") is kept
//!   while the test connection's last PREPARE is the one it refers to, so PREPARE + EXECUTE(-1)
//!   pipelines as prod did.
//! - After a reconnect, a statement is prepared again from its remembered text before its next
//!   use (as the engine does); a PREPARE answer for a statement gone meanwhile is closed.
//!
//! # Contract with the executor
//! Poll until `None`. Each [`Action::Send`] with `expects_response` gets exactly one
//! [`Planner::handle_response`], in send order, unless [`Planner::handle_connection_lost`] is
//! called first (it forgets every outstanding response). A failed connect is a lost connection.
//! [`Action::ChangeUser`]'s reply is the executor's alone. When `poll_action` gives `None` and
//! [`Planner::is_waiting`], read a response; otherwise feed the next event.
//!
//! # What it does not do
//! Pacing, timeouts, reconnect backoff, prod processlist look-ups (the executor's; see
//! [`Planner::needs_identity`]), response comparison, counting.

mod adapter;
pub mod rewrite;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use mrte_capture::event::{
    command_name, CommandRecord, Login, PrepareOk, Response, ResponseStatus, SessionEvent,
    SessionOpen,
};
use mrte_capture::fingerprint::{fingerprint_id, Fingerprinter};
use serde::Serialize;

use crate::classify::{classify_command_code, StatementClass};
use crate::filter::Filters;
pub use crate::filter::SkipReason;
use crate::target::{Identities, TargetDsn};

/// Command bytes the planner treats specially.
mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const SHUTDOWN: u8 = 0x08;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// CLIENT_QUERY_ATTRIBUTES.
const QUERY_ATTRIBUTES: u32 = 1 << 27;
/// MariaDB's "last prepared statement" id.
const LAST_PREPARED: u32 = u32::MAX;

/// Why a command could not be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoseReason {
    /// A statement id that was never prepared in the capture (session open before capture).
    UnknownStatement,
    /// Preparing the statement again on the test server failed.
    PrepareFailed,
    /// The execute's parameters were not decoded (adapter only: no raw payload).
    ParamsUnknown,
    /// The command's payload is not in the capture.
    PayloadUnavailable,
    /// The test connection broke.
    ConnectionLost,
    /// Connecting failed (network).
    ConnectFailed,
    /// The test server refused the login.
    ConnectRefused,
    /// Connecting timed out.
    ConnectTimeout,
    /// The test server is down and the executor is backing off.
    TargetUnavailable,
    /// The command timed out.
    Timeout,
    /// Replay was shut down.
    Shutdown,
}

impl LoseReason {
    /// snake_case name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            LoseReason::UnknownStatement => "unknown_statement",
            LoseReason::PrepareFailed => "prepare_failed",
            LoseReason::ParamsUnknown => "params_unknown",
            LoseReason::PayloadUnavailable => "payload_unavailable",
            LoseReason::ConnectionLost => "connection_lost",
            LoseReason::ConnectFailed => "connect_failed",
            LoseReason::ConnectRefused => "connect_refused",
            LoseReason::ConnectTimeout => "connect_timeout",
            LoseReason::TargetUnavailable => "target_unavailable",
            LoseReason::Timeout => "timeout",
            LoseReason::Shutdown => "shutdown",
        }
    }
}

/// What the planner needs from the run's configuration.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// `--user-map`, `--db-map`.
    pub identities: Identities,
    /// The test server (its user and password serve unmapped users).
    pub target: TargetDsn,
    /// Database of sessions open before capture when nothing else is known.
    pub default_db: Option<String>,
    /// Filters and safety.
    pub filters: Filters,
    /// Longest example statement kept, bytes.
    pub example_len: usize,
}

impl PlanConfig {
    /// No maps, no filters (dangerous statements skipped), the target's database as default.
    pub fn new(target: TargetDsn) -> Self {
        Self {
            identities: Identities::default(),
            default_db: target.db.clone(),
            target,
            filters: Filters::all(),
            example_len: 512,
        }
    }
}

/// One captured command, for the executor's outcome and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct CmdInfo {
    /// Index of the command in its session.
    pub seq: u64,
    /// Capture time of the request, µs since the epoch.
    pub ts_us: u64,
    /// Command byte.
    pub code: u8,
    /// Fingerprint (of the SQL, of the PREPARE text for statement commands, else the command name).
    pub fingerprint: Arc<str>,
    /// Fingerprint id.
    pub fingerprint_id: u64,
    /// The statement as captured, truncated.
    pub example: Arc<str>,
    /// Prod's response.
    pub prod: Response,
    /// Prod latency, µs.
    pub prod_us: Option<u64>,
    /// First command after a capture gap.
    pub after_gap: bool,
}

impl CmdInfo {
    /// `COM_*` name.
    pub fn name(&self) -> &'static str {
        command_name(self.code)
    }
}

/// Why the planner sends bytes no captured command asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Synthetic {
    /// PREPARE again (after a reconnect or a failed PREPARE) before the command of this seq.
    Reprepare {
        /// The captured command that needs it.
        for_seq: u64,
    },
    /// COM_STMT_CLOSE of a test statement no prod statement maps to any more.
    CloseOrphan,
}

/// Where a send comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// A captured command.
    Captured(Box<CmdInfo>),
    /// The planner's own.
    Synthetic(Synthetic),
}

/// Send one command payload.
#[derive(Clone, Debug, PartialEq)]
pub struct SendPlan {
    /// The payload, command byte first: as captured, rewritten only where it must be.
    pub payload: Bytes,
    /// The server answers it (false: QUIT, STMT_CLOSE, STMT_SEND_LONG_DATA).
    pub expects_response: bool,
    /// Prod's client sent it before the previous response ended: send without reading the
    /// outstanding responses first.
    pub pipelined: bool,
    /// The file to upload if the server asks for a LOCAL INFILE (prod client's bytes); `None`
    /// sends an empty file.
    pub local_infile: Option<Bytes>,
    /// Captured command or planner's own.
    pub origin: Origin,
}

/// Log in to the test server.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectPlan {
    /// Test user.
    pub user: String,
    /// Password (`None`: empty).
    pub password: Option<String>,
    /// Test database.
    pub db: Option<String>,
    /// The prod client's capability flags; `None` (session open before capture): defaults.
    pub capabilities: Option<u32>,
    /// The prod client's collation, when known.
    pub collation: Option<u16>,
}

impl fmt::Debug for ConnectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectPlan")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("capabilities", &self.capabilities)
            .field("collation", &self.collation)
            .finish()
    }
}

/// COM_CHANGE_USER: authenticate again as another user.
#[derive(Clone, PartialEq)]
pub struct ChangeUserPlan {
    /// Test user.
    pub user: String,
    /// Password (`None`: empty).
    pub password: Option<String>,
    /// Test database.
    pub db: Option<String>,
    /// The captured command.
    pub cmd: Box<CmdInfo>,
}

impl fmt::Debug for ChangeUserPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeUserPlan")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("cmd", &self.cmd)
            .finish()
    }
}

/// What the executor does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open the session's first test connection.
    Connect(ConnectPlan),
    /// Open it again after it was lost or closed.
    Reconnect(ConnectPlan),
    /// Send a payload.
    Send(SendPlan),
    /// Re-authenticate (COM_CHANGE_USER); needs no command outstanding.
    ChangeUser(ChangeUserPlan),
    /// Close the test connection (after QUIT, or the captured session ended).
    Disconnect,
    /// A captured command that is not replayed.
    Skip {
        /// Its seq.
        seq: u64,
        /// Its command byte.
        code: u8,
        /// Why.
        reason: SkipReason,
    },
    /// A captured command that could not be replayed.
    Lose {
        /// The command.
        cmd: Box<CmdInfo>,
        /// Why.
        reason: LoseReason,
    },
}

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
    example: Arc<str>,
    skip: Option<SkipReason>,
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
    /// Given by the caller; else rebuilt by the adapter.
    captured: Option<adapter::Captured>,
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
}

/// Statements longer than this are not memoised.
const MEMO_MAX_LEN: usize = 512;
/// Memo entries before it starts again.
const MEMO_MAX: usize = 4096;
/// Closed statements remembered before the list starts again.
const CLOSED_MAX: usize = 1024;

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
    memo: HashMap<Box<[u8]>, SqlFacts>,
    /// Facts of the command being planned (QUERY / PREPARE).
    facts: Option<SqlFacts>,
}

impl Planner {
    /// A planner for the session `open`.
    pub fn new(cfg: Arc<PlanConfig>, open: &SessionOpen) -> Self {
        let skip_all = (!cfg.filters.session_sampled(&open.key)).then_some(SkipReason::SampledOut);
        Self {
            cfg,
            user: None,
            db: None,
            midstream: open.midstream,
            capabilities: None,
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
            memo: HashMap::new(),
            facts: None,
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

    /// Feed the session's next command (its payload rebuilt from the decoded fields until the
    /// record carries the raw one).
    pub fn handle_command(&mut self, rec: Box<CommandRecord>) {
        self.queue(rec, None);
    }

    /// Feed the session's next command with its captured payload (command byte first) and, for
    /// a LOAD DATA LOCAL INFILE, the file bytes prod's client sent.
    pub fn handle_command_raw(
        &mut self,
        rec: Box<CommandRecord>,
        payload: Bytes,
        local_infile: Option<Bytes>,
    ) {
        self.queue(
            rec,
            Some(adapter::Captured {
                payload,
                local_infile,
            }),
        );
    }

    fn queue(&mut self, rec: Box<CommandRecord>, captured: Option<adapter::Captured>) {
        if self.incoming.is_empty() {
            self.absorb_identity(&rec);
        }
        self.incoming.push_back(Item::Command(Queued {
            rec,
            captured,
            reprepared: false,
        }));
    }

    /// The test server's answer to the oldest outstanding send: its status and, for a
    /// PREPARE, its PREPARE_OK.
    pub fn handle_response(&mut self, status: ResponseStatus, prepare: Option<&PrepareOk>) {
        self.waiting = false;
        let Some(o) = self.outstanding.pop_front() else {
            return;
        };
        let Outstanding::Prepare {
            prod_id,
            gen,
            epoch,
        } = o
        else {
            return;
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
                    self.out.push_back(close_orphan(t));
                }
            }
        }
    }

    /// The test connection is gone (or a connect failed): outstanding answers are forgotten,
    /// test statements must be prepared again, and commands already planned but not yet
    /// polled are lost for `reason`.
    pub fn handle_connection_lost(&mut self, reason: LoseReason) {
        self.waiting = false;
        self.drop_connection();
        let queued = std::mem::take(&mut self.out);
        for a in queued {
            match a {
                Action::Send(SendPlan {
                    origin: Origin::Captured(cmd),
                    ..
                })
                | Action::ChangeUser(ChangeUserPlan { cmd, .. }) => {
                    self.out.push_back(Action::Lose { cmd, reason })
                }
                a @ (Action::Skip { .. } | Action::Lose { .. }) => self.out.push_back(a),
                _ => {}
            }
        }
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
        };
        self.out.push_back(if self.ever_connected {
            Action::Reconnect(plan)
        } else {
            Action::Connect(plan)
        });
        self.connected = true;
        self.ever_connected = true;
    }

    fn sql_facts(&mut self, sql: &[u8]) -> SqlFacts {
        let memo = sql.len() <= MEMO_MAX_LEN;
        if memo {
            if let Some(f) = self.memo.get(sql) {
                return f.clone();
            }
        }
        let fingerprint: Arc<str> = Arc::from(self.fp.fingerprint(sql));
        let facts = SqlFacts {
            skip: self.cfg.filters.check_sql(sql),
            fingerprint_id: fingerprint_id(&fingerprint),
            fingerprint,
        };
        if memo {
            if self.memo.len() >= MEMO_MAX {
                self.memo.clear();
            }
            self.memo.insert(sql.into(), facts.clone());
        }
        facts
    }

    fn example(&self, sql: &[u8]) -> Arc<str> {
        let cut = &sql[..sql.len().min(self.cfg.example_len)];
        Arc::from(String::from_utf8_lossy(cut).as_ref())
    }

    /// Plan one command; `Err` gives it back when it must wait for an answer.
    /// The decoder's view of the session's user and database when the command was sent.
    fn absorb_identity(&mut self, rec: &CommandRecord) {
        if let Some(u) = &rec.user {
            if self.user.as_deref() != Some(&**u) {
                self.user = Some(u.to_string());
            }
        }
        if let Some(d) = &rec.db {
            if self.db.as_deref() != Some(&**d) {
                self.db = Some(d.to_string());
            }
        }
    }

    fn plan(&mut self, mut q: Queued) -> Result<(), Queued> {
        self.absorb_identity(&q.rec);
        self.facts = None;
        let rec = &q.rec;
        let code = rec.command.code();
        let caps = self.capabilities.unwrap_or(0);
        let skip = self.skip_all.or_else(|| self.skip_rule(rec, code));
        if let Some(reason) = skip {
            self.register_skipped_prepare(rec, reason);
            self.done(&q.rec);
            self.out.push_back(Action::Skip {
                seq: q.rec.seq,
                code,
                reason,
            });
            return Ok(());
        }
        let captured = match q
            .captured
            .take()
            .map_or_else(|| adapter::captured(rec, caps), Ok)
        {
            Ok(c) => c,
            Err(reason) => {
                let cmd = self.info(&q.rec, None);
                self.done(&q.rec);
                self.out.push_back(Action::Lose { cmd, reason });
                return Ok(());
            }
        };
        match code {
            com::STMT_PREPARE => {
                self.plan_prepare(&q.rec, captured.payload);
                Ok(())
            }
            com::STMT_EXECUTE
            | com::STMT_SEND_LONG_DATA
            | com::STMT_CLOSE
            | com::STMT_RESET
            | com::STMT_FETCH
            | com::STMT_BULK_EXECUTE => self.plan_stmt(q, captured.payload),
            com::CHANGE_USER => {
                self.plan_change_user(&q.rec);
                Ok(())
            }
            _ => {
                self.plan_plain(&q.rec, code, captured);
                Ok(())
            }
        }
    }

    /// Skip rules that need no statement look-up.
    fn skip_rule(&mut self, rec: &CommandRecord, code: u8) -> Option<SkipReason> {
        if rec.flags.too_large {
            return Some(SkipReason::TooLarge);
        }
        let f = &self.cfg.filters;
        if !matches!(code, com::QUIT | com::INIT_DB | com::STMT_CLOSE) {
            if let Some(r) = f.check_identity(self.db.as_deref(), self.user.as_deref()) {
                return Some(r);
            }
        }
        match code {
            com::QUERY | com::STMT_PREPARE => {
                let facts = self.sql_facts(rec.command.sql().unwrap_or_default());
                let skip = facts.skip;
                self.facts = Some(facts);
                skip
            }
            com::INIT_DB => {
                let schema = match &rec.command {
                    mrte_capture::event::Command::InitDb { schema } => Some(schema.as_str()),
                    _ => None,
                };
                f.check_identity(schema, self.user.as_deref())
            }
            com::QUIT if !self.connected => Some(SkipReason::NothingToSend),
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::REGISTER_SLAVE => {
                Some(SkipReason::Replication)
            }
            com::SHUTDOWN | com::PROCESS_KILL => Some(
                f.check_class(StatementClass::Dangerous)
                    .unwrap_or(SkipReason::Unsupported),
            ),
            com::CREATE_DB | com::DROP_DB => f.check_class(StatementClass::Write),
            c if command_name(c) == "COM_UNKNOWN" => Some(SkipReason::UnknownCommand),
            c => classify_command_code(c).and_then(|k| f.check_class(k)),
        }
    }

    /// A skipped PREPARE still names its statement: its EXECUTEs are skipped for its reason.
    fn register_skipped_prepare(&mut self, rec: &CommandRecord, reason: SkipReason) {
        if rec.command.code() != com::STMT_PREPARE {
            return;
        }
        let prod_id = rec.response.prepare_ok.as_ref().map(|p| p.stmt_id);
        self.last_prepare = Some(LastPrepare {
            seq: rec.seq,
            prod_id,
            skip: Some(reason),
        });
        if let Some(id) = prod_id {
            let sql = rec.command.sql().unwrap_or_default();
            let facts = self.sql_facts(sql);
            let example = self.example(sql);
            self.next_gen += 1;
            self.stmts.insert(
                id,
                Stmt {
                    sql: Bytes::copy_from_slice(sql),
                    fingerprint: facts.fingerprint,
                    fingerprint_id: facts.fingerprint_id,
                    example,
                    skip: Some(reason),
                    test: TestStmt::Absent,
                    gen: self.next_gen,
                },
            );
        }
    }

    /// Bookkeeping once a captured command is planned (whatever the plan).
    fn done(&mut self, rec: &CommandRecord) {
        if let Some(end) = rec.response.last_byte_us {
            self.prev_response_end = Some(self.prev_response_end.map_or(end, |e| e.max(end)));
        }
    }

    fn pipelined(&self, rec: &CommandRecord) -> bool {
        self.prev_response_end.is_some_and(|end| rec.ts_us < end)
    }

    /// The executor's view of a captured command; `stmt` gives statement commands the
    /// PREPARE's fingerprint.
    fn info(&mut self, rec: &CommandRecord, stmt: Option<u32>) -> Box<CmdInfo> {
        let (fingerprint, fingerprint_id, example) = match rec.command.sql() {
            Some(sql) if rec.command.code() == com::QUERY => {
                let f = match self.facts.take() {
                    Some(f) => f,
                    None => self.sql_facts(sql),
                };
                (f.fingerprint, f.fingerprint_id, self.example(sql))
            }
            Some(sql) => {
                let name = "COM_STMT_PREPARE";
                (Arc::from(name), fingerprint_id(name), self.example(sql))
            }
            None => match stmt.and_then(|id| self.stmts.get(&id)) {
                Some(s) => (s.fingerprint.clone(), s.fingerprint_id, s.example.clone()),
                None => {
                    let name = rec.command.name();
                    (Arc::from(name), fingerprint_id(name), Arc::from(name))
                }
            },
        };
        Box::new(CmdInfo {
            seq: rec.seq,
            ts_us: rec.ts_us,
            code: rec.command.code(),
            fingerprint,
            fingerprint_id,
            example,
            prod: rec.response.clone(),
            prod_us: rec.prod_us(),
            after_gap: rec.flags.after_gap,
        })
    }

    fn send(
        &mut self,
        rec: &CommandRecord,
        payload: Bytes,
        stmt: Option<u32>,
        infile: Option<Bytes>,
    ) {
        let code = rec.command.code();
        let expects_response =
            !matches!(code, com::QUIT | com::STMT_CLOSE | com::STMT_SEND_LONG_DATA);
        if expects_response {
            self.outstanding.push_back(Outstanding::Other);
        }
        let origin = Origin::Captured(self.info(rec, stmt));
        let pipelined = self.pipelined(rec);
        self.done(rec);
        self.out.push_back(Action::Send(SendPlan {
            payload,
            expects_response,
            pipelined,
            local_infile: infile,
            origin,
        }));
    }

    fn plan_plain(&mut self, rec: &CommandRecord, code: u8, captured: adapter::Captured) {
        let ids = &self.cfg.identities;
        let mut payload = captured.payload;
        match code {
            com::INIT_DB => {
                if let Some(p) = rewrite::map_init_db(&payload, &ids.dbs) {
                    payload = p;
                }
            }
            com::QUERY => {
                if let Some(p) = rewrite::map_use(
                    &payload,
                    query_sql_at(&payload, self.capabilities),
                    &ids.dbs,
                ) {
                    payload = p;
                }
            }
            _ => {}
        }
        let infile = rec
            .response
            .local_infile
            .then_some(captured.local_infile)
            .flatten();
        self.ensure_connected();
        self.send(rec, payload, None, infile);
        match code {
            com::QUIT => {
                self.out.push_back(Action::Disconnect);
                self.drop_connection();
            }
            com::RESET_CONNECTION if rec.response.status != ResponseStatus::Err => {
                self.forget_statements()
            }
            com::INIT_DB if rec.response.status != ResponseStatus::Err => {
                if let mrte_capture::event::Command::InitDb { schema } = &rec.command {
                    self.db = Some(schema.clone());
                }
            }
            _ => {}
        }
    }

    fn plan_change_user(&mut self, rec: &CommandRecord) {
        let mrte_capture::event::Command::ChangeUser { user, db, .. } = &rec.command else {
            return;
        };
        let (tu, tp) = self.credentials(Some(user));
        let tdb = db
            .as_deref()
            .map(|d| self.cfg.identities.map_db(d).to_owned());
        self.ensure_connected();
        let cmd = self.info(rec, None);
        self.done(rec);
        self.out.push_back(Action::ChangeUser(ChangeUserPlan {
            user: tu,
            password: tp,
            db: tdb,
            cmd,
        }));
        if rec.response.status != ResponseStatus::Err {
            self.user = Some(user.clone());
            self.db = db.clone();
        }
        // The test connection's statements are gone whatever the answer.
        self.forget_statements();
    }

    /// Both sides dropped every prepared statement (RESET_CONNECTION, CHANGE_USER).
    fn forget_statements(&mut self) {
        self.stmts.clear();
        self.closed.clear();
        self.last_prepare = None;
        self.test_last_prepare = None;
        self.epoch += 1;
    }

    fn plan_prepare(&mut self, rec: &CommandRecord, payload: Bytes) {
        let prod_id = rec.response.prepare_ok.as_ref().map(|p| p.stmt_id);
        let sql = Bytes::copy_from_slice(rec.command.sql().unwrap_or_default());
        let facts = match self.facts.take() {
            Some(f) => f,
            None => self.sql_facts(&sql),
        };
        let example = self.example(&sql);
        self.ensure_connected();
        if let Some(id) = prod_id {
            if let Some(TestStmt::Known(old)) = self.stmts.get(&id).map(|s| s.test) {
                self.out.push_back(close_orphan(old));
            }
            self.next_gen += 1;
            self.stmts.insert(
                id,
                Stmt {
                    sql,
                    fingerprint: facts.fingerprint,
                    fingerprint_id: facts.fingerprint_id,
                    example,
                    skip: None,
                    test: TestStmt::Pending,
                    gen: self.next_gen,
                },
            );
        }
        self.last_prepare = Some(LastPrepare {
            seq: rec.seq,
            prod_id,
            skip: None,
        });
        self.test_last_prepare = Some(rec.seq);
        self.send(rec, payload, None, None);
        // `send` queued an Other; make it this PREPARE's.
        if let Some(o) = self.outstanding.back_mut() {
            *o = Outstanding::Prepare {
                prod_id,
                gen: self.next_gen,
                epoch: self.epoch,
            };
        }
    }

    fn resolve(&self, prod_id: u32) -> Resolved {
        let prod_id = if prod_id == LAST_PREPARED {
            match self.last_prepare {
                None => return Resolved::Lose(LoseReason::UnknownStatement),
                Some(p) => {
                    if let Some(r) = p.skip {
                        return Resolved::Skip(r);
                    }
                    if self.connected && self.test_last_prepare == Some(p.seq) {
                        return Resolved::Id(LAST_PREPARED);
                    }
                    match p.prod_id {
                        Some(id) => id,
                        None => return Resolved::Lose(LoseReason::UnknownStatement),
                    }
                }
            }
        } else {
            prod_id
        };
        let Some(s) = self.stmts.get(&prod_id) else {
            return match self.closed.get(&prod_id) {
                Some(&t) if self.connected => Resolved::Id(t),
                _ => Resolved::Lose(LoseReason::UnknownStatement),
            };
        };
        if let Some(r) = s.skip {
            return Resolved::Skip(r);
        }
        match s.test {
            TestStmt::Known(t) if self.connected => Resolved::Id(t),
            TestStmt::Pending if self.connected && !self.outstanding.is_empty() => Resolved::Wait,
            _ => Resolved::Reprepare(prod_id),
        }
    }

    fn plan_stmt(&mut self, mut q: Queued, payload: Bytes) -> Result<(), Queued> {
        let code = q.rec.command.code();
        let Some(prod_id) = rewrite::stmt_id(&payload) else {
            let cmd = self.info(&q.rec, None);
            self.done(&q.rec);
            self.out.push_back(Action::Lose {
                cmd,
                reason: LoseReason::PayloadUnavailable,
            });
            return Ok(());
        };
        let resolved = self.resolve(prod_id);
        let stmt_key = if prod_id == LAST_PREPARED {
            self.last_prepare.and_then(|p| p.prod_id)
        } else {
            Some(prod_id)
        };
        match resolved {
            Resolved::Wait => Err(q),
            Resolved::Skip(reason) => {
                if code == com::STMT_CLOSE {
                    if let Some(k) = stmt_key {
                        self.stmts.remove(&k);
                    }
                }
                self.done(&q.rec);
                self.out.push_back(Action::Skip {
                    seq: q.rec.seq,
                    code,
                    reason,
                });
                Ok(())
            }
            Resolved::Lose(reason) => {
                let cmd = self.info(&q.rec, None);
                self.done(&q.rec);
                self.out.push_back(Action::Lose { cmd, reason });
                Ok(())
            }
            Resolved::Reprepare(_) if code == com::STMT_CLOSE => {
                if let Some(k) = stmt_key {
                    self.stmts.remove(&k);
                }
                self.done(&q.rec);
                self.out.push_back(Action::Skip {
                    seq: q.rec.seq,
                    code,
                    reason: SkipReason::NothingToSend,
                });
                Ok(())
            }
            Resolved::Reprepare(id) if q.reprepared => {
                let cmd = self.info(&q.rec, Some(id));
                self.done(&q.rec);
                self.out.push_back(Action::Lose {
                    cmd,
                    reason: LoseReason::PrepareFailed,
                });
                Ok(())
            }
            Resolved::Reprepare(id) => {
                self.ensure_connected();
                let pipelined = self.pipelined(&q.rec);
                let Some(s) = self.stmts.get_mut(&id) else {
                    return Ok(());
                };
                s.test = TestStmt::Pending;
                let mut p = Vec::with_capacity(1 + s.sql.len());
                p.push(com::STMT_PREPARE);
                p.extend_from_slice(&s.sql);
                let gen = s.gen;
                self.outstanding.push_back(Outstanding::Prepare {
                    prod_id: Some(id),
                    gen,
                    epoch: self.epoch,
                });
                self.test_last_prepare = None;
                self.out.push_back(Action::Send(SendPlan {
                    payload: Bytes::from(p),
                    expects_response: true,
                    pipelined,
                    local_infile: None,
                    origin: Origin::Synthetic(Synthetic::Reprepare { for_seq: q.rec.seq }),
                }));
                q.reprepared = true;
                Err(q)
            }
            Resolved::Id(test_id) => {
                let Some(payload) = rewrite::with_stmt_id(&payload, test_id) else {
                    return Ok(());
                };
                let rec = q.rec;
                self.send(&rec, payload, stmt_key, None);
                if code == com::STMT_CLOSE {
                    if let Some(k) = stmt_key {
                        if let Some(TestStmt::Known(t)) = self.stmts.remove(&k).map(|s| s.test) {
                            if self.closed.len() >= CLOSED_MAX {
                                self.closed.clear();
                            }
                            self.closed.insert(k, t);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Where the SQL text starts in a COM_QUERY payload (after query attributes, if negotiated).
fn query_sql_at(payload: &[u8], caps: Option<u32>) -> usize {
    if caps.unwrap_or(0) & QUERY_ATTRIBUTES == 0 {
        return 1;
    }
    // With attributes the text is the tail; the decoder's text is what the adapter appended.
    // ADAPTER: the rebuilt payload ends with the SQL; find it by parsing the attribute block.
    attr_block_end(payload).unwrap_or(payload.len())
}

/// End of the query-attribute block of a COM_QUERY payload.
fn attr_block_end(payload: &[u8]) -> Option<usize> {
    use mrte_capture::mysql::value::{read_value, Reader};
    let mut r = Reader::new(payload.get(1..)?);
    let n = r.lenenc_int("count").ok()?;
    r.lenenc_int("sets").ok()?;
    if n > 0 {
        let n = usize::try_from(n).ok().filter(|&n| n <= payload.len())?;
        let bitmap = r.take(n.div_ceil(8), "bitmap").ok()?.to_vec();
        if r.u8("bound").ok()? != 1 {
            return None;
        }
        let mut meta = Vec::with_capacity(n);
        for _ in 0..n {
            let ty = r.u8("type").ok()?;
            let fl = r.u8("flags").ok()?;
            r.lenenc_bytes("name").ok()?;
            meta.push((ty, fl & 0x80 != 0));
        }
        for (i, (ty, unsigned)) in meta.into_iter().enumerate() {
            if bitmap[i / 8] & (1 << (i % 8)) == 0 {
                read_value(&mut r, ty, unsigned).ok()?;
            }
        }
    }
    Some(payload.len() - r.remaining())
}

fn close_orphan(test_id: u32) -> Action {
    let mut p = vec![com::STMT_CLOSE];
    p.extend_from_slice(&test_id.to_le_bytes());
    Action::Send(SendPlan {
        payload: Bytes::from(p),
        expects_response: false,
        pipelined: true,
        local_infile: None,
        origin: Origin::Synthetic(Synthetic::CloseOrphan),
    })
}
