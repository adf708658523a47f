//! Decoder tests on byte streams built packet by packet.

use super::*;
use crate::event::{Command, ResponseStatus};

fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

fn events(c: &mut Connection) -> Vec<ConnEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Each record's db/user as a consumer resolves them (records give only changes).
pub(super) fn identities(cmds: &[&CommandRecord]) -> Vec<crate::event::Identity> {
    let mut id = crate::event::Identity::default();
    cmds.iter()
        .map(|c| {
            id.absorb(c);
            id.clone()
        })
        .collect()
}

fn commands(ev: &[ConnEvent]) -> Vec<&CommandRecord> {
    ev.iter()
        .filter_map(|e| match e {
            ConnEvent::Command(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

const CAPS: u32 = caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::CONNECT_WITH_DB
    | caps::DEPRECATE_EOF
    | 1;

fn greeting(server_caps: u32) -> Vec<u8> {
    let mut p = vec![0x0a];
    p.extend_from_slice(b"10.11.6-MariaDB\0");
    p.extend_from_slice(&42u32.to_le_bytes());
    p.extend_from_slice(b"12345678\0");
    p.extend_from_slice(&(server_caps as u16).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"123456789012\0");
    p.extend_from_slice(b"mysql_native_password\0");
    pkt(0, &p)
}

fn response41(client_caps: u32, user: &str, db: Option<&str>) -> Vec<u8> {
    let mut p = client_caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(20);
    p.extend_from_slice(&[9; 20]);
    if let Some(db) = db {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(b"mysql_native_password\0");
    pkt(1, &p)
}

fn ok(seq: u8, affected: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0, affected, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    pkt(seq, &p)
}

fn login(c: &mut Connection, client_caps: u32, t: &mut u64) {
    *t += 10;
    c.handle_data(
        Direction::ToClient,
        &greeting(CAPS | caps::COMPRESS | caps::SSL),
        *t,
    );
    *t += 10;
    c.handle_data(
        Direction::ToServer,
        &response41(client_caps, "sbtest", Some("sbtest")),
        *t,
    );
    *t += 10;
    c.handle_data(Direction::ToClient, &ok(2, 0, 2), *t);
}

fn result_set(seq0: u8, rows: &[&[u8]], deprecate: bool) -> Vec<u8> {
    let mut v = pkt(seq0, &[1]);
    let mut col = Vec::new();
    for s in [&b"def"[..], b"sbtest", b"t", b"t", b"c", b"c"] {
        col.push(s.len() as u8);
        col.extend_from_slice(s);
    }
    col.extend_from_slice(&[0x0c, 45, 0, 0, 1, 0, 0, 254, 0, 0, 0, 0, 0]);
    v.extend(pkt(seq0 + 1, &col));
    let mut seq = seq0 + 2;
    if !deprecate {
        v.extend(pkt(seq, &[0xfe, 0, 0, 2, 0]));
        seq += 1;
    }
    for r in rows {
        let mut p = vec![r.len() as u8];
        p.extend_from_slice(r);
        v.extend(pkt(seq, &p));
        seq += 1;
    }
    if deprecate {
        v.extend(pkt(seq, &[0xfe, 0, 0, 2, 0, 0, 0]));
    } else {
        v.extend(pkt(seq, &[0xfe, 0, 0, 2, 0]));
    }
    v
}

#[test]
fn login_query_result_error_and_latency() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 1_000;
    login(&mut c, CAPS, &mut t);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x03SELECT c FROM t"), 2_000);
    c.handle_data(
        Direction::ToClient,
        &result_set(1, &[b"aa", b"bb", b"\xfe"], true),
        2_350,
    );
    c.handle_data(
        Direction::ToServer,
        &pkt(0, b"\x03SELECT * FROM nope"),
        3_000,
    );
    let mut err = vec![0xff, 0x7a, 0x04, b'#'];
    err.extend_from_slice(b"42S02Table 'sbtest.nope' doesn't exist");
    c.handle_data(Direction::ToClient, &pkt(1, &err), 3_100);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x02other"), 4_000);
    c.handle_data(Direction::ToClient, &ok(1, 0, 2), 4_010);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x01"), 5_000);
    let ev = events(&mut c);
    let login = ev
        .iter()
        .find_map(|e| match e {
            ConnEvent::Login(l) => Some(l),
            _ => None,
        })
        .unwrap();
    assert_eq!(login.user.as_deref(), Some("sbtest"));
    assert_eq!(login.db.as_deref(), Some("sbtest"));
    assert_eq!(login.server_version.as_deref(), Some("10.11.6-MariaDB"));
    assert!(login.ok && !login.tls && !login.compressed);
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 4);
    assert_eq!(cmds[0].response.rows, 3);
    assert_eq!(cmds[0].response.columns, 1);
    assert_eq!(cmds[0].prod_us(), Some(350));
    assert_eq!(cmds[1].response.status, ResponseStatus::Err);
    assert_eq!(cmds[1].response.error_code, Some(1146));
    assert_eq!(cmds[1].response.sql_state.as_deref(), Some("42S02"));
    let dbs = identities(&cmds);
    assert_eq!(dbs[2].db.as_deref(), Some("sbtest"));
    assert_eq!(cmds[3].command, Command::Quit);
    assert_eq!(dbs[3].db.as_deref(), Some("other"));
    // Records carry db/user only when they changed: the first, and the one after the USE.
    assert!(cmds[0].db.is_some() && cmds[1].db.is_none() && cmds[2].db.is_none());
    assert_eq!(cmds[3].db.as_deref(), Some("other"));
    assert_eq!(
        cmds.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn classic_eof_multi_results_and_split_feeding_agree() {
    let caps_no_dep = CAPS & !caps::DEPRECATE_EOF;
    let mut stream: Vec<(Direction, Vec<u8>)> = vec![
        (Direction::ToClient, greeting(CAPS)),
        (Direction::ToServer, response41(caps_no_dep, "u", None)),
        (Direction::ToClient, ok(2, 0, 2)),
        (Direction::ToServer, pkt(0, b"\x03CALL p()")),
    ];
    let mut r = result_set(1, &[b"x"], false);
    let n = r.len();
    r[n - 2] = 0x0a;
    r.extend(ok(5, 0, 2));
    stream.push((Direction::ToClient, r));
    stream.push((Direction::ToServer, pkt(0, b"\x03UPDATE t SET a=1")));
    stream.push((Direction::ToClient, ok(1, 3, 2)));
    let run = |chunk: usize| {
        let mut c = Connection::new(DecoderConfig::default(), false);
        for (i, (d, bytes)) in stream.iter().enumerate() {
            for part in bytes.chunks(chunk) {
                c.handle_data(*d, part, i as u64 * 100);
            }
        }
        c.handle_close(10_000);
        events(&mut c)
    };
    let whole = run(usize::MAX);
    for chunk in [1, 2, 3, 7] {
        assert_eq!(run(chunk), whole, "chunk {chunk}");
    }
    let cmds = commands(&whole);
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0].response.result_sets, 1);
    assert_eq!(cmds[0].response.rows, 1);
    assert_eq!(cmds[0].response.status, ResponseStatus::Ok);
    assert!(!cmds[0].flags.response_incomplete);
    assert_eq!(cmds[1].response.affected, 3);
}

#[test]
fn prepare_execute_close_with_binary_rows() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS, &mut t);
    c.handle_data(
        Direction::ToServer,
        &pkt(0, b"\x16SELECT c FROM t WHERE id=?"),
        100,
    );
    let mut prep = vec![0x00, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0];
    let mut resp = pkt(1, &prep);
    resp.extend(pkt(
        2,
        b"\x03def\0\0\0\x01?\0\x0c\x3f\0\0\0\0\0\x08\x80\0\0\0\0",
    ));
    resp.extend(pkt(
        3,
        b"\x03def\0\0\0\x01c\0\x0c\x3f\0\0\0\0\0\xfe\0\0\0\0\0",
    ));
    c.handle_data(Direction::ToClient, &resp, 110);
    let exec = [
        0x17, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 42, 0, 0, 0, 0, 0, 0, 0,
    ];
    c.handle_data(Direction::ToServer, &pkt(0, &exec), 200);
    let mut rows = pkt(1, &[1]);
    rows.extend(pkt(
        2,
        b"\x03def\0\0\0\x01c\0\x0c\x3f\0\0\0\0\0\xfe\0\0\0\0\0",
    ));
    rows.extend(pkt(3, &[0x00, 0x00, 2, b'h', b'i']));
    rows.extend(pkt(4, &[0xfe, 0, 0, 2, 0, 0, 0]));
    c.handle_data(Direction::ToClient, &rows, 260);
    c.handle_data(Direction::ToServer, &pkt(0, &[0x19, 7, 0, 0, 0]), 300);
    prep.clear();
    let cmds_ev = events(&mut c);
    let cmds = commands(&cmds_ev);
    assert_eq!(cmds.len(), 3);
    assert_eq!(
        cmds[0]
            .response
            .prepare_ok
            .as_ref()
            .map(|p| (p.stmt_id, p.num_params, p.num_columns)),
        Some((7, 1, 1))
    );
    match &cmds[1].command {
        Command::StmtExecute {
            stmt_id,
            params,
            params_unknown,
            ..
        } => {
            assert_eq!(*stmt_id, 7);
            assert!(!params_unknown);
            assert_eq!(
                params.decode(&cmds[1].raw)[0].value,
                crate::event::Value::Int(42)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cmds[1].response.rows, 1);
    assert_eq!(cmds[1].prod_us(), Some(60));
    assert_eq!(cmds[2].command, Command::StmtClose { stmt_id: 7 });
    assert_eq!(cmds[2].response.status, ResponseStatus::None);
}

#[test]
fn big_statement_is_one_command_and_cap_counts_too_large() {
    let sql_len = 18 << 20;
    let mut payload = vec![0x03];
    payload.extend(std::iter::repeat_n(b'x', sql_len));
    let mut wire = Vec::new();
    let mut seq = 0u8;
    for chunk in payload.chunks(0xff_ffff) {
        wire.extend_from_slice(&(chunk.len() as u32).to_le_bytes()[..3]);
        wire.push(seq);
        wire.extend_from_slice(chunk);
        seq += 1;
    }
    for (cap, too_large) in [(64 << 20, false), (1 << 20, true)] {
        let mut c = Connection::new(
            DecoderConfig {
                max_command_bytes: cap,
            },
            false,
        );
        let mut t = 0;
        login(&mut c, CAPS, &mut t);
        for part in wire.chunks(1448) {
            c.handle_data(Direction::ToServer, part, 50);
        }
        c.handle_data(Direction::ToClient, &ok(seq, 0, 2), 60);
        let ev = events(&mut c);
        let cmds = commands(&ev);
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].flags.too_large, too_large);
        assert_eq!(
            cmds[0].command.sql().map(<[u8]>::len),
            Some(if too_large { 0 } else { sql_len })
        );
        assert_eq!(
            ev.contains(&ConnEvent::Anomaly(Anomaly::TooLarge)),
            too_large
        );
    }
}

#[test]
fn ssl_request_marks_tls_and_ignores_the_rest() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    c.handle_data(Direction::ToClient, &greeting(CAPS | caps::SSL), 1);
    let mut ssl = (CAPS | caps::SSL).to_le_bytes().to_vec();
    ssl.extend_from_slice(&[0; 28]);
    c.handle_data(Direction::ToServer, &pkt(1, &ssl), 2);
    c.handle_data(Direction::ToServer, &[0x16, 3, 1, 0, 200, 1, 2, 3], 3);
    c.handle_data(Direction::ToClient, &[0x16, 3, 3, 0, 90, 2], 4);
    c.handle_close(5);
    let ev = events(&mut c);
    assert!(ev.contains(&ConnEvent::Anomaly(Anomaly::Tls)));
    assert!(ev.iter().any(|e| matches!(e, ConnEvent::Login(l) if l.tls)));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, ConnEvent::Anomaly(Anomaly::DecodeError(_)))));
    assert!(commands(&ev).is_empty());
}

