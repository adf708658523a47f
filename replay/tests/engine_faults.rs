//! Engine faults. Without a server: a dead target (127.0.0.1 on a port nobody listens on),
//! skipped sessions, ring overflow, shutdown. With a throwaway MariaDB (skipped loudly when not
//! installed): every connect refused, the ed25519 auth plugin, the server killed and restarted,
//! the server frozen with SIGSTOP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mrte_capture::event::{CloseReason, EventSink, Login, SessionEvent};
use mrte_capture::ring::RingSink;
use mrte_replay::accounting::Accounting;
use mrte_replay::engine::{Engine, ReplayConfig};
use mrte_replay::filter::Filters;
use mrte_replay::pacing::Pacing;
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_target_counts_every_command_as_lost() {
    let (mut sink, rx) = RingSink::new(64);
    sink.push(1, open(1, 50000));
    sink.push(1, login("app", None));
    for i in 0..10 {
        sink.push(1, query(i, "SELECT 1"));
    }
    sink.push(1, close(CloseReason::Fin));
    drop(sink);
    let (got, collect) = collector();
    let stats = tokio::time::timeout(
        Duration::from_secs(30),
        Engine::new(dead_target()).run(rx, collect, std::future::pending()),
    )
    .await
    .expect("no hang");
    assert_eq!(stats.commands_seen, 10);
    assert_eq!(stats.accounted(), 10);
    assert_eq!(stats.lost_total(), 10, "{stats:#?}");
    assert_eq!(stats.replayed, 0);
    assert!(stats.connect_failures >= 1);
    assert_eq!(stats.sessions_with_losses, 1);
    let outcomes = got.lock().expect("lock");
    assert_eq!(outcomes.len(), 10);
    assert!(outcomes
        .iter()
        .all(|o| o.test.is_none() && o.failure.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_sampled_out_sessions_are_counted_not_replayed() {
    let (mut sink, rx) = RingSink::new(64);
    sink.push(1, open(1, 50001));
    sink.push(
        1,
        SessionEvent::Login(Box::new(Login {
            tls: true,
            ..match login("app", None) {
                SessionEvent::Login(l) => *l,
                _ => unreachable!(),
            }
        })),
    );
    sink.push(1, query(0, "SELECT 1"));
    sink.push(1, query(1, "SELECT 2"));
    sink.push(1, close(CloseReason::Fin));
    sink.push(2, open(2, 50002));
    sink.push(2, query(0, "SELECT 1"));
    sink.push(2, close(CloseReason::Rst));
    drop(sink);
    let mut cfg = dead_target();
    cfg.filters = Filters {
        sample_pct: 0.0,
        ..Filters::all()
    };
    let (got, collect) = collector();
    let stats = Engine::new(cfg)
        .run(rx, collect, std::future::pending())
        .await;
    assert_eq!(stats.sessions, 2);
    // Sampling decides first (session 1 is out before its Login says TLS).
    assert_eq!(stats.skipped.get("sampled_out"), Some(&3), "{stats:#?}");
    assert_eq!(stats.accounted(), stats.commands_seen);
    assert_eq!(stats.connect_failures, 0, "no connection attempted");
    assert!(got.lock().expect("lock").is_empty());

    let (mut sink, rx) = RingSink::new(64);
    sink.push(1, open(1, 50001));
    sink.push(
        1,
        SessionEvent::Login(Box::new(Login {
            tls: true,
            ..match login("app", None) {
                SessionEvent::Login(l) => *l,
                _ => unreachable!(),
            }
        })),
    );
    sink.push(1, query(0, "SELECT 1"));
    sink.push(1, close(CloseReason::Fin));
    drop(sink);
    let stats = Engine::new(dead_target())
        .run(rx, |_| {}, std::future::pending())
        .await;
    assert_eq!(stats.skipped.get("tls"), Some(&1), "{stats:#?}");
    assert_eq!(stats.connect_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_overflow_marks_the_session_diverged() {
    let (mut sink, rx) = RingSink::new(3);
    sink.push(1, open(1, 50003));
    for i in 0..6 {
        sink.push(1, query(i, "SELECT 1"));
    }
    sink.push(1, close(CloseReason::Fin));
    drop(sink);
    let stats = Engine::new(dead_target())
        .run(rx, |_| {}, std::future::pending())
        .await;
    assert_eq!(stats.sessions_overflowed, 1);
    assert_eq!(stats.ring_dropped_events, 5, "{stats:#?}");
    assert_eq!(stats.commands_seen, 2);
    assert_eq!(stats.accounted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_paced_replay_and_counts_what_was_left() {
    let (mut sink, rx) = RingSink::new(64);
    sink.push(1, open(1, 50004));
    sink.push(1, login("app", None));
    // One command an hour after the session opened: pacing at 1x would wait for it.
    let mut late = query(0, "SELECT 1");
    if let SessionEvent::Command(c) = &mut late {
        c.ts_us += 3_600_000_000;
    }
    sink.push(1, late);
    sink.push(1, query(1, "SELECT 2"));
    let mut cfg = dead_target();
    cfg.pacing = Pacing::Offline {
        speed: Some(1.0),
        skip_idle: None,
    };
    let (tx, rx_stop) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = tokio::spawn(Engine::new(cfg).run(rx, |_| {}, async move {
        let _ = rx_stop.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(()).expect("send");
    let stats = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("shutdown honoured")
        .expect("task");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(stats.skipped.get("shutdown"), Some(&2), "{stats:#?}");
    assert_eq!(stats.lost_total(), 0);
    assert_eq!(stats.accounted(), stats.commands_seen);
    drop(sink);
}

fn target(db: &MariaDb, user_pw: &str) -> ReplayConfig {
    ReplayConfig::new(
        TargetDsn::parse_no_env(&format!("mysql://{user_pw}@127.0.0.1:{}", db.port)).expect("dsn"),
    )
}

async fn replay(
    cfg: ReplayConfig,
    n: u64,
) -> (mrte_replay::engine::EngineStats, Vec<mrte_replay::Outcome>) {
    let (mut sink, rx) = RingSink::new(256);
    for s in 0..2u64 {
        sink.push(s, open(s, 51000 + s as u16));
        sink.push(s, login("app", None));
        for i in 0..n {
            sink.push(s, query(i, "SELECT 1"));
        }
        sink.push(s, close(CloseReason::Fin));
    }
    drop(sink);
    let (got, collect) = collector();
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        Engine::new(cfg).run(rx, collect, std::future::pending()),
    )
    .await
    .expect("no hang");
    let o = got.lock().expect("lock").clone();
    (stats, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connect_refused_counts_every_command_as_failed() {
    let Some(db) = MariaDb::start("every_connect_refused_counts_every_command_as_failed") else {
        return;
    };
    let mut a = admin(&db).await;
    a.query_drop("CREATE USER 'app'@'%' IDENTIFIED BY 'right'")
        .await
        .expect("user");
    let (stats, outcomes) = replay(target(&db, "app:wrong"), 9).await;
    assert_eq!(stats.commands_seen, 18);
    assert_eq!(stats.replayed, 0, "{stats:#?}");
    assert_eq!(stats.failed.get("connect_refused"), Some(&18), "{stats:#?}");
    assert_eq!(stats.accounted(), 18);
    assert_eq!(outcomes.len(), 18);
    assert!(outcomes.iter().all(|o| o
        .failure
        .as_deref()
        .is_some_and(|f| f.starts_with("connect_refused: 1045"))));
    let books = Accounting::of(18, &stats, false);
    assert!(books.balanced && books.nothing_replayed(), "{books:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_users_replay_and_a_wrong_password_fails_cleanly() {
    let Some(db) = MariaDb::start("ed25519_users_replay_and_a_wrong_password_fails_cleanly") else {
        return;
    };
    let mut a = admin(&db).await;
    if let Err(e) = a.query_drop("INSTALL SONAME 'auth_ed25519'").await {
        eprintln!("\n*** SKIP ed25519 test: INSTALL SONAME 'auth_ed25519' failed: {e} ***\n");
        return;
    }
    a.query_drop("CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('s3cret')")
        .await
        .expect("user");
    a.query_drop("GRANT ALL ON *.* TO 'ed'@'%'")
        .await
        .expect("grant");

    let (stats, _) = replay(target(&db, "ed:s3cret"), 9).await;
    assert_eq!(stats.replayed, 18, "{stats:#?}");
    assert_eq!(stats.sessions_panicked + stats.sessions_command_panicked, 0);
    assert_eq!(stats.accounted(), 18);

    let (stats, outcomes) = replay(target(&db, "ed:wrong"), 9).await;
    assert_eq!(stats.replayed, 0);
    assert_eq!(stats.failed.get("connect_refused"), Some(&18), "{stats:#?}");
    assert_eq!(stats.sessions_panicked + stats.sessions_command_panicked, 0);
    assert_eq!(stats.accounted(), 18);
    assert_eq!(outcomes.len(), 18);
}

/// Sessions sending `SELECT 1` every 20 ms; the server is killed 1 s in and started again 2 s
/// later. Replay must resume within a second of its return, and only the commands in between
/// may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_resumes_within_a_second_of_its_return() {
    let Some(mut db) = MariaDb::start("killed_server_resumes_within_a_second_of_its_return") else {
        return;
    };
    const SESSIONS: u64 = 4;
    let Outage {
        stats,
        times,
        killed,
        back,
    } = kill_and_restart(&mut db, SESSIONS, 52000, 0, Duration::from_secs(2), |_| {}).await;

    assert_eq!(stats.accounted(), stats.commands_seen, "{stats:#?}");
    assert!(stats.reconnects >= SESSIONS, "{stats:#?}");
    assert!(stats.lost_total() > 0, "{stats:#?}");
    assert!(
        stats
            .lost
            .keys()
            .all(|k| k == "target_unavailable" || k == "connection_lost"),
        "{stats:#?}"
    );
    assert_eq!(stats.failed_total(), 0, "{stats:#?}");
    // Nothing lost before the kill; everything replayed again soon after the restart.
    assert!(times.iter().filter(|(t, _)| *t < killed).all(|(_, ok)| *ok));
    let first_ok_after = times
        .iter()
        .filter(|(t, ok)| *ok && *t >= back)
        .map(|(t, _)| *t)
        .min()
        .expect("replayed after the restart");
    assert!(
        first_ok_after.duration_since(back) < Duration::from_secs(1),
        "resumed {:?} after the server was back",
        first_ok_after.duration_since(back)
    );
    let settle = back + Duration::from_secs(1);
    assert!(
        times
            .iter()
            .filter(|(t, _)| *t >= settle)
            .all(|(_, ok)| *ok),
        "commands failed more than a second after the server was back: {stats:#?}"
    );
}

fn signal(db: &MariaDb, sig: &str) {
    let pid = std::fs::read_to_string(db.dir.join("mysqld.pid")).expect("pid file");
    let st = std::process::Command::new("kill")
        .args([sig, pid.trim()])
        .status()
        .expect("kill");
    assert!(st.success());
}

/// SIGCONT on drop, so a failed assertion does not leave a stopped server behind.
struct Cont<'a>(&'a MariaDb);

impl Drop for Cont<'_> {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// A frozen server: each command gives up after `--target-timeout`, counted as failed; the
/// engine finishes while the server is still frozen (no wedged worker); after SIGCONT replay
/// works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_times_out_and_never_wedges_the_replay() {
    let Some(db) = MariaDb::start("frozen_server_times_out_and_never_wedges_the_replay") else {
        return;
    };
    let mut cfg = target(&db, "root");
    cfg.command_timeout = Duration::from_secs(1);
    cfg.connect_timeout = Duration::from_secs(1);
    let (mut sink, rx) = RingSink::new(256);
    let engine = Engine::new(cfg.clone());
    let live = engine.live();
    let run = tokio::spawn(engine.run(rx, |_| {}, std::future::pending()));
    sink.push(1, open(1, 53000));
    sink.push(1, login("root", None));
    sink.push(1, query(0, "SELECT 1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while live.replayed.load(std::sync::atomic::Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "first command not replayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&db, "-STOP");
    let cont = Cont(&db);
    for i in 1..=5 {
        sink.push(1, query(i, "SELECT SLEEP(0)"));
    }
    sink.push(1, close(CloseReason::Fin));
    drop(sink);
    let started = Instant::now();
    let stats = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the replay finished while the server was frozen")
        .expect("engine task");
    let took = started.elapsed();
    assert_eq!(stats.replayed, 1, "{stats:#?}");
    assert_eq!(stats.accounted(), stats.commands_seen);
    assert_eq!(stats.failed.get("timeout"), Some(&1), "{stats:#?}");
    assert_eq!(
        stats.failed_total(),
        5,
        "every command after the freeze failed: {stats:#?}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    drop(cont);

    let (mut sink, rx) = RingSink::new(16);
    sink.push(2, open(2, 53001));
    sink.push(2, query(0, "SELECT 1"));
    sink.push(2, close(CloseReason::Fin));
    drop(sink);
    let stats = tokio::time::timeout(
        Duration::from_secs(30),
        Engine::new(cfg).run(rx, |_| {}, std::future::pending()),
    )
    .await
    .expect("no hang");
    assert_eq!(stats.replayed, 1, "after SIGCONT: {stats:#?}");
}
