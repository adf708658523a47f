//! The frame slicer (net) on arbitrary frames of every link type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrte_capture::net::{slice_tcp, LinkType};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link = match sel % 7 {
        0 => LinkType::Ethernet,
        1 => LinkType::LinuxSll,
        2 => LinkType::LinuxSll2,
        3 => LinkType::RawIp,
        4 => LinkType::Null,
        5 => LinkType::from_linktype(u32::from(sel)),
        _ => LinkType::Other(u32::from(sel)),
    };
    if let Ok(s) = slice_tcp(link, frame) {
        assert!(s.payload.len() <= frame.len());
    }
});
