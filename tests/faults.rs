//! Faults seen from the `mrte` binary: SIGTERM during `mrte replay` (report still written, books
//! balanced), a replay whose every connect is refused (exit 1), the target password never in any
//! output nor in the process arguments, report files 0600, and `mrte record -w` on a full disk
//! (root only: a tiny tmpfs; skipped loudly otherwise). Skipped loudly when MariaDB is missing.

#[path = "../replay/tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::MariaDb;

#[path = "common/netns.rs"]
mod netns;
use mysql_async::prelude::Queryable;
use netns::{is_root, scratch, wait_output, Netns};

const PASSWORD: &str = "Pw-7f3a9c1e-secret";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn server_with_app_user(test: &str) -> Option<MariaDb> {
    let db = MariaDb::start(test)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut a = common::admin(&db).await;
        a.query_drop(format!(
            "CREATE USER 'app'@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO 'app'@'%'; \
             CREATE DATABASE sbtest"
        ))
        .await
        .expect("user");
        a.disconnect().await.expect("disconnect");
    });
    Some(db)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    let mut last = String::new();
    for _ in 0..5 {
        let mut s =
            TcpStream::connect(("127.0.0.1", port)).expect("metrics listening on 127.0.0.1");
        let mut body = String::new();
        match write!(s, "GET {path} HTTP/1.0\r\n\r\n").and_then(|_| s.read_to_string(&mut body)) {
            Ok(_) if body.starts_with("HTTP/1.1 200") => return body,
            Ok(_) => last = body,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// SIGTERM to a slow `mrte replay`: it stops within seconds, writes its reports (0600), the books
/// balance, and the password given in the DSN shows nowhere: not in /proc/PID/cmdline, the
/// output, the reports or the metrics.
#[test]
fn sigterm_writes_the_report_and_the_password_never_shows() {
    let name = "sigterm_writes_the_report_and_the_password_never_shows";
    let Some(db) = server_with_app_user(name) else {
        return;
    };
    let dir = scratch("mrte-faults", "sigterm");
    let (report, html) = (dir.join("r.json"), dir.join("r.html"));
    let metrics = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["-v", "replay", "-r"])
        .arg(fixture("sysbench_text.pcap"))
        .arg("--target")
        .arg(format!("mysql://app:{PASSWORD}@127.0.0.1:{}/", db.port))
        // 46 ms of capture stretched to 46 s.
        .args(["--speed", "0.001", "--metrics", &metrics.to_string()])
        .arg("--report")
        .arg(&report)
        .arg("--html")
        .arg(&html)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mrte");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(3));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("replay"), "{cmdline}");
    assert!(!cmdline.contains(PASSWORD), "password in argv: {cmdline}");
    let ps = Command::new("ps")
        .args(["-ww", "-eo", "args"])
        .output()
        .expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(PASSWORD));
    let scraped = http_get(metrics, "/metrics");
    assert!(
        scraped.contains("mrte_replayed_commands_total"),
        "{scraped}"
    );
    assert!(!scraped.contains(PASSWORD));

    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let (out, took) = wait_output(child, Duration::from_secs(30));
    assert!(took < Duration::from_secs(15), "took {took:?} to stop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("books:"), "{stdout}\n{stderr}");
    for (what, text) in [
        ("stdout", stdout.to_string()),
        ("stderr", stderr.to_string()),
        (
            "report",
            std::fs::read_to_string(&report).expect("report written"),
        ),
        (
            "html",
            std::fs::read_to_string(&html).expect("html written"),
        ),
    ] {
        assert!(!text.contains(PASSWORD), "password in {what}");
    }
    for f in [&report, &html] {
        let mode = std::fs::metadata(f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let books = &v["accounting"];
    assert_eq!(books["balanced"], true, "{books}");
    assert_eq!(books["failed"], 0, "{}", v["failed"]);
    assert_eq!(books["interrupted"], true, "{books}");
    assert!(books["replayed"].as_u64().unwrap_or(0) > 0, "{books}");
    assert!(v["skipped"]["shutdown"].as_u64().unwrap_or(0) > 0, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every connect refused (wrong password): every command failed with the reason, exit code 1.
#[test]
fn a_replay_where_every_connect_is_refused_exits_non_zero() {
    let name = "a_replay_where_every_connect_is_refused_exits_non_zero";
    let Some(db) = server_with_app_user(name) else {
        return;
    };
    let dir = scratch("mrte-faults", "refused");
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, "wrong\n").expect("pw file");
    let out = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["replay", "-q", "--speed", "max", "-r"])
        .arg(fixture("client_session.pcap"))
        .arg("--target")
        .arg(format!("mysql://app@127.0.0.1:{}", db.port))
        .arg("--target-password-file")
        .arg(&pwfile)
        .output()
        .expect("run mrte");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing could be replayed"), "{stderr}");
    // 8 queries + 2 INIT_DB fail; the QUIT has nothing to close.
    assert!(stdout.contains("failed connect_refused: 10"), "{stdout}");
    assert!(stdout.contains("replayed 0 "), "{stdout}");
    assert!(!stdout.contains("DO NOT BALANCE"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Walk a classic pcap: (records, true when the last record ends exactly at the end of file).
fn pcap_records(path: &Path) -> (u64, bool) {
    let d = std::fs::read(path).expect("read pcap");
    assert!(d.len() >= 24, "no pcap header");
    assert_eq!(&d[0..4], &0xa1b2_c3d4u32.to_le_bytes());
    let (mut pos, mut n) = (24usize, 0u64);
    while pos + 16 <= d.len() {
        let incl = u32::from_le_bytes([d[pos + 8], d[pos + 9], d[pos + 10], d[pos + 11]]) as usize;
        if pos + 16 + incl > d.len() {
            return (n, false);
        }
        pos += 16 + incl;
        n += 1;
    }
    (n, pos == d.len())
}

/// `mrte record -w` onto a 256 KiB tmpfs while 8 MB cross loopback: a clear error naming the
/// file, and what was written is a valid pcap (whole records only), mode 0600.
#[test]
fn record_on_a_full_disk_keeps_a_valid_pcap() {
    let name = "record_on_a_full_disk_keeps_a_valid_pcap";
    if !is_root() {
        eprintln!("\n*** SKIP {name}: needs root (mounts a tmpfs) ***\n");
        return;
    }
    let dir = scratch("mrte-faults", "fulldisk");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount");
    if !st.success() {
        eprintln!("\n*** SKIP {name}: cannot mount a tmpfs ***\n");
        return;
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _umount = Umount(mnt.clone());
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("listen");
    let file = mnt.join("full.pcap");
    let child = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args([
            "record",
            "-i",
            "lo",
            "--source",
            "pcap",
            "--duration",
            "20",
            "-p",
        ])
        .arg(port.to_string())
        .arg("-w")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mrte record");
    std::thread::sleep(Duration::from_millis(1500));
    let sender = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..128 {
            if c.write_all(&chunk).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let (mut server, _) = listener.accept().expect("accept");
    let mut sink = Vec::new();
    let _ = server.read_to_end(&mut sink);
    let _ = sender.join();
    let (out, _) = wait_output(child, Duration::from_secs(40));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("valid pcap"), "{stderr}");
    assert!(stderr.contains("full.pcap"), "{stderr}");
    let (records, whole) = pcap_records(&file);
    assert!(whole, "the file ends inside a record");
    assert!(records > 10, "{records} records");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(_umount);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The capture interface is deleted and created again 1.5 s later, during `mrte record` and
/// `mrte run` (libpcap): both re-bind, run to their --duration, the pcap stays valid and the run
/// still writes its report.
#[test]
fn capture_rebinds_after_the_interface_comes_back() {
    let name = "capture_rebinds_after_the_interface_comes_back";
    if !is_root() {
        eprintln!("\n*** SKIP {name}: needs root (network namespace) ***\n");
        return;
    }
    let Some(ns) = Netns::new("r", "fa") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let dir = scratch("mrte-faults", "rebind");
    let (file, report) = ns.record_and_run_through_relink(env!("CARGO_BIN_EXE_mrte"), "pcap", &dir);
    let (_, whole) = pcap_records(&file);
    assert!(whole);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(v["accounting"]["balanced"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mrte record` as user nobody holding only the capabilities of scripts/systemd/mrte.service,
/// on a veth in a private network namespace: AF_XDP binds (no fallback to libpcap) and the file
/// is written, mode 0600.
#[test]
fn record_runs_as_nobody_with_the_systemd_units_capabilities() {
    let name = "record_runs_as_nobody_with_the_systemd_units_capabilities";
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !is_root() || !has_setpriv {
        eprintln!("\n*** SKIP {name}: needs root and setpriv ***\n");
        return;
    }
    let Some(ns) = Netns::new("n", "fa") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd/mrte.service"),
    )
    .expect("unit");
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    let dir = scratch("mrte-faults", "nobody");
    assert!(Command::new("chown")
        .args(["nobody"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success()));
    let file = dir.join("x.pcap");
    let out = ns
        .exec("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg(env!("CARGO_BIN_EXE_mrte"))
        .args(["record", "-i", "fa0", "--duration", "1", "-w"])
        .arg(&file)
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("record stats");
    let source = v["source"].as_str().unwrap_or("");
    assert!(source.starts_with("AF_XDP"), "fell back: {source}");
    let meta = std::fs::metadata(&file).expect("file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(pcap_records(&file).1, "a valid pcap");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM to `mrte run` (libpcap on a veth in a private namespace, no target reachable): it
/// stops within the drain timeout and writes its report, marked interrupted, books balanced.
#[test]
fn sigterm_stops_mrte_run_and_writes_the_report() {
    signal_stops_mrte_run("sigterm_stops_mrte_run_and_writes_the_report", "-TERM");
}

/// The same with SIGINT (Ctrl-C at a terminal).
#[test]
fn sigint_stops_mrte_run_and_writes_the_report() {
    signal_stops_mrte_run("sigint_stops_mrte_run_and_writes_the_report", "-INT");
}

fn signal_stops_mrte_run(name: &str, signal: &str) {
    if !is_root() {
        eprintln!("\n*** SKIP {name}: needs root (network namespace) ***\n");
        return;
    }
    let Some(ns) = Netns::new(&signal[1..2].to_lowercase(), "fa") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let dir = scratch("mrte-faults", &format!("run{signal}"));
    let report = dir.join("r.json");
    let child = ns
        .exec(env!("CARGO_BIN_EXE_mrte"))
        .args([
            "run",
            "-q",
            "-i",
            "fa0",
            "--source",
            "pcap",
            "--drain-timeout",
            "2",
        ])
        .arg("--target")
        .arg(format!("mysql://root@127.0.0.1:{}", free_port()))
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mrte run");
    std::thread::sleep(Duration::from_secs(2));
    assert!(Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success()));
    let (out, took) = wait_output(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(v["accounting"]["interrupted"], true, "{}", v["accounting"]);
    assert_eq!(v["accounting"]["balanced"], true, "{}", v["accounting"]);
    let _ = std::fs::remove_dir_all(&dir);
}
