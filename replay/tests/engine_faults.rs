//! Engine behaviour that needs no live server: a dead target, skipped sessions, ring overflow,
//! shutdown. The target is 127.0.0.1 on a port nobody listens on.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use mrte_capture::event::{CloseReason, EventSink, Login, SessionEvent};
use mrte_capture::ring::RingSink;
use mrte_replay::engine::{Engine, ReplayConfig};
use mrte_replay::filter::Filters;
use mrte_replay::pacing::Pacing;
use mrte_replay::target::TargetDsn;

fn dead_target() -> ReplayConfig {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = ReplayConfig::new(
        TargetDsn::parse_no_env(&format!("mysql://root@127.0.0.1:{port}")).expect("dsn"),
    );
    cfg.backoff_min = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(40);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg
}

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
