//! `--metrics ADDR`: Prometheus metrics at `http://ADDR/metrics` (text format 0.0.4), built with
//! the `prometheus` crate (a [`Registry`] of collectors read at scrape time) and served by hyper
//! on a thread of its own.
//!
//! Collectors: [`CaptureCollector`] (the collector side: frames, sessions, drops, undecoded bytes
//! by reason, decoder panics) and [`ReplayCollector`] (the player side: the books per fate,
//! replay counters and gauges, latency summaries overall and per fingerprint for the top
//! [`TOP_FINGERPRINTS`] by test total time, so label cardinality stays bounded). Metric names
//! are listed in `replay/REPORT.md`; `scripts/grafana/mrte-dashboard.json` charts them.
//!
//! It reads counters others keep (atomics and the comparison); it counts nothing itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use mrte_capture::stats::LiveStats;
use mrte_replay::compare::Comparison;
use mrte_replay::engine::LiveCounters;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary,
};
use prometheus::{Encoder, Registry, TextEncoder};

/// Fingerprints with their own latency series (the first by test total time).
pub const TOP_FINGERPRINTS: usize = 10;
/// Quantiles of every latency summary.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Longest `fingerprint` label value (the text is cut there, on a character boundary).
const FINGERPRINT_LABEL_MAX: usize = 80;

/// The metric families of one scrape, as they are filled.
struct Families {
    spec: &'static [FamilySpec],
    out: Vec<MetricFamily>,
}

/// `(name without the mrte_ prefix, help, label names)` of a metric family.
type FamilySpec = (&'static str, &'static str, &'static [&'static str]);

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

impl Families {
    fn new(spec: &'static [FamilySpec]) -> Self {
        Self {
            spec,
            out: Vec::new(),
        }
    }

    /// A family of `spec` (its help from there; a name missing from `spec` is a bug the tests
    /// catch: [`descs`] would not describe it).
    fn family(&mut self, name: &str, t: MetricType, metrics: Vec<Metric>) {
        let help = self.spec.iter().find(|s| s.0 == name).map_or("", |s| s.1);
        let mut f = MetricFamily::default();
        f.set_name(format!("mrte_{name}"));
        f.set_help(help.to_string());
        f.set_field_type(t);
        f.set_metric(metrics);
        self.out.push(f);
    }

    fn counter(&mut self, name: &str, v: u64) {
        self.counters(name, "", &[("", v)]);
    }

    /// One counter per label value (`label` empty: a single unlabelled counter).
    fn counters(&mut self, name: &str, label: &str, values: &[(&str, u64)]) {
        let metrics = values
            .iter()
            .map(|(lv, v)| {
                let mut c = Counter::default();
                c.set_value(*v as f64);
                let mut m = Metric::from_label(if label.is_empty() {
                    Vec::new()
                } else {
                    labels(&[(label, lv)])
                });
                m.set_counter(c);
                m
            })
            .collect();
        self.family(name, MetricType::COUNTER, metrics);
    }

    fn gauge(&mut self, name: &str, v: f64) {
        let mut g = Gauge::default();
        g.set_value(v);
        self.family(name, MetricType::GAUGE, vec![Metric::from_gauge(g)]);
    }

    /// A summary per label set, from a histogram of µs (exported in seconds) and its exact sum.
    fn summaries(&mut self, name: &str, series: Vec<(Vec<LabelPair>, &Histogram<u64>, u64)>) {
        let metrics = series
            .into_iter()
            .map(|(l, h, sum_us)| {
                let mut s = Summary::default();
                s.set_sample_count(h.len());
                s.set_sample_sum(sum_us as f64 / 1e6);
                s.set_quantile(
                    QUANTILES
                        .iter()
                        .map(|&q| {
                            let mut x = Quantile::default();
                            x.set_quantile(q);
                            x.set_value(if h.is_empty() {
                                0.0
                            } else {
                                h.value_at_quantile(q) as f64 / 1e6
                            });
                            x
                        })
                        .collect(),
                );
                let mut m = Metric::from_label(l);
                m.set_summary(s);
                m
            })
            .collect();
        self.family(name, MetricType::SUMMARY, metrics);
    }
}

/// Descriptors for the families a collector emits (the registry checks names are unique).
fn descs(families: &[FamilySpec]) -> Vec<Desc> {
    families
        .iter()
        .filter_map(|(name, help, labels)| {
            Desc::new(
                format!("mrte_{name}"),
                help.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
                Default::default(),
            )
            .ok()
        })
        .collect()
}

