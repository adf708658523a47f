//! AF_XDP receive socket (xsk-rs): the one module that owns UMEM memory and XDP rings.
//!
//! [`XdpSource::open`] binds one socket to one RX queue, trying native driver mode with zero-copy,
//! then native copy, then generic (SKB) mode, and says which one bound. xsk-rs loads libxdp's
//! default program, which redirects every frame of that queue to the socket; frames that are not
//! TCP to or from a server port are then counted and skipped by the pipeline. Frames are read in
//! batches and given straight back to the fill ring after the batch is decoded; the pipeline
//! copies out only what commands need. Socket statistics (rx_dropped, rx_ring_full, fill ring
//! empty) are exposed as drops so that loss is never silent.
//!
//! Loss before the socket is not in these statistics: on a veth (the lab), native XDP makes the
//! peer queue frames in a 256-entry ring and drop them when the receive side falls behind,
//! counted only as the peer's TX dropped (`ip -s link` on mir0 in mrte-prod); the pipeline still
//! shows such loss as TCP gaps. Measured on the lab at ~13k queries/s: native copy lost ~200
//! frames in 8 s, generic mode none. So `Auto` on a virtual interface (no `device` in sysfs)
//! tries generic mode first, then native copy; on a physical NIC it tries zero-copy, native copy,
//! then generic.
//!
//! Timestamps are the wall clock read once per batch, right after the batch arrived (AF_XDP
//! copy mode carries no kernel receive time).
//!
//! Scope: one socket on one RX queue (queue 0 when started from `live`); the lab's veth has one
//! queue. Several queues, each with its own thread and UMEM, and an XDP filter program that drops
//! non-server-port frames in the kernel are not done here.
//!
//! bpffs: `ip netns exec` mounts a fresh /sys without /sys/fs/bpf, so libxdp prints "No bpffs
//! found ... Falling back to loading single prog without dispatcher" and attaches its program
//! directly; capture works either way. To use the libxdp dispatcher (several XDP programs on one
//! interface), mount bpffs first: `ip netns exec NS sh -c 'mount -t bpf bpf /sys/fs/bpf; exec
//! mrte inspect -i IFACE ...'`.
#![allow(unsafe_code)]

use std::io;
use std::num::NonZeroU32;

use xsk_rs::config::{BindFlags, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// Frames in the UMEM (and the fill ring).
const FRAMES: u32 = 4096;
/// Frames read per batch.
const BATCH: usize = 64;

/// Which XDP attach mode to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Zero-copy driver mode, else driver copy mode, else generic mode.
    Auto,
    /// Driver mode, zero-copy only.
    ZeroCopy,
    /// Driver mode, copy.
    Driver,
    /// Generic (SKB) mode.
    Skb,
}

/// A bound AF_XDP socket on one RX queue.
pub struct XdpSource {
    rx: RxQueue,
    fq: FillQueue,
    _tx: TxQueue,
    _cq: CompQueue,
    batch: Vec<FrameDesc>,
    pending: Vec<FrameDesc>,
    umem: Umem,
    /// The mode that bound, in words.
    pub mode: &'static str,
}

impl std::fmt::Debug for XdpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpSource")
            .field("mode", &self.mode)
            .finish()
    }
}

fn attempt(
    iface: &Interface,
    queue: u32,
    xdp: XdpFlags,
    bind: BindFlags,
) -> Result<XdpSource, String> {
    let frames = NonZeroU32::new(FRAMES).ok_or("frame count")?;
    let ring = QueueSize::new(FRAMES).map_err(|e| e.to_string())?;
    // The kernel publishes its fill-ring consumer index lazily, so the ring is twice the frame
    // count: giving frames back can then never find it full.
    let fill = QueueSize::new(2 * FRAMES).map_err(|e| e.to_string())?;
    let ucfg = UmemConfig::builder()
        .fill_queue_size(fill)
        .comp_queue_size(QueueSize::new(64).map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| e.to_string())?;
    let (umem, descs) = Umem::new(ucfg, frames, false).map_err(|e| format!("UMEM: {e}"))?;
    let scfg = SocketConfig::builder()
        .rx_queue_size(ring)
        .tx_queue_size(QueueSize::new(64).map_err(|e| e.to_string())?)
        .xdp_flags(xdp)
        .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    // SAFETY: the UMEM is fresh and bound by this one socket only (no shared UMEM), and it lives
    // in the same XdpSource as the queues, declared after them so it is dropped last.
    let (tx, rx, fq_cq) =
        unsafe { xsk_rs::Socket::new(scfg, &umem, iface, queue) }.map_err(|e| format!("{e}"))?;
    let (mut fq, cq) = fq_cq.ok_or("no fill/completion queue")?;
    // SAFETY: every descriptor belongs to this UMEM and none is in use elsewhere yet.
    let given = unsafe { fq.produce(&descs) };
    if given != descs.len() {
        return Err(format!("fill ring took {given} of {} frames", descs.len()));
    }
    Ok(XdpSource {
        batch: descs[..BATCH].to_vec(),
        pending: Vec::with_capacity(descs.len()),
        umem,
        rx,
        fq,
        _tx: tx,
        _cq: cq,
        mode: "",
    })
}

