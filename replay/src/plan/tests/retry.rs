//! Deadlock retries: what is sent again, in which order, and when a retry is refused.

use super::*;
use mrte_capture::commit::ER_LOCK_DEADLOCK;
use mrte_capture::mysql::consts::status;

/// A QUERY whose prod answer was OK, inside a transaction or not.
fn tq(seq: u64, sql: &str, in_trans: bool) -> Box<CommandRecord> {
    let mut r = query(seq, 10 * (seq + 1), sql.as_bytes());
    r.response.server_status = if in_trans { status::IN_TRANS } else { 0 };
    r
}

/// Plan `r`, answer every send OK on test, and hand back the captured command's info.
fn run_ok(p: &mut Planner, r: Box<CommandRecord>) -> Box<CmdInfo> {
    let (c, n) = plan_one(p, r);
    for _ in 0..n {
        p.handle_answer(ResponseStatus::Ok, None, None);
    }
    c
}

/// Plan `r`; its captured send's info and how many sends expect an answer.
fn plan_one(p: &mut Planner, r: Box<CommandRecord>) -> (Box<CmdInfo>, usize) {
    p.handle_command(r);
    let mut captured = None;
    let mut n = 0;
    for a in drain(p) {
        if let Action::Send(s) = a {
            n += usize::from(s.expects_response);
            if let Origin::Captured(c) = s.origin {
                captured = Some(c);
            }
        }
    }
    (captured.expect("a captured send"), n)
}

/// The victim `seq` deadlocked on test: its answer, then the retry asked for.
fn deadlock(p: &mut Planner, c: Box<CmdInfo>) -> Result<(), RetryRefused> {
    p.handle_answer(ResponseStatus::Err, Some(ER_LOCK_DEADLOCK), None);
    p.retry_deadlocked(c).map_err(|(_, why)| why)
}

/// The next send of a retry (exactly one, the planner then waits).
fn next_send(p: &mut Planner) -> SendPlan {
    let mut a = drain(p);
    assert_eq!(a.len(), 1, "{a:?}");
    match a.pop() {
        Some(Action::Send(s)) => s,
        a => panic!("{a:?}"),
    }
}

fn sql(s: &SendPlan) -> &[u8] {
    &s.payload[1..]
}

fn begin_two_updates(p: &mut Planner) -> Box<CmdInfo> {
    run_ok(p, tq(0, "BEGIN", true));
    run_ok(p, tq(1, "UPDATE t SET v = 1 WHERE id = 1", true));
    plan_one(p, tq(2, "UPDATE t SET v = 2 WHERE id = 2", true)).0
}

#[test]
fn a_test_only_victim_is_sent_again_from_its_begin_and_answers_last() {
    let mut p = planner_with(cfg());
    let victim = begin_two_updates(&mut p);
    deadlock(&mut p, victim).expect("retried");
    assert!(p.retrying());
    let s = next_send(&mut p);
    assert_eq!(sql(&s), b"BEGIN");
    assert!(matches!(
        s.origin,
        Origin::Synthetic(Synthetic::DeadlockRetry { for_seq: 2 })
    ));
    // Nothing else goes until BEGIN is answered.
    assert!(drain(&mut p).is_empty());
    assert!(p.is_waiting());
    p.handle_answer(ResponseStatus::Ok, None, None);
    let s = next_send(&mut p);
    assert_eq!(sql(&s), b"UPDATE t SET v = 1 WHERE id = 1");
    p.handle_answer(ResponseStatus::Ok, None, None);
    let s = next_send(&mut p);
    assert_eq!(sql(&s), b"UPDATE t SET v = 2 WHERE id = 2");
    match &s.origin {
        Origin::Captured(c) => assert_eq!(c.seq, 2),
        o => panic!("{o:?}"),
    }
    assert!(!p.retrying());
    p.handle_answer(ResponseStatus::Ok, None, None);
    assert_eq!(
        p.retry_stats(),
        RetryStats {
            transactions: 1,
            attempts: 1,
            statements: 2,
            abandoned: 0
        }
    );
    // The session goes on: COMMIT ends the transaction.
    let (c, _) = plan_one(&mut p, tq(3, "COMMIT", false));
    assert_eq!(c.seq, 3);
}

