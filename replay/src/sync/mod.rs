//! Commit-order synchronisation (`--sync commit`, issue 11): a command is sent to test only
//! after every prod commit it could have seen on prod is done on test, so commits land in prod's
//! order and a reader sees what prod's reader saw.
//!
//! # What it does
//! - [`CommitGate`] is shared by every session of a run. [`CommitGate::wait`] holds a command
//!   until the commits of its watermark are settled ([`gate::GateCore`], sans-IO) — the
//!   watermark is [`mrte_capture::commit::CommitMarks::before_response`] (the wire hint: a
//!   statement whose prod response began after another transaction's commit probably waited for
//!   that commit's locks, so it waits for it on test too) or, with the hint off,
//!   `before_request`.
//! - [`CommitGate::settle`] marks a commit settled: its reply arrived (OK or ERR), or it was
//!   skipped, lost or failed, or its session ended without sending it. A commit that never
//!   reaches any session (ring overflow) is released by the first timeout.
//! - No deadlock: when the gate makes no progress for `--sync-timeout` while a command waits,
//!   the commits up to the waiter's watermark are released in prod order, counted as
//!   `sync_timeouts` with samples ([`SyncStats`]). A gate-held session may own row locks a
//!   commit it waits for needs; the timeout resolves that. A chain of commits that is slow but
//!   moves (test slower than prod) is not a timeout.
//!
//! # What it does not do
//! It does not order anything but commits (two readers, or a reader and a writer that commit
//! nothing, run freely), decide what a commit is (the capture's [`mrte_capture::commit`]), or
//! talk to a server (the executor calls it around its sends).

pub mod gate;
pub mod snapshot;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use gate::GateCore;

/// `--sync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Sessions run free (no cross-session ordering).
    #[default]
    None,
    /// Commit-order synchronisation.
    Commit,
}

impl SyncMode {
    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::None => "none",
            SyncMode::Commit => "commit",
        }
    }
}

impl FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(SyncMode::None),
            "commit" => Ok(SyncMode::Commit),
            o => Err(format!("unknown sync mode {o:?} (none, commit)")),
        }
    }
}

/// How the gate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// `--sync`.
    pub mode: SyncMode,
    /// `--sync-timeout`: longest wait at the gate before releasing in prod order.
    pub timeout: Duration,
    /// Wait for the commits before the prod response began (true, the default), not only those
    /// before the request (`--sync-hint off`).
    pub hint: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            mode: SyncMode::None,
            timeout: Duration::from_secs(2),
            hint: true,
        }
    }
}

/// One wait that ran into `--sync-timeout`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncTimeoutSample {
    /// Session of the waiting command.
    pub session: u64,
    /// Its index in the session.
    pub seq: u64,
    /// Its watermark (commits it waited for).
    pub watermark: u64,
    /// The first commit not settled when it gave up (the one it was held by).
    pub held_by: u64,
    /// Commits this timeout released unsettled.
    pub released: u64,
}

/// Most timeout samples kept.
const MAX_SAMPLES: usize = 10;

/// How often a waiter looks for commits the capture's rings dropped.
const DROPPED_TICK: Duration = Duration::from_millis(20);

/// What the gate did over a run (in the report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncStats {
    /// `--sync`.
    pub mode: SyncMode,
    /// The wire hint was on.
    pub hint: bool,
    /// `--sync-timeout`, ms.
    pub timeout_ms: u64,
    /// Prod commits that reached a session.
    pub commits: u64,
    /// Of those, settled by a reply from test (OK or ERR).
    pub commits_replied: u64,
    /// Of those, settled without a reply (skipped, lost, failed, session ended).
    pub commits_given_up: u64,
    /// Commits whose records the capture dropped on a full ring (never reached a session),
    /// settled as soon as the ring said so instead of at a timeout.
    pub commits_dropped: u64,
    /// Commands that had to wait at the gate.
    pub waits: u64,
    /// Their total wait, µs.
    pub wait_us_total: u64,
    /// The longest wait, µs.
    pub wait_us_max: u64,
    /// Waits that ran into `--sync-timeout`.
    pub sync_timeouts: u64,
    /// Commits those timeouts released before they were settled.
    pub commits_released: u64,
    /// The first timeouts.
    pub timeout_samples: Vec<SyncTimeoutSample>,
}

