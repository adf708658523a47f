//! Read-write replay that ends where prod ended (issue 11), live on the SPAN lab
//! (scripts/lab.sh), as root: test starts as a copy of prod (mariadb-dump), `mrte run --sync
//! commit` replays sysbench oltp_read_write (8, then 16 threads) as it runs on prod, and
//! afterwards CHECKSUM TABLE of every sbtest table on test equals prod's, with no test-only error
//! and no row-count or affected-rows mismatch. Skips loudly when not root.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

#[path = "common/lab.rs"]
mod lab;
use lab::Lab;

const TABLES: usize = 4;

/// CHECKSUM TABLE of every sbtest table.
fn checksums(lab: &Lab, server: &str) -> Vec<String> {
    let tables: Vec<String> = (1..=TABLES).map(|i| format!("sbtest.sbtest{i}")).collect();
    lab.sql(server, &format!("CHECKSUM TABLE {}", tables.join(",")))
        .lines()
        .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
        .collect()
}

/// One live run: `mrte run --sync commit` while sysbench oltp_read_write runs `threads` threads
/// for `secs` seconds; the report.
fn live_run(threads: u32, secs: u32, report: &std::path::Path) -> (Value, String) {
    let mrte = env!("CARGO_BIN_EXE_mrte");
    let run = lab::mrte_run_on_mirror(mrte)
        .args(["--sync", "commit", "--duration"])
        .arg((secs + 6).to_string())
        .arg("--report")
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab::sysbench_load("oltp_read_write", threads, secs);
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
    let Some(lab) = Lab::fresh("sync_lab") else {
        return;
    };
    let out = std::env::temp_dir().join(format!("mrte-sync-lab-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut judged = 0;
    for threads in [8, 16] {
        lab.copy_prod_to_test();
        assert_eq!(checksums(&lab, "prod"), checksums(&lab, "test"), "copy");
        let (r, text) = live_run(threads, 6, &out.join(format!("report-{threads}.json")));
        let prod = checksums(&lab, "prod");
        let test = checksums(&lab, "test");
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
