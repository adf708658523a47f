//! mrte: MySQL real-time traffic emulator.

fn main() {}
