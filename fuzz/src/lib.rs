//! Helpers shared by the fuzz targets: a real login exchange taken from the committed capture
//! tests/fixtures/client_session.pcap, and MySQL packet framing.

use std::sync::OnceLock;

use mrte_capture::mysql::{Connection, DecoderConfig, Direction};
use mrte_capture::net::slice_tcp;
use mrte_capture::source::pcap::read_frames;

static CAPTURE: &[u8] = include_bytes!("../../tests/fixtures/client_session.pcap");

/// The TCP payloads of the capture's session up to its first command: greeting, login, OK.
pub fn login_exchange() -> &'static [(Direction, Vec<u8>)] {
    static LOGIN: OnceLock<Vec<(Direction, Vec<u8>)>> = OnceLock::new();
    LOGIN.get_or_init(|| {
        let mut out = Vec::new();
        let mut done = false;
        read_frames(CAPTURE, Some(CAPTURE.len() as u64), |link, frame, _| {
            let Ok(s) = slice_tcp(link, frame) else { return };
            if done || s.payload.is_empty() {
                return;
            }
            let dir = if s.dst.port() == 3306 { Direction::ToServer } else { Direction::ToClient };
            // The first client packet with sequence id 0 after the login is a command.
            if dir == Direction::ToServer && s.payload.get(3) == Some(&0) && !out.is_empty() {
                done = true;
                return;
            }
            out.push((dir, s.payload.to_vec()));
        })
        .expect("fixture capture reads");
        assert!(out.len() >= 3, "greeting, login and OK expected");
        out
    })
}

/// A decoder that has seen the real login exchange.
pub fn logged_in() -> Connection {
    let mut c = Connection::new(DecoderConfig { max_command_bytes: 1 << 16, ..DecoderConfig::default() }, false);
    for (i, (dir, bytes)) in login_exchange().iter().enumerate() {
        c.handle_data(*dir, bytes, i as u64 + 1);
    }
    while c.poll_event().is_some() {}
    c
}

/// `payload` framed as MySQL packets starting at sequence id `seq` (split at 16 MiB - 1).
pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = seq;
    let mut chunks = payload.chunks(0xff_ffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0, 0, 0, seq]);
    }
    while let Some(c) = chunks.next() {
        let n = c.len() as u32;
        out.extend_from_slice(&n.to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(c);
        seq = seq.wrapping_add(1);
        if c.len() == 0xff_ffff && chunks.peek().is_none() {
            out.extend_from_slice(&[0, 0, 0, seq]);
        }
    }
    out
}
