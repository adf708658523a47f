//! Pipelined commands and the rarer commands, from packet bytes: several commands outstanding,
//! SEND_LONG_DATA, MariaDB's stmt id -1 and bulk execute, STMT_RESET, STMT_FETCH, CHANGE_USER,
//! RESET_CONNECTION, query attributes and LOCAL INFILE; raw payloads as sent.

use super::*;
use crate::event::{Command, Value};

fn anomalies(ev: &[ConnEvent]) -> Vec<&Anomaly> {
    ev.iter()
        .filter_map(|e| match e {
            ConnEvent::Anomaly(a) if !matches!(a, Anomaly::Compressed) => Some(a),
            _ => None,
        })
        .collect()
}

/// PREPARE_OK for stmt `id` with `params` parameters and no columns (DEPRECATE_EOF: no EOFs).
fn prepare_ok(id: u8, params: u8) -> Vec<u8> {
    let mut v = pkt(1, &[0, id, 0, 0, 0, 0, 0, params, 0, 0, 0, 0]);
    for i in 0..params {
        v.extend(pkt(
            2 + i,
            b"\x03def\0\0\0\x01?\0\x0c\x3f\0\0\0\0\0\xfc\x80\0\0\0\0",
        ));
    }
    v
}

/// EXECUTE of stmt `id` with one BLOB parameter sent as long data and one LONG = `n`.
fn execute_blob_long(id: u32, n: u8) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0]);
    p.extend_from_slice(&[0, 1, 0xfc, 0, 0x03, 0]);
    p.extend_from_slice(&[n, 0, 0, 0]);
    p
}

fn long_data(id: u32, param: u16, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x18];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&param.to_le_bytes());
    p.extend_from_slice(data);
    p
}

#[test]
fn connector_j_batch_with_long_data_is_paired_in_order() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS, &mut t);
    c.handle_data(
        Direction::ToServer,
        &pkt(0, b"\x16INSERT INTO t (b, n) VALUES (?, ?)"),
        100,
    );
    c.handle_data(Direction::ToClient, &prepare_ok(3, 2), 110);
    // The batch: four commands in one segment before any response.
    let mut batch = pkt(0, &long_data(3, 0, b"blob-"));
    batch.extend(pkt(0, &long_data(3, 0, b"one")));
    batch.extend(pkt(0, &execute_blob_long(3, 1)));
    batch.extend(pkt(0, &long_data(3, 0, b"blob-two")));
    batch.extend(pkt(0, &execute_blob_long(3, 2)));
    c.handle_data(Direction::ToServer, &batch, 200);
    let mut oks = ok(1, 1, 2);
    oks.extend(ok(1, 1, 2));
    c.handle_data(Direction::ToClient, &oks, 250);
    let ev = events(&mut c);
    assert!(anomalies(&ev).is_empty(), "{:?}", anomalies(&ev));
    let cmds = commands(&ev);
    let names: Vec<_> = cmds.iter().map(|r| r.command.name()).collect();
    assert_eq!(
        names,
        [
            "COM_STMT_PREPARE",
            "COM_STMT_SEND_LONG_DATA",
            "COM_STMT_SEND_LONG_DATA",
            "COM_STMT_EXECUTE",
            "COM_STMT_SEND_LONG_DATA",
            "COM_STMT_EXECUTE"
        ]
    );
    assert_eq!(
        cmds.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    for (i, blob, n) in [(3, &b"blob-one"[..], 1), (5, b"blob-two", 2)] {
        let Command::StmtExecute {
            params,
            params_unknown,
            ..
        } = &cmds[i].command
        else {
            panic!("{:?}", cmds[i].command)
        };
        assert!(!params_unknown);
        let params = params.decode(&cmds[i].raw);
        assert_eq!(params[0].value, Value::Bytes(blob.into()));
        assert_eq!(params[1].value, Value::Int(n));
        assert_eq!(cmds[i].response.status, ResponseStatus::Ok);
        assert_eq!(cmds[i].response.affected, 1);
        assert!(!cmds[i].flags.response_incomplete);
        assert_eq!(cmds[i].prod_us(), Some(50));
    }
    assert_eq!(cmds[1].response.status, ResponseStatus::None);
    assert_eq!(&cmds[3].raw[..], &execute_blob_long(3, 1)[..]);
    assert_eq!(&cmds[2].raw[..], &long_data(3, 0, b"one")[..]);
}

