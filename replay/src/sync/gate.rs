//! The commit gate's decision logic, sans-IO: which prod commits are done on test, whether a
//! command's watermark is reached, and what a timeout releases.
//!
//! Commits are numbered 1, 2, ... in prod order by the capture ([`mrte_capture::commit`]). A
//! command with watermark `w` may go once commits `1..=w` are all settled on test: done (their
//! reply arrived, OK or ERR), given up (skipped, lost, failed: never coming) or released (a
//! waiter timed out). Settling is idempotent and may happen in any order; the gate advances over
//! the settled prefix. Nothing here waits or reads a clock.

use std::collections::BTreeSet;

/// Settled commits: a prefix `1..=upto` and the settled ones beyond it.
#[derive(Clone, Debug, Default)]
pub struct GateCore {
    upto: u64,
    ahead: BTreeSet<u64>,
    released: u64,
}

impl GateCore {
    /// Nothing settled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits `1..=upto()` are settled.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// A command with watermark `w` may go.
    pub fn ready(&self, w: u64) -> bool {
        self.upto >= w
    }

    /// Commits released by timeouts so far (they were not settled when released).
    pub fn released(&self) -> u64 {
        self.released
    }

    /// The first commit not settled yet (what a waiter is held by).
    pub fn first_missing(&self) -> u64 {
        self.upto + 1
    }

    /// Commit `k` is settled on test; true when the prefix advanced. `k == 0` (not a commit) and
    /// commits already settled are ignored.
    pub fn settle(&mut self, k: u64) -> bool {
        if k <= self.upto {
            return false;
        }
        if k != self.upto + 1 {
            self.ahead.insert(k);
            return false;
        }
        self.upto = k;
        while self.ahead.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
        true
    }

    /// A waiter for `w` timed out: commits up to `w` are released in prod order (those not
    /// settled are counted in [`Self::released`]); returns how many this released.
    pub fn release_to(&mut self, w: u64) -> u64 {
        if w <= self.upto {
            return 0;
        }
        let mut n = 0;
        while self.upto < w {
            self.upto += 1;
            if !self.ahead.remove(&self.upto) {
                n += 1;
            }
        }
        while self.ahead.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
        // Entries at or below the new prefix can no longer matter.
        self.ahead = self.ahead.split_off(&(self.upto + 1));
        self.released += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_in_any_order_and_advances_over_the_prefix() {
        let mut g = GateCore::new();
        assert!(g.ready(0));
        assert!(!g.ready(1));
        assert!(!g.settle(2));
        assert!(!g.settle(3));
        assert!(!g.ready(1));
        assert!(g.settle(1));
        assert_eq!(g.upto(), 3);
        assert!(g.ready(3) && !g.ready(4));
        // Twice, or zero: ignored.
        assert!(!g.settle(2));
        assert!(!g.settle(0));
        assert_eq!(g.first_missing(), 4);
    }

    #[test]
    fn a_commit_that_never_comes_is_released_by_a_timeout_in_prod_order() {
        let mut g = GateCore::new();
        g.settle(1);
        g.settle(3);
        g.settle(6);
        // Commit 2 was lost on test: a waiter for 4 times out.
        assert_eq!(g.release_to(4), 2); // 2 and 4 released; 3 was done
        assert_eq!((g.upto(), g.released()), (4, 2));
        assert!(g.settle(5));
        assert_eq!(g.upto(), 6);
        // A late settle of a released commit changes nothing.
        assert!(!g.settle(2));
        assert_eq!(g.release_to(3), 0);
        assert_eq!(g.released(), 2);
    }
}
