//! Packet sources: pcap/pcapng files, AF_XDP, AF_PACKET.
