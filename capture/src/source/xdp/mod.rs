//! AF_XDP receive socket (xsk-rs) and mrte's XDP program: the one module that owns UMEM memory,
//! XDP rings and BPF objects.
//!
//! [`XdpSource::open`] binds one socket to one RX queue, trying native driver mode with zero-copy,
//! then native copy, then generic (SKB) mode, and says which one bound. It attaches mrte's own
//! XDP program (`capture/bpf/mrte_xdp.c`, compiled by build.rs, loaded through libxdp) instead
//! of libxdp's default one: the program sends only TCP to or from a server port (plus IP
//! fragments and TCP headers cut short, so that user space counts them) to the socket and lets
//! every other frame go on to the kernel stack; it writes the kernel's receive time
//! (`bpf_ktime_get_ns`) in front of each frame it redirects. Frames are read in batches without a
//! system call; when the ring is empty the thread sleeps for a short, fixed time, so a moderately
//! loaded mirror port costs a few hundred wakeups a second instead of one per frame (a port quiet
//! for 100 ms, or not yet seen busy: the thread blocks in poll(2) until the next frame, a stop
//! request on the stop pipe, or the capture's end, at most 1 s at a time), while timestamps stay
//! per frame (the sleep adapts to the recent rate so that it fills at most a quarter of the RX
//! ring). The UMEM (mrte's own private memory, see `umem`) uses 2 KiB chunks when the
//! interface's MTU lets frames fit (half the memory the kernel faults in and pins at bind time,
//! the bulk of the set-up cost), else 4 KiB. Frames go straight back to the fill ring after the
//! batch is decoded; the pipeline copies out only what commands need. Socket statistics
//! (rx_dropped, rx_ring_full, fill ring empty: [`XdpDrops`], each lost frame counted once) are
//! exposed as drops so that loss is never silent, and the program's own counters say how many
//! frames it passed to the stack and how many it could not
//! timestamp (those get the wall clock at batch time).
//!
//! Loss before the socket is not in these statistics: on a veth (the lab), native XDP makes the
//! peer queue frames in a 256-entry ring and drop them when the receive side falls behind,
//! counted only as the peer's TX dropped (`ip -s link` on mir0 in mrte-prod); the pipeline still
//! shows such loss as TCP gaps. Measured on the lab at ~13k queries/s: native copy lost ~200
//! frames in 8 s, generic mode none. So `Auto` on a virtual interface (no `device` in sysfs)
//! tries generic mode first, then native copy; on a physical NIC it tries zero-copy, native copy,
//! then generic.
//!
//! Scope: one socket per RX queue. [`XdpSource::open`] binds the first and attaches the program;
//! [`XdpSource::open_queue`] binds another queue in the same mode and adds it to the same XSKMAP
//! (the program redirects each frame to the socket of the queue it arrived on). Threads, pinning and
//! the per-queue pipelines are `live`'s business. Busy polling ([`XdpSource::set_busy_poll`]:
//! SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET) is optional: the loop then never sleeps
//! and drives the driver's poll from its own core. [`XdpSender`] is the transmit side used by
//! `mrte-bench send`.
//!
//! bpffs: `ip netns exec` mounts a fresh /sys without /sys/fs/bpf, so libxdp prints "No bpffs
//! found ... Falling back to loading single prog without dispatcher" and attaches the program
//! directly; capture works either way. To use the libxdp dispatcher (several XDP programs on one
//! interface), mount bpffs first: `ip netns exec NS sh -c 'mount -t bpf bpf /sys/fs/bpf; exec
//! mrte inspect -i IFACE ...'`.
#![allow(unsafe_code)]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use libxdp_sys as sys;
use xsk_rs::config::{BindFlags, XdpFlags};