/// How a commit was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Its reply arrived from test.
    Replied,
    /// It will never be sent or answered.
    GivenUp,
}

/// The gate shared by the sessions of one run.
#[derive(Debug)]
pub struct CommitGate {
    cfg: SyncConfig,
    core: Mutex<GateCore>,
    upto: watch::Sender<u64>,
    commits: AtomicU64,
    replied: AtomicU64,
    given_up: AtomicU64,
    waits: AtomicU64,
    wait_us: AtomicU64,
    wait_max: AtomicU64,
    timeouts: AtomicU64,
    samples: Mutex<Vec<SyncTimeoutSample>>,
    /// Orders of commits the capture's rings dropped.
    dropped: Option<crossbeam_channel::Receiver<u64>>,
    dropped_settled: AtomicU64,
}

impl CommitGate {
    /// A gate with nothing settled.
    pub fn new(cfg: SyncConfig) -> Self {
        Self {
            cfg,
            core: Mutex::new(GateCore::new()),
            upto: watch::Sender::new(0),
            commits: AtomicU64::new(0),
            replied: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            wait_us: AtomicU64::new(0),
            wait_max: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            dropped: None,
            dropped_settled: AtomicU64::new(0),
        }
    }

    /// Settle the commits the capture reports dropped (`RingSink::report_dropped_commits`).
    pub fn with_dropped(mut self, dropped: Option<crossbeam_channel::Receiver<u64>>) -> Self {
        self.dropped = dropped;
        self
    }

    /// Settle every dropped commit reported so far.
    fn settle_dropped(&self) {
        let Some(rx) = &self.dropped else {
            return;
        };
        while let Ok(k) = rx.try_recv() {
            self.dropped_settled.fetch_add(1, Ordering::Relaxed);
            self.settle_order(k);
        }
    }

    /// The watermark a command waits for.
    pub fn watermark(&self, m: &mrte_capture::commit::CommitMarks) -> u64 {
        if self.cfg.hint {
            m.before_response.max(m.before_request)
        } else {
            m.before_request
        }
    }

    /// A session took a commit record (counted; it must be settled later).
    pub fn note_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// The command may go without waiting.
    pub fn ready(&self, w: u64) -> bool {
        *self.upto.borrow() >= w
    }

    /// Wait until commits `1..=w` are settled, or `--sync-timeout` (then release them in prod
    /// order). `session`/`seq` name the waiter in timeout samples.
    pub async fn wait(&self, w: u64, session: u64, seq: u64) {
        if self.ready(w) {
            return;
        }
        self.settle_dropped();
        if self.ready(w) {
            return;
        }
        let start = Instant::now();
        let mut rx = self.upto.subscribe();
        let mut seen = *rx.borrow();
        let mut still_since = start;
        // Woken by progress, or every tick to settle commits the rings dropped meanwhile.
        let tick = if self.dropped.is_some() {
            self.cfg.timeout.min(DROPPED_TICK)
        } else {
            self.cfg.timeout
        };
        loop {
            let r = tokio::time::timeout(tick, rx.wait_for(|&v| v >= w))
                .await
                .map(|r| r.is_ok());
            match r {
                Ok(_) => break,
                Err(_) => {
                    self.settle_dropped();
                    // Only a gate that made no progress for the whole timeout is stuck (a lock
                    // cycle through the gate, a commit that never comes); a slow chain is not.
                    let now = *rx.borrow();
                    if now >= w {
                        break;
                    }
                    if now > seen {
                        seen = now;
                        still_since = Instant::now();
                        continue;
                    }
                    if still_since.elapsed() < self.cfg.timeout {
                        continue;
                    }
                    self.timed_out(w, session, seq);
                    break;
                }
            }
        }
        let us = start.elapsed().as_micros() as u64;
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.wait_us.fetch_add(us, Ordering::Relaxed);
        self.wait_max.fetch_max(us, Ordering::Relaxed);
    }

