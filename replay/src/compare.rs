//! Per-fingerprint prod/test latency histograms and error/row divergence.
//!
//! [`Comparison::record`] takes one [`Outcome`] at a time: it allocates only on the first sight of
//! a fingerprint and when it keeps one of the few examples per kind of divergence. It does not
//! replay anything or format reports (see [`crate::report`]).

use std::sync::Arc;

use hdrhistogram::Histogram;
use mrte_capture::event::ResponseStatus;
use serde::Serialize;

use crate::results::{ResultDivergence, ResultSide};
use crate::Outcome;

/// Examples kept per fingerprint and kind.
pub const MAX_EXAMPLES: usize = 3;

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Error divergence counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Prod OK, test ERR.
    pub test_only: u64,
    /// Prod ERR, test OK.
    pub prod_only: u64,
    /// Both ERR with different codes.
    pub code_mismatch: u64,
    /// The command could not be replayed at all.
    pub replay_failed: u64,
}

impl ErrorCounts {
    /// Sum of all kinds.
    pub fn total(&self) -> u64 {
        self.test_only + self.prod_only + self.code_mismatch + self.replay_failed
    }

    fn add(&mut self, o: &ErrorCounts) {
        self.test_only += o.test_only;
        self.prod_only += o.prod_only;
        self.code_mismatch += o.code_mismatch;
        self.replay_failed += o.replay_failed;
    }
}

/// One divergence example.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Example {
    /// What diverged (`test_only`, `rows`, ...).
    pub kind: &'static str,
    /// The statement.
    pub statement: Arc<str>,
    /// Prod side in words.
    pub prod: String,
    /// Test side in words.
    pub test: String,
}

/// Everything known about one fingerprint.
#[derive(Debug)]
pub struct FingerprintStats {
    /// Fingerprint text.
    pub fingerprint: Arc<str>,
    /// Fingerprint id.
    pub id: u64,
    /// `COM_*` name of the first command seen.
    pub command: &'static str,
    /// Outcomes recorded.
    pub count: u64,
    /// Outcomes with a test response.
    pub replayed: u64,
    /// Prod latency, µs.
    pub prod: Histogram<u64>,
    /// Test latency, µs.
    pub test: Histogram<u64>,
    /// Sum of prod latency of replayed commands, µs.
    pub prod_total_us: u64,
    /// Sum of test latency, µs.
    pub test_total_us: u64,
    /// Error divergence.
    pub errors: ErrorCounts,
    /// Rows-returned or affected-rows divergence.
    pub rows_mismatch: u64,
    /// A sample statement.
    pub sample: Arc<str>,
    /// Divergence examples.
    pub examples: Vec<Example>,
}

/// Prod vs test for all replayed traffic.
#[derive(Debug, Default)]
pub struct Comparison {
    /// By fingerprint id (an MD5-derived hash: FxHash is enough).
    pub(crate) fps: rustc_hash::FxHashMap<u64, FingerprintStats>,
    /// Overall error divergence.
    pub errors: ErrorCounts,
    /// Overall rows divergence.
    pub rows_mismatch: u64,
    /// Outcomes recorded.
    pub outcomes: u64,
    /// Outcomes with a test response.
    pub replayed: u64,
    /// Result checksum comparison, per fingerprint id: outcomes whose prod response and
    /// [`crate::TestResponse::checksum`] both have result sets.
    pub results: ResultDivergence,
}

fn status_words(status: ResponseStatus, code: Option<u16>, rows: u64, affected: u64) -> String {
    match status {
        ResponseStatus::Err => format!("ERR {}", code.unwrap_or(0)),
        ResponseStatus::Ok => format!("OK rows={rows} affected={affected}"),
        ResponseStatus::None => "no response".into(),
    }
}

