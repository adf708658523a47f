//! `--metrics`: a real `mrte replay` against a throwaway MariaDB, scraped twice while it runs:
//! counters move, the collector's and the player's families are there with their types, the
//! per-fingerprint series stay within the top-N, and every metric the Grafana dashboard
//! (`scripts/grafana/mrte-dashboard.json`) charts exists in the scrape.

#[path = "../replay/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::MariaDb;
use mysql_async::prelude::Queryable;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// (status line, body) of `GET path` on 127.0.0.1:port.
fn http_get(port: u16, path: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut resp = String::new();
            if write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .and_then(|_| s.read_to_string(&mut resp))
            .is_ok()
            {
                if let Some((head, body)) = resp.split_once("\r\n\r\n") {
                    let status = head.lines().next().unwrap_or_default().to_string();
                    return (status, body.to_string());
                }
            }
        }
        assert!(Instant::now() < deadline, "no answer on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sum of the samples named `name` whose labels include every `want` pair.
fn value(scrape: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = line.rsplit_once(' ')?;
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        if n != name
            || !want
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        *found.get_or_insert(0.0) += v.parse::<f64>().ok()?;
    }
    found
}

/// Sample names in a scrape.
fn sample_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_move_during_a_replay_and_the_dashboard_charts_only_real_metrics() {
    let name = "metrics_move_during_a_replay_and_the_dashboard_charts_only_real_metrics";
    let Some(db) = MariaDb::start(name) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut a = common::admin(&db).await;
        a.query_drop("CREATE DATABASE sbtest").await.expect("db");
        a.disconnect().await.expect("disconnect");
    });
    let port = free_port();
    // 46 ms of sysbench traffic stretched to ~46 s: commands keep coming while we scrape.
    let child = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["replay", "-q", "--speed", "0.001", "-r"])
        .arg(root().join("tests/fixtures/sysbench_text.pcap"))
        .arg("--target")
        .arg(db.dsn(None))
        .args(["--metrics", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mrte");
    let _child = Killed(child);

    let (status, _) = http_get(port, "/nope");
    assert!(status.contains(" 404"), "{status}");
    let replayed = |s: &str| value(s, "mrte_replayed_commands_total", &[]).unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let (status, body) = http_get(port, "/metrics");
        assert!(status.contains(" 200"), "{status}");
        if replayed(&body) > 0.0 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "nothing replayed in 60 s:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(3));
    let (_, second) = http_get(port, "/metrics");

    // Counters move while the replay runs.
    assert!(
        replayed(&second) > replayed(&first),
        "{first}\n---\n{second}"
    );
    let test_count = |s: &str| value(s, "mrte_latency_seconds_count", &[("side", "test")]);
    assert!(test_count(&second) > test_count(&first), "{second}");
    let taken = |s: &str| value(s, "mrte_books_commands_total", &[("fate", "taken")]);
    assert!(taken(&second) > taken(&first), "{second}");
    // The whole file is read at once: the collector side is complete already.
    assert_eq!(
        value(&second, "mrte_captured_commands_total", &[]),
        Some(802.0)
    );
    assert_eq!(
        value(
            &second,
            "mrte_books_commands_total",
            &[("fate", "captured")]
        ),
        Some(802.0)
    );
    assert!(value(&second, "mrte_captured_packets_total", &[]).unwrap_or(0.0) > 2000.0);
    assert_eq!(value(&second, "mrte_decoder_panics_total", &[]), Some(0.0));
    for reason in [
        "unsynced",
        "after_gap",
        "tls",
        "too_large",
        "incomplete",
        "decoder_panic",
    ] {
        assert!(
            value(
                &second,
                "mrte_undecoded_bytes_by_reason_total",
                &[("reason", reason)]
            )
            .is_some(),
            "{reason}"
        );
    }
    for (name, kind) in [
        ("mrte_captured_packets_total", "counter"),
        ("mrte_replayed_commands_total", "counter"),
        ("mrte_latency_seconds", "summary"),
        ("mrte_fingerprint_latency_seconds", "summary"),
        ("mrte_replay_lag_seconds", "gauge"),
    ] {
        assert!(
            second.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}"
        );
    }
    // Per fingerprint: quantiles of both sides, at most the top 10 fingerprints.
    let p99 = value(
        &second,
        "mrte_fingerprint_latency_seconds",
        &[
            ("side", "test"),
            ("quantile", "0.99"),
            ("fingerprint", "select c from sbtest? where id=?"),
        ],
    );
    assert!(p99.unwrap_or(0.0) > 0.0, "{second}");
    let ids: BTreeSet<&str> = second
        .lines()
        .filter(|l| l.starts_with("mrte_fingerprint_latency_seconds_count{"))
        .filter_map(|l| l.split("fingerprint_id=\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(!ids.is_empty() && ids.len() <= 10, "{ids:?}");

    // The dashboard: valid JSON, every panel titled, every metric it charts in the scrape.
    let text = std::fs::read_to_string(root().join("scripts/grafana/mrte-dashboard.json"))
        .expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
    }
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 20, "{all:?}");
    let names = sample_names(&second);
    let re = regex::Regex::new(r"mrte_[a-z0-9_]+").expect("regex");
    let mut charted = BTreeSet::new();
    for e in &all {
        for m in re.find_iter(e) {
            charted.insert(m.as_str().to_string());
        }
    }
    let missing: Vec<&String> = charted.iter().filter(|m| !names.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard charts {missing:?}, not in:\n{second}"
    );
    // And the other way round: the dashboard shows every family the endpoint serves.
    let families: BTreeSet<&str> = second
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let uncharted: Vec<&&str> = families
        .iter()
        .filter(|f| !charted.iter().any(|c| c.starts_with(**f)))
        .collect();
    assert!(uncharted.is_empty(), "not on the dashboard: {uncharted:?}");
}
