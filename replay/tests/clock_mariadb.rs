//! Prod's clock on a real, throwaway MariaDB server (skipped loudly when not installed): the
//! times a replayed session stores through NOW(6), UNIX_TIMESTAMP(), DEFAULT CURRENT_TIMESTAMP
//! and ON UPDATE CURRENT_TIMESTAMP are prod's (the capture's), not the replay's; with
//! `prod_clock` off they are the replay's own. The general log shows each `SET timestamp` right
//! before its statement.

mod common;

use common::*;
use mrte_capture::event::CloseReason;
use mrte_replay::engine::{EngineStats, ReplayConfig};
use mrte_replay::pacing::Pacing;
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

/// Prod time of the session's command `seq` ([`cmd`]'s capture times), µs since the epoch.
fn prod_us(seq: u64) -> u64 {
    1_700_000_000_000_200 + seq * 1000
}

fn session() -> Vec<(u64, mrte_capture::event::SessionEvent)> {
    vec![
        (1, open(1, 42101)),
        (1, login("root", Some("shop"))),
        (
            1,
            query(0, "INSERT INTO c (id, v, d) VALUES (1, 0, NOW(6))"),
        ),
        (1, query(1, "UPDATE c SET v = 1 WHERE id = 1")),
        (1, query(2, "SELECT id FROM c")),
        (
            1,
            query(
                3,
                "INSERT INTO c (id, v, d) VALUES (2, UNIX_TIMESTAMP(), NULL)",
            ),
        ),
        (1, close(CloseReason::Fin)),
    ]
}

async fn run(db: &MariaDb, prod_clock: bool) -> (EngineStats, Vec<Row>) {
    let mut a = admin(db).await;
    a.query_drop(
        "DROP DATABASE IF EXISTS shop; CREATE DATABASE shop;
         CREATE TABLE shop.c (id INT PRIMARY KEY, v BIGINT, d DATETIME(6) NULL,
           created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
           changed TIMESTAMP NULL ON UPDATE CURRENT_TIMESTAMP)",
    )
    .await
    .expect("setup");
    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(&db.dsn(Some("shop"))).expect("dsn"));
    cfg.pacing = Pacing::Offline {
        speed: None,
        skip_idle: None,
    };
    cfg.prod_clock = prod_clock;
    let (stats, _) = replay_all(cfg, session()).await;
    let rows: Vec<Row> = a
        .query(
            "SELECT id, v, CAST(UNIX_TIMESTAMP(d) AS CHAR), CAST(UNIX_TIMESTAMP(created) AS CHAR),
                    CAST(UNIX_TIMESTAMP(changed) AS CHAR)
             FROM shop.c ORDER BY id",
        )
        .await
        .expect("rows");
    (stats, rows)
}

type Row = (i32, i64, Option<String>, String, Option<String>);

