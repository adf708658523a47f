//! Link, IP and TCP slicing of captured frames (etherparse), and link types.
//!
//! [`slice_tcp`] turns one frame into a checked, zero-copy [`TcpSegment`] view or a [`Skip`]
//! reason. It strips Ethernet padding (by the IP length) and reports bytes cut off by a snap
//! length as `missing`, so reassembly can treat them as lost instead of decoding short data.
//! It does not reassemble, track connections or look at TCP payloads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{
    EtherType, IpNumber, Ipv4HeaderSlice, LaxNetSlice, LaxSlicedPacket, TcpHeaderSlice, TcpSlice,
    TransportSlice,
};

/// Link-layer type of captured frames (pcap LINKTYPE_* values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1), with optional 802.1Q/QinQ tags.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// LINKTYPE_RAW (101) / IPv4 (228) / IPv6 (229): the frame starts with the IP header.
    RawIp,
    /// LINKTYPE_NULL (0): BSD loopback, 4-byte family then IP.
    Null,
    /// Anything else (counted as unsupported).
    Other(u32),
}

impl LinkType {
    /// From a pcap/pcapng link type number.
    pub fn from_linktype(v: u32) -> Self {
        match v {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 228 | 229 | 12 | 14 => LinkType::RawIp,
            0 => LinkType::Null,
            other => LinkType::Other(other),
        }
    }

    /// The pcap LINKTYPE_* number.
    pub fn to_linktype(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Null => 0,
            LinkType::Other(v) => v,
        }
    }
}

/// Why a frame is not a TCP segment we track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Link type not handled.
    UnsupportedLink,
    /// Too short or malformed at link/IP/TCP level.
    Malformed,
    /// Not IPv4/IPv6.
    NotIp,
    /// IP but not TCP.
    NotTcp,
    /// An IP fragment.
    IpFragment,
}

/// TCP flags that matter to reassembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK (the ack field is valid).
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// A checked view of one TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (valid when `flags.ack`).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Captured payload bytes (padding stripped).
    pub payload: &'a [u8],
    /// Payload bytes the IP length promised but the capture cut off (snap length).
    pub missing: u32,
}

fn sll_protocol(frame: &[u8], at: usize, header_len: usize) -> Result<(EtherType, &[u8]), Skip> {
    if frame.len() < header_len {
        return Err(Skip::Malformed);
    }
    let proto = u16::from_be_bytes([frame[at], frame[at + 1]]);
    Ok((EtherType(proto), &frame[header_len..]))
}

/// Slice `frame` of link type `link` down to its TCP segment. Inlined: the segment is built
/// in the caller's registers and frame, not returned through memory and read back (a 16-byte
/// load of two 8-byte stores stalls on store forwarding).
#[inline(always)]
pub fn slice_tcp(link: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    if let Some(ip) = ipv4_of(link, frame) {
        if let Some(r) = slice_ipv4_tcp(ip) {
            return r;
        }
    }
    slice_lax(link, frame)
}

/// The IPv4 packet inside `frame`, when the link header says IPv4.
#[inline(always)]
fn ipv4_of(link: LinkType, frame: &[u8]) -> Option<&[u8]> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let (mut et, mut at) = match link {
        LinkType::Ethernet => (be16(12)?, 14),
        LinkType::LinuxSll => (be16(14)?, 16),
        LinkType::LinuxSll2 => (be16(0)?, 20),
        LinkType::RawIp => return frame.first().filter(|b| *b >> 4 == 4).map(|_| frame),
        LinkType::Null | LinkType::Other(_) => return None,
    };
    if link == LinkType::Ethernet {
        while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
            et = be16(at + 2)?;
            at += 4;
        }
    }
    (et == 0x0800).then(|| frame.get(at..)).flatten()
}

