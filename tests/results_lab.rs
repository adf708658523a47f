//! Live result checksums on the SPAN lab (scripts/lab.sh), as root: `mrte run --read-only` during
//! sysbench oltp_read_only, with the test server's data first made identical to prod's, compares
//! every result and finds 0 mismatches; after column `c` of `sbtest1` is changed on the test
//! server only, a second run reports mismatches for exactly the fingerprints that read `c`
//! (`sbtest?`: sbtest1's share of them), and none for those that read only `k`
//! (`SELECT SUM(k) ...`).
//! The test server is made identical to prod again at the end. Skips loudly when not root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab lock of tests/lab.rs (same file, created exclusively; other lab users wait).
struct LabLock(PathBuf);

impl LabLock {
    fn take() -> Self {
        let p = PathBuf::from("/var/tmp/mrte-lab.lock");
        let start = Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
            {
                Ok(_) => return LabLock(p),
                Err(_) if start.elapsed() < Duration::from_secs(900) => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Err(e) => panic!("lab lock {}: {e}", p.display()),
            }
        }
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Lab {
    dir: PathBuf,
    _lock: LabLock,
}

impl Lab {
    fn up() -> Option<Lab> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("SKIP results lab test: not root");
            return None;
        }
        let lock = LabLock::take();
        let st = Command::new(root().join("scripts/lab.sh"))
            .arg("up")
            .status()
            .ok()?;
        assert!(st.success(), "scripts/lab.sh up failed");
        let dir = std::env::var("LAB_DIR").unwrap_or_else(|_| "/var/tmp/mrte-lab".into());
        Some(Lab {
            dir: PathBuf::from(dir),
            _lock: lock,
        })
    }

    fn sock(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.sock"))
    }

    /// Copy prod's sbtest onto the test server (other tests replay writes there).
    fn copy_prod_to_test(&self) {
        let script = format!(
            "set -o pipefail; mariadb-dump --no-defaults -S {} -uroot --databases sbtest \
             --single-transaction | mariadb --no-defaults -S {} -uroot",
            self.sock("prod").display(),
            self.sock("test").display()
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "copy prod to test: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn sql(&self, server: &str, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-N", "-uroot", "-S"])
            .arg(self.sock(server))
            .args(["-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{server}: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.copy_prod_to_test();
        let _ = Command::new(root().join("scripts/lab.sh"))
            .arg("down")
            .status();
    }
}

fn in_ns(ns: &str, cmd: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, cmd]);
    c
}

/// `mrte run --read-only` on the mirror port during `secs` of sysbench oltp_read_only (text
/// protocol, 2 threads); the JSON report.
fn run_during_load(mrte: &str, report: &Path, secs: u64) -> Value {
    let run = in_ns("mrte-cap", mrte)
        .args([
            "run",
            "-i",
            "span0",
            "--source",
            "pcap",
            "--target",
            "mysql://sbtest:sbtest@198.18.1.2:3306/sbtest",
            "--read-only",
            "--ring",
            "1048576",
            "--quiet",
            "--duration",
        ])
        .arg((secs + 8).to_string())
        .arg("--report")
        .arg(report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let load = Command::new(root().join("scripts/lab.sh"))
        .arg("load")
        .env("DURATION", secs.to_string())
        .env("THREADS", "2")
        .env("WORKLOAD", "oltp_read_only")
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
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
    let Some(lab) = Lab::up() else { return };
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
