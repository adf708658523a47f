//! The pcap/pcapng reader on arbitrary file contents (length known and unknown).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::source::pcap::read_frames;

fuzz_target!(|data: &[u8]| {
    let mut n = 0u64;
    if let Ok(frames) = read_frames(data, Some(data.len() as u64), |_, f, _| {
        assert!(!f.is_empty());
        n += 1;
    }) {
        assert_eq!(frames, n);
    }
    let _ = read_frames(data, None, |_, _, _| {});
});
