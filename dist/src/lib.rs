//! mrte-dist: scale-out of mrte over NATS JetStream.
//!
//! - [`wire`]: the versioned binary encoding of session events on the stream.
//! - [`publish`]: the collector's side: batches per partition, a bounded window of unacknowledged
//!   publishes, a bounded buffer that drops (counted per session) instead of blocking capture.
//! - [`play`]: a player: durable consumers per partition feed the ordinary replay engine; progress
//!   is checkpointed (counters, histograms, per-session positions) to a key-value bucket before
//!   the messages are acknowledged, so a restarted player neither repeats nor skips.
//! - [`state`]: the key-value bucket and what players and publishers store there; the merged
//!   report of every player.
//!
//! It does not decode packets (mrte-capture) nor replay commands itself (mrte-replay's engine).

pub mod play;
pub mod publish;
pub mod state;
pub mod wire;

/// Errors of the distributed side.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// NATS or JetStream said no, or is unreachable.
    #[error("nats: {0}")]
    Nats(String),
    /// A setting or local resource is wrong.
    #[error("{0}")]
    Config(String),
    /// Stored state does not decode.
    #[error("stored state: {0}")]
    State(String),
}

/// A NATS client (re-exported so the binary needs no direct async-nats dependency).
pub type Client = async_nats::Client;
/// A JetStream context.
pub type JetStream = async_nats::jetstream::Context;

/// The JetStream context of a client.
pub fn jetstream(c: Client) -> JetStream {
    async_nats::jetstream::new(c)
}
