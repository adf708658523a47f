//! ResponseReader tests from packet bytes.

use super::*;

fn run(r: &mut ResponseReader, packets: &[(u8, Vec<u8>)]) -> Vec<Step> {
    packets
        .iter()
        .map(|(s, p)| r.feed(*s, p, p.len()))
        .collect()
}

fn col(name: &[u8], schema: &[u8], ty: u8) -> Vec<u8> {
    let mut c = Vec::new();
    for s in [&b"def"[..], schema, b"t", b"t", name, name] {
        c.push(s.len() as u8);
        c.extend_from_slice(s);
    }
    c.extend_from_slice(&[0x0c, 45, 0, 11, 0, 0, 0, ty, 0, 0, 0, 0, 0]);
    c
}

fn text_rows(schema: &[u8], rows: &[&[u8]], dep: bool) -> Vec<(u8, Vec<u8>)> {
    let mut v = vec![(1, vec![1]), (2, col(b"c", schema, 0xfd))];
    if !dep {
        v.push((3, vec![0xfe, 0, 0, 2, 0]));
    }
    for r in rows {
        let mut p = vec![r.len() as u8];
        p.extend_from_slice(r);
        v.push((v.len() as u8 + 1, p));
    }
    let end = if dep {
        vec![0xfe, 0, 0, 2, 0, 0, 0]
    } else {
        vec![0xfe, 0, 0, 2, 0]
    };
    v.push((v.len() as u8 + 1, end));
    v
}

fn sum(caps: u32, packets: &[(u8, Vec<u8>)]) -> (Response, Vec<Step>) {
    let mut r = ResponseReader::new(Expect::Query, caps, 0);
    let steps = run(&mut r, packets);
    assert!(!r.seq_mismatch());
    (r.into_response(), steps)
}

#[test]
fn ok_with_info_and_err() {
    let mut r = ResponseReader::new(Expect::Query, 0, 0);
    let mut ok = vec![0, 3, 7, 2, 0, 1, 0];
    ok.extend_from_slice(b"Rows matched: 3  Changed: 3  Warnings: 0");
    assert_eq!(r.feed(1, &ok, ok.len()), Step::Done);
    let resp = r.into_response();
    assert_eq!(
        (resp.affected, resp.last_insert_id, resp.warnings),
        (3, 7, 1)
    );
    assert_eq!(
        resp.info.as_deref(),
        Some("Rows matched: 3  Changed: 3  Warnings: 0")
    );
    assert_eq!(resp.checksum, None);
    let mut r = ResponseReader::new(Expect::Simple, 0, 0);
    let err = b"\xff\x7a\x04#42S02Table 'x.y' doesn't exist";
    assert_eq!(r.feed(1, err, err.len()), Step::Done);
    let resp = r.response();
    assert_eq!(resp.status, ResponseStatus::Err);
    assert_eq!(resp.error_code, Some(1146));
    assert_eq!(resp.sql_state.as_deref(), Some("42S02"));
    assert_eq!(
        resp.error_message.as_deref(),
        Some("Table 'x.y' doesn't exist")
    );
}