/// `(name, help, label names)` of every family [`CaptureCollector`] emits.
const CAPTURE_FAMILIES: &[FamilySpec] = &[
    ("captured_packets_total", "Frames captured.", &[]),
    ("captured_bytes_total", "Bytes captured.", &[]),
    ("captured_commands_total", "Commands decoded.", &[]),
    (
        "captured_sessions_total",
        "Sessions (TCP connections to a server port) seen.",
        &[],
    ),
    (
        "capture_active_sessions",
        "Sessions open in the capture's session table.",
        &[],
    ),
    (
        "kernel_drops_total",
        "Frames dropped by the kernel or NIC.",
        &[],
    ),
    (
        "ring_drops_total",
        "Events dropped on full session rings.",
        &[],
    ),
    ("tcp_gaps_total", "TCP holes that never filled.", &[]),
    ("decode_errors_total", "MySQL decode errors.", &[]),
    (
        "desyncs_total",
        "Times a decoder lost its place in a stream.",
        &[],
    ),
    (
        "tls_sessions_total",
        "Sessions that switched to TLS (not decodable).",
        &[],
    ),
    (
        "multi_queue_sessions_total",
        "Connections seen on more than one RX queue.",
        &[],
    ),
    (
        "undecoded_bytes_total",
        "Bytes seen on the server port but never decoded.",
        &[],
    ),
    (
        "undecoded_bytes_by_reason_total",
        "Bytes never decoded, by reason.",
        &["reason"],
    ),
    (
        "decoder_panics_total",
        "Sessions whose decoding panicked (dropped; capture went on).",
        &[],
    ),
    (
        "evicted_sessions_total",
        "Sessions evicted from a full session table.",
        &[],
    ),
    (
        "memory_drops_total",
        "Times a session dropped its buffers at the memory limit.",
        &[],
    ),
];

/// The collector side's counters, read from the capture's [`LiveStats`].
pub struct CaptureCollector {
    live: Arc<LiveStats>,
    descs: Vec<Desc>,
}

impl CaptureCollector {
    /// Read `live` at each scrape.
    pub fn new(live: Arc<LiveStats>) -> Self {
        Self {
            live,
            descs: descs(CAPTURE_FAMILIES),
        }
    }
}

impl Collector for CaptureCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.live;
        let mut f = Families::new(CAPTURE_FAMILIES);
        f.counter("captured_packets_total", l(&c.packets));
        f.counter("captured_bytes_total", l(&c.bytes));
        f.counter("captured_commands_total", l(&c.commands));
        f.counter("captured_sessions_total", l(&c.sessions));
        f.gauge("capture_active_sessions", l(&c.active_sessions) as f64);
        f.counter("kernel_drops_total", l(&c.kernel_drops));
        f.counter("ring_drops_total", l(&c.ring_drops));
        f.counter("tcp_gaps_total", l(&c.gaps));
        f.counter("decode_errors_total", l(&c.decode_errors));
        f.counter("desyncs_total", l(&c.desyncs));
        f.counter("tls_sessions_total", l(&c.tls_sessions));
        f.counter("multi_queue_sessions_total", l(&c.multi_queue_sessions));
        f.counter("undecoded_bytes_total", l(&c.undecoded_bytes));
        let by_reason: Vec<(&str, u64)> = c
            .undecoded_by_reason()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        f.counters("undecoded_bytes_by_reason_total", "reason", &by_reason);
        f.counter("decoder_panics_total", l(&c.decoder_panics));
        f.counter("evicted_sessions_total", l(&c.table_evicted));
        f.counter("memory_drops_total", l(&c.memory_drops));
        f.out
    }
}

/// `(name, help, label names)` of every family [`ReplayCollector`] emits.
const REPLAY_FAMILIES: &[FamilySpec] = &[
    ("replayed_commands_total", "Commands replayed with a response.", &[]),
    ("replay_test_errors_total", "Replayed commands answered with ERR.", &[]),
    ("replay_skipped_total", "Commands skipped by filters or rules.", &[]),
    ("replay_lost_total", "Commands that could not be replayed.", &[]),
    ("replay_failed_total", "Commands tried that failed without an answer (refused, timeout).", &[]),
    ("replay_reconnects_total", "Reconnects to the test server.", &[]),
    ("replay_deadlock_retries_total", "Transactions sent to test again: test's server chose them as a deadlock victim, prod's did not.", &[]),
    ("replay_sessions_total", "Sessions received from the capture.", &[]),
    ("replay_active_sessions", "Sessions being replayed.", &[]),
    ("replay_connections_open", "Test server connections open.", &[]),
    ("replay_lag_seconds", "Lag behind schedule of the latest command.", &[]),
    ("replay_lag_max_seconds", "Largest lag behind schedule so far.", &[]),
    ("books_commands_total", "The books, live: commands captured, taken by the player, and by fate (replayed with a response, skipped, lost, failed).", &["fate"]),
    ("latency_seconds", "Command latency, prod (captured) and test (replayed), since the start.", &["side"]),
    ("fingerprint_latency_seconds", "Command latency per fingerprint (the top by test total time), prod and test.", &["side", "fingerprint_id", "fingerprint"]),
    ("fingerprint_errors_total", "Error divergence per fingerprint (the top by test total time).", &["fingerprint_id"]),
];

