//! mrte's XDP program (`capture/bpf/mrte_xdp.c`, compiled by build.rs): loaded and attached
//! through libxdp, its XSKMAP filled with the sockets of [`super::XdpSource`], its per-CPU
//! counters read. It does not own sockets or UMEM memory.
#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::io;

use libxdp_sys as sys;

/// The XDP program object, compiled from `capture/bpf/mrte_xdp.c` by build.rs.
static PROGRAM_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mrte_xdp.o"));

/// Counters kept by the XDP program, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramCounters {
    /// Frames that were not server-port TCP, left to the kernel stack.
    pub passed: u64,
    /// Frames sent to the socket.
    pub redirected: u64,
    /// Frames sent to the socket without a kernel timestamp.
    pub untimed: u64,
}

/// mrte's XDP program attached to one interface; detached and closed on drop.
pub(super) struct Program {
    obj: *mut sys::bpf_object,
    prog: *mut sys::xdp_program,
    pub(super) ifindex: i32,
    mode: sys::xdp_attach_mode,
    attached: bool,
    xsks_fd: i32,
    counters_fd: i32,
    cpus: usize,
}

fn map_fd(obj: *mut sys::bpf_object, name: &str) -> Result<i32, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: `obj` is a loaded bpf_object owned by the caller and `c` outlives the call.
    let fd = unsafe { sys::bpf_object__find_map_fd_by_name(obj, c.as_ptr()) };
    if fd < 0 {
        return Err(format!("XDP program has no map {name}"));
    }
    Ok(fd)
}

/// Number of possible CPUs (the per-CPU map value count).
fn possible_cpus() -> usize {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let mut n = 0;
    for part in s.trim().split(',') {
        let mut it = part.split('-').map(|x| x.trim().parse::<usize>());
        match (it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b))) if b >= a => n = n.max(b + 1),
            (Some(Ok(a)), None) => n = n.max(a + 1),
            _ => {}
        }
    }
    n.max(1)
}

impl Program {
    /// Load the program, attach it to `ifindex` in `mode` and mark `ports` as server ports.
    pub(super) fn attach(
        ifindex: i32,
        mode: sys::xdp_attach_mode,
        ports: &[u16],
    ) -> Result<Self, String> {
        // SAFETY: the buffer is a valid ELF object that lives for the whole program; libbpf
        // copies what it keeps, and a null `opts` asks for defaults.
        let obj = unsafe {
            sys::bpf_object__open_mem(
                PROGRAM_OBJECT.as_ptr().cast(),
                PROGRAM_OBJECT.len(),
                std::ptr::null(),
            )
        };
        if obj.is_null() {
            return Err(format!(
                "opening the XDP program: {}",
                io::Error::last_os_error()
            ));
        }
        let sec = CString::new("xdp").map_err(|e| e.to_string())?;
        // SAFETY: `obj` is a valid object that is not loaded yet; `sec` outlives the call.
        let prog = unsafe { sys::xdp_program__from_bpf_obj(obj, sec.as_ptr()) };
        // SAFETY: libxdp_get_error only looks at the pointer value (null or ERR_PTR).
        let err = unsafe { sys::libxdp_get_error(prog as *const c_void) };
        if prog.is_null() || err != 0 {
            // SAFETY: `obj` came from bpf_object__open_mem and nothing else refers to it.
            unsafe { sys::bpf_object__close(obj) };
            return Err(format!(
                "reading the XDP program: {}",
                io::Error::from_raw_os_error(-(err as i32))
            ));
        }
        let mut p = Program {
            obj,
            prog,
            ifindex,
            mode,
            attached: false,
            xsks_fd: -1,
            counters_fd: -1,
            cpus: possible_cpus(),
        };
        // SAFETY: `prog` is a valid xdp_program; libxdp loads the object and attaches it.
        let rc = unsafe { sys::xdp_program__attach(prog, ifindex, mode, 0) };
        if rc < 0 {
            return Err(attach_error(ifindex, mode, -rc));
        }
        p.attached = true;
        p.xsks_fd = map_fd(obj, "xsks")?;
        p.counters_fd = map_fd(obj, "counters")?;
        let ports_fd = map_fd(obj, "ports")?;
        for &port in ports {
            let key = u32::from(port);
            let one = 1u8;
            // SAFETY: `ports` is an array map of u32 keys and u8 values; both point at locals.
            let rc = unsafe {
                sys::bpf_map_update_elem(
                    ports_fd,
                    (&key as *const u32).cast(),
                    (&one as *const u8).cast(),
                    0,
                )
            };
            if rc < 0 {
                return Err(format!(
                    "setting server port {port}: {}",
                    io::Error::last_os_error()
                ));
            }
        }
        Ok(p)
    }

