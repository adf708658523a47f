//! Client-side MySQL packet framing, sans-IO: 4-byte headers and sequence ids, payloads of
//! 16 MiB and more split into 0xFFFFFF chunks (and joined on read), and the CLIENT_COMPRESS layer
//! (7-byte headers, zlib; payloads under 50 bytes stored).
//!
//! [`PacketReader`] is filled with socket bytes by the executor and hands out whole packets,
//! zero-copy when a packet is not split; [`PacketWriter`] appends framed (and maybe compressed)
//! bytes to an output buffer. Neither touches a socket. Nothing here knows about commands.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::WireError;

/// Largest chunk payload; a payload of this length is continued by the next chunk.
pub const MAX_CHUNK: usize = 0xff_ffff;
/// Plain payloads shorter than this are sent stored (uncompressed) in a compressed frame.
const MIN_COMPRESS: usize = 50;

/// One logical packet read from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Sequence id of the first chunk.
    pub first_seq: u8,
    /// Sequence id of the last chunk (the next packet of the exchange uses this + 1).
    pub seq: u8,
    /// Payload, chunks joined.
    pub payload: &'a [u8],
}

/// Read side: plain bytes (already inflated when compressed) in, whole packets out.
/// Bytes read from the socket at a time (and the buffer a connection keeps when idle).
pub const READ_CHUNK: usize = 16 * 1024;
/// A read buffer larger than this is freed once empty.
const KEEP_CAPACITY: usize = 256 * 1024;

#[derive(Debug)]
pub struct PacketReader {
    buf: Vec<u8>,
    pos: usize,
    joined: Vec<u8>,
    max_packet: usize,
    compressed: bool,
    zbuf: Vec<u8>,
    zpos: usize,
    z: Option<Box<Decompress>>,
    comp_seq: u8,
}

impl PacketReader {
    /// A reader refusing logical packets over `max_packet` bytes.
    pub fn new(max_packet: usize) -> Self {
        Self {
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            joined: Vec::new(),
            max_packet,
            compressed: false,
            zbuf: Vec::new(),
            zpos: 0,
            z: None,
            comp_seq: 0,
        }
    }

    /// Turn the compression layer on (after the handshake's OK).
    pub fn set_compressed(&mut self) {
        self.compressed = true;
        self.z = Some(Box::new(Decompress::new(true)));
    }

    /// Whether the compression layer is on.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Sequence id of the last compressed frame read.
    pub fn comp_seq(&self) -> u8 {
        self.comp_seq
    }

    /// A buffer to read socket bytes into (append; plain or compressed as negotiated). Call it
    /// only when [`Self::next_packet`] returned `None`.
    pub fn input(&mut self) -> &mut Vec<u8> {
        if self.compressed {
            if self.zpos > 0 {
                self.zbuf.drain(..self.zpos);
                self.zpos = 0;
            }
            &mut self.zbuf
        } else {
            self.compact();
            &mut self.buf
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        // A large response grew the buffer: give the memory back once it is read (an idle
        // replay session keeps READ_CHUNK, not its largest response).
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::with_capacity(READ_CHUNK);
        }
    }

    /// Inflate every whole compressed frame received so far into the plain buffer.
    fn inflate(&mut self) -> Result<(), WireError> {
        self.compact();
        while let [a, b, c, seq, d, e, f, ..] = self.zbuf[self.zpos..] {
            let clen = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
            let plen = usize::from(d) | usize::from(e) << 8 | usize::from(f) << 16;
            let start = self.zpos + 7;
            if self.zbuf.len() < start + clen {
                break;
            }
            let body = &self.zbuf[start..start + clen];
            if plen == 0 {
                self.buf.extend_from_slice(body);
            } else {
                let z = self
                    .z
                    .get_or_insert_with(|| Box::new(Decompress::new(true)));
                z.reset(true);
                let before = self.buf.len();
                self.buf.reserve(plen);
                match z.decompress_vec(body, &mut self.buf, FlushDecompress::Finish) {
                    Ok(Status::StreamEnd | Status::Ok | Status::BufError) => {}
                    Err(_) => return Err(WireError::Inflate),
                }
                if self.buf.len() - before != plen {
                    return Err(WireError::Inflate);
                }
            }
            self.comp_seq = seq;
            self.zpos = start + clen;
        }
        Ok(())
    }

    /// Span (headers included) and chunk count of the next whole packet, if all of it is here.
    fn whole(&self) -> Result<Option<(usize, usize)>, WireError> {
        let avail = &self.buf[self.pos..];
        let mut at = 0usize;
        let mut total = 0usize;
        let mut chunks = 0;
        loop {
            let Some(&[l0, l1, l2, _]) = avail[at..].first_chunk::<4>() else {
                return Ok(None);
            };
            let n = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
            total += n;
            if total > self.max_packet {
                return Err(WireError::PacketTooLarge(total));
            }
            if avail.len() < at + 4 + n {
                return Ok(None);
            }
            at += 4 + n;
            chunks += 1;
            if n < MAX_CHUNK {
                return Ok(Some((at, chunks)));
            }
        }
    }

