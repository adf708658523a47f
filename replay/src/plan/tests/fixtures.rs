//! Whole driver captures (tests/fixtures) decoded by mrte_capture's pipeline, and arbitrary
//! command sequences, planned against a fake test server that hands out its own statement ids
//! and checks every id it is sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use mrte_capture::event::{Command, SessionId};
use mrte_capture::pipeline::{Pipeline, PipelineConfig};

use super::*;

// ---- whole captures against a fake test server ----

/// A fake test server: hands out statement ids from 1000, remembers which exist, and checks
/// every statement id it is sent.
#[derive(Default)]
struct FakeServer {
    next_id: u32,
    live: HashSet<u32>,
    closed: HashSet<u32>,
    closed_twice: u32,
    last_prepared: Option<u32>,
    bad_ids: Vec<(u8, u32)>,
    executes: Vec<u32>,
}

impl FakeServer {
    fn reset(&mut self) {
        self.live.clear();
        self.closed.clear();
        self.last_prepared = None;
    }

    /// The answer to one payload: (status, PREPARE_OK).
    fn answer(&mut self, payload: &[u8]) -> (ResponseStatus, Option<PrepareOk>) {
        let code = payload[0];
        if code == com::STMT_PREPARE {
            let id = 1000 + self.next_id;
            self.next_id += 1;
            self.live.insert(id);
            self.last_prepared = Some(id);
            return (ResponseStatus::Ok, Some(prepare_ok(id)));
        }
        if code == com::RESET_CONNECTION {
            self.reset();
        }
        if let Some(id) = [
            com::STMT_EXECUTE,
            com::STMT_SEND_LONG_DATA,
            com::STMT_CLOSE,
            com::STMT_RESET,
            com::STMT_FETCH,
            com::STMT_BULK_EXECUTE,
        ]
        .contains(&code)
        .then(|| rewrite::stmt_id(payload))
        .flatten()
        {
            let real = if id == LAST_PREPARED {
                self.last_prepared
            } else {
                Some(id)
            };
            let twice = code == com::STMT_CLOSE && real.is_some_and(|r| self.closed.contains(&r));
            self.closed_twice += u32::from(twice);
            if !twice && !real.is_some_and(|r| self.live.contains(&r)) {
                self.bad_ids.push((code, id));
            }
            if code == com::STMT_EXECUTE {
                self.executes.push(id);
            }
            if code == com::STMT_CLOSE {
                if let Some(r) = real {
                    if self.live.remove(&r) {
                        self.closed.insert(r);
                    }
                }
            }
        }
        (ResponseStatus::Ok, None)
    }
}

#[derive(Debug, Default)]
struct Tally {
    sent: BTreeMap<&'static str, u64>,
    skipped: BTreeMap<&'static str, u64>,
    lost: BTreeMap<&'static str, u64>,
    synthetic: u64,
    pipelined: u64,
    change_user: u64,
    /// Seqs of captured commands given a fate (sent, re-authenticated, skipped or lost).
    fates: Vec<(SessionId, u64)>,
    /// Sends whose bytes differ from the captured payload beyond the statement id.
    altered: Vec<(SessionId, u64)>,
    /// Sends carrying the LOCAL INFILE bytes prod's client sent.
    infiles: u64,
}

