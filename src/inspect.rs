//! `mrte inspect`: decoded commands as text lines, JSON lines, a summary object or a digest table.
//!
//! The [`InspectSink`] consumes session events (straight from the pipeline for files, from the
//! per-session rings for live capture) and renders them; it does no decoding of its own.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use hdrhistogram::Histogram;
use mrte_capture::event::{
    Command, CommandRecord, EventSink, Param, ResponseStatus, SessionEvent, SessionId, Value,
};
use mrte_capture::fingerprint::{fingerprint_id, Fingerprinter};
use mrte_capture::ring::RingStats;
use mrte_capture::stats::Stats;
use serde::Serialize;
use serde_json::{json, Map};

/// Output format of `mrte inspect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per command.
    Text,
    /// One JSON object per command.
    Jsonl,
    /// One JSON object with counters.
    Summary,
    /// pt-query-digest-style table per fingerprint.
    Digest,
}

#[derive(Default)]
struct SessionView {
    client: Arc<str>,
    server: Arc<str>,
    midstream: bool,
    user: Option<Arc<str>>,
    db: Option<Arc<str>>,
    prepared: HashMap<u32, Arc<[u8]>>,
}

struct DigestRow {
    fingerprint: String,
    count: u64,
    total_us: u64,
    rows: u64,
    errors: u64,
    hist: Histogram<u64>,
}

/// Renders session events in one of the [`Format`]s.
pub struct InspectSink<W: Write> {
    format: Format,
    out: W,
    sessions: HashMap<SessionId, SessionView>,
    digest: HashMap<u64, DigestRow>,
    fp: Fingerprinter,
    line: Vec<u8>,
    io_error: Option<io::Error>,
    no_addr: Arc<str>,
}

impl<W: Write> InspectSink<W> {
    /// A sink writing `format` to `out`.
    pub fn new(format: Format, out: W) -> Self {
        Self {
            format,
            out,
            sessions: HashMap::new(),
            digest: HashMap::new(),
            fp: Fingerprinter::default(),
            line: Vec::with_capacity(4096),
            io_error: None,
            no_addr: Arc::from(""),
        }
    }

