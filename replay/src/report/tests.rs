//! Tests of the report model and its renderings, on one hand-made comparison.

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
                example: "SELECT <b>".into(),
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

/// The `<svg ...>...</svg>` element whose id is `id`.
fn svg_by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no svg {id}"));
    let len = html[start..].find("</svg>").expect("svg closed") + "</svg>".len();
    &html[start..start + len]
}

#[test]
fn every_fingerprint_has_a_percentile_spectrum_of_both_sides() {
    let r = sample_report();
    let h = r.to_html();
    assert_eq!(r.fingerprints.len(), 2);
    for id in r
        .fingerprints
        .iter()
        .map(|f| f.id.as_str())
        .chain(["overall"])
    {
        let svg = svg_by_id(&h, &format!("spectrum-{id}"));
        for want in [
            "<path class=\"prod\"",
            "<path class=\"test\"",
            ">percentile (log scale of 1/(1-q))</text>",
            ">latency (log scale)</text>",
            ">0%</text>",
            ">90%</text>",
            ">99%</text>",
            ">99.9%</text>",
            ">99.99%</text>",
            "class=\"legend\"",
        ] {
            assert!(svg.contains(want), "{id}: no {want} in {svg}");
        }
        assert!(!svg.contains("NaN"), "{svg}");
    }
    // 50 samples a side: the spectrum reaches 1/(1-q) = 50 and ends at the largest sample.
    let f = &r.fingerprints[0];
    let &(q, v) = f.test_spectrum.last().expect("points");
    assert!((q - 0.98).abs() < 1e-9, "{q}");
    assert_eq!(v, f.test.max);
    assert!(f
        .test_spectrum
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    // Latency grows with q: prod 100..5000 µs.
    assert_eq!(f.prod_spectrum[0].1, 100);
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
    assert!(dom.contains("id=\"spectrum-overall\""));
    assert_eq!(dom.matches("class=\"spectrum\"").count(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
