//! The books of a run: every captured command ends replayed, skipped, lost or failed (by
//! reason), dropped on a full ring, or still queued when the run was stopped. [`Accounting`]
//! adds them up and says whether they balance.
//!
//! It only sums counters the capture and the engine kept; it does not decide fates.

use serde::Serialize;

use crate::engine::EngineStats;

/// `accounting` section of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Commands the decoder produced.
    pub captured: u64,
    /// Replayed with a response.
    pub replayed: u64,
    /// Replayed, no response expected (QUIT, STMT_CLOSE, SEND_LONG_DATA).
    pub replayed_no_response: u64,
    /// Skipped by a filter or rule (see `skipped`).
    pub skipped: u64,
    /// Not replayed: target unavailable, connection lost, unknown statement... (see `drops.lost`).
    pub lost: u64,
    /// Tried and failed without a server answer: refused, timeout... (see `failed`).
    pub failed: u64,
    /// Dropped on a full session ring before the engine saw them.
    pub ring_dropped: u64,
    /// Never reached the engine because the run was stopped (signal, deadline).
    pub queued_at_stop: u64,
    /// Captured but with no known fate (a bug): `captured` minus everything above.
    pub unaccounted: i64,
    /// `unaccounted == 0` and no session task died.
    pub balanced: bool,
    /// Session tasks that died outside a command (their commands are unaccounted).
    pub sessions_died: u64,
    /// The run was stopped by a signal or deadline before its input ended.
    pub interrupted: bool,
}

impl Accounting {
    /// Books for `captured` decoded commands and the engine's counters; `interrupted` when the
    /// run was stopped early (what never reached the engine is then `queued_at_stop`).
    pub fn of(captured: u64, eng: &EngineStats, interrupted: bool) -> Self {
        let mut a = Accounting {
            captured,
            replayed: eng.replayed,
            replayed_no_response: eng.replayed_no_response,
            skipped: eng.skipped_total(),
            lost: eng.lost_total(),
            failed: eng.failed_total(),
            ring_dropped: eng.ring_dropped_commands,
            sessions_died: eng.sessions_panicked,
            interrupted,
            ..Accounting::default()
        };
        let known = a.replayed + a.replayed_no_response + a.skipped + a.lost + a.failed;
        let rest = captured as i64 - (known + a.ring_dropped) as i64;
        if interrupted && rest > 0 {
            a.queued_at_stop = rest as u64;
        } else {
            a.unaccounted = rest;
        }
        a.balanced = a.unaccounted == 0 && a.sessions_died == 0;
        a
    }

    /// Commands that reached the test server (with or without a response).
    pub fn sent(&self) -> u64 {
        self.replayed + self.replayed_no_response
    }

    /// No command got an answer from the test server although some were tried: every attempt
    /// was lost or failed. (Commands without a response do not count: SEND_LONG_DATA is only
    /// buffered until the next EXECUTE.)
    pub fn nothing_replayed(&self) -> bool {
        self.replayed == 0 && self.lost + self.failed > 0
    }

    /// One line for the text report, and a loud second one when the books do not balance.
    pub fn text(&self) -> String {
        let mut s = format!(
            "books:    captured {} = replayed {} (+{} without response) + skipped {} + lost {} + failed {} + ring dropped {} + queued at stop {}",
            self.captured,
            self.replayed,
            self.replayed_no_response,
            self.skipped,
            self.lost,
            self.failed,
            self.ring_dropped,
            self.queued_at_stop
        );
        if !self.balanced {
            s.push_str(&format!(
                "\n!!! THE BOOKS DO NOT BALANCE: {} commands unaccounted, {} session tasks died (a bug: please report it) !!!",
                self.unaccounted, self.sessions_died
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eng() -> EngineStats {
        let mut e = EngineStats {
            replayed: 10,
            replayed_no_response: 1,
            ring_dropped_commands: 2,
            ..EngineStats::default()
        };
        e.skipped.insert("read_only".into(), 3);
        e.lost.insert("target_unavailable".into(), 4);
        e.failed.insert("timeout".into(), 5);
        e
    }

    #[test]
    fn balanced_books() {
        let a = Accounting::of(25, &eng(), false);
        assert!(a.balanced, "{a:?}");
        assert_eq!(a.unaccounted, 0);
        assert!(!a.text().contains("DO NOT BALANCE"));
        assert!(!a.nothing_replayed());
    }

    #[test]
    fn missing_commands_are_loud() {
        let a = Accounting::of(30, &eng(), false);
        assert!(!a.balanced);
        assert_eq!(a.unaccounted, 5);
        assert!(a.text().contains("DO NOT BALANCE: 5 commands"));
        let mut e = eng();
        e.sessions_panicked = 1;
        assert!(!Accounting::of(25, &e, false).balanced);
    }

    #[test]
    fn a_stopped_run_counts_the_rest_as_queued() {
        let a = Accounting::of(30, &eng(), true);
        assert!(a.balanced);
        assert_eq!(a.queued_at_stop, 5);
    }

    #[test]
    fn nothing_replayed() {
        let mut e = EngineStats::default();
        e.failed.insert("connect_refused".into(), 18);
        let a = Accounting::of(18, &e, false);
        assert!(a.balanced && a.nothing_replayed());
        assert!(!Accounting::of(0, &EngineStats::default(), false).nothing_replayed());
        e.replayed_no_response = 70;
        assert!(Accounting::of(88, &e, false).nothing_replayed());
    }
}