/// Plan one session the way an executor would, answering from `server`.
fn run_session(
    cfg: Arc<PlanConfig>,
    open: &SessionOpen,
    events: Vec<SessionEvent>,
    server: &mut FakeServer,
    t: &mut Tally,
) {
    let raw: HashMap<u64, (Bytes, Option<Bytes>)> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Command(c) => Some((c.seq, (c.raw.clone(), c.infile.clone()))),
            _ => None,
        })
        .collect();
    let mut p = Planner::new(cfg, open);
    let mut answers: std::collections::VecDeque<(ResponseStatus, Option<PrepareOk>)> =
        Default::default();
    let mut events = events.into_iter();
    loop {
        while let Some(a) = p.poll_action() {
            match a {
                Action::Connect(_) | Action::Reconnect(_) => server.reset(),
                Action::Send(s) => {
                    if !s.pipelined {
                        // Read what is outstanding before sending, as prod's client did.
                        while let Some((st, po)) = answers.pop_front() {
                            p.handle_response(st, po.as_ref());
                        }
                    }
                    let ans = server.answer(&s.payload);
                    if s.expects_response {
                        answers.push_back(ans);
                    }
                    match &s.origin {
                        Origin::Captured(c) => {
                            *t.sent.entry(c.name()).or_default() += 1;
                            t.fates.push((open.id, c.seq));
                            let (want, infile) = &raw[&c.seq];
                            let stmt_cmd = matches!(c.code, 0x17..=0x1a | 0x1c | 0xfa);
                            let same = if stmt_cmd {
                                s.payload.len() == want.len()
                                    && s.payload[0] == want[0]
                                    && s.payload[5..] == want[5..]
                            } else {
                                s.payload == want
                            };
                            if !same {
                                t.altered.push((open.id, c.seq));
                            }
                            if s.local_infile.is_some() {
                                assert_eq!(&s.local_infile, infile);
                                t.infiles += 1;
                            }
                        }
                        Origin::Synthetic(_) => t.synthetic += 1,
                    }
                    t.pipelined += u64::from(s.pipelined);
                }
                Action::ChangeUser(c) => {
                    t.fates.push((open.id, c.cmd.seq));
                    t.change_user += 1;
                    server.reset();
                }
                Action::Disconnect => {}
                Action::Skip { seq, reason, .. } => {
                    t.fates.push((open.id, seq));
                    *t.skipped.entry(reason.as_str()).or_default() += 1
                }
                Action::Lose { cmd, reason } => {
                    t.fates.push((open.id, cmd.seq));
                    *t.lost.entry(reason.as_str()).or_default() += 1
                }
            }
        }
        if p.is_waiting() || (!answers.is_empty() && p.outstanding() > 0) {
            match answers.pop_front() {
                Some((st, po)) => {
                    p.handle_response(st, po.as_ref());
                    continue;
                }
                None => panic!("planner waits with nothing outstanding"),
            }
        }
        match events.next() {
            Some(ev) => p.handle_event(ev),
            None => break,
        }
    }
    assert!(!p.is_waiting());
}

fn fixture_sessions(file: &str) -> Vec<(SessionOpen, Vec<SessionEvent>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(file);
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut sink: Vec<(SessionId, SessionEvent)> = Vec::new();
    mrte_capture::source::pcap::run_file(&path, &mut pipeline, &mut sink).unwrap();
    let mut by: Vec<(SessionId, SessionOpen, Vec<SessionEvent>)> = Vec::new();
    for (id, ev) in sink {
        if let SessionEvent::Open(o) = &ev {
            by.push((id, (**o).clone(), Vec::new()));
        }
        if let Some(s) = by.iter_mut().rev().find(|s| s.0 == id) {
            s.2.push(ev);
        }
    }
    by.into_iter().map(|(_, o, e)| (o, e)).collect()
}

fn plan_fixture(file: &str) -> (Tally, FakeServer, HashMap<&'static str, u64>) {
    let cfg = Arc::new(cfg());
    let mut t = Tally::default();
    let mut server = FakeServer::default();
    let mut captured: HashMap<&'static str, u64> = HashMap::new();
    let sessions = fixture_sessions(file);
    assert!(!sessions.is_empty(), "{file}: no session");
    let mut want = Vec::new();
    for (open, events) in sessions {
        for ev in &events {
            if let SessionEvent::Command(c) = ev {
                *captured.entry(c.command.name()).or_default() += 1;
                want.push((open.id, c.seq));
            }
        }
        run_session(cfg.clone(), &open, events, &mut server, &mut t);
    }
    let mut got = t.fates.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{file}: every command gets exactly one fate");
    (t, server, captured)
}