impl XdpSource {
    /// Bind to `iface` queue `queue`; the error lists why each mode failed.
    pub fn open(iface: &str, queue: u32, mode: XdpMode) -> Result<Self, String> {
        let ifc: Interface = iface
            .parse()
            .map_err(|_| format!("bad interface name {iface:?}"))?;
        let tries: &[(&'static str, XdpFlags, BindFlags)] = &[
            (
                "native zero-copy",
                XdpFlags::XDP_FLAGS_DRV_MODE,
                BindFlags::XDP_ZEROCOPY,
            ),
            (
                "native copy",
                XdpFlags::XDP_FLAGS_DRV_MODE,
                BindFlags::XDP_COPY,
            ),
            (
                "generic (SKB) copy",
                XdpFlags::XDP_FLAGS_SKB_MODE,
                BindFlags::XDP_COPY,
            ),
        ];
        let virtual_if = !std::path::Path::new(&format!("/sys/class/net/{iface}/device")).exists();
        let pick: Vec<_> = match mode {
            XdpMode::Auto if virtual_if => {
                tracing::info!(
                    "AF_XDP on {iface}: virtual interface (no device in sysfs), trying generic (SKB) \
                     mode first: native XDP on a veth moves the peer onto a 256-frame ring that \
                     drops under load"
                );
                vec![tries[2], tries[1]]
            }
            XdpMode::Auto => tries.to_vec(),
            XdpMode::ZeroCopy => tries[..1].to_vec(),
            XdpMode::Driver => tries[1..2].to_vec(),
            XdpMode::Skb => tries[2..].to_vec(),
        };
        let mut why = Vec::new();
        for (name, xdp, bind) in pick {
            match attempt(&ifc, queue, xdp, bind) {
                Ok(mut s) => {
                    s.mode = name;
                    if !why.is_empty() {
                        tracing::info!(
                            "AF_XDP on {iface} queue {queue}: {name} ({})",
                            why.join("; ")
                        );
                    }
                    return Ok(s);
                }
                Err(e) => why.push(format!("{name}: {e}")),
            }
        }
        Err(why.join("; "))
    }

    /// Wait up to `timeout_ms` for frames; call `f` on each with the batch's arrival time
    /// (microseconds since the Unix epoch, read once per batch after the frames arrived), then
    /// give them back to the kernel.
    ///
    /// Frames the fill ring cannot take yet are kept and offered again on the next call; while
    /// they wait, the kernel counts the frames it could not place as fill-ring-empty drops.
    pub fn recv_batch(
        &mut self,
        timeout_ms: i32,
        mut f: impl FnMut(&[u8], u64),
    ) -> io::Result<usize> {
        // SAFETY: the batch descriptors are scratch slots owned by this source; the kernel writes
        // received frames' addresses and lengths into them, and those frames stay ours until they
        // are produced to the fill ring again.
        let n = unsafe { self.rx.poll_and_consume(&mut self.batch, timeout_ms) }?;
        let ts_us = if n > 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        } else {
            0
        };
        for d in &self.batch[..n] {
            // SAFETY: `d` was just handed back by the RX ring, so the kernel does not write to
            // that frame until it is given back to the fill ring below.
            let data = unsafe { self.umem.data(d) };
            f(data.contents(), ts_us);
        }
        self.pending.extend_from_slice(&self.batch[..n]);
        let mut done = 0;
        while done < self.pending.len() {
            let end = (done + BATCH).min(self.pending.len());
            // SAFETY: every pending frame was consumed from the RX ring, is no longer borrowed,
            // and is given back to the fill ring of the UMEM it belongs to exactly once.
            let k = unsafe { self.fq.produce(&self.pending[done..end]) };
            if k == 0 {
                break;
            }
            done += k;
        }
        self.pending.drain(..done);
        if done > 0 && self.fq.needs_wakeup() {
            self.fq.wakeup(self.rx.fd_mut(), 0)?;
        }
        Ok(n)
    }

    /// Frames the kernel dropped for this socket (rx_dropped + rx_ring_full + fill ring empty).
    pub fn drops(&mut self) -> u64 {
        match self.rx.fd_mut().xdp_statistics() {
            Ok(s) => s.rx_dropped() + s.rx_ring_full() + s.rx_fill_ring_empty_descs(),
            Err(_) => 0,
        }
    }
}
