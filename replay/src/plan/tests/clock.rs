//! The prod clock: which statements get a `SET timestamp` first, with what value, and when not.

use super::*;
use crate::plan::clock::{inserts, reads_clock, set_session};

/// The prod clock on, prod's insert ids off (they have their own test).
fn clocked() -> Planner {
    let mut c = cfg();
    c.prod_clock = true;
    planner_with(c)
}

/// The payloads sent, as text after the command byte.
fn texts(actions: &[Action]) -> Vec<String> {
    sends(actions)
        .iter()
        .map(|s| String::from_utf8_lossy(&s.payload[1..]).into_owned())
        .collect()
}

/// Every action until the planner has nothing left, each send answered OK.
fn run_to_end(p: &mut Planner) -> Vec<Action> {
    let mut all = Vec::new();
    loop {
        let a = drain(p);
        if a.is_empty() && p.outstanding() == 0 {
            return all;
        }
        all.extend(a);
        answer_all(p, ResponseStatus::Ok);
    }
}

/// Answer every outstanding send with `status`.
fn answer_all(p: &mut Planner, status: ResponseStatus) {
    while p.outstanding() > 0 {
        p.handle_response(status, None);
    }
}

#[test]
fn which_statements_read_the_clock() {
    for sql in [
        "INSERT INTO t VALUES (1)",
        "  /* app */ insert into t values (1)",
        "(UPDATE t SET a = 1)",
        "replace into t values (1)",
        "DELETE FROM t",
        "-- note\nLOAD DATA LOCAL INFILE 'x' INTO TABLE t",
        "CALL p()",
        "create table t2 as select 1",
        "ALTER TABLE t ADD ts TIMESTAMP DEFAULT CURRENT_TIMESTAMP",
        "EXECUTE st USING @a",
        "SELECT NOW()",
        "select now ( )",
        "SELECT * FROM t WHERE d > CURDATE()",
        "select current_timestamp",
        "SELECT UNIX_TIMESTAMP()",
        "SELECT utc_timestamp(6)",
        "SET @t = localtimestamp",
        "select CURRENT_DATE, curtime()",
    ] {
        assert!(reads_clock(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "SELECT 1",
        "select c from sbtest1 where id=5",
        "SELECT known, snow FROM t",
        "SELECT now FROM t",
        "BEGIN",
        "COMMIT",
        "SET NAMES utf8mb4",
        "SHOW TABLES",
        "/* unterminated",
        "",
        "\u{fffd}\u{fffd}",
    ] {
        assert!(!reads_clock(sql.as_bytes()), "{sql}");
    }
}

#[test]
fn set_timestamp_has_microseconds_and_query_attributes_when_negotiated() {
    assert_eq!(
        &set_session(Some(1_764_748_735_000_042), None, None)[..],
        b"\x03SET timestamp=1764748735.000042"
    );
    assert_eq!(
        &set_session(Some(5_000_000), Some(7), Some(QUERY_ATTRIBUTES))[..],
        b"\x03\x00\x01SET timestamp=5.000000, insert_id=7"
    );
    assert_eq!(
        &set_session(None, Some(9), None)[..],
        b"\x03SET insert_id=9"
    );
}

#[test]
fn a_write_and_a_time_function_go_after_prods_time_a_plain_select_does_not() {
    let mut p = clocked();
    p.handle_command(query(
        0,
        1_000_000_000_000_001,
        b"SELECT c FROM t WHERE id=1",
    ));
    p.handle_command(query(
        1,
        1_000_000_000_000_500,
        b"INSERT INTO t (c) VALUES ('x')",
    ));
    p.handle_command(query(2, 1_000_000_000_000_900, b"SELECT NOW()"));
    let all = run_to_end(&mut p);
    assert_eq!(
        texts(&all),
        [
            "SELECT c FROM t WHERE id=1",
            "SET timestamp=1000000000.000500",
            "INSERT INTO t (c) VALUES ('x')",
            "SET timestamp=1000000000.000900",
            "SELECT NOW()",
        ]
    );
    let s = sends(&all);
    assert!(matches!(
        s[1].origin,
        Origin::Synthetic(Synthetic::ProdClock)
    ));
    assert!(s[1].expects_response && !s[1].pipelined);
    assert_eq!(
        p.clock_stats(),
        ClockStats {
            sets: 2,
            insert_ids: 0,
            errors: 0
        }
    );
}

#[test]
fn a_frozen_clock_is_moved_on_after_a_second_of_prod_time() {
    let mut p = clocked();
    let t0 = 1_700_000_000_000_000;
    p.handle_command(query(0, t0, b"UPDATE t SET a = a + 1"));
    p.handle_command(query(1, t0 + 400_000, b"SELECT a FROM t"));
    p.handle_command(query(2, t0 + 1_200_000, b"SELECT a FROM t"));
    let all = run_to_end(&mut p);
    assert_eq!(
        texts(&all),
        [
            "SET timestamp=1700000000.000000",
            "UPDATE t SET a = a + 1",
            "SELECT a FROM t",
            "SET timestamp=1700000001.200000",
            "SELECT a FROM t",
        ]
    );
}

#[test]
fn prepared_writes_set_it_before_their_executes() {
    let mut p = clocked();
    p.handle_command(prepare(0, 10, 20, "INSERT INTO t (a) VALUES (?)", 5));
    let a = drain(&mut p);
    assert_eq!(texts(&a).len(), 1, "a PREPARE reads no clock: {a:?}");
    p.handle_response(ResponseStatus::Ok, Some(&prepare_ok(77)));
    p.handle_command(execute(1, 3_000_123, 40, 5));
    let a = drain(&mut p);
    let s = sends(&a);
    assert_eq!(s.len(), 2, "{a:?}");
    assert_eq!(&s[0].payload[1..], b"SET timestamp=3.000123");
    assert_eq!(rewrite::stmt_id(&s[1].payload), Some(77));
}

#[test]
fn a_new_connection_sets_it_again_and_a_refusal_stops_it() {
    let mut p = clocked();
    p.handle_command(query(0, 5_000_000, b"INSERT INTO t VALUES (1)"));
    assert_eq!(sends(&drain(&mut p)).len(), 2);
    assert!(p.handle_connection_lost().is_empty());
    // Same prod time, but the new connection runs on the server's clock.
    p.handle_command(query(1, 5_000_000, b"INSERT INTO t VALUES (2)"));
    let a = drain(&mut p);
    assert!(matches!(a[0], Action::Reconnect(_)), "{a:?}");
    assert_eq!(texts(&a)[0], "SET timestamp=5.000000");
    // Test refuses it: the command still gets its own answer, and nothing more is set.
    p.handle_response(ResponseStatus::Err, None);
    p.handle_response(ResponseStatus::Ok, None);
    p.handle_command(query(2, 9_000_000, b"INSERT INTO t VALUES (3)"));
    assert_eq!(texts(&drain(&mut p)), ["INSERT INTO t VALUES (3)"]);
    assert_eq!(
        p.clock_stats(),
        ClockStats {
            sets: 2,
            insert_ids: 0,
            errors: 1
        }
    );
}

#[test]
fn off_sends_the_captured_commands_alone() {
    let mut p = planner_with(cfg());
    p.handle_command(query(0, 5_000_000, b"INSERT INTO t VALUES (NOW())"));
    assert_eq!(texts(&drain(&mut p)), ["INSERT INTO t VALUES (NOW())"]);
    assert_eq!(p.clock_stats(), ClockStats::default());
}

#[test]
fn one_insert_with_a_generated_id_sets_it_a_multi_statement_text_does_not() {
    assert!(inserts(b"INSERT INTO t (a) VALUES (1)"));
    assert!(inserts(b" replace t SET a = 1"));
    assert!(!inserts(
        b"INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)"
    ));
    assert!(!inserts(b"UPDATE t SET a = LAST_INSERT_ID(a + 1)"));
    let mut c = cfg();
    c.prod_clock = true;
    c.prod_insert_id = true;
    let mut p = planner_with(c);
    let with_id = |seq, ts, sql: &[u8], affected, id| {
        let mut r = query(seq, ts, sql);
        r.response.affected = affected;
        r.response.last_insert_id = id;
        r
    };
    p.handle_command(with_id(
        0,
        2_000_000,
        b"INSERT INTO t (a) VALUES (1), (2)",
        2,
        105,
    ));
    // Explicit ids: prod's OK reports none.
    p.handle_command(with_id(
        1,
        2_000_001,
        b"INSERT INTO t (id) VALUES (9)",
        1,
        0,
    ));
    p.handle_command(with_id(
        2,
        2_000_002,
        b"INSERT INTO t (a) VALUES (3); SELECT 1",
        1,
        107,
    ));
    let all = run_to_end(&mut p);
    assert_eq!(
        texts(&all),
        [
            "SET timestamp=2.000000, insert_id=105",
            "INSERT INTO t (a) VALUES (1), (2)",
            // The forced id may be unused (explicit ids): cleared before the next write.
            "SET timestamp=2.000001, insert_id=0",
            "INSERT INTO t (id) VALUES (9)",
            "SET timestamp=2.000002",
            "INSERT INTO t (a) VALUES (3); SELECT 1",
        ]
    );
    assert_eq!(
        p.clock_stats(),
        ClockStats {
            sets: 3,
            insert_ids: 1,
            errors: 0
        }
    );
}
