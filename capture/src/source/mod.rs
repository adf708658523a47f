//! Packet sources: pcap/pcapng files ([`pcap`]); live sources are added beside it.
//!
//! Every source hands `(LinkType, frame, ts_us)` to the same [`crate::pipeline::Pipeline`].

pub mod live;
pub mod pcap;
#[cfg(feature = "xdp")]
pub mod xdp;
