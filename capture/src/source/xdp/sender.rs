//! [`XdpSender`]: an AF_XDP transmit-only socket for load tools (`mrte-bench send`). It does not
//! receive frames or attach a program.
#![allow(unsafe_code)]

use std::io;
use std::num::NonZeroU32;
use std::time::Duration;

use xsk_rs::config::{
    BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// Frames in a sender's UMEM (and its TX ring).
const TX_FRAMES: u32 = 4096;

/// An AF_XDP transmit-only socket in copy mode, for load tools: frames are copied into UMEM
/// chunks and sent in batches, and chunks are reused once the kernel completes them. No XDP
/// program is attached.
pub struct XdpSender {
    tx: TxQueue,
    cq: CompQueue,
    _rx: RxQueue,
    _fq: FillQueue,
    free: Vec<FrameDesc>,
    out: Vec<FrameDesc>,
    done: Vec<FrameDesc>,
    umem: Umem,
    in_flight: usize,
    /// Frames the kernel has completed (handed to the driver).
    pub completed: u64,
    /// Frames longer than a UMEM chunk, not sent.
    pub too_long: u64,
}

impl std::fmt::Debug for XdpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpSender")
            .field("in_flight", &self.in_flight)
            .field("completed", &self.completed)
            .finish()
    }
}

impl XdpSender {
    /// Bind a transmit socket to `iface` queue `queue` (copy mode).
    pub fn open(iface: &str, queue: u32) -> Result<Self, String> {
        let ifc: Interface = iface
            .parse()
            .map_err(|_| format!("bad interface name {iface:?}"))?;
        let frames = NonZeroU32::new(TX_FRAMES).ok_or("frame count")?;
        let ring = QueueSize::new(TX_FRAMES).map_err(|e| e.to_string())?;
        let ucfg = UmemConfig::builder()
            .fill_queue_size(QueueSize::new(64).map_err(|e| e.to_string())?)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| e.to_string())?;
        let (umem, descs) = Umem::new(ucfg, frames, false).map_err(|e| format!("UMEM: {e}"))?;
        let scfg = SocketConfig::builder()
            .rx_queue_size(QueueSize::new(64).map_err(|e| e.to_string())?)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .xdp_flags(XdpFlags::XDP_FLAGS_SKB_MODE)
            .bind_flags(BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        // SAFETY: the UMEM is fresh and used by this one socket only; it is declared after the
        // queues in XdpSender, so it outlives them.
        let (tx, rx, fq_cq) =
            unsafe { xsk_rs::Socket::new(scfg, &umem, &ifc, queue) }.map_err(|e| format!("{e}"))?;
        let (fq, cq) = fq_cq.ok_or("no fill/completion queue")?;
        Ok(Self {
            tx,
            cq,
            _rx: rx,
            _fq: fq,
            out: Vec::with_capacity(descs.len()),
            done: descs.clone(),
            free: descs,
            umem,
            in_flight: 0,
            completed: 0,
            too_long: 0,
        })
    }

    /// Take back the chunks of completed frames.
    fn reap(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        // SAFETY: `done` holds scratch descriptors the completion ring overwrites with the
        // addresses of frames this socket sent; those chunks are then free for reuse.
        let n = unsafe { self.cq.consume(&mut self.done) };
        self.free.extend_from_slice(&self.done[..n]);
        self.in_flight -= n;
        self.completed += n as u64;
    }

    /// Queue as many of `frames` as there are free chunks and kick the kernel; returns how many
    /// were taken (frames too long for a chunk are counted in `too_long` and taken).
    pub fn send(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.reap();
        self.out.clear();
        let mut taken = 0;
        for f in frames {
            let Some(mut d) = self.free.pop() else { break };
            taken += 1;
            // SAFETY: `d` is a free chunk of this UMEM: not in any ring and not borrowed.
            let mut data = unsafe { self.umem.data_mut(&mut d) };
            let mut c = data.cursor();
            c.set_pos(0);
            if c.buf_len() < f.len() {
                self.too_long += 1;
                self.free.push(d);
                continue;
            }
            io::Write::write_all(&mut c, f)?;
            self.out.push(d);
        }
        let mut queued = 0;
        while queued < self.out.len() {
            // SAFETY: every descriptor in `out` is a chunk of this UMEM holding a frame, owned by
            // no ring; after produce the kernel owns it until the completion ring returns it.
            let k = unsafe { self.tx.produce(&self.out[queued..]) };
            if k == 0 {
                self.tx.wakeup()?;
                self.reap();
                continue;
            }
            queued += k;
        }
        self.in_flight += queued;
        // In copy mode one wakeup sends at most 32 frames (the kernel's TX_BATCH_SIZE).
        for _ in 0..queued.div_ceil(32).max(usize::from(taken == 0)) {
            self.tx.wakeup()?;
        }
        Ok(taken)
    }

    /// Kick the kernel until every queued frame has completed or `timeout` passes; returns the
    /// frames still in flight.
    pub fn flush(&mut self, timeout: Duration) -> io::Result<usize> {
        let until = std::time::Instant::now() + timeout;
        while self.in_flight > 0 && std::time::Instant::now() < until {
            self.tx.wakeup()?;
            self.reap();
            if self.in_flight > 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        Ok(self.in_flight)
    }
}
