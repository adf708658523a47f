//! The SPAN lab (scripts/lab.sh) for tests, shared by every test binary that uses it: one lock,
//! one bring-up, the servers' sockets and SQL. Tests elsewhere include it with `#[path]`.
//!
//! Does not start any load or mrte itself; the tests do that.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "netns.rs"]
mod netns;
pub use netns::is_root;

/// Where scripts/lab.sh keeps its servers' sockets.
pub const LAB_DIR: &str = "/var/tmp/mrte-lab";

/// The workspace root (the directory holding scripts/lab.sh), from any crate of the workspace.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("scripts/lab.sh").exists())
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .to_path_buf()
}

pub fn lab_script() -> PathBuf {
    root().join("scripts/lab.sh")
}

/// Serialises lab use across test binaries and scripts (an O_EXCL file; scripts take it too).
pub struct LabLock(PathBuf);

impl LabLock {
    pub fn take() -> Self {
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

/// The lab, up and locked for one test; taken down on drop.
pub struct Lab {
    dir: PathBuf,
    _lock: LabLock,
}

impl Lab {
    /// Lock and bring the lab up; `None` (after a loud SKIP naming `test`) when not root.
    pub fn up(test: &str) -> Option<Lab> {
        Lab::start(test, false)
    }

    /// Like [`Lab::up`], but from a clean state: a lab left up by a killed run is taken down first.
    pub fn fresh(test: &str) -> Option<Lab> {
        Lab::start(test, true)
    }

    fn start(test: &str, fresh: bool) -> Option<Lab> {
        if !is_root() {
            eprintln!("SKIP {test}: the SPAN lab needs root");
            return None;
        }
        if !lab_script().exists() {
            eprintln!("SKIP {test}: {} is missing", lab_script().display());
            return None;
        }
        let lock = LabLock::take();
        if fresh {
            let _ = Command::new(lab_script())
                .arg("down")
                .stdout(Stdio::null())
                .status();
        }
        let st = Command::new(lab_script()).arg("up").status().ok()?;
        assert!(st.success(), "scripts/lab.sh up failed");
        let dir = std::env::var("LAB_DIR").unwrap_or_else(|_| LAB_DIR.into());
        Some(Lab {
            dir: PathBuf::from(dir),
            _lock: lock,
        })
    }

    /// The unix socket of `server` ("prod" or "test").
    pub fn sock(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.sock"))
    }

    /// Run `sql` as root on `server`; its output without column names, trimmed.
    pub fn sql(&self, server: &str, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-N", "-uroot", "-S"])
            .arg(self.sock(server))
            .args(["-e", sql])
            .output()
            .expect("mariadb client");
        assert!(
            out.status.success(),
            "{server}: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The test server's sbtest becomes a copy of prod's.
    pub fn copy_prod_to_test(&self) {
        self.sql("test", "DROP DATABASE IF EXISTS sbtest");
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(lab_script()).arg("down").status();
    }
}

/// `cmd` run inside network namespace `ns`.
pub fn in_ns(ns: &str, cmd: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, cmd]);
    c
}

/// The test server as the lab's replay target.
pub const TEST_TARGET: &str = "mysql://sbtest:sbtest@198.18.1.2:3306/sbtest";

/// `mrte run` (binary `mrte`) in the capture namespace on the mirror port through libpcap,
/// replaying to the lab's test server with a large ring and quiet output; the caller adds the
/// rest (duration, report, mode flags).
pub fn mrte_run_on_mirror(mrte: &str) -> Command {
    let mut c = in_ns("mrte-cap", mrte);
    c.args([
        "run",
        "-i",
        "span0",
        "--source",
        "pcap",
        "--target",
        TEST_TARGET,
        "--ring",
        "1048576",
        "--quiet",
    ]);
    c
}

/// `scripts/lab.sh load`: sysbench `workload` on prod with `threads` threads for `secs` seconds;
/// sysbench's standard output (it must succeed).
pub fn sysbench_load(workload: &str, threads: u32, secs: u32) -> String {
    let load = Command::new(lab_script())
        .arg("load")
        .env("DURATION", secs.to_string())
        .env("THREADS", threads.to_string())
        .env("WORKLOAD", workload)
        .output()
        .expect("scripts/lab.sh load");
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    String::from_utf8_lossy(&load.stdout).into_owned()
}
