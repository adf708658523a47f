//! Response reader by byte vectors (payloads as MariaDB 10.11 sends them).

use super::*;

fn def(schema: &str, table: &str, name: &str) -> Vec<u8> {
    let mut d = Vec::new();
    for s in ["def", schema, table, table, name, name] {
        d.push(s.len() as u8);
        d.extend_from_slice(s.as_bytes());
    }
    d.extend_from_slice(&[0x0c, 0x21, 0, 0x0b, 0, 0, 0, 0x03, 0, 0, 0, 0, 0]);
    d
}

fn eof(status: u16) -> Vec<u8> {
    let mut e = vec![0xfe, 0, 0];
    e.extend_from_slice(&status.to_le_bytes());
    e
}

fn ok_pkt(header: u8, affected: u8, status: u16) -> Vec<u8> {
    let mut o = vec![header, affected, 0];
    o.extend_from_slice(&status.to_le_bytes());
    o.extend_from_slice(&[0, 0]);
    o
}

fn row(vals: &[&str]) -> Vec<u8> {
    let mut r = Vec::new();
    for v in vals {
        r.push(v.len() as u8);
        r.extend_from_slice(v.as_bytes());
    }
    r
}

/// A text result set: column count, defs, [EOF], rows, terminator.
fn result_set(
    schema: &str,
    rows: &[&[&str]],
    deprecate_eof: bool,
    last_status: u16,
) -> Vec<Vec<u8>> {
    let mut v = vec![vec![2], def(schema, "t", "id"), def(schema, "t", "c")];
    if !deprecate_eof {
        v.push(eof(2));
    }
    for r in rows {
        v.push(row(r));
    }
    v.push(if deprecate_eof {
        ok_pkt(0xfe, 0, last_status)
    } else {
        eof(last_status)
    });
    v
}

fn run(expect: Expect, deprecate_eof: bool, packets: &[Vec<u8>]) -> Reply {
    let mut r = ResponseReader::new(expect, deprecate_eof);
    for (i, p) in packets.iter().enumerate() {
        let f = r.feed(p).unwrap();
        if i + 1 < packets.len() {
            assert_eq!(f, Feed::More, "packet {i} ended the response early");
        } else {
            assert_eq!(f, Feed::Done, "last packet did not end the response");
        }
    }
    r.into_reply()
}

#[test]
fn result_sets_with_and_without_deprecate_eof_hash_alike() {
    let rows: &[&[&str]] = &[&["1", "a"], &["2", "b"]];
    for dep in [false, true] {
        let r = run(Expect::Results, dep, &result_set("db1", rows, dep, 2));
        assert_eq!(r.rows, 2);
        assert_eq!(r.columns, 2);
        assert_eq!(r.result_sets, 1);
        assert_eq!(r.status, ResponseStatus::Ok);
        let same = run(Expect::Results, dep, &result_set("other_db", rows, dep, 2));
        assert_eq!(same.hash, r.hash);
        assert_eq!(same.meta_hash, r.meta_hash, "schema names are not hashed");
        let swapped = run(
            Expect::Results,
            dep,
            &result_set("db1", &[rows[1], rows[0]], dep, 2),
        );
        assert_ne!(swapped.hash.ordered, r.hash.ordered);
        assert_eq!(swapped.hash.unordered, r.hash.unordered);
        let changed = run(
            Expect::Results,
            dep,
            &result_set("db1", &[&["1", "a"], &["2", "B"]], dep, 2),
        );
        assert_ne!(changed.hash.ordered, r.hash.ordered);
        assert_ne!(changed.hash.unordered, r.hash.unordered);
    }
}

#[test]
fn multi_results_and_ok_in_between() {
    let mut p = result_set("d", &[&["1", "x"]], false, 2 | status::MORE_RESULTS_EXISTS);
    p.push(ok_pkt(0, 3, 2 | status::MORE_RESULTS_EXISTS));
    p.extend(result_set("d", &[&["2", "y"], &["3", "z"]], false, 2));
    let r = run(Expect::Results, false, &p);
    assert_eq!((r.rows, r.result_sets, r.affected), (3, 2, 3));
}

#[test]
fn err_mid_result_set_and_at_start() {
    let mut p = result_set("d", &[&["1", "x"]], true, 2);
    let last = p.len() - 1;
    p[last] = b"\xff\x7a\x04#HY000boom".to_vec();
    let r = run(Expect::Results, true, &p);
    assert_eq!(r.rows, 1);
    assert_eq!(r.status, ResponseStatus::Err);
    assert_eq!(r.error, Some((1146, "boom".to_string())));
    let r = run(
        Expect::Status,
        false,
        &[b"\xff\x19\x04#42000Unknown database 'x'".to_vec()],
    );
    assert_eq!(r.error.unwrap().0, 1049);
}

