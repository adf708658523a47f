//! Result checksums, compared: which statements can return the same rows on prod and test
//! ([`comparability`]), how one prod/test response pair compares ([`classify`]), and the
//! per-fingerprint counts with bounded samples ([`ResultDivergence`]).
//!
//! Both sides are [`ResultSide`]s: what a [`Response`] of the shared response reader
//! (`mrte_capture::mysql::response`) says of its result sets, with the [`ResultChecksum`] it
//! computed: the capture on prod's packets, the replay connection on test's. This module does not read packets, replay or format reports; responses
//! without result sets or with errors are left to [`crate::compare`] ("not checked" here).

use mrte_capture::event::{Response, ResponseStatus, ResultChecksum};
use mrte_capture::fingerprint::Fingerprinter;
use serde::Serialize;

/// Samples kept per fingerprint and class.
pub const MAX_SAMPLES: usize = 3;
/// Bytes of SQL kept in a sample.
pub const SAMPLE_SQL_BYTES: usize = 300;

/// Whether a statement's result can be expected to be the same on two servers holding the same
/// data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparability {
    /// Same data, same rows.
    Comparable,
    /// The result depends on time, randomness, the server or the plan; the reason in words.
    NotComparable(&'static str),
}

/// Functions whose value differs per call, per server or per session (after a word boundary,
/// followed by `(`). `true`: only without arguments.
const FUNCTIONS: &[(&str, bool, &str)] = &[
    ("now", false, "now()"),
    ("sysdate", false, "sysdate()"),
    ("current_timestamp", false, "current_timestamp"),
    ("current_date", false, "current_date"),
    ("current_time", false, "current_time"),
    ("localtime", false, "localtime"),
    ("localtimestamp", false, "localtimestamp"),
    ("curdate", false, "curdate()"),
    ("curtime", false, "curtime()"),
    ("utc_date", false, "utc_date()"),
    ("utc_time", false, "utc_time()"),
    ("utc_timestamp", false, "utc_timestamp()"),
    ("unix_timestamp", true, "unix_timestamp()"),
    ("rand", true, "rand()"),
    ("uuid", false, "uuid()"),
    ("uuid_short", false, "uuid_short()"),
    ("sys_guid", false, "sys_guid()"),
    ("connection_id", false, "connection_id()"),
    ("last_insert_id", false, "last_insert_id()"),
    ("user", false, "user()"),
    ("current_user", false, "current_user"),
    ("session_user", false, "session_user()"),
    ("system_user", false, "system_user()"),
    ("current_role", false, "current_role"),
    ("database", false, "database()"),
    ("schema", false, "database()"),
    ("version", false, "version()"),
];

/// Keywords that are the value without parentheses.
const BARE: &[&str] = &[
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "utc_date",
    "utc_time",
    "utc_timestamp",
    "current_user",
    "current_role",
];

/// System variables whose value differs per server or per connection (`@@[scope.]name`;
/// a trailing `*` matches a prefix).
const SYSVARS: &[&str] = &[
    "hostname",
    "server_id",
    "server_uuid",
    "pseudo_thread_id",
    "port",
    "socket",
    "datadir",
    "basedir",
    "tmpdir",
    "pid_file",
    "log_error",
    "general_log_file",
    "slow_query_log_file",
    "report_host",
    "timestamp",
    "identity",
    "last_insert_id",
    "insert_id",
    "rand_seed1",
    "rand_seed2",
    "version*",
    "gtid_*",
    "wsrep_*",
    "max_allowed_packet",
    "max_connections",
    "system_time_zone",
    "time_zone",
    "auto_increment_*",
    "innodb_*",
    "character_set_server",
    "collation_server",
    "lower_case_table_names",
    "wait_timeout",
    "interactive_timeout",
    "net_*",
];

/// `SHOW` statements whose output depends on the server's state (second word, or third after
/// `global` / `session` / `full`).
const SHOW: &[&str] = &[
    "status",
    "processlist",
    "variables",
    "engine",
    "engines",
    "innodb",
    "master",
    "slave",
    "replica",
    "binary",
    "binlog",
    "table",
    "index",
    "indexes",
    "keys",
    "open",
    "profile",
    "profiles",
    "grants",
    "all",
];

