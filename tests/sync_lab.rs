//! Read-write replay that ends where prod ended (issue 11), live on the SPAN lab
//! (scripts/lab.sh), as root: test starts as a copy of prod (mariadb-dump), `mrte run --sync
//! commit` replays sysbench oltp_read_write (8, then 16 threads) as it runs on prod, and
//! afterwards CHECKSUM TABLE of every sbtest table on test equals prod's, with no test-only error
//! and no row-count or affected-rows mismatch. Skips loudly when not root.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab lock of tests/lab.rs (O_EXCL file): one lab user at a time across test binaries.
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
    _lock: LabLock,
}

impl Lab {
    fn up() -> Option<Lab> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("SKIP sync lab test: not root");
            return None;
        }
        let lock = LabLock::take();
        let _ = Command::new(root().join("scripts/lab.sh"))
            .arg("down")
            .stdout(Stdio::null())
            .status();
        let st = Command::new(root().join("scripts/lab.sh"))
            .arg("up")
            .status()
            .ok()?;
        assert!(st.success(), "scripts/lab.sh up failed");
        Some(Lab { _lock: lock })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/lab.sh"))
            .arg("down")
            .status();
    }
}

const LAB: &str = "/var/tmp/mrte-lab";
const TABLES: usize = 4;

fn sql(server: &str, q: &str) -> String {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "-N", "-S"])
        .arg(format!("{LAB}/{server}.sock"))
        .args(["-e", q])
        .output()
        .expect("mariadb client");
    assert!(
        out.status.success(),
        "{server}: {q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Test becomes a copy of prod's sbtest schema.
fn copy_prod_to_test() {
    sql("test", "DROP DATABASE IF EXISTS sbtest");
    let sh = format!(
        "mariadb-dump --no-defaults -S {LAB}/prod.sock -uroot --databases sbtest --single-transaction \
         | mariadb --no-defaults -S {LAB}/test.sock -uroot"
    );
    let st = Command::new("sh").args(["-c", &sh]).status().unwrap();
    assert!(st.success(), "copying prod to test");
}

/// CHECKSUM TABLE of every sbtest table.
fn checksums(server: &str) -> Vec<String> {
    let tables: Vec<String> = (1..=TABLES).map(|i| format!("sbtest.sbtest{i}")).collect();
    sql(server, &format!("CHECKSUM TABLE {}", tables.join(",")))
        .lines()
        .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
        .collect()
}

/// One live run: `mrte run --sync commit` while sysbench oltp_read_write runs `threads` threads
/// for `secs` seconds; the report.
fn live_run(threads: u32, secs: u32, report: &std::path::Path) -> (Value, String) {
    let mrte = env!("CARGO_BIN_EXE_mrte");
    let run = Command::new("ip")
        .args(["netns", "exec", "mrte-cap", mrte])
        .args([
            "run",
            "-i",
            "span0",
            "--source",
            "pcap",
            "--target",
            "mysql://sbtest:sbtest@198.18.1.2:3306/sbtest",
            "--sync",
            "commit",
            "--ring",
            "1048576",
            "--quiet",
            "--duration",
        ])
        .arg((secs + 6).to_string())
        .arg("--report")
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let load = Command::new(root().join("scripts/lab.sh"))
        .arg("load")
        .env("DURATION", secs.to_string())
        .env("THREADS", threads.to_string())
        .env("WORKLOAD", "oltp_read_write")
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let res = run.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&res.stdout).into_owned();
    assert!(
        res.status.success(),
        "mrte run: {text}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    (r, text)
}

#[test]
fn sync_commit_replay_ends_where_prod_ended() {
    let Some(_lab) = Lab::up() else { return };
    let out = std::env::temp_dir().join(format!("mrte-sync-lab-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut judged = 0;
    for threads in [8, 16] {
        copy_prod_to_test();
        assert_eq!(checksums("prod"), checksums("test"), "copy");
        let (r, text) = live_run(threads, 6, &out.join(format!("report-{threads}.json")));
        let prod = checksums("prod");
        let test = checksums("test");
        eprintln!("{threads} threads:\n{text}");
        assert!(
            r["captured"]["by_command"]["COM_QUERY"].as_u64() > Some(1000),
            "{r}"
        );
        let (kernel, gaps) = (r["drops"]["kernel"].as_u64(), r["drops"]["gaps"].as_u64());
        if threads > 8 && (kernel != Some(0) || gaps != Some(0)) {
            // Frames lost before mrte saw them leave sessions with gaps: such a run cannot be
            // judged. Only the heavier run may be excused (2-core CI box, 16 sysbench threads).
            eprintln!(
                "SKIP judging {threads} threads: the capture lost frames before mrte (kernel {kernel:?}, gaps {gaps:?}); CPU-starved machine"
            );
            continue;
        }
        judged += 1;
        let gate = &r["sync"]["gate"];
        assert_eq!(gate["mode"], "commit", "{r}");
        assert!(gate["commits"].as_u64() > Some(100), "{gate}");
        // Every commit prod made was replayed with a reply, none given up.
        assert_eq!(gate["commits"], gate["commits_replied"], "{gate}");
        // Timeouts are counted (and explained by their samples); they must stay rare.
        let timeouts = gate["sync_timeouts"]
            .as_u64()
            .expect("sync_timeouts counted");
        let samples = gate["timeout_samples"].as_array().map_or(0, |a| a.len());
        assert_eq!(samples as u64, timeouts.min(10), "{gate}");
        assert_eq!(r["errors"]["test_only"], 0, "{threads} threads: {text}");
        assert_eq!(r["errors"]["replay_failed"], 0, "{text}");
        assert_eq!(r["rows_mismatch"], 0, "{threads} threads: {text}");
        assert_eq!(r["drops"]["kernel"], 0);
        assert_eq!(r["drops"]["gaps"], 0);
        assert_eq!(
            prod, test,
            "{threads} threads: CHECKSUM TABLE prod vs test\n{text}"
        );
    }
    assert!(judged >= 1, "no run could be judged");
    let _ = std::fs::remove_dir_all(&out);
}