    fn timed_out(&self, w: u64, session: u64, seq: u64) {
        let (held_by, released, upto) = {
            let mut g = self.core.lock().unwrap_or_else(|e| e.into_inner());
            let held_by = g.first_missing();
            let n = g.release_to(w);
            (held_by, n, g.upto())
        };
        if released == 0 {
            // Settled meanwhile (or by another waiter's timeout): not a timeout of its own.
            return;
        }
        self.upto.send_if_modified(|v| {
            let moved = upto > *v;
            *v = (*v).max(upto);
            moved
        });
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < MAX_SAMPLES {
            s.push(SyncTimeoutSample {
                session,
                seq,
                watermark: w,
                held_by,
                released,
            });
        }
        tracing::debug!(
            session,
            seq,
            watermark = w,
            held_by,
            "sync: gate wait timed out, releasing in prod order"
        );
    }

    /// Commit `k` (its global order) is settled on test.
    pub fn settle(&self, k: u64, how: Settled) {
        if k == 0 {
            return;
        }
        match how {
            Settled::Replied => self.replied.fetch_add(1, Ordering::Relaxed),
            Settled::GivenUp => self.given_up.fetch_add(1, Ordering::Relaxed),
        };
        self.settle_order(k);
    }

    fn settle_order(&self, k: u64) {
        if k == 0 {
            return;
        }
        let upto = {
            let mut g = self.core.lock().unwrap_or_else(|e| e.into_inner());
            if !g.settle(k) {
                return;
            }
            g.upto()
        };
        self.upto.send_if_modified(|v| {
            let moved = upto > *v;
            *v = (*v).max(upto);
            moved
        });
    }

