//! Planner tests: hand-made edge cases here; whole driver captures and arbitrary sessions
//! against a fake test server in [`fixtures`].

mod clock;
mod fixtures;
mod retry;

use mrte_capture::event::{
    CloseReason, Command, CommandFlags, FlowKey, Login, Response, SessionClose,
};

use super::*;
use crate::filter::Filters;
use crate::target::TargetDsn;

/// The run's defaults, without the prod clock's `SET timestamp` sends (they have their own
/// tests, in [`clock`]), so that the others see the captured commands alone.
fn cfg() -> PlanConfig {
    let mut c = PlanConfig::new(
        TargetDsn::parse_no_env("mysql://tester:pw@127.0.0.1:3307/testdb").unwrap(),
    );
    c.prod_clock = false;
    c.prod_insert_id = false;
    c
}

fn open(midstream: bool) -> SessionOpen {
    SessionOpen {
        id: 1,
        key: FlowKey {
            client: "198.18.0.1:40000".parse().unwrap(),
            server: "198.18.0.2:3306".parse().unwrap(),
        },
        ts_us: 1,
        midstream,
    }
}

fn login(user: &str, db: Option<&str>) -> Login {
    Login {
        ts_us: 2,
        user: Some(user.into()),
        db: db.map(Into::into),
        capabilities: 0x000f_a20f,
        mariadb_capabilities: 0,
        auth_plugin: None,
        collation: None,
        server_version: None,
        connection_id: Some(9),
        tls: false,
        compressed: false,
        midstream: false,
        ok: true,
        error_code: None,
    }
}

fn planner_with(c: PlanConfig) -> Planner {
    let mut p = Planner::new(Arc::new(c), &open(false));
    p.handle_event(SessionEvent::Login(Box::new(login("app", Some("shop")))));
    p
}

/// A command captured at `ts` whose prod response ended at `end`.
fn rec(seq: u64, ts: u64, end: Option<u64>, command: Command) -> Box<CommandRecord> {
    Box::new(CommandRecord {
        seq,
        ts_us: ts,
        command,
        response: Response {
            status: if end.is_some() {
                ResponseStatus::Ok
            } else {
                ResponseStatus::None
            },
            last_byte_us: end,
            first_byte_us: end,
            ..Response::default()
        },
        db: None,
        user: None,
        flags: CommandFlags::default(),
        raw: Bytes::new(),
        infile: None,
        commit: Default::default(),
    })
}

fn prepare(seq: u64, ts: u64, end: u64, sql: &str, prod_id: u32) -> Box<CommandRecord> {
    let mut r = rec(
        seq,
        ts,
        Some(end),
        Command::StmtPrepare {
            sql: bytes::Bytes::copy_from_slice(sql.as_bytes()),
        },
    );
    r.response.prepare_ok = Some(PrepareOk {
        stmt_id: prod_id,
        ..PrepareOk::default()
    });
    r
}

fn execute(seq: u64, ts: u64, end: u64, id: u32) -> Box<CommandRecord> {
    rec(
        seq,
        ts,
        Some(end),
        Command::StmtExecute {
            stmt_id: id,
            flags: 0,
            params: Default::default(),
            params_unknown: false,
        },
    )
}

fn query(seq: u64, ts: u64, sql: &[u8]) -> Box<CommandRecord> {
    rec(
        seq,
        ts,
        Some(ts + 1),
        Command::Query {
            sql: bytes::Bytes::copy_from_slice(sql),
            attributes: vec![],
        },
    )
}

fn drain(p: &mut Planner) -> Vec<Action> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

fn sends(actions: &[Action]) -> Vec<&SendPlan> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn prepare_ok(id: u32) -> PrepareOk {
    PrepareOk {
        stmt_id: id,
        ..PrepareOk::default()
    }
}