fn check_all_sent(
    file: &str,
    t: &Tally,
    server: &FakeServer,
    captured: &HashMap<&'static str, u64>,
) {
    assert!(
        t.altered.is_empty(),
        "{file}: bytes altered {:?}",
        t.altered
    );
    assert!(t.skipped.is_empty(), "{file}: skipped {:?}", t.skipped);
    assert!(t.lost.is_empty(), "{file}: lost {:?}", t.lost);
    assert!(
        server.bad_ids.is_empty(),
        "{file}: bad ids {:?}",
        server.bad_ids
    );
    for (name, n) in captured {
        let sent = if *name == "COM_CHANGE_USER" {
            t.change_user
        } else {
            t.sent.get(name).copied().unwrap_or(0)
        };
        assert_eq!(sent, *n, "{file}: {name}");
    }
}

#[test]
fn mysql2_fixture_is_planned_whole_with_test_ids() {
    let (t, server, captured) = plan_fixture("mysql2.pcap");
    check_all_sent("mysql2", &t, &server, &captured);
    assert_eq!(captured.get("COM_STMT_EXECUTE"), Some(&31));
    assert_eq!(server.executes.len(), 31);
    // The fake server's ids start at 1000: every EXECUTE was rewritten to one of them.
    assert!(
        server.executes.iter().all(|&id| id >= 1000),
        "{:?}",
        server.executes
    );
    assert_eq!(t.synthetic, 0);
    // mysql2 closes its second statement twice: both go to the test server, as captured.
    assert_eq!(server.closed_twice, 1);
}

#[test]
fn node_mariadb_fixture_logs_in_with_its_extended_capabilities() {
    // Every session of the capture: node mariadb's pool (BULK | EXTENDED_METADATA |
    // CACHE_METADATA against a server offering 0x1d) and mysqljs (CLIENT_MYSQL: none).
    let mut seen = BTreeMap::new();
    for (open, events) in fixture_sessions("mariadbjs.pcap") {
        let mut p = Planner::new(Arc::new(cfg()), &open);
        for e in events {
            p.handle_event(e);
            if let Some(Action::Connect(c)) = p.poll_action() {
                *seen.entry(c.mariadb_capabilities).or_insert(0) += 1;
                break;
            }
        }
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        vec![0, 0x1c],
        "{seen:?}"
    );
}

#[test]
fn mysqlconnector_fixture_is_planned_whole_with_test_ids() {
    let (t, server, captured) = plan_fixture("mysqlconnector.pcap");
    check_all_sent("mysqlconnector", &t, &server, &captured);
    assert_eq!(captured.get("COM_STMT_EXECUTE"), Some(&32));
    assert_eq!(captured.get("COM_STMT_RESET"), Some(&32));
    assert_eq!(captured.get("COM_CHANGE_USER"), Some(&1));
    assert_eq!(captured.get("COM_STATISTICS"), Some(&2));
    assert_eq!(server.executes.len(), 32);
    assert!(server.executes.iter().all(|&id| id >= 1000));
}

#[test]
fn other_fixtures_plan_without_losses() {
    for file in [
        "sysbench_ps.pcap",
        "pymysql.pcap",
        "client_session.pcap",
        "mysqladmin.pcap",
        "local_infile.pcap",
        "compressed.pcap",
    ] {
        let (t, server, captured) = plan_fixture(file);
        check_all_sent(file, &t, &server, &captured);
    }
}

#[test]
fn connectorj_pipelined_batches_are_planned_whole_and_keep_their_overlap() {
    for file in ["connectorj.pcap", "connectorj_b.pcap"] {
        let (t, server, captured) = plan_fixture(file);
        check_all_sent(file, &t, &server, &captured);
        assert_eq!(captured.get("COM_STMT_BULK_EXECUTE"), Some(&2), "{file}");
        assert_eq!(server.executes.len(), 131, "{file}");
        // The batches went out back to back, as prod's client sent them.
        assert!(t.pipelined >= 100, "{file}: {} pipelined", t.pipelined);
    }
}