#[test]
fn a_retry_that_deadlocks_again_starts_over_then_gives_up() {
    let mut c = cfg();
    c.deadlock_retries = 2;
    let mut p = planner_with(c);
    let victim = begin_two_updates(&mut p);
    deadlock(&mut p, victim).expect("retried");
    assert_eq!(sql(&next_send(&mut p)), b"BEGIN");
    p.handle_answer(ResponseStatus::Ok, None, None);
    next_send(&mut p);
    // The first UPDATE deadlocks this time: the attempt starts over.
    p.handle_answer(ResponseStatus::Err, Some(ER_LOCK_DEADLOCK), None);
    assert_eq!(sql(&next_send(&mut p)), b"BEGIN");
    p.handle_answer(ResponseStatus::Ok, None, None);
    next_send(&mut p);
    // Again, with no attempt left: the victim goes alone.
    p.handle_answer(ResponseStatus::Err, Some(ER_LOCK_DEADLOCK), None);
    let s = next_send(&mut p);
    assert!(matches!(&s.origin, Origin::Captured(c) if c.seq == 2));
    let st = p.retry_stats();
    assert_eq!((st.transactions, st.attempts, st.abandoned), (1, 2, 1));
    // Its own answer is a deadlock again: attempts are used up.
    let Origin::Captured(c) = s.origin else {
        unreachable!()
    };
    assert_eq!(deadlock(&mut p, c), Err(RetryRefused::Exhausted));
}

#[test]
fn an_error_prod_had_too_does_not_break_the_retry() {
    let mut p = planner_with(cfg());
    run_ok(&mut p, tq(0, "BEGIN", true));
    let mut dup = tq(1, "INSERT INTO t VALUES (1)", true);
    dup.response.status = ResponseStatus::Err;
    dup.response.error_code = Some(1062);
    p.handle_command(dup);
    drain(&mut p);
    p.handle_answer(ResponseStatus::Err, Some(1062), None);
    let victim = plan_one(&mut p, tq(2, "UPDATE t SET v = 2 WHERE id = 2", true)).0;
    deadlock(&mut p, victim).expect("retried");
    next_send(&mut p);
    p.handle_answer(ResponseStatus::Ok, None, None);
    assert_eq!(sql(&next_send(&mut p)), b"INSERT INTO t VALUES (1)");
    p.handle_answer(ResponseStatus::Err, Some(1062), None);
    let s = next_send(&mut p);
    assert!(matches!(&s.origin, Origin::Captured(c) if c.seq == 2));
    assert_eq!(p.retry_stats().abandoned, 0);
}

#[test]
fn an_autocommit_statement_goes_again_alone() {
    let mut p = planner_with(cfg());
    run_ok(&mut p, tq(0, "UPDATE t SET v = 0 WHERE id = 9", false));
    // Answered without a deadlock: not kept while the session idles.
    assert_eq!(p.trx.kept(), 0);
    let victim = plan_one(&mut p, tq(1, "UPDATE t SET v = 1 WHERE id = 1", false)).0;
    assert_eq!(p.trx.kept(), 1);
    deadlock(&mut p, victim).expect("retried");
    let s = next_send(&mut p);
    assert_eq!(sql(&s), b"UPDATE t SET v = 1 WHERE id = 1");
    assert!(matches!(&s.origin, Origin::Captured(c) if c.seq == 1));
    assert_eq!(p.retry_stats().statements, 0);
}