#[test]
fn mariadb_prepare_and_execute_minus_one_pipelined() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS, &mut t);
    let mut both = pkt(0, b"\x16SELECT ?");
    let mut exec = vec![0x17, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 1, 0x08, 0];
    exec.extend_from_slice(&9u64.to_le_bytes());
    both.extend(pkt(0, &exec));
    c.handle_data(Direction::ToServer, &both, 100);
    let mut resp = prepare_ok(12, 1);
    // EXECUTE's result: one column, one binary row, OK.
    resp.extend(pkt(1, &[1]));
    resp.extend(pkt(
        2,
        b"\x03def\0\0\0\x01?\0\x0c\x3f\0\0\0\0\0\x08\x80\0\0\0\0",
    ));
    let mut row = vec![0, 0];
    row.extend_from_slice(&9u64.to_le_bytes());
    resp.extend(pkt(3, &row));
    resp.extend(pkt(4, &[0xfe, 0, 0, 2, 0, 0, 0]));
    c.handle_data(Direction::ToClient, &resp, 150);
    // MariaDB bulk execute (0xFA) of the same statement: OK.
    let mut bulk = vec![0xfa, 12, 0, 0, 0, 0x80, 0];
    bulk.extend_from_slice(&[0x08, 0, 0]);
    bulk.extend_from_slice(&5u64.to_le_bytes());
    c.handle_data(Direction::ToServer, &pkt(0, &bulk), 200);
    c.handle_data(Direction::ToClient, &ok(1, 1, 2), 210);
    let ev = events(&mut c);
    assert!(anomalies(&ev).is_empty(), "{:?}", anomalies(&ev));
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 3);
    let Command::StmtExecute {
        stmt_id,
        params,
        params_unknown,
        ..
    } = &cmds[1].command
    else {
        panic!()
    };
    assert_eq!(*stmt_id, u32::MAX);
    assert!(!params_unknown);
    assert_eq!(params.decode(&cmds[1].raw)[0].value, Value::Int(9));
    assert_eq!(cmds[1].response.rows, 1);
    assert!(cmds[1].response.checksum.is_some());
    assert_eq!(cmds[2].command, Command::Other { code: 0xfa });
    assert_eq!(cmds[2].response.affected, 1);
    assert_eq!(&cmds[2].raw[..], &bulk[..]);
}