    /// Write the end-of-run output (summary object or digest table) and flush.
    pub fn finish(mut self, stats: &Stats, ring: Option<RingStats>) -> io::Result<()> {
        match self.format {
            Format::Summary => {
                let v = summary_json(stats, ring);
                serde_json::to_writer_pretty(&mut self.out, &v)?;
                writeln!(self.out)?;
            }
            Format::Digest => self.write_digest(stats)?,
            Format::Text | Format::Jsonl => {}
        }
        self.out.flush()?;
        match self.io_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn write_digest(&mut self, stats: &Stats) -> io::Result<()> {
        let mut rows: Vec<&DigestRow> = self.digest.values().collect();
        rows.sort_by(|a, b| {
            b.total_us
                .cmp(&a.total_us)
                .then(b.count.cmp(&a.count))
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        let total: u64 = rows.iter().map(|r| r.total_us).sum();
        writeln!(
            self.out,
            "# {} commands, {} sessions, {} fingerprints; prod latency in ms (request last packet -> response last packet)",
            stats.commands.total(),
            stats.sessions,
            rows.len()
        )?;
        writeln!(
            self.out,
            "{:>4} {:>18} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>6}  fingerprint",
            "rank", "query_id", "count", "%time", "total_ms", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "rows", "errs"
        )?;
        for (i, r) in rows.iter().enumerate() {
            let ms = |us: u64| us as f64 / 1000.0;
            let pct = if total == 0 {
                0.0
            } else {
                r.total_us as f64 * 100.0 / total as f64
            };
            let avg = r.total_us.checked_div(r.count).unwrap_or(0);
            let mut fp = r.fingerprint.clone();
            if fp.len() > 120 {
                let mut cut = 117;
                while !fp.is_char_boundary(cut) {
                    cut -= 1;
                }
                fp.truncate(cut);
                fp.push_str("...");
            }
            writeln!(
                self.out,
                "{:>4} 0x{:016X} {:>9} {:>5.1}% {:>10.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>10} {:>6}  {}",
                i + 1,
                digest_key_id(r),
                r.count,
                pct,
                ms(r.total_us),
                ms(avg),
                ms(r.hist.value_at_quantile(0.50)),
                ms(r.hist.value_at_quantile(0.95)),
                ms(r.hist.value_at_quantile(0.99)),
                ms(r.hist.max()),
                r.rows,
                r.errors,
                fp
            )?;
        }
        Ok(())
    }

    fn on_command(&mut self, id: SessionId, rec: &CommandRecord) {
        if self.format == Format::Summary {
            return;
        }
        let Some(sess) = self.sessions.get_mut(&id) else {
            return;
        };
        if let (Command::StmtPrepare { sql }, Some(ok)) = (&rec.command, &rec.response.prepare_ok) {
            sess.prepared.insert(ok.stmt_id, Arc::from(&sql[..]));
        }
        if let Some(db) = &rec.db {
            sess.db = Some(db.clone());
        }
        if let Some(u) = &rec.user {
            sess.user = Some(u.clone());
        }
        let stmt_sql: Option<Arc<[u8]>> = match &rec.command {
            Command::StmtExecute { stmt_id, .. }
            | Command::StmtReset { stmt_id }
            | Command::StmtFetch { stmt_id, .. }
            | Command::StmtSendLongData { stmt_id, .. } => sess.prepared.get(stmt_id).cloned(),
            Command::StmtClose { stmt_id } => sess.prepared.remove(stmt_id),
            _ => None,
        };
        let sql: Option<&[u8]> = rec.command.sql().or(stmt_sql.as_deref());
        match self.format {
            Format::Summary => {}
            Format::Digest => {
                let fp = match sql {
                    Some(s) => self.fp.fingerprint(s).to_owned(),
                    None => format!(
                        "administrator command: {}",
                        mrte_capture::event::admin_command_name(rec.command.code())
                    ),
                };
                let key = fingerprint_id(&fp);
                let row = self.digest.entry(key).or_insert_with(|| DigestRow {
                    fingerprint: fp,
                    count: 0,
                    total_us: 0,
                    rows: 0,
                    errors: 0,
                    hist: Histogram::new(3).expect("3 significant digits is valid"),
                });
                row.count += 1;
                row.rows += rec.response.rows;
                if rec.response.status == ResponseStatus::Err {
                    row.errors += 1;
                }
                if let Some(us) = rec.prod_us() {
                    row.total_us += us;
                    let _ = row.hist.record(us.max(1));
                }
            }
            Format::Jsonl => {
                let fp = sql.map(|s| self.fp.fingerprint(s).to_owned());
                let line = command_json(sess, rec, sql, fp.as_deref());
                self.line.clear();
                if serde_json::to_writer(&mut self.line, &line).is_ok() {
                    self.line.push(b'\n');
                    let r = self.out.write_all(&self.line);
                    self.note(r);
                }
            }
            Format::Text => {
                let status = match rec.response.status {
                    ResponseStatus::Ok => "ok".to_string(),
                    ResponseStatus::Err => format!("ERR {}", rec.response.error_code.unwrap_or(0)),
                    ResponseStatus::None => "-".to_string(),
                };
                let prod = rec
                    .prod_us()
                    .map(|u| format!("{:.3}ms", u as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into());
                let detail = text_detail(&rec.command, &rec.raw, sql);
                let r = writeln!(
                    self.out,
                    "{} {} #{} {} {} [{} rows={} affected={} {}]{}{}",
                    fmt_ts(rec.ts_us),
                    sess.client,
                    rec.seq,
                    rec.command.name(),
                    detail,
                    status,
                    rec.response.rows,
                    rec.response.affected,
                    prod,
                    if rec.flags.midstream {
                        " midstream"
                    } else {
                        ""
                    },
                    if rec.flags.after_gap {
                        " after_gap"
                    } else {
                        ""
                    },
                );
                self.note(r);
            }
        }
    }

    fn note(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            if self.io_error.is_none() {
                self.io_error = Some(e);
            }
        }
    }
}

/// Decoding threads for a capture file in `format`, `asked` by `--threads` (0: automatic): one
/// unless the output is an aggregate whose value does not depend on the order of events across
/// sessions (the summary), and fewer than two sessions per thread would be allowed.
pub fn file_threads(format: Format, asked: u32, max_sessions: usize) -> u32 {
    if format != Format::Summary {
        return 1;
    }
    let n = match asked {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32),
        n => n.min(64),
    };
    if max_sessions < 2 * n as usize {
        return 1;
    }
    n
}

/// A sink that drops every event (a sharded summary needs only the counters).
pub struct Discard;

impl EventSink for Discard {
    #[inline]
    fn push(&mut self, _: SessionId, _: SessionEvent) {}
}

fn digest_key_id(r: &DigestRow) -> u64 {
    fingerprint_id(&r.fingerprint)
}

impl<W: Write> EventSink for InspectSink<W> {
    fn push(&mut self, id: SessionId, event: SessionEvent) {
        match event {
            // The summary needs no per-session state; the digest no addresses.
            SessionEvent::Open(_) if self.format == Format::Summary => {}
            SessionEvent::Open(o) => {
                let (client, server) = match self.format {
                    Format::Text | Format::Jsonl => (
                        Arc::from(o.key.client.to_string()),
                        Arc::from(o.key.server.to_string()),
                    ),
                    Format::Summary | Format::Digest => {
                        (self.no_addr.clone(), self.no_addr.clone())
                    }
                };
                self.sessions.insert(
                    id,
                    SessionView {
                        client,
                        server,
                        midstream: o.midstream,
                        ..SessionView::default()
                    },
                );
            }
            SessionEvent::Login(l) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.user = l.user.as_deref().map(Arc::from);
                    s.db = l.db.as_deref().map(Arc::from);
                    if self.format == Format::Text {
                        let r = writeln!(
                            self.out,
                            "{} {} LOGIN user={} db={} tls={} compressed={} ok={}{}",
                            fmt_ts(l.ts_us),
                            s.client,
                            l.user.as_deref().unwrap_or("?"),
                            l.db.as_deref().unwrap_or("-"),
                            l.tls,
                            l.compressed,
                            l.ok,
                            if s.midstream { " midstream" } else { "" }
                        );
                        self.note(r);
                    }
                }
            }
            SessionEvent::Command(rec) => self.on_command(id, &rec),
            SessionEvent::Close(c) => {
                if let Some(s) = self.sessions.remove(&id) {
                    if self.format == Format::Text {
                        let r = writeln!(
                            self.out,
                            "{} {} CLOSE {:?}",
                            fmt_ts(c.ts_us),
                            s.client,
                            c.reason
                        );
                        self.note(r);
                    }
                }
            }
        }
    }
}

