//! Live result checksums on the SPAN lab (scripts/lab.sh), as root: `mrte run --read-only` during
//! sysbench oltp_read_only, with the test server's data first made identical to prod's, compares
//! every result and finds 0 mismatches; after column `c` of `sbtest1` is changed on the test
//! server only, a second run reports mismatches for exactly the fingerprints that read `c`
//! (`sbtest?`: sbtest1's share of them), and none for those that read only `k`
//! (`SELECT SUM(k) ...`).
//! The test server is made identical to prod again at the end. Skips loudly when not root.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

#[path = "common/lab.rs"]
mod lab;
use lab::Lab;

/// `mrte run --read-only` on the mirror port during `secs` of sysbench oltp_read_only (text
/// protocol, 2 threads); the JSON report.
fn run_during_load(mrte: &str, report: &Path, secs: u64) -> Value {
    let run = lab::mrte_run_on_mirror(mrte)
        .args(["--read-only", "--duration"])
        .arg((secs + 8).to_string())
        .arg("--report")
        .arg(report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab::sysbench_load("oltp_read_only", 2, secs as u32);
    let res = run.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "mrte run: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Mismatch + order-only + metadata mismatch of a `results` object.
fn diverged(r: &Value) -> u64 {
    n(&r["mismatch"]) + n(&r["order_only"]) + n(&r["metadata_mismatch"])
}

/// Does this fingerprint read column `c` of the sysbench tables? (Fingerprints fold the
/// table number: `sbtest?` covers sbtest1, whose `c` changes, and the three others.)
fn reads_c(fp: &str) -> bool {
    fp.contains(" from sbtest? ") && (fp.starts_with("select c ") || fp.contains("distinct c "))
}

#[test]
fn result_checksums_find_exactly_the_changed_column() {
    let Some(lab) = Lab::up("results_lab") else {
        return;
    };
    let mrte = env!("CARGO_BIN_EXE_mrte");
    let out = std::env::temp_dir().join(format!("mrte-results-lab-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    lab.copy_prod_to_test();

    // Identical data: every comparable result matches.
    let r = run_during_load(mrte, &out.join("same.json"), 6);
    let res = &r["results"];
    assert!(n(&res["compared"]) > 1000, "{res}");
    assert_eq!(diverged(res), 0, "identical servers diverged: {res}");
    assert_eq!(r["errors"]["test_only"], 0, "{}", r["errors"]);
    assert_eq!(r["accounting"]["balanced"], true, "{}", r["accounting"]);

    // Column c of sbtest1 changed on the test server only.
    lab.sql("test", "UPDATE sbtest.sbtest1 SET c = REVERSE(c)");
    let changed = lab.sql(
        "test",
        "SELECT COUNT(*) FROM sbtest.sbtest1 WHERE c <> REVERSE(c)",
    );
    assert_ne!(changed, "0");
    let r = run_during_load(mrte, &out.join("changed.json"), 6);
    assert!(diverged(&r["results"]) > 0, "{}", r["results"]);
    let mut c_fps = 0;
    let mut k_fps = 0;
    for f in r["fingerprints"].as_array().unwrap() {
        let fp = f["fingerprint"].as_str().unwrap_or("");
        let res = &f["results"];
        if n(&res["compared"]) == 0 {
            continue;
        }
        if reads_c(fp) {
            c_fps += 1;
            // The reads of sbtest1 (about a quarter) differ, the others match.
            assert!(n(&res["mismatch"]) > 0, "{fp}: {res}");
            assert!(n(&res["mismatch"]) < n(&res["compared"]), "{fp}: {res}");
            assert_eq!(n(&res["metadata_mismatch"]), 0, "{fp}: {res}");
        } else {
            if fp.starts_with("select sum(k) from sbtest? ") {
                k_fps += 1;
            }
            assert_eq!(diverged(res), 0, "{fp} does not read c: {res}");
        }
    }
    // sysbench oltp_read_only: point select, simple range, order range, distinct range on c;
    // sum range on k.
    assert_eq!(c_fps, 4, "fingerprints reading c: {c_fps}");
    assert_eq!(k_fps, 1, "SELECT SUM(k) FROM sbtest? compared");
    let _ = std::fs::remove_dir_all(&out);
}