    /// The next whole packet, or `None` until more bytes arrive.
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, WireError> {
        // The usual case first: a whole packet of one chunk is buffered.
        if let Some(&[l0, l1, l2, seq]) = self.buf[self.pos..].first_chunk::<4>() {
            let n = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
            let start = self.pos + 4;
            if n < MAX_CHUNK && n <= self.max_packet && start + n <= self.buf.len() {
                self.pos = start + n;
                return Ok(Some(Packet {
                    first_seq: seq,
                    seq,
                    payload: &self.buf[start..start + n],
                }));
            }
        }
        self.next_packet_slow()
    }

    /// [`Self::next_packet`] for the rest: split packets, too large ones, partial ones, and
    /// compressed frames to inflate.
    fn next_packet_slow(&mut self) -> Result<Option<Packet<'_>>, WireError> {
        let mut w = self.whole()?;
        if w.is_none() && self.compressed && self.zpos < self.zbuf.len() {
            self.inflate()?;
            w = self.whole()?;
        }
        let Some((span, chunks)) = w else {
            return Ok(None);
        };
        let start = self.pos;
        self.pos += span;
        if chunks == 1 {
            return Ok(Some(Packet {
                first_seq: self.buf[start + 3],
                seq: self.buf[start + 3],
                payload: &self.buf[start + 4..start + span],
            }));
        }
        self.joined.clear();
        let mut p = start;
        let mut seq = 0;
        while p < start + span {
            let h = &self.buf[p..p + 4];
            let n = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
            seq = h[3];
            self.joined.extend_from_slice(&self.buf[p + 4..p + 4 + n]);
            p += 4 + n;
        }
        Ok(Some(Packet {
            first_seq: self.buf[start + 3],
            seq,
            payload: &self.joined,
        }))
    }

    /// Bytes received but not yet handed out as packets (plain side).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.zbuf.len() - self.zpos
    }
}

/// Write side: payloads in, framed bytes appended to an output buffer.
pub struct PacketWriter {
    compressed: bool,
    z: Option<Box<Compress>>,
    plain: Vec<u8>,
}

impl std::fmt::Debug for PacketWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketWriter")
            .field("compressed", &self.compressed)
            .finish()
    }
}

impl Default for PacketWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketWriter {
    /// A plain writer.
    pub fn new() -> Self {
        Self {
            compressed: false,
            z: None,
            plain: Vec::new(),
        }
    }

    /// Turn the compression layer on (after the handshake's OK).
    pub fn set_compressed(&mut self) {
        self.compressed = true;
        self.z = Some(Box::new(Compress::new(Compression::default(), true)));
    }

    /// Frame `payload` with sequence ids from `seq`, split at 16 MiB; returns the next sequence
    /// id. With compression on, the framed bytes are wrapped in compressed frames numbered from
    /// `comp_seq` (the returned pair's second member is the next compressed sequence id).
    pub fn write(
        &mut self,
        seq: u8,
        comp_seq: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(u8, u8), WireError> {
        self.write_packets(seq, comp_seq, &[payload], out)
    }

    /// [`Self::write`] for several payloads in a row (sequence ids continue), compressed
    /// together.
    pub fn write_packets(
        &mut self,
        mut seq: u8,
        comp_seq: u8,
        payloads: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(u8, u8), WireError> {
        if !self.compressed {
            for p in payloads {
                seq = frame(seq, p, out);
            }
            return Ok((seq, comp_seq));
        }
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        for p in payloads {
            seq = frame(seq, p, &mut plain);
        }
        let r = self.compress(comp_seq, &plain, out);
        self.plain = plain;
        Ok((seq, r?))
    }

    fn compress(
        &mut self,
        mut comp_seq: u8,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, WireError> {
        for chunk in plain.chunks(MAX_CHUNK) {
            let hdr = out.len();
            out.extend_from_slice(&[0; 7]);
            let plen = if chunk.len() < MIN_COMPRESS {
                out.extend_from_slice(chunk);
                0
            } else {
                let z = self
                    .z
                    .get_or_insert_with(|| Box::new(Compress::new(Compression::default(), true)));
                z.reset();
                out.reserve(chunk.len() / 2 + 64);
                loop {
                    let consumed = z.total_in() as usize;
                    let st = z
                        .compress_vec(&chunk[consumed..], out, FlushCompress::Finish)
                        .map_err(|_| WireError::Inflate)?;
                    if st == Status::StreamEnd {
                        break;
                    }
                    out.reserve(out.capacity().max(4096));
                }
                chunk.len()
            };
            let clen = out.len() - hdr - 7;
            if clen > MAX_CHUNK {
                // Incompressible: store it instead.
                out.truncate(hdr);
                out.extend_from_slice(&(chunk.len() as u32).to_le_bytes()[..3]);
                out.push(comp_seq);
                out.extend_from_slice(&[0, 0, 0]);
                out.extend_from_slice(chunk);
            } else {
                out[hdr..hdr + 3].copy_from_slice(&(clen as u32).to_le_bytes()[..3]);
                out[hdr + 3] = comp_seq;
                out[hdr + 4..hdr + 7].copy_from_slice(&(plen as u32).to_le_bytes()[..3]);
            }
            comp_seq = comp_seq.wrapping_add(1);
        }
        Ok(comp_seq)
    }
}

/// Append `payload` as plain packets from `seq`; a payload whose length is a multiple of 0xFFFFFF
/// (including 0) ends with an empty chunk. Returns the next sequence id.
pub fn frame(mut seq: u8, payload: &[u8], out: &mut Vec<u8>) -> u8 {
    out.reserve(payload.len() + 4 * (payload.len() / MAX_CHUNK + 1));
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: &mut PacketReader) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            v.push((p.seq, p.payload.to_vec()));
        }
        v
    }

