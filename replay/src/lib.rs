//! Replay side of mrte: drains per-session rings, replays each session on its own connection to the
//! test server, and compares production with test latency, errors and row counts.