#[test]
fn compressed_session_decodes_both_ways() {
    use flate2::write::ZlibEncoder;
    use std::io::Write;
    fn comp(seq: u8, plain: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(plain).unwrap();
        let z = e.finish().unwrap();
        let mut v = (z.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(&(plain.len() as u32).to_le_bytes()[..3]);
        v.extend_from_slice(&z);
        v
    }
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS | caps::COMPRESS, &mut t);
    c.handle_data(Direction::ToServer, &comp(0, &pkt(0, b"\x03SELECT 1")), 100);
    c.handle_data(
        Direction::ToClient,
        &comp(1, &result_set(1, &[b"1"], true)),
        150,
    );
    let ev = events(&mut c);
    assert!(ev.contains(&ConnEvent::Anomaly(Anomaly::Compressed)));
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].command.sql(), Some(&b"SELECT 1"[..]));
    assert_eq!(cmds[0].response.rows, 1);
}

#[test]
fn midstream_and_gap_resync() {
    let mut c = Connection::new(DecoderConfig::default(), true);
    c.handle_data(Direction::ToClient, &[1, 2, 3, 4, 5], 1);
    c.handle_data(Direction::ToServer, &[0x33, 0x22, 0x11, 9, 9], 2);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x03SELECT 1"), 3);
    c.handle_data(Direction::ToClient, &result_set(1, &[b"1", b"2"], false), 4);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x03SELECT 2"), 5);
    c.handle_data(Direction::ToClient, &result_set(1, &[b"1"], false), 6);
    c.handle_gap(Direction::ToServer, 100, 7);
    c.handle_data(Direction::ToServer, b"tail of a lost statement", 8);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x0e"), 9);
    c.handle_data(Direction::ToClient, &ok(1, 0, 2), 10);
    let ev = events(&mut c);
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 3);
    assert!(cmds.iter().all(|c| c.flags.midstream));
    assert_eq!(cmds[0].response.rows, 2);
    assert_eq!(cmds[1].response.rows, 1);
    assert_eq!(cmds[2].command, Command::Ping);
    assert!(cmds[2].flags.after_gap);
    assert!(ev.iter().any(|e| matches!(e, ConnEvent::Login(l) if l.midstream && l.capabilities & caps::DEPRECATE_EOF == 0)));
    assert_eq!(
        ev.iter()
            .filter(|e| **e == ConnEvent::Anomaly(Anomaly::Resync))
            .count(),
        2
    );
    assert!(ev.contains(&ConnEvent::Anomaly(Anomaly::Desync)));
}