    /// Send frames of RX queue `queue` to the socket `fd`.
    pub(super) fn set_socket(&self, queue: u32, fd: i32) -> Result<(), String> {
        // SAFETY: `xsks` is an XSKMAP of u32 keys and u32 socket fds; both point at locals.
        let rc = unsafe {
            sys::bpf_map_update_elem(
                self.xsks_fd,
                (&queue as *const u32).cast(),
                (&fd as *const i32).cast(),
                0,
            )
        };
        if rc < 0 {
            return Err(format!(
                "adding the socket to the XSKMAP: {}",
                io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub(super) fn counters(&self) -> ProgramCounters {
        let mut sum = [0u64; 3];
        let mut vals = vec![0u64; self.cpus];
        for (k, total) in sum.iter_mut().enumerate() {
            let key = k as u32;
            // SAFETY: `counters` is a per-CPU array of u64: the kernel writes one u64 per
            // possible CPU into `vals`, which has exactly that many.
            let rc = unsafe {
                sys::bpf_map_lookup_elem(
                    self.counters_fd,
                    (&key as *const u32).cast(),
                    vals.as_mut_ptr().cast(),
                )
            };
            if rc == 0 {
                *total = vals.iter().sum();
            }
        }
        ProgramCounters {
            passed: sum[0],
            redirected: sum[1],
            untimed: sum[2],
        }
    }
}

/// Why attaching failed, in words; for a program already attached (left behind by an mrte that
/// was killed, or another tool's), its id and how to remove it: without CAP_SYS_ADMIN neither
/// libxdp nor mrte may look at another program, so mrte never removes one by itself.
fn attach_error(ifindex: i32, mode: sys::xdp_attach_mode, errno: i32) -> String {
    let e = io::Error::from_raw_os_error(errno);
    if errno != libc::EBUSY && errno != libc::EEXIST {
        return format!("attaching the XDP program: {e}");
    }
    let iface = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .find(|d| {
            std::fs::read_to_string(d.path().join("ifindex"))
                .is_ok_and(|s| s.trim() == ifindex.to_string())
        })
        .map_or_else(
            || format!("ifindex {ifindex}"),
            |d| d.file_name().to_string_lossy().into_owned(),
        );
    // The program in the way may sit in the other mode (generic and native exclude each other).
    let query = |flag: i32| {
        let mut id = 0u32;
        // SAFETY: a netlink query that writes one u32 into the local it is given.
        let rc = unsafe { sys::bpf_xdp_query_id(ifindex, flag, &mut id) };
        (rc == 0 && id != 0).then_some(id)
    };
    let skb = (2, "xdpgeneric");
    let drv = (4, "xdpdrv");
    let tried = if mode == sys::xdp_attach_mode_XDP_MODE_SKB {
        skb
    } else {
        drv
    };
    let (id, off) = match (query(skb.0), query(drv.0)) {
        (Some(id), _) => (Some(id), skb.1),
        (None, Some(id)) => (Some(id), drv.1),
        (None, None) => (None, tried.1),
    };
    let which = id.map_or_else(
        || "an XDP program".to_string(),
        |id| format!("XDP program id {id}"),
    );
    format!(
        "attaching the XDP program: {e}: {which} is already attached to {iface} ({off} mode), \
         left behind by an mrte that was killed or belonging to another tool; if no other capture \
         uses {iface}, remove it with `ip link set dev {iface} {off} off` (in the interface's \
         network namespace) and start mrte again"
    )
}

// SAFETY: the raw pointers are used only by `Drop` (which runs once, when the last `Arc` goes) and
// the other methods only issue bpf(2) calls on map file descriptors, which the kernel serialises.
unsafe impl Send for Program {}
// SAFETY: as above; no method mutates the struct through a shared reference.
unsafe impl Sync for Program {}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: `prog` and `obj` are valid and owned here; the program was attached to
        // `ifindex` in `mode` when `attached`; xdp_program__close leaves an external object to
        // its owner, which closes it last.
        unsafe {
            if self.attached {
                sys::xdp_program__detach(self.prog, self.ifindex, self.mode, 0);
            }
            sys::xdp_program__close(self.prog);
            sys::bpf_object__close(self.obj);
        }
    }
}
