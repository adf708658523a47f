//! What the planner hands out: [`Action`]s with their plans, the per-command [`CmdInfo`], the
//! [`LoseReason`]s it decides, and the run's [`PlanConfig`]. Plain data, no logic.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use mrte_capture::event::{command_name, Response};
use serde::Serialize;

use crate::filter::{Filters, SkipReason};
use crate::target::{Identities, TargetDsn};

/// Why the planner could not plan a command for the test server (the executor adds its own
/// reasons: connection lost, target unavailable, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoseReason {
    /// A statement id never prepared in the capture (session open before capture, or a
    /// statement the client had closed).
    UnknownStatement,
    /// Preparing the statement again on the test server failed.
    PrepareFailed,
    /// A record without its raw payload whose execute parameters were not decoded.
    ParamsUnknown,
    /// The command's payload is not in the capture.
    PayloadUnavailable,
}

impl LoseReason {
    /// snake_case name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            LoseReason::UnknownStatement => "unknown_statement",
            LoseReason::PrepareFailed => "prepare_failed",
            LoseReason::ParamsUnknown => "params_unknown",
            LoseReason::PayloadUnavailable => "payload_unavailable",
        }
    }
}

/// Default `--deadlock-retries`.
pub const DEFAULT_DEADLOCK_RETRIES: u32 = 3;

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
    /// Attempts at sending again a transaction that test's server chose as a deadlock victim
    /// where prod's did not (`--deadlock-retries`; 0: none).
    pub deadlock_retries: u32,
    /// Set test's session clock to prod's before statements that may read it (`--prod-clock`;
    /// see the planner's `clock` module).
    pub prod_clock: bool,
    /// Set test's `insert_id` to prod's generated id before an INSERT prod's OK gave one
    /// (`--prod-insert-id`).
    pub prod_insert_id: bool,
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
            deadlock_retries: DEFAULT_DEADLOCK_RETRIES,
            prod_clock: true,
            prod_insert_id: true,
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
    pub example: crate::ExampleText,
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
    /// ROLLBACK: prod's server rolled the transaction back (deadlock victim), test's did not.
    MirrorRollback,
    /// A statement of a transaction sent again: test's server rolled it back (deadlock
    /// victim) before the command of this seq, prod's did not.
    DeadlockRetry {
        /// The captured command whose deadlock is retried.
        for_seq: u64,
    },
    /// `SET timestamp` / `insert_id`: test's session clock and next auto-increment id set to prod's
    /// before a statement that may read them.
    ProdClock,
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
    /// MariaDB extended capability flags to ask for (the connection masks them to the
    /// server's): exactly those prod's client and server negotiated, so the test server sends
    /// the same kind of responses (EXTENDED_METADATA: type info in column definitions) and
    /// accepts or refuses COM_STMT_BULK_EXECUTE as prod's did. The connection never asks
    /// PROGRESS (reports it would skip anyway) nor CACHE_METADATA (EXECUTE responses without
    /// column definitions could not be hashed). Mid-stream sessions:
    /// [`super::MIDSTREAM_MARIADB_CAPABILITIES`].
    pub mariadb_capabilities: u32,
}

impl ConnectPlan {
    /// The wire connection's parameters for this login to `target` (its TLS settings; the
    /// certificate's name is the target's host as given).
    pub fn connect_params(&self, target: &crate::target::TargetDsn) -> crate::wire::ConnectParams {
        let mut params = crate::wire::ConnectParams::new(
            &self.user,
            self.password.as_deref().unwrap_or(""),
            self.db.as_deref(),
        );
        if let Some(caps) = self.capabilities {
            params.capabilities = caps;
        }
        if let Some(c) = self.collation {
            params.collation = c;
        }
        params.mariadb_capabilities = self.mariadb_capabilities;
        params.ssl_mode = target.ssl_mode;
        params.ssl_ca = target.ssl_ca.clone();
        params.ssl_name = Some(target.host.clone());
        params
    }
}

impl fmt::Debug for ConnectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectPlan")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("capabilities", &self.capabilities)
            .field("collation", &self.collation)
            .field("mariadb_capabilities", &self.mariadb_capabilities)
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
    /// Close the test connection once its outstanding responses are read (after QUIT, or the
    /// captured session ended).
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