fn fmt_ts(ts_us: u64) -> String {
    let secs = ts_us / 1_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:06}", ts_us % 1_000_000)
}

fn text_detail(cmd: &Command, raw: &[u8], sql: Option<&[u8]>) -> String {
    let mut s = match cmd {
        Command::Query { sql, .. } | Command::StmtPrepare { sql } => {
            String::from_utf8_lossy(sql).into_owned()
        }
        Command::StmtExecute {
            stmt_id, params, ..
        } => {
            let p: Vec<String> = params.decode(raw).iter().map(param_text).collect();
            format!(
                "stmt={stmt_id} ({}) [{}]",
                sql.map(String::from_utf8_lossy).unwrap_or_default(),
                p.join(", ")
            )
        }
        Command::InitDb { schema } => schema.clone(),
        Command::ChangeUser { user, db, .. } => {
            format!("user={user} db={}", db.as_deref().unwrap_or("-"))
        }
        Command::StmtClose { stmt_id } | Command::StmtReset { stmt_id } => {
            format!("stmt={stmt_id}")
        }
        Command::Unknown { code, len } => format!("code=0x{code:02x} len={len}"),
        Command::Other { code } => format!("code=0x{code:02x}"),
        other => format!("{other:?}"),
    };
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = s.len();
        s.truncate(cut);
        s.push_str(&format!("... ({total} bytes)"));
    }
    s.replace('\n', " ")
}

fn param_text(p: &Param) -> String {
    match &p.value {
        Value::Null => "NULL".into(),
        Value::Int(v) => v.to_string(),
        Value::UInt(v) => v.to_string(),
        Value::Float(v) => v.to_string(),
        Value::Double(v) => v.to_string(),
        Value::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b)),
        v => value_json(v).to_string(),
    }
}

/// A parameter value as JSON (strings as UTF-8 text when valid, else `{"hex": ...}`).
pub fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Double(d) => json!(d),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => json!({ "hex": hex(b) }),
        },
        Value::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => json!(format!(
            "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{micros:06}"
        )),
        Value::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            let h = u64::from(*days) * 24 + u64::from(*hours);
            json!(format!(
                "{}{h:02}:{minutes:02}:{seconds:02}.{micros:06}",
                if *negative { "-" } else { "" }
            ))
        }
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

#[derive(Serialize)]
struct JsonParam {
    #[serde(rename = "type")]
    column_type: u8,
    unsigned: bool,
    value: serde_json::Value,
}

