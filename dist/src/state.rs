//! The stream's key-value bucket (`mrte_<STREAM>`) and what is stored in it:
//! `player.<name>`: a [`PlayerState`] (the player's report part and its per-session positions),
//! written every few seconds and at the end; `publisher.<origin>`: a
//! [`crate::publish::PublishSummary`] at the end of a publish. [`merged`] reads every entry and
//! merges the players' parts into one. This module does not replay or capture anything.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use mrte_replay::report_merge::Part;
use serde::{Deserialize, Serialize};

use crate::publish::PublishSummary;
use crate::wire::Ev;
use crate::DistError;

/// Version byte of [`PlayerState`].
pub const STATE_VERSION: u8 = 1;

/// The bucket name of a stream.
pub fn bucket_name(stream: &str) -> String {
    format!("mrte_{stream}")
}

/// How long a bucket read or write is retried: in a cluster a replica not yet current or a leader
/// election answers "no responders" or times out for a few seconds.
pub const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A key's value, transient errors retried for [`RETRY_FOR`]. Read from the bucket stream's
/// leader, not with a direct get: any replica answers those, and a follower that has not caught
/// up (a loaded machine, a node of the cluster just died) serves a value from before the last
/// write, such as a player's checkpoint instead of its final state.
pub async fn get_entry(kv: &kv::Store, key: &str) -> Result<Option<bytes::Bytes>, DistError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("{}{}", kv.prefix, key);
    let t0 = std::time::Instant::now();
    loop {
        match kv.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => {
                let op = m.headers.get("KV-Operation").map(|v| v.as_str());
                let removed = matches!(op, Some("DEL") | Some("PURGE"))
                    || m.headers.get("Nats-Marker-Reason").is_some();
                return Ok((!removed).then_some(m.payload));
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) if t0.elapsed() < RETRY_FOR => {
                tracing::debug!("reading {key}: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(DistError::Nats(format!("reading {key}: {e}"))),
        }
    }
}

