//! The recovery policy around a test server that goes away (issue 10, part 6): `--reconnect-for`
//! bounds how long a session keeps retrying (without it, it retries for as long as the run
//! lasts), and a session that reconnects while production held state a new connection lacks
//! (here an open transaction) says so. The first needs no server (a port nobody listens on); the
//! second a throwaway MariaDB, killed and restarted (skipped loudly when not installed).

mod common;

use std::time::Duration;

use common::*;
use mrte_capture::event::{CloseReason, EventSink};
use mrte_capture::ring::RingSink;
use mrte_replay::engine::{Engine, EngineStats, ReplayConfig};

fn dead_target_for(reconnect_for: Option<Duration>) -> ReplayConfig {
    let mut cfg = dead_target();
    cfg.reconnect_for = reconnect_for;
    cfg
}

/// One session sending `SELECT 1` every 50 ms for 1.5 s to a dead target; its outcomes.
async fn dead_session(cfg: ReplayConfig) -> (EngineStats, Vec<mrte_replay::Outcome>) {
    let (mut sink, rx) = RingSink::new(256);
    let (got, collect) = collector();
    let run = tokio::spawn(Engine::new(cfg).run(rx, collect, std::future::pending()));
    sink.push(1, open(1, 54000));
    sink.push(1, login("app", None));
    for i in 0..30 {
        sink.push(1, query(i, "SELECT 1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.push(1, close(CloseReason::Fin));
    drop(sink);
    let stats = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("no hang")
        .expect("engine task");
    let o = got.lock().expect("lock").clone();
    (stats, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_for_bounds_how_long_a_session_retries() {
    // Without the policy flag: retries for as long as the session lasts.
    let (stats, _) = dead_session(dead_target_for(None)).await;
    assert_eq!(stats.sessions_gave_up, 0, "{stats:#?}");
    assert_eq!(stats.accounted(), 30);
    let retried_all_along = stats.connect_failures;

    let (stats, outcomes) = dead_session(dead_target_for(Some(Duration::from_millis(300)))).await;
    assert_eq!(stats.commands_seen, 30);
    assert_eq!(stats.accounted(), 30, "{stats:#?}");
    assert_eq!(stats.lost_total(), 30, "{stats:#?}");
    assert_eq!(stats.sessions_gave_up, 1, "{stats:#?}");
    assert!(
        stats.connect_failures < retried_all_along,
        "{} connect attempts after giving up, {retried_all_along} without the bound",
        stats.connect_failures
    );
    let gave_up = outcomes
        .iter()
        .filter(|o| {
            o.failure
                .as_deref()
                .is_some_and(|f| f.contains("--reconnect-for"))
        })
        .count();
    assert!(
        gave_up >= 10,
        "{gave_up} commands lost as 'stopped reconnecting'"
    );
    assert!(outcomes.iter().all(|o| o
        .failure
        .as_deref()
        .is_some_and(|f| f.starts_with("target_unavailable"))));
}

/// Two sessions; the first opened a transaction in production. The server is killed and
/// restarted: both reconnect, and only the first is reported as having lost production state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_reports_the_open_transaction_it_lost() {
    let Some(mut db) = MariaDb::start("a_reconnect_reports_the_open_transaction_it_lost") else {
        return;
    };
    let Outage {
        stats, times, back, ..
    } = kill_and_restart(&mut db, 2, 54100, 1, Duration::from_secs(1), |sink| {
        sink.push(0, query(0, "BEGIN"));
        sink.push(1, query(0, "SELECT 1"));
    })
    .await;
    assert_eq!(stats.accounted(), stats.commands_seen, "{stats:#?}");
    assert!(
        times.iter().any(|(t, ok)| *ok && *t > back),
        "nothing replayed after the restart: {stats:#?}"
    );
    assert!(stats.reconnects >= 2, "{stats:#?}");
    assert_eq!(stats.sessions_state_lost, 1, "{stats:#?}");
    assert_eq!(
        stats.state_lost.get("open_transaction"),
        Some(&1),
        "{stats:#?}"
    );
    assert_eq!(stats.state_lost.len(), 1, "{stats:#?}");
}
