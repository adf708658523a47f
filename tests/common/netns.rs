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

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