/// Frames in the UMEM (and the RX ring): at 650 k frames/s (the lab sender's top rate) about
/// 25 ms of traffic, of which the idle sleep below lets a quarter fill; the rest is room for a
/// capture thread held off the CPU. Half as many saved 0.02 s of set-up but dropped 7 294 of
/// 750 000 frames at the top rate on a loaded machine (load average 7).
const FRAMES: u32 = 16384;
/// UMEM chunk size when the interface's frames fit in it (MTU up to [`SMALL_CHUNK_MTU`]): half the
/// shared memory (and set-up time: the kernel faults in and pins every page of it) of
/// [`LARGE_CHUNK`].
const SMALL_CHUNK: u32 = 2048;
/// UMEM chunk size for larger MTUs.
const LARGE_CHUNK: u32 = 4096;
/// Largest MTU whose frames (plus Ethernet header and two VLAN tags) fit in a [`SMALL_CHUNK`]
/// after the kernel's 256-byte XDP headroom.
const SMALL_CHUNK_MTU: u32 = SMALL_CHUNK - 256 - 14 - 8;
/// Frames read per batch.
const BATCH: usize = 256;
/// Shortest and longest sleep when the RX ring is empty; in between, the sleep lets the recent
/// frame rate fill at most a quarter of the ring.
const IDLE_SLEEP_MIN: Duration = Duration::from_micros(200);
/// The longest sleep also bounds a burst after a quiet spell: at 1 Mpps, 4 ms fill a quarter of
/// the ring.
const IDLE_SLEEP_MAX: Duration = Duration::from_millis(4);
/// Empty reads at the longest sleep (~100 ms without a frame) before the loop blocks in poll(2).
const IDLE_POLL_AFTER: u32 = 25;
/// The longest poll(2) on a quiet port: the loop publishes its counters and checks that the
/// interface is still there this often. Stop requests ([`XdpSource::set_stop_fd`]) and the end of
/// the capture's duration ([`XdpSource::set_deadline`]) end it sooner.
const IDLE_POLL_MS: i32 = 1000;

/// `struct mrte_meta` of the XDP program: magic, reserved, CLOCK_MONOTONIC nanoseconds.
const META_LEN: usize = 16;
/// `MRTE_META_MAGIC` of the XDP program.
const META_MAGIC: u32 = 0x4d52_5445;

mod program;
mod sender;
mod umem;

pub use crate::source::frames::XdpMode;
use program::Program;
pub use program::ProgramCounters;
pub use sender::XdpSender;
use umem::{Desc, RxSocket};

/// The socket's drop counters (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDrops {
    /// Frames the socket dropped: in copy modes, every frame that found the fill ring empty
    /// (also counted in `fill_ring_empty`) or did not fit a chunk.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full (user space behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (user space has not given frames back).
    pub fill_ring_empty: u64,
    /// Zero-copy mode: there the driver counts an empty fill ring without `rx_dropped`.
    pub zero_copy: bool,
}

impl XdpDrops {
    /// Frames lost: in copy modes an empty fill ring is already in `rx_dropped` (the kernel
    /// counts it in both), so it is not added twice.
    pub fn total(&self) -> u64 {
        let fill = if self.zero_copy {
            self.fill_ring_empty
        } else {
            0
        };
        self.rx_dropped + self.rx_ring_full + fill
    }
}

/// Nice value of a capture thread: above ordinary processes, so that a busy machine cannot keep
/// it off the CPU while its RX ring fills (measured: woken from its idle sleep with three
/// CPU-bound processes on its core, it waited up to 77 ms to run, and the 16 384-frame ring
/// holds 42 ms at 390 kpps).
pub const CAPTURE_NICE: i32 = -10;

/// Give the calling thread [`CAPTURE_NICE`]; false when not permitted (no CAP_SYS_NICE), and
/// the thread keeps its priority.
pub fn raise_thread_priority() -> bool {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on this thread's own id, integer arguments only.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CAPTURE_NICE) };
    rc == 0
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds.
fn realtime_offset_ns() -> i64 {
    let read = |clock| {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec to write to.
        unsafe { libc::clock_gettime(clock, &mut t) };
        t.tv_sec * 1_000_000_000 + t.tv_nsec
    };
    let mono = read(libc::CLOCK_MONOTONIC);
    let real = read(libc::CLOCK_REALTIME);
    real - mono
}

fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The recent frame rate, for sizing idle sleeps.
struct RateWindow {
    since: std::time::Instant,
    frames: u64,
    sleep: Duration,
    /// Empty reads in a row.
    empty: u32,
}

impl RateWindow {
    fn new() -> Self {
        Self {
            since: std::time::Instant::now(),
            frames: 0,
            // Quiet until the first frame: a capture started on an idle port blocks in poll(2)
            // at once instead of sleeping its way up from the shortest sleep.
            sleep: IDLE_SLEEP_MAX,
            empty: IDLE_POLL_AFTER,
        }
    }

    /// The sleep for an empty ring: a quarter of the ring at the rate of the last window.
    fn idle_sleep(&mut self, frames: u32) -> Duration {
        let dt = self.since.elapsed();
        if dt >= Duration::from_millis(50) {
            let fps = self.frames as f64 / dt.as_secs_f64();
            let fill = f64::from(frames / 4) / fps.max(1.0);
            self.sleep = Duration::from_secs_f64(fill).clamp(IDLE_SLEEP_MIN, IDLE_SLEEP_MAX);
            self.since = std::time::Instant::now();
            self.frames = 0;
        }
        self.sleep
    }

    /// Quiet long enough (the longest sleep, then [`IDLE_POLL_AFTER`] empty reads more) to
    /// block in poll(2) until a frame arrives, instead of waking on a timer.
    fn quiet(&self) -> bool {
        self.sleep >= IDLE_SLEEP_MAX && self.empty >= IDLE_POLL_AFTER
    }
}

/// A bound AF_XDP socket on one RX queue, with mrte's XDP program in front of it.
pub struct XdpSource {
    /// Declared before `program`: the socket leaves the XSKMAP before the program goes.
    sock: RxSocket,
    batch: Vec<Desc>,
    /// Chunks read but not yet taken back by the fill ring.
    pending: Vec<u64>,
    program: Arc<Program>,
    flags: Flags,
    offset_ns: i64,
    rate: RateWindow,
    busy_poll: bool,
    /// Frames in the UMEM and the RX ring.
    frames: u32,
    /// Readable once a stop is requested: ends a quiet poll(2) at once.
    stop_fd: Option<std::os::fd::OwnedFd>,
    /// The capture's end: a quiet poll(2) does not outlast it.
    deadline: Option<std::time::Instant>,
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

/// The interface index of `iface` (in this network namespace).
pub fn ifindex_of(iface: &str) -> Result<i32, String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("no interface {iface:?}"))
}

