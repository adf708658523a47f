//! Query fingerprinting on arbitrary bytes (SQL text need not be UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::fingerprint::{fingerprint_id, Fingerprinter};

fuzz_target!(|data: &[u8]| {
    let mut f = Fingerprinter::default();
    let fp = f.fingerprint(data).to_owned();
    let _ = fingerprint_id(&fp);
    // The buffers are reused: a second call gives the same answer.
    assert_eq!(f.fingerprint(data), fp);
});