#[test]
fn checksums_order_schema_and_eof_modes() {
    let dep = caps::DEPRECATE_EOF;
    let (a, steps) = sum(dep, &text_rows(b"prod", &[b"x", b"y"], true));
    assert_eq!(*steps.last().unwrap(), Step::Done);
    assert!(steps[..steps.len() - 1]
        .iter()
        .all(|s| *s == Step::NeedMore));
    assert_eq!((a.rows, a.columns, a.result_sets), (2, 1, 1));
    let ca = a.checksum.unwrap();
    // Another schema: same checksums. Classic EOF framing: same checksums.
    let (b, _) = sum(dep, &text_rows(b"test", &[b"x", b"y"], true));
    assert_eq!(b.checksum, Some(ca));
    let (c, _) = sum(0, &text_rows(b"prod", &[b"x", b"y"], false));
    assert_eq!(c.checksum, Some(ca));
    // Order only: unordered equal, ordered not.
    let (d, _) = sum(dep, &text_rows(b"prod", &[b"y", b"x"], true));
    let cd = d.checksum.unwrap();
    assert_eq!(cd.rows_unordered, ca.rows_unordered);
    assert_ne!(cd.rows_ordered, ca.rows_ordered);
    assert_eq!(cd.columns, ca.columns);
    // A changed value: both differ.
    let (e, _) = sum(dep, &text_rows(b"prod", &[b"x", b"z"], true));
    let ce = e.checksum.unwrap();
    assert_ne!(ce.rows_unordered, ca.rows_unordered);
    assert_ne!(ce.rows_ordered, ca.rows_ordered);
    // Another column type: metadata differs, rows do not.
    let mut other = text_rows(b"prod", &[b"x", b"y"], true);
    other[1].1 = col(b"c", b"prod", 0x03);
    let (f, _) = sum(dep, &other);
    let cf = f.checksum.unwrap();
    assert_ne!(cf.columns, ca.columns);
    assert_eq!(cf.rows_ordered, ca.rows_ordered);
    // MariaDB extended metadata (a lenenc field before the fixed bytes, sent when the client
    // asked for it): not hashed, so prod's client and the replay need not share the flag.
    let mut ext = text_rows(b"prod", &[b"x", b"y"], true);
    let plain = col(b"c", b"prod", 0xfd);
    let fixed = plain.len() - 13;
    ext[1].1 = [&plain[..fixed], &b"\x06\x00\x04json"[..], &plain[fixed..]].concat();
    let (g, _) = sum(dep, &ext);
    assert_eq!(g.checksum, Some(ca));
    // Another column name or character set: metadata differs.
    let mut named = text_rows(b"prod", &[b"x", b"y"], true);
    named[1].1 = col(b"d", b"prod", 0xfd);
    assert_ne!(sum(dep, &named).0.checksum.unwrap().columns, ca.columns);
    let mut cs = text_rows(b"prod", &[b"x", b"y"], true);
    let n = cs[1].1.len();
    cs[1].1[n - 12] = 33;
    assert_ne!(sum(dep, &cs).0.checksum.unwrap().columns, ca.columns);
}

#[test]
fn long_rows_hash_their_prefix_and_length() {
    let mut r = ResponseReader::new(Expect::Query, caps::DEPRECATE_EOF, 0);
    r.feed(1, &[1], 1);
    r.feed(2, &col(b"c", b"s", 0xfc), 30);
    let big = vec![7u8; 10_000];
    assert_eq!(r.feed(3, &big[..ROW_HASH_BYTES], big.len()), Step::NeedMore);
    r.feed(4, &[0xfe, 0, 0, 2, 0, 0, 0], 7);
    let mut s = ResponseReader::new(Expect::Query, caps::DEPRECATE_EOF, 0);
    s.feed(1, &[1], 1);
    s.feed(2, &col(b"c", b"s", 0xfc), 30);
    s.feed(3, &big, big.len());
    s.feed(4, &[0xfe, 0, 0, 2, 0, 0, 0], 7);
    assert_eq!(r.into_response().checksum, s.into_response().checksum);
}

