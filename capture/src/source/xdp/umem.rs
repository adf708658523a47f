//! The receive socket's UMEM and rings, made directly with libxdp: mrte's own memory for the
//! UMEM (private anonymous, not populated up front) and the RX and fill rings read and written in
//! place, a batch at a time.
//!
//! Why not xsk-rs here (the sender still uses it): xsk-rs maps the UMEM shared (shmem) with
//! MAP_POPULATE, so every 4 KiB page went through the shmem fault path, the page cache and the
//! LRU at start-up, the kernel then walked them all again to pin them, and tearing down the shmem
//! inode at exit cost as much again: 60-70 % of an idle capture's CPU (44-56 ms for the 32 MiB
//! UMEM, against 24-25 ms now). Private memory is faulted in once, by the kernel's pin at bind
//! time. Transparent huge pages (MADV_HUGEPAGE) were tried and were slower on the lab's VM (the
//! guest zeroing fresh 2 MiB pages the host had to back: 74-143 ms). Its ring calls were also
//! out-of-line C functions per descriptor.
//!
//! It does not attach programs (see `program`) nor decide batch sizes or sleeps (see the parent).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use libxdp_sys as sys;

/// One received frame: its address in the UMEM (where the data starts) and length.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Desc {
    pub addr: u64,
    pub len: u32,
}

/// An AF_XDP socket bound to one RX queue, with its own UMEM, fill and RX rings. Dropping it
/// closes the socket, then the UMEM, then unmaps the memory.
pub(super) struct RxSocket {
    area: NonNull<u8>,
    len: usize,
    chunk: u64,
    umem: *mut sys::xsk_umem,
    xsk: *mut sys::xsk_socket,
    /// Boxed: libxdp keeps pointers to the fill and completion rings of the UMEM.
    fill: Box<sys::xsk_ring_prod>,
    _comp: Box<sys::xsk_ring_cons>,
    rx: Box<sys::xsk_ring_cons>,
    fd: RawFd,
}

// SAFETY: the socket, its rings and its memory are used by one thread at a time (the capture
// thread that owns the source); nothing else holds the raw pointers.
unsafe impl Send for RxSocket {}

/// A ring's shared producer or consumer index.
///
/// # Safety
/// `p` must point at a live, 4-byte aligned ring index of a mapped XDP ring.
unsafe fn index<'a>(p: *mut u32) -> &'a AtomicU32 {
    // SAFETY: per the contract; AtomicU32 has the layout of u32.
    unsafe { AtomicU32::from_ptr(p) }
}

/// Memory for the UMEM: private anonymous, not touched here (the kernel's pin at registration
/// faults it in).
fn map_area(len: usize) -> Result<NonNull<u8>, String> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no existing
    // memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("UMEM mmap: {}", io::Error::last_os_error()));
    }
    NonNull::new(p.cast()).ok_or_else(|| "UMEM mmap returned null".to_string())
}