/// Fast path for a well-formed IPv4 TCP packet with zero-copy header views; `None` sends
/// anything unusual (short, AH, not TCP) to the lax slicer so both give the same answer.
#[inline(always)]
fn slice_ipv4_tcp(ip: &[u8]) -> Option<Result<TcpSegment<'_>, Skip>> {
    let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
    let hl = h.slice().len();
    let total = usize::from(h.total_len());
    if total < hl || h.protocol() != IpNumber::TCP {
        return None;
    }
    if h.more_fragments() || h.fragments_offset().value() != 0 {
        return Some(Err(Skip::IpFragment));
    }
    let ip_payload = &ip[hl..total.min(ip.len())];
    let tcp = TcpHeaderSlice::from_slice(ip_payload).ok()?;
    let header_len = tcp.slice().len();
    let expected = total - hl;
    let captured = ip_payload.len();
    let missing = if captured < expected {
        (expected - captured.max(header_len)) as u32
    } else {
        0
    };
    Some(Ok(TcpSegment {
        src: SocketAddr::new(IpAddr::V4(h.source_addr()), tcp.source_port()),
        dst: SocketAddr::new(IpAddr::V4(h.destination_addr()), tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload: &ip_payload[header_len..],
        missing,
    }))
}

/// The general slicer: every link type, VLAN tags, IPv6, extension headers, truncation.
#[inline(never)]
fn slice_lax(link: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let pkt = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Malformed)?,
        LinkType::LinuxSll => {
            let (et, rest) = sll_protocol(frame, 14, 16)?;
            LaxSlicedPacket::from_ether_type(et, rest)
        }
        LinkType::LinuxSll2 => {
            let (et, rest) = sll_protocol(frame, 0, 20)?;
            LaxSlicedPacket::from_ether_type(et, rest)
        }
        LinkType::RawIp => LaxSlicedPacket::from_ip(frame).map_err(|_| Skip::Malformed)?,
        LinkType::Null => {
            if frame.len() < 4 {
                return Err(Skip::Malformed);
            }
            let fam_le = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let fam_be = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let et = match (fam_le, fam_be) {
                (2, _) | (_, 2) => EtherType::IPV4,
                (24 | 28 | 30, _) | (_, 24 | 28 | 30) => EtherType::IPV6,
                _ => return Err(Skip::NotIp),
            };
            LaxSlicedPacket::from_ether_type(et, &frame[4..])
        }
        LinkType::Other(_) => return Err(Skip::UnsupportedLink),
    };
    let Some(net) = &pkt.net else {
        return Err(if pkt.stop_err.is_some() {
            Skip::Malformed
        } else {
            Skip::NotIp
        });
    };
    let (src_ip, dst_ip, expected_payload): (IpAddr, IpAddr, Option<usize>) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let hl = usize::from(h.ihl()) * 4 + v4.extensions().auth.map_or(0, |a| a.slice().len());
            let total = usize::from(h.total_len());
            (
                IpAddr::V4(Ipv4Addr::from(h.source())),
                IpAddr::V4(Ipv4Addr::from(h.destination())),
                total.checked_sub(hl),
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let exts = v6.extensions().slice().len();
            (
                IpAddr::V6(Ipv6Addr::from(h.source())),
                IpAddr::V6(Ipv6Addr::from(h.destination())),
                usize::from(h.payload_length()).checked_sub(exts),
            )
        }
        _ => return Err(Skip::NotIp),
    };
    let Some(ip_payload) = net.ip_payload_ref() else {
        return Err(Skip::Malformed);
    };
    if ip_payload.fragmented {
        return Err(Skip::IpFragment);
    }
    if ip_payload.ip_number != IpNumber::TCP {
        return Err(Skip::NotTcp);
    }
    let tcp = match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => t.clone(),
        _ => TcpSlice::from_slice(ip_payload.payload).map_err(|_| Skip::Malformed)?,
    };
    let header_len = usize::from(tcp.data_offset()) * 4;
    let captured = ip_payload.payload.len();
    let mut payload = tcp.payload();
    let mut missing = 0u32;
    if let Some(expected) = expected_payload {
        let expected_tcp = expected.saturating_sub(header_len);
        if payload.len() > expected_tcp {
            payload = &payload[..expected_tcp];
        } else if captured < expected {
            missing = (expected - captured.max(header_len)) as u32;
        }
    }
    Ok(TcpSegment {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn eth_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, 3306, 1000, 100)
            .ack(77)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let f = eth_v4(b"hello");
        let s = slice_tcp(LinkType::Ethernet, &f).unwrap();
        assert_eq!(s.src, "198.18.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "198.18.0.2:3306".parse().unwrap());
        assert_eq!((s.seq, s.ack, s.flags.ack), (1000, 77, true));
        assert_eq!(s.payload, b"hello");
        assert_eq!(s.missing, 0);
    }

    #[test]
    fn padding_is_stripped() {
        let mut f = eth_v4(b"x");
        f.extend_from_slice(&[0; 6]);
        let s = slice_tcp(LinkType::Ethernet, &f).unwrap();
        assert_eq!(s.payload, b"x");
    }

    #[test]
    fn snaplen_cut_is_reported_missing() {
        let f = eth_v4(&[7u8; 100]);
        let cut = &f[..f.len() - 30];
        let s = slice_tcp(LinkType::Ethernet, cut).unwrap();
        assert_eq!(s.payload.len(), 70);
        assert_eq!(s.missing, 30);
    }

    #[test]
    fn vlan_qinq_and_ipv6() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .double_vlan(
                etherparse::VlanId::try_new(10).unwrap(),
                etherparse::VlanId::try_new(20).unwrap(),
            )
            .ipv6([0x20; 16], [0x21; 16], 64)
            .tcp(3306, 5555, 9, 100);
        let mut v = Vec::new();
        b.write(&mut v, b"abc").unwrap();
        let s = slice_tcp(LinkType::Ethernet, &v).unwrap();
        assert_eq!(s.src.port(), 3306);
        assert!(s.src.is_ipv6());
        assert_eq!(s.payload, b"abc");
    }

    #[test]
    fn sll_sll2_raw_and_null() {
        let f = eth_v4(b"q");
        let ip = &f[14..];
        let mut sll = vec![0u8; 16];
        sll[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(ip);
        assert_eq!(slice_tcp(LinkType::LinuxSll, &sll).unwrap().payload, b"q");
        let mut sll2 = vec![0u8; 20];
        sll2[0..2].copy_from_slice(&0x0800u16.to_be_bytes());
        sll2.extend_from_slice(ip);
        assert_eq!(slice_tcp(LinkType::LinuxSll2, &sll2).unwrap().payload, b"q");
        assert_eq!(slice_tcp(LinkType::RawIp, ip).unwrap().payload, b"q");
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        assert_eq!(slice_tcp(LinkType::Null, &null).unwrap().payload, b"q");
    }

    #[test]
    fn skips() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, b"u").unwrap();
        assert_eq!(slice_tcp(LinkType::Ethernet, &v), Err(Skip::NotTcp));
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(slice_tcp(LinkType::Ethernet, &arp), Err(Skip::NotIp));
        assert_eq!(
            slice_tcp(LinkType::Ethernet, &[0u8; 5]),
            Err(Skip::Malformed)
        );
        assert_eq!(
            slice_tcp(LinkType::Other(147), &v),
            Err(Skip::UnsupportedLink)
        );
        for n in 0..v.len() {
            let _ = slice_tcp(LinkType::Ethernet, &v[..n]);
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_lax(
            payload in proptest::collection::vec(0u8..=255, 0..64),
            edits in proptest::collection::vec((0usize..60, 0u8..=255), 0..4),
            cut in 0usize..130,
            vlan in proptest::bool::ANY,
        ) {
            let mut f = eth_v4(&payload);
            if vlan {
                f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
            }
            for (at, b) in edits {
                if let Some(x) = f.get_mut(at) {
                    *x = b;
                }
            }
            f.truncate(f.len().saturating_sub(cut % 40));
            let fast = ipv4_of(LinkType::Ethernet, &f).and_then(slice_ipv4_tcp);
            if let Some(fast) = fast {
                proptest::prop_assert_eq!(fast, slice_lax(LinkType::Ethernet, &f));
            }
            proptest::prop_assert_eq!(slice_tcp(LinkType::Ethernet, &f), fast.unwrap_or_else(|| slice_lax(LinkType::Ethernet, &f)));
        }
    }
}