    /// What the gate did so far.
    pub fn stats(&self) -> SyncStats {
        let released = self
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .released();
        SyncStats {
            mode: self.cfg.mode,
            hint: self.cfg.hint,
            timeout_ms: self.cfg.timeout.as_millis() as u64,
            commits: self.commits.load(Ordering::Relaxed),
            commits_replied: self.replied.load(Ordering::Relaxed),
            commits_given_up: self.given_up.load(Ordering::Relaxed),
            commits_dropped: self.dropped_settled.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            wait_us_total: self.wait_us.load(Ordering::Relaxed),
            wait_us_max: self.wait_max.load(Ordering::Relaxed),
            sync_timeouts: self.timeouts.load(Ordering::Relaxed),
            commits_released: released,
            timeout_samples: self
                .samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Did the replay start from a snapshot of prod taken where the capture began?
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotCheck {
    /// `--snapshot-pos` as given (what scripts/snapshot.sh printed).
    pub snapshot_pos: String,
    /// Prod's position read when the capture started (`mrte run --prod`), if read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_start_pos: Option<String>,
    /// Equal positions: prod wrote nothing between the snapshot and the capture's start.
    /// None: not verifiable (offline replay, no `--prod`, or the position could not be read).
    pub matching: Option<bool>,
    /// Why it could not be verified, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The report's `sync` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The gate's counters (`--sync commit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<SyncStats>,
    /// The snapshot check (`--snapshot-pos`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotCheck>,
}

impl SyncReport {
    /// From the engine's counters (None when there is nothing to say).
    pub fn of(eng: &crate::engine::EngineStats) -> Option<Self> {
        let gate = eng.sync.clone()?;
        Some(Self {
            gate: Some(gate),
            snapshot: None,
        })
    }

    /// Text report lines.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(g) = &self.gate {
            s.push_str(&format!(
                "sync:     --sync {} (hint {}): {} commits ({} replied, {} given up, {} dropped by the capture), {} waits ({:.1} ms total, max {:.1} ms), sync_timeouts {} ({} commits released)\n",
                g.mode.as_str(),
                if g.hint { "on" } else { "off" },
                g.commits,
                g.commits_replied,
                g.commits_given_up,
                g.commits_dropped,
                g.waits,
                g.wait_us_total as f64 / 1e3,
                g.wait_us_max as f64 / 1e3,
                g.sync_timeouts,
                g.commits_released,
            ));
            for t in &g.timeout_samples {
                s.push_str(&format!(
                    "          timeout: session {} command {} waited for commit {} (watermark {}), released {}\n",
                    t.session, t.seq, t.held_by, t.watermark, t.released
                ));
            }
        }
        if let Some(c) = &self.snapshot {
            let verdict = match c.matching {
                Some(true) => "replay began from a matching snapshot".to_string(),
                Some(false) => format!(
                    "replay did NOT begin from a matching snapshot: prod was at {} when capture started (writes between are on neither side)",
                    c.capture_start_pos.as_deref().unwrap_or("?")
                ),
                None => format!(
                    "not verified ({})",
                    c.note.as_deref().unwrap_or("no prod position")
                ),
            };
            s.push_str(&format!("snapshot: {}: {verdict}\n", c.snapshot_pos));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn gate(timeout_ms: u64) -> Arc<CommitGate> {
        Arc::new(CommitGate::new(SyncConfig {
            mode: SyncMode::Commit,
            timeout: Duration::from_millis(timeout_ms),
            hint: true,
        }))
    }

    #[tokio::test]
    async fn a_waiter_goes_when_its_commits_are_settled_in_prod_order() {
        let g = gate(10_000);
        let w = {
            let g = g.clone();
            tokio::spawn(async move { g.wait(2, 7, 1).await })
        };
        g.settle(2, Settled::Replied);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!w.is_finished(), "commit 1 is not settled yet");
        g.settle(1, Settled::GivenUp);
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("released once 1 and 2 are settled")
            .unwrap();
        let s = g.stats();
        assert_eq!((s.waits, s.sync_timeouts, s.commits_released), (1, 0, 0));
        assert_eq!((s.commits_replied, s.commits_given_up), (1, 1));
    }

    #[tokio::test]
    async fn a_commit_the_capture_dropped_is_settled_long_before_the_timeout() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let g = Arc::new(
            CommitGate::new(SyncConfig {
                mode: SyncMode::Commit,
                timeout: Duration::from_secs(30),
                hint: true,
            })
            .with_dropped(Some(rx)),
        );
        g.settle(1, Settled::Replied);
        let w = {
            let g = g.clone();
            tokio::spawn(async move { g.wait(3, 7, 1).await })
        };
        g.settle(3, Settled::Replied);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            !w.is_finished(),
            "commit 2 is neither settled nor reported dropped"
        );
        tx.send(2).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("released once the ring reports commit 2 dropped")
            .unwrap();
        let s = g.stats();
        assert_eq!(
            (s.commits_dropped, s.sync_timeouts, s.commits_released),
            (1, 0, 0)
        );
        assert_eq!((s.commits_replied, s.commits_given_up), (2, 0));
    }

    #[tokio::test]
    async fn a_slow_chain_that_progresses_is_not_a_timeout() {
        let g = gate(150);
        let w = {
            let g = g.clone();
            tokio::spawn(async move { g.wait(3, 1, 0).await })
        };
        for k in 1..=3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            g.settle(k, Settled::Replied);
        }
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("released")
            .unwrap();
        let s = g.stats();
        assert_eq!((s.sync_timeouts, s.commits_released), (0, 0), "{s:?}");
        assert!(s.wait_us_max >= 250_000, "{s:?}");
    }

    #[tokio::test]
    async fn a_commit_lost_on_test_releases_everyone_after_one_timeout() {
        let g = gate(50);
        g.settle(1, Settled::Replied);
        // Commit 2 never comes; three sessions wait for 2, 3, 3.
        let ws: Vec<_> = [(2, 1), (3, 2), (3, 3)]
            .into_iter()
            .map(|(w, s)| {
                let g = g.clone();
                tokio::spawn(async move { g.wait(w, s, 0).await })
            })
            .collect();
        g.settle(3, Settled::Replied);
        for w in ws {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("nobody waits forever")
                .unwrap();
        }
        let s = g.stats();
        assert!(s.sync_timeouts >= 1);
        assert_eq!(
            s.commits_released, 1,
            "only commit 2 was released unsettled"
        );
        assert_eq!(s.timeout_samples[0].held_by, 2);
        assert!(g.ready(3));
    }
}
