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
///
/// Transparent huge pages are turned off for the process at start-up (`main`): mimalloc asks
/// for them on its arenas, so every per-session ring (allocated whole, touched from its first
/// slot) and every fresh stretch of heap would fault in 2 MiB at a time. With them, a soak whose
/// replay lagged behind 2 000 short connections reached 5 GiB RSS (bench/README, "Soak"), and a
/// session flood paid 0.02-0.6 s of kernel time at random (compaction, zeroing 2 MiB pages).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> ExitCode {
    // Best effort: an old kernel without PR_SET_THP_DISABLE only costs memory.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
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