/// `information_schema` tables whose rows depend on the server's state (`*` matches a prefix,
/// a leading `*` a suffix).
const IS_TABLES: &[&str] = &[
    "processlist",
    "global_status",
    "session_status",
    "global_variables",
    "session_variables",
    "tables",
    "statistics",
    "partitions",
    "innodb_*",
    "*_statistics",
    "metadata_lock_info",
    "thread_pool_*",
    "user_privileges",
];

fn matches_pattern(name: &str, pats: &[&str]) -> bool {
    pats.iter().any(|p| {
        if let Some(pre) = p.strip_suffix('*') {
            name.starts_with(pre)
        } else if let Some(suf) = p.strip_prefix('*') {
            name.ends_with(suf)
        } else {
            name == *p
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    /// A `quoted` identifier.
    Ident(&'a str),
    SysVar(&'a str),
    Open,
    Close,
    Dot,
    Other,
}

/// Tokens of a fingerprint (lowercase, literals already `?`, comments gone): words, quoted
/// identifiers, `@@` variables, parentheses, dots.
fn tokens(fp: &str) -> Vec<Tok<'_>> {
    let b = fp.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Bytes >= 0x80 are word bytes, so words start and end on character boundaries.
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        let s = i;
        if c == b'`' {
            i += 1;
            while i < b.len() && b[i] != b'`' {
                i += 1;
            }
            out.push(Tok::Ident(&fp[s + 1..i]));
            i += 1;
        } else if c == b'@' && b.get(i + 1) == Some(&b'@') {
            i += 2;
            while i < b.len() && (word(b[i]) || b[i] == b'.' || b[i] == b'`') {
                i += 1;
            }
            let name = &fp[s + 2..i];
            let name = ["global.", "session.", "local."]
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .unwrap_or(name);
            out.push(Tok::SysVar(name.trim_matches('`')));
        } else if word(c) {
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            out.push(Tok::Word(&fp[s..i]));
        } else {
            i += 1;
            out.push(match c {
                b'(' => Tok::Open,
                b')' => Tok::Close,
                b'.' => Tok::Dot,
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                _ => Tok::Other,
            });
        }
    }
    out
}

/// The [`Comparability`] of a statement (its text as sent, or the PREPARE text of a prepared
/// statement); any bytes. `fp` is a reusable fingerprinter.
pub fn comparability_with(fp: &mut Fingerprinter, sql: &[u8]) -> Comparability {
    judge(fp.fingerprint(sql))
}

/// [`comparability_with`] with a fresh fingerprinter.
pub fn comparability(sql: &[u8]) -> Comparability {
    comparability_with(&mut Fingerprinter::default(), sql)
}

/// The comparability of a fingerprint.
pub fn judge(fp: &str) -> Comparability {
    use Comparability::NotComparable as No;
    let t = tokens(fp);
    let word = |k: usize| match t.get(k) {
        Some(Tok::Word(w)) => Some(*w),
        _ => None,
    };
    // SHOW statements.
    if word(0) == Some("show") {
        let mut k = 1;
        while matches!(word(k), Some("global" | "session" | "full" | "extended")) {
            k += 1;
        }
        if word(k).is_some_and(|w| SHOW.contains(&w)) {
            return No("show of server state");
        }
    }
    // Per paren depth: ORDER BY seen in the current query block.
    let mut order_by: Vec<bool> = vec![false];
    // Depth at which a GROUP_CONCAT's parentheses opened, and whether it has ORDER BY.
    let mut group_concat: Vec<(usize, bool)> = Vec::new();
    for (k, tok) in t.iter().enumerate() {
        match *tok {
            Tok::Open => order_by.push(false),
            Tok::Close => {
                let depth = order_by.len();
                if group_concat.last().is_some_and(|g| g.0 == depth)
                    && !group_concat.pop().is_some_and(|g| g.1)
                {
                    return No("group_concat() without order by");
                }
                if order_by.len() > 1 {
                    order_by.pop();
                }
            }
            Tok::SysVar(name) => {
                if matches_pattern(name, SYSVARS) {
                    return No("@@variable that differs per server or connection");
                }
            }
            Tok::Word(w) => {
                let open = t.get(k + 1) == Some(&Tok::Open);
                let no_args = open && t.get(k + 2) == Some(&Tok::Close);
                let qualified = k > 0 && t[k - 1] == Tok::Dot;
                let func = FUNCTIONS.iter().find(|f| f.0 == w).filter(|_| !qualified);
                if let Some(&(_, only_no_args, what)) = func {
                    let bare = !open && BARE.contains(&w);
                    if (open && (!only_no_args || no_args)) || bare {
                        return No(what);
                    }
                }
                match w {
                    "order" if word(k + 1) == Some("by") => {
                        if let Some(o) = order_by.last_mut() {
                            *o = true;
                        }
                        if let Some(g) = group_concat.last_mut() {
                            if g.0 == order_by.len() {
                                g.1 = true;
                            }
                        }
                    }
                    "union" | "intersect" | "except" => {
                        if let Some(o) = order_by.last_mut() {
                            *o = false;
                        }
                    }
                    "limit" if !order_by.last().copied().unwrap_or(false) => {
                        return No("limit without order by");
                    }
                    "group_concat" if open => group_concat.push((order_by.len() + 1, false)),
                    "skip" if word(k + 1) == Some("locked") => {
                        return No("skip locked");
                    }
                    _ => {}
                }
            }
            Tok::Ident(_) | Tok::Dot | Tok::Other => {}
        }
        if let Some(why) = schema_of_state(&t, k) {
            return No(why);
        }
    }
    Comparability::Comparable
}

fn name<'a>(t: Option<&Tok<'a>>) -> Option<&'a str> {
    match t {
        Some(Tok::Word(w) | Tok::Ident(w)) => Some(w),
        _ => None,
    }
}

/// A reference at token `k` to tables of server state.
fn schema_of_state(t: &[Tok<'_>], k: usize) -> Option<&'static str> {
    let dotted = t.get(k + 1) == Some(&Tok::Dot);
    match name(t.get(k))? {
        "performance_schema" => Some("performance_schema"),
        "sys" if dotted => Some("sys schema"),
        "information_schema" if dotted => name(t.get(k + 2))
            .filter(|table| matches_pattern(table, IS_TABLES))
            .map(|_| "information_schema table of server state"),
        _ => None,
    }
}

/// How the results of one prod/test response pair compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultClass {
    /// A side has no result set or erred (errors are compared in [`crate::compare`]).
    NotChecked,
    /// Same columns, same rows, same order.
    Match,
    /// Different rows (or row counts).
    Mismatch,
    /// The same rows in another order.
    OrderOnly,
    /// Column definitions differ (names, types, flags, character set, decimals).
    MetadataMismatch,
    /// Results could not be expected to match ([`Comparability`]).
    NotComparable(&'static str),
}

/// One side's result sets, as the shared response reader summed them up (a [`Response`], or
/// the same fields of the replay connection's reply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResultSide {
    /// Ok / Err / None.
    pub status: ResponseStatus,
    /// Rows over all result sets.
    pub rows: u64,
    /// Result sets.
    pub result_sets: u32,
    /// The reader's checksum (present when there were result sets).
    pub checksum: Option<ResultChecksum>,
}

impl From<&Response> for ResultSide {
    fn from(r: &Response) -> Self {
        Self {
            status: r.status,
            rows: r.rows,
            result_sets: r.result_sets,
            checksum: r.checksum,
        }
    }
}

impl ResultSide {
    /// The checksum, when the side answered OK with at least one result set.
    fn compared(&self) -> Option<ResultChecksum> {
        if self.status == ResponseStatus::Ok && self.result_sets > 0 {
            self.checksum
        } else {
            None
        }
    }
}

/// Compare prod's and test's result sets, given the statement's comparability.
pub fn classify(c: Comparability, prod: ResultSide, test: ResultSide) -> ResultClass {
    let (Some(p), Some(t)) = (prod.compared(), test.compared()) else {
        return ResultClass::NotChecked;
    };
    if let Comparability::NotComparable(why) = c {
        return ResultClass::NotComparable(why);
    }
    let unknown = mrte_capture::event::ResultChecksum::COLUMNS_UNKNOWN;
    let columns_differ = p.columns != t.columns && p.columns != unknown && t.columns != unknown;
    if columns_differ || prod.result_sets != test.result_sets {
        ResultClass::MetadataMismatch
    } else if p.rows_unordered != t.rows_unordered || prod.rows != test.rows {
        ResultClass::Mismatch
    } else if p.rows_ordered != t.rows_ordered {
        ResultClass::OrderOnly
    } else {
        ResultClass::Match
    }
}

/// Counts of compared results: the `results` object of the JSON report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResultCounts {
    /// Pairs compared by checksum (match + mismatch + order_only + metadata_mismatch).
    pub compared: u64,
    /// Different rows.
    pub mismatch: u64,
    /// Same rows, another order.
    pub order_only: u64,
    /// Different column definitions.
    pub metadata_mismatch: u64,
    /// Both sides had result sets but the statement is not comparable.
    pub not_comparable: u64,
}

impl ResultCounts {
    /// Add one class (NotChecked adds nothing).
    pub fn add(&mut self, c: ResultClass) {
        match c {
            ResultClass::NotChecked => return,
            ResultClass::NotComparable(_) => {
                self.not_comparable += 1;
                return;
            }
            ResultClass::Match => {}
            ResultClass::Mismatch => self.mismatch += 1,
            ResultClass::OrderOnly => self.order_only += 1,
            ResultClass::MetadataMismatch => self.metadata_mismatch += 1,
        }
        self.compared += 1;
    }

    /// mismatch + order_only + metadata_mismatch.
    pub fn diverged(&self) -> u64 {
        self.mismatch + self.order_only + self.metadata_mismatch
    }

    /// The text report's summary line.
    pub fn summary_line(&self) -> String {
        format!(
            "results: compared {}  mismatch {}  order_only {}  metadata_mismatch {}  not comparable {}\n",
            self.compared, self.mismatch, self.order_only, self.metadata_mismatch, self.not_comparable
        )
    }
}

/// The text report's "result divergence" section from (id, fingerprint, counts, samples) of
/// each fingerprint: those with diverging results, most first (at most 20, 3 samples each);
/// empty when none diverged.
pub fn divergence_text<'a>(
    fps: impl Iterator<Item = (&'a str, &'a str, &'a ResultCounts, &'a [ResultSample])>,
) -> String {
    use std::fmt::Write as _;
    let mut div: Vec<_> = fps.filter(|f| f.2.diverged() > 0).collect();
    let mut s = String::new();
    if div.is_empty() {
        return s;
    }
    div.sort_by(|a, b| b.2.diverged().cmp(&a.2.diverged()).then(a.0.cmp(b.0)));
    s.push_str("\nresult divergence (diverged of compared: mismatch / order only / metadata)\n");
    for (id, fp, r, samples) in div.into_iter().take(20) {
        let _ = writeln!(
            s,
            "  [{id}] {} of {}: {} / {} / {}  {fp}",
            r.diverged(),
            r.compared,
            r.mismatch,
            r.order_only,
            r.metadata_mismatch
        );
        for x in samples.iter().take(3) {
            let (p, t) = (&x.prod, &x.test);
            let _ = writeln!(
                s,
                "    {:<17} prod rows {} hash {}/{} cols {}\n    {:<17} test rows {} hash {}/{} cols {}\n    {:<17} {}",
                x.kind, p.rows, p.ordered, p.unordered, p.columns,
                "", t.rows, t.ordered, t.unordered, t.columns,
                "", x.sql.chars().take(120).collect::<String>()
            );
        }
    }
    s
}

