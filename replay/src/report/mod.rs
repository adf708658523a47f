//! The report model: the [`Report`] (serialised as the JSON report, schema in `replay/REPORT.md`)
//! built from what [`crate::compare::Comparison`], the engine and the capture counted, and
//! `--fail-on` thresholds. Renderings live in the submodules: [`json`] (the JSON report), [`text`]
//! (the final text report), [`html`] (a self-contained HTML page).
//!
//! It only formats what was counted elsewhere; it measures nothing.

mod fail_on;
pub mod html;
pub mod json;
mod svg;
#[cfg(test)]
mod tests;
pub mod text;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use mrte_capture::stats::Stats;
use serde::Serialize;

use crate::accounting::Accounting;
use crate::compare::{ratio, ratio_p50, Comparison, ErrorCounts, Example, FingerprintStats};
use crate::engine::EngineStats;
use crate::results::{ResultCounts, ResultDivergence, ResultSample};

pub use fail_on::{FailOn, METRICS};

/// CDF points: (latency µs, cumulative fraction).
pub type Cdf = Vec<(u64, f64)>;

/// Percentile spectrum points: (quantile q, latency µs), q spaced evenly in log10(1/(1-q)) from
/// 0 up to 1 - 1/count, where the largest sample is plotted (HdrHistogram's percentile
/// distribution).
pub type Spectrum = Vec<(f64, u64)>;

/// Points per decade of 1/(1-q) in a [`Spectrum`].
pub const SPECTRUM_STEPS_PER_DECADE: u32 = 20;
/// The spectrum stops at 1/(1-q) = 10^this (q = 99.9999%) even with more samples.
pub const SPECTRUM_MAX_DECADES: u32 = 6;

/// Latency percentiles, µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 95th.
    pub p95: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Sum, µs.
    pub total: u64,
}

impl Percentiles {
    /// From a histogram and the exact sum.
    pub fn of(h: &Histogram<u64>, total: u64) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
            total,
        }
    }
}

/// `captured` section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Captured {
    /// Frames.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Sessions.
    pub sessions: u64,
    /// Commands decoded.
    pub commands: u64,
    /// Commands by `COM_*` name.
    pub by_command: BTreeMap<String, u64>,
    /// TLS sessions (not decodable).
    pub tls_sessions: u64,
    /// Compressed sessions.
    pub compressed_sessions: u64,
    /// Sessions open before capture.
    pub midstream_sessions: u64,
    /// Decode errors.
    pub decode_errors: u64,
    /// Decoder desyncs.
    pub desyncs: u64,
    /// Connections seen on more than one RX queue (asymmetric RSS: responses lost).
    pub multi_queue_sessions: u64,
    /// Bytes seen on the server port but never decoded.
    pub undecoded_bytes: u64,
    /// Undecoded bytes by reason.
    pub undecoded: mrte_capture::stats::UndecodedBytes,
    /// Sessions whose decoding panicked (dropped; capture went on).
    pub decoder_panics: u64,
    /// Sessions evicted from a full session table.
    pub evicted_sessions: u64,
    /// Times a session dropped its buffers at the memory limit.
    pub memory_drops: u64,
}

/// `replayed` section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Replayed {
    /// Commands that got a test response.
    pub commands: u64,
    /// Commands sent that have no response (QUIT, STMT_CLOSE, SEND_LONG_DATA).
    pub no_response: u64,
    /// Sessions with at least one command sent.
    pub sessions: u64,
    /// Test connections opened.
    pub connects: u64,
    /// Reconnects after a lost connection.
    pub reconnects: u64,
    /// ROLLBACKs sent to test where prod's server rolled a deadlock victim back and test's
    /// did not.
    pub deadlock_rollbacks: u64,
    /// Transactions sent to test again because test's server chose them as a deadlock victim
    /// where prod's did not (their victim command's answer is the retry's).
    pub deadlock_retries: u64,
    /// Attempts of those retries.
    pub deadlock_retry_attempts: u64,
    /// Statements sent again by those retries.
    pub deadlock_retry_statements: u64,
    /// Retries whose statements kept failing on test: the victim command went alone.
    pub deadlock_retries_abandoned: u64,
    /// Test-only deadlocks not retried, by reason (each stays a test-only error).
    pub deadlock_retries_refused: BTreeMap<String, u64>,
    /// `SET timestamp` statements sent to give test prod's clock (not counted as commands).
    pub prod_clock_sets: u64,
    /// Of those, answered with an error (that session stopped setting it).
    pub prod_clock_errors: u64,
    /// Of the `SET`s, those that gave test prod's auto-increment id.
    pub prod_insert_ids: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Sessions that stopped reconnecting (`--reconnect-for`).
    pub sessions_gave_up: u64,
    /// Sessions reconnected while production held state a new connection lacks.
    pub sessions_state_lost: u64,
    /// That state by kind (open_transaction, temporary_tables, user_variables, session_variables).
    pub state_lost: BTreeMap<String, u64>,
    /// Sessions where replaying a command panicked (the rest counted lost, `session_panic`).
    pub sessions_panicked: u64,
}

