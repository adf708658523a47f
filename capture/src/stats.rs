//! Capture counters: the plain per-thread counts the pipeline keeps, and [`LiveStats`], an
//! atomic copy published periodically for live readers (the live line, metrics).
//!
//! Every number a user needs to trust a capture is here; nothing is dropped without a counter.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Frames skipped before TCP reassembly, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Link type the slicer does not handle.
    pub unsupported_link: u64,
    /// Frame too short or malformed at link/IP/TCP level.
    pub malformed: u64,
    /// Not IPv4/IPv6 (ARP, LLDP, ...).
    pub not_ip: u64,
    /// IP but not TCP.
    pub not_tcp: u64,
    /// IP fragments (MySQL over TCP is not fragmented in practice).
    pub ip_fragment: u64,
    /// TCP to/from neither server port.
    pub other_port: u64,
    /// Captured length shorter than the IP length said (snap length cut).
    pub truncated: u64,
    /// Segments of a connection whose start was not tracked and which carried no payload.
    pub untracked: u64,
}

/// Bytes seen on server-port TCP but never decoded, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UndecodedBytes {
    /// Never synchronised on a command boundary (mid-stream start, or not MySQL at all).
    pub unsynced: u64,
    /// Waiting for a command boundary again after a TCP gap or a desync.
    pub after_gap: u64,
    /// Encrypted (the session switched to TLS).
    pub tls: u64,
    /// Commands over the size cap.
    pub too_large: u64,
    /// Packets cut off by the end of their connection.
    pub incomplete: u64,
    /// Segments being decoded when the decoder panicked, and bytes that session still held.
    pub decoder_panic: u64,
}

impl UndecodedBytes {
    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.unsynced
            + self.after_gap
            + self.tls
            + self.too_large
            + self.incomplete
            + self.decoder_panic
    }

    /// Each reason with its name (as in the JSON report), in a fixed order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("unsynced", self.unsynced),
            ("after_gap", self.after_gap),
            ("tls", self.tls),
            ("too_large", self.too_large),
            ("incomplete", self.incomplete),
            ("decoder_panic", self.decoder_panic),
        ]
    }

    fn merge(&mut self, o: &Self) {
        self.unsynced += o.unsynced;
        self.after_gap += o.after_gap;
        self.tls += o.tls;
        self.too_large += o.too_large;
        self.incomplete += o.incomplete;
        self.decoder_panic += o.decoder_panic;
    }
}

/// Everything the capture side counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames handed to the pipeline.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Frames skipped, by reason.
    pub skipped: Skipped,
    /// Sessions (TCP connections) seen.
    pub sessions: u64,
    /// Sessions still open.
    pub active_sessions: u64,
    /// Sessions first seen mid-stream.
    pub midstream_sessions: u64,
    /// Sessions that switched to TLS.
    pub tls_sessions: u64,
    /// Sessions with CLIENT_COMPRESS.
    pub compressed_sessions: u64,
    /// Commands decoded, by command byte (index = `COM_*` code).
    #[serde(skip)]
    pub commands: CommandCounts,
    /// TCP holes that never filled (lost segments).
    pub gaps: u64,
    /// Bytes lost in those holes.
    pub gap_bytes: u64,
    /// Retransmitted or overlapping bytes discarded.
    pub retransmitted_bytes: u64,
    /// Segments that arrived out of order and were buffered.
    pub out_of_order: u64,
    /// Out-of-order segments dropped because the per-direction buffer bound was reached.
    pub ooo_overflow: u64,
    /// MySQL decode errors (bytes that were not valid protocol).
    pub decode_errors: u64,
    /// Times a decoder lost its position.
    pub desyncs: u64,
    /// Times a decoder found a reliable boundary again.
    pub resyncs: u64,
    /// Commands over the size cap, skipped.
    pub too_large: u64,
    /// Unknown command bytes.
    pub unknown_commands: u64,
    /// Sessions evicted for idleness.
    pub idle_evicted: u64,
    /// Sessions evicted because the table was full (least recently used first).
    pub table_evicted: u64,
    /// Sessions whose decoding panicked; the session was closed and capture went on.
    pub decoder_panics: u64,
    /// Bytes seen but never decoded (sum of `undecoded`).
    pub undecoded_bytes: u64,
    /// Undecoded bytes by reason.
    pub undecoded: UndecodedBytes,
    /// Times a session's buffers were dropped because `--max-memory` was reached.
    pub memory_drops: u64,
    /// Most bytes held at once in reassembly, held segments and decoder buffers.
    pub peak_buffered_bytes: u64,
    /// Sessions seen on more than one RX queue (asymmetric RSS).
    pub multi_queue_sessions: u64,
    /// Frames the kernel or NIC dropped before the source got them (source-reported).
    pub kernel_drops: u64,
    /// Frames the XDP program left to the kernel stack as not server-port TCP (not in `packets`).
    pub filtered_in_kernel: u64,
    /// Frames that arrived without a kernel timestamp and got the wall clock at read time.
    pub untimed_frames: u64,
    /// Events dropped because a session's ring was full.
    pub ring_drops: u64,
    /// Sessions that lost at least one event to a full ring.
    pub ring_overflow_sessions: u64,
}

/// Command counts indexed by command byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandCounts(pub Box<[u64; 256]>);

impl Default for CommandCounts {
    fn default() -> Self {
        Self(Box::new([0; 256]))
    }
}

impl CommandCounts {
    /// Count one command.
    #[inline]
    pub fn add(&mut self, code: u8) {
        self.0[code as usize] += 1;
    }

