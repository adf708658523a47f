//! AF_XDP faults on a veth pair in a private network namespace (root only; skipped otherwise):
//! the capture interface deleted and created again under `mrte record` and `mrte run`, and an
//! XDP program left attached by an mrte that was killed.

use std::process::Stdio;
use std::time::{Duration, Instant};

#[path = "common/netns.rs"]
mod netns;
use netns::{is_root, scratch, Netns};

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
    let Some(ns) = Netns::new("r", "xa") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let dir = scratch("mrte-xdpf", "rebind");
    let (file, report) = ns.record_and_run_through_relink(env!("CARGO_BIN_EXE_mrte"), "xdp", &dir);
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
    let Some(ns) = Netns::new("s", "xa") else {
        eprintln!("\n*** SKIP {name}: cannot create a network namespace with a veth pair ***\n");
        return;
    };
    let dir = scratch("mrte-xdpf", "stale");
    let file = dir.join("s.pcap");
    let mut first = ns
        .exec(env!("CARGO_BIN_EXE_mrte"))
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
        ns.exec("ip")
            .args(["link", "show", "xa0"])
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
        ns.exec(env!("CARGO_BIN_EXE_mrte"))
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
