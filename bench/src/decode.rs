//! In-memory decode throughput: a capture's frames loaded into RAM, fed through the same
//! [`Pipeline`] as live capture into per-session SPSC rings, drained by a consumer thread that
//! discards events. Reports packets/s, Gbit/s and ns/packet for the producer core: by wall
//! time, and by the decode thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), which a shared,
//! loaded machine disturbs less (time the thread was preempted is not counted).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use mrte_capture::event::EventSink;
use mrte_capture::net::LinkType;
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_capture::ring::{RingSink, SessionStream};

/// `mrte-bench decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Passes over the file (a fresh pipeline each pass).
    #[arg(long, default_value_t = 5)]
    pub repeat: u32,
    /// Ring capacity per session (events).
    #[arg(long, default_value_t = 4096)]
    pub ring: usize,
    /// Core to pin the decode thread to.
    #[arg(long, default_value_t = 0)]
    pub core: usize,
    /// Server port.
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also time the floor: one xxh3 pass over every frame's bytes and nothing else (what any
    /// decoder that hashes result rows pays at least to read the capture from memory).
    #[arg(long)]
    pub floor: bool,
}

/// Frames per batch handed to the pipeline before the sink's flush: AF_XDP reads up to 256
/// per batch (capture/src/source/xdp), a quarter of that here.
const BATCH: usize = 64;

struct Frames {
    link: LinkType,
    data: Vec<u8>,
    index: Vec<(u64, u32, u32)>,
}

fn load(path: &std::path::Path) -> Result<Frames> {
    let mut link = LinkType::Ethernet;
    let mut data = Vec::new();
    let mut index = Vec::new();
    mrte_capture::source::pcap::for_each_frame(path, |l, f, ts| {
        link = l;
        let off = data.len() as u32;
        data.extend_from_slice(f);
        index.push((ts, off, f.len() as u32));
    })
    .with_context(|| format!("reading {}", path.display()))?;
    Ok(Frames { link, data, index })
}

/// CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID, through libc: rustix's own
/// vDSO lookup faults under valgrind, and callgrind instruction counts of this benchmark are
/// how decode changes are judged on a noisy machine).
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

fn drain(rx: crossbeam_channel::Receiver<SessionStream>, stop: Arc<AtomicBool>) -> u64 {
    let mut streams: Vec<SessionStream> = Vec::new();
    let mut events = 0u64;
    loop {
        while let Ok(s) = rx.try_recv() {
            streams.push(s);
        }
        let mut got = 0;
        streams.retain_mut(|s| {
            while s.try_pop().is_some() {
                got += 1;
            }
            !s.is_finished()
        });
        events += got;
        if got == 0 {
            if stop.load(Ordering::Acquire) && streams.is_empty() && rx.is_empty() {
                return events;
            }
            std::thread::yield_now();
        }
    }
}

/// Run the benchmark.
pub fn run(a: DecodeArgs) -> Result<()> {
    let frames = load(&a.file)?;
    let n = frames.index.len() as u64;
    let bytes: u64 = frames.index.iter().map(|&(_, _, l)| u64::from(l)).sum();
    if let Some(core) =
        core_affinity::get_core_ids().and_then(|ids| ids.into_iter().find(|c| c.id == a.core))
    {
        core_affinity::set_for_current(core);
    }
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut total = Duration::ZERO;
    let mut commands = 0;
    let mut events = 0;
    let mut dropped = 0;
    for _ in 0..a.repeat {
        let (mut sink, rx) = RingSink::new(a.ring);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("mrte-consume".into())
                .spawn(move || drain(rx, stop))?
        };
        let mut p = Pipeline::new(PipelineConfig {
            ports: vec![a.port],
            ..PipelineConfig::default()
        });
        let t = Instant::now();
        let c = thread_cpu();
        let mut last_ts = 0;
        // In batches of BATCH frames, as the capture loop takes them from a source.
        for batch in frames.index.chunks(BATCH) {
            for &(ts, off, len) in batch {
                let f = &frames.data[off as usize..(off + len) as usize];
                p.handle_frame(frames.link, f, ts, &mut sink);
                last_ts = ts;
            }
            sink.flush();
        }
        p.finish(last_ts, &mut sink);
        sink.close_all();
        let dt = t.elapsed();
        best_cpu = best_cpu.min(thread_cpu().saturating_sub(c));
        stop.store(true, Ordering::Release);
        events = consumer
            .join()
            .map_err(|_| anyhow::anyhow!("consumer panicked"))?;
        commands = p.stats().commands.total();
        dropped = sink.stats().dropped_events;
        best = best.min(dt);
        total += dt;
    }
    let floor_cpu = if a.floor {
        floor(&frames, a.repeat)
    } else {
        Duration::ZERO
    };
    let floor_ns = floor_cpu.as_nanos() as f64 / n as f64;
    let pps = n as f64 / best.as_secs_f64();
    let gbps = bytes as f64 * 8.0 / best.as_secs_f64() / 1e9;
    let ns = best.as_nanos() as f64 / n as f64;
    let cpu_ns = best_cpu.as_nanos() as f64 / n as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "file": a.file.display().to_string(), "packets": n, "bytes": bytes, "commands": commands,
                "events": events, "ring_dropped": dropped, "best_s": best.as_secs_f64(),
                "mean_s": total.as_secs_f64() / f64::from(a.repeat), "mpps": pps / 1e6, "gbps": gbps, "ns_per_packet": ns,
                "cpu_best_s": best_cpu.as_secs_f64(), "cpu_ns_per_packet": cpu_ns, "cpu_mpps": 1e3 / cpu_ns,
                "floor_cpu_ns_per_packet": a.floor.then_some(floor_ns),
                "floor_cpu_mpps": a.floor.then_some(1e3 / floor_ns)
            })
        );
    } else {
        println!(
            "{}: {n} packets, {bytes} bytes, {commands} commands, {events} events consumed, {dropped} ring drops\n\
             best of {}: {:.3} s  => {:.2} Mpps, {:.2} Gbit/s, {:.1} ns/packet (one decode core)\n\
             decode thread CPU, best of {}: {:.3} s => {:.2} Mpps, {:.1} ns/packet",
            a.file.display(),
            a.repeat,
            best.as_secs_f64(),
            pps / 1e6,
            gbps,
            ns,
            a.repeat,
            best_cpu.as_secs_f64(),
            1e3 / cpu_ns,
            cpu_ns
        );
        if a.floor {
            println!(
                "floor (one xxh3 pass over every frame), best of {}: {:.1} ns/packet => {:.2} Mpps",
                a.repeat,
                floor_ns,
                1e3 / floor_ns
            );
        }
    }
    Ok(())
}

/// Best decode-thread CPU of `repeat` passes that only hash every frame's bytes.
fn floor(frames: &Frames, repeat: u32) -> Duration {
    let mut best = Duration::MAX;
    let mut sum = 0u64;
    for _ in 0..repeat {
        let c = thread_cpu();
        for &(_, off, len) in &frames.index {
            let f = &frames.data[off as usize..(off + len) as usize];
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(std::hint::black_box(f)));
        }
        best = best.min(thread_cpu().saturating_sub(c));
    }
    std::hint::black_box(sum);
    best
}