/// The player side: engine counters and the comparison's histograms.
pub struct ReplayCollector {
    engine: Arc<LiveCounters>,
    capture: Option<Arc<LiveStats>>,
    cmp: Arc<Mutex<Comparison>>,
    descs: Vec<Desc>,
}

impl ReplayCollector {
    /// Read `engine` and `cmp` at each scrape; `capture` gives the books their `captured` count
    /// (none when commands come from elsewhere).
    pub fn new(
        engine: Arc<LiveCounters>,
        capture: Option<Arc<LiveStats>>,
        cmp: Arc<Mutex<Comparison>>,
    ) -> Self {
        Self {
            engine,
            capture,
            cmp,
            descs: descs(REPLAY_FAMILIES),
        }
    }
}

fn fingerprint_label(s: &str) -> String {
    if s.len() <= FINGERPRINT_LABEL_MAX {
        return s.to_string();
    }
    let mut cut = FINGERPRINT_LABEL_MAX - 3;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}

impl Collector for ReplayCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let e = self.engine.snapshot();
        let mut f = Families::new(REPLAY_FAMILIES);
        f.counter("replayed_commands_total", e.replayed);
        f.counter("replay_test_errors_total", e.test_errors);
        f.counter("replay_skipped_total", e.skipped);
        f.counter("replay_lost_total", e.lost);
        f.counter("replay_failed_total", e.failed);
        f.counter("replay_reconnects_total", e.reconnects);
        f.counter("replay_deadlock_retries_total", e.deadlock_retries);
        f.counter("replay_sessions_total", e.sessions);
        f.gauge("replay_active_sessions", e.active_sessions as f64);
        f.gauge("replay_connections_open", e.connections_open as f64);
        f.gauge("replay_lag_seconds", e.lag_last_us as f64 / 1e6);
        f.gauge("replay_lag_max_seconds", e.lag_max_us as f64 / 1e6);
        let mut books = Vec::new();
        if let Some(c) = &self.capture {
            books.push(("captured", c.commands.load(Ordering::Relaxed)));
        }
        books.extend([
            ("taken", e.commands_seen),
            ("replayed", e.replayed),
            ("skipped", e.skipped),
            ("lost", e.lost),
            ("failed", e.failed),
        ]);
        f.counters("books_commands_total", "fate", &books);
        let Ok(cmp) = self.cmp.lock() else {
            return f.out;
        };
        let top = cmp.top_by_test_time(TOP_FINGERPRINTS);
        let (prod_sum, test_sum) = cmp.fingerprints().fold((0, 0), |(p, t), x| {
            (p + x.prod_total_us, t + x.test_total_us)
        });
        let (prod, test) = (cmp.prod(), cmp.test());
        f.summaries(
            "latency_seconds",
            vec![
                (labels(&[("side", "prod")]), &prod, prod_sum),
                (labels(&[("side", "test")]), &test, test_sum),
            ],
        );
        let mut series = Vec::new();
        let mut errors = Vec::new();
        let ids: Vec<String> = top.iter().map(|x| format!("{:016X}", x.id)).collect();
        for (x, id) in top.iter().zip(&ids) {
            let text = fingerprint_label(&x.fingerprint);
            for (side, hist, sum) in [
                ("prod", &x.prod, x.prod_total_us),
                ("test", &x.test, x.test_total_us),
            ] {
                let l = labels(&[
                    ("side", side),
                    ("fingerprint_id", id),
                    ("fingerprint", &text),
                ]);
                series.push((l, hist, sum));
            }
            errors.push((id.as_str(), x.errors.total()));
        }
        f.summaries("fingerprint_latency_seconds", series);
        f.counters("fingerprint_errors_total", "fingerprint_id", &errors);
        f.out
    }
}

