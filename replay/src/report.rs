//! Reports: the [`Report`] (serialised as the JSON report, schema in `replay/REPORT.md`), its text
//! rendering, a self-contained HTML page, `--fail-on` thresholds and Prometheus text exposition.
//!
//! It only formats what [`crate::compare::Comparison`], the engine and the capture counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use mrte_capture::stats::Stats;
use serde::Serialize;

use crate::accounting::Accounting;
use crate::compare::{ratio, ratio_p50, Comparison, ErrorCounts, Example, FingerprintStats};
use crate::engine::EngineStats;
use crate::results::{ResultCounts, ResultDivergence, ResultSample};

/// CDF points: (latency µs, cumulative fraction).
pub type Cdf = Vec<(u64, f64)>;

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
}

fn cdf(h: &Histogram<u64>) -> Cdf {
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
        latency.insert("prod".to_string(), Percentiles::of(&cmp.prod, prod_total));
        latency.insert("test".to_string(), Percentiles::of(&cmp.test, test_total));
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
            cdf: (cdf(&cmp.prod), cdf(&cmp.test)),
        }
    }

    /// The run was stopped early (signal): what never reached the engine is `queued_at_stop`.
    pub fn mark_interrupted(&mut self, eng: &EngineStats) {
        self.accounting = Accounting::of(self.captured.commands, eng, true);
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

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
            "replayed: {} commands with a response (+{} without), {} sessions, {} connects, {} reconnects",
            self.replayed.commands, self.replayed.no_response, self.replayed.sessions, self.replayed.connects, self.replayed.reconnects
        );
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

    /// A self-contained HTML page (inline CSS and SVG, no external resources).
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        h.push_str(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>mrte report</title><style>",
        );
        h.push_str("body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td.l,th.l{text-align:left;font-family:monospace}.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;padding:8px;border-radius:6px}.prod{stroke:#1f77b4}.test{stroke:#d62728}svg path{fill:none;stroke-width:2}h1{font-size:20px}h2{font-size:16px}.bad{color:#b00;font-weight:bold}");
        h.push_str("</style></head><body>");
        let _ = write!(
            h,
            "<h1>mrte {} report</h1><p>target <b>{}</b>, {:.1} s</p>",
            esc(&self.mode),
            esc(&self.target),
            self.duration_s
        );
        h.push_str("<h2>Counters</h2><table id=\"counters\">");
        let lost: u64 = self.drops.lost.values().sum();
        let skipped: u64 = self.skipped.values().sum();
        for (k, v) in [
            ("captured packets", self.captured.packets),
            ("captured sessions", self.captured.sessions),
            ("captured commands", self.captured.commands),
            ("replayed commands", self.replayed.commands),
            ("replayed sessions", self.replayed.sessions),
            ("skipped", skipped),
            ("kernel drops", self.drops.kernel),
            ("ring drops", self.drops.ring),
            ("gaps", self.drops.gaps),
            ("undecoded bytes", self.captured.undecoded_bytes),
            ("decoder panics", self.captured.decoder_panics),
            ("lost", lost),
            ("failed", self.failed.values().sum::<u64>()),
            ("reconnects", self.replayed.reconnects),
            ("unaccounted", self.accounting.unaccounted.max(0) as u64),
            ("errors test_only", self.errors.test_only),
            ("errors prod_only", self.errors.prod_only),
            ("errors code_mismatch", self.errors.code_mismatch),
            ("replay failed", self.errors.replay_failed),
            ("rows mismatch", self.rows_mismatch),
            ("results compared", self.results.compared),
            ("results mismatch", self.results.mismatch),
            ("results order only", self.results.order_only),
            ("results metadata mismatch", self.results.metadata_mismatch),
            ("results not comparable", self.results.not_comparable),
            ("TLS sessions (not replayed)", self.captured.tls_sessions),
        ] {
            let _ = write!(h, "<tr><th class=\"l\">{k}</th><td>{v}</td></tr>");
        }
        h.push_str("</table>");
        if !self.accounting.balanced {
            let _ = write!(
                h,
                "<p class=\"bad\" id=\"unbalanced\">The books do not balance: {} commands unaccounted, {} session tasks died.</p>",
                self.accounting.unaccounted, self.accounting.sessions_died
            );
        }
        h.push_str(
            "<h2>Latency CDF, all replayed commands (blue prod, red test)</h2><div class=\"card\">",
        );
        h.push_str(&svg_cdf("overall", &self.cdf.0, &self.cdf.1, 640, 300));
        h.push_str("</div><h2>Top fingerprints by test total time</h2><table id=\"top\"><tr><th>count</th><th>prod p50 ms</th><th>test p50 ms</th><th>prod p99 ms</th><th>test p99 ms</th><th>test/prod p50</th><th>errors</th><th>rows</th><th class=\"l\">fingerprint</th></tr>");
        for f in self.fingerprints.iter().take(10) {
            let cls = if f.ratio_p50 > 1.5 {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td{cls}>{:.2}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                f.count,
                f.prod.p50 as f64 / 1000.0,
                f.test.p50 as f64 / 1000.0,
                f.prod.p99 as f64 / 1000.0,
                f.test.p99 as f64 / 1000.0,
                f.ratio_p50,
                f.errors.total(),
                f.rows_mismatch,
                esc(&f.fingerprint)
            );
        }
        h.push_str("</table><h2>Latency CDF per fingerprint (blue prod, red test)</h2><div class=\"grid\">");
        for (i, f) in self.fingerprints.iter().take(10).enumerate() {
            let _ = write!(h, "<div class=\"card fp\"><div class=\"l\" style=\"max-width:420px;font-family:monospace;font-size:12px\">{}</div>", esc(&f.fingerprint));
            h.push_str(&svg_cdf(
                &format!("fp{i}"),
                &f.prod_cdf,
                &f.test_cdf,
                420,
                200,
            ));
            h.push_str("</div>");
        }
        h.push_str("</div><h2>Divergence</h2><table id=\"divergence\"><tr><th class=\"l\">kind</th><th class=\"l\">fingerprint</th><th class=\"l\">prod</th><th class=\"l\">test</th><th class=\"l\">statement</th></tr>");
        for f in &self.fingerprints {
            for x in &f.examples {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                    x.kind,
                    esc(&f.fingerprint),
                    esc(&x.prod),
                    esc(&x.test),
                    esc(&x.statement)
                );
            }
        }
        h.push_str("</table><h2>Result divergence</h2><table id=\"results\"><tr><th class=\"l\">kind</th><th class=\"l\">fingerprint</th><th>prod rows</th><th>test rows</th><th class=\"l\">statement</th></tr>");
        for f in &self.fingerprints {
            for x in &f.result_samples {
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                    x.kind,
                    esc(&f.fingerprint),
                    x.prod.rows,
                    x.test.rows,
                    esc(&x.sql)
                );
            }
        }
        h.push_str("</table><h2>Skipped and lost</h2><table id=\"skipped\">");
        for (k, v) in self
            .skipped
            .iter()
            .map(|(k, v)| (format!("skipped {k}"), v))
            .chain(
                self.drops
                    .lost
                    .iter()
                    .map(|(k, v)| (format!("lost {k}"), v)),
            )
            .chain(self.failed.iter().map(|(k, v)| (format!("failed {k}"), v)))
        {
            let _ = write!(h, "<tr><th class=\"l\">{}</th><td>{v}</td></tr>", esc(&k));
        }
        h.push_str("</table></body></html>\n");
        h
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A CDF chart of prod (blue) and test (red) on a log-scaled latency axis, as inline SVG.
fn svg_cdf(id: &str, prod: &[(u64, f64)], test: &[(u64, f64)], w: u32, hgt: u32) -> String {
    let (l, r, t, b) = (50.0, 10.0, 10.0, 30.0);
    let (wf, hf) = (f64::from(w), f64::from(hgt));
    let all = prod.iter().chain(test.iter()).map(|p| p.0.max(1));
    let lo = all.clone().min().unwrap_or(1) as f64;
    let hi = (all.max().unwrap_or(10) as f64).max(lo * 10.0);
    let (llo, lhi) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: u64| l + ((v.max(1) as f64).log10() - llo) / (lhi - llo) * (wf - l - r);
    let y = |q: f64| t + (1.0 - q) * (hf - t - b);
    let mut s = format!("<svg id=\"cdf-{id}\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" xmlns=\"http://www.w3.org/2000/svg\">");
    let _ = write!(
        s,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#ccc\"/>",
        wf - l - r,
        hf - t - b
    );
    let mut d = llo as i32;
    while f64::from(d) <= lhi {
        let v = 10f64.powi(d);
        let px = l + (f64::from(d) - llo) / (lhi - llo) * (wf - l - r);
        let label = if v >= 1000.0 {
            format!("{}ms", v / 1000.0)
        } else {
            format!("{v}µs")
        };
        let _ = write!(s, "<line x1=\"{px:.1}\" y1=\"{t}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{px:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{label}</text>", hf - b, hf - b + 14.0);
        d += 1;
    }
    for q in [0.5, 0.9, 0.99] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">p{}</text>",
            l - 4.0,
            y(q) + 3.0,
            q * 100.0
        );
    }
    for (cls, pts) in [("prod", prod), ("test", test)] {
        if pts.is_empty() {
            continue;
        }
        let mut p = String::new();
        for (i, &(v, q)) in pts.iter().enumerate() {
            let _ = write!(
                p,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(v),
                y(q)
            );
        }
        let _ = write!(
            s,
            "<path class=\"{cls}\" d=\"{p}\"><title>{cls}</title></path>"
        );
    }
    s.push_str("</svg>");
    s
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, TestResponse};
    use mrte_capture::event::{Response, ResponseStatus};
    use std::sync::Arc;

    fn sample_report() -> Report {
        let mut c = Comparison::default();
        for i in 1..=50u64 {
            for (fp, k) in [
                ("select c from sbtest? where id=?", 1),
                ("update sbtest? set k=k? where id=?", 3),
            ] {
                c.record(&Outcome {
                    session: 1,
                    command: "COM_QUERY",
                    fingerprint: Arc::from(fp),
                    fingerprint_id: mrte_capture::fingerprint::fingerprint_id(fp),
                    example: Arc::from("SELECT <b>"),
                    prod: Response {
                        status: ResponseStatus::Ok,
                        rows: 1,
                        ..Response::default()
                    },
                    prod_us: Some(100 * i),
                    test: Some(TestResponse {
                        status: if i == 7 && k == 3 {
                            ResponseStatus::Err
                        } else {
                            ResponseStatus::Ok
                        },
                        rows: 1,
                        latency_us: 100 * i * k,
                        ..TestResponse::default()
                    }),
                    failure: None,
                    lag_us: 0,
                });
            }
        }
        let mut eng = EngineStats {
            replayed: 100,
            sessions_replayed: 1,
            ..EngineStats::default()
        };
        eng.skipped.insert("read_only".into(), 5);
        let mut cap = Stats::default();
        cap.commands.add(3);
        cap.sessions = 1;
        Report::build("replay", "mysql://u@h:1", 1.0, &c, &eng, &cap)
    }

    #[test]
    fn json_has_the_documented_fields() {
        let r = sample_report();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["replayed"]["commands"], 100);
        assert_eq!(v["captured"]["sessions"], 1);
        assert_eq!(v["skipped"]["read_only"], 5);
        assert_eq!(v["errors"]["test_only"], 1);
        assert_eq!(
            v["fingerprints"][0]["fingerprint"],
            "update sbtest? set k=k? where id=?"
        );
        assert_eq!(v["fingerprints"][0]["count"], 50);
        assert!(v["latency_us"]["prod"]["p99"].as_u64().unwrap() >= 4900);
        assert!(v["fingerprints"][0]["examples"][0]["kind"] == "test_only");
        for k in ["drops", "rows_mismatch", "lag_us"] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn fail_on_thresholds() {
        let r = sample_report();
        assert!("errors>0".parse::<FailOn>().unwrap().fails(&r));
        assert!(!"drops>0".parse::<FailOn>().unwrap().fails(&r));
        assert!("p50_ratio>1.5".parse::<FailOn>().unwrap().fails(&r));
        assert!("nonsense>1".parse::<FailOn>().is_err());
        assert!("errors".parse::<FailOn>().is_err());
        // 3 captured commands, 105 with a fate: the books do not balance.
        assert!("unaccounted>0".parse::<FailOn>().unwrap().fails(&r));
        assert!(!"failed>0".parse::<FailOn>().unwrap().fails(&r));
        assert!(r.to_text().contains("THE BOOKS DO NOT BALANCE"));
        assert!(r.to_html().contains("id=\"unbalanced\""));
    }

    #[test]
    fn text_and_html_render() {
        let r = sample_report();
        let t = r.to_text();
        assert!(t.contains("top fingerprints by test total time"));
        assert!(t.contains("test_only"));
        let h = r.to_html();
        assert!(h.contains("<path class=\"prod\""));
        assert!(h.contains("<path class=\"test\""));
        assert!(h.contains("SELECT &lt;b&gt;"));
        assert!(
            !h.contains("http://")
                || h.matches("http://").count()
                    == h.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }

    #[test]
    fn html_renders_in_headless_chromium() {
        let chromium = std::path::Path::new("/usr/bin/chromium");
        if !chromium.exists() {
            eprintln!("SKIP html_renders_in_headless_chromium: /usr/bin/chromium not installed (scripts/test.sh installs it)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mrte-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("r.html");
        std::fs::write(&page, sample_report().to_html()).unwrap();
        let out = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", dir.join("ud").display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(dom.contains("id=\"cdf-overall\""), "{dom}");
        assert_eq!(dom.matches("class=\"card fp\"").count(), 2);
        assert!(dom.matches("<path class=\"test\"").count() >= 3);
        assert!(dom.contains("id=\"divergence\""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prometheus_text() {
        let m = MetricsSnapshot {
            capture: vec![("captured_packets_total", "Frames captured.", 5)],
            replay: vec![("replayed_commands_total", "Commands replayed.", 3)],
            latency: vec![("prod", 0.5, 0.001)],
        };
        let s = prometheus(&m);
        assert!(s.contains("mrte_captured_packets_total 5\n"));
        assert!(s.contains("mrte_latency_seconds{side=\"prod\",quantile=\"0.5\"} 0.001\n"));
    }
}