impl RxSocket {
    /// A UMEM of `frames` chunks of `chunk` bytes and a socket on `ifname` queue `queue` with
    /// an RX ring of `frames` entries and a fill ring of twice that (the kernel publishes its
    /// fill consumer index lazily: giving frames back then never finds it full); every chunk is
    /// given to the fill ring.
    pub(super) fn new(
        ifname: &str,
        queue: u32,
        frames: u32,
        chunk: u32,
        xdp_flags: u32,
        bind_flags: u16,
    ) -> Result<Self, String> {
        let len = frames as usize * chunk as usize;
        let area = map_area(len)?;
        let unmap = |area: NonNull<u8>| {
            // SAFETY: the mapping made above, no longer registered with any socket.
            unsafe { libc::munmap(area.as_ptr().cast(), len) };
        };
        // SAFETY: all-zero is a valid value of these plain C structs (libxdp fills them).
        let mut fill: Box<sys::xsk_ring_prod> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: as above.
        let mut comp: Box<sys::xsk_ring_cons> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: as above.
        let mut rx: Box<sys::xsk_ring_cons> = Box::new(unsafe { std::mem::zeroed() });
        let ucfg = sys::xsk_umem_config {
            fill_size: 2 * frames,
            comp_size: 64,
            frame_size: chunk,
            frame_headroom: 0,
            flags: 0,
        };
        let mut umem: *mut sys::xsk_umem = std::ptr::null_mut();
        // SAFETY: `area` is `len` bytes of page-aligned memory that outlives the UMEM (unmapped
        // only after xsk_umem__delete); the ring structs are boxed, so their addresses, which
        // libxdp keeps, stay valid for the UMEM's life.
        let rc = unsafe {
            sys::xsk_umem__create(
                &mut umem,
                area.as_ptr().cast(),
                len as u64,
                &mut *fill,
                &mut *comp,
                &ucfg,
            )
        };
        if rc != 0 {
            unmap(area);
            return Err(format!("UMEM: {}", io::Error::from_raw_os_error(-rc)));
        }
        let name = match CString::new(ifname) {
            Ok(n) => n,
            Err(_) => {
                // SAFETY: the UMEM made above, with no socket.
                unsafe { sys::xsk_umem__delete(umem) };
                unmap(area);
                return Err(format!("bad interface name {ifname:?}"));
            }
        };
        // SAFETY: all-zero is a valid xsk_socket_config; the fields are set below.
        let mut scfg: sys::xsk_socket_config = unsafe { std::mem::zeroed() };
        scfg.rx_size = frames;
        scfg.tx_size = 0;
        scfg.__bindgen_anon_1.libxdp_flags = sys::XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        scfg.xdp_flags = xdp_flags;
        scfg.bind_flags = bind_flags;
        let mut xsk: *mut sys::xsk_socket = std::ptr::null_mut();
        // SAFETY: `umem` is live and used by no other socket; `name` outlives the call; `rx`
        // is boxed and outlives the socket; no TX ring is asked for (null).
        let rc = unsafe {
            sys::xsk_socket__create(
                &mut xsk,
                name.as_ptr(),
                queue,
                umem,
                &mut *rx,
                std::ptr::null_mut(),
                &scfg,
            )
        };
        if rc != 0 {
            // SAFETY: the UMEM made above, with no socket.
            unsafe { sys::xsk_umem__delete(umem) };
            unmap(area);
            return Err(format!("socket: {}", io::Error::from_raw_os_error(-rc)));
        }
        // SAFETY: `xsk` is the live socket made above.
        let fd = unsafe { sys::xsk_socket__fd(xsk) };
        let mut s = RxSocket {
            area,
            len,
            chunk: u64::from(chunk),
            umem,
            xsk,
            fill,
            _comp: comp,
            rx,
            fd,
        };
        let all: Vec<u64> = (0..u64::from(frames))
            .map(|i| i * u64::from(chunk))
            .collect();
        let given = s.fill(&all, |a| a);
        if given != all.len() {
            return Err(format!("fill ring took {given} of {} frames", all.len()));
        }
        Ok(s)
    }

    /// The socket's file descriptor (poll(2), the XSKMAP, socket options).
    pub(super) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Move up to `out.len()` received descriptors into `out` and release their RX ring slots
    /// (the frames stay this socket's until given back with [`RxSocket::fill`]); how many.
    pub(super) fn recv(&mut self, out: &mut [Desc]) -> usize {
        let r = &mut *self.rx;
        // SAFETY: `producer`/`consumer` point at the RX ring's indices, mapped for the socket's
        // life.
        let (prod, cons) = unsafe { (index(r.producer), index(r.consumer)) };
        let head = cons.load(Ordering::Relaxed);
        let avail = prod.load(Ordering::Acquire).wrapping_sub(head);
        let n = (avail as usize).min(out.len());
        let ring = r.ring.cast::<sys::xdp_desc>();
        for (i, o) in out[..n].iter_mut().enumerate() {
            let slot = head.wrapping_add(i as u32) & r.mask;
            // SAFETY: `slot` is within the ring's `mask + 1` descriptors, published by the
            // kernel (below the producer index read with Acquire) and not yet released.
            let d = unsafe { ring.add(slot as usize).read() };
            *o = Desc {
                addr: d.addr,
                len: d.len,
            };
        }
        if n > 0 {
            cons.store(head.wrapping_add(n as u32), Ordering::Release);
        }
        n
    }