#[test]
fn prepare_ok_local_infile_statistics_and_more_results() {
    let mut r = ResponseReader::new(Expect::Prepare, 0, 0);
    let steps = run(
        &mut r,
        &[
            (1, vec![0, 5, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0]),
            (2, col(b"a", b"s", 3)),
            (3, col(b"b", b"s", 3)),
            (4, vec![0xfe, 0, 0, 2, 0]),
            (5, col(b"c", b"s", 3)),
            (6, vec![0xfe, 0, 0, 2, 0]),
        ],
    );
    assert_eq!(steps.last(), Some(&Step::Done));
    let ok = r.response().prepare_ok.clone().unwrap();
    assert_eq!((ok.stmt_id, ok.num_params, ok.num_columns), (5, 2, 1));

    let mut r = ResponseReader::new(Expect::Query, 0, 0);
    assert_eq!(r.feed(1, b"\xfb/tmp/x.csv", 11), Step::LocalInfile);
    assert!(r.in_local_infile());
    r.client_packet(2);
    r.client_packet(3);
    assert_eq!(r.feed(4, &[0, 2, 0, 2, 0, 0, 0], 7), Step::Done);
    assert!(!r.seq_mismatch());
    let resp = r.into_response();
    assert_eq!(resp.infile_name.as_deref(), Some("/tmp/x.csv"));
    assert_eq!(resp.affected, 2);

    let mut r = ResponseReader::new(Expect::Statistics, 0, 0);
    let st = b"Uptime: 5  Threads: 1";
    assert_eq!(r.feed(1, st, st.len()), Step::Done);
    assert_eq!(
        r.response().statistics.as_deref(),
        Some("Uptime: 5  Threads: 1")
    );

    // Two result sets then an OK (CALL, multi-statements), DEPRECATE_EOF.
    let mut r = ResponseReader::new(Expect::Query, caps::DEPRECATE_EOF, 0);
    let more = vec![0xfe, 0, 0, 0x0a, 0, 0, 0];
    let steps = run(
        &mut r,
        &[
            (1, vec![1]),
            (2, col(b"a", b"s", 3)),
            (3, vec![1, b'1']),
            (4, more.clone()),
            (5, vec![1]),
            (6, col(b"b", b"s", 3)),
            (7, vec![1, b'2']),
            (8, more),
            (9, vec![0, 0, 0, 2, 0, 0, 0]),
        ],
    );
    assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
    assert_eq!(steps.last(), Some(&Step::Done));
    let resp = r.into_response();
    assert_eq!((resp.result_sets, resp.rows), (2, 2));
}

#[test]
fn cursor_fetch_set_option_and_progress() {
    // EXECUTE opening a cursor: definitions and an EOF with CURSOR_EXISTS.
    let mut r = ResponseReader::new(Expect::Execute, 0, 0);
    let steps = run(
        &mut r,
        &[
            (1, vec![1]),
            (2, col(b"a", b"s", 3)),
            (3, vec![0xfe, 0, 0, 0x42, 0]),
        ],
    );
    assert_eq!(steps.last(), Some(&Step::Done));
    let mut r = ResponseReader::new(Expect::Fetch, 0, 0);
    let steps = run(
        &mut r,
        &[
            (1, vec![0, 0, 1, 0, 0, 0]),
            (2, vec![0, 0, 2, 0, 0, 0]),
            (3, vec![0xfe, 0, 0, 0x82, 0]),
        ],
    );
    assert_eq!(steps.last(), Some(&Step::Done));
    let resp = r.into_response();
    assert_eq!(resp.rows, 2);
    assert!(resp.checksum.is_some());
    let mut r = ResponseReader::new(Expect::Simple, 0, 0);
    assert_eq!(r.feed(1, b"\xff\xff\xff\x01\x00", 5), Step::NeedMore);
    assert_eq!(r.feed(2, &[0xfe, 0, 0, 2, 0], 5), Step::Done);
    assert_eq!(r.response().status, ResponseStatus::Ok);
}

#[test]
fn unknown_eof_mode_is_inferred() {
    let mut r = ResponseReader::new(Expect::Query, 0, 0).eof_unknown();
    run(&mut r, &text_rows(b"s", &[b"x"], true));
    assert!(r.is_done());
    assert_eq!(r.inferred_deprecate_eof(), Some(true));
    let mut r = ResponseReader::new(Expect::Query, 0, 0).eof_unknown();
    run(&mut r, &text_rows(b"s", &[b"x"], false));
    assert!(r.is_done());
    assert_eq!(r.inferred_deprecate_eof(), Some(false));
    assert_eq!(r.response().rows, 1);
}

#[test]
fn change_user_exchange_and_garbage() {
    let mut r = ResponseReader::new(Expect::ChangeUser, 0, 0);
    assert_eq!(
        r.feed(1, b"\xfemysql_native_password\0abc", 26),
        Step::NeedMore
    );
    assert!(r.in_auth());
    r.client_packet(2);
    assert_eq!(r.feed(3, &[0, 0, 0, 2, 0, 0, 0], 7), Step::Done);
    assert!(!r.seq_mismatch());
    let mut r = ResponseReader::new(Expect::Query, 0, 0);
    assert_eq!(r.feed(1, &[0xfc], 1), Step::Done);
    assert!(r.is_broken());
    assert_eq!(r.take_anomaly(), Some("unexpected response"));
}