/// `drops` section: everything lost before replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Drops {
    /// Kernel/NIC drops.
    pub kernel: u64,
    /// Events dropped on full rings.
    pub ring: u64,
    /// TCP holes.
    pub gaps: u64,
    /// Bytes in those holes.
    pub gap_bytes: u64,
    /// Commands that could not be replayed, by reason.
    pub lost: BTreeMap<String, u64>,
}

/// One fingerprint in the report.
#[derive(Clone, Debug, Serialize)]
pub struct FingerprintReport {
    /// Fingerprint text.
    pub fingerprint: String,
    /// Id (hex, low 64 bits of pt-query-digest's Query ID).
    pub id: String,
    /// `COM_*` name.
    pub command: String,
    /// Outcomes.
    pub count: u64,
    /// Prod latency, µs.
    pub prod: Percentiles,
    /// Test latency, µs.
    pub test: Percentiles,
    /// test p50 / prod p50.
    pub ratio_p50: f64,
    /// test p99 / prod p99.
    pub ratio_p99: f64,
    /// test total / prod total.
    pub ratio_total: f64,
    /// Error divergence.
    pub errors: ErrorCounts,
    /// Row divergence.
    pub rows_mismatch: u64,
    /// A sample statement and divergence examples.
    pub examples: Vec<Example>,
    /// Result checksum comparison.
    pub results: ResultCounts,
    /// Why results of this shape are not compared, if they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_comparable_reason: Option<&'static str>,
    /// Diverging results, up to 3 per kind.
    pub result_samples: Vec<ResultSample>,
    /// Sample statement.
    pub sample: String,
    /// CDF points (µs, fraction) of prod latency.
    #[serde(skip)]
    pub prod_cdf: Cdf,
    /// CDF points of test latency.
    #[serde(skip)]
    pub test_cdf: Cdf,
    /// Percentile spectrum of prod latency.
    #[serde(skip)]
    pub prod_spectrum: Spectrum,
    /// Percentile spectrum of test latency.
    #[serde(skip)]
    pub test_spectrum: Spectrum,
}

/// Lag behind schedule, µs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lag {
    /// Median.
    pub p50: u64,
    /// 99th.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// The whole report (the JSON report's schema).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Schema version.
    pub schema: u32,
    /// `run` (live) or `replay` (file).
    pub mode: String,
    /// Target server (no password).
    pub target: String,
    /// Seconds of wall time.
    pub duration_s: f64,
    /// Capture side.
    pub captured: Captured,
    /// Replay side.
    pub replayed: Replayed,
    /// Skipped commands by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Commands tried that failed without a server answer, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Every captured command's fate, summed.
    pub accounting: Accounting,
    /// Losses before replay.
    pub drops: Drops,
    /// Error divergence.
    pub errors: ErrorCounts,
    /// Commands whose rows returned or affected differ.
    pub rows_mismatch: u64,
    /// Result checksum comparison.
    pub results: ResultCounts,
    /// Overall latency, µs.
    pub latency_us: BTreeMap<String, Percentiles>,
    /// Lag behind schedule.
    pub lag_us: Lag,
    /// Per fingerprint, by test total time.
    pub fingerprints: Vec<FingerprintReport>,
    /// Commit-order synchronisation (`--sync commit`) and the snapshot check (`--snapshot-pos`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::SyncReport>,
    /// Overall CDFs.
    #[serde(skip)]
    pub cdf: (Cdf, Cdf),
    /// Overall percentile spectra (prod, test).
    #[serde(skip)]
    pub spectrum: (Spectrum, Spectrum),
}

/// CDF points of a histogram: 101 evenly spaced quantiles (none when it is empty).
pub fn cdf(h: &Histogram<u64>) -> Cdf {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=100)
        .map(|i| {
            let q = f64::from(i) / 100.0;
            let q = if i == 100 { 1.0 } else { q };
            (h.value_at_quantile(q), q)
        })
        .collect()
}

/// The percentile spectrum of a histogram (none when it is empty): q at
/// [`SPECTRUM_STEPS_PER_DECADE`] points per decade of 1/(1-q), while 1/(1-q) <= count (beyond
/// that the samples say nothing), ending with the largest sample at q = 1 - 1/count.
pub fn spectrum(h: &Histogram<u64>) -> Spectrum {
    if h.is_empty() {
        return Vec::new();
    }
    let steps = f64::from(SPECTRUM_STEPS_PER_DECADE);
    let top = (h.len() as f64)
        .log10()
        .min(f64::from(SPECTRUM_MAX_DECADES));
    let q_of = |x: f64| 1.0 - 10f64.powf(-x);
    let mut out = Vec::new();
    let mut k = 0u32;
    while f64::from(k) / steps < top - 1e-9 {
        let q = q_of(f64::from(k) / steps);
        out.push((q, h.value_at_quantile(q)));
        k += 1;
    }
    let last = if top < f64::from(SPECTRUM_MAX_DECADES) {
        h.max()
    } else {
        h.value_at_quantile(q_of(top))
    };
    out.push((q_of(top), last));
    out
}

