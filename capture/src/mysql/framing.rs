//! MySQL packet framing for one direction: 4-byte headers, 0xFFFFFF continuations joined into one
//! logical payload, a keep limit beyond which payload bytes are counted but not buffered, and the
//! CLIENT_COMPRESS layer (7-byte headers, zlib) underneath.
//!
//! A packet lying wholly inside the fed slice is handed out zero-copy; only packets that span
//! slices are copied. It knows nothing of commands or responses.

use flate2::{Decompress, FlushDecompress, Status};

/// One logical MySQL packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Sequence id of the first fragment.
    pub seq: u8,
    /// Payload bytes kept (all of them unless `truncated`).
    pub payload: &'a [u8],
    /// Logical payload length (continuations joined).
    pub len: usize,
    /// More than the keep limit arrived; `payload` holds only the first bytes.
    pub truncated: bool,
}

/// Framing errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A compressed packet did not inflate.
    #[error("compressed packet does not inflate")]
    Inflate,
    /// A compressed packet inflated to another length than its header said.
    #[error("compressed packet length mismatch")]
    InflateLength,
}

/// Plain framing state.
#[derive(Debug)]
pub struct Framer {
    hdr: [u8; 4],
    /// Header bytes received so far (0..4; a byte keeps the framer, and so an idle session, small).
    hdr_len: u8,
    need: usize,
    buf: Vec<u8>,
    keep: usize,
    total: usize,
    seq: u8,
    continuing: bool,
    in_packet: bool,
}

impl Framer {
    /// A framer keeping at most `keep` payload bytes of a logical packet.
    pub fn new(keep: usize) -> Self {
        Self {
            hdr: [0; 4],
            hdr_len: 0,
            need: 0,
            buf: Vec::new(),
            keep,
            total: 0,
            seq: 0,
            continuing: false,
            in_packet: false,
        }
    }

    /// Drop any partial packet (after a gap).
    pub fn reset(&mut self) {
        self.hdr_len = 0;
        self.need = 0;
        self.buf.clear();
        self.total = 0;
        self.continuing = false;
        self.in_packet = false;
    }

    /// A packet is partly received.
    pub fn is_mid_packet(&self) -> bool {
        self.hdr_len > 0 || self.in_packet
    }

    /// Bytes of the packet being received so far (header included; kept or not).
    pub fn partial_bytes(&self) -> usize {
        if self.in_packet || self.continuing {
            self.total + 4
        } else {
            usize::from(self.hdr_len)
        }
    }

    /// Bytes held in the reassembly buffer.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Free the buffer when no packet is in progress.
    pub fn shrink_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Feed bytes; each complete logical packet goes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(Packet<'_>)) {
        self.feed_bulk(data, &mut |p, _| {
            out(p);
            0
        });
    }

    /// Feed bytes; each complete logical packet goes to `out` with the bytes that follow it in
    /// `data`; `out` returns how many of those it consumed itself (whole packets only: a reader
    /// taking a run of result rows in one loop), which the framer then skips.
    #[inline]
    pub fn feed_bulk(&mut self, mut data: &[u8], out: &mut impl FnMut(Packet<'_>, &[u8]) -> usize) {
        loop {
            if !self.in_packet && self.hdr_len == 0 && !self.continuing {
                while let [l0, l1, l2, seq, rest @ ..] = data {
                    let len = usize::from(*l0) | usize::from(*l1) << 8 | usize::from(*l2) << 16;
                    if len == 0xff_ffff || rest.len() < len {
                        break;
                    }
                    let (payload, after) = rest.split_at(len);
                    let used = out(
                        Packet {
                            seq: *seq,
                            payload,
                            len,
                            truncated: false,
                        },
                        after,
                    );
                    data = &after[used.min(after.len())..];
                }
            }
            if data.is_empty() {
                return;
            }
            if !self.in_packet {
                let have = usize::from(self.hdr_len);
                let take = (4 - have).min(data.len());
                self.hdr[have..have + take].copy_from_slice(&data[..take]);
                self.hdr_len = (have + take) as u8;
                data = &data[take..];
                if self.hdr_len < 4 {
                    return;
                }
                self.hdr_len = 0;
                let len = usize::from(self.hdr[0])
                    | usize::from(self.hdr[1]) << 8
                    | usize::from(self.hdr[2]) << 16;
                if !self.continuing {
                    self.seq = self.hdr[3];
                    self.total = 0;
                    self.buf.clear();
                }
                self.continuing = len == 0xff_ffff;
                self.need = len;
                self.in_packet = true;
            }
            let take = self.need.min(data.len());
            let room = self.keep.saturating_sub(self.buf.len()).min(take);
            self.buf.extend_from_slice(&data[..room]);
            self.total += take;
            self.need -= take;
            data = &data[take..];
            if self.need == 0 {
                self.in_packet = false;
                if !self.continuing {
                    let used = out(
                        Packet {
                            seq: self.seq,
                            payload: &self.buf,
                            len: self.total,
                            truncated: self.total > self.buf.len(),
                        },
                        data,
                    );
                    data = &data[used.min(data.len())..];
                    self.buf.clear();
                    self.total = 0;
                }
            }
        }
    }
}

/// The CLIENT_COMPRESS layer: compressed packets in, plain bytes out.
#[derive(Default)]
pub struct Inflater {
    hdr: [u8; 7],
    hdr_len: usize,
    comp: Vec<u8>,
    need: usize,
    out: Vec<u8>,
    /// Created on the first compressed packet that needs inflating.
    z: Option<Decompress>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("buffered", &self.comp.len())
            .finish()
    }
}