/// Hashes of one side, hex (64-bit values do not survive JSON numbers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideSample {
    /// Rows returned (all result sets).
    pub rows: u64,
    /// Ordered row hash.
    pub ordered: String,
    /// Order-free row hash.
    pub unordered: String,
    /// Column definitions hash.
    pub columns: String,
}

impl SideSample {
    fn of(r: &ResultSide) -> Self {
        let c = r.checksum.unwrap_or_default();
        Self {
            rows: r.rows,
            ordered: format!("{:016x}", c.rows_ordered),
            unordered: format!("{:016x}", c.rows_unordered),
            columns: format!("{:016x}", c.columns),
        }
    }
}

/// One diverging result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultSample {
    /// `mismatch`, `order_only` or `metadata_mismatch`.
    pub kind: &'static str,
    /// The statement, cut at [`SAMPLE_SQL_BYTES`] (lossy UTF-8).
    pub sql: String,
    /// Prod side.
    pub prod: SideSample,
    /// Test side.
    pub test: SideSample,
}

/// One fingerprint's result comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FingerprintResults {
    /// Counts.
    pub counts: ResultCounts,
    /// Why the statement is not comparable, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_comparable_reason: Option<&'static str>,
    /// Up to [`MAX_SAMPLES`] samples per kind.
    pub samples: Vec<ResultSample>,
    #[serde(skip)]
    pub(crate) comparability: Option<Comparability>,
}