impl Comparison {
    /// Record one outcome.
    pub fn record(&mut self, o: &Outcome) {
        self.outcomes += 1;
        let fp = self
            .fps
            .entry(o.fingerprint_id)
            .or_insert_with(|| FingerprintStats {
                fingerprint: o.fingerprint.clone(),
                id: o.fingerprint_id,
                command: o.command,
                count: 0,
                replayed: 0,
                prod: histogram(),
                test: histogram(),
                prod_total_us: 0,
                test_total_us: 0,
                errors: ErrorCounts::default(),
                rows_mismatch: 0,
                sample: o.example.to_arc(),
                examples: Vec::new(),
            });
        fp.count += 1;
        let mut err = ErrorCounts::default();
        let mut example: Option<Example> = None;
        let prod_words = || {
            status_words(
                o.prod.status,
                o.prod.error_code,
                o.prod.rows,
                o.prod.affected,
            )
        };
        match &o.test {
            None => {
                err.replay_failed = 1;
                example = Some(Example {
                    kind: "replay_failed",
                    statement: o.example.to_arc(),
                    prod: prod_words(),
                    test: o.failure.clone().unwrap_or_else(|| "not replayed".into()),
                });
            }
            Some(t) => {
                self.replayed += 1;
                fp.replayed += 1;
                let _ = fp.test.record(t.latency_us.max(1));
                fp.test_total_us += t.latency_us;
                if let Some(p) = o.prod_us {
                    let _ = fp.prod.record(p.max(1));
                    fp.prod_total_us += p;
                }
                let test_words = || status_words(t.status, t.error_code, t.rows, t.affected);
                let kind = match (o.prod.status, t.status) {
                    (ResponseStatus::Ok, ResponseStatus::Err) => {
                        err.test_only = 1;
                        Some("test_only")
                    }
                    (ResponseStatus::Err, ResponseStatus::Ok) => {
                        err.prod_only = 1;
                        Some("prod_only")
                    }
                    (ResponseStatus::Err, ResponseStatus::Err)
                        if o.prod.error_code != t.error_code =>
                    {
                        err.code_mismatch = 1;
                        Some("code_mismatch")
                    }
                    (ResponseStatus::Ok, ResponseStatus::Ok)
                        if o.prod.rows != t.rows || o.prod.affected != t.affected =>
                    {
                        fp.rows_mismatch += 1;
                        self.rows_mismatch += 1;
                        Some("rows")
                    }
                    _ => None,
                };
                self.results.record_fingerprint(
                    o.fingerprint_id,
                    &o.fingerprint,
                    o.example.as_bytes(),
                    (&o.prod).into(),
                    ResultSide {
                        status: t.status,
                        rows: t.rows,
                        result_sets: t.result_sets,
                        checksum: t.checksum,
                    },
                );
                if let Some(kind) = kind {
                    let mut test = test_words();
                    if let Some(m) = &t.error_message {
                        test.push_str(": ");
                        test.push_str(m);
                    }
                    example = Some(Example {
                        kind,
                        statement: o.example.to_arc(),
                        prod: prod_words(),
                        test,
                    });
                }
            }
        }
        fp.errors.add(&err);
        self.errors.add(&err);
        if let Some(e) = example {
            if fp.examples.iter().filter(|x| x.kind == e.kind).count() < MAX_EXAMPLES {
                fp.examples.push(e);
            }
        }
    }

    /// Overall prod latency, µs: the per-fingerprint histograms added up (each sample is
    /// recorded once, in its fingerprint's; adding gives the same counts per bucket, so the
    /// same percentiles, mean, min and max as recording every sample twice did).
    pub fn prod(&self) -> Histogram<u64> {
        self.overall(|f| &f.prod)
    }

    /// Overall test latency, µs (see [`Comparison::prod`]).
    pub fn test(&self) -> Histogram<u64> {
        self.overall(|f| &f.test)
    }

    fn overall(&self, side: impl Fn(&FingerprintStats) -> &Histogram<u64>) -> Histogram<u64> {
        let mut h = histogram();
        for f in self.fps.values() {
            let _ = h.add(side(f));
        }
        h
    }

    /// Fingerprints, in no particular order.
    pub fn fingerprints(&self) -> impl Iterator<Item = &FingerprintStats> {
        self.fps.values()
    }

    /// Fingerprints sorted by test total time, largest first.
    pub fn top_by_test_time(&self, n: usize) -> Vec<&FingerprintStats> {
        let mut v: Vec<_> = self.fps.values().collect();
        v.sort_by(|a, b| {
            b.test_total_us
                .cmp(&a.test_total_us)
                .then(b.count.cmp(&a.count))
        });
        v.truncate(n);
        v
    }

    /// Fingerprints with at least `min_count` replays, sorted by p50 test/prod ratio, largest first.
    pub fn top_by_regression(&self, n: usize, min_count: u64) -> Vec<&FingerprintStats> {
        let mut v: Vec<_> = self
            .fps
            .values()
            .filter(|f| f.replayed >= min_count && !f.prod.is_empty() && !f.test.is_empty())
            .collect();
        v.sort_by(|a, b| ratio_p50(b).total_cmp(&ratio_p50(a)));
        v.truncate(n);
        v
    }
}