/// Seconds and microseconds of a prod time, as UNIX_TIMESTAMP() prints a TIMESTAMP(6).
fn secs6(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_session_stores_prods_times() {
    let Some(db) = MariaDb::start("prod_clock") else {
        return;
    };
    let (s, rows) = run(&db, true).await;
    assert_eq!(s.replayed, 4, "{s:#?}");
    assert_eq!(s.test_errors, 0, "{s:#?}");
    // Three statements may read the clock (two INSERTs, the UPDATE); the SELECT comes a
    // millisecond after the last set and reads none.
    assert_eq!((s.prod_clock_sets, s.prod_clock_errors), (3, 0), "{s:#?}");
    assert_eq!(
        rows,
        vec![
            (
                1,
                1,
                Some(secs6(prod_us(0))),
                secs6(prod_us(0)),
                Some((prod_us(1) / 1_000_000).to_string()),
            ),
            (
                2,
                (prod_us(3) / 1_000_000) as i64,
                None,
                secs6(prod_us(3)),
                None
            ),
        ]
    );
    // On the wire: each SET just before its statement, on the replay's connection.
    let log: Vec<String> = db
        .general_log_by_thread()
        .into_values()
        .find(|l| l.iter().any(|(_, q)| q.starts_with("INSERT INTO c")))
        .expect("the replay's connection in the general log")
        .into_iter()
        .filter(|(kind, _)| kind == "Query")
        .map(|(_, q)| q)
        .collect();
    let want: Vec<String> = [
        format!("SET timestamp={}", secs6(prod_us(0))),
        "INSERT INTO c (id, v, d) VALUES (1, 0, NOW(6))".into(),
        format!("SET timestamp={}", secs6(prod_us(1))),
        "UPDATE c SET v = 1 WHERE id = 1".into(),
        "SELECT id FROM c".into(),
        format!("SET timestamp={}", secs6(prod_us(3))),
        "INSERT INTO c (id, v, d) VALUES (2, UNIX_TIMESTAMP(), NULL)".into(),
    ]
    .into();
    assert_eq!(log, want);

    // Off: the replay's own clock (this machine's, years after the capture's).
    let (s, rows) = run(&db, false).await;
    assert_eq!(
        (s.replayed, s.test_errors, s.prod_clock_sets),
        (4, 0, 0),
        "{s:#?}"
    );
    let later = |t: &str| t.split('.').next().unwrap().parse::<u64>().unwrap() > 1_750_000_000;
    assert!(later(&rows[0].3), "{rows:?}");
    assert!(rows[1].1 > 1_750_000_000, "{rows:?}");
}

/// An INSERT whose prod OK reported generated id `id` (`rows` rows).
fn insert(seq: u64, sql: &str, rows: u64, id: u64) -> mrte_capture::event::SessionEvent {
    cmd(
        seq,
        mrte_capture::event::Command::Query {
            sql: sql.as_bytes().to_vec().into(),
            attributes: Vec::new(),
        },
        mrte_capture::event::Response {
            affected: rows,
            last_insert_id: id,
            ..ok()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_get_prods_auto_increment_ids() {
    let Some(db) = MariaDb::start("prod_insert_id") else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop(
        "DROP DATABASE IF EXISTS shop; CREATE DATABASE shop;
         CREATE TABLE shop.n (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(8))",
    )
    .await
    .expect("setup");
    // On prod the two sessions' INSERTs overlapped and session 2's got id 1; session 1's
    // two rows got 2 and 3. By capture time session 1's goes first on test.
    let events = vec![
        (1, open(1, 42201)),
        (2, open(2, 42202)),
        (1, login("root", Some("shop"))),
        (2, login("root", Some("shop"))),
        (1, insert(0, "INSERT INTO n (v) VALUES ('a'), ('a2')", 2, 2)),
        (2, query(0, "SELECT 1")),
        (2, insert(1, "INSERT INTO n (v) VALUES ('b')", 1, 1)),
        (1, query(1, "SELECT 1")),
        (1, query(2, "SELECT 2")),
        (1, insert(3, "INSERT INTO n (v) VALUES ('c')", 1, 4)),
        // prod's OK reports an explicit id too: the forced id goes unused on test, and the next
        // write (a multi-statement text: no id of its own) must not inherit it.
        (
            1,
            insert(4, "INSERT INTO n (id, v) VALUES (50, 'e')", 1, 50),
        ),
        (1, query(5, "INSERT INTO n (v) VALUES ('f'); SELECT 1")),
        (1, close(CloseReason::Fin)),
        (2, close(CloseReason::Fin)),
    ];
    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(&db.dsn(Some("shop"))).expect("dsn"));
    cfg.pacing = Pacing::Offline {
        speed: None,
        skip_idle: None,
    };
    let (s, _) = replay_all(cfg, events).await;
    assert_eq!((s.replayed, s.test_errors), (8, 0), "{s:#?}");
    assert_eq!(s.prod_insert_ids, 4, "{s:#?}");
    let rows: Vec<(i32, String)> = a
        .query("SELECT id, v FROM shop.n ORDER BY id")
        .await
        .expect("rows");
    let want: Vec<(i32, String)> = [
        (1, "b"),
        (2, "a"),
        (3, "a2"),
        (4, "c"),
        (50, "e"),
        (51, "f"),
    ]
    .into_iter()
    .map(|(i, v)| (i, v.to_string()))
    .collect();
    assert_eq!(rows, want);
}