impl Inflater {
    /// Drop any partial compressed packet.
    pub fn reset(&mut self) {
        self.hdr_len = 0;
        self.comp.clear();
        self.need = 0;
    }

    /// No compressed packet is in progress.
    pub fn is_idle(&self) -> bool {
        self.hdr_len == 0
    }

    /// Bytes held in buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.comp.capacity() + self.out.capacity()
    }

    /// Feed compressed bytes; plain bytes of each complete compressed packet go to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(&[u8])) -> Result<(), FrameError> {
        while !data.is_empty() {
            if self.hdr_len < 7 {
                let take = (7 - self.hdr_len).min(data.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
                self.hdr_len += take;
                data = &data[take..];
                if self.hdr_len < 7 {
                    return Ok(());
                }
                self.need = usize::from(self.hdr[0])
                    | usize::from(self.hdr[1]) << 8
                    | usize::from(self.hdr[2]) << 16;
                self.comp.clear();
            }
            let take = self.need.min(data.len());
            self.comp.extend_from_slice(&data[..take]);
            self.need -= take;
            data = &data[take..];
            if self.need > 0 {
                return Ok(());
            }
            self.hdr_len = 0;
            let plain_len = usize::from(self.hdr[4])
                | usize::from(self.hdr[5]) << 8
                | usize::from(self.hdr[6]) << 16;
            if plain_len == 0 {
                out(&self.comp);
                continue;
            }
            self.out.clear();
            self.out.reserve(plain_len);
            let z = self.z.get_or_insert_with(|| Decompress::new(true));
            z.reset(true);
            match z.decompress_vec(&self.comp, &mut self.out, FlushDecompress::Finish) {
                Ok(Status::StreamEnd) | Ok(Status::Ok) | Ok(Status::BufError) => {}
                Err(_) => return Err(FrameError::Inflate),
            }
            if self.out.len() != plain_len {
                return Err(FrameError::InflateLength);
            }
            out(&self.out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &mut Framer, data: &[u8]) -> Vec<(u8, Vec<u8>, usize, bool)> {
        let mut v = Vec::new();
        f.feed(data, &mut |p| {
            v.push((p.seq, p.payload.to_vec(), p.len, p.truncated))
        });
        v
    }

    #[test]
    fn whole_split_and_continued_packets() {
        let mut f = Framer::new(1 << 30);
        let mut wire = vec![3, 0, 0, 0, 1, 2, 3, 1, 0, 0, 1, 9];
        assert_eq!(frames(&mut f, &wire).len(), 2);
        let mut got = Vec::new();
        for b in wire.chunks(1) {
            got.extend(frames(&mut f, b));
        }
        assert_eq!(
            got,
            vec![(0, vec![1, 2, 3], 3, false), (1, vec![9], 1, false)]
        );
        wire.clear();
        wire.extend_from_slice(&[0xff, 0xff, 0xff, 0]);
        wire.extend(std::iter::repeat_n(7u8, 0xff_ffff));
        wire.extend_from_slice(&[2, 0, 0, 1, 8, 8]);
        let got = frames(&mut f, &wire);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2, 0xff_ffff + 2);
        assert_eq!(got[0].1.len(), 0xff_ffff + 2);
    }

    #[test]
    fn keep_limit_truncates_but_counts() {
        let mut f = Framer::new(2);
        let got = frames(&mut f, &[5, 0, 0, 4, 1, 2, 3, 4, 5]);
        assert_eq!(got.len(), 1);
        let mut f = Framer::new(2);
        let got: Vec<_> = [&[5u8, 0, 0, 4, 1][..], &[2, 3, 4, 5]]
            .iter()
            .flat_map(|c| frames(&mut f, c))
            .collect();
        assert_eq!(got, vec![(4, vec![1, 2], 5, true)]);
    }

    #[test]
    fn inflates_and_passes_stored() {
        use flate2::write::ZlibEncoder;
        use std::io::Write;
        let plain = b"\x05\0\0\0\x03hello".repeat(20);
        let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&plain).unwrap();
        let z = e.finish().unwrap();
        let mut wire = Vec::new();
        wire.extend_from_slice(&(z.len() as u32).to_le_bytes()[..3]);
        wire.push(0);
        wire.extend_from_slice(&(plain.len() as u32).to_le_bytes()[..3]);
        wire.extend_from_slice(&z);
        wire.extend_from_slice(&[3, 0, 0, 1, 0, 0, 0, b'a', b'b', b'c']);
        let mut inf = Inflater::default();
        let mut out = Vec::new();
        for c in wire.chunks(5) {
            inf.feed(c, &mut |b| out.extend_from_slice(b)).unwrap();
        }
        let mut want = plain.clone();
        want.extend_from_slice(b"abc");
        assert_eq!(out, want);
        let mut bad = vec![3, 0, 0, 0, 9, 0, 0, 1, 2, 3];
        assert!(Inflater::default().feed(&bad, &mut |_| {}).is_err());
        bad.clear();
    }
}
