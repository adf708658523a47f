//! Replay throughput against a throwaway MariaDB, beside a plain mysql_async client loop with the
//! same concurrency on the same server. A measurement, not a test: it asserts only correctness.
//!
//! `cargo test --release -p mrte-replay --test throughput -- --ignored --nocapture`
//! (env MRTE_TP_SESSIONS, MRTE_TP_QUERIES override the size).

mod common;

use std::time::Instant;

use common::*;
use mrte_capture::event::{CloseReason, EventSink};
use mrte_capture::ring::RingSink;
use mrte_replay::engine::{Engine, ReplayConfig};
use mrte_replay::pacing::Pacing;
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn replay_throughput_vs_plain_client() {
    let Some(db) = MariaDb::start("replay_throughput_vs_plain_client") else {
        return;
    };
    let sessions = env("MRTE_TP_SESSIONS", 16);
    let queries = env("MRTE_TP_QUERIES", 5000);
    let mut a = admin(&db).await;
    a.query_drop(
        "SET GLOBAL general_log = 0; CREATE DATABASE tp; \
         CREATE TABLE tp.t (id INT PRIMARY KEY, v VARCHAR(32)); \
         USE tp; INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_1_to_1000",
    )
    .await
    .expect("setup");
    let sql = |i: u64| format!("SELECT v FROM t WHERE id = {}", i % 1000 + 1);
    let dsn = db.dsn(Some("tp"));
    let target = db.dsn(None);
    let total = sessions * queries;
    let qps = |d: std::time::Duration| total as f64 / d.as_secs_f64();
    // Alternate the two (the machine is shared; take the best of each).
    let (mut best_plain, mut best_replay) = (0f64, 0f64);
    for round in 0..4 {
        // Alternate which goes first, so neither always runs on a warmer server.
        let (plain, (replay, lag_p99)) = if round % 2 == 0 {
            let p = plain_client(&dsn, sessions, queries, sql).await;
            (p, replay_run(&target, sessions, queries, sql).await)
        } else {
            let r = replay_run(&target, sessions, queries, sql).await;
            (plain_client(&dsn, sessions, queries, sql).await, r)
        };
        best_plain = best_plain.max(qps(plain));
        best_replay = best_replay.max(qps(replay));
        println!(
            "round={round} plain_client_qps={:.0} replay_qps={:.0} lag_p99_us={lag_p99}",
            qps(plain),
            qps(replay)
        );
    }
    println!(
        "sessions={sessions} queries/session={queries} best plain_client_qps={best_plain:.0} best replay_qps={best_replay:.0} ratio={:.3}",
        best_replay / best_plain
    );
}

async fn plain_client(
    dsn: &str,
    sessions: u64,
    queries: u64,
    sql: fn(u64) -> String,
) -> std::time::Duration {
    // One plain client connection per session, same statements, as fast as possible.
    let started = Instant::now();
    let mut handles = Vec::new();
    for s in 0..sessions {
        let opts =
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(dsn).expect("dsn"))
                .prefer_socket(false);
        handles.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.expect("connect");
            for i in 0..queries {
                let _: Vec<String> = c.query(sql(s * queries + i)).await.expect("query");
            }
            c.disconnect().await.expect("disconnect");
        }));
    }
    for h in handles {
        h.await.expect("client");
    }
    started.elapsed()
}

async fn replay_run(
    target: &str,
    sessions: u64,
    queries: u64,
    sql: fn(u64) -> String,
) -> (std::time::Duration, u64) {
    // Replay of the same sessions at --speed max, fed through rings with backpressure.
    let (mut sink, rx) = RingSink::new(queries as usize + 4);
    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(target).expect("dsn"));
    cfg.pacing = Pacing::Offline {
        speed: None,
        skip_idle: None,
    };
    let mut events = Vec::with_capacity((sessions * (queries + 3)) as usize);
    for s in 0..sessions {
        events.push((s, open(s, 20_000 + s as u16)));
        events.push((s, login("app", Some("tp"))));
    }
    for i in 0..queries {
        for s in 0..sessions {
            events.push((s, query(i, &sql(s * queries + i))));
        }
    }
    for s in 0..sessions {
        events.push((s, close(CloseReason::Fin)));
    }
    // Rings filled before the clock starts: this measures the engine, not the feeder.
    for (s, ev) in events {
        sink.push(s, ev);
    }
    drop(sink);
    let engine = Engine::new(cfg);
    let started = Instant::now();
    let stats = engine.run(rx, |_| {}, std::future::pending()).await;
    let replay = started.elapsed();
    let total = sessions * queries;
    assert_eq!(stats.replayed, total);
    assert_eq!(stats.test_errors + stats.lost_total(), 0);
    (replay, stats.lag_us.p99)
}
