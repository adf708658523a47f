//! Replay side of mrte: drains per-session rings, replays each session on its own connection to the
//! test server, and compares production with test latency, errors and row counts.
//!
//! - [`engine`]: tokio workers, one test-server connection per captured session (the executor:
//!   the sans-IO [`plan`]ner carried out on mrte's own [`wire`] connection), mapping, filters,
//!   safety classification, pacing, reconnects; counters in [`engine::EngineStats`].
//!   Its parts: [`target`] (DSN, user/db maps, prod processlist lookup), [`filter`] (filters,
//!   sampling, safety rules, skip reasons), [`classify`] (read-only / write / dangerous SQL
//!   classifier), [`pacing`] (live/offline schedule and lag).
//! - [`compare`]: per-fingerprint prod/test histograms and divergence, fed [`Outcome`]s.
//! - [`report`]: the final text report, the JSON report, the HTML page and Prometheus text.

pub mod accounting;
pub mod classify;
pub mod compare;
pub mod control;
pub mod engine;
mod exec;
pub mod filter;
pub mod pacing;
pub mod plan;
pub mod report;
pub mod report_merge;
pub mod resilience;
pub mod results;
pub mod sync;
pub mod target;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use mrte_capture::event::{Response, SessionId};

/// A statement's text as an example: the captured bytes (a shared slice of the command's payload,
/// already cut to the example length) made into a string only when an example is kept, which
/// most outcomes never are.
#[derive(Clone, Debug)]
pub struct ExampleText(Example);

#[derive(Clone, Debug)]
enum Example {
    Name(&'static str),
    Text(Arc<str>),
    Sql(Bytes),
}

impl ExampleText {
    /// The statement bytes `sql`, cut to `max` bytes.
    pub fn sql(sql: Bytes, max: usize) -> Self {
        Self(Example::Sql(sql.slice(..sql.len().min(max))))
    }

    /// The text (invalid UTF-8 shown as U+FFFD).
    pub fn to_arc(&self) -> Arc<str> {
        match &self.0 {
            Example::Name(n) => Arc::from(*n),
            Example::Text(t) => t.clone(),
            Example::Sql(b) => Arc::from(String::from_utf8_lossy(b).as_ref()),
        }
    }

    /// The bytes as captured.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Example::Name(n) => n.as_bytes(),
            Example::Text(t) => t.as_bytes(),
            Example::Sql(b) => b,
        }
    }
}

impl From<&'static str> for ExampleText {
    fn from(n: &'static str) -> Self {
        Self(Example::Name(n))
    }
}

impl From<Arc<str>> for ExampleText {
    fn from(t: Arc<str>) -> Self {
        Self(Example::Text(t))
    }
}

impl From<String> for ExampleText {
    fn from(t: String) -> Self {
        Self(Example::Text(t.into()))
    }
}

impl PartialEq for ExampleText {
    fn eq(&self, o: &Self) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl PartialEq<&str> for ExampleText {
    fn eq(&self, o: &&str) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

/// What the test server answered to one replayed command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestResponse {
    /// Ok, Err (or None when nothing came back).
    pub status: mrte_capture::event::ResponseStatus,
    /// Error code on Err.
    pub error_code: Option<u16>,
    /// Error message on Err.
    pub error_message: Option<String>,
    /// Rows returned (sum over result sets).
    pub rows: u64,
    /// Affected rows.
    pub affected: u64,
    /// Result sets returned.
    pub result_sets: u32,
    /// Checksums of the result sets as the shared response reader
    /// (`mrte_capture::mysql::response`) computes them; `None` without result sets. Compared
    /// with prod's by [`compare::Comparison::record`] ([`results`]).
    pub checksum: Option<mrte_capture::event::ResultChecksum>,
    /// Send → response complete, microseconds.
    pub latency_us: u64,
}

/// One replayed (or failed-to-replay) command: prod side and test side, for comparison.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Captured session.
    pub session: SessionId,
    /// `COM_*` name.
    pub command: &'static str,
    /// Fingerprint text (for COM_QUERY/EXECUTE: of the SQL / PREPARE text; else the command name).
    pub fingerprint: Arc<str>,
    /// Fingerprint id.
    pub fingerprint_id: u64,
    /// The statement as sent (truncated for examples).
    pub example: ExampleText,
    /// Production response and latency.
    pub prod: Response,
    /// Production latency (request last packet → response last packet), microseconds.
    pub prod_us: Option<u64>,
    /// Test response; `None` when replay failed (connection lost, statement unknown on target).
    pub test: Option<TestResponse>,
    /// Why replay failed, when `test` is None.
    pub failure: Option<String>,
    /// Scheduled vs actual send time difference (offline pacing), microseconds.
    pub lag_us: u64,
}
