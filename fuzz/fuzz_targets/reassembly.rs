//! The whole pipeline (slicing, session table, TCP reassembly, decoding) on arbitrary frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::event::{SessionEvent, SessionId};
use mrte_capture::net::LinkType;
use mrte_capture::pipeline::{Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    let mut p = Pipeline::new(PipelineConfig { max_sessions: 8, max_ooo_bytes: 4096, ..PipelineConfig::default() });
    let mut sink: Vec<(SessionId, SessionEvent)> = Vec::new();
    let mut rest = data;
    let mut ts = 1_000_000;
    while rest.len() > 2 {
        let n = (usize::from(rest[0]) << 2 | usize::from(rest[1] & 3)).min(rest.len() - 2);
        let link = match rest[1] >> 6 { 0 => LinkType::Ethernet, 1 => LinkType::RawIp, 2 => LinkType::LinuxSll2, _ => LinkType::LinuxSll };
        ts += u64::from(rest[1] & 0x3c) * 100_000;
        p.handle_frame(link, &rest[2..2 + n], ts, &mut sink);
        rest = &rest[2 + n..];
        sink.clear();
    }
    p.finish(ts, &mut sink);
});