/// Result comparison of all replayed traffic, per fingerprint id.
#[derive(Debug, Default)]
pub struct ResultDivergence {
    /// Overall counts.
    pub counts: ResultCounts,
    pub(crate) fps: rustc_hash::FxHashMap<u64, FingerprintResults>,
    fingerprinter: Fingerprinter,
}

fn cut(sql: &[u8]) -> String {
    let s = String::from_utf8_lossy(&sql[..sql.len().min(SAMPLE_SQL_BYTES)]);
    let mut s = s.into_owned();
    // A multi-byte character cut in two shows as U+FFFD at the end: fine, but drop it.
    if sql.len() > SAMPLE_SQL_BYTES {
        if s.ends_with('\u{fffd}') {
            s.pop();
        }
        s.push('…');
    }
    s
}

/// What comparability is judged on.
enum Judge<'a> {
    Sql(&'a [u8]),
    Fingerprint(&'a str),
}

impl ResultDivergence {
    /// Record one prod/test pair of fingerprint `fp_id`; `sql` is the statement text (the
    /// PREPARE text for an EXECUTE). Comparability is judged once per fingerprint id. Returns
    /// the class.
    pub fn record(
        &mut self,
        fp_id: u64,
        sql: &[u8],
        prod: ResultSide,
        test: ResultSide,
    ) -> ResultClass {
        self.record_judged(fp_id, Judge::Sql(sql), sql, prod, test)
    }

    /// [`ResultDivergence::record`] for a caller that has the statement's fingerprint (as
    /// [`Fingerprinter`] makes it) and a sample of the statement (kept in samples).
    pub fn record_fingerprint(
        &mut self,
        fp_id: u64,
        fingerprint: &str,
        sample: &[u8],
        prod: ResultSide,
        test: ResultSide,
    ) -> ResultClass {
        self.record_judged(fp_id, Judge::Fingerprint(fingerprint), sample, prod, test)
    }

    fn record_judged(
        &mut self,
        fp_id: u64,
        on: Judge<'_>,
        sql: &[u8],
        prod: ResultSide,
        test: ResultSide,
    ) -> ResultClass {
        // Cheap exit before any hashing or allocation.
        if prod.compared().is_none() || test.compared().is_none() {
            return ResultClass::NotChecked;
        }
        let entry = self.fps.entry(fp_id).or_default();
        let comp = *entry.comparability.get_or_insert_with(|| match on {
            Judge::Sql(sql) => comparability_with(&mut self.fingerprinter, sql),
            Judge::Fingerprint(fp) => judge(fp),
        });
        if let Comparability::NotComparable(why) = comp {
            entry.not_comparable_reason = Some(why);
        }
        let class = classify(comp, prod, test);
        entry.counts.add(class);
        self.counts.add(class);
        let kind = match class {
            ResultClass::Mismatch => "mismatch",
            ResultClass::OrderOnly => "order_only",
            ResultClass::MetadataMismatch => "metadata_mismatch",
            _ => return class,
        };
        if entry.samples.iter().filter(|s| s.kind == kind).count() < MAX_SAMPLES {
            entry.samples.push(ResultSample {
                kind,
                sql: cut(sql),
                prod: SideSample::of(&prod),
                test: SideSample::of(&test),
            });
        }
        class
    }

    /// The results of fingerprint `fp_id`, if any pair had result sets on both sides.
    pub fn fingerprint(&self, fp_id: u64) -> Option<&FingerprintResults> {
        self.fps.get(&fp_id)
    }

    /// Fingerprint ids with diverging results, most divergences first.
    pub fn diverging(&self) -> Vec<(u64, &FingerprintResults)> {
        let mut v: Vec<_> = self
            .fps
            .iter()
            .filter(|(_, f)| f.counts.diverged() > 0)
            .map(|(k, f)| (*k, f))
            .collect();
        v.sort_by(|a, b| {
            b.1.counts
                .diverged()
                .cmp(&a.1.counts.diverged())
                .then(a.0.cmp(&b.0))
        });
        v
    }
}

#[cfg(test)]
#[path = "results_tests.rs"]
mod tests;
