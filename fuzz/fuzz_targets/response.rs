//! Response decoding: after a real login, a client command, then arbitrary server bytes split at
//! arbitrary points, then another command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::mysql::Direction;
use mrte_fuzz::{logged_in, packet};

const COMMANDS: &[&[u8]] = &[
    b"\x03SELECT 1",
    b"\x16SELECT ?",
    b"\x03LOAD DATA LOCAL INFILE 'x' INTO TABLE t",
    b"\x04t\x00",
    b"\x0e",
    b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00",
    b"\x03CALL p()",
];

fuzz_target!(|data: &[u8]| {
    let [sel, split, rest @ ..] = data else { return };
    let mut c = logged_in();
    let cmd = COMMANDS[usize::from(*sel) % COMMANDS.len()];
    c.handle_data(Direction::ToServer, &packet(0, cmd), 100);
    let mut ts = 100;
    for chunk in rest.chunks(usize::from(*split).max(1)) {
        ts += 1;
        c.handle_data(Direction::ToClient, chunk, ts);
        while c.poll_event().is_some() {}
    }
    c.handle_data(Direction::ToServer, &packet(0, b"\x03SELECT 2"), ts + 1);
    c.handle_data(Direction::ToClient, &packet(1, b"\x00\x00\x00\x02\x00\x00\x00"), ts + 2);
    c.handle_close(ts + 3);
    while c.poll_event().is_some() {}
});