#[test]
fn pipelined_prepare_and_execute_minus_one_go_out_together() {
    let mut p = planner_with(cfg());
    p.handle_command(prepare(0, 10, 20, "select ?", 5));
    // Sent at 11, before the PREPARE's response ended at 20: pipelined.
    p.handle_command(execute(1, 11, 30, LAST_PREPARED));
    let a = drain(&mut p);
    assert!(matches!(&a[0], Action::Connect(c) if c.db.as_deref() == Some("shop")));
    let s = sends(&a);
    assert_eq!(s.len(), 2, "{a:?}");
    assert_eq!(s[0].payload[0], 0x16);
    assert!(!s[0].pipelined);
    assert_eq!(rewrite::stmt_id(&s[1].payload), Some(LAST_PREPARED));
    assert!(s[1].pipelined);
    assert_eq!(p.outstanding(), 2);
    assert!(!p.is_waiting());
}

#[test]
fn execute_waits_for_the_test_id_then_is_rewritten() {
    let mut p = planner_with(cfg());
    p.handle_command(prepare(0, 10, 20, "select ?", 5));
    p.handle_command(execute(1, 11, 30, 5));
    let a = drain(&mut p);
    assert_eq!(sends(&a).len(), 1);
    assert!(p.is_waiting());
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(77)));
    let a = drain(&mut p);
    let s = sends(&a);
    assert_eq!(s.len(), 1);
    assert_eq!(rewrite::stmt_id(&s[0].payload), Some(77));
    let Origin::Captured(info) = &s[0].origin else {
        panic!()
    };
    assert_eq!(info.seq, 1);
    assert_eq!(info.example, "select ?");
    // Same ids on both sides: the captured bytes go as they are.
    p.handle_command(prepare(2, 40, 41, "select 2", 6));
    drain(&mut p);
    p.handle_response(ResponseStatus::Ok, None);
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(6)));
    p.handle_command(execute(3, 50, 51, 6));
    let a = drain(&mut p);
    assert_eq!(rewrite::stmt_id(&sends(&a)[0].payload), Some(6));
}

#[test]
fn minus_one_is_mapped_when_the_test_side_prepared_something_else_since() {
    let mut p = planner_with(cfg());
    p.handle_command(prepare(0, 10, 11, "select 1", 5));
    drain(&mut p);
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(70)));
    assert!(p.handle_connection_lost().is_empty());
    p.handle_command(execute(1, 20, 21, LAST_PREPARED));
    let a = drain(&mut p);
    assert!(matches!(a[0], Action::Reconnect(_)), "{a:?}");
    let s = sends(&a);
    assert_eq!(s.len(), 1);
    assert_eq!(&s[0].payload[..], b"\x16select 1");
    assert!(matches!(
        s[0].origin,
        Origin::Synthetic(Synthetic::Reprepare { for_seq: 1 })
    ));
    assert!(p.is_waiting());
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(71)));
    let a = drain(&mut p);
    assert_eq!(rewrite::stmt_id(&sends(&a)[0].payload), Some(71));
}

