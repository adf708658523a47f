//! `mrte-bench send`: a capture's frames sent out of an interface with an AF_XDP socket (copy
//! mode, batches of up to 64 frames per ring update, at most 32 per kick as the kernel allows),
//! as fast as it goes or at a fixed rate. A load source for capture-loss measurements on the lab:
//! run it on `mir0` in mrte-prod, and the frames arrive on the mirror port `span0`.
//!
//! It does not build packets: it sends the capture's frames as they are, looping over the file
//! `--loops` times (later loops are TCP retransmissions to a decoder, identical frames to a
//! recorder).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

/// `mrte-bench send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Capture file (pcap or pcapng, Ethernet frames).
    pub file: PathBuf,
    /// Interface to send on.
    #[arg(short = 'i', long)]
    pub iface: String,
    /// TX queue.
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// Passes over the file.
    #[arg(long, default_value_t = 1)]
    pub loops: u32,
    /// Frames per second (default: as fast as possible).
    #[arg(long)]
    pub pps: Option<u64>,
    /// Send only one direction: `client` (frames to the server port) or `server` (from it).
    #[arg(long, value_parser = ["client", "server"])]
    pub only: Option<String>,
    /// Server port for `--only`.
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// Core to pin the sender to.
    #[arg(long)]
    pub core: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "xdp")]
pub fn run(a: SendArgs) -> Result<()> {
    use mrte_capture::source::xdp::XdpSender;
    let mut data = Vec::new();
    let mut index: Vec<(usize, usize)> = Vec::new();
    mrte_capture::source::pcap::for_each_frame(&a.file, |link, f, _| {
        if link == mrte_capture::net::LinkType::Ethernet && keep(&a, f) {
            index.push((data.len(), f.len()));
            data.extend_from_slice(f);
        }
    })
    .with_context(|| format!("reading {}", a.file.display()))?;
    if index.is_empty() {
        bail!("{}: no Ethernet frames", a.file.display());
    }
    if let Some(c) = a.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let mut tx = XdpSender::open(&a.iface, a.queue)
        .map_err(|e| anyhow::anyhow!("AF_XDP sender on {}: {e}", a.iface))?;
    const BATCH: usize = 64;
    let mut batch: Vec<&[u8]> = Vec::with_capacity(BATCH);
    let total = index.len() as u64 * u64::from(a.loops);
    let mut bytes = 0u64;
    let mut queued = 0u64;
    let start = Instant::now();
    for _ in 0..a.loops {
        let mut i = 0;
        while i < index.len() {
            if let Some(pps) = a.pps {
                let due = start + Duration::from_secs_f64(queued as f64 / pps as f64);
                let now = Instant::now();
                if due > now {
                    let wait = due - now;
                    if wait > Duration::from_micros(100) {
                        std::thread::sleep(wait - Duration::from_micros(50));
                    }
                    while Instant::now() < due {
                        std::hint::spin_loop();
                    }
                }
            }
            let n = match a.pps {
                Some(pps) => (pps / 10_000).clamp(1, BATCH as u64) as usize,
                None => BATCH,
            };
            batch.clear();
            batch.extend(
                index[i..(i + n).min(index.len())]
                    .iter()
                    .map(|&(o, l)| &data[o..o + l]),
            );
            let k = tx.send(&batch)?;
            bytes += batch[..k].iter().map(|f| f.len() as u64).sum::<u64>();
            i += k;
            queued += k as u64;
        }
    }
    let left = tx.flush(Duration::from_secs(5))?;
    let secs = start.elapsed().as_secs_f64();
    let sent = tx.completed;
    let pps = sent as f64 / secs;
    let gbps = bytes as f64 * 8.0 / secs / 1e9;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "iface": a.iface, "frames": total, "sent": sent, "not_completed": left,
                "too_long": tx.too_long, "bytes": bytes, "seconds": secs, "pps": pps, "gbps": gbps,
            })
        );
    } else {
        println!(
            "sent {sent} of {total} frames ({bytes} bytes) on {} in {secs:.3} s: {:.0} pps, {gbps:.2} Gbit/s; \
             {left} not completed, {} too long",
            a.iface, pps, tx.too_long
        );
    }
    Ok(())
}

/// Whether `--only` keeps this frame.
#[cfg(feature = "xdp")]
fn keep(a: &SendArgs, frame: &[u8]) -> bool {
    let Some(only) = &a.only else { return true };
    let Ok(s) = etherparse::SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    let Some(etherparse::TransportSlice::Tcp(t)) = s.transport else {
        return false;
    };
    match only.as_str() {
        "client" => t.destination_port() == a.port,
        _ => t.source_port() == a.port,
    }
}

#[cfg(not(feature = "xdp"))]
pub fn run(_: SendArgs) -> Result<()> {
    bail!("mrte-bench was built without the `xdp` feature")
}
