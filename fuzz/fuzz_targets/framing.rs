//! The connection decoder fed arbitrary bytes in both directions, split at arbitrary points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::mysql::{Connection, DecoderConfig, Direction};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let mut c = Connection::new(DecoderConfig { max_command_bytes: 1 << 16, ..DecoderConfig::default() }, ctl & 1 == 1);
    let mut ts = 0;
    for chunk in rest.chunks(usize::from(ctl >> 1).max(1)) {
        let dir = if chunk[0] & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        ts += 1;
        if chunk[0] == 0xff {
            c.handle_gap(dir, u64::from(chunk.len() as u32), ts);
        } else {
            c.handle_data(dir, chunk, ts);
        }
        while c.poll_event().is_some() {}
    }
    c.handle_close(ts + 1);
    while c.poll_event().is_some() {}
});