#[test]
fn unknown_and_failed_statements_are_lost_by_reason() {
    let mut p = planner_with(cfg());
    p.handle_command(execute(0, 10, 11, 42));
    p.handle_command(execute(1, 12, 13, LAST_PREPARED));
    let a = drain(&mut p);
    let lost: Vec<_> = a
        .iter()
        .filter_map(|a| match a {
            Action::Lose { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(lost, [LoseReason::UnknownStatement; 2]);
    // The test PREPARE fails: one re-PREPARE for the execute, then it is lost.
    p.handle_command(prepare(2, 20, 21, "select * from missing", 5));
    drain(&mut p);
    p.handle_response(ResponseStatus::Err, None);
    p.handle_command(execute(3, 30, 31, 5));
    let a = drain(&mut p);
    assert!(matches!(
        sends(&a)[0].origin,
        Origin::Synthetic(Synthetic::Reprepare { .. })
    ));
    p.handle_response(ResponseStatus::Err, None);
    let a = drain(&mut p);
    assert!(
        matches!(&a[..], [Action::Lose { reason: LoseReason::PrepareFailed, cmd }] if cmd.seq == 3),
        "{a:?}"
    );
    assert_eq!(LoseReason::PrepareFailed.as_str(), "prepare_failed");
    assert_eq!(
        serde_json::to_string(&LoseReason::UnknownStatement).unwrap(),
        "\"unknown_statement\""
    );
}

#[test]
fn db_map_rewrites_login_init_db_and_use() {
    let mut c = cfg();
    c.identities.add_db_map("shop=shop_test").unwrap();
    c.identities.add_db_map("数据库=测试库").unwrap();
    c.identities.add_user_map("app=replayer:secret").unwrap();
    let mut p = planner_with(c);
    p.handle_command(rec(
        0,
        10,
        Some(11),
        Command::InitDb {
            schema: "数据库".into(),
        },
    ));
    p.handle_command(query(1, 20, "USE `数据库`".as_bytes()));
    p.handle_command(query(2, 30, b"use shop"));
    p.handle_command(query(3, 40, b"select 'USE shop'"));
    let a = drain(&mut p);
    let Action::Connect(c) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(
        (c.user.as_str(), c.password.as_deref(), c.db.as_deref()),
        ("replayer", Some("secret"), Some("shop_test"))
    );
    assert!(!format!("{c:?}").contains("secret"));
    let s = sends(&a);
    assert_eq!(&s[0].payload[..], "\u{2}测试库".as_bytes());
    assert_eq!(&s[1].payload[..], "\u{3}USE `测试库`".as_bytes());
    assert_eq!(&s[2].payload[..], b"\x03use shop_test");
    assert_eq!(&s[3].payload[..], b"\x03select 'USE shop'");
}

#[test]
fn change_user_reauthenticates_mapped_and_forgets_statements() {
    let mut c = cfg();
    c.identities.add_user_map("admin=admin_t:pw2").unwrap();
    c.identities.add_db_map("ops=ops_t").unwrap();
    let mut p = planner_with(c);
    p.handle_command(prepare(0, 10, 11, "select 1", 5));
    drain(&mut p);
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(55)));
    p.handle_command(rec(
        1,
        20,
        Some(21),
        Command::ChangeUser {
            user: "admin".into(),
            db: Some("ops".into()),
            auth_plugin: None,
        },
    ));
    // The statement is gone on both sides: running it again gets the test server's own error
    // (as prod got its own), closing it is a no-op on both (mysql2 closes its cache so).
    p.handle_command(execute(2, 30, 31, 5));
    p.handle_command(rec(3, 40, None, Command::StmtClose { stmt_id: 5 }));
    let a = drain(&mut p);
    let Action::ChangeUser(cu) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(
        (cu.user.as_str(), cu.password.as_deref(), cu.db.as_deref()),
        ("admin_t", Some("pw2"), Some("ops_t"))
    );
    let s = sends(&a);
    assert_eq!(s.len(), 2, "{a:?}");
    assert_eq!(rewrite::stmt_id(&s[0].payload), Some(55));
    assert_eq!(rewrite::stmt_id(&s[1].payload), Some(55));
    // A statement the connection never had is still lost by reason.
    p.handle_command(execute(4, 50, 51, 9));
    assert!(matches!(
        drain(&mut p)[..],
        [Action::Lose {
            reason: LoseReason::UnknownStatement,
            ..
        }]
    ));
}

#[test]
fn local_infile_data_goes_with_the_query() {
    let mut p = planner_with(cfg());
    let mut r = query(0, 10, b"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t");
    r.response.local_infile = true;
    let payload = Bytes::from(
        [
            &[3u8][..],
            b"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t",
        ]
        .concat(),
    );
    r.raw = payload.clone();
    r.infile = Some(Bytes::from_static(b"1,a\n2,b\n"));
    p.handle_command(r);
    let a = drain(&mut p);
    let s = sends(&a);
    assert_eq!(s[0].payload, payload);
    assert_eq!(s[0].local_infile.as_deref(), Some(&b"1,a\n2,b\n"[..]));
}

#[test]
fn read_only_and_never_replayed_commands_are_skipped_by_reason() {
    let mut c = cfg();
    c.filters = Filters {
        read_only: true,
        ..Filters::all()
    };
    let mut p = planner_with(c);
    p.handle_command(query(0, 10, b"delete from t"));
    p.handle_command(prepare(1, 20, 21, "update t set a=?", 3));
    p.handle_command(execute(2, 30, 31, 3));
    p.handle_command(rec(3, 40, None, Command::StmtClose { stmt_id: 3 }));
    p.handle_command(rec(
        4,
        50,
        Some(51),
        Command::ProcessKill { connection_id: 3 },
    ));
    p.handle_command(rec(5, 60, None, Command::BinlogDump { gtid: true }));
    p.handle_command(rec(6, 70, Some(71), Command::Other { code: 0x08 }));
    p.handle_command(rec(
        7,
        80,
        Some(81),
        Command::Unknown { code: 0x77, len: 3 },
    ));
    p.handle_command(rec(8, 90, None, Command::Quit));
    let reasons: Vec<_> = drain(&mut p)
        .into_iter()
        .map(|a| match a {
            Action::Skip { reason, .. } => reason.as_str(),
            a => panic!("{a:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "read_only",
            "read_only",
            "read_only",
            "read_only",
            "dangerous",
            "replication",
            "dangerous",
            "unknown_command",
            "nothing_to_send"
        ]
    );
}

#[test]
fn lost_connection_loses_what_was_planned_and_not_yet_taken() {
    let mut p = planner_with(cfg());
    p.handle_command(query(0, 10, b"select 1"));
    assert!(matches!(p.poll_action(), Some(Action::Connect(_))));
    let back = p.handle_connection_lost();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].seq, 0);
    assert_eq!(drain(&mut p), []);
    p.handle_command(query(1, 20, b"select 2"));
    let a = drain(&mut p);
    assert!(matches!(a[0], Action::Reconnect(_)));
    assert_eq!(sends(&a).len(), 1);
}

