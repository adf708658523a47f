//! The replay's memory bound against a lagging target (a throwaway MariaDB; skipped loudly when
//! not installed): every replayed session starts with `SELECT SLEEP(2)` while capture pushes
//! thousands of commands per session at once. The events queued over all rings stay under the
//! ring sink's queue bound (the excess of the lagging sessions is dropped and counted as ring
//! drops), sessions past `max_replay_sessions` are not replayed (their commands lost,
//! `replay_backlog`), and the books balance: every pushed command is replayed, lost or a ring
//! drop.

mod common;

use std::time::Duration;

use common::*;
use mrte_capture::event::{CloseReason, EventSink};
use mrte_capture::ring::{RingSink, MIN_RING};
use mrte_replay::engine::{Engine, ReplayConfig, LOST_BACKLOG};
use mrte_replay::target::TargetDsn;

const SESSIONS: u64 = 30;
const MAX_SESSIONS: usize = 10;
const PER_SESSION: u64 = 2000;
const QUEUE_LIMIT: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_target_keeps_the_queue_bounded_and_the_books_balanced() {
    let Some(db) = MariaDb::start("a_lagging_target_keeps_the_queue_bounded") else {
        return;
    };
    let mut cfg = ReplayConfig::new(
        TargetDsn::parse_no_env(&format!("mysql://root@127.0.0.1:{}", db.port)).expect("dsn"),
    );
    cfg.max_replay_sessions = MAX_SESSIONS;
    let (mut sink, rx) = RingSink::new(65536);
    sink.set_queue_limit(QUEUE_LIMIT);
    let engine = Engine::new(cfg);
    let run = tokio::spawn(engine.run(rx, |_| {}, std::future::pending()));

    // Capture outruns the target: all sessions and their commands arrive while the first
    // MAX_SESSIONS sessions sleep on the test server.
    let mut max_queued = 0;
    let mut pushed_commands = 0u64;
    for s in 0..SESSIONS {
        sink.push(s, open(s, 52000 + s as u16));
        sink.push(s, login("root", None));
        sink.push(s, query(0, "SELECT SLEEP(2)"));
        pushed_commands += 1;
        max_queued = max_queued.max(sink.queued());
    }
    for i in 1..=PER_SESSION {
        for s in 0..SESSIONS {
            sink.push(s, query(i, "SELECT 1"));
            pushed_commands += 1;
            max_queued = max_queued.max(sink.queued());
        }
    }
    for s in 0..SESSIONS {
        sink.push(s, close(CloseReason::Fin));
    }
    let rings = sink.stats();
    drop(sink);
    let stats = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the replay finished")
        .expect("engine task");

    // Unbounded, the replayed sessions alone would have queued MAX_SESSIONS x PER_SESSION.
    let bound = QUEUE_LIMIT + SESSIONS as usize * MIN_RING;
    assert!(max_queued <= bound, "queued {max_queued} > {bound}");
    assert!(rings.queue_limited_events > 0, "{rings:?}");
    assert_eq!(
        rings.queue_limited_events, rings.dropped_events,
        "{rings:?}"
    );

    assert_eq!(
        stats.sessions_shed,
        SESSIONS - MAX_SESSIONS as u64,
        "{stats:#?}"
    );
    let shed_commands = (SESSIONS - MAX_SESSIONS as u64) * (PER_SESSION + 1);
    let backlog = stats.lost.get(LOST_BACKLOG).copied().unwrap_or(0);
    // A shed session's own ring can also hit the bound before its task drains it: those are
    // ring drops, the rest of its commands are lost as backlog.
    assert!(backlog > 0 && backlog <= shed_commands, "{stats:#?}");
    assert_eq!(
        stats.ring_dropped_commands, rings.dropped_events,
        "{stats:#?}"
    );
    assert_eq!(
        stats.commands_seen + stats.ring_dropped_commands,
        pushed_commands,
        "{stats:#?}"
    );
    assert_eq!(stats.accounted(), stats.commands_seen, "{stats:#?}");
    assert_eq!(stats.failed_total(), 0, "{stats:#?}");
    assert_eq!(
        stats.lost_total(),
        backlog,
        "only the shed sessions lose: {stats:#?}"
    );
    assert_eq!(stats.test_errors, 0, "{stats:#?}");
    assert!(
        stats.replayed >= MAX_SESSIONS as u64 * 2,
        "the replayed sessions ran: {stats:#?}"
    );
}