    #[test]
    fn frames_small_empty_and_split_payloads() {
        let mut out = Vec::new();
        assert_eq!(frame(0, &[0x03, b'S'], &mut out), 1);
        assert_eq!(out, [2, 0, 0, 0, 3, b'S']);
        out.clear();
        assert_eq!(frame(5, &[], &mut out), 6);
        assert_eq!(out, [0, 0, 0, 5]);
        out.clear();
        let big = vec![7u8; MAX_CHUNK + 3];
        assert_eq!(frame(0, &big, &mut out), 2);
        assert_eq!(&out[..4], &[0xff, 0xff, 0xff, 0]);
        assert_eq!(&out[4 + MAX_CHUNK..8 + MAX_CHUNK], &[3, 0, 0, 1]);
        out.clear();
        let exact = vec![1u8; MAX_CHUNK];
        assert_eq!(frame(0, &exact, &mut out), 2);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 1]);
    }

    #[test]
    fn reads_byte_by_byte_and_joins_chunks() {
        let mut wire = Vec::new();
        frame(1, b"abc", &mut wire);
        let big: Vec<u8> = (0..MAX_CHUNK * 2 + 10).map(|i| i as u8).collect();
        frame(2, &big, &mut wire);
        frame(5, b"", &mut wire);
        let mut r = PacketReader::new(1 << 30);
        let mut got = Vec::new();
        for chunk in wire.chunks(1 << 20) {
            r.input().extend_from_slice(chunk);
            got.extend(drain(&mut r));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, b"abc".to_vec()));
        assert_eq!(got[1].0, 4, "last chunk's sequence id");
        assert!(got[1].1 == big);
        assert_eq!(got[2], (5, vec![]));
        let mut r = PacketReader::new(1 << 30);
        for b in &wire[..20] {
            r.input().push(*b);
            let _ = drain(&mut r);
        }
        assert_eq!(r.buffered(), 20 - 7);
    }

    #[test]
    fn too_large_is_an_error_not_a_buffer() {
        let mut wire = Vec::new();
        frame(0, &vec![0u8; MAX_CHUNK + 1], &mut wire);
        let mut r = PacketReader::new(1 << 20);
        r.input().extend_from_slice(&wire);
        assert!(matches!(r.next_packet(), Err(WireError::PacketTooLarge(_))));
    }

    #[test]
    fn compressed_round_trip_and_sequence_ids() {
        let mut w = PacketWriter::new();
        w.set_compressed();
        let mut out = Vec::new();
        let long =
            b"SELECT 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'".to_vec();
        let (s, c) = w.write(0, 0, &long, &mut out).unwrap();
        assert_eq!((s, c), (1, 1));
        let (s, c) = w.write(0, c, b"\x0e", &mut out).unwrap();
        assert_eq!((s, c), (1, 2));
        // The short one is stored: plain length field 0.
        let second = &out[out.len() - 12..];
        assert_eq!(second, &[5, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x0e]);
        let mut r = PacketReader::new(1 << 30);
        r.set_compressed();
        for b in &out {
            r.input().push(*b);
        }
        let got = drain(&mut r);
        assert_eq!(got, vec![(0, long), (0, vec![0x0e])]);
        assert_eq!(r.comp_seq(), 1);
    }

    #[test]
    fn compressed_large_payload_spans_frames() {
        let mut w = PacketWriter::new();
        w.set_compressed();
        let big: Vec<u8> = (0..MAX_CHUNK + 100).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let (s, c) = w.write(0, 0, &big, &mut out).unwrap();
        assert_eq!(s, 2);
        assert_eq!(c, 2);
        let mut r = PacketReader::new(1 << 30);
        r.set_compressed();
        r.input().extend_from_slice(&out);
        let got = drain(&mut r);
        assert_eq!(got.len(), 1);
        assert!(got[0].1 == big);
    }

    #[test]
    fn bad_compressed_frame_is_an_error() {
        let mut r = PacketReader::new(1 << 30);
        r.set_compressed();
        r.input().extend_from_slice(&[3, 0, 0, 0, 9, 0, 0, 1, 2, 3]);
        assert!(matches!(r.next_packet(), Err(WireError::Inflate)));
    }
}