#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..200 {
        let mut c = Connection::new(
            DecoderConfig {
                max_command_bytes: 1 << 16,
            },
            round % 2 == 0,
        );
        for i in 0..50 {
            let n = (x % 300) as usize;
            let mut buf = Vec::with_capacity(n);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let d = if i % 2 == 0 {
                Direction::ToServer
            } else {
                Direction::ToClient
            };
            c.handle_data(d, &buf, i);
            if i % 17 == 0 {
                c.handle_gap(d, 5, i);
            }
            while c.poll_event().is_some() {}
        }
        c.handle_close(99);
        while c.poll_event().is_some() {}
    }
}

#[test]
fn mariadb_progress_report_is_not_the_response() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS, &mut t);
    c.handle_data(
        Direction::ToServer,
        &pkt(0, b"\x03LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE t"),
        100,
    );
    c.handle_data(Direction::ToClient, &pkt(1, b"\xfb/tmp/x"), 110);
    c.handle_data(Direction::ToServer, &pkt(2, b"1,a\n2,b\n"), 120);
    c.handle_data(Direction::ToServer, &pkt(3, b""), 121);
    c.handle_data(
        Direction::ToClient,
        &pkt(4, b"\xff\xff\xff\x01\x01\x00\x00\x00\x00\x00\x00\x04stage"),
        130,
    );
    c.handle_data(Direction::ToClient, &ok(5, 2, 2), 140);
    let ev = events(&mut c);
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].response.local_infile);
    assert_eq!(cmds[0].response.status, ResponseStatus::Ok);
    assert_eq!(cmds[0].response.affected, 2);
    assert_eq!(cmds[0].prod_us(), Some(19), "from the last uploaded byte");
}

#[test]
fn use_detection_takes_multibyte_and_non_utf8_sql() {
    assert_eq!(use_statement("/*中*/ SET @x=1".as_bytes()), None);
    assert_eq!(use_statement("中文".as_bytes()), None);
    assert_eq!(use_statement("use 中文".as_bytes()), Some("中文".into()));
    assert_eq!(use_statement(b"USE `db`;"), Some("db".into()));
    assert_eq!(use_statement(b"use \xff\xfe"), None);
    assert_eq!(use_statement(b"us\xe4"), None);
    for len in 0..8 {
        let _ = use_statement(&"中文字".as_bytes()[..len]);
    }
}

mod handshake;
mod pipelining;