    /// The bytes of a received frame.
    ///
    /// # Safety
    /// `d` must come from [`RxSocket::recv`] of this socket and not have been given back to
    /// the fill ring: until then the kernel does not write to that chunk.
    pub(super) unsafe fn frame(&self, d: Desc) -> &[u8] {
        // SAFETY: per the contract the descriptor lies inside the UMEM area (the kernel checks
        // addr + len against the chunk); the area is mapped for `self`'s life.
        unsafe {
            std::slice::from_raw_parts(self.area.as_ptr().add(d.addr as usize), d.len as usize)
        }
    }

    /// A pointer to the start of a received frame's data, for the metadata in front of it.
    pub(super) fn frame_ptr(&self, d: Desc) -> *mut u8 {
        self.area.as_ptr().wrapping_add(d.addr as usize)
    }

    /// Give chunks (any address inside each: `addr` of each item) back to the fill ring, in
    /// order; how many it took.
    pub(super) fn fill<T: Copy>(&mut self, items: &[T], addr: impl Fn(T) -> u64) -> usize {
        let f = &mut *self.fill;
        // SAFETY: the fill ring's indices, mapped for the socket's life.
        let (prod, cons) = unsafe { (index(f.producer), index(f.consumer)) };
        let head = prod.load(Ordering::Relaxed);
        let free = f.size - head.wrapping_sub(cons.load(Ordering::Acquire));
        let n = (free as usize).min(items.len());
        let ring = f.ring.cast::<u64>();
        let mask = !(self.chunk - 1);
        for (i, &a) in items[..n].iter().enumerate() {
            let slot = head.wrapping_add(i as u32) & f.mask;
            // SAFETY: `slot` is a free entry of the fill ring (below consumer + size), which
            // only this thread produces to.
            unsafe { ring.add(slot as usize).write(addr(a) & mask) };
        }
        if n > 0 {
            prod.store(head.wrapping_add(n as u32), Ordering::Release);
        }
        n
    }

    /// The kernel asks to be woken to take fill-ring entries (XDP_USE_NEED_WAKEUP).
    pub(super) fn fill_needs_wakeup(&self) -> bool {
        // SAFETY: the fill ring's flags word, mapped for the socket's life.
        unsafe { index(self.fill.flags).load(Ordering::Relaxed) & sys::XDP_RING_NEED_WAKEUP != 0 }
    }

    /// Wake the kernel's receive path (a non-blocking, empty recvfrom).
    pub(super) fn wakeup(&self) {
        // SAFETY: a zero-length, non-blocking receive on this socket with null buffers and
        // address, as the AF_XDP interface expects; nothing is written.
        unsafe {
            libc::recvfrom(
                self.fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The socket's drop counters: rx_dropped, rx_ring_full, fill ring empty.
    pub(super) fn statistics(&self) -> io::Result<(u64, u64, u64)> {
        // SAFETY: all-zero is a valid xdp_statistics.
        let mut st: sys::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<sys::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes, which are passed along.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut sys::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.rx_dropped, st.rx_ring_full, st.rx_fill_ring_empty_descs))
    }
}

impl Drop for RxSocket {
    fn drop(&mut self) {
        // SAFETY: the socket and UMEM made in `new`, deleted once, socket first; the memory is
        // unmapped after the kernel has let go of it.
        unsafe {
            sys::xsk_socket__delete(self.xsk);
            sys::xsk_umem__delete(self.umem);
            libc::munmap(self.area.as_ptr().cast(), self.len);
        }
    }
}