#[test]
fn a_retry_is_refused_by_reason() {
    // Disabled.
    let mut c = cfg();
    c.deadlock_retries = 0;
    let mut p = planner_with(c);
    let v = begin_two_updates(&mut p);
    assert_eq!(deadlock(&mut p, v), Err(RetryRefused::Disabled));

    // A command of the transaction was not sent (KILL is never replayed).
    let mut p = planner_with(cfg());
    run_ok(&mut p, tq(0, "BEGIN", true));
    let mut kill = rec(1, 20, Some(21), Command::ProcessKill { connection_id: 7 });
    kill.response.server_status = status::IN_TRANS;
    p.handle_command(kill);
    drain(&mut p);
    let v = plan_one(&mut p, tq(2, "UPDATE t SET v = 2 WHERE id = 2", true)).0;
    assert_eq!(deadlock(&mut p, v), Err(RetryRefused::Incomplete));
    // The next transaction may be retried again.
    run_ok(&mut p, tq(3, "ROLLBACK", false));
    run_ok(&mut p, tq(4, "BEGIN", true));
    let v = plan_one(&mut p, tq(5, "UPDATE t SET v = 5 WHERE id = 5", true)).0;
    assert_eq!(deadlock(&mut p, v), Ok(()));

    // Captured mid-stream inside the transaction: its start is unknown.
    let mut p = Planner::new(Arc::new(cfg()), &open(true));
    let v = plan_one(&mut p, tq(0, "UPDATE t SET v = 2 WHERE id = 2", true)).0;
    assert_eq!(deadlock(&mut p, v), Err(RetryRefused::StartUnseen));
    // Once a response outside a transaction was seen, the next one is known whole.
    run_ok(&mut p, tq(1, "COMMIT", false));
    run_ok(&mut p, tq(2, "BEGIN", true));
    let v = plan_one(&mut p, tq(3, "UPDATE t SET v = 3 WHERE id = 3", true)).0;
    assert_eq!(deadlock(&mut p, v), Ok(()));

    // The next command is planned already (pipelined behind the victim).
    let mut p = planner_with(cfg());
    let v = begin_two_updates(&mut p);
    p.handle_command(tq(3, "COMMIT", false));
    assert_eq!(deadlock(&mut p, v), Err(RetryRefused::Busy));

    // Prod's answer was another error (a lock wait timeout): not sent again.
    let mut p = planner_with(cfg());
    run_ok(&mut p, tq(0, "BEGIN", true));
    let mut timeout = tq(1, "UPDATE t SET v = 1 WHERE id = 1", true);
    timeout.response.status = ResponseStatus::Err;
    timeout.response.error_code = Some(1205);
    let v = plan_one(&mut p, timeout).0;
    assert_eq!(deadlock(&mut p, v), Err(RetryRefused::ProdError));

    // The test connection was lost during the transaction.
    let mut p = planner_with(cfg());
    run_ok(&mut p, tq(0, "BEGIN", true));
    let _ = p.handle_connection_lost();
    let v = plan_one(&mut p, tq(1, "UPDATE t SET v = 1 WHERE id = 1", true)).0;
    assert_eq!(deadlock(&mut p, v), Err(RetryRefused::ConnectionLost));
}

#[test]
fn the_retry_is_handed_back_when_the_connection_is_lost() {
    let mut p = planner_with(cfg());
    let victim = begin_two_updates(&mut p);
    deadlock(&mut p, victim).expect("retried");
    next_send(&mut p);
    let dropped = p.handle_connection_lost();
    assert_eq!(dropped.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2]);
    assert!(!p.retrying());
}

#[test]
fn prepared_statements_go_again_under_their_test_ids() {
    let mut p = planner_with(cfg());
    p.handle_command(prepare(0, 10, 11, "UPDATE t SET v = ? WHERE id = ?", 5));
    drain(&mut p);
    p.handle_answer(ResponseStatus::Ok, None, Some(&prepare_ok(77)));
    run_ok(&mut p, tq(1, "BEGIN", true));
    let in_trans = |mut r: Box<CommandRecord>| {
        r.response.server_status = status::IN_TRANS;
        r
    };
    run_ok(
        &mut p,
        in_trans(rec(2, 30, Some(31), Command::StmtReset { stmt_id: 5 })),
    );
    run_ok(&mut p, in_trans(execute(3, 40, 41, 5)));
    let victim = plan_one(&mut p, in_trans(execute(4, 50, 51, 5))).0;
    deadlock(&mut p, victim).expect("retried");
    assert_eq!(sql(&next_send(&mut p)), b"BEGIN");
    p.handle_answer(ResponseStatus::Ok, None, None);
    let reset = next_send(&mut p);
    assert_eq!(reset.payload[0], com::STMT_RESET);
    assert_eq!(rewrite::stmt_id(&reset.payload), Some(77));
    p.handle_answer(ResponseStatus::Ok, None, None);
    let exec = next_send(&mut p);
    assert_eq!(exec.payload[0], com::STMT_EXECUTE);
    assert_eq!(rewrite::stmt_id(&exec.payload), Some(77));
    assert!(matches!(exec.origin, Origin::Synthetic(_)));
    p.handle_answer(ResponseStatus::Ok, None, None);
    let s = next_send(&mut p);
    assert!(matches!(&s.origin, Origin::Captured(c) if c.seq == 4));
    assert_eq!(rewrite::stmt_id(&s.payload), Some(77));
}