fn fp_report(f: &FingerprintStats, results: &ResultDivergence) -> FingerprintReport {
    let res = results.fingerprint(f.id);
    FingerprintReport {
        fingerprint: f.fingerprint.to_string(),
        id: format!("{:016X}", f.id),
        command: f.command.to_string(),
        count: f.count,
        prod: Percentiles::of(&f.prod, f.prod_total_us),
        test: Percentiles::of(&f.test, f.test_total_us),
        ratio_p50: ratio_p50(f),
        ratio_p99: ratio(
            f.test.value_at_quantile(0.99),
            f.prod.value_at_quantile(0.99),
        ),
        ratio_total: ratio(f.test_total_us, f.prod_total_us),
        errors: f.errors,
        rows_mismatch: f.rows_mismatch,
        examples: f.examples.clone(),
        results: res.map(|r| r.counts).unwrap_or_default(),
        not_comparable_reason: res.and_then(|r| r.not_comparable_reason),
        result_samples: res.map(|r| r.samples.clone()).unwrap_or_default(),
        sample: f.sample.to_string(),
        prod_cdf: cdf(&f.prod),
        test_cdf: cdf(&f.test),
        prod_spectrum: spectrum(&f.prod),
        test_spectrum: spectrum(&f.test),
    }
}

impl Report {
    /// Build the report from the comparison, the engine's counters and the capture's counters.
    pub fn build(
        mode: &str,
        target: &str,
        duration_s: f64,
        cmp: &Comparison,
        eng: &EngineStats,
        cap: &Stats,
    ) -> Self {
        let by_command = cap
            .commands
            .named()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let prod_total: u64 = cmp.fingerprints().map(|f| f.prod_total_us).sum();
        let test_total: u64 = cmp.fingerprints().map(|f| f.test_total_us).sum();
        let mut latency = BTreeMap::new();
        let (prod, test) = (cmp.prod(), cmp.test());
        latency.insert("prod".to_string(), Percentiles::of(&prod, prod_total));
        latency.insert("test".to_string(), Percentiles::of(&test, test_total));
        Report {
            schema: 1,
            mode: mode.to_string(),
            target: target.to_string(),
            duration_s,
            captured: Captured {
                packets: cap.packets,
                bytes: cap.bytes,
                sessions: cap.sessions,
                commands: cap.commands.total(),
                by_command,
                tls_sessions: cap.tls_sessions,
                compressed_sessions: cap.compressed_sessions,
                midstream_sessions: cap.midstream_sessions,
                decode_errors: cap.decode_errors,
                desyncs: cap.desyncs,
                multi_queue_sessions: cap.multi_queue_sessions,
                undecoded_bytes: cap.undecoded_bytes,
                undecoded: cap.undecoded,
                decoder_panics: cap.decoder_panics,
                evicted_sessions: cap.table_evicted,
                memory_drops: cap.memory_drops,
            },
            replayed: Replayed {
                commands: eng.replayed,
                no_response: eng.replayed_no_response,
                sessions: eng.sessions_replayed,
                connects: eng.connects,
                reconnects: eng.reconnects,
                deadlock_rollbacks: eng.deadlock_rollbacks,
                deadlock_retries: eng.deadlock_retries,
                deadlock_retry_attempts: eng.deadlock_retry_attempts,
                deadlock_retry_statements: eng.deadlock_retry_statements,
                deadlock_retries_abandoned: eng.deadlock_retries_abandoned,
                deadlock_retries_refused: eng.deadlock_retries_refused.clone(),
                prod_clock_sets: eng.prod_clock_sets,
                prod_clock_errors: eng.prod_clock_errors,
                prod_insert_ids: eng.prod_insert_ids,
                connect_failures: eng.connect_failures,
                sessions_gave_up: eng.sessions_gave_up,
                sessions_state_lost: eng.sessions_state_lost,
                state_lost: eng.state_lost.clone(),
                sessions_panicked: eng.sessions_command_panicked,
            },
            skipped: eng.skipped.clone(),
            failed: eng.failed.clone(),
            accounting: Accounting::of(cap.commands.total(), eng, false),
            drops: Drops {
                kernel: cap.kernel_drops,
                ring: cap.ring_drops.max(eng.ring_dropped_events),
                gaps: cap.gaps,
                gap_bytes: cap.gap_bytes,
                lost: eng.lost.clone(),
            },
            errors: cmp.errors,
            rows_mismatch: cmp.rows_mismatch,
            results: cmp.results.counts,
            latency_us: latency,
            lag_us: Lag {
                p50: eng.lag_us.p50,
                p99: eng.lag_us.p99,
                max: eng.lag_us.max,
            },
            fingerprints: cmp
                .top_by_test_time(usize::MAX)
                .into_iter()
                .map(|f| fp_report(f, &cmp.results))
                .collect(),
            sync: crate::sync::SyncReport::of(eng),
            cdf: (cdf(&prod), cdf(&test)),
            spectrum: (spectrum(&prod), spectrum(&test)),
        }
    }

    /// The run was stopped early (signal): what never reached the engine is `queued_at_stop`.
    pub fn mark_interrupted(&mut self, eng: &EngineStats) {
        self.accounting = Accounting::of(self.captured.commands, eng, true);
    }
}