#[test]
fn local_infile_request_then_ok() {
    let mut r = ResponseReader::new(Expect::Results, false);
    assert_eq!(r.feed(b"\xfb/tmp/data.csv").unwrap(), Feed::LocalInfile);
    assert_eq!(
        r.reply().local_infile.as_deref(),
        Some(&b"/tmp/data.csv"[..])
    );
    assert_eq!(r.feed(&ok_pkt(0, 5, 2)).unwrap(), Feed::Done);
    assert_eq!(r.into_reply().affected, 5);
}

#[test]
fn prepare_ok_with_definitions() {
    // stmt 7, 2 columns, 1 param.
    let pok = vec![0, 7, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0];
    let with_eof = vec![
        pok.clone(),
        def("", "", "?"),
        eof(2),
        def("d", "t", "id"),
        def("d", "t", "c"),
        eof(2),
    ];
    let r = run(Expect::Prepare, false, &with_eof);
    let p = r.prepare.clone().unwrap();
    assert_eq!((p.stmt_id, p.num_columns, p.num_params), (7, 2, 1));
    assert_eq!(r.columns, 2);
    let no_eof = vec![
        pok,
        def("", "", "?"),
        def("d", "t", "id"),
        def("d", "t", "c"),
    ];
    assert_eq!(run(Expect::Prepare, true, &no_eof).prepare, r.prepare);
    let none = vec![vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]];
    assert_eq!(
        run(Expect::Prepare, false, &none).prepare.unwrap().stmt_id,
        1
    );
}

#[test]
fn binary_rows_cursor_and_fetch() {
    // EXECUTE with a cursor: definitions, EOF with CURSOR_EXISTS, no rows.
    let p = vec![vec![1], def("d", "t", "id"), eof(2 | status::CURSOR_EXISTS)];
    let r = run(Expect::Results, false, &p);
    assert_eq!(r.rows, 0);
    // FETCH: binary rows then EOF with LAST_ROW_SENT.
    let p = vec![vec![0, 0, 1, 0, 0, 0], vec![0, 0, 2, 0, 0, 0], eof(0x80)];
    let r = run(Expect::Fetch, false, &p);
    assert_eq!(r.rows, 2);
    // Binary result set under DEPRECATE_EOF.
    let p = vec![
        vec![1],
        def("d", "t", "id"),
        vec![0, 0, 9, 0, 0, 0],
        ok_pkt(0xfe, 0, 2),
    ];
    assert_eq!(run(Expect::Results, true, &p).rows, 1);
}

#[test]
fn field_list_statistics_status_and_nothing() {
    let r = run(
        Expect::FieldList,
        false,
        &[def("d", "t", "id"), def("d", "t", "c"), eof(2)],
    );
    assert_eq!(r.columns, 2);
    let r = run(Expect::Text, false, &[b"Uptime: 5  Threads: 1".to_vec()]);
    assert_eq!(r.text.as_deref(), Some("Uptime: 5  Threads: 1"));
    // SET_OPTION answers EOF without DEPRECATE_EOF.
    assert_eq!(
        run(Expect::Status, false, &[eof(2)]).status,
        ResponseStatus::Ok
    );
    assert_eq!(
        run(Expect::Status, false, &[ok_pkt(0, 0, 2)]).status,
        ResponseStatus::Ok
    );
    let r = ResponseReader::new(Expect::Nothing, false);
    assert!(r.is_done());
    assert_eq!(r.into_reply().status, ResponseStatus::None);
    assert_eq!(Expect::for_command(&[0x19, 1, 0, 0, 0]), Expect::Nothing);
    assert_eq!(Expect::for_command(b"\x03SELECT 1"), Expect::Results);
    assert_eq!(Expect::for_command(&[0x1b, 0, 0]), Expect::Status);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    use proptest::prelude::*;
    proptest!(|(pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..12), dep: bool, e in 0usize..6)| {
        let expect = [Expect::Results, Expect::Prepare, Expect::Fetch, Expect::FieldList, Expect::Text, Expect::Status][e];
        let mut r = ResponseReader::new(expect, dep);
        for p in &pkts {
            match r.feed(p) {
                Ok(Feed::Done) | Err(_) => break,
                _ => {}
            }
        }
    });
    let mut r = ResponseReader::new(Expect::Results, false);
    assert!(r.feed(&[]).is_err());
    assert!(column_def_tail(&[0xfc]).len() == 1);
}
