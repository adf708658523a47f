//! Replay engine against a real, throwaway MariaDB server (skipped loudly when not installed).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mrte_capture::event::{CloseReason, Command, EventSink, Param, ResponseStatus, Value};
use mrte_capture::ring::RingSink;
use mrte_replay::engine::{Engine, ReplayConfig};
use mrte_replay::filter::Filters;
use mrte_replay::pacing::Pacing;
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

fn config(db: &MariaDb) -> ReplayConfig {
    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(&db.dsn(None)).expect("dsn"));
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    cfg
}

/// Commands of the engine's own connections (those that are not `skip`), per thread, with
/// Connect/Quit included.
/// Waits until every such thread has logged its Quit.
async fn replay_threads(db: &MariaDb, skip: &[u64]) -> Vec<Vec<(String, String)>> {
    db.general_log_until(|l| {
        let mut open = std::collections::BTreeSet::new();
        for (id, c, _) in l.iter().filter(|(id, _, _)| !skip.contains(id)) {
            if c == "Connect" {
                open.insert(*id);
            } else if c == "Quit" {
                open.remove(id);
            }
        }
        open.is_empty()
    })
    .await;
    db.general_log_by_thread()
        .into_iter()
        .filter(|(id, _)| !skip.contains(id))
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn general_log_shows_exactly_the_statements_in_order() {
    let Some(db) = MariaDb::start("general_log_shows_exactly_the_statements_in_order") else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop("CREATE DATABASE shop; CREATE DATABASE other; CREATE TABLE shop.t (a INT)")
        .await
        .expect("setup");
    let admin_id = u64::from(a.id());

    let events = vec![
        (1, open(1, 40001)),
        (2, open(2, 40002)),
        (1, login("app", Some("shop"))),
        (2, login("app", Some("shop"))),
        (1, query(0, "SELECT 1")),
        (
            2,
            query(
                0,
                "SELECT 1; SELECT 2, 3 UNION SELECT 4, 5; INSERT INTO t VALUES (7), (8)",
            ),
        ),
        (1, query(1, "INSERT INTO t VALUES (1)")),
        (2, cmd(1, Command::Ping, ok())),
        (1, query(2, "SELECT a FROM t /* s1 */")),
        (
            1,
            cmd(
                3,
                Command::InitDb {
                    schema: "other".into(),
                },
                ok(),
            ),
        ),
        (1, query(4, "SELECT DATABASE()")),
        (1, cmd(5, Command::Quit, Default::default())),
        (1, close(CloseReason::Fin)),
        // Session 2 never sends COM_QUIT and its FIN was never seen: the end of input closes it.
        (2, close(CloseReason::EndOfCapture)),
    ];
    let (stats, outcomes) = replay_all(config(&db), events).await;

    let threads = replay_threads(&db, &[admin_id]).await;
    assert_eq!(
        threads.len(),
        2,
        "one test connection per session: {threads:#?}"
    );
    let s1: Vec<(&str, &str)> = vec![
        ("Connect", "root@localhost on shop using TCP/IP"),
        ("Query", "SELECT 1"),
        // Prod's clock, before the write: the command's capture time.
        ("Query", "SET timestamp=1700000000.001200"),
        ("Query", "INSERT INTO t VALUES (1)"),
        ("Query", "SELECT a FROM t /* s1 */"),
        ("Init DB", "other"),
        ("Query", "SELECT DATABASE()"),
        ("Quit", ""),
    ];
    let s2: Vec<(&str, &str)> = vec![
        ("Connect", "root@localhost on shop using TCP/IP"),
        (
            "Query",
            "SELECT 1; SELECT 2, 3 UNION SELECT 4, 5; INSERT INTO t VALUES (7), (8)",
        ),
        ("Quit", ""),
    ];
    let norm = |v: &Vec<(String, String)>| -> Vec<(String, String)> {
        v.iter()
            .map(|(c, a)| (c.trim().to_owned(), a.trim().to_owned()))
            .collect()
    };
    let want = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(c, a)| (c.to_string(), a.to_string()))
            .collect()
    };
    let got: Vec<_> = threads.iter().map(norm).collect();
    assert!(
        got.contains(&want(&s1)),
        "session 1 not replayed exactly: {got:#?}"
    );
    // MariaDB does not write COM_PING to the general log; its Outcome is checked below.
    assert!(
        got.contains(&want(&s2)),
        "session 2 not replayed exactly: {got:#?}"
    );

    assert_eq!(stats.sessions, 2);
    assert_eq!(stats.sessions_replayed, 2);
    assert_eq!(stats.commands_seen, 8);
    assert_eq!(stats.replayed, 7, "{stats:#?}");
    assert_eq!(stats.replayed_no_response, 1, "the COM_QUIT");
    assert_eq!(stats.test_errors, 0);
    assert_eq!(stats.lost_total(), 0);
    assert_eq!(stats.connects, 2);
    assert_eq!(outcomes.len(), 7);

    let multi = outcomes
        .iter()
        .find(|o| o.session == 2 && o.command == "COM_QUERY")
        .expect("multi-statement outcome");
    let t = multi.test.as_ref().expect("replayed");
    assert_eq!(t.status, ResponseStatus::Ok);
    assert_eq!(t.rows, 3, "rows summed over all result sets: {t:?}");
    assert_eq!(t.affected, 2, "affected rows of the trailing INSERT");
    let ping = outcomes
        .iter()
        .find(|o| o.command == "COM_PING")
        .expect("ping outcome");
    assert_eq!(
        ping.test.as_ref().map(|t| t.status),
        Some(ResponseStatus::Ok)
    );
    let db_out = outcomes
        .iter()
        .find(|o| o.example == "SELECT DATABASE()")
        .expect("select database");
    assert_eq!(db_out.test.as_ref().map(|t| t.rows), Some(1));

    // No connection left behind: only the admin connection remains.
    let n: Option<(String, String)> = a
        .query_first("SHOW STATUS LIKE 'Threads_connected'")
        .await
        .expect("status");
    assert_eq!(n.map(|(_, v)| v).as_deref(), Some("1"));
    let rows: Vec<i32> = a
        .query("SELECT a FROM shop.t ORDER BY a")
        .await
        .expect("rows");
    assert_eq!(rows, vec![1, 7, 8]);
}

