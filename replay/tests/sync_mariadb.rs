//! `--sync commit` against a real, throwaway MariaDB server (skipped loudly when not installed):
//! commits land in prod's order across sessions, and a commit that is skipped on test or never
//! reaches the replay does not hold the others forever.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mrte_capture::event::{CloseReason, SessionEvent};
use mrte_replay::engine::{EngineStats, ReplayConfig};
use mrte_replay::filter::{FilterArgs, Filters};
use mrte_replay::pacing::Pacing;
use mrte_replay::sync::{SyncConfig, SyncMode};
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

fn config(db: &MariaDb, mode: SyncMode, timeout: Duration) -> ReplayConfig {
    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(&db.dsn(Some("shop"))).expect("dsn"));
    cfg.pacing = Pacing::Offline {
        speed: None,
        skip_idle: None,
    };
    cfg.sync = SyncConfig {
        mode,
        timeout,
        hint: true,
    };
    cfg
}

/// A query with commit marks (see [`committing`]).
fn marked(seq: u64, sql: &str, order: u64, wm: u64) -> SessionEvent {
    committing(query(seq, sql), order, wm)
}

async fn replay(cfg: ReplayConfig, events: Vec<(u64, SessionEvent)>) -> EngineStats {
    replay_all(cfg, events).await.0
}

/// Session 1 commits `v='a'` (commit 1) after a slow statement; session 2 commits `v='b'`
/// (commit 2), sent on prod after commit 1.
fn two_writers(commit1: bool) -> Vec<(u64, SessionEvent)> {
    let mut ev = vec![
        (1, open(1, 41001)),
        (2, open(2, 41002)),
        (1, login("app", Some("shop"))),
        (2, login("app", Some("shop"))),
        (1, marked(0, "SELECT SLEEP(0.4)", 0, 0)),
    ];
    if commit1 {
        ev.push((1, marked(1, "UPDATE t SET v='a'", 1, 0)));
    }
    ev.extend([
        (2, marked(0, "UPDATE t SET v='b'", 2, 1)),
        (1, close(CloseReason::Fin)),
        (2, close(CloseReason::Fin)),
    ]);
    ev
}

async fn setup(db: &MariaDb) -> mysql_async::Conn {
    let mut a = admin(db).await;
    a.query_drop(
        "CREATE DATABASE shop; CREATE TABLE shop.t (v VARCHAR(8)); INSERT INTO shop.t VALUES ('-')",
    )
    .await
    .expect("setup");
    a
}

async fn value(a: &mut mysql_async::Conn) -> String {
    a.query_first::<String, _>("SELECT v FROM shop.t")
        .await
        .expect("select")
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_land_in_prod_order_across_sessions() {
    let Some(db) = MariaDb::start("commits_land_in_prod_order_across_sessions") else {
        return;
    };
    let mut a = setup(&db).await;
    // Sessions run free: session 2's commit lands first and session 1's overwrites it.
    let s = replay(
        config(&db, SyncMode::None, Duration::from_secs(20)),
        two_writers(true),
    )
    .await;
    assert!(s.sync.is_none());
    assert_eq!(value(&mut a).await, "a", "without sync the order is test's");
    // With the gate, prod's order: 'a' then 'b'.
    let s = replay(
        config(&db, SyncMode::Commit, Duration::from_secs(20)),
        two_writers(true),
    )
    .await;
    assert_eq!(value(&mut a).await, "b", "prod's commit order");
    let g = s.sync.expect("sync stats");
    assert_eq!((g.commits, g.commits_replied, g.sync_timeouts), (2, 2, 0));
    assert_eq!(g.waits, 1, "{g:?}");
    assert!(
        g.wait_us_max >= 300_000,
        "session 2 waited for the slow commit: {g:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_skipped_or_never_seen_on_test_does_not_hold_the_others() {
    let Some(db) = MariaDb::start("a_commit_skipped_or_never_seen_on_test") else {
        return;
    };
    let mut a = setup(&db).await;
    // Commit 1 is filtered out on test: it is settled at once, no timeout.
    let mut cfg = config(&db, SyncMode::Commit, Duration::from_secs(20));
    cfg.filters = Filters::from_args(&FilterArgs {
        exclude: Some("v='a'".into()),
        ..FilterArgs::default()
    })
    .expect("filters");
    let t = Instant::now();
    let s = replay(cfg, two_writers(true)).await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let g = s.sync.expect("sync stats");
    assert_eq!(
        (g.commits, g.commits_given_up, g.sync_timeouts),
        (2, 1, 0),
        "{g:?}"
    );
    assert_eq!(value(&mut a).await, "b");
    // Commit 1 never reaches the replay (a ring overflow would do that): one timeout releases it.
    let t = Instant::now();
    let s = replay(
        config(&db, SyncMode::Commit, Duration::from_millis(300)),
        two_writers(false),
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let g = s.sync.expect("sync stats");
    assert_eq!(
        (g.commits, g.sync_timeouts, g.commits_released),
        (1, 1, 1),
        "{g:?}"
    );
    assert_eq!(g.timeout_samples[0].held_by, 1);
    assert_eq!(s.replayed, 2);
}
