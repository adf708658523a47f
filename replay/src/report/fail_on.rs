//! `--fail-on METRIC OP NUMBER`: conditions evaluated against a finished [`Report`].

use super::Report;
use crate::compare::ratio;

/// One `--fail-on` condition: `metric op number`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailOn {
    metric: String,
    op: String,
    limit: f64,
}

impl std::str::FromStr for FailOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let ops = [">=", "<=", ">", "<", "=="];
        for op in ops {
            if let Some(i) = s.find(op) {
                let metric = s[..i].trim().to_string();
                let limit: f64 = s[i + op.len()..]
                    .trim()
                    .parse()
                    .map_err(|_| format!("--fail-on {s:?}: bad number"))?;
                if !METRICS.contains(&metric.as_str()) {
                    return Err(format!(
                        "--fail-on {s:?}: unknown metric (one of {})",
                        METRICS.join(", ")
                    ));
                }
                return Ok(FailOn {
                    metric,
                    op: op.to_string(),
                    limit,
                });
            }
        }
        Err(format!("--fail-on {s:?}: expected METRIC>N, e.g. errors>0"))
    }
}

/// Metrics `--fail-on` understands.
pub const METRICS: &[&str] = &[
    "errors",
    "test_only",
    "prod_only",
    "code_mismatch",
    "replay_failed",
    "rows_mismatch",
    "result_mismatch",
    "drops",
    "lost",
    "failed",
    "unaccounted",
    "skipped",
    "p50_ratio",
    "p99_ratio",
    "total_ratio",
];

impl FailOn {
    /// The metric's value in `r`.
    pub fn value(&self, r: &Report) -> f64 {
        let p = r.latency_us.get("prod").cloned().unwrap_or_default();
        let t = r.latency_us.get("test").cloned().unwrap_or_default();
        match self.metric.as_str() {
            "errors" => r.errors.total() as f64,
            "test_only" => r.errors.test_only as f64,
            "prod_only" => r.errors.prod_only as f64,
            "code_mismatch" => r.errors.code_mismatch as f64,
            "replay_failed" => r.errors.replay_failed as f64,
            "rows_mismatch" => r.rows_mismatch as f64,
            "result_mismatch" => r.results.diverged() as f64,
            "drops" => (r.drops.kernel + r.drops.ring + r.drops.gaps) as f64,
            "lost" => r.drops.lost.values().sum::<u64>() as f64,
            "failed" => r.failed.values().sum::<u64>() as f64,
            "unaccounted" => {
                r.accounting.unaccounted.unsigned_abs() as f64 + r.accounting.sessions_died as f64
            }
            "skipped" => r.skipped.values().sum::<u64>() as f64,
            "p50_ratio" => ratio(t.p50, p.p50),
            "p99_ratio" => ratio(t.p99, p.p99),
            "total_ratio" => ratio(t.total, p.total),
            _ => 0.0,
        }
    }

    /// The condition holds (the run fails).
    pub fn fails(&self, r: &Report) -> bool {
        let v = self.value(r);
        match self.op.as_str() {
            ">" => v > self.limit,
            ">=" => v >= self.limit,
            "<" => v < self.limit,
            "<=" => v <= self.limit,
            _ => (v - self.limit).abs() < f64::EPSILON,
        }
    }
}

impl std::fmt::Display for FailOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op, self.limit)
    }
}