fn p(column_type: u8, unsigned: bool, value: Value) -> Param {
    Param {
        column_type,
        unsigned,
        value,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_round_trip_every_parameter_type() {
    let Some(db) = MariaDb::start("prepared_statements_round_trip_every_parameter_type") else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop(
        "CREATE DATABASE ps; CREATE TABLE ps.v (k INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, \
         f FLOAT, d DOUBLE, s VARCHAR(64), b BLOB, dt DATETIME(6), dd DATE, tm TIME(6), \
         n INT NULL, ld LONGBLOB)",
    )
    .await
    .expect("setup");

    let insert = "INSERT INTO v VALUES (?,?,?,?,?,?,?,?,?,?,?,?)";
    let row = |k: i64, i: i64, u: u64, s: &str, neg: bool, ld: Value| {
        vec![
            p(3, false, Value::Int(k)),
            p(8, false, Value::Int(i)),
            p(8, true, Value::UInt(u)),
            p(4, false, Value::Float(1.5)),
            p(5, false, Value::Double(-2.25e10)),
            p(253, false, Value::Bytes(s.as_bytes().into())),
            p(252, false, Value::Bytes(vec![0u8, 1, 2, 255].into())),
            p(
                12,
                false,
                Value::Date {
                    year: 2024,
                    month: 2,
                    day: 29,
                    hour: 23,
                    minute: 59,
                    second: 58,
                    micros: 123_456,
                },
            ),
            p(
                10,
                false,
                Value::Date {
                    year: 1999,
                    month: 12,
                    day: 31,
                    hour: 0,
                    minute: 0,
                    second: 0,
                    micros: 0,
                },
            ),
            p(
                11,
                false,
                Value::Time {
                    negative: neg,
                    days: 1,
                    hours: 2,
                    minutes: 3,
                    seconds: 4,
                    micros: 500_000,
                },
            ),
            p(6, false, Value::Null),
            p(252, false, ld),
        ]
    };
    let exec = |seq, stmt_id, params: Vec<Param>| {
        cmd(
            seq,
            Command::StmtExecute {
                stmt_id,
                flags: 0,
                params: params.into(),
                params_unknown: false,
            },
            ok(),
        )
    };
    let events = vec![
        (1, open(1, 41000)),
        (1, login("app", Some("ps"))),
        (
            1,
            cmd(
                0,
                Command::StmtPrepare {
                    sql: bytes::Bytes::copy_from_slice(insert.as_bytes()),
                },
                prepare_ok(7, 12),
            ),
        ),
        (
            1,
            exec(
                1,
                7,
                row(
                    1,
                    i64::MIN,
                    u64::MAX,
                    "héllo",
                    true,
                    Value::Bytes(b"x".to_vec().into()),
                ),
            ),
        ),
        (
            1,
            cmd(
                2,
                Command::StmtSendLongData {
                    stmt_id: 7,
                    param_id: 11,
                    data: b"long-".to_vec().into(),
                },
                Default::default(),
            ),
        ),
        (
            1,
            cmd(
                3,
                Command::StmtSendLongData {
                    stmt_id: 7,
                    param_id: 11,
                    data: b"data".to_vec().into(),
                },
                Default::default(),
            ),
        ),
        (1, exec(4, 7, row(2, 42, 0, "", false, Value::Null))),
        (
            1,
            cmd(5, Command::StmtClose { stmt_id: 7 }, Default::default()),
        ),
        (
            1,
            cmd(
                6,
                Command::StmtPrepare {
                    sql: b"SELECT k FROM v WHERE i = ? AND s = ?".to_vec().into(),
                },
                prepare_ok(8, 2),
            ),
        ),
        (
            1,
            exec(
                7,
                8,
                vec![
                    p(8, false, Value::Int(42)),
                    p(253, false, Value::Bytes(Box::default())),
                ],
            ),
        ),
        // MariaDB's "last prepared statement" id.
        (
            1,
            exec(
                9,
                u32::MAX,
                vec![
                    p(8, false, Value::Int(42)),
                    p(253, false, Value::Bytes(Box::default())),
                ],
            ),
        ),
        // Execute of a statement prepared before capture: counted as lost, not a panic.
        (1, exec(10, 99, vec![])),
        (1, close(CloseReason::Fin)),
    ];
    let (stats, outcomes) = replay_all(config(&db), events).await;
    assert_eq!(stats.test_errors, 0, "{outcomes:#?}");
    assert_eq!(stats.replayed, 6, "2 prepares, 4 executes: {stats:#?}");
    assert_eq!(stats.lost.get("unknown_statement"), Some(&1));
    assert_eq!(stats.replayed_no_response, 3, "2 long data + close");
    let sel = outcomes
        .iter()
        .filter(|o| o.command == "COM_STMT_EXECUTE")
        .filter_map(|o| o.test.as_ref())
        .map(|t| (t.rows, t.affected))
        .collect::<Vec<_>>();
    assert_eq!(sel, vec![(0, 1), (0, 1), (1, 0), (1, 0)]);

    type Row = (
        i64,
        u64,
        f32,
        f64,
        String,
        Vec<u8>,
        String,
        String,
        String,
        Option<i32>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = a
        .query(
            "SELECT i, u, f, d, s, b, CAST(dt AS CHAR), CAST(dd AS CHAR), CAST(tm AS CHAR), n, ld \
             FROM ps.v ORDER BY k",
        )
        .await
        .expect("read back");
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.0, i64::MIN);
    assert_eq!(r.1, u64::MAX);
    assert_eq!(r.2, 1.5);
    assert_eq!(r.3, -2.25e10);
    assert_eq!(r.4, "héllo");
    assert_eq!(r.5, vec![0, 1, 2, 255]);
    assert_eq!(r.6, "2024-02-29 23:59:58.123456");
    assert_eq!(r.7, "1999-12-31");
    assert_eq!(r.8, "-26:03:04.500000");
    assert_eq!(r.9, None);
    assert_eq!(r.10.as_deref(), Some(&b"x"[..]));
    let r = &rows[1];
    assert_eq!((r.0, r.1, r.4.as_str()), (42, 0, ""));
    assert_eq!(r.8, "26:03:04.500000");
    assert_eq!(
        r.10.as_deref(),
        Some(&b"long-data"[..]),
        "long data bound at execute"
    );

    let log = db
        .general_log_until(|l| l.last().is_some_and(|(_, c, _)| c == "Quit"))
        .await;
    let prepares = log.iter().filter(|(_, c, _)| c == "Prepare").count();
    let closes = log.iter().filter(|(_, c, _)| c == "Close stmt").count();
    assert_eq!(prepares, 2, "{log:#?}");
    assert_eq!(closes, 1, "COM_STMT_CLOSE replayed: {log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_writes_nothing() {
    let Some(db) = MariaDb::start("read_only_mode_writes_nothing") else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop("CREATE DATABASE ro; CREATE TABLE ro.t (a INT)")
        .await
        .expect("setup");
    let admin_id = u64::from(a.id());
    let writes = [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 2",
        "DELETE FROM t",
        "CREATE TABLE t2 (b INT)",
        "SELECT a FROM t FOR UPDATE",
        "SELECT a INTO @x FROM t",
        "select 1; insert into t values (3)",
        "/*!40101 INSERT INTO t VALUES (4) */",
        "REPLACE INTO t VALUES (5)",
        "  ( INSERT INTO t VALUES (6) )",
    ];
    let dangerous = [
        "GRANT ALL ON *.* TO 'x'@'%'",
        "SET GLOBAL max_connections = 5",
        "DROP USER root",
    ];
    let reads = [
        "SELECT a FROM t",
        "SHOW TABLES",
        "SET autocommit = 0",
        "BEGIN",
        "COMMIT",
        "EXPLAIN UPDATE t SET a = 1",
    ];
    let mut events = vec![(1, open(1, 42000)), (1, login("app", Some("ro")))];
    let mut seq = 0;
    for q in writes.iter().chain(&dangerous).chain(&reads) {
        events.push((1, query(seq, q)));
        seq += 1;
    }
    events.push((
        1,
        cmd(
            seq,
            Command::StmtPrepare {
                sql: b"INSERT INTO t VALUES (?)".to_vec().into(),
            },
            prepare_ok(1, 1),
        ),
    ));
    events.push((
        1,
        cmd(
            seq + 1,
            Command::StmtExecute {
                stmt_id: 1,
                flags: 0,
                params: vec![p(3, false, Value::Int(9))].into(),
                params_unknown: false,
            },
            ok(),
        ),
    ));
    events.push((
        1,
        cmd(seq + 2, Command::ProcessKill { connection_id: 1 }, ok()),
    ));
    events.push((1, close(CloseReason::Fin)));

    let mut cfg = config(&db);
    cfg.filters = Filters {
        read_only: true,
        ..Filters::all()
    };
    let (stats, _outcomes) = replay_all(cfg, events).await;

    assert_eq!(
        stats.skipped.get("read_only"),
        Some(&(writes.len() as u64 + 2)),
        "{stats:#?}"
    );
    assert_eq!(
        stats.skipped.get("dangerous"),
        Some(&(dangerous.len() as u64 + 1)),
        "{stats:#?}"
    );
    assert_eq!(stats.replayed, reads.len() as u64);
    assert_eq!(stats.test_errors, 0);

    let n: Option<i64> = a
        .query_first("SELECT COUNT(*) FROM ro.t")
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    let t2: Option<i64> = a
        .query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'ro'")
        .await
        .expect("tables");
    assert_eq!(t2, Some(1));
    let sent: Vec<String> = replay_threads(&db, &[admin_id])
        .await
        .into_iter()
        .flatten()
        .filter(|(c, _)| c == "Query" || c == "Prepare" || c == "Execute")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        sent,
        reads.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_mid_replay_reconnects_and_counts_loss() {
    let Some(mut db) = MariaDb::start("target_killed_mid_replay_reconnects_and_counts_loss") else {
        return;
    };
    {
        let mut a = admin(&db).await;
        a.query_drop("CREATE DATABASE k").await.expect("setup");
        a.disconnect().await.expect("disconnect");
    }
    let (mut sink, rx) = RingSink::new(64);
    let (got, collect) = collector();
    let engine = Engine::new(config(&db));
    let live = engine.live();
    let run = tokio::spawn(engine.run(rx, collect, std::future::pending()));

    sink.push(1, open(1, 43000));
    sink.push(1, login("app", Some("k")));
    sink.push(1, query(0, "SELECT 1"));
    sink.push(
        1,
        cmd(
            1,
            Command::StmtPrepare {
                sql: b"SELECT ? + 1".to_vec().into(),
            },
            prepare_ok(5, 1),
        ),
    );
    let exec = |seq, v| {
        cmd(
            seq,
            Command::StmtExecute {
                stmt_id: 5,
                flags: 0,
                params: vec![p(8, false, Value::Int(v))].into(),
                params_unknown: false,
            },
            ok(),
        )
    };
    sink.push(1, exec(2, 1));
    wait_for("3 replayed", || {
        live.replayed.load(std::sync::atomic::Ordering::Relaxed) == 3
    })
    .await;

    db.kill();
    sink.push(1, query(3, "SELECT 2"));
    sink.push(1, query(4, "SELECT 3"));
    wait_for("2 lost", || {
        live.lost.load(std::sync::atomic::Ordering::Relaxed) == 2
    })
    .await;

    db.restart();
    tokio::time::sleep(Duration::from_millis(300)).await; // past the longest backoff
    sink.push(1, query(5, "SELECT DATABASE()"));
    sink.push(1, exec(6, 41));
    sink.push(1, close(CloseReason::Fin));
    drop(sink);
    let stats = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("engine finished")
        .expect("engine task");
    let outcomes = got.lock().expect("lock").clone();

    assert_eq!(stats.lost_total(), 2, "{stats:#?}");
    assert_eq!(stats.accounted(), stats.commands_seen);
    assert_eq!(stats.reconnects, 1, "{stats:#?}");
    assert_eq!(stats.replayed, 5, "{stats:#?}");
    assert_eq!(stats.test_errors, 0, "{outcomes:#?}");
    assert_eq!(stats.sessions_with_losses, 1);
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert_eq!(
        failed.len(),
        2,
        "every lost command is reported: {outcomes:#?}"
    );
    assert!(failed.iter().all(|o| o.test.is_none()));

    // After the restart: the db was re-established and the statement re-prepared from its text.
    let log = db
        .general_log_until(|l| l.last().is_some_and(|(_, c, _)| c == "Quit"))
        .await;
    let last_connect = log
        .iter()
        .rposition(|(_, c, _)| c == "Connect")
        .expect("a connect after restart");
    let tail: Vec<(&str, &str)> = log[last_connect..]
        .iter()
        .map(|(_, c, a)| (c.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        tail,
        vec![
            ("Connect", "root@localhost on k using TCP/IP"),
            ("Query", "SELECT DATABASE()"),
            ("Prepare", "SELECT ? + 1"),
            ("Execute", "SELECT 41 + 1"),
            ("Quit", ""),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midstream_session_takes_db_and_user_from_prod_processlist() {
    let Some(db) = MariaDb::start("midstream_session_takes_db_and_user_from_prod_processlist")
    else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop("CREATE DATABASE proddb; CREATE DATABASE fallback; USE proddb")
        .await
        .expect("setup");
    // The "production" session is the admin connection itself: find its client port.
    let host: Option<String> = a
        .query_first("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
        .await
        .expect("host");
    let port: u16 = host
        .as_deref()
        .and_then(|h| h.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("client port");

    let midstream = |id: u64, port: u16| match open(id, port) {
        mrte_capture::event::SessionEvent::Open(mut o) => {
            o.midstream = true;
            o.key.client = format!("127.0.0.1:{port}").parse().expect("addr");
            mrte_capture::event::SessionEvent::Open(o)
        }
        _ => unreachable!(),
    };
    let events = vec![
        (1, midstream(1, port)),
        (1, query(0, "SELECT DATABASE() /* known */")),
        (1, close(CloseReason::Fin)),
        (2, midstream(2, port.wrapping_add(1).max(1))),
        (2, query(0, "SELECT DATABASE() /* unknown */")),
        (2, close(CloseReason::Fin)),
    ];
    let mut cfg = config(&db);
    cfg.prod = Some(TargetDsn::parse_no_env(&db.dsn(None)).expect("dsn"));
    cfg.default_db = Some("fallback".into());
    let (stats, outcomes) = replay_all(cfg, events).await;
    assert_eq!(stats.sessions_midstream, 2);
    assert_eq!(stats.sessions_processlist_resolved, 1, "{stats:#?}");
    assert_eq!(stats.test_errors, 0, "{outcomes:#?}");
    let log = db.general_log_entries();
    let connect_of = |marker: &str| -> Option<String> {
        let (id, _, _) = log
            .iter()
            .find(|(_, c, a)| c == "Query" && a.contains(marker))?;
        log.iter()
            .find(|(i, c, _)| i == id && c == "Connect")
            .map(|(_, _, a)| a.clone())
    };
    assert_eq!(
        connect_of("/* known */").as_deref(),
        Some("root@localhost on proddb using TCP/IP")
    );
    assert_eq!(
        connect_of("/* unknown */").as_deref(),
        Some("root@localhost on fallback using TCP/IP")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_connection_is_closed_and_reopened_on_demand() {
    let Some(db) = MariaDb::start("idle_session_connection_is_closed_and_reopened_on_demand")
    else {
        return;
    };
    admin(&db)
        .await
        .query_drop("CREATE DATABASE idle")
        .await
        .expect("setup");
    let (mut sink, rx) = RingSink::new(64);
    let mut cfg = config(&db);
    cfg.idle_timeout = Duration::from_millis(300);
    let engine = Engine::new(cfg);
    let live = engine.live();
    let run = tokio::spawn(engine.run(rx, |_| {}, std::future::pending()));
    sink.push(1, open(1, 44000));
    sink.push(1, login("app", Some("idle")));
    sink.push(1, query(0, "SELECT 'before idle'"));
    wait_for("replayed", || {
        live.replayed.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    wait_for("idle close", || {
        live.connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    })
    .await;
    sink.push(1, query(1, "SELECT 'after idle'"));
    sink.push(1, close(CloseReason::Idle));
    drop(sink);
    let stats = run.await.expect("engine");
    assert_eq!(stats.accounted(), stats.commands_seen);
    assert_eq!(stats.idle_closes, 1, "{stats:#?}");
    assert_eq!(stats.connects, 2);
    assert_eq!((stats.reopened_after_idle, stats.reconnects), (1, 0));
    assert_eq!(stats.replayed, 2);
    assert_eq!(stats.lost_total(), 0);
    let replay_conns = |l: &[(u64, String, String)]| -> (Vec<u64>, usize) {
        let ids: Vec<u64> = l
            .iter()
            .filter(|(_, c, a)| c == "Connect" && a.contains(" on idle "))
            .map(|(i, _, _)| *i)
            .collect();
        let quits = l
            .iter()
            .filter(|(i, c, _)| c == "Quit" && ids.contains(i))
            .count();
        (ids, quits)
    };
    let log = db.general_log_until(|l| replay_conns(l).1 >= 2).await;
    let (ids, quits) = replay_conns(&log);
    assert_eq!(
        (ids.len(), quits),
        (2, 2),
        "two replay connections, both closed: {log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pacing_waits_for_the_schedule_and_skip_idle_compresses() {
    let Some(db) = MariaDb::start("offline_pacing_waits_for_the_schedule_and_skip_idle_compresses")
    else {
        return;
    };
    let at = |seq: u64, offset_ms: u64| {
        let mut e = query(seq, "SELECT 1");
        if let mrte_capture::event::SessionEvent::Command(c) = &mut e {
            c.ts_us = 1_700_000_000_000_000 + offset_ms * 1000;
        }
        e
    };
    let events = || {
        vec![
            (1, open(1, 45000)),
            (1, at(0, 0)),
            (1, at(1, 400)),
            (1, at(2, 800)),
            (1, at(3, 3_600_000)),
            (1, close(CloseReason::Fin)),
        ]
    };
    let mut cfg = config(&db);
    cfg.pacing = Pacing::Offline {
        speed: Some(2.0),
        skip_idle: Some(Duration::from_millis(600)),
    };
    let started = Instant::now();
    let (stats, _) = tokio::time::timeout(Duration::from_secs(60), replay_all(cfg, events()))
        .await
        .expect("an hour of idle is compressed");
    let took = started.elapsed();
    // Schedule at 2x: 0, 200, 400, then +600 ms (compressed from 1 h) / 2 = 700 ms.
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert_eq!(stats.replayed, 4);
    assert_eq!(stats.lag_us.count, 4);
    assert!(stats.lag_us.max >= stats.lag_us.p50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_db_maps_apply_at_connect_init_db_and_change_user() {
    let Some(db) = MariaDb::start("user_and_db_maps_apply_at_connect_init_db_and_change_user")
    else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop(
        "CREATE DATABASE shop_test; CREATE DATABASE crm_test; \
         CREATE USER 'tapp'@'%' IDENTIFIED BY 'tpw'; GRANT ALL ON *.* TO 'tapp'@'%'; \
         CREATE USER 'tcrm'@'%' IDENTIFIED BY 'cpw'; GRANT ALL ON *.* TO 'tcrm'@'%'",
    )
    .await
    .expect("setup");
    let events = vec![
        (1, open(1, 46000)),
        (1, login("app", Some("shop"))),
        (1, query(0, "SELECT CURRENT_USER(), DATABASE()")),
        (
            1,
            cmd(
                1,
                Command::InitDb {
                    schema: "crm".into(),
                },
                ok(),
            ),
        ),
        (
            1,
            cmd(
                2,
                Command::ChangeUser {
                    user: "crm".into(),
                    db: Some("shop".into()),
                    auth_plugin: None,
                },
                ok(),
            ),
        ),
        (1, query(3, "SELECT 'after change user'")),
        (1, cmd(4, Command::ResetConnection, ok())),
        (1, query(5, "SELECT 'after reset'")),
        (1, close(CloseReason::Fin)),
    ];
    let mut cfg = config(&db);
    cfg.identities.add_user_map("app=tapp:tpw").expect("map");
    cfg.identities.add_user_map("crm=tcrm:cpw").expect("map");
    cfg.identities.add_db_map("shop=shop_test").expect("map");
    cfg.identities.add_db_map("crm=crm_test").expect("map");
    let (stats, outcomes) = replay_all(cfg, events).await;
    assert_eq!(stats.test_errors, 0, "{outcomes:#?}");
    assert_eq!(stats.replayed, 6);
    let log = db
        .general_log_until(|l| {
            l.iter()
                .any(|(_, c, a)| c == "Query" && a.contains("after reset"))
        })
        .await;
    let id = log
        .iter()
        .find(|(_, c, a)| c == "Connect" && a.starts_with("tapp@"))
        .map(|(i, _, _)| *i)
        .expect("connected as the mapped user");
    let seq: Vec<(&str, &str)> = log
        .iter()
        .filter(|(i, _, _)| *i == id)
        .map(|(_, c, a)| (c.as_str(), a.as_str()))
        .take(6)
        .collect();
    assert_eq!(
        seq[0],
        ("Connect", "tapp@localhost on shop_test using TCP/IP")
    );
    assert_eq!(seq[1], ("Query", "SELECT CURRENT_USER(), DATABASE()"));
    assert_eq!(seq[2], ("Init DB", "crm_test"));
    assert_eq!(seq[3].0, "Change user");
    assert!(
        seq[3].1.starts_with("tcrm@localhost on shop_test"),
        "{:?}",
        seq[3]
    );
    assert_eq!(seq[4], ("Query", "SELECT 'after change user'"));
}
