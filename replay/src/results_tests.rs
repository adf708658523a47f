use super::*;
use mrte_capture::mysql::caps;
use mrte_capture::mysql::response::{Expect, ResponseReader, Step};
use std::collections::HashMap;

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// A Protocol::ColumnDefinition41 packet.
fn column(schema: &[u8], name: &[u8], ty: u8) -> Vec<u8> {
    let mut p = Vec::new();
    for s in [&b"def"[..], schema, b"t", b"t", name, name] {
        lenenc_str(&mut p, s);
    }
    p.push(0x0c);
    p.extend_from_slice(&33u16.to_le_bytes());
    p.extend_from_slice(&120u32.to_le_bytes());
    p.push(ty);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p
}

/// The response to a COM_QUERY: a text result set of `cols` (name, type) and `rows` (each a list
/// of values, NULL as None), with EOF packets (no CLIENT_DEPRECATE_EOF), read by the capture's
/// response reader.
fn result_set(schema: &[u8], cols: &[(&[u8], u8)], rows: &[&[Option<&[u8]>]]) -> Response {
    let mut packets = vec![vec![cols.len() as u8]];
    for (name, ty) in cols {
        packets.push(column(schema, name, *ty));
    }
    let eof = vec![0xfe, 0, 0, 0x02, 0];
    packets.push(eof.clone());
    for row in rows {
        let mut p = Vec::new();
        for v in *row {
            match v {
                Some(v) => lenenc_str(&mut p, v),
                None => p.push(0xfb),
            }
        }
        packets.push(p);
    }
    packets.push(eof);
    let mut r = ResponseReader::new(Expect::Query, caps::PROTOCOL_41, 0);
    let mut last = Step::NeedMore;
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(last, Step::NeedMore);
        last = r.feed((i + 1) as u8, p, p.len());
    }
    assert_eq!(last, Step::Done);
    r.into_response()
}

fn ok() -> Response {
    let mut r = ResponseReader::new(Expect::Query, caps::PROTOCOL_41, 0);
    assert_eq!(r.feed(1, &[0, 1, 0, 2, 0, 0, 0], 7), Step::Done);
    r.into_response()
}

fn err() -> Response {
    let mut r = ResponseReader::new(Expect::Query, caps::PROTOCOL_41, 0);
    let p = b"\xff\x7a\x04#42S02Table 't' doesn't exist";
    assert_eq!(r.feed(1, p, p.len()), Step::Done);
    r.into_response()
}

fn side(r: &Response) -> ResultSide {
    r.into()
}

const COLS: &[(&[u8], u8)] = &[(b"id", 3), (b"c", 254)];
const INT: &[(&[u8], u8)] = &[(b"id", 3), (b"c", 3)];

fn rows(order: &[(&'static [u8], &'static [u8])]) -> Vec<[Option<&'static [u8]>; 2]> {
    order.iter().map(|(a, b)| [Some(*a), Some(*b)]).collect()
}

