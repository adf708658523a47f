//! Pipeline tests: lifecycle, reordering, eviction, memory limit, decoder panics.

use super::session::Session;
use super::*;
use crate::event::SessionEvent;
use etherparse::PacketBuilder;

type Events = Vec<(SessionId, SessionEvent)>;

/// Feeding Ethernet frames to a pipeline that collects its events.
trait Feed {
    fn eth(&mut self, frame: &[u8], ts_us: u64, ev: &mut Events);
}

/// The command records among `ev`, in order.
fn records(ev: &Events) -> Vec<&crate::event::CommandRecord> {
    ev.iter()
        .filter_map(|(_, e)| match e {
            SessionEvent::Command(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

impl Feed for Pipeline {
    fn eth(&mut self, frame: &[u8], ts_us: u64, ev: &mut Events) {
        self.handle_frame(LinkType::Ethernet, frame, ts_us, ev);
    }
}

fn frame(client_port: u16, to_server: bool, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    let (s, d, sp, dp) = if to_server {
        ([198, 18, 0, 1], [198, 18, 0, 2], client_port, 3306)
    } else {
        ([198, 18, 0, 2], [198, 18, 0, 1], 3306, client_port)
    };
    let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(s, d, 64)
        .tcp(sp, dp, seq, 1000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn data(client_port: u16, to_server: bool, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (s, d, sp, dp) = if to_server {
        ([198, 18, 0, 1], [198, 18, 0, 2], client_port, 3306)
    } else {
        ([198, 18, 0, 2], [198, 18, 0, 1], 3306, client_port)
    };
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(s, d, 64)
        .tcp(sp, dp, seq, 1000)
        .ack(ack);
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

#[test]
fn response_seen_before_its_request_is_held_not_lost() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev = Events::new();
    let q1 = mysql(0, b"\x03SELECT 1");
    let q2 = mysql(0, b"\x03SELECT 2");
    let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
    let (c0, s0) = (1000u32, 5000u32);
    let c1 = c0 + q1.len() as u32;
    let c2 = c1 + q2.len() as u32;
    let s1 = s0 + ok.len() as u32;
    p.eth(&data(7, true, c0, s0, &q1), 10, &mut ev);
    p.eth(&data(7, false, s0, c1, &ok), 20, &mut ev);
    p.eth(&data(7, false, s1, c2, &ok), 40, &mut ev);
    p.eth(&data(7, true, c1, s1, &q2), 30, &mut ev);
    p.finish(50, &mut ev);
    let cmds = records(&ev);
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[1].command.sql(), Some(&b"SELECT 2"[..]));
    assert_eq!(cmds[1].response.status, crate::event::ResponseStatus::Ok);
    assert_eq!(p.stats().gaps, 0);
    assert_eq!(p.stats().decode_errors, 0);
    assert_eq!(p.stats().out_of_order, 1);
}

#[test]
fn a_lost_request_is_declared_when_the_client_moves_on() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev = Events::new();
    let q1 = mysql(0, b"\x03SELECT 1");
    let q2 = mysql(0, b"\x03SELECT 2");
    let q3 = mysql(0, b"\x0e");
    let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
    let (c0, s0) = (1000u32, 5000u32);
    let c1 = c0 + q1.len() as u32;
    let c2 = c1 + q2.len() as u32;
    let s1 = s0 + ok.len() as u32;
    let s2 = s1 + ok.len() as u32;
    p.eth(&data(7, true, c0, s0, &q1), 10, &mut ev);
    p.eth(&data(7, false, s0, c1, &ok), 20, &mut ev);
    p.eth(&data(7, false, s1, c2, &ok), 40, &mut ev);
    p.eth(&data(7, true, c2, s2, &q3), 50, &mut ev);
    p.eth(&data(7, false, s2, c2 + q3.len() as u32, &ok), 60, &mut ev);
    p.finish(70, &mut ev);
    assert_eq!(p.stats().gaps, 1);
    assert_eq!(p.stats().gap_bytes, q2.len() as u64);
    let cmds = records(&ev);
    assert_eq!(cmds.last().map(|c| c.command.name()), Some("COM_PING"));
    assert!(cmds.last().is_some_and(|c| c.flags.after_gap));
    assert_eq!(
        cmds.last().map(|c| c.response.status),
        Some(crate::event::ResponseStatus::Ok)
    );
    assert_eq!(cmds.len(), 2);
    assert_eq!(p.stats().decode_errors, 0);
}

fn opens_closes(ev: &[(SessionId, SessionEvent)]) -> (usize, Vec<CloseReason>) {
    let opens = ev
        .iter()
        .filter(|(_, e)| matches!(e, SessionEvent::Open(_)))
        .count();
    let closes = ev
        .iter()
        .filter_map(|(_, e)| match e {
            SessionEvent::Close(c) => Some(c.reason),
            _ => None,
        })
        .collect();
    (opens, closes)
}

#[test]
fn a_new_syn_on_the_same_ports_starts_a_new_session() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev = Events::new();
    let f = |port, to_server, seq, flags: &str| frame(port, to_server, seq, flags, b"");
    p.eth(&f(4000, true, 10, "S"), 1, &mut ev);
    p.eth(&f(4000, true, 10, "S"), 2, &mut ev);
    p.eth(&f(4000, false, 50, "S"), 3, &mut ev);
    assert_eq!(
        opens_closes(&ev),
        (1, vec![]),
        "a retransmitted SYN is the same connection"
    );
    p.eth(&frame(4000, true, 11, "", b"q"), 4, &mut ev);
    p.eth(&f(4000, true, 7000, "S"), 5, &mut ev);
    assert_eq!(opens_closes(&ev), (2, vec![CloseReason::Reused]));
    assert_eq!(p.stats().sessions, 2);
    assert_eq!(p.open_sessions(), 1);
}

#[test]
fn lifecycle_fin_rst_midstream_and_skips() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev = Events::new();
    p.eth(&frame(1000, true, 10, "S", b""), 1, &mut ev);
    p.eth(&frame(1000, false, 50, "S", b""), 2, &mut ev);
    p.eth(&frame(1000, true, 11, "F", b""), 3, &mut ev);
    p.eth(&frame(1000, false, 51, "F", b""), 4, &mut ev);
    p.eth(&frame(2000, true, 99, "", b"x"), 5, &mut ev);
    p.eth(&frame(2000, false, 7, "R", b""), 6, &mut ev);
    p.eth(&frame(3000, true, 5, "", b""), 7, &mut ev);
    p.eth(&[0u8; 10], 8, &mut ev);
    let (opens, closes) = opens_closes(&ev);
    assert_eq!(opens, 2);
    assert_eq!(closes, vec![CloseReason::Fin, CloseReason::Rst]);
    let s = p.stats();
    assert_eq!(
        (s.sessions, s.midstream_sessions, s.active_sessions),
        (2, 1, 0)
    );
    assert_eq!(
        (s.skipped.untracked, s.skipped.malformed, s.packets),
        (1, 1, 8)
    );
}

#[test]
fn idle_eviction_table_bound_and_finish() {
    let mut p = Pipeline::new(PipelineConfig {
        max_sessions: 2,
        idle_timeout_us: 5_000_000,
        ..PipelineConfig::default()
    });
    let mut ev = Events::new();
    let t0 = 1_000_000_000;
    p.eth(&frame(1, true, 1, "S", b""), t0, &mut ev);
    p.eth(&frame(2, true, 1, "S", b""), t0 + 1, &mut ev);
    p.eth(&frame(3, true, 1, "S", b""), t0 + 2, &mut ev);
    assert_eq!(p.stats().table_evicted, 1);
    p.eth(&frame(3, true, 2, "", b"q"), t0 + 10_000_000, &mut ev);
    assert_eq!(p.stats().idle_evicted, 2);
    p.finish(t0 + 11_000_000, &mut ev);
    let (opens, closes) = opens_closes(&ev);
    assert_eq!(opens, 4);
    assert_eq!(
        closes,
        vec![
            CloseReason::Evicted,
            CloseReason::Idle,
            CloseReason::Idle,
            CloseReason::EndOfCapture
        ]
    );
    assert_eq!(p.stats().midstream_sessions, 1);
    assert_eq!(p.stats().active_sessions, 0);
}

#[test]
fn other_ports_and_gaps_counted() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev = Events::new();
    let mut f = frame(1, true, 1, "", b"abc");
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    p.eth(&f, 1, &mut ev);
    assert_eq!(p.stats().skipped.other_port, 1);
    p.eth(&frame(5, true, 100, "", b"abc"), 2, &mut ev);
    p.eth(&frame(5, true, 110, "", b"def"), 3, &mut ev);
    p.finish(4, &mut ev);
    assert_eq!(p.stats().gaps, 1);
    assert_eq!(p.stats().gap_bytes, 7);
    assert_eq!(p.stats().out_of_order, 1);
}

fn commands(ev: &[(SessionId, SessionEvent)]) -> Vec<(SessionId, Vec<u8>)> {
    ev.iter()
        .filter_map(|(id, e)| match e {
            SessionEvent::Command(c) => Some((*id, c.command.sql().unwrap_or_default().to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_decoder_panic_closes_that_session_and_capture_goes_on() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev = Events::new();
    let q = |sql: &[u8]| mysql(0, &[b"\x03", sql].concat());
    let ok = mysql(1, &[0, 0, 0, 2, 0, 0, 0]);
    let one = |p: &mut Pipeline, ev: &mut Vec<_>, port, sql: &[u8], t| {
        let q = q(sql);
        p.eth(&data(port, true, 100, 900, &q), t, ev);
        let after = 100 + q.len() as u32;
        p.eth(&data(port, false, 900, after, &ok), t + 1, ev);
    };
    one(&mut p, &mut ev, 10, b"SELECT 1", 10);
    p.eth(&data(11, true, 100, 900, TEST_PANIC), 20, &mut ev);
    assert_eq!(p.stats().decoder_panics, 1);
    assert_eq!(p.stats().undecoded.decoder_panic, TEST_PANIC.len() as u64);
    assert_eq!(p.open_sessions(), 1, "the panicking session is gone");
    one(&mut p, &mut ev, 12, b"SELECT 3", 30);
    // The same connection goes on: it is picked up again mid-stream.
    one(&mut p, &mut ev, 11, b"SELECT 2", 40);
    p.finish(50, &mut ev);
    let sqls: Vec<Vec<u8>> = commands(&ev).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        sqls,
        vec![
            b"SELECT 1".to_vec(),
            b"SELECT 3".to_vec(),
            b"SELECT 2".to_vec()
        ]
    );
    let (opens, closes) = opens_closes(&ev);
    assert_eq!(opens, 4);
    assert_eq!(
        closes
            .iter()
            .filter(|r| **r == CloseReason::DecoderPanic)
            .count(),
        1
    );
    assert_eq!(p.stats().decoder_panics, 1);
    assert_eq!(p.stats().active_sessions, 0);
}

#[test]
fn the_memory_limit_drops_the_buffers_of_the_session_crossing_it() {
    let mut ev = Events::new();
    let hole = |p: &mut Pipeline, ev: &mut Vec<_>, port, t| {
        p.eth(&frame(port, true, 100, "", b"abc"), t, ev);
        p.eth(&frame(port, true, 200, "", &[7; 600]), t + 1, ev);
    };
    let mut free = Pipeline::new(PipelineConfig::default());
    hole(&mut free, &mut ev, 5, 1);
    let one = free.buffered_bytes();
    assert!(one >= 600, "{one}");
    let mut p = Pipeline::new(PipelineConfig {
        max_memory: one + one / 2,
        ..PipelineConfig::default()
    });
    hole(&mut p, &mut ev, 5, 1);
    assert_eq!((p.buffered_bytes(), p.stats().memory_drops), (one, 0));
    hole(&mut p, &mut ev, 6, 3);
    assert_eq!(p.stats().memory_drops, 1);
    assert_eq!(
        p.buffered_bytes(),
        one,
        "the crossing session let go of its buffer"
    );
    assert_eq!(p.stats().peak_buffered_bytes, 2 * one as u64);
    p.finish(5, &mut ev);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(p.stats().gaps, 2);
}

#[test]
fn idle_sessions_expire_from_the_cold_end_without_a_scan() {
    let mut p = Pipeline::new(PipelineConfig {
        idle_timeout_us: 10_000_000,
        max_sessions: 3,
        ..PipelineConfig::default()
    });
    let mut ev = Events::new();
    let t0 = 1_000_000_000;
    for (k, port) in [1u16, 2, 3].into_iter().enumerate() {
        p.eth(&frame(port, true, 1, "", b"q"), t0 + k as u64, &mut ev);
    }
    // Session 1 is used again: session 2 is now the least recently used.
    p.eth(&frame(1, true, 2, "", b"q"), t0 + 5, &mut ev);
    p.eth(&frame(4, true, 1, "", b"q"), t0 + 6, &mut ev);
    let closed: Vec<SessionId> = ev
        .iter()
        .filter_map(|(id, e)| matches!(e, SessionEvent::Close(_)).then_some(*id))
        .collect();
    assert_eq!(closed, vec![2]);
    assert_eq!(p.stats().table_evicted, 1);
    p.handle_timeout(t0 + 10_000_004, &mut ev);
    assert_eq!(p.open_sessions(), 2, "only session 3 was idle long enough");
    p.handle_timeout(t0 + 10_000_007, &mut ev);
    assert_eq!(p.open_sessions(), 0);
    assert_eq!(p.stats().idle_evicted, 3);
}

/// A session joined mid-stream holds its boxed `Session` (this), one waiting command, and
/// its slab slot: kept within mimalloc's 512-byte class so that a flood of 200 000 idle
/// sessions stays under 256 MiB (bench/README "Session flood").
#[test]
fn a_session_fits_in_512_bytes() {
    assert!(
        std::mem::size_of::<Session>() <= 512,
        "Session is {} bytes",
        std::mem::size_of::<Session>()
    );
}