#[test]
fn reset_fetch_change_user_and_reset_connection() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS, &mut t);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x16SELECT a FROM t"), 100);
    let mut r = pkt(1, &[0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    r.extend(pkt(
        2,
        b"\x03def\0\0\0\x01a\0\x0c\x3f\0\0\0\0\0\x08\x80\0\0\0\0",
    ));
    c.handle_data(Direction::ToClient, &r, 110);
    // EXECUTE with a read-only cursor: definitions, then EOF with CURSOR_EXISTS.
    c.handle_data(
        Direction::ToServer,
        &pkt(0, &[0x17, 4, 0, 0, 0, 1, 1, 0, 0, 0]),
        120,
    );
    let mut r = pkt(1, &[1]);
    r.extend(pkt(
        2,
        b"\x03def\0\0\0\x01a\0\x0c\x3f\0\0\0\0\0\x08\x80\0\0\0\0",
    ));
    r.extend(pkt(3, &[0xfe, 0, 0, 0x42, 0, 0, 0]));
    c.handle_data(Direction::ToClient, &r, 130);
    c.handle_data(
        Direction::ToServer,
        &pkt(0, &[0x1c, 4, 0, 0, 0, 2, 0, 0, 0]),
        140,
    );
    let mut r = pkt(1, &[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    r.extend(pkt(2, &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0]));
    r.extend(pkt(3, &[0xfe, 0, 0, 0xc2, 0, 0, 0]));
    c.handle_data(Direction::ToClient, &r, 150);
    c.handle_data(Direction::ToServer, &pkt(0, &[0x1a, 4, 0, 0, 0]), 160);
    c.handle_data(Direction::ToClient, &ok(1, 0, 2), 165);
    // CHANGE_USER answered by an auth switch, the client's auth data, then OK.
    let mut cu = b"\x11other\0\x14".to_vec();
    cu.extend_from_slice(&[7; 20]);
    cu.extend_from_slice(b"db2\0\x2d\0mysql_native_password\0");
    c.handle_data(Direction::ToServer, &pkt(0, &cu), 170);
    c.handle_data(
        Direction::ToClient,
        &pkt(1, b"\xfemysql_native_password\0abcdefghij0123456789\0"),
        175,
    );
    c.handle_data(Direction::ToServer, &pkt(2, &[5; 20]), 180);
    c.handle_data(Direction::ToClient, &ok(3, 0, 2), 185);
    c.handle_data(Direction::ToServer, &pkt(0, &[0x1f]), 190);
    c.handle_data(Direction::ToClient, &ok(1, 0, 2), 195);
    c.handle_data(Direction::ToServer, &pkt(0, b"\x03SELECT 1"), 200);
    let ev = events(&mut c);
    assert!(anomalies(&ev).is_empty(), "{:?}", anomalies(&ev));
    c.handle_close(300);
    let ev2 = events(&mut c);
    let cmds: Vec<_> = commands(&ev).into_iter().chain(commands(&ev2)).collect();
    let names: Vec<_> = cmds.iter().map(|r| r.command.name()).collect();
    assert_eq!(
        names,
        [
            "COM_STMT_PREPARE",
            "COM_STMT_EXECUTE",
            "COM_STMT_FETCH",
            "COM_STMT_RESET",
            "COM_CHANGE_USER",
            "COM_RESET_CONNECTION",
            "COM_QUERY"
        ]
    );
    assert_eq!(cmds[2].response.rows, 2);
    assert!(cmds[2].response.checksum.is_some());
    assert_eq!(cmds[4].response.status, ResponseStatus::Ok);
    let ids = super::identities(&cmds);
    assert_eq!(ids[5].user.as_deref(), Some("other"));
    assert_eq!(ids[5].db.as_deref(), Some("db2"));
    assert!(cmds[6].flags.response_incomplete);
    assert!(cmds[..6].iter().all(|r| !r.flags.response_incomplete));
}

#[test]
fn query_attributes_and_local_infile_bytes() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let all = CAPS | caps::QUERY_ATTRIBUTES | caps::LOCAL_FILES;
    c.handle_data(Direction::ToClient, &greeting(all), 10);
    c.handle_data(Direction::ToServer, &response41(all, "u", Some("d")), 20);
    c.handle_data(Direction::ToClient, &ok(2, 0, 2), 30);
    let load = b"\x03\0\x01LOAD DATA LOCAL INFILE '/tmp/a.csv' INTO TABLE t";
    c.handle_data(Direction::ToServer, &pkt(0, load), 100);
    c.handle_data(Direction::ToClient, &pkt(1, b"\xfb/tmp/a.csv"), 110);
    c.handle_data(Direction::ToServer, &pkt(2, b"1,a\n2,b\n"), 120);
    c.handle_data(Direction::ToServer, &pkt(3, b"3,c\n"), 121);
    c.handle_data(Direction::ToServer, &pkt(4, b""), 122);
    c.handle_data(Direction::ToClient, &ok(5, 3, 2), 140);
    let ev = events(&mut c);
    assert!(anomalies(&ev).is_empty(), "{:?}", anomalies(&ev));
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 1);
    let r = cmds[0];
    assert_eq!(
        r.command.sql(),
        Some(&b"LOAD DATA LOCAL INFILE '/tmp/a.csv' INTO TABLE t"[..])
    );
    assert_eq!(&r.raw[..], &load[..]);
    assert_eq!(r.infile.as_deref(), Some(&b"1,a\n2,b\n3,c\n"[..]));
    assert!(r.response.local_infile);
    assert_eq!(r.response.infile_name.as_deref(), Some("/tmp/a.csv"));
    assert_eq!(r.response.affected, 3);
    assert_eq!(r.prod_us(), Some(18));
}

#[test]
fn a_misread_response_does_not_stall_the_queue() {
    let mut c = Connection::new(DecoderConfig::default(), false);
    let mut t = 0;
    login(&mut c, CAPS, &mut t);
    // Two queries pipelined; the first one's response is cut short (a lost row count packet
    // would look the same): its OK never comes, the second's response starts at seq 1.
    let mut q = pkt(0, b"\x03SELECT 1");
    q.extend(pkt(0, b"\x03SELECT 2"));
    c.handle_data(Direction::ToServer, &q, 100);
    let mut r = pkt(1, &[1]);
    r.extend(pkt(
        2,
        b"\x03def\0\0\0\x011\0\x0c\x3f\0\0\0\0\0\x08\x80\0\0\0\0",
    ));
    r.extend(pkt(3, &[1, b'1']));
    r.extend(ok(1, 0, 2));
    c.handle_data(Direction::ToClient, &r, 110);
    let ev = events(&mut c);
    let cmds = commands(&ev);
    assert_eq!(cmds.len(), 2);
    assert!(cmds[0].flags.response_incomplete);
    assert_eq!(cmds[1].response.status, ResponseStatus::Ok);
    assert!(!cmds[1].flags.response_incomplete);
}