fn rs(schema: &[u8], cols: &[(&[u8], u8)], r: &[[Option<&'static [u8]>; 2]]) -> Response {
    let refs: Vec<&[Option<&[u8]>]> = r.iter().map(|x| &x[..]).collect();
    result_set(schema, cols, &refs)
}

const A: (&[u8], &[u8]) = (b"1", b"alpha");
const B: (&[u8], &[u8]) = (b"2", b"beta");
const C: (&[u8], &[u8]) = (b"3", b"gamma");

#[test]
fn each_class_from_real_hashes() {
    let prod = rs(b"app", COLS, &rows(&[A, B, C]));
    assert_eq!(prod.rows, 3);
    assert!(prod.checksum.is_some());
    let cmp = Comparability::Comparable;
    // Same rows, another schema name (as under --db-map): match.
    let same = rs(b"app_copy", COLS, &rows(&[A, B, C]));
    assert_eq!(classify(cmp, side(&prod), side(&same)), ResultClass::Match);
    // Same rows, another order.
    let reordered = rs(b"app", COLS, &rows(&[C, A, B]));
    assert_eq!(
        classify(cmp, side(&prod), side(&reordered)),
        ResultClass::OrderOnly
    );
    // One value changed; one row missing; a NULL instead of a value.
    let changed = rs(b"app", COLS, &rows(&[A, (b"2", b"BETA"), C]));
    assert_eq!(
        classify(cmp, side(&prod), side(&changed)),
        ResultClass::Mismatch
    );
    let fewer = rs(b"app", COLS, &rows(&[A, C]));
    assert_eq!(
        classify(cmp, side(&prod), side(&fewer)),
        ResultClass::Mismatch
    );
    let null = rs(
        b"app",
        COLS,
        &[
            [Some(b"1"), None],
            [Some(b"2"), Some(b"beta")],
            [Some(b"3"), Some(b"gamma")],
        ],
    );
    assert_eq!(
        classify(cmp, side(&prod), side(&null)),
        ResultClass::Mismatch
    );
    // Another column type, same bytes: metadata.
    let retyped = rs(b"app", INT, &rows(&[A, B, C]));
    assert_eq!(
        classify(cmp, side(&prod), side(&retyped)),
        ResultClass::MetadataMismatch
    );
    // Empty result on both sides is a match; against rows, a mismatch.
    let empty = rs(b"app", COLS, &[]);
    assert_eq!(
        classify(cmp, side(&empty), side(&rs(b"x", COLS, &[]))),
        ResultClass::Match
    );
    assert_eq!(
        classify(cmp, side(&prod), side(&empty)),
        ResultClass::Mismatch
    );
    // Not comparable, even when the hashes differ.
    let no = Comparability::NotComparable("now()");
    assert_eq!(
        classify(no, side(&prod), side(&changed)),
        ResultClass::NotComparable("now()")
    );
    // No result set or an error on either side: not checked.
    for (p, t) in [
        (&prod, &ok()),
        (&ok(), &prod),
        (&prod, &err()),
        (&err(), &err()),
        (&ok(), &ok()),
    ] {
        assert_eq!(classify(cmp, side(p), side(t)), ResultClass::NotChecked);
        assert_eq!(classify(no, side(p), side(t)), ResultClass::NotChecked);
    }
}

#[test]
fn accumulator_counts_samples_and_json() {
    let prod = rs(b"app", COLS, &rows(&[A, B, C]));
    let reordered = rs(b"app", COLS, &rows(&[B, A, C]));
    let changed = rs(b"app", COLS, &rows(&[A, B, (b"3", b"delta")]));
    let retyped = rs(b"app", INT, &rows(&[A, B, C]));
    let mut d = ResultDivergence::default();
    let sel = b"SELECT id, c FROM t WHERE k = 5 ORDER BY id";
    for _ in 0..10 {
        assert_eq!(
            d.record(1, sel, side(&prod), side(&changed)),
            ResultClass::Mismatch
        );
    }
    assert_eq!(
        d.record(1, sel, side(&prod), side(&prod)),
        ResultClass::Match
    );
    assert_eq!(
        d.record(1, sel, side(&prod), side(&reordered)),
        ResultClass::OrderOnly
    );
    assert_eq!(
        d.record(1, sel, side(&prod), side(&retyped)),
        ResultClass::MetadataMismatch
    );
    assert_eq!(
        d.record(1, sel, side(&prod), side(&ok())),
        ResultClass::NotChecked
    );
    // Prod's client cached the metadata (no column definitions on the wire): rows still compared.
    let mut cached = prod.clone();
    if let Some(c) = cached.checksum.as_mut() {
        c.columns = mrte_capture::event::ResultChecksum::COLUMNS_UNKNOWN;
    }
    let mut d2 = ResultDivergence::default();
    assert_eq!(
        d2.record(1, sel, side(&cached), side(&prod)),
        ResultClass::Match
    );
    assert_eq!(
        d2.record(1, sel, side(&cached), side(&changed)),
        ResultClass::Mismatch
    );
    let now = b"SELECT id, c, NOW() FROM t";
    assert_eq!(
        d.record(2, now, side(&prod), side(&changed)),
        ResultClass::NotComparable("now()")
    );
    let long = [
        b"SELECT c FROM t WHERE c IN ('".as_slice(),
        &[b'x'; 1000],
        b"') ORDER BY c",
    ]
    .concat();
    d.record(3, &long, side(&prod), side(&changed));
    assert_eq!(
        d.counts,
        ResultCounts {
            compared: 14,
            mismatch: 11,
            order_only: 1,
            metadata_mismatch: 1,
            not_comparable: 1
        }
    );
    let f1 = d.fingerprint(1).unwrap();
    assert_eq!(f1.counts.compared, 13);
    assert_eq!(
        f1.samples.iter().filter(|s| s.kind == "mismatch").count(),
        MAX_SAMPLES
    );
    assert_eq!(f1.samples.len(), MAX_SAMPLES + 2);
    let s = &f1.samples[0];
    assert_eq!((s.prod.rows, s.test.rows), (3, 3));
    assert_ne!(s.prod.unordered, s.test.unordered);
    assert_eq!(s.prod.columns, s.test.columns);
    assert_eq!(s.prod.ordered.len(), 16);
    assert_eq!(
        d.fingerprint(2).unwrap().not_comparable_reason,
        Some("now()")
    );
    assert!(d.fingerprint(2).unwrap().samples.is_empty());
    let cut = &d.fingerprint(3).unwrap().samples[0].sql;
    assert!(
        cut.len() <= SAMPLE_SQL_BYTES + 3 && cut.ends_with('…'),
        "{cut}"
    );
    let div = d.diverging();
    assert_eq!(div.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
    let v = serde_json::to_value(d.counts).unwrap();
    for k in [
        "compared",
        "mismatch",
        "order_only",
        "metadata_mismatch",
        "not_comparable",
    ] {
        assert!(v[k].is_u64(), "{k}");
    }
    let v = serde_json::to_value(f1).unwrap();
    assert_eq!(v["counts"]["mismatch"], 10);
    assert_eq!(v["samples"][0]["kind"], "mismatch");
    assert!(v.get("not_comparable_reason").is_none());
}

fn no(sql: &[u8]) -> &'static str {
    match comparability(sql) {
        Comparability::NotComparable(why) => why,
        Comparability::Comparable => panic!("comparable: {}", String::from_utf8_lossy(sql)),
    }
}

fn yes(sql: &[u8]) {
    assert_eq!(
        comparability(sql),
        Comparability::Comparable,
        "{}",
        String::from_utf8_lossy(sql)
    );
}

#[test]
fn comparability_of_time_random_and_server_state() {
    assert_eq!(no(b"SELECT NOW()"), "now()");
    assert_eq!(
        no(b"select id from t where ts > now() - interval 1 day order by id"),
        "now()"
    );
    assert_eq!(no(b"SELECT CURRENT_TIMESTAMP"), "current_timestamp");
    assert_eq!(no(b"SELECT current_timestamp(6)"), "current_timestamp");
    assert_eq!(no(b"select SysDate()"), "sysdate()");
    assert_eq!(no(b"select curdate(), curtime()"), "curdate()");
    assert_eq!(no(b"select utc_timestamp()"), "utc_timestamp()");
    assert_eq!(no(b"select UNIX_TIMESTAMP()"), "unix_timestamp()");
    yes(b"select UNIX_TIMESTAMP('2024-01-01 00:00:00')");
    assert_eq!(no(b"SELECT * FROM t ORDER BY RAND()"), "rand()");
    yes(b"SELECT * FROM t ORDER BY RAND(42)");
    assert_eq!(no(b"select uuid()"), "uuid()");
    assert_eq!(no(b"select UUID_SHORT()"), "uuid_short()");
    assert_eq!(no(b"SELECT CONNECTION_ID()"), "connection_id()");
    assert_eq!(no(b"SELECT LAST_INSERT_ID()"), "last_insert_id()");
    assert_eq!(
        no(b"select @@hostname"),
        "@@variable that differs per server or connection"
    );
    assert_eq!(
        no(b"select @@global.server_id, 1"),
        "@@variable that differs per server or connection"
    );
    assert_eq!(
        no(b"SELECT @@SESSION.pseudo_thread_id"),
        "@@variable that differs per server or connection"
    );
    assert_eq!(
        no(b"select @@version_comment limit 1"),
        "@@variable that differs per server or connection"
    );
    assert_eq!(
        no(b"SELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment"),
        "@@variable that differs per server or connection"
    );
    yes(b"select @@session.autocommit, @@sql_mode");
    yes(b"SELECT @@tx_isolation");
    assert_eq!(no(b"SHOW PROCESSLIST"), "show of server state");
    assert_eq!(no(b"show full processlist"), "show of server state");
    assert_eq!(
        no(b"SHOW GLOBAL STATUS LIKE 'Threads%'"),
        "show of server state"
    );
    assert_eq!(no(b"show table status like 't'"), "show of server state");
    yes(b"SHOW CREATE TABLE t");
    yes(b"show tables");
    yes(b"SHOW COLUMNS FROM t");
    assert_eq!(
        no(b"select * from information_schema.PROCESSLIST"),
        "information_schema table of server state"
    );
    assert_eq!(
        no(b"SELECT * FROM `information_schema`.`processlist`"),
        "information_schema table of server state"
    );
    assert_eq!(
        no(b"select table_rows from INFORMATION_SCHEMA.TABLES where table_name = 't'"),
        "information_schema table of server state"
    );
    yes(b"select column_name from information_schema.columns where table_name = 't' order by ordinal_position");
    assert_eq!(
        no(b"select * from performance_schema.threads"),
        "performance_schema"
    );
    assert_eq!(no(b"SELECT * FROM sys.session"), "sys schema");
    assert_eq!(
        no(b"select id from t for update skip locked"),
        "skip locked"
    );
    assert_eq!(
        no(b"SELECT id FROM t WHERE k = 1 LIMIT 10 FOR UPDATE SKIP LOCKED"),
        "limit without order by"
    );
}

#[test]
fn comparability_of_limit_and_group_concat() {
    assert_eq!(
        no(b"SELECT c FROM sbtest1 LIMIT 10"),
        "limit without order by"
    );
    assert_eq!(no(b"SELECT c FROM t LIMIT 5, 10"), "limit without order by");
    yes(b"SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c LIMIT 10");
    yes(b"SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c");
    yes(b"SELECT c FROM t WHERE id = 5");
    // The ORDER BY of a subquery does not order the outer LIMIT; the outer one does.
    assert_eq!(
        no(b"SELECT * FROM (SELECT c FROM t ORDER BY c) x LIMIT 3"),
        "limit without order by"
    );
    assert_eq!(
        no(b"SELECT * FROM t WHERE id IN (SELECT id FROM u LIMIT 1) ORDER BY id"),
        "limit without order by"
    );
    yes(b"(SELECT a FROM t ORDER BY a LIMIT 1) UNION ALL (SELECT a FROM u ORDER BY a LIMIT 1) ORDER BY a");
    assert_eq!(
        no(b"SELECT a FROM t UNION SELECT a FROM u LIMIT 1"),
        "limit without order by"
    );
    assert_eq!(
        no(b"select k, group_concat(c) from t group by k order by k"),
        "group_concat() without order by"
    );
    yes(b"select k, group_concat(c order by c separator ',') from t group by k order by k");
}

#[test]
fn comparability_of_tricky_text() {
    // Strings, comments and identifiers that look like functions.
    yes(b"SELECT 'now()', \"RAND()\" FROM t WHERE note = 'limit 1' ORDER BY id");
    yes(b"SELECT 'it''s now()' , 'a\\'now()' FROM t");
    yes(b"SELECT id /* NOW() LIMIT 1 */ FROM t -- rand()\n WHERE x = 1");
    yes(b"SELECT id FROM t # uuid()\n WHERE x = 1");
    yes(b"SELECT `now`, t.`rand`, nowhere, random_col FROM t");
    yes(b"SELECT created_now, my_uuid(1) FROM t");
    // Multi-byte text, in literals and identifiers.
    yes("SELECT 'héllo wörld — now()' AS naïve, `日本` FROM t WHERE c = '日本語'".as_bytes());
    assert_eq!(no("SELECT '日本語', NOW() FROM t".as_bytes()), "now()");
    // Not UTF-8: latin1 bytes, a cut multi-byte sequence; never a panic.
    yes(b"SELECT 'caf\xe9' FROM t WHERE c = '\xff\xfe' ORDER BY id");
    assert_eq!(no(b"SELECT '\xe6\x97' , rand() FROM t"), "rand()");
    for junk in [
        &b""[..],
        b"(",
        b")",
        b"((((",
        b"@@",
        b"@@.",
        b"`",
        b"'",
        b"\xff\xff",
        b"limit",
        b"order by",
    ] {
        let _ = comparability(junk);
    }
}

#[test]
fn comparability_never_panics_on_any_bytes() {
    // A cheap deterministic sweep of short byte strings built from SQL-ish pieces.
    let pieces: &[&[u8]] = &[
        b"(",
        b")",
        b"`",
        b"'",
        b"\"",
        b"@@",
        b".",
        b" ",
        b"now",
        b"limit",
        b"order by",
        b"\xe6\x97",
        b"\xff",
        b"group_concat",
        b"information_schema",
        b"/*",
        b"*/",
        b"--",
        b"\\",
        b"show",
    ];
    let mut fp = Fingerprinter::default();
    for a in pieces {
        for b in pieces {
            for c in pieces {
                let s = [*a, *b, *c].concat();
                let _ = comparability_with(&mut fp, &s);
            }
        }
    }
}

#[test]
fn outcomes_with_test_checksums_feed_every_report_format() {
    use crate::compare::Comparison;
    use crate::engine::EngineStats;
    use crate::report::{FailOn, Report};
    use crate::{Outcome, TestResponse};
    use mrte_capture::fingerprint::{fingerprint, fingerprint_id};
    use std::sync::Arc;

    let prod = rs(b"app", COLS, &rows(&[A, B, C]));
    let changed = rs(b"app_copy", COLS, &rows(&[A, B, (b"3", b"delta")]));
    let mut c = Comparison::default();
    let cases: [(&[u8], &Response); 3] = [
        (
            b"SELECT id, c FROM sbtest1 WHERE id BETWEEN 1 AND 3 ORDER BY c",
            &changed,
        ),
        (
            b"SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 3",
            &prod,
        ),
        (b"SELECT id, c FROM sbtest1 LIMIT 3", &changed),
    ];
    for (sql, test) in cases {
        let fp = fingerprint(sql);
        let id = fingerprint_id(&fp);
        c.record(&Outcome {
            session: 1,
            command: "COM_QUERY",
            fingerprint: Arc::from(fp.as_str()),
            fingerprint_id: id,
            example: String::from_utf8_lossy(sql).into_owned().into(),
            prod: prod.clone(),
            prod_us: Some(100),
            test: Some(TestResponse {
                status: test.status,
                rows: test.rows,
                result_sets: test.result_sets,
                checksum: test.checksum,
                latency_us: 120,
                ..TestResponse::default()
            }),
            failure: None,
            lag_us: 0,
        });
    }
    let eng = EngineStats::default();
    let cap = mrte_capture::stats::Stats::default();
    let r = Report::build("replay", "mysql://u@h:1", 1.0, &c, &eng, &cap);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let want = serde_json::json!({
        "compared": 2, "mismatch": 1, "order_only": 0, "metadata_mismatch": 0, "not_comparable": 1
    });
    assert_eq!(v["results"], want);
    let fps = v["fingerprints"].as_array().unwrap();
    let by = |needle: &str| {
        fps.iter()
            .find(|f| f["fingerprint"].as_str().unwrap().contains(needle))
            .unwrap()
            .clone()
    };
    let ord = by("order by c");
    assert_eq!(ord["results"]["mismatch"], 1);
    assert_eq!(ord["result_samples"][0]["kind"], "mismatch");
    assert_eq!(ord["result_samples"][0]["test"]["rows"], 3);
    assert_eq!(by("sum(k)")["results"]["compared"], 1);
    assert_eq!(by("sum(k)")["results"]["mismatch"], 0);
    let lim = by("limit");
    assert_eq!(lim["results"]["not_comparable"], 1);
    assert_eq!(lim["not_comparable_reason"], "limit without order by");
    let text = r.to_text();
    assert!(text.contains("results: compared 2  mismatch 1"), "{text}");
    let sect = &text[text.find("result divergence").expect("section")..];
    assert!(
        sect.contains("1 of 1: 1 / 0 / 0") && sect.contains("ORDER BY c"),
        "{sect}"
    );
    assert!(!sect.contains("sum(k)"), "{sect}");
    let html = r.to_html();
    assert!(html.contains("id=\"results\"") && html.contains("results mismatch"));
    assert!("result_mismatch>0".parse::<FailOn>().unwrap().fails(&r));
}

/// Every result-bearing command of a capture, with the statement it runs (the PREPARE text for
/// an EXECUTE), decoded by mrte_capture's pipeline.
fn captured_results(file: &str) -> Vec<(Vec<u8>, Response)> {
    use mrte_capture::event::{Command, SessionEvent, SessionId};
    use mrte_capture::pipeline::{Pipeline, PipelineConfig};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(file);
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut sink: Vec<(SessionId, SessionEvent)> = Vec::new();
    mrte_capture::source::pcap::run_file(&path, &mut pipeline, &mut sink).unwrap();
    let mut prepared: HashMap<(SessionId, u32), Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (sid, ev) in sink {
        let SessionEvent::Command(rec) = ev else {
            continue;
        };
        let sql = match &rec.command {
            Command::Query { sql, .. } => sql.to_vec(),
            Command::StmtPrepare { sql } => {
                if let Some(p) = &rec.response.prepare_ok {
                    prepared.insert((sid, p.stmt_id), sql.to_vec());
                }
                continue;
            }
            Command::StmtExecute { stmt_id, .. } => match prepared.get(&(sid, *stmt_id)) {
                Some(s) => s.clone(),
                None => continue,
            },
            _ => continue,
        };
        out.push((sql, rec.response));
    }
    out
}

#[test]
fn sysbench_captures_compare_equal_to_themselves() {
    for file in ["sysbench_text.pcap", "sysbench_ps.pcap"] {
        let rs = captured_results(file);
        let mut d = ResultDivergence::default();
        let mut fp = Fingerprinter::default();
        let mut by_fp: HashMap<u64, (ResultChecksum, u64, Vec<u8>)> = HashMap::new();
        let mut differing = 0;
        for (sql, resp) in &rs {
            let id = mrte_capture::fingerprint::fingerprint_id(fp.fingerprint(sql));
            let class = d.record(id, sql, side(resp), side(resp));
            assert!(
                matches!(class, ResultClass::Match | ResultClass::NotChecked),
                "{file}: {class:?} {}",
                String::from_utf8_lossy(sql)
            );
            // Different executions of one shape (other ids, other rows) are told apart.
            if let (Some(c), true) = (resp.checksum, class == ResultClass::Match) {
                if let Some((c0, rows0, sql0)) = by_fp.get(&id) {
                    if sql0 != sql && c0.rows_unordered != c.rows_unordered {
                        differing += 1;
                        let mut other = resp.clone();
                        // Same columns (sysbench's tables differ by name: sbtest1, sbtest2).
                        other.checksum = Some(ResultChecksum {
                            columns: c.columns,
                            ..*c0
                        });
                        other.rows = *rows0;
                        assert_eq!(
                            classify(Comparability::Comparable, side(resp), side(&other)),
                            ResultClass::Mismatch
                        );
                    }
                } else {
                    by_fp.insert(id, (c, resp.rows, sql.clone()));
                }
            }
        }
        // sysbench's read statements are all comparable and return rows.
        assert!(d.counts.compared >= 500, "{file}: {:?}", d.counts);
        assert_eq!(d.counts.not_comparable, 0, "{file}");
        assert_eq!(d.counts.diverged(), 0, "{file}");
        assert!(by_fp.len() >= 5, "{file}: {} shapes", by_fp.len());
        assert!(differing > 50, "{file}: {differing}");
    }
}

#[test]
fn driver_captures_are_judged_without_panic() {
    let mut judged = 0;
    for file in [
        "mysql2.pcap",
        "pymysql.pcap",
        "mysqlconnector.pcap",
        "connectorj.pcap",
        "client_session.pcap",
        "compressed.pcap",
    ] {
        for (sql, resp) in captured_results(file) {
            let _ = comparability(&sql);
            if resp.checksum.is_some() {
                judged += 1;
            }
        }
    }
    assert!(judged > 20, "{judged}");
}

#[test]
fn wire_replies_carry_the_shared_checksum_to_the_comparison() {
    use crate::wire::response::Reply;
    let prod = rs(b"app", COLS, &rows(&[A, B, C]));
    let test = Reply::from_response(rs(b"app_copy", COLS, &rows(&[C, B, A]))).to_test_response();
    assert_eq!(test.result_sets, 1);
    let t = ResultSide {
        status: test.status,
        rows: test.rows,
        result_sets: test.result_sets,
        checksum: test.checksum,
    };
    assert_eq!(
        classify(Comparability::Comparable, side(&prod), t),
        ResultClass::OrderOnly
    );
}
