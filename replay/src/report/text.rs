//! The final text report printed at the end of `mrte run` / `mrte replay`: counters, losses,
//! the books, divergence, latency percentiles, top fingerprints by test time and by regression,
//! divergence examples and result divergence. It formats the [`Report`]; it computes no figure.

use std::fmt::Write as _;

use super::{FingerprintReport, Report};

impl Report {
    /// The final text report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let ms = |us: u64| us as f64 / 1000.0;
        let c = &self.captured;
        let _ = writeln!(
            s,
            "== mrte {} report: target {} ({:.1} s)",
            self.mode, self.target, self.duration_s
        );
        let _ = writeln!(
            s,
            "captured: {} packets, {} sessions, {} commands ({} TLS, {} compressed, {} mid-stream sessions)",
            c.packets, c.sessions, c.commands, c.tls_sessions, c.compressed_sessions, c.midstream_sessions
        );
        let _ = writeln!(
            s,
            "replayed: {} commands with a response (+{} without), {} sessions, {} connects, {} reconnects, {} deadlock rollbacks, {} deadlock retries",
            self.replayed.commands, self.replayed.no_response, self.replayed.sessions, self.replayed.connects, self.replayed.reconnects, self.replayed.deadlock_rollbacks, self.replayed.deadlock_retries
        );
        let r = &self.replayed;
        if r.deadlock_retries > 0 || !r.deadlock_retries_refused.is_empty() {
            let refused: Vec<String> = r
                .deadlock_retries_refused
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                s,
                "deadlock retries (test-only deadlock victims sent again): {} transactions, {} attempts, {} statements resent, {} abandoned; not retried: {}",
                r.deadlock_retries,
                r.deadlock_retry_attempts,
                r.deadlock_retry_statements,
                r.deadlock_retries_abandoned,
                if refused.is_empty() { "none".to_string() } else { refused.join(", ") }
            );
        }
        if r.prod_clock_sets > 0 {
            let _ = writeln!(
                s,
                "prod clock: {} SET (timestamp before statements that may read the time, insert_id before {} INSERTs), {} refused by test",
                r.prod_clock_sets, r.prod_insert_ids, r.prod_clock_errors
            );
        }
        let skipped: u64 = self.skipped.values().sum();
        let lost: u64 = self.drops.lost.values().sum();
        let _ = writeln!(
            s,
            "losses:   kernel {}  ring {}  gaps {} ({} bytes)  decode errors {}  desyncs {}  lost {}  skipped {}",
            self.drops.kernel, self.drops.ring, self.drops.gaps, self.drops.gap_bytes, c.decode_errors, c.desyncs, lost, skipped
        );
        if c.undecoded_bytes + c.decoder_panics + c.evicted_sessions + c.memory_drops > 0 {
            let u = &c.undecoded;
            let _ = writeln!(
                s,
                "          undecoded {} bytes (unsynced {}, after gap {}, TLS {}, too large {}, incomplete {}, decoder panic {})  decoder panics {}  evicted sessions {}  memory drops {}",
                c.undecoded_bytes, u.unsynced, u.after_gap, u.tls, u.too_large, u.incomplete, u.decoder_panic, c.decoder_panics, c.evicted_sessions, c.memory_drops
            );
        }
        if c.multi_queue_sessions > 0 {
            let _ = writeln!(
                s,
                "          {} sessions seen on more than one RX queue (make RSS symmetric)",
                c.multi_queue_sessions
            );
        }
        for (k, v) in &self.skipped {
            let _ = writeln!(s, "          skipped {k}: {v}");
        }
        for (k, v) in &self.drops.lost {
            let _ = writeln!(s, "          lost {k}: {v}");
        }
        for (k, v) in &self.failed {
            let _ = writeln!(s, "          failed {k}: {v}");
        }
        let r = &self.replayed;
        if r.connect_failures + r.sessions_gave_up + r.sessions_state_lost + r.sessions_panicked > 0
        {
            let _ = writeln!(
                s,
                "faults:   {} failed connects, {} sessions gave up reconnecting, {} sessions reconnected without their prod state {:?}, {} sessions panicked",
                r.connect_failures, r.sessions_gave_up, r.sessions_state_lost, r.state_lost, r.sessions_panicked
            );
        }
        let _ = writeln!(s, "{}", self.accounting.text());
        let e = &self.errors;
        let _ = writeln!(
            s,
            "divergence: errors test_only {} prod_only {} code_mismatch {} replay_failed {}; rows mismatch {}",
            e.test_only, e.prod_only, e.code_mismatch, e.replay_failed, self.rows_mismatch
        );
        s.push_str(&self.results.summary_line());
        if let Some(y) = &self.sync {
            s.push_str(&y.text());
        }
        let _ = writeln!(
            s,
            "lag behind schedule: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            ms(self.lag_us.p50),
            ms(self.lag_us.p99),
            ms(self.lag_us.max)
        );
        let _ = writeln!(s, "\nlatency (ms)   count      p50      p90      p95      p99    p99.9      max    total_s");
        for (k, p) in &self.latency_us {
            let _ = writeln!(
                s,
                "{:<8} {:>11} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>10.3}",
                k,
                p.count,
                ms(p.p50),
                ms(p.p90),
                ms(p.p95),
                ms(p.p99),
                ms(p.p999),
                ms(p.max),
                p.total as f64 / 1e6
            );
        }
        let row = |s: &mut String, f: &FingerprintReport| {
            let mut fp = f.fingerprint.clone();
            if fp.len() > 40 {
                let mut cut = 37;
                while !fp.is_char_boundary(cut) {
                    cut -= 1;
                }
                fp.truncate(cut);
                fp.push_str("...");
            }
            let _ = writeln!(
                s,
                "{:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>6.2} {:>6.2} {:>4} {:>4}  {}",
                f.count,
                ms(f.prod.p50),
                ms(f.test.p50),
                ms(f.prod.p99),
                ms(f.test.p99),
                f.ratio_p50,
                f.ratio_total,
                f.errors.total(),
                f.rows_mismatch,
                fp
            );
        };
        let header = "   count prod_p50 test_p50 prod_p99 test_p99  r_p50  r_tot errs rows  fingerprint (ms)";
        let _ = writeln!(s, "\ntop fingerprints by test total time\n{header}");
        for f in self.fingerprints.iter().take(10) {
            row(&mut s, f);
        }
        let mut reg: Vec<&FingerprintReport> = self
            .fingerprints
            .iter()
            .filter(|f| f.test.count >= 10 && f.prod.count > 0)
            .collect();
        reg.sort_by(|a, b| b.ratio_p50.total_cmp(&a.ratio_p50));
        let _ = writeln!(
            s,
            "\ntop fingerprints by regression (test/prod p50, >= 10 replays)\n{header}"
        );
        for f in reg.iter().take(10) {
            row(&mut s, f);
        }
        let div: Vec<&FingerprintReport> = self
            .fingerprints
            .iter()
            .filter(|f| !f.examples.is_empty())
            .collect();
        if !div.is_empty() {
            let _ = writeln!(s, "\ndivergence examples");
            for f in div.iter().take(20) {
                let _ = writeln!(s, "  [{}] {}", f.id, f.fingerprint);
                for x in &f.examples {
                    let mut st = x.statement.to_string();
                    st.truncate(100);
                    let _ = writeln!(
                        s,
                        "    {:<13} prod: {:<28} test: {}\n                  {}",
                        x.kind, x.prod, x.test, st
                    );
                }
            }
        }
        s.push_str(&crate::results::divergence_text(
            self.fingerprints
                .iter()
                .map(|f| (&*f.id, &*f.fingerprint, &f.results, &f.result_samples[..])),
        ));
        s
    }
}
