//! `mrte inspect` on the committed real-client captures (tests/fixtures, recorded on the lab by
//! scripts/record-fixtures.sh) must count exactly the commands the clients sent (truth.json).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture as a plain pcap path (gunzipped into a temp file when needed).
fn pcap_path(file: &str) -> PathBuf {
    let p = fixtures().join(file);
    if let Some(stem) = file.strip_suffix(".gz") {
        let out = std::env::temp_dir().join(format!("mrte-fixture-{}-{stem}", std::process::id()));
        let mut d = flate2::read::GzDecoder::new(std::fs::File::open(&p).expect("fixture"));
        let mut f = std::fs::File::create(&out).expect("temp file");
        std::io::copy(&mut d, &mut f).expect("gunzip fixture");
        return out;
    }
    p
}

fn inspect(path: &Path, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["inspect", "-r"])
        .arg(path)
        .args(["-f", format])
        .output()
        .expect("run mrte");
    assert!(
        out.status.success(),
        "mrte inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn truth() -> Value {
    let t =
        std::fs::read_to_string(fixtures().join("truth.json")).expect("tests/fixtures/truth.json");
    serde_json::from_str(&t).expect("truth.json parses")
}

#[test]
fn summary_command_counts_equal_the_clients_truth() {
    let truth = truth();
    let mut checked = 0;
    for (name, t) in truth.as_object().expect("object") {
        let path = pcap_path(t["file"].as_str().expect("file"));
        let s: Value = serde_json::from_str(&inspect(&path, "summary")).expect("summary is JSON");
        let got = s["commands"].as_object().expect("commands map");
        let want = t["commands"].as_object().expect("commands");
        for (cmd, n) in want {
            assert_eq!(got.get(cmd), Some(n), "{name}: {cmd}: summary {got:?}");
        }
        for (cmd, n) in got {
            assert!(want.contains_key(cmd), "{name}: unexpected {cmd}={n}");
        }
        if name != "garbage" {
            assert_eq!(s["decode_errors"], 0, "{name}: decode errors");
            assert_eq!(s["gaps"], 0, "{name}: gaps");
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures");
}

#[test]
fn fixture_specific_facts() {
    let s = |file: &str| -> Value {
        serde_json::from_str(&inspect(&pcap_path(file), "summary")).unwrap()
    };
    assert_eq!(s("tls.pcap")["tls_sessions"], 1);
    assert_eq!(s("compressed.pcap")["compressed_sessions"], 1);
    assert_eq!(s("midstream.pcap")["midstream_sessions"], 1);
    let g = s("garbage.pcap");
    assert!(g["decode_errors"].as_u64().unwrap() >= 1);
    let big = inspect(&pcap_path("big_statement.pcap.gz"), "jsonl");
    let q: Value = big
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["cmd"] == "COM_QUERY")
        .unwrap();
    let sql = q["sql"].as_str().unwrap();
    assert_eq!(sql.len(), "SELECT LENGTH('')".len() + 18 * 1024 * 1024);
    assert!(sql.starts_with("SELECT LENGTH('xxx"));
    assert_eq!(q["status"], "ok");
    assert_eq!(q["rows"], 1);
}

#[test]
fn jsonl_carries_sql_params_errors_and_order() {
    let lines: Vec<Value> = inspect(&pcap_path("client_session.pcap"), "jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cmds: Vec<&str> = lines.iter().map(|v| v["cmd"].as_str().unwrap()).collect();
    assert_eq!(
        cmds,
        [
            "COM_QUERY",
            "COM_QUERY",
            "COM_QUERY",
            "COM_INIT_DB",
            "COM_QUERY",
            "COM_QUERY",
            "COM_INIT_DB",
            "COM_QUERY",
            "COM_QUERY",
            "COM_QUERY",
            "COM_QUIT"
        ]
    );
    assert_eq!(lines[2]["sql"], "SELECT DATABASE()");
    assert_eq!(
        lines[0]["sql"],
        "SELECT id, k FROM sbtest1 WHERE id BETWEEN 1 AND 5"
    );
    assert_eq!(lines[0]["rows"], 5);
    assert_eq!(
        lines[0]["fingerprint"],
        "select id, k from sbtest? where id between ? and ?"
    );
    assert_eq!(lines[1]["status"], "err");
    assert_eq!(lines[1]["error_code"], 1146);
    assert_eq!(lines[3]["schema"], "mysql");
    assert_eq!(lines[4]["db"], "mysql");
    assert_eq!(lines[8]["sql"], "SELECT 1; SELECT 2");
    assert_eq!(lines[8]["result_sets"], 2);
    assert_eq!(lines[0]["user"], "sbtest");
    assert!(lines
        .iter()
        .filter(|v| v["status"] != "none")
        .all(|v| v["prod_us"].as_u64().is_some()));
    let ps: Vec<Value> = inspect(&pcap_path("sysbench_ps.pcap"), "jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let point = ps
        .iter()
        .find(|v| v["cmd"] == "COM_STMT_EXECUTE" && v["sql"] == "SELECT c FROM sbtest1 WHERE id=?")
        .expect("point select");
    assert_eq!(point["params"].as_array().unwrap().len(), 1);
    assert!(point["params"][0]["value"].as_i64().is_some());
    assert_eq!(point["rows"], 1);
}

#[test]
fn digest_agrees_with_itself_and_ranks_by_total_time() {
    let d = inspect(&pcap_path("sysbench_text.pcap"), "digest");
    assert!(d.contains("select c from sbtest? where id=?"));
    assert!(d.lines().nth(1).is_some_and(|l| l.contains("query_id")));
}

#[test]
fn per_fingerprint_counts_and_ids_agree_with_pt_query_digest() {
    if Command::new("pt-query-digest")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP per_fingerprint_counts_and_ids_agree_with_pt_query_digest: pt-query-digest not installed");
        return;
    }
    let pcap = pcap_path("sysbench_text.pcap");
    let text = Command::new("tcpdump")
        .args(["-x", "-n", "-q", "-tttt", "-r"])
        .arg(&pcap)
        .output()
        .expect("tcpdump");
    let txt = std::env::temp_dir().join(format!("mrte-pt-{}.txt", std::process::id()));
    std::fs::write(&txt, &text.stdout).unwrap();
    let pt = Command::new("pt-query-digest")
        .args([
            "--type",
            "tcpdump",
            "--watch-server",
            "198.18.0.2:3306",
            "--output",
            "json",
            "--limit",
            "100%",
        ])
        .arg(&txt)
        .output()
        .expect("pt-query-digest");
    let _ = std::fs::remove_file(&txt);
    let v: Value = serde_json::from_slice(&pt.stdout).expect("pt json");
    let mut want: Vec<(String, u64)> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["checksum"].as_str().unwrap()[16..].to_string(),
                c["query_count"].as_u64().unwrap(),
            )
        })
        .collect();
    want.sort();
    let mut got: Vec<(String, u64)> = inspect(&pcap, "digest")
        .lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].trim_start_matches("0x").to_string(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert!(want.len() >= 10);
}
