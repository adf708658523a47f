//! Merging the reports of several replay processes (players on several hosts) into one.
//!
//! A [`Part`] is what one player knows: its [`Comparison`] (per-fingerprint prod/test latency
//! histograms, error and result divergence, examples) and its [`EngineStats`]. [`Part::encode`]
//! turns it into bytes (a version byte, then postcard; histograms in HdrHistogram's V2
//! serialisation) for a key-value store; [`Part::decode`] reads them back; [`Part::merge`] adds
//! another part. The merged part feeds the ordinary [`crate::report::Report::build`], so the
//! merged report has the same JSON schema as a single-process run. This module does no I/O.

use std::sync::Arc;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, ErrorCounts, Example, FingerprintStats, MAX_EXAMPLES};
use crate::engine::EngineStats;
use crate::results::{
    judge, Comparability, FingerprintResults, ResultCounts, ResultSample, SideSample,
};

/// Version byte of [`Part::encode`].
pub const PART_VERSION: u8 = 1;

/// A part that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Empty or another version.
    #[error("report part version {0:?} (this build reads {PART_VERSION})")]
    Version(Option<u8>),
    /// Bad body.
    #[error("report part does not decode: {0}")]
    Body(String),
}

/// One player's share of a run.
#[derive(Debug, Default)]
pub struct Part {
    /// Prod vs test per fingerprint.
    pub cmp: Comparison,
    /// Engine counters.
    pub eng: EngineStats,
}

#[derive(Serialize, Deserialize)]
struct Side(u64, String, String, String);

#[derive(Serialize, Deserialize)]
struct Sample(String, String, Side, Side);

#[derive(Serialize, Deserialize)]
struct FpResults {
    counts: [u64; 5],
    samples: Vec<Sample>,
}

#[derive(Serialize, Deserialize)]
struct Fp {
    fingerprint: String,
    id: u64,
    command: String,
    count: u64,
    replayed: u64,
    prod: Vec<u8>,
    test: Vec<u8>,
    prod_total_us: u64,
    test_total_us: u64,
    errors: [u64; 4],
    rows_mismatch: u64,
    sample: String,
    /// kind, statement, prod, test.
    examples: Vec<(String, String, String, String)>,
    results: Option<FpResults>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    fps: Vec<Fp>,
    prod: Vec<u8>,
    test: Vec<u8>,
    errors: [u64; 4],
    rows_mismatch: u64,
    outcomes: u64,
    replayed: u64,
    results: [u64; 5],
    /// Engine counters as JSON (its field set grows; JSON keeps old parts readable).
    eng: String,
}

fn hist_bytes(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Serialising a valid histogram into a Vec does not fail.
    let _ = V2Serializer::new().serialize(h, &mut out);
    out
}

fn hist_of(b: &[u8]) -> Result<Histogram<u64>, MergeError> {
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &b[..])
        .map_err(|e| MergeError::Body(format!("histogram: {e:?}")))?;
    // Histograms recorded later in the merge may need more range.
    h.auto(true);
    Ok(h)
}

fn errors_arr(e: &ErrorCounts) -> [u64; 4] {
    [e.test_only, e.prod_only, e.code_mismatch, e.replay_failed]
}

fn errors_of(a: [u64; 4]) -> ErrorCounts {
    ErrorCounts {
        test_only: a[0],
        prod_only: a[1],
        code_mismatch: a[2],
        replay_failed: a[3],
    }
}

fn counts_arr(c: &ResultCounts) -> [u64; 5] {
    [
        c.compared,
        c.mismatch,
        c.order_only,
        c.metadata_mismatch,
        c.not_comparable,
    ]
}

fn counts_of(a: [u64; 5]) -> ResultCounts {
    ResultCounts {
        compared: a[0],
        mismatch: a[1],
        order_only: a[2],
        metadata_mismatch: a[3],
        not_comparable: a[4],
    }
}

fn add_counts(a: &mut ResultCounts, b: &ResultCounts) {
    a.compared += b.compared;
    a.mismatch += b.mismatch;
    a.order_only += b.order_only;
    a.metadata_mismatch += b.metadata_mismatch;
    a.not_comparable += b.not_comparable;
}

