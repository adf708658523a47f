//! AF_XDP faults on a veth pair in a private network namespace (root only; skipped otherwise):
//! the capture interface deleted and created again under `mrte record` and `mrte run`, and an
//! XDP program left attached by an mrte that was killed.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mrte-xdpf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn wait_output(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return (child.wait_with_output().expect("output"), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mrte did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private network namespace with a veth pair `xa0`/`xa1` (removed on drop).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Self> {
        let ns = Netns(format!("mrte-x{tag}-{}", std::process::id()));
        let ok = Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .is_ok_and(|s| s.success());
        (ok && ns.veth()).then_some(ns)
    }

    fn ip(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "ip"])
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn veth(&self) -> bool {
        self.ip(&["link", "add", "xa0", "type", "veth", "peer", "name", "xa1"])
            && self.ip(&["link", "set", "xa0", "up"])
            && self.ip(&["link", "set", "xa1", "up"])
    }

    fn mrte(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, env!("CARGO_BIN_EXE_mrte")]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The AF_XDP capture interface is deleted and created again 1.5 s later, during `mrte record`
/// and `mrte run`: both bind a new socket ("re-bound"), run to their --duration and exit 0, the
/// pcap stays whole and the run writes its report with balanced books.
#[test]
fn xdp_capture_rebinds_after_the_interface_comes_back() {
    let name = "xdp_capture_rebinds_after_the_interface_comes_back";
    if !is_root() {
        eprintln!("\n*** SKIP {name}: needs root (network namespace, AF_XDP) ***\n");
        return;
    }
    let Some(ns) = Netns::new("r") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let dir = scratch("rebind");
    let file = dir.join("r.pcap");
    let report = dir.join("r.json");
    let dead = format!(
        "mysql://root@127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    );
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
        let child = ns
            .mrte()
            .args(&args)
            .args(["-i", "xa0", "--source", "xdp", "--duration", "6"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mrte");
        std::thread::sleep(Duration::from_secs(2));
        assert!(ns.ip(&["link", "del", "xa0"]));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(ns.veth());
        let (out, took) = wait_output(child, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("re-bound"), "{args:?}: {stderr}");
        assert!(took < Duration::from_secs(20), "{took:?}");
    }
    let bytes = std::fs::read(&file).expect("pcap");
    assert!(bytes.len() >= 24, "a pcap header");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(v["accounting"]["balanced"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An mrte killed with SIGKILL leaves its XDP program attached; the next `mrte record --source
/// xdp` fails with an error that names the program and the command that removes it, and after
/// that command it binds again.
#[test]
fn a_stale_xdp_program_gives_the_command_that_removes_it() {
    let name = "a_stale_xdp_program_gives_the_command_that_removes_it";
    if !is_root() {
        eprintln!("\n*** SKIP {name}: needs root (network namespace, AF_XDP) ***\n");
        return;
    }
    let Some(ns) = Netns::new("s") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let dir = scratch("stale");
    let file = dir.join("s.pcap");
    let mut first = ns
        .mrte()
        .args([
            "record",
            "-i",
            "xa0",
            "--source",
            "xdp",
            "--duration",
            "30",
            "-w",
        ])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mrte");
    // Wait until its program is attached, then kill it without letting it clean up.
    let attached = || {
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "ip", "link", "show", "xa0"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
    };
    let t = Instant::now();
    while !attached() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(attached(), "mrte attached no XDP program");
    // `ip netns exec` execs mrte, so the child is mrte itself.
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert!(attached(), "the killed mrte's program stays attached");
    let again = |secs: &str| {
        ns.mrte()
            .args([
                "record",
                "-i",
                "xa0",
                "--source",
                "xdp",
                "--duration",
                secs,
                "-w",
            ])
            .arg(&file)
            .output()
            .expect("mrte")
    };
    let out = again("1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "bound over a stale program: {stderr}"
    );
    assert!(
        stderr.contains("ip link set dev xa0 xdpgeneric off"),
        "no command to remove it: {stderr}"
    );
    assert!(ns.ip(&["link", "set", "dev", "xa0", "xdpgeneric", "off"]));
    let out = again("1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