#[test]
fn a_test_statement_without_a_prod_statement_is_closed() {
    let mut p = planner_with(cfg());
    let mut r = rec(
        0,
        10,
        Some(11),
        Command::StmtPrepare {
            sql: b"select x".as_slice().into(),
        },
    );
    r.response.status = ResponseStatus::Err;
    p.handle_command(r);
    drain(&mut p);
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(9)));
    let a = drain(&mut p);
    let s = sends(&a);
    assert_eq!(&s[0].payload[..], &[0x19, 9, 0, 0, 0]);
    assert!(!s[0].expects_response);
}

#[test]
fn session_close_disconnects_and_quit_is_sent() {
    let mut p = planner_with(cfg());
    p.handle_command(query(0, 10, b"select 1"));
    p.handle_command(rec(1, 20, None, Command::Quit));
    p.handle_event(SessionEvent::Close(SessionClose {
        ts_us: 30,
        reason: CloseReason::Fin,
    }));
    let a = drain(&mut p);
    let s = sends(&a);
    assert_eq!(&s[1].payload[..], &[1]);
    assert!(!s[1].expects_response);
    assert_eq!(a.last(), Some(&Action::Disconnect));
    assert_eq!(a.iter().filter(|a| **a == Action::Disconnect).count(), 1);
}

#[test]
fn use_after_query_attributes_is_mapped_and_attributes_kept() {
    let mut c = cfg();
    c.identities.add_db_map("prod=test").unwrap();
    let mut p = Planner::new(Arc::new(c), &open(false));
    let mut l = login("app", None);
    l.capabilities |= 1 << 27;
    p.handle_event(SessionEvent::Login(Box::new(l)));
    // One attribute `a` = "x" (VAR_STRING), then the statement.
    let attrs: &[u8] = &[1, 1, 0, 1, 253, 0, 1, b'a', 1, b'x'];
    let payload = Bytes::from([&[3u8][..], attrs, b"USE prod"].concat());
    let mut r = query(0, 10, b"USE prod");
    r.raw = payload;
    p.handle_command(r);
    let a = drain(&mut p);
    assert_eq!(
        &sends(&a)[0].payload[..],
        &[&[3u8][..], attrs, b"USE test"].concat()[..]
    );
}

