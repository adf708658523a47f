//! TCP stream reassembly on its own: arbitrary segments (offsets, lengths, duplicates, losses,
//! truncation, peer ACKs) of a known byte stream. Every delivered byte must be the original byte
//! at its place: holes are gaps, never guesses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::tcp::{Chunk, Stream};

fn byte_at(p: u64) -> u8 {
    (p.wrapping_mul(31).wrapping_add(p >> 8)) as u8
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, ops)) = data.split_first() else { return };
    let isn = u32::from(cfg).wrapping_mul(0x0100_0193).wrapping_sub(1 << 20);
    let budget = 64usize << (cfg % 16);
    let mut s = Stream::default();
    let mut pos = 0u64;
    let mut bad = None;
    let mut out = |c: Chunk<'_>| match c {
        Chunk::Data(d) => {
            for (k, b) in d.iter().enumerate() {
                if *b != byte_at(pos + k as u64) && bad.is_none() {
                    bad = Some(pos + k as u64);
                }
            }
            pos += d.len() as u64;
        }
        Chunk::Gap(n) => pos += n,
    };
    s.handle_segment(isn, true, false, b"", 0, budget, &mut out);
    let mut buf = Vec::new();
    for op in ops.chunks_exact(5) {
        let off = u64::from(u32::from_le_bytes([op[0], op[1], op[2], 0])) * 8;
        let len = usize::from(op[3]) * 8;
        let seq = isn.wrapping_add(1).wrapping_add(off as u32);
        match op[4] % 8 {
            0 => s.handle_peer_ack(seq, &mut out),
            1 => s.declare_lost_until(seq, &mut out),
            k => {
                buf.clear();
                buf.extend((0..len as u64).map(|i| byte_at(off + i)));
                // Some segments lose their tail to the snap length.
                let cut = if k == 7 { len / 2 } else { len };
                s.handle_segment(seq, false, k == 6, &buf[..cut], (len - cut) as u32, budget, &mut out);
            }
        }
    }
    s.flush(&mut out);
    assert_eq!(bad, None, "a delivered byte is not the original");
    assert_eq!(s.held_bytes(), 0);
});