/// An executor that answers each send at once: `answer(payload, attempt)` is test's status and
/// error code; a captured command answered ER_LOCK_DEADLOCK (prod never has it here) asks for a
/// retry. Returns each command's fates (captured answers kept, skips, losses) and the
/// retries' stats.
fn run_with(
    p: &mut Planner,
    cmds: impl IntoIterator<Item = Box<CommandRecord>>,
    mut answer: impl FnMut(&[u8]) -> (ResponseStatus, Option<u16>),
) -> Vec<u64> {
    let mut fates = Vec::new();
    let mut answers: std::collections::VecDeque<(
        Option<Box<CmdInfo>>,
        ResponseStatus,
        Option<u16>,
    )> = Default::default();
    for r in cmds {
        p.handle_command(r);
        for _ in 0..10_000 {
            while let Some(a) = p.poll_action() {
                match a {
                    Action::Send(s) => {
                        let (st, code) = answer(&s.payload);
                        match s.origin {
                            Origin::Captured(c) if s.expects_response => {
                                answers.push_back((Some(c), st, code))
                            }
                            Origin::Captured(c) => fates.push(c.seq),
                            Origin::Synthetic(_) if s.expects_response => {
                                answers.push_back((None, st, code))
                            }
                            Origin::Synthetic(_) => {}
                        }
                    }
                    Action::ChangeUser(c) => fates.push(c.cmd.seq),
                    Action::Skip { seq, .. } => fates.push(seq),
                    Action::Lose { cmd, .. } => fates.push(cmd.seq),
                    Action::Connect(_) | Action::Reconnect(_) | Action::Disconnect => {}
                }
            }
            // Answers are read as the executor reads them: all of them before the next
            // command, each captured one's deadlock asking for a retry when nothing else is
            // outstanding.
            let Some((c, st, code)) = answers.pop_front() else {
                break;
            };
            p.handle_answer(st, code, None);
            if let Some(c) = c {
                if code == Some(ER_LOCK_DEADLOCK) && answers.is_empty() {
                    match p.retry_deadlocked(c) {
                        Ok(()) => continue,
                        Err((c, _)) => fates.push(c.seq),
                    }
                } else {
                    fates.push(c.seq);
                }
            }
        }
        assert!(answers.is_empty() && !p.is_waiting(), "stuck");
    }
    fates
}

proptest::proptest! {
    #[test]
    fn any_session_with_test_only_deadlocks_gives_each_command_one_fate(
        ops in proptest::collection::vec((0u8..8, proptest::bool::ANY), 0..40),
        deadlocks in proptest::collection::vec(0u8..6, 64),
        retries in 0u32..4,
    ) {
        let mut c = cfg();
        c.deadlock_retries = retries;
        let mut p = planner_with(c);
        let n = ops.len() as u64;
        // Prod's transaction state as its responses show it.
        let mut open = false;
        let cmds: Vec<_> = ops
            .iter()
            .enumerate()
            .map(|(i, &(kind, coin))| {
                let seq = i as u64;
                let ts = 10 * (seq + 1);
                let other = |c: Command| rec(seq, ts, Some(ts + 1), c);
                let mut r = match kind {
                    0 | 1 => {
                        open = true;
                        tq(seq, "BEGIN", true)
                    }
                    2 => {
                        open = false;
                        tq(seq, "COMMIT", false)
                    }
                    3 if coin => other(Command::ProcessKill { connection_id: 1 }),
                    3 => other(Command::StmtReset { stmt_id: 1 }),
                    4 if coin => other(Command::Ping),
                    4 => other(Command::StmtSendLongData {
                        stmt_id: 1,
                        param_id: 0,
                        data: b"x".as_slice().into(),
                    }),
                    _ => tq(seq, "UPDATE t SET v = 1", open),
                };
                r.response.server_status = if open { status::IN_TRANS } else { 0 };
                r
            })
            .collect();
        let mut k = 0;
        let fates = run_with(&mut p, cmds, |payload| {
            k += 1;
            let d = deadlocks[k % deadlocks.len()];
            if payload[0] == com::QUERY && d == 0 {
                (ResponseStatus::Err, Some(ER_LOCK_DEADLOCK))
            } else {
                (ResponseStatus::Ok, None)
            }
        });
        let mut sorted = fates.clone();
        sorted.sort_unstable();
        proptest::prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        let st = p.retry_stats();
        proptest::prop_assert!(st.attempts <= st.transactions * u64::from(retries));
        proptest::prop_assert!(!p.retrying());
    }
}