/// The MTU of `iface` (in this network namespace).
fn iface_mtu(iface: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// XDP flags, libxdp attach mode and bind flags of one attach mode.
type Flags = (XdpFlags, sys::xdp_attach_mode, BindFlags);

/// Bind a socket on `queue` with `flags`; attach mrte's program unless `program` is given (the
/// one already attached for another queue of the same interface).
fn attempt(
    name: &str,
    ifindex: i32,
    queue: u32,
    flags: Flags,
    ports: &[u16],
    program: Option<Arc<Program>>,
) -> Result<XdpSource, String> {
    let (xdp, attach_mode, bind) = flags;
    let count = FRAMES;
    let chunk = if iface_mtu(name).is_some_and(|m| m <= SMALL_CHUNK_MTU) {
        SMALL_CHUNK
    } else {
        LARGE_CHUNK
    };
    let sock = RxSocket::new(
        name,
        queue,
        count,
        chunk,
        xdp.bits(),
        (bind | BindFlags::XDP_USE_NEED_WAKEUP).bits(),
    )?;
    let program = match program {
        Some(p) => p,
        None => Arc::new(Program::attach(ifindex, attach_mode, ports)?),
    };
    program.set_socket(queue, sock.fd())?;
    Ok(XdpSource {
        sock,
        batch: vec![Desc::default(); BATCH],
        pending: Vec::with_capacity(count as usize),
        program,
        flags,
        offset_ns: realtime_offset_ns(),
        rate: RateWindow::new(),
        busy_poll: false,
        frames: count,
        stop_fd: None,
        deadline: None,
        mode: "",
    })
}

impl XdpSource {
    /// Bind to `iface` queue `queue` for TCP traffic of `ports`; the error lists why each mode
    /// failed.
    pub fn open(iface: &str, queue: u32, mode: XdpMode, ports: &[u16]) -> Result<Self, String> {
        let ifindex = ifindex_of(iface)?;
        type Try = (&'static str, Flags);
        let tries: [Try; 3] = [
            (
                "native zero-copy",
                (
                    XdpFlags::XDP_FLAGS_DRV_MODE,
                    sys::xdp_attach_mode_XDP_MODE_NATIVE,
                    BindFlags::XDP_ZEROCOPY,
                ),
            ),
            (
                "native copy",
                (
                    XdpFlags::XDP_FLAGS_DRV_MODE,
                    sys::xdp_attach_mode_XDP_MODE_NATIVE,
                    BindFlags::XDP_COPY,
                ),
            ),
            (
                "generic (SKB) copy",
                (
                    XdpFlags::XDP_FLAGS_SKB_MODE,
                    sys::xdp_attach_mode_XDP_MODE_SKB,
                    BindFlags::XDP_COPY,
                ),
            ),
        ];
        let virtual_if = !std::path::Path::new(&format!("/sys/class/net/{iface}/device")).exists();
        let pick: Vec<Try> = match mode {
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
        for (name, flags) in pick {
            match attempt(iface, ifindex, queue, flags, ports, None) {
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

    /// Bind another RX queue of the same interface in the mode this source bound, sharing its
    /// XDP program (frames of `queue` go to the new socket).
    pub fn open_queue(&self, iface: &str, queue: u32) -> Result<Self, String> {
        let ifindex = ifindex_of(iface)?;
        let mut s = attempt(
            iface,
            ifindex,
            queue,
            self.flags,
            &[],
            Some(self.program.clone()),
        )
        .map_err(|e| format!("queue {queue}: {e}"))?;
        s.mode = self.mode;
        Ok(s)
    }

    /// Read the frames waiting in the RX ring (no system call) and call `f` on each with its
    /// receive time in microseconds since the Unix epoch (the kernel's, from the XDP program's
    /// metadata; the wall clock now for a frame without it), then give them back to the kernel.
    /// With nothing waiting, sleep (0.2 to 4 ms, so that the recent frame rate fills at most a
    /// quarter of the RX ring meanwhile) and return 0; after ~100 ms without a frame, block in
    /// poll(2) instead (up to 50 ms), which the first frame ends.
    ///
    /// Frames the fill ring cannot take yet are kept and offered again on the next call; while
    /// they wait, the kernel counts the frames it could not place as fill-ring-empty drops.
    pub fn recv_batch(&mut self, mut f: impl FnMut(&[u8], u64)) -> io::Result<usize> {
        let n = self.sock.recv(&mut self.batch);
        if n == 0 {
            if self.busy_poll {
                self.kick_busy_poll();
                return Ok(0);
            }
            if self.sock.fill_needs_wakeup() {
                self.sock.wakeup();
            }
            let sleep = self.rate.idle_sleep(self.frames);
            if self.rate.quiet() {
                // A quiet port: the socket wakes this thread on its first frame, the stop fd on
                // a stop request; the timeout bounds how stale the published counters get.
                self.wait_quiet()?;
            } else {
                std::thread::sleep(sleep);
            }
            self.rate.empty = self.rate.empty.saturating_add(1);
            return Ok(0);
        }
        self.rate.empty = 0;
        self.rate.frames += n as u64;
        let mut wall = 0;
        self.prefetch(0, n);
        self.prefetch(1, n);
        for i in 0..n {
            self.prefetch(i + 2, n);
            let d = self.batch[i];
            let start = self.sock.frame_ptr(d);
            // SAFETY: the kernel places frame data at least XDP_PACKET_HEADROOM (256) bytes into
            // its UMEM chunk, so the META_LEN bytes in front of it lie inside the same chunk,
            // which this source owns until the frame goes back to the fill ring below. The XDP
            // program wrote them (or they hold stale bytes, which the magic check rejects).
            let meta: [u8; META_LEN] =
                unsafe { std::ptr::read_unaligned(start.sub(META_LEN).cast()) };
            let magic = u32::from_ne_bytes([meta[0], meta[1], meta[2], meta[3]]);
            let ts = if magic == META_MAGIC {
                // SAFETY: as above; clearing the magic keeps a later frame in this chunk that
                // arrives without metadata from reusing this timestamp.
                unsafe { std::ptr::write_unaligned(start.sub(META_LEN).cast::<u32>(), 0) };
                let mono = u64::from_ne_bytes([
                    meta[8], meta[9], meta[10], meta[11], meta[12], meta[13], meta[14], meta[15],
                ]);
                (mono as i64).saturating_add(self.offset_ns).max(0) as u64 / 1000
            } else {
                if wall == 0 {
                    wall = wall_us();
                }
                wall
            };
            // SAFETY: `d` was just received on this socket and goes back to the fill ring only
            // after this loop, so the kernel does not write to its chunk while `f` reads it.
            f(unsafe { self.sock.frame(d) }, ts);
        }
        // The fill ring is twice the UMEM, so it takes the whole batch unless the kernel has
        // not published its consumer index yet; only then do chunks wait in `pending`.
        let done = if self.pending.is_empty() {
            let done = self.sock.fill(&self.batch[..n], |d| d.addr);
            self.pending
                .extend(self.batch[done..n].iter().map(|d| d.addr));
            done
        } else {
            self.pending.extend(self.batch[..n].iter().map(|d| d.addr));
            let done = self.sock.fill(&self.pending, |a| a);
            self.pending.drain(..done);
            done
        };
        if done > 0 && self.sock.fill_needs_wakeup() {
            self.sock.wakeup();
        }
        Ok(n)
    }

    /// Block until a frame arrives, a stop is requested, the deadline passes or
    /// [`IDLE_POLL_MS`] go by.
    fn wait_quiet(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut ms = IDLE_POLL_MS;
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(std::time::Instant::now());
            ms = ms.min(left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32);
        }
        let mut fds = [
            libc::pollfd {
                fd: self.sock.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd for the call's duration; its length is
        // passed with it. A negative fd (no stop fd) is ignored by poll(2).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A file descriptor that becomes readable when capture should stop (the read end of the
    /// capture's stop pipe): it ends a quiet poll(2) at once. It is never read.
    pub fn set_stop_fd(&mut self, fd: std::os::fd::OwnedFd) {
        self.stop_fd = Some(fd);
    }

    /// The capture's end: a quiet poll(2) returns by then.
    pub fn set_deadline(&mut self, at: Option<std::time::Instant>) {
        self.deadline = at;
    }

    /// Busy polling: ask the kernel to prefer busy polling on this socket (SO_PREFER_BUSY_POLL),
    /// to poll the device for up to `usecs` per call (SO_BUSY_POLL) and `budget` frames per poll
    /// (SO_BUSY_POLL_BUDGET); the RX loop then never sleeps, and an empty ring makes it drive the
    /// driver's NAPI from this thread (a `recvfrom` without data). It spends the whole core and
    /// matters with native driver mode on a NIC with NAPI; in generic mode it only costs CPU.
    pub fn set_busy_poll(&mut self, usecs: u32, budget: u32) -> Result<(), String> {
        let fd = self.sock.fd();
        let set = |opt: libc::c_int, v: libc::c_int, name: &str| -> Result<(), String> {
            // SAFETY: `fd` is this source's open socket; the option value is a local c_int whose
            // size is passed alongside.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(format!("{name}: {}", io::Error::last_os_error()));
            }
            Ok(())
        };
        set(libc::SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL")?;
        set(libc::SO_BUSY_POLL, usecs as libc::c_int, "SO_BUSY_POLL")?;
        set(
            libc::SO_BUSY_POLL_BUDGET,
            budget as libc::c_int,
            "SO_BUSY_POLL_BUDGET",
        )?;
        self.busy_poll = true;
        Ok(())
    }

    /// One busy-poll pass: a non-blocking `recvfrom` on the socket runs the driver's poll.
    fn kick_busy_poll(&mut self) {
        let fd = self.sock.fd();
        // SAFETY: a zero-length, non-blocking receive on this source's socket with null buffers
        // and address, as the kernel's AF_XDP busy-poll interface expects; nothing is written.
        unsafe {
            libc::recvfrom(
                fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Ask the CPU to load frame `i` of the batch into cache: the kernel wrote it on another
    /// CPU (in copy mode, the sender's), so decoding it would otherwise start with a miss on
    /// every cache line.
    #[inline]
    fn prefetch(&self, i: usize, n: usize) {
        if i >= n {
            return;
        }
        // From the metadata in front of the frame (its own cache line: the frame starts on a
        // line boundary) to the frame's last byte, one line at a time.
        let d = self.batch[i];
        let start = self.sock.frame_ptr(d) as usize;
        let (mut line, end) = (start.saturating_sub(META_LEN) & !63, start + d.len as usize);
        #[cfg(target_arch = "x86_64")]
        while line < end {
            // SAFETY: prefetch is a hint that never faults; the line lies inside the frame's
            // chunk of the UMEM.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line as *const i8,
                )
            };
            line += 64;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (line, end);
    }

    /// Index of the interface this source is bound to.
    pub fn ifindex(&self) -> i32 {
        self.program.ifindex
    }

    /// Re-read the offset between the realtime and monotonic clocks (call about once a second,
    /// so that timestamps follow clock steps).
    pub fn refresh_clock(&mut self) {
        self.offset_ns = realtime_offset_ns();
    }

    /// Frames the kernel dropped for this socket, by reason (zero if the socket cannot say).
    pub fn drops(&mut self) -> XdpDrops {
        let zero_copy = self.flags.2.contains(BindFlags::XDP_ZEROCOPY);
        match self.sock.statistics() {
            Ok((rx_dropped, rx_ring_full, fill_ring_empty)) => XdpDrops {
                rx_dropped,
                rx_ring_full,
                fill_ring_empty,
                zero_copy,
            },
            Err(_) => XdpDrops::default(),
        }
    }

    /// The XDP program's counters.
    pub fn program_counters(&self) -> ProgramCounters {
        self.program.counters()
    }
}
