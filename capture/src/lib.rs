//! Capture side of mrte: packet sources, link/IP/TCP slicing, TCP reassembly, the sans-IO MySQL
//! decoder, query fingerprints, the session table and the per-session SPSC rings.
//!
//! Live capture and pcap files go through the very same [`pipeline::Pipeline`]; it never touches
//! sockets, clocks or threads: time comes from the packet.

pub mod commit;
pub mod event;
pub mod fingerprint;
pub mod mysql;
pub mod net;
pub mod pipeline;
pub mod ring;
pub mod shard;
pub mod source;
pub mod stats;
mod table;
pub mod tcp;
