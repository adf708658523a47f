//! The engine's counters: [`LiveCounters`] (read while the replay runs, for the live line and
//! /metrics) and [`EngineStats`] (the final books, per reason, for the report).
//!
//! Plain data and arithmetic; no I/O. The executor fills them ([`crate::exec`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters readable while the engine runs (e.g. once per second for the live line).
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Sessions received from capture.
    pub sessions: AtomicU64,
    /// Sessions currently being replayed.
    pub active_sessions: AtomicU64,
    /// Test connections currently open.
    pub connections_open: AtomicU64,
    /// Commands taken from the rings.
    pub commands_seen: AtomicU64,
    /// Commands replayed that got a response (OK or ERR).
    pub replayed: AtomicU64,
    /// Replayed commands the test server answered with ERR.
    pub test_errors: AtomicU64,
    /// Commands skipped by a filter or rule.
    pub skipped: AtomicU64,
    /// Commands that could not be replayed (connection down, unknown statement, ...).
    pub lost: AtomicU64,
    /// Commands tried that failed (connect refused, timeout, driver error).
    pub failed: AtomicU64,
    /// Reconnects after a lost connection.
    pub reconnects: AtomicU64,
    /// Transactions sent again after a test-only deadlock.
    pub deadlock_retries: AtomicU64,
    /// Commands replayed that expect no response (QUIT, STMT_CLOSE, SEND_LONG_DATA).
    pub replayed_no_response: AtomicU64,
    /// Lag of the latest command, µs.
    pub lag_last_us: AtomicU64,
    /// Largest lag so far, µs.
    pub lag_max_us: AtomicU64,
}

/// A copy of [`LiveCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveSnapshot {
    /// See [`LiveCounters::sessions`].
    pub sessions: u64,
    /// See [`LiveCounters::active_sessions`].
    pub active_sessions: u64,
    /// See [`LiveCounters::connections_open`].
    pub connections_open: u64,
    /// See [`LiveCounters::commands_seen`].
    pub commands_seen: u64,
    /// See [`LiveCounters::replayed`].
    pub replayed: u64,
    /// See [`LiveCounters::test_errors`].
    pub test_errors: u64,
    /// See [`LiveCounters::skipped`].
    pub skipped: u64,
    /// See [`LiveCounters::lost`].
    pub lost: u64,
    /// See [`LiveCounters::failed`].
    pub failed: u64,
    /// See [`LiveCounters::reconnects`].
    pub reconnects: u64,
    /// See [`LiveCounters::deadlock_retries`].
    pub deadlock_retries: u64,
    /// See [`LiveCounters::lag_last_us`].
    pub lag_last_us: u64,
    /// See [`LiveCounters::lag_max_us`].
    pub lag_max_us: u64,
}

impl LiveCounters {
    /// Read all counters.
    pub fn snapshot(&self) -> LiveSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LiveSnapshot {
            sessions: l(&self.sessions),
            active_sessions: l(&self.active_sessions),
            connections_open: l(&self.connections_open),
            commands_seen: l(&self.commands_seen),
            replayed: l(&self.replayed),
            test_errors: l(&self.test_errors),
            skipped: l(&self.skipped),
            lost: l(&self.lost),
            failed: l(&self.failed),
            reconnects: l(&self.reconnects),
            deadlock_retries: l(&self.deadlock_retries),
            lag_last_us: l(&self.lag_last_us),
            lag_max_us: l(&self.lag_max_us),
        }
    }
}

