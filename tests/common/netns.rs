//! Process and namespace helpers for tests that need root: a private network namespace with a
//! veth pair, a scratch directory, a bounded wait for a child. Included with `#[path]`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A fresh, empty directory under the system temp dir, unique to this process.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Wait for `child` at most `limit` (then kill it and panic); its output and the time it took.
pub fn wait_output(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return (child.wait_with_output().expect("output"), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("child did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private network namespace with a veth pair `<veth>0`/`<veth>1`, both up (removed on drop).
pub struct Netns {
    pub name: String,
    veth: String,
}

impl Netns {
    /// `None` when the namespace or the veth pair cannot be made.
    pub fn new(tag: &str, veth: &str) -> Option<Self> {
        let ns = Netns {
            name: format!("mrte-{veth}{tag}-{}", std::process::id()),
            veth: veth.to_owned(),
        };
        let ok = Command::new("ip")
            .args(["netns", "add", &ns.name])
            .status()
            .is_ok_and(|s| s.success());
        (ok && ns.veth()).then_some(ns)
    }

    /// (Re)create the veth pair and bring both ends up.
    pub fn veth(&self) -> bool {
        let (a, b) = (format!("{}0", self.veth), format!("{}1", self.veth));
        self.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
            && self.ip(&["link", "set", &a, "up"])
            && self.ip(&["link", "set", &b, "up"])
    }

    /// `ip ARGS` inside the namespace; whether it succeeded.
    pub fn ip(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "ip"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `program` run inside the namespace.
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Netns {
    /// `mrte record -w DIR/r.pcap` then `mrte run` (dead target, report DIR/r.json), each on
    /// `<veth>0` with `--source SOURCE` for 6 s while `<veth>0` is deleted 2 s in and created
    /// again 1.5 s later. Asserts each exits 0 within 20 s, saying "re-bound". Returns (pcap,
    /// report) paths.
    pub fn record_and_run_through_relink(
        &self,
        mrte: &str,
        source: &str,
        dir: &std::path::Path,
    ) -> (PathBuf, PathBuf) {
        let iface = format!("{}0", self.veth);
        let file = dir.join("r.pcap");
        let report = dir.join("r.json");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dead = format!("mysql://root@127.0.0.1:{port}");
        let runs: [Vec<String>; 2] = [
            vec!["record".into(), "-w".into(), file.display().to_string()],
            vec![
                "run".into(),
                "-q".into(),
                "--target".into(),
                dead,
                "--report".into(),
                report.display().to_string(),
            ],
        ];
        for args in runs {
            let child = self
                .exec(mrte)
                .args(&args)
                .args(["-i", &iface, "--source", source, "--duration", "6"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn mrte");
            std::thread::sleep(Duration::from_secs(2));
            assert!(self.ip(&["link", "del", &iface]));
            std::thread::sleep(Duration::from_millis(1500));
            assert!(self.veth());
            let (out, took) = wait_output(child, Duration::from_secs(60));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert!(stderr.contains("re-bound"), "{args:?}: {stderr}");
            assert!(took < Duration::from_secs(20), "{took:?}");
        }
        (file, report)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