/// Test p50 / prod p50.
pub fn ratio_p50(f: &FingerprintStats) -> f64 {
    ratio(f.test.value_at_quantile(0.5), f.prod.value_at_quantile(0.5))
}

/// `a / b` with 0 for an empty denominator.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestResponse;
    use mrte_capture::event::Response;

    fn outcome(
        fp: &str,
        prod_us: u64,
        prod: ResponseStatus,
        prod_rows: u64,
        test: Option<(ResponseStatus, u64, u64)>,
    ) -> Outcome {
        Outcome {
            session: 1,
            command: "COM_QUERY",
            fingerprint: Arc::from(fp),
            fingerprint_id: mrte_capture::fingerprint::fingerprint_id(fp),
            example: format!("{fp} -- example").into(),
            prod: Response {
                status: prod,
                rows: prod_rows,
                error_code: (prod == ResponseStatus::Err).then_some(1146),
                ..Response::default()
            },
            prod_us: Some(prod_us),
            test: test.map(|(status, rows, lat)| TestResponse {
                status,
                rows,
                latency_us: lat,
                error_code: (status == ResponseStatus::Err).then_some(1054),
                ..TestResponse::default()
            }),
            failure: None,
            lag_us: 0,
        }
    }

    #[test]
    fn counts_percentiles_and_divergence() {
        let mut c = Comparison::default();
        for i in 1..=100u64 {
            c.record(&outcome(
                "select ?",
                i * 10,
                ResponseStatus::Ok,
                1,
                Some((ResponseStatus::Ok, 1, i * 20)),
            ));
        }
        c.record(&outcome(
            "select ?",
            10,
            ResponseStatus::Ok,
            1,
            Some((ResponseStatus::Ok, 2, 10)),
        ));
        c.record(&outcome(
            "update t",
            10,
            ResponseStatus::Ok,
            0,
            Some((ResponseStatus::Err, 0, 10)),
        ));
        c.record(&outcome(
            "update t",
            10,
            ResponseStatus::Err,
            0,
            Some((ResponseStatus::Err, 0, 10)),
        ));
        c.record(&outcome(
            "update t",
            10,
            ResponseStatus::Err,
            0,
            Some((ResponseStatus::Ok, 0, 10)),
        ));
        c.record(&outcome("update t", 10, ResponseStatus::Ok, 0, None));
        assert_eq!(c.outcomes, 105);
        assert_eq!(c.replayed, 104);
        assert_eq!(c.rows_mismatch, 1);
        assert_eq!(
            c.errors,
            ErrorCounts {
                test_only: 1,
                prod_only: 1,
                code_mismatch: 1,
                replay_failed: 1
            }
        );
        let top = c.top_by_test_time(10);
        assert_eq!(&*top[0].fingerprint, "select ?");
        assert_eq!(top[0].count, 101);
        let p50 = top[0].test.value_at_quantile(0.5);
        assert!((990..=1010).contains(&p50), "{p50}");
        assert!((ratio_p50(top[0]) - 2.0).abs() < 0.05);
        let upd = c
            .fingerprints()
            .find(|f| &*f.fingerprint == "update t")
            .unwrap();
        assert_eq!(upd.examples.len(), 4);
        assert_eq!(upd.errors.total(), 4);
    }

    #[test]
    fn overall_histograms_equal_recording_every_sample_once_more() {
        let mut c = Comparison::default();
        let (mut prod, mut test) = (histogram(), histogram());
        let mut x = 7u64;
        for i in 0..5_000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let p = (x >> 40) % [90, 5_000, 3_000_000][(i % 3) as usize];
            let t = (x >> 20) % [70, 40_000, 900_000_000][(i % 3) as usize];
            let fp = ["select ?", "update t", "insert x"][((x >> 60) % 3) as usize];
            c.record(&outcome(
                fp,
                p,
                ResponseStatus::Ok,
                1,
                Some((ResponseStatus::Ok, 1, t)),
            ));
            prod.record(p.max(1)).unwrap();
            test.record(t.max(1)).unwrap();
        }
        for (got, want) in [(c.prod(), prod), (c.test(), test)] {
            assert_eq!(got.len(), want.len());
            assert_eq!((got.min(), got.max()), (want.min(), want.max()));
            assert_eq!(got.mean().to_bits(), want.mean().to_bits());
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(got.value_at_quantile(q), want.value_at_quantile(q), "q {q}");
            }
        }
    }
}
