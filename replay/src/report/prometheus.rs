//! Prometheus text exposition (format 0.0.4) of live counters.

use std::fmt::Write as _;

/// Live values for Prometheus text exposition.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// Capture counters.
    pub capture: Vec<(&'static str, &'static str, u64)>,
    /// Replay counters.
    pub replay: Vec<(&'static str, &'static str, u64)>,
    /// (side, quantile, seconds).
    pub latency: Vec<(&'static str, f64, f64)>,
}

/// Render Prometheus text format 0.0.4.
pub fn prometheus(m: &MetricsSnapshot) -> String {
    let mut s = String::new();
    for (name, help, v) in m.capture.iter().chain(m.replay.iter()) {
        let _ = writeln!(
            s,
            "# HELP mrte_{name} {help}\n# TYPE mrte_{name} counter\nmrte_{name} {v}"
        );
    }
    if !m.latency.is_empty() {
        s.push_str("# HELP mrte_latency_seconds Command latency, prod (captured) and test (replayed).\n# TYPE mrte_latency_seconds summary\n");
        for (side, q, v) in &m.latency {
            let _ = writeln!(
                s,
                "mrte_latency_seconds{{side=\"{side}\",quantile=\"{q}\"}} {v}"
            );
        }
    }
    s
}
