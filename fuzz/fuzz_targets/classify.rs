//! The replay safety classifier on arbitrary bytes. classify.rs depends on nothing but std, so it
//! is compiled in here directly (the replay crate's tokio/mysql stack stays out of the fuzz build).
#![no_main]

#[allow(dead_code)]
#[path = "../../replay/src/classify.rs"]
mod classify;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let a = classify::classify(data);
    assert_eq!(classify::classify(data), a);
    if let Some(&c) = data.first() {
        let _ = classify::classify_command_code(c);
    }
});
