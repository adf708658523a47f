//! Packet sources: pcap/pcapng files ([`pcap`]), live interfaces ([`live`]: AF_XDP from [`xdp`]
//! or libpcap), and the one capture loop they share ([`frames`]).
//!
//! Every source hands `(LinkType, frame, ts_us)` to the same [`crate::pipeline::Pipeline`].

pub mod frames;
pub mod live;
pub mod pcap;
#[cfg(feature = "xdp")]
pub mod xdp;
