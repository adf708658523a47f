//! Replay engine: tokio workers, one test-server connection per captured session.
