//! mrte-bench: decode throughput, synthetic captures, packet sender and capture-loss measurements.

mod decode;
mod floor;
mod send;
mod synth;

use anyhow::Result;

/// mimalloc: per-command records are allocated on the capture thread and freed on the consumer's,
/// which glibc malloc handles slowly (arena locks, consolidation); see bench/README.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

/// Benchmarks and load tools for mrte.
#[derive(Parser, Debug)]
#[command(name = "mrte-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// In-memory decode throughput: frames in RAM -> pipeline -> per-session rings -> discarding consumer.
    Decode(decode::DecodeArgs),
    /// Write a synthetic many-session MySQL capture (pcap).
    Synth(synth::SynthArgs),
    /// mysql_async alone on a capture's text queries: the floor under `mrte replay`.
    Floor(floor::FloorArgs),
    /// Send a capture's frames out of an interface with AF_XDP, as fast as possible or at a rate.
    Send(send::SendArgs),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Decode(a) => decode::run(a),
        Cmd::Synth(a) => synth::run(a),
        Cmd::Send(a) => send::run(a),
        Cmd::Floor(a) => floor::run(a),
    }
}
