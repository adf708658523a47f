//! mrte: MySQL real-time traffic emulator.
//!
//! One binary with seven subcommands: `inspect` (decode a capture file or a live interface),
//! `record` (write server-port traffic of a live interface to a pcap), `run` (live capture +
//! replay on a test server + report) and `replay` (the same from a capture file); `publish`,
//! `play` and `report` split capture and replay over NATS JetStream (several replay hosts).

mod cli;
mod config;
mod inspect;
mod metrics;
mod play;
mod publish;
mod replay_cmd;
mod report_cmd;

use std::process::ExitCode;

/// mimalloc: per-command records are allocated on the capture thread and freed on the consumer's,
/// which glibc malloc handles slowly (arena locks, consolidation); see bench/README.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    config::hide_target_password(&std::env::args_os().collect::<Vec<_>>());
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mrte: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let args = cli::Cli::parse_from(argv);
    cli::init_tracing(args.verbose);
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mrte: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