/// Lag behind schedule, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LagStats {
    /// Commands measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// Final engine counters, for the report (alongside the comparison).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Sessions received from capture.
    pub sessions: u64,
    /// Sessions with at least one command sent to the test server.
    pub sessions_replayed: u64,
    /// Sessions first seen mid-stream (open before capture).
    pub sessions_midstream: u64,
    /// Mid-stream sessions whose user/db came from production's processlist.
    pub sessions_processlist_resolved: u64,
    /// Sessions that lost events to a full ring (diverged: commands missing).
    pub sessions_overflowed: u64,
    /// Sessions with at least one lost command.
    pub sessions_with_losses: u64,
    /// Session tasks that died of a panic outside a command (a bug; their commands are
    /// unaccounted and the report says the books do not balance).
    pub sessions_panicked: u64,
    /// Sessions where replaying a command panicked: that command and the rest of the session
    /// are counted as lost, reason `session_panic`.
    pub sessions_command_panicked: u64,
    /// Sessions that stopped reconnecting after `reconnect_for` (`--reconnect-for`).
    pub sessions_gave_up: u64,
    /// Sessions reconnected while production held state a new connection lacks.
    pub sessions_state_lost: u64,
    /// That state, by kind (open_transaction, temporary_tables, user_variables,
    /// session_variables), one count per reconnect.
    pub state_lost: BTreeMap<String, u64>,
    /// Sessions not replayed because `max_replay_sessions` were being replayed (their commands
    /// are lost, `replay_backlog`).
    pub sessions_shed: u64,
    /// Sessions received but never started because of shutdown.
    pub sessions_not_started: u64,
    /// Events lost to full rings.
    pub ring_dropped_events: u64,
    /// Of those, commands.
    pub ring_dropped_commands: u64,
    /// Commands taken from the rings.
    pub commands_seen: u64,
    /// Commands replayed that got a response (OK or ERR).
    pub replayed: u64,
    /// Commands sent that have no response (COM_QUIT, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    pub replayed_no_response: u64,
    /// Replayed commands the test server answered with ERR.
    pub test_errors: u64,
    /// Replayed commands whose production response was ERR.
    pub prod_errors: u64,
    /// Skipped commands by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Commands that could not be replayed, by reason.
    pub lost: BTreeMap<String, u64>,
    /// Commands tried that failed without a server answer (connect refused, timeout, driver
    /// error), by reason.
    pub failed: BTreeMap<String, u64>,
    /// Commands decoded right after a capture gap (TCP hole).
    pub commands_after_gap: u64,
    /// Test connections opened.
    pub connects: u64,
    /// Of those, re-opened after a lost connection.
    pub reconnects: u64,
    /// ROLLBACKs sent to test because prod's server rolled a transaction back (deadlock victim)
    /// where test's did not.
    pub deadlock_rollbacks: u64,
    /// Transactions sent to test again because test's server chose them as a deadlock victim
    /// where prod's did not (`--deadlock-retries`).
    #[serde(default)]
    pub deadlock_retries: u64,
    /// Attempts of those retries (a retry that deadlocks again starts another).
    #[serde(default)]
    pub deadlock_retry_attempts: u64,
    /// Statements sent again by those retries, before the victim command itself.
    #[serde(default)]
    pub deadlock_retry_statements: u64,
    /// Retries whose statements kept failing on test: the victim command went alone.
    #[serde(default)]
    pub deadlock_retries_abandoned: u64,
    /// Test-only deadlocks not retried, by reason.
    #[serde(default)]
    pub deadlock_retries_refused: BTreeMap<String, u64>,
    /// `SET timestamp` statements sent to give test prod's clock (`--prod-clock`).
    #[serde(default)]
    pub prod_clock_sets: u64,
    /// Of those, answered with an error (that session stopped setting it).
    #[serde(default)]
    pub prod_clock_errors: u64,
    /// Of the `SET`s, those that gave test prod's auto-increment id (`--prod-insert-id`).
    #[serde(default)]
    pub prod_insert_ids: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections closed by the engine's idle timeout.
    pub idle_closes: u64,
    /// Connections opened again for a session after an idle close (not counted as reconnects).
    pub reopened_after_idle: u64,
    /// Connections dropped after an I/O error or command timeout.
    pub connections_lost: u64,
    /// Lag behind schedule (offline: behind captured pacing; live: behind packet time).
    pub lag_us: LagStats,
    /// What the commit gate did (`--sync commit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(skip_deserializing)]
    pub sync: Option<crate::sync::SyncStats>,
}

impl EngineStats {
    /// Total skipped commands.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Total lost commands.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Total failed commands.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Commands with a known fate: replayed (with or without response), skipped, lost or
    /// failed. Equals `commands_seen` when nothing went unaccounted.
    pub fn accounted(&self) -> u64 {
        self.replayed
            + self.replayed_no_response
            + self.skipped_total()
            + self.lost_total()
            + self.failed_total()
    }

    /// Add another worker's (or player's) counters; `sessions`, `sessions_panicked`,
    /// `sessions_not_started` and lag are left to the caller.
    pub fn merge(&mut self, o: &EngineStats) {
        self.sessions_replayed += o.sessions_replayed;
        self.sessions_midstream += o.sessions_midstream;
        self.sessions_processlist_resolved += o.sessions_processlist_resolved;
        self.sessions_overflowed += o.sessions_overflowed;
        self.sessions_with_losses += o.sessions_with_losses;
        self.ring_dropped_events += o.ring_dropped_events;
        self.ring_dropped_commands += o.ring_dropped_commands;
        self.commands_seen += o.commands_seen;
        self.replayed += o.replayed;
        self.replayed_no_response += o.replayed_no_response;
        self.test_errors += o.test_errors;
        self.prod_errors += o.prod_errors;
        for (k, v) in &o.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.lost {
            *self.lost.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.failed {
            *self.failed.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.state_lost {
            *self.state_lost.entry(k.clone()).or_default() += v;
        }
        self.sessions_command_panicked += o.sessions_command_panicked;
        self.sessions_gave_up += o.sessions_gave_up;
        self.sessions_shed += o.sessions_shed;
        self.sessions_state_lost += o.sessions_state_lost;
        self.commands_after_gap += o.commands_after_gap;
        self.connects += o.connects;
        self.reconnects += o.reconnects;
        self.deadlock_rollbacks += o.deadlock_rollbacks;
        self.deadlock_retries += o.deadlock_retries;
        self.deadlock_retry_attempts += o.deadlock_retry_attempts;
        self.deadlock_retry_statements += o.deadlock_retry_statements;
        self.deadlock_retries_abandoned += o.deadlock_retries_abandoned;
        for (k, v) in &o.deadlock_retries_refused {
            *self.deadlock_retries_refused.entry(k.clone()).or_default() += v;
        }
        self.prod_clock_sets += o.prod_clock_sets;
        self.prod_clock_errors += o.prod_clock_errors;
        self.prod_insert_ids += o.prod_insert_ids;
        self.connect_failures += o.connect_failures;
        self.idle_closes += o.idle_closes;
        self.reopened_after_idle += o.reopened_after_idle;
        self.connections_lost += o.connections_lost;
    }
}
