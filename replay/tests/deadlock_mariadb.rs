//! Deadlock retries against a real, throwaway MariaDB server (skipped loudly when not installed):
//! a replayed transaction that test's InnoDB picks as a deadlock victim, where prod's committed
//! it, is sent again and test ends with prod's rows; with `deadlock_retries = 0` it stays a
//! test-only error and its rows are missing. Under `--sync commit` a later session's write
//! waits for the retried transaction's commit and lands on top of it, as on prod.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mrte_capture::commit::ER_LOCK_DEADLOCK;
use mrte_capture::event::{CloseReason, Command, Response, SessionEvent};
use mrte_capture::mysql::consts::status;
use mrte_replay::engine::{EngineStats, ReplayConfig};
use mrte_replay::pacing::Pacing;
use mrte_replay::sync::{SyncConfig, SyncMode};
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

/// A query prod answered OK, inside a transaction or not.
fn q(seq: u64, sql: &str, in_trans: bool) -> SessionEvent {
    cmd(
        seq,
        Command::Query {
            sql: sql.as_bytes().to_vec().into(),
            attributes: Vec::new(),
        },
        Response {
            server_status: if in_trans { status::IN_TRANS } else { 0 },
            ..ok()
        },
    )
}

/// The captured session: one transaction that prod committed.
fn session() -> Vec<(u64, SessionEvent)> {
    vec![
        (1, open(1, 42001)),
        (1, login("root", Some("shop"))),
        (1, q(0, "BEGIN", true)),
        (1, q(1, "UPDATE t SET v = 1 WHERE id = 1", true)),
        (1, q(2, "UPDATE t SET v = 1 WHERE id = 2", true)),
        (1, q(3, "COMMIT", false)),
        (1, close(CloseReason::Fin)),
    ]
}

async fn reset(a: &mut mysql_async::Conn) {
    a.query_drop(
        "DROP DATABASE IF EXISTS shop; CREATE DATABASE shop;
         CREATE TABLE shop.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
         INSERT INTO shop.t VALUES (1, 0), (2, 0);
         CREATE TABLE shop.heavy (id INT PRIMARY KEY, v INT) ENGINE=InnoDB;
         INSERT INTO shop.heavy SELECT seq, 0 FROM shop.seq_1_to_200",
    )
    .await
    .expect("setup");
}

/// A test-server client holding row 2 (and many rows: InnoDB rolls back the lighter
/// transaction, the replayed one); [`deadlock`] goes on once the replay runs.
async fn blocker(dsn: String) -> (mysql_async::Conn, mysql_async::Conn) {
    let connect = || async {
        let opts =
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&dsn).expect("dsn"))
                .prefer_socket(false);
        mysql_async::Conn::new(opts).await.expect("connect")
    };
    let mut b = connect().await;
    let watch = connect().await;
    b.query_drop("BEGIN").await.expect("begin");
    b.query_drop("UPDATE shop.heavy SET v = v + 1")
        .await
        .expect("heavy");
    b.query_drop("UPDATE shop.t SET v = 100 WHERE id = 2")
        .await
        .expect("row 2");
    (b, watch)
}

/// The blocker waits until the replay waits on row 2, then takes row 1: a deadlock on test
/// only. It commits once it has row 1.
async fn deadlock(mut b: mysql_async::Conn, mut watch: mysql_async::Conn) {
    let t = Instant::now();
    loop {
        let waiting: Option<u64> = watch
            .query_first(
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE info = 'UPDATE t SET v = 1 WHERE id = 2'",
            )
            .await
            .expect("innodb_trx");
        if waiting.unwrap_or(0) > 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the replay never waited on row 2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.query_drop("UPDATE shop.t SET v = 100 WHERE id = 1")
        .await
        .expect("the blocker is not the victim");
    b.query_drop("COMMIT").await.expect("commit");
}

/// `q` with prod's commit marks (see [`committing`]).
fn marked(seq: u64, sql: &str, in_trans: bool, order: u64, wm: u64) -> SessionEvent {
    committing(q(seq, sql, in_trans), order, wm)
}

async fn run(db: &MariaDb, retries: u32) -> (EngineStats, Vec<mrte_replay::Outcome>) {
    run_events(db, retries, SyncMode::None, session()).await
}

async fn run_events(
    db: &MariaDb,
    retries: u32,
    sync: SyncMode,
    events: Vec<(u64, SessionEvent)>,
) -> (EngineStats, Vec<mrte_replay::Outcome>) {
    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(&db.dsn(Some("shop"))).expect("dsn"));
    cfg.pacing = Pacing::Offline {
        speed: None,
        skip_idle: None,
    };
    cfg.deadlock_retries = retries;
    cfg.sync = SyncConfig {
        mode: sync,
        timeout: Duration::from_secs(20),
        hint: true,
    };
    let (b, watch) = blocker(db.dsn(None)).await;
    let blocked = tokio::spawn(deadlock(b, watch));
    let out = replay_all(cfg, events).await;
    if let Err(e) = blocked.await {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(&db.general_log).unwrap_or_default()
        );
    }
    out
}

