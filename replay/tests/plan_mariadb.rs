//! The planner's actions run on the wire connection against a throwaway MariaDB: each driver
//! capture (tests/fixtures) replayed onto its schema as it was when the capture began must
//! leave every table with prod's CHECKSUM TABLE (truth.json), with nothing skipped or lost and
//! no test error where prod had none.
//!
//! The loop below is a minimal executor (sessions one after another, no pacing): it follows the
//! planner's contract and nothing else.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mrte_capture::event::{ResponseStatus, SessionEvent, SessionId, SessionOpen};
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_replay::plan::{Action, Origin, PlanConfig, Planner};
use mrte_replay::target::TargetDsn;
use mrte_replay::wire::{ConnectParams, WireConn};
use mysql_async::prelude::Queryable;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn sessions(file: &str) -> Vec<(SessionOpen, Vec<SessionEvent>)> {
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut sink: Vec<(SessionId, SessionEvent)> = Vec::new();
    mrte_capture::source::pcap::run_file(&fixtures().join(file), &mut pipeline, &mut sink)
        .expect("read fixture");
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

#[derive(Debug, Default)]
struct Books {
    sent: u64,
    skipped: Vec<String>,
    lost: Vec<String>,
    /// Test ERR where prod answered OK: (seq, command, error).
    diverged: Vec<(u64, &'static str, String)>,
}

/// What a command on the wire waits for.
enum Exp {
    /// No answer (QUIT, STMT_CLOSE, LONG_DATA): the connection hands back an empty reply.
    Nothing,
    /// The planner's own send.
    Synthetic,
    /// A captured command: seq, name, prod's status.
    Captured(u64, &'static str, ResponseStatus),
}

/// Read the oldest outstanding response and hand it to the planner when it was expected.
async fn read_next(
    c: &mut WireConn,
    expects: &mut VecDeque<Exp>,
    p: &mut Planner,
    books: &mut Books,
) {
    let e = expects
        .pop_front()
        .expect("planner waits with nothing outstanding");
    let r = c.read_response().await.expect("response");
    if matches!(e, Exp::Nothing) {
        return;
    }
    p.handle_response(r.status, r.prepare.as_ref());
    if let Exp::Captured(seq, name, prod) = e {
        if r.status == ResponseStatus::Err && prod != ResponseStatus::Err {
            books.diverged.push((seq, name, format!("{:?}", r.error)));
        }
    }
}

async fn drain(c: &mut WireConn, expects: &mut VecDeque<Exp>, p: &mut Planner, books: &mut Books) {
    while !expects.is_empty() {
        read_next(c, expects, p, books).await;
    }
}

async fn replay(
    port: u16,
    cfg: Arc<PlanConfig>,
    open: SessionOpen,
    events: Vec<SessionEvent>,
    books: &mut Books,
) {
    let mut p = Planner::new(cfg, &open);
    let mut conn: Option<WireConn> = None;
    let mut expects: VecDeque<Exp> = VecDeque::new();
    let mut events = events.into_iter();
    loop {
        while let Some(a) = p.poll_action() {
            match a {
                Action::Connect(c) | Action::Reconnect(c) => {
                    let mut params = ConnectParams::new(
                        &c.user,
                        c.password.as_deref().unwrap_or(""),
                        c.db.as_deref(),
                    );
                    if let Some(caps) = c.capabilities {
                        params.capabilities = caps;
                    }
                    params.mariadb_capabilities = c.mariadb_capabilities;
                    conn = Some(
                        WireConn::connect(("127.0.0.1", port), params)
                            .await
                            .expect("connect"),
                    );
                    expects.clear();
                }
                Action::Send(s) => {
                    let c = conn.as_mut().expect("connected");
                    if !s.pipelined {
                        drain(c, &mut expects, &mut p, books).await;
                    }
                    c.queue(&s.payload, s.local_infile.map(|b| b.to_vec()))
                        .expect("queue");
                    c.flush_queued().await.expect("send");
                    let e = match &s.origin {
                        _ if !s.expects_response => Exp::Nothing,
                        Origin::Captured(i) => Exp::Captured(i.seq, i.name(), i.prod.status),
                        Origin::Synthetic(_) => Exp::Synthetic,
                    };
                    if matches!(s.origin, Origin::Captured(_)) {
                        books.sent += 1;
                    }
                    expects.push_back(e);
                }
                Action::ChangeUser(cu) => {
                    let c = conn.as_mut().expect("connected");
                    drain(c, &mut expects, &mut p, books).await;
                    let r = c
                        .change_user(
                            &cu.user,
                            cu.password.as_deref().unwrap_or(""),
                            cu.db.as_deref(),
                        )
                        .await
                        .expect("change user");
                    books.sent += 1;
                    if r.status == ResponseStatus::Err && cu.cmd.prod.status != ResponseStatus::Err
                    {
                        books.diverged.push((
                            cu.cmd.seq,
                            "COM_CHANGE_USER",
                            format!("{:?}", r.error),
                        ));
                    }
                }
                Action::Disconnect => {
                    if let Some(mut c) = conn.take() {
                        drain(&mut c, &mut expects, &mut p, books).await;
                    }
                }
                Action::Skip { seq, reason, .. } => {
                    books.skipped.push(format!("{seq}: {}", reason.as_str()))
                }
                Action::Lose { cmd, reason } => {
                    books
                        .lost
                        .push(format!("{} {}: {}", cmd.seq, cmd.name(), reason.as_str()))
                }
            }
        }
        if p.is_waiting() {
            let c = conn.as_mut().expect("connected");
            read_next(c, &mut expects, &mut p, books).await;
            continue;
        }
        match events.next() {
            Some(ev) => p.handle_event(ev),
            None => break,
        }
    }
    if let Some(c) = conn.as_mut() {
        drain(c, &mut expects, &mut p, books).await;
    }
}

async fn check_fixture(name: &str) {
    check_fixture_mapped(name, &[]).await;
}

/// Replay fixture `name` with `--db-map` entries `map` (prod, test): the schema is loaded under
/// the test names and the tables are checked there.
async fn check_fixture_mapped(name: &str, map: &[(&str, &str)]) {
    let Some(db) = common::MariaDb::start(name) else {
        return;
    };
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("truth.json")).expect("truth.json"),
    )
    .expect("truth parses");
    let t = &truth[name];
    let mut admin = common::admin(&db).await;
    let mut schema =
        std::fs::read_to_string(fixtures().join(t["schema"].as_str().expect("schema")))
            .expect("schema file");
    let mut cfg = PlanConfig::new(TargetDsn::parse_no_env(&db.dsn(None)).expect("dsn"));
    for (prod, test) in map {
        schema = schema.replace(&format!("`{prod}`"), &format!("`{test}`"));
        cfg.identities
            .add_db_map(&format!("{prod}={test}"))
            .expect("map");
    }
    admin.query_drop(schema).await.expect("load schema");
    let cfg = Arc::new(cfg);
    let mut books = Books::default();
    for (open, events) in sessions(t["file"].as_str().expect("file")) {
        replay(db.port, cfg.clone(), open, events, &mut books).await;
    }
    assert!(books.sent > 0, "{name}: nothing sent");
    assert!(
        books.skipped.is_empty(),
        "{name}: skipped {:?}",
        books.skipped
    );
    assert!(books.lost.is_empty(), "{name}: lost {:?}", books.lost);
    assert!(
        books.diverged.is_empty(),
        "{name}: test errors {:?}",
        books.diverged
    );
    for (table, want) in t["tables"].as_object().expect("tables") {
        let (tdb, tname) = table.split_once('.').expect("db.table");
        let tdb = map.iter().find(|m| m.0 == tdb).map_or(tdb, |m| m.1);
        let table = &format!("{tdb}.{tname}");
        let (_, sum): (String, Option<u64>) = admin
            .query_first(format!("CHECKSUM TABLE {table}"))
            .await
            .expect("checksum")
            .expect("a row");
        let rows: u64 = admin
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .expect("count")
            .expect("a row");
        assert_eq!(rows, want["rows"].as_u64().unwrap(), "{name}: {table} rows");
        assert_eq!(sum, want["checksum"].as_u64(), "{name}: {table} checksum");
    }
}

#[tokio::test]
async fn mysql2_capture_replayed_leaves_prods_tables() {
    check_fixture("mysql2").await;
}

#[tokio::test]
async fn connectorj_capture_replayed_leaves_prods_tables() {
    check_fixture("connectorj").await;
}

#[tokio::test]
async fn connectorj_b_capture_replayed_leaves_prods_tables() {
    check_fixture("connectorj_b").await;
}

#[tokio::test]
async fn pymysql_capture_replayed_leaves_prods_tables() {
    check_fixture("pymysql").await;
}

#[tokio::test]
async fn mysqlconnector_capture_replayed_leaves_prods_tables() {
    check_fixture("mysqlconnector").await;
}

#[tokio::test]
async fn pymysql_capture_replayed_under_db_map_fills_the_mapped_schemas() {
    check_fixture_mapped(
        "pymysql",
        &[("drv_py", "drv_py_t"), ("drv_py_b", "drv_py_bt")],
    )
    .await;
}