#[test]
fn cached_metadata_leaves_the_columns_unknown() {
    // COM_STMT_EXECUTE answered with MariaDB's cached metadata: column count, then 0 (no
    // column definitions follow), binary rows, EOF as OK.
    let dep = caps::DEPRECATE_EOF;
    let mut r = ResponseReader::new(Expect::Execute, dep, 0);
    let steps = run(
        &mut r,
        &[
            (1, vec![1, 0]),
            (2, vec![0, 0, 1, b'x']),
            (3, vec![0xfe, 0, 0, 2, 0, 0, 0]),
        ],
    );
    assert_eq!(*steps.last().unwrap(), Step::Done);
    let resp = r.into_response();
    assert_eq!(resp.rows, 1);
    let c = resp.checksum.unwrap();
    assert_eq!(c.columns, ResultChecksum::COLUMNS_UNKNOWN);
    // With the definitions, the columns are known.
    let (full, _) = sum(dep, &text_rows(b"prod", &[b"x"], true));
    assert_ne!(
        full.checksum.unwrap().columns,
        ResultChecksum::COLUMNS_UNKNOWN
    );
}

/// `feed_rows` takes the run of whole row packets after the one fed and stops before the EOF,
/// an out-of-sequence packet or a partial one: the outcome equals feeding every packet alone.
#[test]
fn a_run_of_rows_read_at_once_equals_one_by_one() {
    let rows: Vec<Vec<u8>> = (0..7u8).map(|i| vec![b'r'; 5 + usize::from(i)]).collect();
    let refs: Vec<&[u8]> = rows.iter().map(|r| &r[..]).collect();
    let packets = text_rows(b"db", &refs, false);
    let (want, _) = sum(0, &packets);
    let framed = |ps: &[(u8, Vec<u8>)]| -> Vec<u8> {
        let mut v = Vec::new();
        for (s, p) in ps {
            v.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
            v.push(*s);
            v.extend_from_slice(p);
        }
        v
    };
    // Up to the first row one by one; then the rest as bytes, cut short of the last byte.
    let mut r = ResponseReader::new(Expect::Query, 0, 0);
    assert_eq!(r.feed_rows(&framed(&packets[..1])), 0, "not among rows yet");
    run(&mut r, &packets[..4]);
    let tail = framed(&packets[4..]);
    let eof_at = tail.len() - (4 + packets.last().map_or(0, |p| p.1.len()));
    let used = r.feed_rows(&tail[..tail.len() - 1]);
    assert_eq!(used, eof_at, "every row taken, the EOF left");
    assert_eq!(r.next_seq(), packets.last().map_or(0, |p| p.0));
    let (s, p) = packets.last().unwrap();
    assert_eq!(r.feed(*s, p, p.len()), Step::Done);
    assert_eq!(r.into_response(), want);
    // A row with a sequence id out of order stops the run before it.
    let mut r = ResponseReader::new(Expect::Query, 0, 0);
    run(&mut r, &packets[..4]);
    let mut bad = packets[4..6].to_vec();
    bad[1].0 = bad[1].0.wrapping_add(9);
    assert_eq!(r.feed_rows(&framed(&bad)), 4 + bad[0].1.len());
    assert_eq!(r.response().rows, 2);
}

/// A recycled reader renewed in place is the reader `new` makes.
#[test]
fn a_renewed_reader_is_a_new_one() {
    let mut r = ResponseReader::new(Expect::Query, 0, 0).eof_unknown();
    let packets = text_rows(b"db", &[b"x", b"yy"], false);
    run(&mut r, &packets);
    let _ = r.take_response();
    for (e, unknown) in [(Expect::Fetch, false), (Expect::Execute, true)] {
        r.renew(e, caps::DEPRECATE_EOF, 3, unknown);
        let mut want = ResponseReader::new(e, caps::DEPRECATE_EOF, 3);
        if unknown {
            want = want.eof_unknown();
        }
        assert_eq!(format!("{r:?}"), format!("{want:?}"));
    }
}

