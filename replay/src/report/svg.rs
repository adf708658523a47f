//! Inline SVG charts for the HTML report: a latency CDF and a percentile spectrum, prod (blue)
//! against test (red). Plain strings, no script, no external resources; the page's CSS may
//! restyle them but every stroke is also given inline so a chart stands alone.
//!
//! They draw the points they are given; they compute no statistic.

use std::fmt::Write as _;

use super::SPECTRUM_MAX_DECADES;

const PROD: &str = "#1f77b4";
const TEST: &str = "#d62728";

/// A latency (µs) as a short axis label: `50µs`, `2ms`, `1.5s`.
fn us_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}s", v / 1e6)
    } else if v >= 1e3 {
        format!("{}ms", v / 1e3)
    } else {
        format!("{v}µs")
    }
}

/// A CDF chart of prod (blue) and test (red) on a log-scaled latency axis.
pub(super) fn svg_cdf(
    id: &str,
    prod: &[(u64, f64)],
    test: &[(u64, f64)],
    w: u32,
    hgt: u32,
) -> String {
    let (l, r, t, b) = (50.0, 22.0, 10.0, 30.0);
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
        let px = l + (f64::from(d) - llo) / (lhi - llo) * (wf - l - r);
        let label = us_label(10f64.powi(d));
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

/// `log10(1/(1-q))`, the spectrum's x coordinate in decades.
fn decades(q: f64) -> f64 {
    -(1.0 - q).max(1e-12).log10()
}

/// The label of the tick at `d` decades: 0%, 90%, 99%, 99.9%, 99.99%, ...
fn pct_label(d: u32) -> String {
    match d {
        0 => "0%".to_string(),
        _ => format!(
            "{:.*}%",
            d.saturating_sub(2) as usize,
            100.0 - 10f64.powi(2 - d as i32)
        ),
    }
}

/// A percentile spectrum (HdrHistogram style) of prod (blue) and test (red): x is log10(1/(1-q))
/// with ticks at 0%, 90%, 99%, 99.9%, 99.99% (more when a series has more samples), y the latency
/// on a log scale; a legend with each series' sample count, axis titles inside the viewBox.
/// `prod`/`test` are (q, µs) points as [`super::spectrum`] makes them; `counts` their samples.
pub(super) fn svg_spectrum(
    id: &str,
    prod: &[(f64, u64)],
    test: &[(f64, u64)],
    counts: (u64, u64),
    w: u32,
    hgt: u32,
) -> String {
    let (l, r, t, b) = (64.0, 26.0, 10.0, 42.0);
    let (wf, hf) = (f64::from(w), f64::from(hgt));
    let (pw, ph) = (wf - l - r, hf - t - b);
    let pts = || prod.iter().chain(test.iter());
    let xmax = pts().map(|p| decades(p.0)).fold(0.0, f64::max);
    let span = (xmax - 1e-9)
        .ceil()
        .clamp(4.0, f64::from(SPECTRUM_MAX_DECADES)) as u32;
    let lo = pts().map(|p| p.1.max(1)).min().unwrap_or(1) as f64;
    let hi = pts().map(|p| p.1.max(1)).max().unwrap_or(10) as f64;
    let ylo = lo.log10().floor();
    let yhi = hi.log10().ceil().max(ylo + 1.0);
    let x = |q: f64| l + decades(q) / f64::from(span) * pw;
    let y = |v: u64| t + ph - ((v.max(1) as f64).log10() - ylo) / (yhi - ylo) * ph;
    let mut s = format!("<svg id=\"spectrum-{id}\" class=\"spectrum\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui,sans-serif\">");
    let _ = write!(
        s,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fafafa\" stroke=\"#ccc\"/>"
    );
    for d in 0..=span {
        let px = l + f64::from(d) / f64::from(span) * pw;
        // 0% starts at the corner, clear of the lowest latency label.
        let anchor = if d == 0 { "start" } else { "middle" };
        let _ = write!(s, "<line x1=\"{px:.1}\" y1=\"{t}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/><text class=\"xtick\" x=\"{px:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"{anchor}\">{}</text>", t + ph, t + ph + 13.0, pct_label(d));
    }
    // Decade ticks; with at most two decades also 2x and 5x.
    let minor = yhi - ylo <= 2.0;
    let mut d = ylo as i32;
    while f64::from(d) <= yhi {
        for m in [1.0, 2.0, 5.0] {
            let v = 10f64.powi(d) * m;
            if (m > 1.0 && !minor) || v.log10() > yhi + 1e-9 {
                continue;
            }
            let py = t + ph - (v.log10() - ylo) / (yhi - ylo) * ph;
            let _ = write!(s, "<line x1=\"{l}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e4e4e4\"/><text class=\"ytick\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>", l + pw, l - 4.0, py + 3.5, us_label(v));
        }
        d += 1;
    }
    let _ = write!(
        s,
        "<text class=\"xlabel\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">percentile (log scale of 1/(1-q))</text>",
        l + pw / 2.0,
        hf - 8.0
    );
    let _ = write!(
        s,
        "<text class=\"ylabel\" x=\"13\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 13 {:.1})\">latency (log scale)</text>",
        t + ph / 2.0,
        t + ph / 2.0
    );
    for (cls, color, pts) in [("prod", PROD, prod), ("test", TEST, test)] {
        match pts {
            [] => {}
            [(q, v)] => {
                let _ = write!(s, "<circle class=\"{cls}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{cls}</title></circle>", x(*q), y(*v));
            }
            _ => {
                let mut p = String::new();
                for (i, &(q, v)) in pts.iter().enumerate() {
                    let _ = write!(
                        p,
                        "{}{:.1},{:.1}",
                        if i == 0 { "M" } else { " L" },
                        x(q),
                        y(v)
                    );
                }
                let _ = write!(s, "<path class=\"{cls}\" d=\"{p}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"><title>{cls}</title></path>");
            }
        }
    }
    // Legend, top left: a spectrum climbs to the right, so that corner stays clear.
    let (lx, ly) = (l + 8.0, t + 8.0);
    // Wide enough for the longer "side (n=COUNT)" at 10 px (0.62 em a character, generous).
    let chars = 9 + counts.0.max(counts.1).to_string().len();
    let lw = 29.0 + chars as f64 * 6.2 + 6.0;
    let _ = write!(
        s,
        "<g class=\"legend\"><rect x=\"{lx}\" y=\"{ly}\" width=\"{lw:.0}\" height=\"38\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>"
    );
    for (i, (name, color, n)) in [("prod", PROD, counts.0), ("test", TEST, counts.1)]
        .into_iter()
        .enumerate()
    {
        let yy = ly + 13.0 + 15.0 * i as f64;
        let _ = write!(s, "<line x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{name} (n={n})</text>", lx + 6.0, lx + 24.0, lx + 29.0, yy + 3.5);
    }
    s.push_str("</g></svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        let l: Vec<String> = (0..=5).map(pct_label).collect();
        assert_eq!(l, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(us_label(1e6), "1s");
        assert_eq!(us_label(2000.0), "2ms");
        assert_eq!(us_label(50.0), "50µs");
    }

    #[test]
    fn spectrum_of_nothing_or_one_point_is_still_a_chart() {
        let s = svg_spectrum("x", &[], &[(0.0, 7)], (0, 1), 400, 240);
        assert!(s.starts_with("<svg id=\"spectrum-x\""));
        assert!(s.contains("<circle class=\"test\""));
        assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
    }

    /// Every `<text>` of `svg` (x, y, anchor, font size, content), rotated ones excluded.
    fn texts(svg: &str) -> Vec<(f64, f64, String, f64, String)> {
        let attr = |t: &str, k: &str| {
            t.split(&format!(" {k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        svg.split("<text")
            .skip(1)
            .filter(|t| !t.contains("rotate("))
            .map(|t| {
                let (head, rest) = t.split_once('>').unwrap();
                let content = rest.split("</text>").next().unwrap().to_string();
                let num = |k| attr(head, k).unwrap().parse::<f64>().unwrap();
                let anchor = attr(head, "text-anchor").unwrap_or_else(|| "start".into());
                (num("x"), num("y"), anchor, num("font-size"), content)
            })
            .collect()
    }

    #[test]
    fn labels_fit_inside_the_chart() {
        // Six decades of samples and latencies from 3 µs to 40 s: the widest labels there are.
        let pts: Vec<(f64, u64)> = (0..=120u32)
            .map(|k| {
                let k64 = u64::from(k);
                (
                    1.0 - 10f64.powf(-f64::from(k) / 20.0),
                    3 + 23 * k64 * k64 * k64,
                )
            })
            .collect();
        let (w, h) = (460u32, 250u32);
        let svg = svg_spectrum("wide", &pts, &pts[..60], (2_000_000, 1000), w, h);
        assert!(svg.contains(">99.9999%</text>"), "{svg}");
        let all = texts(&svg);
        assert!(all.len() >= 12, "{all:?}");
        let legend: f64 = svg
            .split("<g class=\"legend\"><rect x=\"")
            .nth(1)
            .and_then(|r| r.split("width=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .expect("legend box");
        for (x, y, anchor, size, content) in all {
            // A generous width estimate: 0.62 em per character.
            let width = content.chars().count() as f64 * size * 0.62;
            let (lo, hi) = match anchor.as_str() {
                "middle" => (x - width / 2.0, x + width / 2.0),
                "end" => (x - width, x),
                _ => (x, x + width),
            };
            assert!(
                lo >= 0.0 && hi <= f64::from(w),
                "{content:?} spans {lo:.0}..{hi:.0}"
            );
            assert!(y - size >= 0.0 && y <= f64::from(h), "{content:?} at y {y}");
            if content.contains("(n=") {
                // The legend box starts 8 px right of the plot's left edge (64).
                assert!(
                    hi <= 72.0 + legend,
                    "{content:?} ends at {hi:.0}, past the legend box"
                );
            }
        }
    }
}
