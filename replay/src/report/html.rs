//! A self-contained HTML page of the [`Report`] (`--html FILE`): inline CSS and SVG charts, no
//! external resources, no script. It formats the report; it computes no figure.

use std::fmt::Write as _;

use super::svg::{svg_cdf, svg_spectrum};
use super::Report;

/// Fingerprints with a percentile spectrum on the page (the first by test total time).
pub const SPECTRUM_FINGERPRINTS: usize = 20;

impl Report {
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
            ("deadlock retries", self.replayed.deadlock_retries),
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
        h.push_str("<h2>Latency, all replayed commands (blue prod, red test)</h2><div class=\"grid\"><div class=\"card\">");
        h.push_str(&svg_spectrum(
            "overall",
            &self.spectrum.0,
            &self.spectrum.1,
            (self.latency_count("prod"), self.latency_count("test")),
            560,
            300,
        ));
        h.push_str("</div><div class=\"card\">");
        h.push_str(&svg_cdf("overall", &self.cdf.0, &self.cdf.1, 560, 300));
        h.push_str("</div>");
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
        let _ = write!(h, "</table><h2>Latency percentile spectrum per fingerprint (blue prod, red test; the first {SPECTRUM_FINGERPRINTS} by test total time)</h2><div class=\"grid\">");
        for f in self.fingerprints.iter().take(SPECTRUM_FINGERPRINTS) {
            let _ = write!(h, "<div class=\"card fp\"><div class=\"l\" style=\"max-width:460px;font-family:monospace;font-size:12px\">{}</div>", esc(&f.fingerprint));
            h.push_str(&svg_spectrum(
                &f.id,
                &f.prod_spectrum,
                &f.test_spectrum,
                (f.prod.count, f.test.count),
                460,
                250,
            ));
            h.push_str("</div>");
        }
        if self.fingerprints.len() > SPECTRUM_FINGERPRINTS {
            let _ = write!(
                h,
                "<p>{} more fingerprints not plotted (see the JSON report).</p>",
                self.fingerprints.len() - SPECTRUM_FINGERPRINTS
            );
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

impl Report {
    fn latency_count(&self, side: &str) -> u64 {
        self.latency_us.get(side).map_or(0, |p| p.count)
    }
}
