//! `mrte report`: one report from every player of a stream (their checkpoints in the stream's
//! key-value bucket, merged by mrte-dist and mrte-replay) and the publishers' capture counters,
//! with the JSON schema of `mrte run` plus a `distributed` section.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use mrte_capture::stats::Stats;
use mrte_dist::state::Merged;
use mrte_replay::report::{FailOn, Report};

use crate::publish::NatsArgs;

/// Report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Text for a terminal.
    Text,
    /// JSON (schema: replay/REPORT.md).
    Json,
    /// Self-contained HTML.
    Html,
}

/// `mrte report`.
#[derive(Args, Debug)]
pub struct ReportCmdArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Write here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Exit non-zero when a condition holds, e.g. errors>0 (repeatable).
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<FailOn>,
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// Capture counters from a publisher's JSON (see `publish::capture_json`).
fn stats_of(json: &str) -> Stats {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut s = Stats {
        packets: u(&v, "packets"),
        bytes: u(&v, "bytes"),
        sessions: u(&v, "sessions"),
        midstream_sessions: u(&v, "midstream_sessions"),
        tls_sessions: u(&v, "tls_sessions"),
        compressed_sessions: u(&v, "compressed_sessions"),
        gaps: u(&v, "gaps"),
        gap_bytes: u(&v, "gap_bytes"),
        decode_errors: u(&v, "decode_errors"),
        desyncs: u(&v, "desyncs"),
        decoder_panics: u(&v, "decoder_panics"),
        undecoded_bytes: u(&v, "undecoded_bytes"),
        table_evicted: u(&v, "table_evicted"),
        memory_drops: u(&v, "memory_drops"),
        multi_queue_sessions: u(&v, "multi_queue_sessions"),
        kernel_drops: u(&v, "kernel_drops"),
        ring_drops: u(&v, "ring_drops"),
        ..Stats::default()
    };
    if let Some(un) = v.get("undecoded") {
        s.undecoded.unsynced = u(un, "unsynced");
        s.undecoded.after_gap = u(un, "after_gap");
        s.undecoded.tls = u(un, "tls");
        s.undecoded.too_large = u(un, "too_large");
        s.undecoded.incomplete = u(un, "incomplete");
        s.undecoded.decoder_panic = u(un, "decoder_panic");
    }
    if let Some(by) = v.get("commands_by_code").and_then(|b| b.as_object()) {
        for (code, n) in by {
            if let (Ok(c), Some(n)) = (code.parse::<u8>(), n.as_u64()) {
                s.commands.0[c as usize] += n;
            }
        }
    }
    s
}

/// The merged report of a stream.
pub fn build(m: &Merged) -> (Report, serde_json::Value) {
    let mut cap = Stats::default();
    let mut eng = m.part.eng.clone();
    for p in &m.publishers {
        cap.merge(&stats_of(&p.capture));
        // Commands the publisher dropped never reached a player: counted like ring drops.
        cap.ring_drops += p.dropped_events;
        eng.ring_dropped_events += p.dropped_events;
        eng.ring_dropped_commands += p.dropped_commands;
    }
    let target = m
        .players
        .iter()
        .map(|p| p.target.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ");
    let secs = m.players.iter().map(|p| p.elapsed_s).fold(0.0, f64::max);
    let report = Report::build("report", &target, secs, &m.part.cmp, &eng, &cap);
    let dist = serde_json::json!({
        "players": m.players.iter().map(|p| serde_json::json!({
            "name": p.name,
            "partitions": p.partitions,
            "target": p.target,
            "runs": p.runs,
            "checkpoints": p.checkpoints,
            "finished": p.finished,
            "fed_commands": p.fed_commands,
            "duplicates_skipped": p.duplicates,
            "gaps": p.gaps,
            "resumed_sessions": p.resumed_sessions,
            "elapsed_s": p.elapsed_s,
        })).collect::<Vec<_>>(),
        "publishers": m.publishers.iter().map(|p| serde_json::json!({
            "origin": p.origin,
            "commands": p.commands,
            "acked_commands": p.acked_commands,
            "acked_messages": p.acked_messages,
            "acked_bytes": p.acked_bytes,
            "retries": p.retries,
            "dropped_messages": p.dropped_messages,
            "dropped_events": p.dropped_events,
            "dropped_commands": p.dropped_commands,
            "dropped_by_session": p.dropped_by_session,
        })).collect::<Vec<_>>(),
        "unreadable": m.unreadable,
    });
    (report, dist)
}

/// `mrte report`.
pub fn report(a: ReportCmdArgs) -> Result<ExitCode> {
    let rt = crate::replay_cmd::runtime()?;
    let m = rt.block_on(async {
        let client = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            async_connect(&a.nats.url),
        )
        .await
        .context("connecting to NATS: timed out")??;
        let js = async_nats_js(client);
        Ok::<_, anyhow::Error>(mrte_dist::state::merged(&js, &a.nats.stream).await?)
    })?;
    for (k, why) in &m.unreadable {
        tracing::warn!("{k}: {why}");
    }
    let (report, dist) = build(&m);
    let text = match a.format {
        ReportFormat::Text => {
            let mut t = report.to_text();
            t.push_str(&format!(
                "\ndistributed: {} players, {} publisher runs\n",
                m.players.len(),
                m.publishers.len()
            ));
            for p in &m.players {
                t.push_str(&format!(
                    "  player {} partitions {:?}: runs {}, checkpoints {}, finished {}, duplicates skipped {}, gaps {}, sessions resumed {}\n",
                    p.name, p.partitions, p.runs, p.checkpoints, p.finished, p.duplicates, p.gaps, p.resumed_sessions
                ));
            }
            for p in &m.publishers {
                t.push_str(&format!(
                    "  publisher {}: {} commands acknowledged, {} dropped in {} sessions, {} retries\n",
                    p.origin,
                    p.acked_commands,
                    p.dropped_commands,
                    p.dropped_by_session.len(),
                    p.retries
                ));
            }
            t
        }
        ReportFormat::Json => {
            let mut v: serde_json::Value = serde_json::from_str(&report.to_json())?;
            if let Some(o) = v.as_object_mut() {
                o.insert("distributed".into(), dist);
            }
            serde_json::to_string_pretty(&v)?
        }
        ReportFormat::Html => report.to_html(),
    };
    match &a.output {
        Some(p) => {
            use std::io::Write;
            let mut f = crate::replay_cmd::create_private(p)
                .with_context(|| format!("creating {}", p.display()))?;
            f.write_all(text.as_bytes())?;
        }
        None => println!("{text}"),
    }
    let failed: Vec<String> = a
        .fail_on
        .iter()
        .filter(|f| f.fails(&report))
        .map(|f| format!("{f} (value {})", f.value(&report)))
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("mrte: --fail-on conditions hold: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

async fn async_connect(url: &str) -> Result<mrte_dist::Client> {
    Ok(mrte_dist::publish::connect(url).await?)
}

fn async_nats_js(c: mrte_dist::Client) -> mrte_dist::JetStream {
    mrte_dist::jetstream(c)
}
