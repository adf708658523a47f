//! Command-line interface: argument definitions and the glue from subcommands to the crates.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mrte_capture::mysql::DecoderConfig;
use mrte_capture::pipeline::{Pipeline, PipelineConfig};

use crate::inspect::{Format, InspectSink};

/// MySQL real-time traffic emulator: decode MySQL sessions off a mirror port or a capture file and
/// replay them on a test server, comparing production and test latency per query fingerprint.
#[derive(Parser, Debug)]
#[command(name = "mrte", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Decode MySQL traffic from a capture file (-r) or a live interface (-i) and print it.
    Inspect(InspectArgs),
}

/// What decoding needs to know.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Server port (repeatable); a session is a TCP connection to one of them.
    #[arg(short = 'p', long = "port", default_value = "3306")]
    pub ports: Vec<u16>,
    /// Largest command kept whole, in MiB; bigger ones are counted as too large.
    #[arg(long, default_value_t = 256)]
    pub max_command_mib: usize,
    /// Close sessions idle for this many seconds (capture time).
    #[arg(long, default_value_t = 600)]
    pub idle_timeout: u64,
}

impl DecodeArgs {
    /// Pipeline settings from the flags.
    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig {
            ports: self.ports.clone(),
            decoder: DecoderConfig {
                max_command_bytes: self.max_command_mib.saturating_mul(1 << 20),
            },
            idle_timeout_us: self.idle_timeout.saturating_mul(1_000_000),
            ..PipelineConfig::default()
        }
    }
}

/// `mrte inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Capture file to read (pcap or pcapng).
    #[arg(
        short = 'r',
        long = "read",
        value_name = "FILE",
        required_unless_present = "iface"
    )]
    pub file: Option<PathBuf>,
    /// Live interface to capture from (a mirror/SPAN port).
    #[arg(short = 'i', long = "iface", conflicts_with = "file")]
    pub iface: Option<String>,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write output here instead of stdout.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Set up tracing on stderr.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .init();
}

/// Run a parsed command line.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Inspect(a) => inspect(a),
    }
}

fn output(path: &Option<PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
    })
}

fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let out = output(&a.output)?;
    let mut sink = InspectSink::new(a.format, out);
    let mut pipeline = Pipeline::new(a.decode.pipeline_config());
    if let Some(file) = &a.file {
        crate::glue::run_file(file, &mut pipeline, &mut sink)
            .with_context(|| format!("reading {}", file.display()))?;
        let stats = pipeline.stats().clone();
        sink.finish(&stats, None).or_else(ignore_broken_pipe)?;
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!("live inspect (-i) is not wired yet")
}

fn ignore_broken_pipe(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}
