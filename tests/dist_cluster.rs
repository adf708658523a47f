//! A 3-node NATS JetStream cluster (real nats-server processes with routes on 127.0.0.1, the
//! stream and bucket at 3 replicas) loses its stream leader to SIGKILL in the middle of a paced
//! `mrte publish` while two players on disjoint partitions consume it: the merged `mrte report`
//! still equals a single-host `mrte replay` of the capture (nothing lost, nothing twice). Skipped
//! loudly when nats-server or MariaDB is missing.

#[path = "../replay/tests/common/mod.rs"]
mod common;
#[path = "common/dist.rs"]
mod dist_common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::MariaDb;
use dist_common::*;

#[test]
fn r3_cluster_loses_a_node_mid_run_and_nothing_is_lost() {
    let Some(mut cluster) = NatsCluster::start("r3", 3) else {
        return;
    };
    let Some(db) = MariaDb::start("dist_r3") else {
        return;
    };
    let single = single_replay(&db);
    load_schema(&db);
    let url = cluster.url();
    // The 46 ms capture paced to ~9 s, every URL of the cluster given.
    let publisher = mrte()
        .args(["publish", "-q", "--nats", &url, "--stream", "r3", "-r"])
        .arg(fixture("sysbench_text.pcap"))
        .args(["--speed", "0.005", "--batch-ms", "20", "--partitions", "4"])
        .args(["--replicas", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("publish");
    let t0 = Instant::now();
    let mut messages = 0;
    while messages == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "nothing published");
        std::thread::sleep(Duration::from_millis(200));
        messages = stream_messages(&url, "r3");
    }
    let logs: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| db.dir.join(format!("player-{n}.log")))
        .collect();
    let players: Vec<_> = [("a", "0,1"), ("b", "2,3")]
        .iter()
        .zip(&logs)
        .map(|((name, parts), log)| {
            play(
                &url,
                "r3",
                &db,
                parts,
                &["--name", name, "--replicas", "3", "--checkpoint", "0.3"],
            )
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("player")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.stream_leader("r3");
    let before = stream_messages(&url, "r3");
    cluster.nodes[leader].kill9();
    eprintln!("killed n{leader}, the stream leader, at {before} messages");
    let out = publisher.wait_with_output().expect("publish ends");
    let p: serde_json::Value =
        serde_json::from_str(ok(out, "publish").lines().last().unwrap_or("")).expect("summary");
    assert_eq!(p["dropped_commands"], 0, "{p}");
    assert_eq!(p["acked_commands"], p["commands"], "{p}");
    let after = stream_messages(&url, "r3");
    assert!(
        after > before,
        "published after the kill: {before} -> {after}"
    );
    // JetStream's Nats-Msg-Id deduplication: a publish resent after the failover is stored once.
    assert_eq!(
        after,
        p["acked_messages"].as_u64().unwrap_or(0),
        "stream messages vs acknowledged publishes: {p}"
    );
    for (mut c, log) in players.into_iter().zip(&logs) {
        let t = Instant::now();
        let st = loop {
            if let Some(st) = c.try_wait().expect("wait") {
                break st;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "a player did not end:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            st.success(),
            "player: {st}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    let merged = report(&url, "r3", &db.dir);
    let (s, m) = (&single["accounting"], &merged["accounting"]);
    assert_eq!(m["balanced"], true, "{m}");
    for k in ["captured", "replayed", "skipped", "lost", "failed"] {
        assert_eq!(s[k], m[k], "accounting.{k}: single {s} merged {m}");
    }
    // Each fingerprint as often as captured: no command twice, none missing.
    assert_eq!(fingerprints(&single), fingerprints(&merged));
    let players = merged["distributed"]["players"]
        .as_array()
        .expect("players");
    assert_eq!(players.len(), 2, "{players:?}");
    for p in players {
        assert_eq!(p["finished"], true, "{p}");
        assert_eq!(p["runs"], 1, "{p}");
        assert_eq!(p["gaps"], 0, "a session's events missing: {p}");
    }
}
