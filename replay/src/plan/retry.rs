//! Retrying a transaction that test's server chose as a deadlock victim where prod's did not.
//!
//! [`TrxLog`] keeps what was sent on the test connection since prod's transaction began, as
//! prod's responses show it (SERVER_STATUS_IN_TRANS). When test answers a captured command with
//! ER_LOCK_DEADLOCK and prod did not, test's server has rolled the whole transaction back; prod's
//! committed it. [`Planner::retry_deadlocked`] then sends the transaction's earlier statements
//! again, one at a time, and the command itself last (its answer is the command's), so that test
//! ends where prod ended. A statement of the retry that test fails where prod did not starts
//! the retry over while attempts are left (`PlanConfig::deadlock_retries`), else the command
//! goes alone.
//!
//! What it does not do: retry a transaction it cannot send again whole ([`RetryRefused`]: its
//! start was not seen, a command of it was skipped, lost or cannot be repeated, the test
//! connection was lost meanwhile, it outgrew the log), retry lock wait timeouts (1205 rolls back
//! the statement only), or compare the answers of the statements sent again.

use bytes::Bytes;
use mrte_capture::commit::ER_LOCK_DEADLOCK;
use mrte_capture::event::{Response, ResponseStatus};
use mrte_capture::mysql::consts::{com, status};
use serde::Serialize;

use super::{Action, CmdInfo, Origin, Outstanding, Planner, SendPlan, Synthetic};

/// Most statements kept for one transaction.
const MAX_ENTRIES: usize = 512;
/// Most payload bytes kept for one transaction.
const MAX_BYTES: usize = 4 << 20;
/// MariaDB's "last prepared statement" id.
const LAST_PREPARED: [u8; 4] = [0xff; 4];

/// Why a test-only deadlock was not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryRefused {
    /// `--deadlock-retries 0`.
    Disabled,
    /// Prod was not in a transaction and the command cannot go again alone.
    NotInTransaction,
    /// The session was captured mid-stream inside this transaction: its start is unknown.
    StartUnseen,
    /// A command of the transaction was skipped or lost, or cannot be sent twice (LOCAL
    /// INFILE, long data, cursors, statement close, MariaDB's id -1, a session reset).
    Incomplete,
    /// The test connection was lost during the transaction.
    ConnectionLost,
    /// The transaction outgrew the log.
    TooLarge,
    /// Attempts used up.
    Exhausted,
    /// Other sends were outstanding or planned behind the command (pipelining).
    Busy,
    /// Prod answered the command with another error (a lock wait timeout rolls back the
    /// statement only): sending it again could do on test what prod never did.
    ProdError,
}

impl RetryRefused {
    /// Snake-case name, for counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::NotInTransaction => "not_in_transaction",
            Self::StartUnseen => "start_unseen",
            Self::Incomplete => "incomplete",
            Self::ConnectionLost => "connection_lost",
            Self::TooLarge => "too_large",
            Self::Exhausted => "exhausted",
            Self::Busy => "busy",
            Self::ProdError => "prod_error",
        }
    }
}

/// Counts of one session's retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Transactions retried (each victim command once, however many attempts).
    pub transactions: u64,
    /// Attempts started (a retry that deadlocks again starts another).
    pub attempts: u64,
    /// Statements sent again before the victim command.
    pub statements: u64,
    /// Retries whose statements kept failing on test: the victim command went alone.
    pub abandoned: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    payload: Bytes,
    /// Prod answered it with an error (the same on test does not break a retry).
    prod_err: bool,
}

/// One session's open transaction on prod, as sent to test.
#[derive(Debug)]
pub(super) struct TrxLog {
    entries: Vec<Entry>,
    bytes: usize,
    /// Prod is in a transaction.
    open: bool,
    /// A response outside any transaction was seen (false mid-stream until one is).
    start_known: bool,
    /// Why this transaction cannot be sent again.
    refused: Option<RetryRefused>,
    /// Retry attempts made in this transaction.
    attempts: u32,
}

/// A retry in progress.
#[derive(Debug)]
pub(super) struct Retry {
    /// Next entry to send again.
    next: usize,
    cmd: Box<CmdInfo>,
}