    /// Total commands.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts as (`COM_*` name, count), in code order; unknown codes merge under COM_UNKNOWN.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for (code, &n) in self.0.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let name = crate::event::command_name(code as u8);
            match out.iter_mut().find(|(k, _)| *k == name) {
                Some((_, c)) => *c += n,
                None => out.push((name, n)),
            }
        }
        out
    }
}

impl Stats {
    /// Add the counts of another capture thread's pipeline.
    pub fn merge(&mut self, o: &Stats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.sessions += o.sessions;
        self.active_sessions += o.active_sessions;
        self.midstream_sessions += o.midstream_sessions;
        self.tls_sessions += o.tls_sessions;
        self.compressed_sessions += o.compressed_sessions;
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
        self.retransmitted_bytes += o.retransmitted_bytes;
        self.out_of_order += o.out_of_order;
        self.ooo_overflow += o.ooo_overflow;
        self.decode_errors += o.decode_errors;
        self.desyncs += o.desyncs;
        self.resyncs += o.resyncs;
        self.too_large += o.too_large;
        self.unknown_commands += o.unknown_commands;
        self.idle_evicted += o.idle_evicted;
        self.table_evicted += o.table_evicted;
        self.decoder_panics += o.decoder_panics;
        self.undecoded_bytes += o.undecoded_bytes;
        self.undecoded.merge(&o.undecoded);
        self.memory_drops += o.memory_drops;
        self.peak_buffered_bytes += o.peak_buffered_bytes;
        self.multi_queue_sessions += o.multi_queue_sessions;
        self.kernel_drops += o.kernel_drops;
        self.filtered_in_kernel += o.filtered_in_kernel;
        self.untimed_frames += o.untimed_frames;
        self.ring_drops += o.ring_drops;
        self.ring_overflow_sessions += o.ring_overflow_sessions;
        self.skipped.unsupported_link += o.skipped.unsupported_link;
        self.skipped.malformed += o.skipped.malformed;
        self.skipped.not_ip += o.skipped.not_ip;
        self.skipped.not_tcp += o.skipped.not_tcp;
        self.skipped.ip_fragment += o.skipped.ip_fragment;
        self.skipped.other_port += o.skipped.other_port;
        self.skipped.truncated += o.skipped.truncated;
        self.skipped.untracked += o.skipped.untracked;
        for (a, b) in self.commands.0.iter_mut().zip(o.commands.0.iter()) {
            *a += b;
        }
    }
}

/// Atomic counters published by the capture thread(s) for live readers.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Frames.
    pub packets: AtomicU64,
    /// Bytes.
    pub bytes: AtomicU64,
    /// Commands decoded.
    pub commands: AtomicU64,
    /// Sessions seen.
    pub sessions: AtomicU64,
    /// Sessions open.
    pub active_sessions: AtomicU64,
    /// Kernel/NIC drops.
    pub kernel_drops: AtomicU64,
    /// Ring drops.
    pub ring_drops: AtomicU64,
    /// TCP gaps.
    pub gaps: AtomicU64,
    /// Decoder desyncs.
    pub desyncs: AtomicU64,
    /// Decode errors.
    pub decode_errors: AtomicU64,
    /// TLS sessions.
    pub tls_sessions: AtomicU64,
    /// Connections seen on more than one RX queue.
    pub multi_queue_sessions: AtomicU64,
    /// Decoder panics contained.
    pub decoder_panics: AtomicU64,
    /// Bytes seen but never decoded.
    pub undecoded_bytes: AtomicU64,
    /// Sessions evicted from a full table.
    pub table_evicted: AtomicU64,
    /// Buffer drops at the memory limit.
    pub memory_drops: AtomicU64,
    /// Undecoded bytes by reason, in [`UndecodedBytes::named`] order.
    pub undecoded_reasons: [AtomicU64; 6],
}

impl LiveStats {
    /// Overwrite the live copy with `s` (single writer per `LiveStats`).
    pub fn publish(&self, s: &Stats) {
        let r = Ordering::Relaxed;
        self.packets.store(s.packets, r);
        self.bytes.store(s.bytes, r);
        self.commands.store(s.commands.total(), r);
        self.sessions.store(s.sessions, r);
        self.active_sessions.store(s.active_sessions, r);
        self.kernel_drops.store(s.kernel_drops, r);
        self.ring_drops.store(s.ring_drops, r);
        self.gaps.store(s.gaps, r);
        self.desyncs.store(s.desyncs, r);
        self.decode_errors.store(s.decode_errors, r);
        self.multi_queue_sessions.store(s.multi_queue_sessions, r);
        self.tls_sessions.store(s.tls_sessions, r);
        self.decoder_panics.store(s.decoder_panics, r);
        self.undecoded_bytes.store(s.undecoded_bytes, r);
        self.table_evicted.store(s.table_evicted, r);
        self.memory_drops.store(s.memory_drops, r);
        for (a, (_, v)) in self.undecoded_reasons.iter().zip(s.undecoded.named()) {
            a.store(v, r);
        }
    }

    /// Undecoded bytes by reason (names as in [`UndecodedBytes::named`]).
    pub fn undecoded_by_reason(&self) -> [(&'static str, u64); 6] {
        let mut out = UndecodedBytes::default().named();
        for (o, a) in out.iter_mut().zip(&self.undecoded_reasons) {
            o.1 = a.load(Ordering::Relaxed);
        }
        out
    }
}