/// A registry with the given collectors.
pub fn registry(collectors: Vec<Box<dyn Collector>>) -> Result<Registry> {
    let r = Registry::new();
    for c in collectors {
        r.register(c).context("registering metrics")?;
    }
    Ok(r)
}

/// The text exposition of everything in `r`.
pub fn render(r: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&r.gather(), &mut buf) {
        return format!("# mrte: encoding metrics failed: {e}\n");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `--metrics` value: a bare port means 127.0.0.1:PORT.
pub fn listen_addr(addr: &str) -> String {
    if addr.parse::<u16>().is_ok() {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_string()
    }
}

/// Serve `GET /metrics` from `registry` on `addr` (see [`listen_addr`]) on a thread of its own
/// (one current-thread tokio runtime); other paths get 404. Returns the bound address.
pub fn serve(addr: &str, registry: Registry) -> Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Request, Response, StatusCode};

    let addr = listen_addr(addr);
    let std_listener =
        std::net::TcpListener::bind(&addr).with_context(|| format!("--metrics {addr}"))?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            "--metrics {addr} is reachable from other hosts (give a bare port for 127.0.0.1 only)"
        );
    }
    tracing::info!("Prometheus metrics on http://{local}/metrics");
    let registry = Arc::new(registry);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("mrte-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        // Out of descriptors, most likely: let some close.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    };
                    let registry = registry.clone();
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let registry = registry.clone();
                            async move {
                                if req.uri().path() == "/metrics" {
                                    Response::builder()
                                        .header("Content-Type", prometheus::TEXT_FORMAT)
                                        .body(Full::new(Bytes::from(render(&registry))))
                                } else {
                                    Response::builder()
                                        .status(StatusCode::NOT_FOUND)
                                        .body(Full::new(Bytes::from("try /metrics\n")))
                                }
                            }
                        });
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(std::time::Duration::from_secs(5))
                            .serve_connection(io, svc)
                            .await;
                    });
                }
            });
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_binds_loopback_only() {
        assert_eq!(listen_addr("9977"), "127.0.0.1:9977");
        assert_eq!(listen_addr("0.0.0.0:9977"), "0.0.0.0:9977");
        let a = serve("0", registry(Vec::new()).unwrap()).unwrap();
        assert!(a.ip().is_loopback(), "{a}");
    }

    #[test]
    fn fingerprint_labels_are_cut_on_a_character_boundary() {
        let long = "é".repeat(100);
        let l = fingerprint_label(&long);
        assert!(
            l.len() <= FINGERPRINT_LABEL_MAX && l.ends_with("..."),
            "{l}"
        );
        assert_eq!(fingerprint_label("select ?"), "select ?");
    }

    #[test]
    fn capture_counters_render_with_their_reasons() {
        let live = Arc::new(LiveStats::default());
        live.packets.store(7, Ordering::Relaxed);
        live.undecoded_reasons[2].store(40, Ordering::Relaxed);
        let r = registry(vec![Box::new(CaptureCollector::new(live))]).unwrap();
        let text = render(&r);
        assert!(
            text.contains(
                "# TYPE mrte_captured_packets_total counter\nmrte_captured_packets_total 7\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("mrte_undecoded_bytes_by_reason_total{reason=\"tls\"} 40\n"),
            "{text}"
        );
        assert!(
            text.contains("mrte_undecoded_bytes_by_reason_total{reason=\"unsynced\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn collectors_emit_exactly_the_families_they_describe() {
        let spec_names = |spec: &[FamilySpec]| -> Vec<String> {
            let mut v: Vec<String> = spec.iter().map(|s| format!("mrte_{}", s.0)).collect();
            v.sort();
            v
        };
        let names = |fams: Vec<MetricFamily>| -> Vec<String> {
            let mut v: Vec<String> = fams.iter().map(|f| f.name().to_string()).collect();
            v.sort();
            v
        };
        let live = Arc::new(LiveStats::default());
        let c = CaptureCollector::new(live.clone());
        assert_eq!(names(c.collect()), spec_names(CAPTURE_FAMILIES));
        assert_eq!(c.desc().len(), CAPTURE_FAMILIES.len());
        let r = ReplayCollector::new(
            Arc::new(LiveCounters::default()),
            Some(live),
            Arc::new(Mutex::new(Comparison::default())),
        );
        assert_eq!(names(r.collect()), spec_names(REPLAY_FAMILIES));
        assert_eq!(r.desc().len(), REPLAY_FAMILIES.len());
        assert!(r.collect().iter().all(|f| !f.help().is_empty()));
    }
}