/// The one-byte-length fast path finds the same name span as the length-encoded reader, and
/// hands longer, malformed and cut-short definitions to it.
#[test]
fn column_names_fast_path_matches_reader() {
    let mut long = Vec::new();
    for (i, s) in [&b"def"[..], b"db", b"t", b"t", &[b'n'; 300][..], b"n"]
        .iter()
        .enumerate()
    {
        if i == 4 {
            long.extend_from_slice(&[0xfc, 44, 1]);
        } else {
            long.push(s.len() as u8);
        }
        long.extend_from_slice(s);
    }
    long.extend_from_slice(&[0x0c, 45, 0, 11, 0, 0, 0, 3, 0, 0, 0, 0, 0]);
    let plain = col(b"id", b"db", 3);
    let mut cases = vec![plain.clone(), long.clone(), Vec::new(), vec![0xfb; 20]];
    cases.extend((0..plain.len()).map(|n| plain[..n].to_vec()));
    cases.extend((0..40).map(|n| long[..n].to_vec()));
    let mut null_name = plain.clone();
    null_name[7] = 0xfb;
    cases.push(null_name);
    for c in &cases {
        assert_eq!(
            ResponseReader::column_names(c),
            ResponseReader::column_names_slow(c),
            "{c:?}"
        );
    }
    assert_eq!(ResponseReader::column_names(&plain), Some((7, 17)));
    assert!(ResponseReader::column_names(&long).is_some());
    assert_eq!(ResponseReader::column_names(&plain[..16]), None);
}

/// A remembered column hash is the hash itself: for definitions met again, ones sharing a slot,
/// cut-short and over-long ones, in any order.
#[test]
fn remembered_column_hashes_equal_computed_ones() {
    let mut defs: Vec<Vec<u8>> = Vec::new();
    for t in 0..40u8 {
        let mut d = col(&[b'c', b'0' + t % 10], &[b'd', t], t % 20);
        defs.push(d.clone());
        d.truncate(usize::from(t) % d.len());
        defs.push(d);
    }
    defs.push(vec![1; 200]);
    defs.push(vec![0xfb; 88]);
    for round in 0..3 {
        for (i, d) in defs.iter().enumerate() {
            if (i + round) % 3 == 0 {
                continue;
            }
            assert_eq!(memo_column_hash(d), ResponseReader::column_hash(d), "{d:?}");
        }
    }
}

/// The short OK fast path reads what the general OK reader reads.
#[test]
fn short_ok_fast_path_matches_general_reader() {
    for caps in [0, caps::SESSION_TRACK] {
        for pl in [
            vec![0, 1, 2, 0x02, 0x40, 3, 0],
            vec![0xfe, 0, 0, 0x0a, 0, 0, 0],
            vec![0, 0xfa, 0xfa, 0xff, 0xff, 0xff, 0xff],
            vec![0, 0xfb, 0, 2, 0, 0, 0],
            vec![0, 0, 0xfc, 2, 0, 0, 0],
        ] {
            let mut fast = ResponseReader::new(Expect::Simple, caps, 0);
            let mut slow = fast.clone();
            fast.resp.affected = 5;
            slow.resp.affected = 5;
            assert_eq!(fast.ok(&pl), slow.ok_slow(&pl), "{pl:?}");
            assert_eq!(fast.resp, slow.resp, "{pl:?}");
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
        }
    }
}

/// Affected rows summed over results saturate: a server's huge counts never overflow.
#[test]
fn affected_rows_of_many_results_saturate() {
    let mut r = ResponseReader::new(Expect::Simple, 0, 0);
    let huge = [
        0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0, 0x08, 0, 0, 0,
    ];
    assert!(r.ok(&huge), "MORE_RESULTS_EXISTS");
    assert!(r.ok(&huge));
    assert_eq!(r.resp.affected, u64::MAX);
    assert!(r.ok(&[0, 7, 0, 0x08, 0, 0, 0]));
    assert_eq!(r.resp.affected, u64::MAX);
}