fn add_errors(a: &mut ErrorCounts, b: &ErrorCounts) {
    a.test_only += b.test_only;
    a.prod_only += b.prod_only;
    a.code_mismatch += b.code_mismatch;
    a.replay_failed += b.replay_failed;
}

/// The `COM_*` name as a static string (unknown names read as COM_UNKNOWN's).
fn command_static(name: &str) -> &'static str {
    (0..=255u8)
        .map(mrte_capture::event::command_name)
        .find(|n| *n == name)
        .unwrap_or_else(|| mrte_capture::event::command_name(0xff))
}

fn kind_static(kind: &str, known: &[&'static str]) -> Option<&'static str> {
    known.iter().copied().find(|k| *k == kind)
}

const EXAMPLE_KINDS: &[&str] = &[
    "replay_failed",
    "test_only",
    "prod_only",
    "code_mismatch",
    "rows",
];
const SAMPLE_KINDS: &[&str] = &["mismatch", "order_only", "metadata_mismatch"];

fn merge_hist(a: &mut Histogram<u64>, b: &Histogram<u64>) {
    a.auto(true);
    let _ = a.add(b);
}

impl Part {
    /// A part of a comparison and engine counters.
    pub fn new(cmp: Comparison, eng: EngineStats) -> Self {
        Self { cmp, eng }
    }

    /// Bytes for a key-value store.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_parts(&self.cmp, &self.eng)
    }

    /// [`Part::encode`] of borrowed parts.
    pub fn encode_parts(cmp: &Comparison, eng: &EngineStats) -> Vec<u8> {
        let fps = cmp
            .fps
            .values()
            .map(|f| Fp {
                fingerprint: f.fingerprint.to_string(),
                id: f.id,
                command: f.command.to_string(),
                count: f.count,
                replayed: f.replayed,
                prod: hist_bytes(&f.prod),
                test: hist_bytes(&f.test),
                prod_total_us: f.prod_total_us,
                test_total_us: f.test_total_us,
                errors: errors_arr(&f.errors),
                rows_mismatch: f.rows_mismatch,
                sample: f.sample.to_string(),
                examples: f
                    .examples
                    .iter()
                    .map(|e| {
                        (
                            e.kind.to_string(),
                            e.statement.to_string(),
                            e.prod.clone(),
                            e.test.clone(),
                        )
                    })
                    .collect(),
                results: cmp.results.fps.get(&f.id).map(|r| FpResults {
                    counts: counts_arr(&r.counts),
                    samples: r
                        .samples
                        .iter()
                        .map(|s| {
                            let side = |x: &SideSample| {
                                Side(
                                    x.rows,
                                    x.ordered.clone(),
                                    x.unordered.clone(),
                                    x.columns.clone(),
                                )
                            };
                            Sample(
                                s.kind.to_string(),
                                s.sql.clone(),
                                side(&s.prod),
                                side(&s.test),
                            )
                        })
                        .collect(),
                }),
            })
            .collect();
        let w = Wire {
            fps,
            prod: hist_bytes(&cmp.prod()),
            test: hist_bytes(&cmp.test()),
            errors: errors_arr(&cmp.errors),
            rows_mismatch: cmp.rows_mismatch,
            outcomes: cmp.outcomes,
            replayed: cmp.replayed,
            results: counts_arr(&cmp.results.counts),
            eng: serde_json::to_string(eng).unwrap_or_default(),
        };
        let mut out = vec![PART_VERSION];
        out.extend(postcard::to_allocvec(&w).unwrap_or_default());
        out
    }

    /// Read bytes made by [`Part::encode`].
    pub fn decode(b: &[u8]) -> Result<Self, MergeError> {
        match b.first() {
            Some(&PART_VERSION) => {}
            v => return Err(MergeError::Version(v.copied())),
        }
        let w: Wire = postcard::from_bytes(&b[1..]).map_err(|e| MergeError::Body(e.to_string()))?;
        // The overall histograms are the per-fingerprint ones added up: checked, not kept.
        hist_of(&w.prod)?;
        hist_of(&w.test)?;
        let mut cmp = Comparison {
            errors: errors_of(w.errors),
            rows_mismatch: w.rows_mismatch,
            outcomes: w.outcomes,
            replayed: w.replayed,
            ..Comparison::default()
        };
        cmp.results.counts = counts_of(w.results);
        for f in w.fps {
            let fingerprint: Arc<str> = Arc::from(f.fingerprint.as_str());
            if let Some(r) = f.results {
                let comp = judge(&fingerprint);
                let mut fr = FingerprintResults {
                    counts: counts_of(r.counts),
                    not_comparable_reason: match comp {
                        Comparability::NotComparable(why) => Some(why),
                        Comparability::Comparable => None,
                    },
                    samples: Vec::new(),
                    comparability: Some(comp),
                };
                for Sample(kind, sql, p, t) in r.samples {
                    let Some(kind) = kind_static(&kind, SAMPLE_KINDS) else {
                        continue;
                    };
                    let side = |s: Side| SideSample {
                        rows: s.0,
                        ordered: s.1,
                        unordered: s.2,
                        columns: s.3,
                    };
                    fr.samples.push(ResultSample {
                        kind,
                        sql,
                        prod: side(p),
                        test: side(t),
                    });
                }
                cmp.results.fps.insert(f.id, fr);
            }
            cmp.fps.insert(
                f.id,
                FingerprintStats {
                    fingerprint,
                    id: f.id,
                    command: command_static(&f.command),
                    count: f.count,
                    replayed: f.replayed,
                    prod: hist_of(&f.prod)?,
                    test: hist_of(&f.test)?,
                    prod_total_us: f.prod_total_us,
                    test_total_us: f.test_total_us,
                    errors: errors_of(f.errors),
                    rows_mismatch: f.rows_mismatch,
                    sample: Arc::from(f.sample.as_str()),
                    examples: f
                        .examples
                        .into_iter()
                        .filter_map(|(k, s, p, t)| {
                            Some(Example {
                                kind: kind_static(&k, EXAMPLE_KINDS)?,
                                statement: Arc::from(s.as_str()),
                                prod: p,
                                test: t,
                            })
                        })
                        .collect(),
                },
            );
        }
        let eng: EngineStats = serde_json::from_str(&w.eng)
            .map_err(|e| MergeError::Body(format!("engine counters: {e}")))?;
        Ok(Part { cmp, eng })
    }

    /// Add another part.
    pub fn merge(&mut self, o: Part) {
        let (a, b) = (&mut self.cmp, o.cmp);
        add_errors(&mut a.errors, &b.errors);
        a.rows_mismatch += b.rows_mismatch;
        a.outcomes += b.outcomes;
        a.replayed += b.replayed;
        add_counts(&mut a.results.counts, &b.results.counts);
        for (id, r) in b.results.fps {
            match a.results.fps.get_mut(&id) {
                None => {
                    a.results.fps.insert(id, r);
                }
                Some(x) => {
                    add_counts(&mut x.counts, &r.counts);
                    for s in r.samples {
                        if x.samples.iter().filter(|y| y.kind == s.kind).count()
                            < crate::results::MAX_SAMPLES
                        {
                            x.samples.push(s);
                        }
                    }
                }
            }
        }
        for (id, f) in b.fps {
            match a.fps.get_mut(&id) {
                None => {
                    a.fps.insert(id, f);
                }
                Some(x) => {
                    x.count += f.count;
                    x.replayed += f.replayed;
                    merge_hist(&mut x.prod, &f.prod);
                    merge_hist(&mut x.test, &f.test);
                    x.prod_total_us += f.prod_total_us;
                    x.test_total_us += f.test_total_us;
                    add_errors(&mut x.errors, &f.errors);
                    x.rows_mismatch += f.rows_mismatch;
                    for e in f.examples {
                        if x.examples.iter().filter(|y| y.kind == e.kind).count() < MAX_EXAMPLES {
                            x.examples.push(e);
                        }
                    }
                }
            }
        }
        let e = &mut self.eng;
        e.merge(&o.eng);
        e.sessions += o.eng.sessions;
        e.sessions_panicked += o.eng.sessions_panicked;
        e.sessions_not_started += o.eng.sessions_not_started;
        // Lag percentiles do not add: keep the worst player's.
        e.lag_us.count += o.eng.lag_us.count;
        e.lag_us.p50 = e.lag_us.p50.max(o.eng.lag_us.p50);
        e.lag_us.p99 = e.lag_us.p99.max(o.eng.lag_us.p99);
        e.lag_us.max = e.lag_us.max.max(o.eng.lag_us.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, TestResponse};
    use mrte_capture::event::{Response, ResponseStatus, ResultChecksum};

    fn outcome(fp: u64, prod_us: u64, test_us: u64, test_err: bool) -> Outcome {
        let prod = Response {
            status: ResponseStatus::Ok,
            rows: 1,
            result_sets: 1,
            checksum: Some(ResultChecksum {
                rows_ordered: 1,
                rows_unordered: 2,
                columns: 3,
            }),
            ..Response::default()
        };
        let test = TestResponse {
            status: if test_err {
                ResponseStatus::Err
            } else {
                ResponseStatus::Ok
            },
            error_code: test_err.then_some(1146),
            rows: 1,
            result_sets: 1,
            checksum: Some(ResultChecksum {
                rows_ordered: 9,
                rows_unordered: 2,
                columns: 3,
            }),
            latency_us: test_us,
            ..TestResponse::default()
        };
        Outcome {
            session: 1,
            command: "COM_QUERY",
            fingerprint: Arc::from(format!("select ? from t{fp}").as_str()),
            fingerprint_id: fp,
            example: format!("select 1 from t{fp}").into(),
            prod,
            prod_us: Some(prod_us),
            test: Some(test),
            failure: None,
            lag_us: 0,
        }
    }

    #[test]
    fn merged_parts_equal_one_comparison_of_everything() {
        let all: Vec<Outcome> = (0..200u64)
            .map(|i| outcome(i % 3, 100 + i * 7, 50 + i * 13, i % 17 == 0))
            .collect();
        let mut whole = Comparison::default();
        let (mut a, mut b) = (Comparison::default(), Comparison::default());
        for (i, o) in all.iter().enumerate() {
            whole.record(o);
            if i % 2 == 0 {
                a.record(o)
            } else {
                b.record(o)
            }
        }
        let ea = EngineStats {
            sessions: 1,
            replayed: 100,
            ..EngineStats::default()
        };
        let mut pa = Part::decode(&Part::encode_parts(&a, &ea)).expect("a decodes");
        let pb = Part::decode(&Part::encode_parts(&b, &ea)).expect("b decodes");
        pa.merge(pb);
        let m = &pa.cmp;
        assert_eq!(m.outcomes, whole.outcomes);
        assert_eq!(m.errors, whole.errors);
        assert_eq!(m.results.counts, whole.results.counts);
        assert_eq!(m.test().len(), whole.test().len());
        for q in [0.5, 0.9, 0.99, 1.0] {
            assert_eq!(
                m.test().value_at_quantile(q),
                whole.test().value_at_quantile(q)
            );
            assert_eq!(
                m.prod().value_at_quantile(q),
                whole.prod().value_at_quantile(q)
            );
        }
        for f in whole.fingerprints() {
            let g = m.fps.get(&f.id).expect("fingerprint kept");
            assert_eq!((g.count, g.replayed), (f.count, f.replayed));
            assert_eq!(g.errors, f.errors);
            assert_eq!(
                g.test.value_at_quantile(0.99),
                f.test.value_at_quantile(0.99)
            );
            assert_eq!(g.command, "COM_QUERY");
        }
        assert_eq!(pa.eng.sessions, 2);
        assert_eq!(pa.eng.replayed, 200);
    }

    #[test]
    fn bad_parts_are_errors() {
        assert!(Part::decode(&[]).is_err());
        assert!(Part::decode(&[7, 1]).is_err());
        let good = Part::encode_parts(&Comparison::default(), &EngineStats::default());
        for cut in 1..good.len() {
            let _ = Part::decode(&good[..cut]);
        }
    }
}
