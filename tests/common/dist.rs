//! Helpers of the NATS scale-out tests (tests/dist.rs, tests/dist_cluster.rs): a throwaway
//! nats-server (one node or a 3-node JetStream cluster), `mrte publish|play|report` runs and the
//! report's fields compared. Include with `#[path = "common/dist.rs"] mod dist_common;` next to
//! `#[path = "../replay/tests/common/mod.rs"] mod common;` (the MariaDB helpers).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, MariaDb};
use mysql_async::prelude::Queryable;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn nats_binary() -> Option<PathBuf> {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A throwaway `nats-server -js` on 127.0.0.1 with its own store directory.
pub struct Nats {
    pub bin: PathBuf,
    pub port: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// More arguments (cluster settings).
    pub extra: Vec<String>,
}

impl Nats {
    pub fn start(test: &str) -> Option<Nats> {
        let mut n = Nats::new(test)?;
        n.launch();
        Some(n)
    }

    /// A server not started yet.
    pub fn new(test: &str) -> Option<Nats> {
        let Some(bin) = nats_binary() else {
            eprintln!("\n*** SKIP {test}: nats-server not installed (scripts/lib/deps.sh mrte_install_nats) ***\n");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("mrte-nats-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("nats dir");
        Some(Nats {
            bin,
            port: free_port(),
            dir,
            child: None,
            extra: Vec::new(),
        })
    }

    /// SIGKILL: no goodbye to the cluster, no flush of its store.
    pub fn kill9(&mut self) {
        self.stop();
    }

    pub fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("nats.log")).expect("log");
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.join("store"))
            .args(&self.extra)
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

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
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

/// A JetStream cluster of `n` nodes on 127.0.0.1 (server names n0, n1, ..., routes between all),
/// returned once it takes an R`n` stream.
pub struct NatsCluster {
    pub nodes: Vec<Nats>,
}

impl NatsCluster {
    pub fn start(test: &str, n: usize) -> Option<NatsCluster> {
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, rp) in route_ports.iter().enumerate() {
            let mut node = Nats::new(&format!("{test}-n{i}"))?;
            let routes: Vec<String> = route_ports
                .iter()
                .filter(|p| *p != rp)
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            node.extra = vec![
                "--server_name".into(),
                format!("n{i}"),
                "--cluster_name".into(),
                format!("mrte-{test}"),
                "--cluster".into(),
                format!("nats://127.0.0.1:{rp}"),
                "--routes".into(),
                routes.join(","),
            ];
            node.launch();
            nodes.push(node);
        }
        let c = NatsCluster { nodes };
        c.wait_ready(n);
        Some(c)
    }

    /// Every node's client URL, comma separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(Nats::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Wait until the cluster elects its leaders and can place a stream on every node.
    fn wait_ready(&self, replicas: usize) {
        let url = self.url();
        rt().block_on(async {
            let c = mrte_dist::publish::connect(&url).await.expect("connect");
            let js = mrte_dist::jetstream(c);
            let t0 = Instant::now();
            loop {
                let r = js
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: "ready".into(),
                        subjects: vec!["ready".into()],
                        num_replicas: replicas,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => {
                        js.delete_stream("ready")
                            .await
                            .expect("delete probe stream");
                        break;
                    }
                    Err(e) => {
                        assert!(
                            t0.elapsed() < Duration::from_secs(60),
                            "the NATS cluster did not form: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        });
    }

    /// The node leading a stream (its server name is `n<index>`).
    pub fn stream_leader(&self, stream: &str) -> usize {
        let url = self.url();
        rt().block_on(async {
            let c = mrte_dist::publish::connect(&url).await.expect("connect");
            let js = mrte_dist::jetstream(c);
            let mut s = js.get_stream(stream).await.expect("stream");
            let info = s.info().await.expect("info");
            let leader = info
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .expect("a stream leader");
            leader
                .strip_prefix('n')
                .and_then(|i| i.parse().ok())
                .expect("leader named n<i>")
        })
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

pub fn mrte() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mrte"));
    c.env_remove("MRTE_TARGET_PASSWORD");
    c
}

pub fn ok(out: Output, what: &str) -> String {
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
pub const SCHEMA: &str = "DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest; USE sbtest;
CREATE TABLE sbtest1 (id INT NOT NULL, KEY id_1 (id), k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1 (k)) ENGINE=MyISAM;
CREATE TABLE sbtest2 LIKE sbtest1; CREATE TABLE sbtest3 LIKE sbtest1; CREATE TABLE sbtest4 LIKE sbtest1;";

pub fn load_schema(db: &MariaDb) {
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

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json")
}

/// fingerprint -> (count, replayed, errors)
pub fn fingerprints(v: &serde_json::Value) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
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

pub fn publish(url: &str, stream: &str, extra: &[&str]) -> serde_json::Value {
    let out = mrte()
        .args(["publish", "-q", "--nats", url, "--stream", stream, "-r"])
        .arg(fixture("sysbench_text.pcap"))
        .args(extra)
        .output()
        .expect("run mrte publish");
    let s = ok(out, "publish");
    serde_json::from_str(s.lines().last().unwrap_or("")).expect("publish summary")
}

pub fn play(url: &str, stream: &str, db: &MariaDb, parts: &str, extra: &[&str]) -> Command {
    let mut c = mrte();
    c.args(["play", "-q", "--nats", url, "--stream", stream])
        .args(["--partitions", parts, "--target", &db.dsn(None)])
        .args(extra);
    c
}

pub fn report(url: &str, stream: &str, dir: &Path) -> serde_json::Value {
    let path = dir.join(format!("{stream}.json"));
    let out = mrte()
        .args([
            "report", "--nats", url, "--stream", stream, "-f", "json", "-o",
        ])
        .arg(&path)
        .output()
        .expect("run mrte report");
    ok(out, "report");
    json(&path)
}

pub fn single_replay(db: &MariaDb) -> serde_json::Value {
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

/// Messages in a stream, asked of the server.
pub fn stream_messages(url: &str, stream: &str) -> u64 {
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