#[test]
fn commands_mysql_async_could_not_send_go_as_captured() {
    let mut p = planner_with(cfg());
    let cmds = [
        Command::FieldList {
            table: "t".into(),
            wildcard: "%".into(),
        },
        Command::SetOption { option: 1 },
        Command::Statistics,
        Command::Ping,
        Command::Other { code: 0x0a },
    ];
    let want: [&[u8]; 5] = [b"\x04t\x00%", &[0x1b, 1, 0], &[0x09], &[0x0e], &[0x0a]];
    for (i, c) in cmds.into_iter().enumerate() {
        p.handle_command(rec(i as u64, 10 * i as u64, Some(10 * i as u64 + 1), c));
    }
    p.handle_command(query(5, 60, b"KILL 12"));
    let a = drain(&mut p);
    let s = sends(&a);
    let got: Vec<&[u8]> = s.iter().map(|s| &s.payload[..]).collect();
    assert_eq!(got, want);
    assert!(s.iter().all(|s| s.expects_response));
    assert!(matches!(
        a.last(),
        Some(Action::Skip {
            reason: SkipReason::Dangerous,
            ..
        })
    ));
}

#[test]
fn statement_memo_rests_on_distinct_shapes_and_the_facts_stay_the_same() {
    let mut c = cfg();
    c.filters = Filters {
        read_only: true,
        ..Filters::all()
    };
    let mut p = planner_with(c);
    let mut fp = mrte_capture::fingerprint::Fingerprinter::default();
    let mut check = |p: &mut Planner, i: u64, t: &str| {
        p.handle_command(query(i, 10 + i * 10, t.as_bytes()));
        for a in drain(p) {
            match a {
                Action::Connect(_) => {}
                Action::Send(SendPlan {
                    origin: Origin::Captured(c),
                    ..
                }) => {
                    assert!(!t.starts_with("DELETE"), "{t} sent");
                    let want =
                        mrte_capture::fingerprint::fingerprint_id(fp.fingerprint(t.as_bytes()));
                    assert_eq!(c.fingerprint_id, want, "{t}");
                }
                Action::Skip { reason, .. } => {
                    assert!(
                        t.starts_with("DELETE") && reason.as_str() == "read_only",
                        "{t}"
                    )
                }
                a => panic!("{t}: {a:?}"),
            }
        }
    };
    // Mostly distinct shapes (texts that differ in more than their numbers): after one window
    // the memo is emptied and rests.
    let letters = |i: u64| -> String {
        i.to_string()
            .bytes()
            .map(|d| char::from(b'g' + d - b'0'))
            .collect()
    };
    let n = u64::from(MEMO_WINDOW) + 10;
    for i in 0..n {
        let t = match i % 10 {
            0 => format!("DELETE FROM t WHERE id={i}"),
            1 => "BEGIN".to_owned(),
            _ => format!("SELECT c FROM t WHERE k='{}'", letters(i)),
        };
        check(&mut p, i, &t);
    }
    assert!(p.memo_use.rest > 0, "memo not rested");
    assert!(p.memo.is_empty());
    // Repeated texts after the rest: the memo is used again and keeps answering the same.
    let m = u64::from(MEMO_REST + 2 * MEMO_WINDOW);
    for i in n..n + m {
        let t = if i % 2 == 0 {
            "SELECT 1"
        } else {
            "DELETE FROM t"
        };
        check(&mut p, i, t);
    }
    assert_eq!(p.memo_use.rest, 0);
    assert_eq!(p.memo.len(), 2);
}

