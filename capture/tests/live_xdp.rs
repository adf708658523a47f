//! Live capture on the lab's mirror port (root only): a scripted mariadb client session decoded by
//! the AF_XDP source and by the libpcap source, and exact ring-overflow counts with a tiny ring.
//!
//! Skips loudly when not root or when scripts/lab.sh is missing. Lab use is serialised with the
//! lockfile the other lab tests take; the lab is brought down at the end only if this test brought
//! it up. setns(2) would need unsafe code, so the outer test re-runs this binary under
//! `ip netns exec mrte-cap` for the inner, ignored test that does the capturing.

use std::process::Command;
use std::time::Duration;

use mrte_capture::event::{Command as Cmd, SessionEvent};
use mrte_capture::pipeline::PipelineConfig;
use mrte_capture::source::live::{self, LiveConfig, SourceKind};
use mrte_capture::stats::Stats;

#[path = "../../tests/common/lab.rs"]
mod lab;
use lab::Lab;

/// One live run: capture on span0 while the scripted client session runs.
struct Run {
    note: String,
    stats: Stats,
    /// Per session with at least one command: (events taken, events dropped by the ring, queries).
    sessions: Vec<(Vec<SessionEvent>, u64, Vec<String>)>,
}

fn capture_session(source: SourceKind, ring_capacity: usize) -> Run {
    let cfg = LiveConfig {
        iface: "span0".into(),
        pipeline: PipelineConfig::default(),
        source,
        xdp_mode: live::XdpMode::Auto,
        ring_capacity,
        max_queued_events: 0,
        duration: Some(Duration::from_secs(30)),
        count: None,
        core: None,
        queues: 1,
        cores: Vec::new(),
        busy_poll_usecs: 0,
        dropped_commits: None,
        events: true,
    };
    let h = live::start(cfg).unwrap_or_else(|e| panic!("{source:?} on span0: {e}"));
    let note = h.source_note.clone();
    let rx = h.sessions();
    std::thread::sleep(Duration::from_millis(1500));
    let out = Command::new("ip")
        .args(["netns", "exec", "mrte-app", "mariadb", "-h", "198.18.0.2"])
        .args(["--skip-ssl", "-usbtest", "-psbtest", "sbtest"])
        .args(["-e", "SELECT 1; SELECT 2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let stats = h.join().unwrap();
    let mut sessions = Vec::new();
    while let Ok(mut s) = rx.try_recv() {
        let mut evs = Vec::new();
        while let Some(e) = s.try_pop() {
            evs.push(e);
        }
        let queries: Vec<String> = evs
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Command(c) => match &c.command {
                    Cmd::Query { sql, .. } => Some(String::from_utf8_lossy(sql).into_owned()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        sessions.push((evs, s.dropped(), queries));
    }
    Run {
        note,
        stats,
        sessions,
    }
}

fn in_capture_ns() -> bool {
    std::env::var_os("MRTE_LIVE_XDP_IN_NS").is_some()
}

/// Runs the real checks; executed inside `ip netns exec mrte-cap` by `live_sources_on_lab`.
#[test]
#[ignore = "run by live_sources_on_lab inside the capture namespace"]
fn live_sources_inner() {
    assert!(in_capture_ns(), "run through live_sources_on_lab");

    // AF_XDP: the scripted session's two queries, in order, no kernel drops.
    let xdp = capture_session(SourceKind::Xdp, 1024);
    eprintln!("AF_XDP run: {}", xdp.note);
    assert!(xdp.note.starts_with("AF_XDP"), "{}", xdp.note);
    assert_eq!(xdp.sessions.len(), 1, "one client session expected");
    let (evs, dropped, queries) = &xdp.sessions[0];
    assert_eq!(queries, &["SELECT 1", "SELECT 2"], "{evs:#?}");
    assert_eq!(*dropped, 0);
    assert!(matches!(evs.first(), Some(SessionEvent::Open(_))));
    assert!(matches!(evs.last(), Some(SessionEvent::Close(_))));
    assert_eq!(xdp.stats.kernel_drops, 0);
    assert_eq!(xdp.stats.ring_drops, 0);
    let pushed = evs.len() as u64;

    // libpcap: the same decode.
    let pcap = capture_session(SourceKind::Pcap, 1024);
    eprintln!("libpcap run: {}", pcap.note);
    assert!(pcap.note.starts_with("libpcap"), "{}", pcap.note);
    assert_eq!(pcap.sessions.len(), 1);
    assert_eq!(pcap.sessions[0].2, ["SELECT 1", "SELECT 2"]);
    assert_eq!(pcap.sessions[0].0.len() as u64, pushed);
    assert_eq!(pcap.stats.kernel_drops, 0);

    // A ring of 2 events, drained only after the capture ended: exactly the first two events
    // survive and every other one is counted as dropped.
    let tiny = capture_session(SourceKind::Xdp, 2);
    assert_eq!(tiny.sessions.len(), 1);
    let (evs, dropped, _) = &tiny.sessions[0];
    assert_eq!(evs.len(), 2);
    assert!(matches!(evs[0], SessionEvent::Open(_)));
    assert!(matches!(evs[1], SessionEvent::Login(_)));
    assert_eq!(*dropped, pushed - 2);
    assert_eq!(tiny.stats.ring_drops, pushed - 2);
    assert_eq!(tiny.stats.ring_overflow_sessions, 1);
}

#[test]
fn live_sources_on_lab() {
    let Some(_lab) = Lab::up("live_xdp") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", "mrte-cap"])
        .arg(exe)
        .args([
            "--ignored",
            "--exact",
            "live_sources_inner",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MRTE_LIVE_XDP_IN_NS", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "live sources in mrte-cap failed");
    assert!(text.contains("1 passed"), "inner test did not run");
}
