//! `mrte-bench floor`: the cost of mysql_async alone on a capture's text queries, the floor under
//! `mrte replay`. Every COM_QUERY of each session is read into memory first, then each session
//! runs its queries in order on its own connection (one current-thread tokio runtime for all, as
//! `mrte replay` does by default), reading and counting every row; no pacing, timeouts,
//! fingerprints, filters or comparison. Prints queries/s and the process's CPU per query.
//! `--conn wire` runs the same on mrte's own wire connection (`mrte_replay::wire`): each query
//! goes out as a raw COM_QUERY and rows are counted and hashed, not decoded.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use mrte_capture::event::{Command, EventSink, SessionEvent, SessionId};
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_replay::target::TargetDsn;
use mrte_replay::wire::{ConnectParams, SslMode, WireConn, WireError};
use mysql_async::prelude::Queryable;

/// `mrte-bench floor`.
#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Test server, mysql://user:password@host:port/db.
    #[arg(long)]
    pub target: String,
    /// Server port in the capture.
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// Client: `mysql-async` or `wire` (mrte's own connection).
    #[arg(long, default_value = "mysql-async", value_parser = ["mysql-async", "wire"])]
    pub conn: String,
}

#[derive(Default)]
struct Collect(std::collections::BTreeMap<SessionId, Vec<Vec<u8>>>);

impl EventSink for Collect {
    fn push(&mut self, id: SessionId, event: SessionEvent) {
        if let SessionEvent::Command(c) = event {
            if let Command::Query { sql, .. } = &c.command {
                self.0.entry(id).or_default().push(sql.to_vec());
            }
        }
    }
}

/// User + system CPU of this process so far, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Run it.
pub fn run(a: FloorArgs) -> Result<()> {
    let mut p = Pipeline::new(PipelineConfig {
        ports: vec![a.port],
        ..PipelineConfig::default()
    });
    let mut c = Collect::default();
    mrte_capture::source::pcap::run_file(&a.file, &mut p, &mut c)
        .with_context(|| format!("reading {}", a.file.display()))?;
    p.finish(u64::MAX / 2, &mut c);
    let sessions: Vec<Vec<Vec<u8>>> = c.0.into_values().filter(|q| !q.is_empty()).collect();
    let total: usize = sessions.iter().map(Vec::len).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let (rows, errors) = if a.conn == "wire" {
        rt.block_on(run_wire(&a.target, sessions))?
    } else {
        (rt.block_on(run_mysql_async(&a.target, sessions))?, 0)
    };
    let label = if a.conn == "wire" {
        "wire"
    } else {
        "mysql_async"
    };
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    println!(
        "{label} floor: {total} queries ({rows} rows, {errors} errors) in {secs:.2} s: {:.0} queries/s, {:.1} us CPU per query",
        total as f64 / secs,
        cpu / total as f64 * 1e6
    );
    Ok(())
}

async fn run_mysql_async(target: &str, sessions: Vec<Vec<Vec<u8>>>) -> Result<u64> {
    let opts = mysql_async::Opts::from_url(target).context("--target")?;
    let mut tasks = tokio::task::JoinSet::new();
    for qs in sessions {
        let opts = opts.clone();
        tasks.spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await?;
            let mut rows = 0u64;
            for q in qs {
                let mut r = conn.query_iter(q).await?;
                while !r.is_empty() {
                    r.for_each(|_| rows += 1).await?;
                }
            }
            conn.disconnect().await?;
            Ok::<u64, mysql_async::Error>(rows)
        });
    }
    let mut rows = 0;
    while let Some(r) = tasks.join_next().await {
        rows += r??;
    }
    Ok(rows)
}

/// Rows and server errors over all sessions, on the wire connection.
async fn run_wire(target: &str, sessions: Vec<Vec<Vec<u8>>>) -> Result<(u64, u64)> {
    let t = TargetDsn::parse(target).context("--target")?;
    let mut params = ConnectParams::new(
        &t.user,
        t.password.as_deref().unwrap_or_default(),
        t.db.as_deref(),
    );
    params.ssl_mode = SslMode::from_dsn(target)?;
    let addr = format!("{}:{}", t.host, t.port);
    let mut tasks = tokio::task::JoinSet::new();
    for qs in sessions {
        let (params, addr) = (params.clone(), addr.clone());
        tasks.spawn(async move {
            let mut conn = WireConn::connect(&addr, params).await?;
            let (mut rows, mut errors) = (0u64, 0u64);
            let mut payload = Vec::new();
            for q in qs {
                payload.clear();
                payload.push(0x03);
                payload.extend_from_slice(&q);
                let r = conn.send_raw(&payload).await?;
                rows += r.rows;
                errors += u64::from(r.error.is_some());
            }
            conn.quit().await?;
            Ok::<(u64, u64), WireError>((rows, errors))
        });
    }
    let (mut rows, mut errors) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (r, e) = r??;
        rows += r;
        errors += e;
    }
    Ok((rows, errors))
}