#[test]
fn texts_differing_in_numbers_share_a_memo_entry_unless_a_regex_filter_is_set() {
    let texts = [
        "SELECT c FROM sbtest1 WHERE id=5034",
        "SELECT c FROM sbtest3 WHERE id=7",
        "SELECT c FROM sbtest12 WHERE id=77",
        "CALL db1.p(5)",
        "CALL db2.p(5)",
    ];
    let run = |c: PlanConfig| {
        let mut p = planner_with(c);
        let mut fp = mrte_capture::fingerprint::Fingerprinter::default();
        let mut sent = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let i = i as u64;
            p.handle_command(query(i, 10 + i * 10, t.as_bytes()));
            for a in drain(&mut p) {
                if let Action::Send(SendPlan {
                    origin: Origin::Captured(c),
                    ..
                }) = a
                {
                    let want =
                        mrte_capture::fingerprint::fingerprint_id(fp.fingerprint(t.as_bytes()));
                    assert_eq!(c.fingerprint_id, want, "{t}");
                    sent.push(*t);
                }
            }
        }
        (sent, p.memo.len())
    };
    // One entry for the three SELECTs, one per CALL (their fingerprints keep the digits).
    let (sent, entries) = run(cfg());
    assert_eq!(sent, texts);
    assert_eq!(entries, 3);
    // A regex may look at the numbers: exact texts, and only the matching one goes.
    let mut c = cfg();
    c.filters = Filters {
        filter: Some(regex::bytes::Regex::new("id=7$").unwrap()),
        ..Filters::all()
    };
    let (sent, entries) = run(c);
    assert_eq!(sent, ["SELECT c FROM sbtest3 WHERE id=7"]);
    assert_eq!(entries, 5);
}

#[test]
fn a_prod_deadlock_rollback_goes_to_test_before_the_next_command() {
    let mut p = planner_with(cfg());
    p.handle_command(query(0, 10, b"UPDATE t SET c = 1 WHERE id = 1"));
    let a = drain(&mut p);
    assert_eq!(sends(&a).len(), 1);
    p.handle_command(query(1, 20, b"BEGIN"));
    // Test answered OK where prod's server chose this transaction as a deadlock victim.
    p.handle_response(ResponseStatus::Ok, None);
    p.mirror_rollback();
    let a = drain(&mut p);
    let s = sends(&a);
    assert_eq!(s.len(), 2, "{a:?}");
    assert_eq!(&s[0].payload[..], b"\x03ROLLBACK");
    assert!(matches!(
        s[0].origin,
        Origin::Synthetic(Synthetic::MirrorRollback)
    ));
    assert_eq!(&s[1].payload[1..], b"BEGIN");
    // Answers pair in send order: the ROLLBACK's, then BEGIN's.
    assert_eq!(p.outstanding(), 2);
}

#[test]
fn the_login_asks_for_the_prod_sessions_mariadb_extended_capabilities() {
    let connect_ext = |midstream: bool, ext: u32| {
        let mut p = Planner::new(Arc::new(cfg()), &open(midstream));
        p.handle_event(SessionEvent::Login(Box::new(Login {
            mariadb_capabilities: ext,
            midstream,
            ..login("app", Some("shop"))
        })));
        p.handle_command(query(0, 10, b"select 1"));
        match drain(&mut p).first() {
            Some(Action::Connect(c)) => c.mariadb_capabilities,
            a => panic!("{a:?}"),
        }
    };
    // Exactly prod's: node mariadb's BULK | EXTENDED_METADATA | CACHE_METADATA (the
    // connection masks CACHE_METADATA), a client without any, Connector/J's BULK alone.
    assert_eq!(connect_ext(false, 0x1c), 0x1c);
    assert_eq!(connect_ext(false, 0), 0);
    assert_eq!(connect_ext(false, 0x04), 0x04);
    // Mid-stream: the documented default, whatever the inferred login says.
    assert_eq!(connect_ext(true, 0x1c), MIDSTREAM_MARIADB_CAPABILITIES);
    assert_eq!(MIDSTREAM_MARIADB_CAPABILITIES, 0x04);
}
