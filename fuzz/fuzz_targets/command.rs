//! Command payload parsing (incl. binary parameters) on arbitrary payloads and capabilities.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::mysql::command::{parse_command, StmtTable};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let caps = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let mut t = StmtTable::default();
    if caps & 1 == 1 {
        t.on_prepare_ok(1, (caps >> 8) as u16 % 64, None);
    }
    let _ = parse_command(&data[4..], caps, &mut t);
    let _ = parse_command(&data[4..], caps, &mut t);
});
