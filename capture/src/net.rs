//! Link, IP and TCP slicing of captured frames (etherparse), and link types.

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
}
