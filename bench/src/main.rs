//! mrte-bench: decode throughput, packet sender and capture-loss measurements.

fn main() {}
