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

/// Fixtures whose clients send commands before reading the previous responses (Connector/J
/// batches): their decode-error checks are in `pipelined_batches_decode_whole`.
const PIPELINED: [&str; 2] = ["connectorj", "connectorj_b"];

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
        if name != "garbage" && !PIPELINED.contains(&name.as_str()) {
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

fn jsonl(file: &str) -> Vec<Value> {
    inspect(&pcap_path(file), "jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

fn summary(file: &str) -> Value {
    serde_json::from_str(&inspect(&pcap_path(file), "summary")).expect("summary is JSON")
}

/// Commands that have no response on the wire.
const NO_RESPONSE: [&str; 3] = ["COM_QUIT", "COM_STMT_CLOSE", "COM_STMT_SEND_LONG_DATA"];

/// Every command that has a response is paired with it (status ok or err) and has its parameters.
fn assert_paired(name: &str, lines: &[Value]) {
    for v in lines {
        let cmd = v["cmd"].as_str().unwrap();
        if NO_RESPONSE.contains(&cmd) {
            continue;
        }
        assert!(
            v["status"] == "ok" || v["status"] == "err",
            "{name}: {cmd} without its response: {v}"
        );
        assert!(v.get("response_incomplete").is_none(), "{name}: {v}");
        assert!(v.get("params_unknown").is_none(), "{name}: {v}");
    }
}

#[test]
fn driver_fixtures_decode_whole() {
    let truth = truth();
    for name in [
        "mysql2",
        "pymysql",
        "mysqlconnector",
        "connectorj",
        "connectorj_b",
        "connectorj_x",
        "mysql2_x",
        "pymysql_x",
        "mysqlconnector_x",
        "mariadbjs",
        "php",
        "go",
    ] {
        let t = &truth[name];
        let file = t["file"].as_str().unwrap();
        let s = summary(file);
        assert_eq!(
            s["commands"], t["commands"],
            "{name}: counts vs the driver's tap"
        );
        assert_eq!(s["tls_sessions"], 0, "{name}");
        assert_eq!(s["gaps"], 0, "{name}");
        assert_eq!(s["desyncs"], 0, "{name}");
        // One session per connection the server logged.
        assert_eq!(
            s["sessions"], t["server_log"]["Connect"],
            "{name}: sessions"
        );
        if PIPELINED.contains(&name) {
            continue;
        }
        assert_eq!(s["decode_errors"], 0, "{name}: decode errors");
        assert_eq!(s["unknown_commands"], 0, "{name}: unknown commands");
        assert_paired(name, &jsonl(file));
    }
    assert_eq!(summary("connectorj.pcap")["compressed_sessions"], 1);
    assert_eq!(summary("connectorj_b.pcap")["compressed_sessions"], 1);
    assert_eq!(summary("mysqlconnector.pcap")["compressed_sessions"], 1);
    assert_eq!(summary("connectorj_x.pcap")["compressed_sessions"], 1);
    assert_eq!(summary("mysqlconnector_x.pcap")["compressed_sessions"], 1);
}

#[test]
fn pipelined_batches_decode_whole() {
    for name in PIPELINED {
        let file = format!("{name}.pcap");
        let s = summary(&file);
        assert_eq!(s["decode_errors"], 0, "{name}: decode errors");
        assert_eq!(s["unknown_commands"], 0, "{name}: unknown commands");
        let lines = jsonl(&file);
        assert_paired(name, &lines);
        // The long-data batches: each EXECUTE of `INSERT INTO blobs` follows its SEND_LONG_DATA.
        let lob = lines
            .iter()
            .filter(|v| {
                v["cmd"] == "COM_STMT_EXECUTE"
                    && v["sql"] == "INSERT INTO blobs (id, data) VALUES (?, ?)"
            })
            .count();
        assert_eq!(lob, 70, "{name}: batched EXECUTEs with their statement");
        // Their BLOB came as long data and is attached to the EXECUTE.
        let attached = lines
            .iter()
            .filter(|v| {
                v["sql"] == "INSERT INTO blobs (id, data) VALUES (?, ?)"
                    && v["cmd"] == "COM_STMT_EXECUTE"
                    && v["params_unknown"].is_null()
                    && !v["params"][1]["value"].is_null()
            })
            .count();
        assert_eq!(attached, 70, "{name}: long data attached to its EXECUTE");
    }
}

#[test]
fn mysql2_command_order_and_parameters() {
    let lines = jsonl("mysql2.pcap");
    let cmds: Vec<&str> = lines.iter().map(|v| v["cmd"].as_str().unwrap()).collect();
    let mut want = vec!["COM_STMT_PREPARE"];
    want.extend(["COM_STMT_EXECUTE"; 20]);
    want.push("COM_STMT_PREPARE");
    want.extend(["COM_STMT_EXECUTE"; 10]);
    want.extend(["COM_STMT_PREPARE", "COM_STMT_EXECUTE"]);
    want.extend(["COM_QUERY"; 3]);
    // `unprepare` closes the statement twice (the cache's dispose closes it again).
    want.extend(["COM_STMT_CLOSE", "COM_STMT_CLOSE", "COM_PING", "COM_QUIT"]);
    assert_eq!(cmds, want);
    let ins = &lines[1];
    assert_eq!(
        ins["sql"],
        "INSERT INTO notes (id, body, score) VALUES (?, ?, ?)"
    );
    assert_eq!(ins["params"].as_array().map(Vec::len), Some(3));
    assert_eq!(ins["affected"], 1);
    let multi = lines.iter().find(|v| v["cmd"] == "COM_QUERY").unwrap();
    // UPDATE (OK, more results), SELECT (one row), INSERT (OK): all three responses read.
    assert_eq!(multi["status"], "ok");
    assert_eq!(multi["affected"], 2);
    assert_eq!(multi["rows"], 1);
    let next = lines
        .iter()
        .filter(|v| v["cmd"] == "COM_QUERY")
        .nth(1)
        .unwrap();
    assert_eq!(
        next["sql"],
        "SELECT id, body FROM notes WHERE id > 10 ORDER BY id"
    );
    assert_eq!(next["rows"], 12); // 11..=20, 100 and the seed row 1000
}

#[test]
fn mysqlconnector_resets_before_each_execute() {
    let lines = jsonl("mysqlconnector.pcap");
    let cmds: Vec<&str> = lines.iter().map(|v| v["cmd"].as_str().unwrap()).collect();
    for (i, c) in cmds.iter().enumerate() {
        if *c == "COM_STMT_EXECUTE" {
            assert_eq!(cmds[i - 1], "COM_STMT_RESET", "command {i}");
        }
    }
    let change = lines
        .iter()
        .find(|v| v["cmd"] == "COM_CHANGE_USER")
        .unwrap();
    assert_eq!(change["status"], "ok");
    let after = lines
        .iter()
        .find(|v| v["sql"] == "INSERT INTO audit (id, note) VALUES (1, 'after change_user')")
        .unwrap();
    assert_eq!(after["db"], "drv_mycpy_b");
}

/// The CJK statements of scripts/drivers/pymysql_workload.py (utf8mb4 connection): shown as sent.
/// `/*中*/ SET @x=1` crashed the decoder once (a multi-byte character at byte 2).
const CJK: [&str; 5] = [
    "/*中*/ SET @x=1",
    "INSERT INTO people (id, name, city) VALUES (900, '김철수', '서울')",
    "/* 日本語のコメント */ SELECT name FROM people WHERE city = '東京'",
    "SELECT '한국어' AS k, '日本語' AS j, 'ü' AS u",
    "UPDATE people SET city = '부산' /* 한글 주석 */ WHERE id = 900",
];

#[test]
fn cjk_and_non_utf8_statements_decode() {
    let lines = jsonl("pymysql.pcap");
    for sql in CJK {
        let v = lines
            .iter()
            .find(|v| v["sql"] == sql)
            .unwrap_or_else(|| panic!("{sql} not decoded"));
        assert_eq!(v["cmd"], "COM_QUERY");
        assert_eq!(v["status"], "ok", "{sql}");
        assert_eq!(v["db"], "drv_py", "{sql}");
    }
    let k = lines.iter().find(|v| v["sql"] == CJK[1]).unwrap();
    assert_eq!(k["affected"], 1);
    // EUC-KR and Shift_JIS connections: the statement bytes are not UTF-8.
    for cs in ["euckr", "sjis"] {
        let prefix = "INSERT INTO texts (id, cs, body) VALUES (";
        let v = lines
            .iter()
            .find(|v| {
                v["sql"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(prefix) && s.contains(&format!("'{cs}'")))
            })
            .unwrap_or_else(|| panic!("{cs} insert not decoded"));
        assert_eq!(v["status"], "ok");
        assert_eq!(v["affected"], 1);
        assert!(lines.iter().any(|v| v["sql"] == format!("SET NAMES {cs}")));
    }
    // LOCAL INFILE and select_db.
    let load = lines
        .iter()
        .find(|v| {
            v["sql"]
                .as_str()
                .is_some_and(|s| s.starts_with("LOAD DATA LOCAL INFILE"))
        })
        .unwrap();
    assert_eq!(load["status"], "ok");
    assert_eq!(load["affected"], 100);
    let init: Vec<&Value> = lines.iter().filter(|v| v["cmd"] == "COM_INIT_DB").collect();
    assert_eq!(init.len(), 2);
    assert_eq!(init[0]["schema"], "drv_py_b");
}
