//! Random bytes on the server port are counted as undecoded, not silently ignored: the frames of
//! a real capture (tests/fixtures/sysbench_text.pcap) keep their link, IP and TCP headers while
//! every payload byte is replaced with noise.

use std::fs::File;
use std::path::Path;

use mrte_capture::event::{SessionEvent, SessionId};
use mrte_capture::net::{slice_tcp, LinkType};
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_capture::stats::Stats;
use pcap_file::pcap::PcapReader;

/// The fixture's frames with noise for payload, the payload byte count, the link type.
fn noisy_fixture(seed: u64) -> (Vec<(u64, Vec<u8>)>, u64, LinkType) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sysbench_text.pcap");
    let mut r = PcapReader::new(File::open(path).expect("fixture")).expect("pcap");
    let link = LinkType::from_linktype(r.header().datalink.into());
    let mut x = seed;
    let mut frames = Vec::new();
    let mut payload_bytes = 0u64;
    while let Some(p) = r.next_packet() {
        let p = p.expect("packet");
        let mut data = p.data.to_vec();
        let ts = p.timestamp.as_micros() as u64;
        let span = slice_tcp(link, &data).ok().map(|s| {
            let at = s.payload.as_ptr() as usize - data.as_ptr() as usize;
            (at, s.payload.len())
        });
        if let Some((at, n)) = span {
            payload_bytes += n as u64;
            for b in &mut data[at..at + n] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
        frames.push((ts, data));
    }
    (frames, payload_bytes, link)
}

#[derive(Default)]
struct Commands(u64);

impl mrte_capture::event::EventSink for Commands {
    fn push(&mut self, _: SessionId, e: SessionEvent) {
        if matches!(e, SessionEvent::Command(_)) {
            self.0 += 1;
        }
    }
}

fn run(frames: &[(u64, Vec<u8>)], link: LinkType) -> (Stats, u64) {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut sink = Commands::default();
    let mut last = 0;
    for (ts, f) in frames {
        p.handle_frame(link, f, *ts, &mut sink);
        last = *ts;
    }
    p.finish(last, &mut sink);
    (p.stats().clone(), sink.0)
}

#[test]
fn random_bytes_on_the_server_port_are_counted_as_undecoded() {
    let (frames, payload, link) = noisy_fixture(0x2545_f491_4f6c_dd1d);
    assert!(
        payload > 100_000,
        "the fixture carries {payload} payload bytes"
    );
    let (s, commands) = run(&frames, link);
    let u = &s.undecoded;
    eprintln!(
        "payload {payload}, undecoded {} {u:?}, commands {commands}",
        s.undecoded_bytes
    );
    assert_eq!(
        s.undecoded_bytes,
        u.unsynced + u.after_gap + u.tls + u.too_large + u.incomplete
    );
    assert!(
        s.undecoded_bytes * 100 >= payload * 95,
        "{} of {payload} bytes counted as undecoded",
        s.undecoded_bytes
    );
    assert!(s.undecoded_bytes <= payload);
}

#[test]
fn noise_joined_mid_stream_is_undecoded_as_never_synchronised() {
    let (mut frames, _, link) = noisy_fixture(7);
    // Drop the handshakes' SYNs: every connection is joined mid-stream.
    frames.retain(|(_, f)| slice_tcp(link, f).is_ok_and(|s| !s.flags.syn));
    let payload: u64 = frames
        .iter()
        .filter_map(|(_, f)| slice_tcp(link, f).ok())
        .map(|s| s.payload.len() as u64)
        .sum();
    let (s, _) = run(&frames, link);
    eprintln!(
        "payload {payload}, undecoded {} {:?}",
        s.undecoded_bytes, s.undecoded
    );
    assert!(s.undecoded.unsynced * 100 >= payload * 90);
    assert!(s.undecoded_bytes * 100 >= payload * 95);
}
