//! Reassembly on a real capture: the 18 MiB statement of tests/fixtures/big_statement.pcap.gz with
//! one early client segment lost by the prod network and retransmitted several MB later must still
//! decode whole through `mrte inspect`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use mrte_capture::net::{slice_tcp, LinkType};
use serde_json::Value;

/// Client bytes sent between the lost segment and its retransmission.
const LATER_BYTES: usize = 6 << 20;

fn gunzip(path: &Path) -> Vec<u8> {
    let mut d = flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture"));
    let mut v = Vec::new();
    d.read_to_end(&mut v).expect("gunzip fixture");
    v
}

/// Classic pcap records: (start offset, end offset) of each record, header included.
fn records(pcap: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(
        &pcap[..4],
        &0xa1b2_c3d4u32.to_le_bytes(),
        "µs little-endian pcap"
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push((at, at + 16 + incl));
        at += 16 + incl;
    }
    assert_eq!(at, pcap.len());
    out
}

fn link_of(pcap: &[u8]) -> LinkType {
    LinkType::from_linktype(u32::from_le_bytes(pcap[20..24].try_into().unwrap()))
}

/// The capture with one early client data segment moved to after `LATER_BYTES` of later client
/// data. Server acknowledgements in between are held at the hole (the server never got it), as a
/// real retransmission would look. Returns the new file and the moved segment's sequence number.
fn lose_and_retransmit(pcap: &[u8]) -> (Vec<u8>, u32) {
    let link = link_of(pcap);
    let recs = records(pcap);
    let seg = |r: &(usize, usize)| slice_tcp(link, &pcap[r.0 + 16..r.1]).ok();
    let to_server = |r: &(usize, usize)| {
        seg(r).is_some_and(|s| s.dst.port() == 3306 && s.payload.len() >= 1000)
    };
    // The 10th full client segment of the statement.
    let lost = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| to_server(r))
        .nth(10)
        .expect("statement segments")
        .0;
    let hole = seg(&recs[lost]).unwrap().seq;
    let mut later = 0;
    let mut back = lost + 1;
    while later < LATER_BYTES {
        if to_server(&recs[back]) {
            later += seg(&recs[back]).unwrap().payload.len();
        }
        back += 1;
    }
    let mut out = pcap[..24].to_vec();
    for (i, r) in recs.iter().enumerate() {
        if i == lost {
            continue;
        }
        let start = out.len();
        out.extend_from_slice(&pcap[r.0..r.1]);
        if i > lost && i < back {
            hold_ack(&mut out[start + 16..], link, hole);
        }
        if i == back {
            out.extend_from_slice(&pcap[recs[lost].0..recs[lost].1]);
        }
    }
    (out, hole)
}

/// A server segment acknowledging past `hole` acknowledges only up to it.
fn hold_ack(frame: &mut [u8], link: LinkType, hole: u32) {
    let Ok(s) = slice_tcp(link, frame) else {
        return;
    };
    if s.src.port() != 3306 || !s.flags.ack || (s.ack.wrapping_sub(hole) as i32) <= 0 {
        return;
    }
    assert_eq!(link, LinkType::LinuxSll2, "fixture link type");
    let ip = 20;
    assert_eq!(frame[ip] >> 4, 4, "IPv4");
    let tcp = ip + usize::from(frame[ip] & 0xf) * 4;
    frame[tcp + 8..tcp + 12].copy_from_slice(&hole.to_be_bytes());
}

fn inspect(path: &Path, extra: &[&str], format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["inspect", "-r"])
        .arg(path)
        .args(["-f", format])
        .args(extra)
        .output()
        .expect("run mrte");
    assert!(
        out.status.success(),
        "mrte inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The COM_QUERY record and the summary of a capture.
fn decode(path: &Path, extra: &[&str]) -> (Value, Value) {
    let q = inspect(path, extra, "jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["cmd"] == "COM_QUERY")
        .expect("a COM_QUERY");
    let s = serde_json::from_str(&inspect(path, extra, "summary")).expect("summary JSON");
    (q, s)
}

fn tmp(name: &str, data: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mrte-reasm-{}-{name}", std::process::id()));
    std::fs::write(&p, data).expect("temp file");
    p
}

#[test]
fn large_statement_with_a_segment_retransmitted_megabytes_later_decodes_whole() {
    let pcap =
        gunzip(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/big_statement.pcap.gz"));
    let (moved, _hole) = lose_and_retransmit(&pcap);
    assert_eq!(moved.len(), pcap.len());
    assert_ne!(moved, pcap);
    let orig = tmp("orig.pcap", &pcap);
    let lossy = tmp("retransmitted.pcap", &moved);

    let (q0, s0) = decode(&orig, &[]);
    let (q, s) = decode(&lossy, &[]);
    let len = |q: &Value| q["sql"].as_str().map(str::len);
    assert_eq!(len(&q0), Some("SELECT LENGTH('')".len() + (18 << 20)));
    assert_eq!(len(&q), len(&q0), "statement decoded whole");
    assert_eq!(q["sql"], q0["sql"]);
    assert_eq!(q["status"], "ok");
    assert_eq!(q["rows"], 1);
    assert_eq!(s["commands"], s0["commands"]);
    assert_eq!(s["gaps"], 0, "{s}");
    assert_eq!(s["decode_errors"], 0, "{s}");
    assert!(s["out_of_order"].as_u64().unwrap() > 1000, "{s}");

    // With a 1 MiB out-of-order budget the same capture loses the statement: the test can fail.
    let small: Value =
        serde_json::from_str(&inspect(&lossy, &["--max-ooo-bytes", "1048576"], "summary")).unwrap();
    assert!(small["gaps"].as_u64().unwrap() >= 1, "{small}");

    for p in [orig, lossy] {
        let _ = std::fs::remove_file(p);
    }
}
