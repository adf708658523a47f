//! USE detection and command decoding: after a real login, arbitrary SQL as COM_QUERY (where
//! `USE db` is recognised) and as COM_INIT_DB, each answered with OK.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::mysql::{ConnEvent, Direction};
use mrte_fuzz::{logged_in, packet};

const OK: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";

fuzz_target!(|data: &[u8]| {
    let mut c = logged_in();
    let mut commands = 0;
    for (i, code) in [0x03u8, 0x02].into_iter().enumerate() {
        let mut cmd = vec![code];
        cmd.extend_from_slice(data);
        let ts = 100 + 10 * i as u64;
        c.handle_data(Direction::ToServer, &packet(0, &cmd), ts);
        c.handle_data(Direction::ToClient, &packet(1, OK), ts + 1);
        while let Some(e) = c.poll_event() {
            if matches!(e, ConnEvent::Command(_)) {
                commands += 1;
            }
        }
    }
    assert_eq!(commands, 2, "each command answered with OK is decoded");
});