/// How a command may go again in a retry.
enum Kind {
    Keep,
    Ignore,
    Unrepeatable,
}

fn kind(code: u8, payload: &[u8], infile: bool) -> Kind {
    match code {
        com::QUERY if !infile => Kind::Keep,
        com::INIT_DB => Kind::Keep,
        com::STMT_EXECUTE | com::STMT_BULK_EXECUTE | com::STMT_RESET
            if payload.get(1..5) != Some(&LAST_PREPARED) =>
        {
            Kind::Keep
        }
        com::STMT_PREPARE | com::PING | com::STATISTICS | com::FIELD_LIST | com::SET_OPTION => {
            Kind::Ignore
        }
        _ => Kind::Unrepeatable,
    }
}

impl TrxLog {
    pub(super) fn new(midstream: bool) -> Self {
        Self {
            entries: Vec::new(),
            bytes: 0,
            open: false,
            start_known: !midstream,
            refused: None,
            attempts: 0,
        }
    }

    fn reset(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.open = false;
        self.refused = None;
        self.attempts = 0;
    }

    /// A captured command was planned: `sent` is the payload that goes to test (`None`:
    /// skipped or lost); `infile` it uploads a LOCAL INFILE.
    pub(super) fn observe(
        &mut self,
        seq: u64,
        code: u8,
        sent: Option<&Bytes>,
        infile: bool,
        prod: &Response,
    ) {
        let in_trans = match prod.status {
            ResponseStatus::Ok => Some(prod.server_status & status::IN_TRANS != 0),
            ResponseStatus::Err if prod.error_code == Some(ER_LOCK_DEADLOCK) => Some(false),
            // An error, or no response: prod's transaction state did not change.
            _ => None,
        };
        match in_trans {
            Some(false) => {
                // Outside a transaction: the command alone may go again (an autocommit
                // statement that test chose as a deadlock victim).
                self.reset();
                self.start_known = true;
            }
            Some(true) if !self.open => {
                self.reset();
                self.open = true;
                if !self.start_known {
                    self.refused = Some(RetryRefused::StartUnseen);
                }
            }
            None if !self.open => return,
            _ => {}
        }
        if self.refused.is_some() {
            return;
        }
        let Some(payload) = sent else {
            if self.open {
                self.refuse(RetryRefused::Incomplete);
            }
            return;
        };
        match kind(code, payload, infile) {
            Kind::Keep => {
                if self.entries.len() >= MAX_ENTRIES || self.bytes + payload.len() > MAX_BYTES {
                    self.refuse(RetryRefused::TooLarge);
                    return;
                }
                self.bytes += payload.len();
                self.entries.push(Entry {
                    seq,
                    payload: payload.clone(),
                    prod_err: prod.status == ResponseStatus::Err,
                });
            }
            Kind::Ignore => {}
            Kind::Unrepeatable if self.open => self.refuse(RetryRefused::Incomplete),
            Kind::Unrepeatable => {}
        }
    }

    fn refuse(&mut self, why: RetryRefused) {
        self.refused = Some(why);
        self.entries.clear();
        self.bytes = 0;
    }

    /// Test answered a send with something other than a deadlock: an autocommit statement
    /// kept alone is let go (its payload pins its capture buffer while the session idles).
    pub(super) fn answered(&mut self, code: Option<u16>) {
        if !self.open && code != Some(ER_LOCK_DEADLOCK) && !self.entries.is_empty() {
            self.entries.clear();
            self.bytes = 0;
        }
    }

    /// Statements kept.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.entries.len()
    }

    /// The test connection is gone, and its transaction with it.
    pub(super) fn connection_lost(&mut self) {
        if self.open || !self.entries.is_empty() {
            self.refuse(RetryRefused::ConnectionLost);
        }
    }

    /// May the transaction whose last statement is `seq` be sent again?
    fn check(&self, seq: u64, max_attempts: u32) -> Result<(), RetryRefused> {
        if max_attempts == 0 {
            return Err(RetryRefused::Disabled);
        }
        if let Some(why) = self.refused {
            return Err(why);
        }
        if !self.open && self.entries.len() != 1 {
            return Err(RetryRefused::NotInTransaction);
        }
        if self.entries.last().map(|e| e.seq) != Some(seq) {
            return Err(RetryRefused::Busy);
        }
        if self.attempts >= max_attempts {
            return Err(RetryRefused::Exhausted);
        }
        Ok(())
    }
}

