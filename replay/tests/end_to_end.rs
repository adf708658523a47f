//! End to end: a real client session against a "production" MariaDB is captured with tcpdump on
//! loopback, decoded by the capture pipeline into rings, replayed by the engine on a second
//! MariaDB, and both general logs must show the same commands in the same order.
//! Skipped loudly when mariadbd or tcpdump is missing or tcpdump cannot capture.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mrte_capture::net::LinkType;
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_capture::ring::RingSink;
use mrte_replay::engine::{Engine, ReplayConfig};
use mrte_replay::target::TargetDsn;
use mysql_async::prelude::Queryable;

const SETUP: &str = "CREATE DATABASE app; \
    CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20), d DATETIME(6) NULL)";

fn client_log(db: &MariaDb, marker: &str) -> Vec<(String, String)> {
    let by = db.general_log_by_thread();
    by.into_values()
        .find(|v| v.iter().any(|(_, a)| a.contains(marker)))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_session_is_replayed_with_the_same_commands() {
    let name = "captured_session_is_replayed_with_the_same_commands";
    let Some(prod) = MariaDb::start(name) else {
        return;
    };
    let Some(test) = MariaDb::start(name) else {
        return;
    };
    if !std::path::Path::new("/usr/bin/tcpdump").exists()
        && !std::path::Path::new("/usr/sbin/tcpdump").exists()
    {
        eprintln!("\n*** SKIP {name}: tcpdump not installed ***\n");
        return;
    }
    for db in [&prod, &test] {
        let mut a = admin(db).await;
        a.query_drop(SETUP).await.expect("setup");
        a.disconnect().await.expect("disconnect");
    }

    let pcap = prod.dir.join("capture.pcap");
    let mut dump = Proc::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w"])
        .arg(&pcap)
        .arg(format!("tcp port {}", prod.port))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpdump");
    // tcpdump says "listening on lo" once the capture is armed.
    let mut err = BufReader::new(dump.stderr.take().expect("stderr"));
    let mut line = String::new();
    let armed = err.read_line(&mut line).is_ok() && line.contains("listening");
    std::thread::sleep(Duration::from_millis(500));
    if !armed {
        let _ = dump.kill();
        let _ = dump.wait();
        eprintln!("\n*** SKIP {name}: tcpdump cannot capture on lo: {line} ***\n");
        return;
    }

    // The "production" workload: text queries, prepared statements with typed params.
    {
        let opts = mysql_async::OptsBuilder::from_opts(
            mysql_async::Opts::from_url(&prod.dsn(Some("app"))).expect("dsn"),
        )
        .prefer_socket(false);
        let mut c = mysql_async::Conn::new(opts).await.expect("connect prod");
        c.query_drop("SELECT 'e2e marker'").await.expect("q");
        c.query_drop("INSERT INTO t (id, v) VALUES (1, 'one')")
            .await
            .expect("q");
        let st = c.prep("SELECT v FROM t WHERE id = ?").await.expect("prep");
        let _: Vec<String> = c.exec(&st, (1,)).await.expect("exec");
        let ins = c
            .prep("INSERT INTO t VALUES (?, ?, ?)")
            .await
            .expect("prep");
        c.exec_drop(
            &ins,
            (
                2,
                "two",
                mysql_async::Value::Date(2024, 2, 29, 13, 14, 15, 161_718),
            ),
        )
        .await
        .expect("exec");
        c.close(ins).await.expect("close");
        c.query_drop("UPDATE t SET v = 'deux' WHERE id = 2; SELECT COUNT(*) FROM t")
            .await
            .expect("multi");
        c.query_drop("SELECT * FROM no_such_table")
            .await
            .expect_err("prod error");
        c.disconnect().await.expect("disconnect");
    }
    // Let tcpdump write out what the kernel handed it before stopping it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = Proc::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dump.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = dump.kill();
    let _ = dump.wait();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    eprintln!("tcpdump: {line}{rest}");
    assert!(
        !rest.lines().any(|l| l.trim() == "0 packets captured"),
        "tcpdump captured nothing: {rest}"
    );

    // Decode the capture into rings.
    let file = std::fs::File::open(&pcap).expect("pcap");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let link = LinkType::from_linktype(u32::from(reader.header().datalink));
    let mut pipe = Pipeline::new(PipelineConfig {
        ports: vec![prod.port],
        ..PipelineConfig::default()
    });
    let (mut sink, rx) = RingSink::new(4096);
    let mut last_ts = 0;
    while let Some(Ok(pkt)) = reader.next_packet() {
        last_ts = pkt.timestamp.as_micros() as u64;
        pipe.handle_frame(link, &pkt.data, last_ts, &mut sink);
    }
    pipe.finish(last_ts, &mut sink);
    sink.close_all();
    drop(sink);

    let cfg = ReplayConfig::new(TargetDsn::parse_no_env(&test.dsn(None)).expect("dsn"));
    let (got, collect) = collector();
    let stats = Engine::new(cfg)
        .run(rx, collect, std::future::pending())
        .await;
    let outcomes = got.lock().expect("lock").clone();
    assert_eq!(stats.sessions, 1, "{stats:#?}");
    assert_eq!(stats.accounted(), stats.commands_seen);
    assert_eq!(stats.lost_total(), 0, "{stats:#?} {outcomes:#?}");
    assert_eq!(stats.prod_errors, 1, "{stats:#?}");
    assert_eq!(stats.test_errors, 1, "the failing query fails on test too");

    let want = client_log(&prod, "e2e marker");
    assert!(want.len() >= 8, "prod log: {want:#?}");
    // Wait for the replay connection's Quit (the admin connection quit before).
    test.general_log_until(|l| l.iter().filter(|(_, c, _)| c == "Quit").count() >= 2)
        .await;
    // Prod's clock and ids: a `SET` of the replay's own goes before each write; the rest is
    // prod's commands, byte for byte.
    let (clock, got): (Vec<_>, Vec<_>) =
        client_log(&test, "e2e marker")
            .into_iter()
            .partition(|(k, a)| {
                k == "Query" && (a.starts_with("SET timestamp=") || a.starts_with("SET insert_id="))
            });
    assert!(
        !clock.is_empty() && clock.len() as u64 == stats.prod_clock_sets,
        "{clock:?} {stats:#?}"
    );
    assert_eq!(got, want, "replayed commands differ from production's");

    // Same data on both sides (the id/v columns and the typed DATETIME param).
    let mut rows = Vec::new();
    for db in [&prod, &test] {
        let mut a = admin(db).await;
        let r: Vec<(i32, String, Option<String>)> = a
            .query("SELECT id, v, CAST(d AS CHAR) FROM app.t ORDER BY id")
            .await
            .expect("rows");
        rows.push(r);
    }
    assert_eq!(rows[0], rows[1]);
    assert_eq!(rows[1][1].2.as_deref(), Some("2024-02-29 13:14:15.161718"));
}

/// One sysbench `workload` run on prod captured by tcpdump into `pcap`: its report, or
/// tcpdump's own summary when the kernel dropped packets for it (a starved tcpdump, not mrte);
/// None when tcpdump cannot capture on lo.
fn capture_run(
    name: &str,
    workload: &str,
    prod: &MariaDb,
    pcap: &std::path::Path,
) -> Option<Result<String, String>> {
    let mut dump = Proc::new("tcpdump")
        .args([
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-B",
            "65536",
            "-n",
            "-s",
            "0",
            "-w",
        ])
        .arg(pcap)
        .arg(format!("tcp port {}", prod.port))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpdump");
    let mut err = BufReader::new(dump.stderr.take().expect("stderr"));
    let mut line = String::new();
    let armed = err.read_line(&mut line).is_ok() && line.contains("listening");
    std::thread::sleep(Duration::from_millis(500));
    if !armed {
        let _ = dump.kill();
        let _ = dump.wait();
        eprintln!("\n*** SKIP {name}: tcpdump cannot capture on lo: {line} ***\n");
        return None;
    }
    let report = sysbench(
        workload,
        prod.port,
        &[
            "run",
            "--threads=2",
            "--events=300",
            "--time=0",
            "--db-ps-mode=auto",
        ],
    )
    .expect("run");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Proc::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    let kernel_drops = rest
        .lines()
        .find(|l| l.contains("dropped by kernel"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if kernel_drops == 0 {
        return Some(Ok(report));
    }
    Some(Err(rest))
}

fn sysbench(workload: &str, port: u16, args: &[&str]) -> Option<String> {
    let out = Proc::new("sysbench")
        .arg(workload)
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .args([
            "--mysql-user=root",
            "--mysql-db=sbtest",
            "--tables=1",
            "--table-size=1000",
        ])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "sysbench {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(text)
}

/// Capture a prepared-statement sysbench `workload` run on prod, replay it `--read-only` at
/// `--speed max` on test; returns (sysbench report, engine stats, outcomes), or None when skipped.
async fn sysbench_capture_replay(
    name: &str,
    workload: &str,
    replay_threads: usize,
) -> Option<(
    String,
    mrte_replay::engine::EngineStats,
    Vec<mrte_replay::Outcome>,
)> {
    // One sysbench capture at a time: tcpdump must keep up.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = ONE_AT_A_TIME.lock().await;
    let prod = MariaDb::start(name)?;
    let test = MariaDb::start(name)?;
    if sysbench(workload, prod.port, &["--version"]).is_none() {
        eprintln!("\n*** SKIP {name}: sysbench not installed ***\n");
        return None;
    }
    for db in [&prod, &test] {
        let mut a = admin(db).await;
        a.query_drop("CREATE DATABASE sbtest").await.expect("setup");
        a.disconnect().await.expect("disconnect");
        sysbench(workload, db.port, &["prepare"]).expect("prepare");
    }
    let pcap = prod.dir.join("sysbench.pcap");
    // The capture must be whole for the replay to be; a run tcpdump could not keep up with (on a
    // loaded machine) is recorded again, twice at most.
    let mut attempt = 0;
    let report = loop {
        attempt += 1;
        match capture_run(name, workload, &prod, &pcap)? {
            Ok(r) => break r,
            Err(rest) if attempt < 3 => {
                eprintln!("\n*** {name}: tcpdump dropped packets, recording again: {rest} ***\n")
            }
            Err(rest) => panic!("tcpdump lost packets in {attempt} runs: {rest}"),
        }
    };

    let file = std::fs::File::open(&pcap).expect("pcap");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let link = LinkType::from_linktype(u32::from(reader.header().datalink));
    let mut pipe = Pipeline::new(PipelineConfig {
        ports: vec![prod.port],
        ..PipelineConfig::default()
    });
    let (mut sink, rx) = RingSink::new(1 << 16);
    let mut last_ts = 0;
    while let Some(Ok(pkt)) = reader.next_packet() {
        last_ts = pkt.timestamp.as_micros() as u64;
        pipe.handle_frame(link, &pkt.data, last_ts, &mut sink);
    }
    pipe.finish(last_ts, &mut sink);
    sink.close_all();
    let ring = sink.stats();
    drop(sink);

    let mut cfg = ReplayConfig::new(TargetDsn::parse_no_env(&test.dsn(None)).expect("dsn"));
    cfg.filters.read_only = true;
    cfg.pacing = mrte_replay::pacing::Pacing::Offline {
        speed: None,
        skip_idle: None,
    };
    let (got, collect) = collector();
    // Optional worker threads, each running a current-thread runtime that takes a share of the
    // sessions (mrte replay --replay-threads).
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..replay_threads {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        handles.push(rt.handle().clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        threads.push(std::thread::spawn(move || {
            rt.block_on(async {
                let _ = rx.await;
            })
        }));
    }
    let stats = Engine::new(cfg)
        .with_workers(handles)
        .run(rx, collect, std::future::pending())
        .await;
    for s in stops {
        let _ = s.send(());
    }
    for t in threads {
        t.join().expect("worker thread");
    }
    let outcomes = got.lock().expect("lock").clone();
    assert_eq!(ring.dropped_events, 0);
    assert_eq!(stats.accounted(), stats.commands_seen);
    assert_eq!(stats.commands_after_gap, 0, "{stats:#?}");
    assert_eq!(stats.lost_total(), 0, "{stats:#?}");
    assert_eq!(stats.test_errors, 0, "{outcomes:#?}");
    assert_eq!(stats.prod_errors, 0);
    Some((report, stats, outcomes))
}

fn sysbench_count(report: &str, what: &str) -> u64 {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(what) && !l.contains("time"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {what} in sysbench report: {report}"))
}

fn replayed(outcomes: &[mrte_replay::Outcome], command: &str) -> u64 {
    outcomes
        .iter()
        .filter(|o| o.command == command && o.test.is_some())
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_sysbench_read_only_prepared_run_replays_fully_without_errors() {
    let Some((report, stats, outcomes)) = sysbench_capture_replay(
        "captured_sysbench_read_only_prepared_run_replays_fully_without_errors",
        "oltp_read_only",
        2,
    )
    .await
    else {
        return;
    };
    let total_queries = sysbench_count(&report, "total:");
    let executes = replayed(&outcomes, "COM_STMT_EXECUTE");
    let texts = replayed(&outcomes, "COM_QUERY");
    eprintln!(
        "sysbench total queries {total_queries}; executes {executes}, text {texts}; {stats:?}"
    );
    assert_eq!(
        stats.skipped.get("read_only"),
        None,
        "read-only workload: {stats:#?}"
    );
    // Every query sysbench counted was replayed (plus its connect-time queries and PREPAREs).
    assert!(
        executes + texts >= total_queries,
        "replayed {executes} executes + {texts} queries < sysbench's {total_queries}"
    );
    assert!(executes > 0, "prepared statements were used and replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_sysbench_read_write_run_replayed_read_only_skips_and_counts_writes() {
    let Some((report, stats, outcomes)) = sysbench_capture_replay(
        "captured_sysbench_read_write_run_replayed_read_only_skips_and_counts_writes",
        "oltp_read_write",
        0,
    )
    .await
    else {
        return;
    };
    let (reads, writes, other) = (
        sysbench_count(&report, "read:"),
        sysbench_count(&report, "write:"),
        sysbench_count(&report, "other:"),
    );
    let executes = replayed(&outcomes, "COM_STMT_EXECUTE");
    let texts = replayed(&outcomes, "COM_QUERY");
    eprintln!("sysbench read {reads} write {writes} other {other}; executes {executes}, text {texts}; {stats:?}");
    assert!(writes > 0);
    // Each write execute is skipped, and so are the write statements' PREPAREs and CLOSEs.
    let skipped = stats.skipped.get("read_only").copied().unwrap_or(0);
    assert!(
        skipped >= writes,
        "{skipped} skipped < {writes} writes: {stats:#?}"
    );
    assert!(
        executes + texts >= reads + other,
        "{executes} + {texts} < {reads} + {other}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.example.as_bytes().is_empty() || !crate_is_write(&o.example.to_arc())),
        "a write was replayed"
    );
}

fn crate_is_write(sql: &str) -> bool {
    mrte_replay::classify::classify(sql.as_bytes())
        != mrte_replay::classify::StatementClass::ReadOnly
}
