//! Heap per idle session, measured with a counting allocator: 20 000 connections joined
//! mid-stream, each sending one query and getting its answer, then idle.

use std::alloc::System;

use etherparse::PacketBuilder;
use mrte_capture::event::{SessionEvent, SessionId};
use mrte_capture::net::LinkType;
use mrte_capture::pipeline::{Pipeline, PipelineConfig, COLD_US};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn frame(i: u32, to_server: bool, seq: u32, payload: &[u8]) -> Vec<u8> {
    let client = [198, 18, 1 + (i >> 16) as u8, (i >> 8) as u8];
    let cport = 1024 + (i & 0xff) as u16;
    let server = [198, 18, 0, 2];
    let b = if to_server {
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(client, server, 64)
            .tcp(cport, 3306, seq, 1000)
    } else {
        PacketBuilder::ethernet2([2; 6], [1; 6])
            .ipv4(server, client, 64)
            .tcp(3306, cport, seq, 1000)
    };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn mysql(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

/// Counts events without keeping them.
#[derive(Default)]
struct Count(u64);

impl mrte_capture::event::EventSink for Count {
    fn push(&mut self, _: SessionId, e: SessionEvent) {
        if matches!(e, SessionEvent::Command(_)) {
            self.0 += 1;
        }
    }
}

#[test]
fn an_idle_session_holds_at_most_1_kib() {
    const N: u32 = 20_000;
    let q = mysql(0, b"\x03SELECT c FROM sbtest1 WHERE id=42");
    let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
    let frames: Vec<(Vec<u8>, Vec<u8>)> = (0..N)
        .map(|i| (frame(i, true, 1000, &q), frame(i, false, 5000, &ok)))
        .collect();
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut sink = Count::default();
    let t0 = 1_700_000_000_000_000u64;
    let region = Region::new(GLOBAL);
    for (k, (q, r)) in frames.iter().enumerate() {
        p.handle_frame(LinkType::Ethernet, q, t0 + k as u64, &mut sink);
        p.handle_frame(LinkType::Ethernet, r, t0 + k as u64, &mut sink);
    }
    let c = region.change();
    let busy = (c.bytes_allocated as isize + c.bytes_reallocated - c.bytes_deallocated as isize)
        / N as isize;
    eprintln!("heap per session before it goes cold: {busy} bytes");
    assert!(busy <= 2048, "{busy} bytes per recently active session");
    let t = t0 + u64::from(N) + COLD_US + 1;
    p.handle_timeout(t, &mut sink);
    let c = region.change();
    let per = (c.bytes_allocated as isize + c.bytes_reallocated - c.bytes_deallocated as isize)
        / N as isize;
    assert_eq!(p.open_sessions(), N as usize);
    assert_eq!(sink.0, u64::from(N), "every query decoded with its answer");
    eprintln!("heap per idle session: {per} bytes");
    assert!(per <= 1024, "{per} bytes per idle session");
    p.finish(t, &mut sink);
}
