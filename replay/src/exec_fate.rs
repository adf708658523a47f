//! The executor's books: each captured command's fate (replayed, skipped, lost, failed) counted
//! once, its outcome handed to the sink, prod commits settled on the commit gate, and a
//! test-only deadlock victim handed to the planner's retry instead of being counted.

use std::sync::atomic::Ordering;

use mrte_capture::commit::ER_LOCK_DEADLOCK;
use mrte_capture::event::ResponseStatus;

use super::{Exec, Fail, Want};
use crate::engine::bump;
use crate::filter::SkipReason;
use crate::plan::{CmdInfo, RetryRefused};
use crate::sync::Settled;
use crate::{Outcome, TestResponse};

impl Exec {
    pub(super) fn seen(&mut self) {
        self.stats.commands_seen += 1;
        self.ctx.live.commands_seen.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn skip(&mut self, r: SkipReason) {
        bump(&mut self.stats.skipped, r.as_str());
        self.ctx.live.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn lose(&mut self, reason: &str) {
        bump(&mut self.stats.lost, reason);
        self.ctx.live.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Commands taken and not yet given a fate.
    pub(super) fn unaccounted(&self) -> u64 {
        self.stats
            .commands_seen
            .saturating_sub(self.stats.accounted())
    }

    /// Give up the session's work in progress (panic, shutdown): the connection is dropped and
    /// every command taken without a fate is lost for `reason`.
    pub(super) fn abandon(&mut self, reason: &str) {
        self.pending.clear();
        self.drop_conn();
        let _ = self.planner.handle_connection_lost();
        for _ in 0..self.unaccounted() {
            self.lose(reason);
        }
    }

    /// Shutdown interrupted a step: the connection is dropped; the commands sent and not
    /// answered (their fate unknown) are lost, `shutdown`; those taken and never sent are
    /// skipped, `shutdown`, as the ones still queued in the ring are. So the books do not
    /// depend on whether the step's own shutdown check or the one raced against the step
    /// saw the shutdown first.
    pub(super) fn abandon_shutdown(&mut self) {
        let in_flight = self
            .pending
            .iter()
            .filter(|p| matches!(p.want, Want::Captured(_)))
            .count() as u64
            + u64::from(self.sending);
        self.sending = false;
        self.pending.clear();
        self.drop_conn();
        let _ = self.planner.handle_connection_lost();
        let n = self.unaccounted();
        for i in 0..n {
            if i < in_flight {
                self.lose("shutdown");
            } else {
                self.skip(SkipReason::Shutdown);
            }
        }
    }

    /// A replayed command's answer.
    pub(super) fn done(&mut self, c: Box<CmdInfo>, test: TestResponse) {
        let c = if test.error_code == Some(ER_LOCK_DEADLOCK)
            && c.prod.error_code != Some(ER_LOCK_DEADLOCK)
        {
            match self.retry_deadlocked(c) {
                Ok(()) => return,
                Err(c) => c,
            }
        } else {
            c
        };
        self.stats.replayed += 1;
        self.ctx.live.replayed.fetch_add(1, Ordering::Relaxed);
        if test.status == ResponseStatus::Err {
            self.stats.test_errors += 1;
            self.ctx.live.test_errors.fetch_add(1, Ordering::Relaxed);
        }
        if c.prod.status == ResponseStatus::Err {
            self.stats.prod_errors += 1;
        }
        if c.prod.error_code == Some(ER_LOCK_DEADLOCK) && test.error_code != Some(ER_LOCK_DEADLOCK)
        {
            self.planner.mirror_rollback();
            self.stats.deadlock_rollbacks += 1;
        }
        self.settle(c.seq, Settled::Replied);
        // The wire reply carries the result checksum: the report compares it with prod's.
        self.emit(c, Some(test), None);
    }

    /// Test's server chose `c`'s transaction as a deadlock victim where prod's did not: the
    /// planner sends it again (the command's answer comes back later) unless it cannot.
    pub(super) fn retry_deadlocked(&mut self, c: Box<CmdInfo>) -> Result<(), Box<CmdInfo>> {
        let r = if self.holding_action || !self.pending.is_empty() {
            Err((c, RetryRefused::Busy))
        } else {
            self.planner.retry_deadlocked(c)
        };
        match r {
            Ok(()) => {
                self.ctx
                    .live
                    .deadlock_retries
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    session = self.id,
                    "test-only deadlock: transaction sent again"
                );
                Ok(())
            }
            Err((c, why)) => {
                bump(&mut self.stats.deadlock_retries_refused, why.as_str());
                Err(c)
            }
        }
    }

    /// A command without an answer.
    pub(super) fn fail(&mut self, c: Box<CmdInfo>, f: Fail) {
        self.settle(c.seq, Settled::GivenUp);
        let reason = match f {
            Fail::Lost(r) => {
                self.lose(r.split(':').next().unwrap_or("lost"));
                r
            }
            Fail::Failed(r) => {
                bump(
                    &mut self.stats.failed,
                    r.split(':').next().unwrap_or("failed"),
                );
                self.ctx.live.failed.fetch_add(1, Ordering::Relaxed);
                r
            }
        };
        self.emit(c, None, Some(reason));
    }

    /// The command `seq` of this session is settled: if it was a prod commit, the gate knows.
    pub(super) fn settle(&mut self, seq: u64, how: Settled) {
        let Some(i) = self.owed.iter().position(|&(s, _)| s == seq) else {
            return;
        };
        if let (Some((_, k)), Some(g)) = (self.owed.remove(i), self.ctx.sync.as_ref()) {
            g.settle(k, how);
        }
    }

    /// The session ends: commits it never settled will not come.
    pub(super) fn settle_all(&mut self) {
        for (_, k) in std::mem::take(&mut self.owed) {
            if let Some(g) = self.ctx.sync.as_ref() {
                g.settle(k, Settled::GivenUp);
            }
        }
    }

    /// Hand the command's outcome to the sink (its facts moved, not copied).
    pub(super) fn emit(
        &mut self,
        c: Box<CmdInfo>,
        test: Option<TestResponse>,
        failure: Option<String>,
    ) {
        let c = *c;
        let o = Outcome {
            session: self.id,
            command: c.name(),
            fingerprint: c.fingerprint,
            fingerprint_id: c.fingerprint_id,
            example: c.example,
            prod: c.prod,
            prod_us: c.prod_us,
            test,
            failure,
            lag_us: self.last_lag_us,
        };
        let mut sink = self.ctx.sink.lock().unwrap_or_else(|e| e.into_inner());
        (*sink)(o);
    }
}
