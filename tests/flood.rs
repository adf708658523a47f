//! A session flood through `mrte inspect`: connections joined mid-stream that each send one query
//! and never close, more of them than `--max-sessions`. The table stays at the limit by evicting
//! the least recently used session, every eviction is counted, and no query is lost: an evicted
//! session hands out its waiting command before it goes.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// A pcap (Ethernet) of `n` connections, one frame each: a COM_QUERY from client `i` to
/// 198.18.0.2:3306, mid-stream (no SYN, ACK set), never answered nor closed.
fn flood_pcap(n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + n as usize * 120);
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let sql = b"SELECT c FROM sbtest1 WHERE id=42";
    let mut mysql = ((sql.len() + 1) as u32).to_le_bytes()[..3].to_vec();
    mysql.push(0);
    mysql.push(0x03);
    mysql.extend_from_slice(sql);
    for i in 0..n {
        let mut f = Vec::with_capacity(120);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let ip_len = (20 + 20 + mysql.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        f.extend_from_slice(&[198, 18, 0, 2]);
        f.extend_from_slice(&(20000 + (i % 40000) as u16).to_be_bytes());
        f.extend_from_slice(&3306u16.to_be_bytes());
        f.extend_from_slice(&1000u32.to_be_bytes());
        f.extend_from_slice(&5000u32.to_be_bytes());
        f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&mysql);
        let ts_us = 1_700_000_000_000_000u64 + u64::from(i) * 3;
        out.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

fn summary(path: &PathBuf, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["inspect", "-f", "summary", "-r"])
        .arg(path)
        .args(extra)
        .output()
        .expect("run mrte");
    assert!(
        out.status.success(),
        "mrte inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("summary JSON")
}

#[test]
fn a_flood_beyond_max_sessions_evicts_and_counts_every_session() {
    const N: u64 = 30_000;
    const MAX: u64 = 4_000;
    let path = std::env::temp_dir().join(format!("mrte-flood-{}.pcap", std::process::id()));
    std::fs::write(&path, flood_pcap(N as u32)).expect("write flood pcap");

    let s = summary(&path, &["--max-sessions", &MAX.to_string()]);
    assert_eq!(s["packets"], N, "{s}");
    assert_eq!(s["sessions"], N, "{s}");
    assert_eq!(s["midstream_sessions"], N, "{s}");
    assert_eq!(
        s["table_evicted"],
        N - MAX,
        "every session beyond the limit evicts one: {s}"
    );
    assert_eq!(s["idle_evicted"], 0, "{s}");
    assert_eq!(s["active_sessions"], 0, "{s}");
    assert_eq!(
        s["commands"]["COM_QUERY"], N,
        "an evicted session hands out its waiting query: {s}"
    );

    // The same flood within the limit: nothing evicted, the same queries.
    let free = summary(&path, &[]);
    assert_eq!(free["table_evicted"], 0, "{free}");
    assert_eq!(free["commands"]["COM_QUERY"], N, "{free}");
    let _ = std::fs::remove_file(&path);
}

/// `inspect -f summary` of a file on several threads (each decoding its share of the flows)
/// counts exactly what one thread counts, the peak of buffered bytes included, on every fixture
/// and on a flood.
#[test]
fn a_summary_on_several_threads_counts_what_one_thread_counts() {
    let flood = std::env::temp_dir().join(format!("mrte-flood-t-{}.pcap", std::process::id()));
    std::fs::write(&flood, flood_pcap(5_000)).expect("write flood pcap");
    let mut files = vec![flood.clone()];
    for dir in ["tests/fixtures", "tests/fixtures/hostile"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in std::fs::read_dir(&dir).expect("fixtures") {
            let p = e.expect("entry").path();
            let name = p.to_string_lossy();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                files.push(p);
            }
        }
    }
    let run = |path: &PathBuf, threads: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_mrte"))
            .args(["inspect", "-f", "summary", "--threads", threads, "-r"])
            .arg(path)
            .output()
            .expect("run mrte");
        (out.status.code(), out.stdout)
    };
    let mut buffered = 0;
    for f in &files {
        let one = run(f, "1");
        for n in ["2", "3"] {
            assert_eq!(run(f, n), one, "{} on {n} threads", f.display());
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&one.1) {
            buffered += u64::from(v["peak_buffered_bytes"].as_u64().unwrap_or(0) > 0);
        }
    }
    assert!(files.len() > 30, "{files:?}");
    assert!(
        buffered > 5,
        "the peak is compared on captures that buffer: {buffered}"
    );
    let _ = std::fs::remove_file(&flood);
}