fn command_json(
    sess: &SessionView,
    rec: &CommandRecord,
    sql: Option<&[u8]>,
    fp: Option<&str>,
) -> serde_json::Value {
    let mut m = Map::new();
    m.insert("ts_us".into(), json!(rec.ts_us));
    m.insert("session".into(), json!(&*sess.client));
    m.insert("server".into(), json!(&*sess.server));
    m.insert("seq".into(), json!(rec.seq));
    m.insert("cmd".into(), json!(rec.command.name()));
    if let Some(s) = sql {
        m.insert("sql".into(), json!(String::from_utf8_lossy(s)));
    }
    if let Some(fp) = fp {
        m.insert("fingerprint".into(), json!(fp));
        m.insert(
            "fingerprint_id".into(),
            json!(format!("{:016X}", fingerprint_id(fp))),
        );
    }
    match &rec.command {
        Command::StmtExecute {
            stmt_id,
            params,
            params_unknown,
            ..
        } => {
            m.insert("stmt_id".into(), json!(stmt_id));
            let ps: Vec<JsonParam> = params
                .decode(&rec.raw)
                .iter()
                .map(|p| JsonParam {
                    column_type: p.column_type,
                    unsigned: p.unsigned,
                    value: value_json(&p.value),
                })
                .collect();
            m.insert("params".into(), json!(ps));
            if *params_unknown {
                m.insert("params_unknown".into(), json!(true));
            }
        }
        Command::StmtClose { stmt_id }
        | Command::StmtReset { stmt_id }
        | Command::StmtFetch { stmt_id, .. }
        | Command::StmtSendLongData { stmt_id, .. } => {
            m.insert("stmt_id".into(), json!(stmt_id));
        }
        Command::InitDb { schema } => {
            m.insert("schema".into(), json!(schema));
        }
        Command::ChangeUser { user, db, .. } => {
            m.insert("new_user".into(), json!(user));
            m.insert("new_db".into(), json!(db));
        }
        Command::Unknown { code, len } => {
            m.insert("code".into(), json!(code));
            m.insert("len".into(), json!(len));
        }
        Command::Other { code } => {
            m.insert("code".into(), json!(code));
        }
        Command::Query { attributes, .. } if !attributes.is_empty() => {
            let a: Map<String, serde_json::Value> = attributes
                .iter()
                .map(|(k, v)| (k.clone(), value_json(v)))
                .collect();
            m.insert("attributes".into(), serde_json::Value::Object(a));
        }
        _ => {}
    }
    if let Some(ok) = &rec.response.prepare_ok {
        m.insert("prepared_stmt_id".into(), json!(ok.stmt_id));
        m.insert("num_params".into(), json!(ok.num_params));
    }
    m.insert("db".into(), json!(rec.db.as_deref().or(sess.db.as_deref())));
    m.insert(
        "user".into(),
        json!(rec.user.as_deref().or(sess.user.as_deref())),
    );
    let r = &rec.response;
    m.insert("status".into(), json!(r.status));
    m.insert("error_code".into(), json!(r.error_code));
    if let Some(msg) = &r.error_message {
        m.insert("error".into(), json!(msg));
    }
    m.insert("rows".into(), json!(r.rows));
    m.insert("affected".into(), json!(r.affected));
    if r.result_sets > 1 {
        m.insert("result_sets".into(), json!(r.result_sets));
    }
    if let Some(c) = &r.checksum {
        m.insert(
            "checksum".into(),
            json!({
                "rows_ordered": format!("{:016x}", c.rows_ordered),
                "rows_unordered": format!("{:016x}", c.rows_unordered),
                "columns": format!("{:016x}", c.columns),
            }),
        );
    }
    m.insert("prod_us".into(), json!(rec.prod_us()));
    m.insert("first_byte_us".into(), json!(rec.first_byte_latency_us()));
    let f = &rec.flags;
    for (k, v) in [
        ("midstream", f.midstream),
        ("after_gap", f.after_gap),
        ("too_large", f.too_large),
        ("response_incomplete", f.response_incomplete),
    ] {
        if v {
            m.insert(k.into(), json!(true));
        }
    }
    serde_json::Value::Object(m)
}

/// The `--format summary` object.
pub fn summary_json(stats: &Stats, ring: Option<RingStats>) -> serde_json::Value {
    let mut v = serde_json::to_value(stats).unwrap_or_else(|_| json!({}));
    let commands: Map<String, serde_json::Value> = stats
        .commands
        .named()
        .into_iter()
        .map(|(k, n)| (k.to_string(), json!(n)))
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("commands".into(), serde_json::Value::Object(commands));
        o.insert("commands_total".into(), json!(stats.commands.total()));
        if let Some(r) = ring {
            o.insert("ring".into(), json!(r));
        }
    }
    v
}