#[test]
fn local_infile_fixtures_send_the_clients_file_bytes() {
    for file in ["local_infile.pcap", "pymysql.pcap"] {
        let (t, server, captured) = plan_fixture(file);
        check_all_sent(file, &t, &server, &captured);
        assert!(t.infiles >= 1, "{file}: no LOCAL INFILE send with data");
    }
}

// ---- any sequence, any answers, any connection losses: one fate each, no hang ----

fn arbitrary_command(kind: u8, id: u8, seq: u64, ts: u64, overlap: bool) -> Box<CommandRecord> {
    let id = match id % 6 {
        4 => LAST_PREPARED,
        5 => 99,
        n => u32::from(n),
    };
    let end = Some(ts + if overlap { 50 } else { 1 });
    match kind % 14 {
        0 | 1 => prepare(seq, ts, ts + 1, "select ?", id % 4),
        2 | 3 => execute(seq, ts, ts + 1, id),
        4 => rec(
            seq,
            ts,
            None,
            Command::StmtSendLongData {
                stmt_id: id,
                param_id: 0,
                data: b"x".as_slice().into(),
            },
        ),
        5 => rec(seq, ts, None, Command::StmtClose { stmt_id: id }),
        6 => rec(seq, ts, end, Command::StmtReset { stmt_id: id }),
        7 => rec(
            seq,
            ts,
            end,
            Command::StmtFetch {
                stmt_id: id,
                num_rows: 1,
            },
        ),
        8 => query(seq, ts, b"USE shop"),
        9 => query(seq, ts, b"delete from t"),
        10 => rec(
            seq,
            ts,
            end,
            Command::ChangeUser {
                user: "other".into(),
                db: None,
                auth_plugin: None,
            },
        ),
        11 => rec(seq, ts, end, Command::ResetConnection),
        12 => rec(seq, ts, None, Command::Quit),
        _ => rec(seq, ts, end, Command::Unknown { code: 0x99, len: 1 }),
    }
}

proptest::proptest! {
    #[test]
    fn any_session_gives_each_command_one_fate(
        ops in proptest::collection::vec((0u8..14, 0u8..6, proptest::bool::ANY, 0u8..8), 0..60)
    ) {
        let mut p = planner_with(cfg());
        let mut fates: Vec<u64> = Vec::new();
        let mut answers: std::collections::VecDeque<(ResponseStatus, Option<PrepareOk>)> =
            Default::default();
        let mut next_test_id = 500;
        let n = ops.len() as u64;
        for (i, (kind, id, overlap, coin)) in ops.into_iter().enumerate() {
            let ts = 100 * (i as u64 + 1);
            p.handle_command(arbitrary_command(kind, id, i as u64, ts, overlap));
            for _ in 0..1000 {
                while let Some(a) = p.poll_action() {
                    match a {
                        Action::Send(s) => {
                            if let Origin::Captured(c) = &s.origin {
                                fates.push(c.seq);
                            }
                            if s.expects_response {
                                let prep = (s.payload[0] == 0x16 && coin != 3).then(|| {
                                    next_test_id += 1;
                                    prepare_ok(next_test_id)
                                });
                                let st = if coin == 2 { ResponseStatus::Err } else { ResponseStatus::Ok };
                                answers.push_back((st, prep));
                            }
                        }
                        Action::ChangeUser(c) => fates.push(c.cmd.seq),
                        Action::Skip { seq, .. } => fates.push(seq),
                        Action::Lose { cmd, .. } => fates.push(cmd.seq),
                        Action::Connect(_) | Action::Reconnect(_) | Action::Disconnect => {}
                    }
                    if coin == 7 {
                        answers.clear();
                        fates.extend(p.handle_connection_lost().iter().map(|c| c.seq));
                    }
                }
                if !p.is_waiting() {
                    break;
                }
                let (st, prep) = answers.pop_front().expect("waiting with nothing outstanding");
                p.handle_response(st, prep.as_ref());
            }
            proptest::prop_assert!(!p.is_waiting(), "stuck at command {}", i);
        }
        fates.sort_unstable();
        proptest::prop_assert_eq!(fates, (0..n).collect::<Vec<_>>());
    }
}