impl Planner {
    /// Test's server rolled back the transaction of `cmd` (ER_LOCK_DEADLOCK) where prod's did
    /// not: send the transaction again, `cmd` last (its answer comes back to the executor as
    /// a captured command's). Hands `cmd` back, with why, when it cannot be retried; call it
    /// only when nothing else of the session is outstanding.
    pub fn retry_deadlocked(
        &mut self,
        cmd: Box<CmdInfo>,
    ) -> Result<(), (Box<CmdInfo>, RetryRefused)> {
        let busy = !self.connected
            || self.retry.is_some()
            || !self.out.is_empty()
            || !self.outstanding.is_empty()
            || !self.incoming.is_empty();
        if busy {
            return Err((cmd, RetryRefused::Busy));
        }
        if cmd.prod.status == ResponseStatus::Err && self.cfg.deadlock_retries > 0 {
            return Err((cmd, RetryRefused::ProdError));
        }
        if let Err(why) = self.trx.check(cmd.seq, self.cfg.deadlock_retries) {
            return Err((cmd, why));
        }
        self.trx.attempts += 1;
        self.retry_stats.transactions += 1;
        self.retry_stats.attempts += 1;
        self.retry = Some(Retry { next: 0, cmd });
        Ok(())
    }

    /// A deadlock retry is in progress (its command not sent yet).
    pub fn retrying(&self) -> bool {
        self.retry.is_some()
    }

    /// Counts of this session's retries.
    pub fn retry_stats(&self) -> RetryStats {
        self.retry_stats
    }

    /// Plan the retry's next send; the rest of the session waits until it is over.
    pub(super) fn drive_retry(&mut self) {
        if !self.out.is_empty() {
            return;
        }
        if !self.outstanding.is_empty() {
            self.waiting = true;
            return;
        }
        let Some(r) = self.retry.as_mut() else {
            return;
        };
        let last = self.trx.entries.len().saturating_sub(1);
        if r.next < last {
            let e = &self.trx.entries[r.next];
            r.next += 1;
            self.outstanding.push_back(Outstanding::Retry {
                prod_err: e.prod_err,
            });
            self.out.push_back(Action::Send(SendPlan {
                payload: e.payload.clone(),
                expects_response: true,
                pipelined: false,
                local_infile: None,
                origin: Origin::Synthetic(Synthetic::DeadlockRetry { for_seq: r.cmd.seq }),
            }));
            self.retry_stats.statements += 1;
            self.waiting = true;
            return;
        }
        let Some(r) = self.retry.take() else {
            return;
        };
        let payload = self.trx.entries[last].payload.clone();
        self.outstanding.push_back(Outstanding::Other);
        self.out.push_back(Action::Send(SendPlan {
            payload,
            expects_response: true,
            pipelined: false,
            local_infile: None,
            origin: Origin::Captured(r.cmd),
        }));
    }

    /// A statement of the retry was answered: an error prod did not have breaks the attempt.
    pub(super) fn retry_answered(
        &mut self,
        prod_err: bool,
        status: ResponseStatus,
        code: Option<u16>,
    ) {
        if status != ResponseStatus::Err || prod_err {
            return;
        }
        let Some(r) = self.retry.as_mut() else {
            return;
        };
        let max = self.cfg.deadlock_retries;
        if code == Some(ER_LOCK_DEADLOCK) && self.trx.attempts < max {
            // Rolled back again: start over.
            self.trx.attempts += 1;
            self.retry_stats.attempts += 1;
            r.next = 0;
        } else {
            // The transaction cannot be rebuilt: the command goes alone.
            self.retry_stats.abandoned += 1;
            r.next = usize::MAX;
        }
    }

    /// The retry in progress, if any, is over: its command is handed back.
    pub(super) fn take_retry(&mut self) -> Option<Box<CmdInfo>> {
        self.retry.take().map(|r| r.cmd)
    }
}