async fn rows(a: &mut mysql_async::Conn) -> Vec<(i32, i32)> {
    a.query("SELECT id, v FROM shop.t ORDER BY id")
        .await
        .expect("select")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_only_deadlock_victim_is_sent_again_and_test_ends_as_prod() {
    let Some(db) = MariaDb::start("deadlock_retry") else {
        return;
    };
    let mut a = admin(&db).await;

    // Retries off: the victim's rows are missing on test, the blocker's stay.
    reset(&mut a).await;
    let (s, out) = run(&db, 0).await;
    assert_eq!(s.deadlock_retries, 0, "{s:#?}");
    assert_eq!(
        s.deadlock_retries_refused.get("disabled"),
        Some(&1),
        "{s:#?}"
    );
    let victim = out
        .iter()
        .find(|o| o.example == "UPDATE t SET v = 1 WHERE id = 2")
        .expect("the victim's outcome");
    assert_eq!(
        victim.test.as_ref().and_then(|t| t.error_code),
        Some(ER_LOCK_DEADLOCK)
    );
    assert_eq!(rows(&mut a).await, vec![(1, 100), (2, 100)]);

    // Retries on: the transaction goes again after the blocker commits; test ends as prod.
    reset(&mut a).await;
    let (s, out) = run(&db, 3).await;
    assert_eq!(s.deadlock_retries, 1, "{s:#?}");
    assert_eq!(
        s.deadlock_retry_statements, 2,
        "BEGIN and the first UPDATE: {s:#?}"
    );
    assert_eq!(s.test_errors, 0, "{s:#?}");
    assert_eq!(s.replayed, 4, "each captured command answered once: {s:#?}");
    assert!(s.deadlock_retries_refused.is_empty(), "{s:#?}");
    assert_eq!(out.len(), 4);
    assert!(out
        .iter()
        .all(|o| o.test.as_ref().is_some_and(|t| t.error_code.is_none())));
    assert_eq!(rows(&mut a).await, vec![(1, 1), (2, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_gate_waits_for_a_retried_commit() {
    let Some(db) = MariaDb::start("deadlock_retry_gate") else {
        return;
    };
    let mut a = admin(&db).await;
    // Session 1's transaction is prod's commit 1; session 2 writes row 1 after it (commit 2).
    let events = vec![
        (1, open(1, 42001)),
        (2, open(2, 42002)),
        (1, login("root", Some("shop"))),
        (2, login("root", Some("shop"))),
        (1, marked(0, "BEGIN", true, 0, 0)),
        (1, marked(1, "UPDATE t SET v = 1 WHERE id = 1", true, 0, 0)),
        (1, marked(2, "UPDATE t SET v = 1 WHERE id = 2", true, 0, 0)),
        (1, marked(3, "COMMIT", false, 1, 0)),
        (2, marked(0, "UPDATE t SET v = 3 WHERE id = 1", false, 2, 1)),
        (1, close(CloseReason::Fin)),
        (2, close(CloseReason::Fin)),
    ];
    reset(&mut a).await;
    let (s, _) = run_events(&db, 3, SyncMode::Commit, events).await;
    assert_eq!(s.deadlock_retries, 1, "{s:#?}");
    assert_eq!(s.test_errors, 0, "{s:#?}");
    let g = s.sync.expect("sync stats");
    assert_eq!(
        (g.commits, g.commits_replied, g.sync_timeouts),
        (2, 2, 0),
        "{g:?}"
    );
    // Prod's end: session 1's rows, then session 2's write of row 1 on top.
    assert_eq!(rows(&mut a).await, vec![(1, 3), (2, 1)]);
}