/// Store a key's value, transient errors retried for [`RETRY_FOR`].
pub async fn put_entry(kv: &kv::Store, key: &str, value: bytes::Bytes) -> Result<(), DistError> {
    let t0 = std::time::Instant::now();
    loop {
        match kv.put(key, value.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() < RETRY_FOR => {
                tracing::debug!("storing {key}: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(DistError::Nats(format!("storing {key}: {e}"))),
        }
    }
}

/// Every key of a bucket, from the bucket stream's subject listing (a stream-info request the
/// stream leader answers): no consumer is created, so a cluster that has just lost a node, where
/// creating the ordered consumer of `kv.keys()` times out until every replica is current, still
/// answers. Keys whose last entry is a delete marker are listed too; [`get_entry`] skips them.
/// A listing cut short is started again for [`RETRY_FOR`].
async fn list_keys(kv: &kv::Store, name: &str) -> Result<Vec<String>, DistError> {
    let t0 = std::time::Instant::now();
    let filter = format!("{}>", kv.prefix);
    loop {
        let err = match kv.stream.info_with_subjects(&filter).await {
            Ok(mut subjects) => {
                let mut names = Vec::new();
                let mut failed = None;
                while let Some(s) = subjects.next().await {
                    match s {
                        Ok((subject, _)) => {
                            if let Some(k) = subject.strip_prefix(kv.prefix.as_str()) {
                                names.push(k.to_string());
                            }
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                match failed {
                    None => return Ok(names),
                    Some(e) => e,
                }
            }
            Err(e) => e.to_string(),
        };
        if t0.elapsed() >= RETRY_FOR {
            return Err(DistError::Nats(format!("listing {name}: {err}")));
        }
        tracing::debug!("listing {name}: {err}; retrying");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Open the stream's bucket, creating it if missing.
pub async fn bucket(
    js: &jetstream::Context,
    stream: &str,
    replicas: usize,
) -> Result<kv::Store, DistError> {
    let name = bucket_name(stream);
    if let Ok(s) = js.get_key_value(&name).await {
        return Ok(s);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| DistError::Nats(format!("creating bucket {name}: {e}")))
}

/// A session a player has seen: where it is, and how to resume it on a new connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionMark {
    /// Publisher run.
    pub origin: u64,
    /// Session id in that run.
    pub session: u64,
    /// Next event index expected.
    pub next: u64,
    /// The session's open event, if seen.
    pub open: Option<Ev>,
    /// Its login event, if seen.
    pub login: Option<Ev>,
    /// The session has closed (kept until its messages are surely acknowledged).
    pub closed: bool,
}

/// What a player stores.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PlayerState {
    /// Player name (durable consumer prefix).
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<u32>,
    /// Test server (no password).
    pub target: String,
    /// Checkpoints written by this player (all runs).
    pub checkpoints: u64,
    /// Runs of this player (restarts + 1).
    pub runs: u64,
    /// Seconds spent replaying over all runs.
    pub elapsed_s: f64,
    /// The last run ended normally (end of stream or signal).
    pub finished: bool,
    /// Events delivered again and skipped (already replayed).
    pub duplicates: u64,
    /// Events missing in a session's sequence (dropped by the publisher).
    pub gaps: u64,
    /// Sessions resumed on a new connection after a restart.
    pub resumed_sessions: u64,
    /// Commands fed to the engine (all runs).
    pub fed_commands: u64,
    /// Report part of earlier runs ([`Part::encode`]).
    pub base: Vec<u8>,
    /// Report part of this run.
    pub current: Vec<u8>,
    /// Sessions seen.
    pub sessions: Vec<SessionMark>,
}

impl PlayerState {
    /// Bytes for the bucket.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Read bytes made by [`PlayerState::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, DistError> {
        match b.first() {
            Some(&STATE_VERSION) => postcard::from_bytes(&b[1..])
                .map_err(|e| DistError::State(format!("player state: {e}"))),
            v => Err(DistError::State(format!(
                "player state version {v:?}, this build reads {STATE_VERSION}"
            ))),
        }
    }

    /// The player's report part over all its runs.
    pub fn part(&self) -> Result<Part, DistError> {
        let mut p = if self.base.is_empty() {
            Part::default()
        } else {
            Part::decode(&self.base).map_err(|e| DistError::State(e.to_string()))?
        };
        if !self.current.is_empty() {
            p.merge(Part::decode(&self.current).map_err(|e| DistError::State(e.to_string()))?);
        }
        Ok(p)
    }
}

/// Everything in a stream's bucket, merged.
#[derive(Debug, Default)]
pub struct Merged {
    /// All players' parts added up.
    pub part: Part,
    /// The players.
    pub players: Vec<PlayerState>,
    /// The publishers' summaries.
    pub publishers: Vec<PublishSummary>,
    /// Entries that did not decode (key, why).
    pub unreadable: Vec<(String, String)>,
}

/// Read and merge every player's and publisher's entry of `stream`.
pub async fn merged(js: &jetstream::Context, stream: &str) -> Result<Merged, DistError> {
    let name = bucket_name(stream);
    let kv = js
        .get_key_value(&name)
        .await
        .map_err(|e| DistError::Nats(format!("bucket {name}: {e} (has any player run?)")))?;
    let mut names = list_keys(&kv, &name).await?;
    names.sort();
    let mut m = Merged::default();
    for k in names {
        let Some(v) = get_entry(&kv, &k).await? else {
            continue;
        };
        if k.starts_with("player.") {
            match PlayerState::decode(&v).and_then(|s| Ok((s.part()?, s))) {
                Ok((p, s)) => {
                    m.part.merge(p);
                    m.players.push(s);
                }
                Err(e) => m.unreadable.push((k, e.to_string())),
            }
        } else if k.starts_with("publisher.") {
            match serde_json::from_slice::<PublishSummary>(&v) {
                Ok(s) => m.publishers.push(s),
                Err(e) => m.unreadable.push((k, e.to_string())),
            }
        }
    }
    Ok(m)
}
