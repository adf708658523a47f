//! pcap and pcapng files: a reader that feeds the pipeline, and a classic-pcap writer.
//!
//! The reader accepts classic pcap (µs and ns resolution, either byte order) and pcapng (several
//! sections and interfaces, each interface with its own link type and timestamp resolution;
//! block types it does not know are skipped). Damage (truncation, impossible lengths, zero-length
//! records, an unsupported link type) is an error naming the byte offset of the damaged header,
//! returned after the frames before it were handed on. It does not decode anything itself.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::event::EventSink;
use crate::net::LinkType;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::stats::Stats;

/// File source errors.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Neither pcap nor pcapng.
    #[error("not a pcap or pcapng file (magic {0:08x} at byte 0)")]
    BadMagic(u32),
    /// The file is damaged at some point; frames before it were decoded.
    #[error("capture file damaged at byte {offset} (after {frames} frames): {reason}")]
    Damaged {
        /// Frames read before the damage.
        frames: u64,
        /// Byte offset of the damaged header or record.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// Bytes read from the file per `read` call (the buffer grows only for a larger record).
const CHUNK: usize = 1 << 18;
/// Largest record accepted; a length beyond it means the file is damaged.
const MAX_RECORD: usize = 256 << 20;

/// A reusable read buffer over the file: one copy from the page cache, records parsed in place.
struct Chunks<R: Read> {
    file: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    pos: u64,
    frames: u64,
    /// Length of a regular file (a record claiming more is not read into memory).
    file_len: Option<u64>,
}

impl<R: Read> Chunks<R> {
    fn new(file: R, file_len: Option<u64>) -> Self {
        // A small file gets a buffer of its size (fuzzing and tests read many small inputs).
        let size = file_len.map_or(CHUNK, |l| {
            usize::try_from(l).unwrap_or(CHUNK).clamp(64, CHUNK)
        });
        Self {
            file_len,
            file,
            buf: vec![0; size],
            start: 0,
            end: 0,
            pos: 0,
            frames: 0,
        }
    }

    /// Make `n` bytes available; `false` when the file ends first.
    fn ensure(&mut self, n: usize) -> std::io::Result<bool> {
        if self.end - self.start >= n {
            return Ok(true);
        }
        // A length beyond the end of a regular file must not grow the buffer first.
        if n > self.buf.len() && self.file_len.is_some_and(|l| self.pos + n as u64 > l) {
            return Ok(false);
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < n {
            // Grow with the data actually read, not with the length a header claims.
            if self.end == self.buf.len() {
                let want = n.min(self.buf.len().saturating_mul(2).max(CHUNK));
                self.buf.resize(want, 0);
            }
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// `n` bytes, or the damage error `what` when the file ends first (naming the current offset).
    fn need(&mut self, n: usize, what: &str) -> Result<(), SourceError> {
        if self.ensure(n)? {
            return Ok(());
        }
        let have = self
            .file_len
            .map_or(self.avail().len() as u64, |l| l.saturating_sub(self.pos));
        Err(self.damaged(format!("truncated {what} ({have} of {n} bytes)")))
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    /// Damage at the current offset.
    fn damaged(&self, reason: impl Into<String>) -> SourceError {
        SourceError::Damaged {
            frames: self.frames,
            offset: self.pos,
            reason: reason.into(),
        }
    }
}

/// A 32-bit field in the file's byte order.
fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

/// A link type the frame slicer understands.
fn supported(link: LinkType) -> bool {
    !matches!(link, LinkType::Other(_))
}

/// Call `f(link, frame, ts_us)` for every frame of a pcap or pcapng file; returns the frame count.
///
/// The file is read in large chunks and records are parsed in place (no per-frame copy).
pub fn for_each_frame<F: FnMut(LinkType, &[u8], u64)>(
    path: &Path,
    f: F,
) -> Result<u64, SourceError> {
    let file = File::open(path)?;
    let len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    read_frames(file, len, f)
}

/// [`for_each_frame`] over any reader; `len`, when known, is the bytes it holds.
pub fn read_frames<R: Read, F: FnMut(LinkType, &[u8], u64)>(
    reader: R,
    len: Option<u64>,
    mut f: F,
) -> Result<u64, SourceError> {
    let mut r = Chunks::new(reader, len);
    if !r.ensure(4)? {
        if r.avail().is_empty() {
            return Err(r.damaged("empty file"));
        }
        return Err(SourceError::BadMagic(0));
    }
    let a = r.avail();
    match u32::from_le_bytes([a[0], a[1], a[2], a[3]]) {
        m @ (0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1) => read_pcap(&mut r, m, &mut f),
        0x0a0d_0d0a => read_pcapng(&mut r, &mut f),
        other => Err(SourceError::BadMagic(other)),
    }
}

fn read_pcap<R: Read, F: FnMut(LinkType, &[u8], u64)>(
    r: &mut Chunks<R>,
    magic: u32,
    f: &mut F,
) -> Result<u64, SourceError> {
    let big = matches!(magic, 0xd4c3_b2a1 | 0x4d3c_b2a1);
    let nanos = matches!(magic, 0xa1b2_3c4d | 0x4d3c_b2a1);
    r.need(24, "pcap file header")?;
    let snaplen = u32_at(r.avail(), 16, big) as usize;
    let lt = u32_at(r.avail(), 20, big) & 0xffff;
    let link = LinkType::from_linktype(lt);
    if !supported(link) {
        r.consume(20);
        return Err(r.damaged(format!("unsupported link type {lt}")));
    }
    // Some writers leave the snapshot length 0; then only the absolute bound applies.
    let max_incl = if snaplen == 0 {
        MAX_RECORD
    } else {
        snaplen.min(MAX_RECORD)
    };
    r.consume(24);
    loop {
        if !r.ensure(16)? {
            if r.avail().is_empty() {
                return Ok(r.frames);
            }
            r.need(16, "record header")?;
        }
        let h = r.avail();
        let (sec, frac) = (u64::from(u32_at(h, 0, big)), u64::from(u32_at(h, 4, big)));
        let incl = u32_at(h, 8, big) as usize;
        let orig = u32_at(h, 12, big) as usize;
        if incl > max_incl {
            return Err(r.damaged(format!(
                "record of {incl} bytes, beyond the snapshot length {snaplen}"
            )));
        }
        if incl == 0 {
            return Err(r.damaged(format!("zero-length record (original length {orig})")));
        }
        r.need(16 + incl, "record")?;
        let ts = sec * 1_000_000 + if nanos { frac / 1000 } else { frac };
        r.frames += 1;
        f(link, &r.avail()[16..16 + incl], ts);
        r.consume(16 + incl);
    }
}

/// An interface of a pcapng section: link type and timestamp scale.
#[derive(Clone, Copy)]
struct Iface {
    link: LinkType,
    lt: u16,
    mul: u64,
    div: u64,
}

fn read_pcapng<R: Read, F: FnMut(LinkType, &[u8], u64)>(
    r: &mut Chunks<R>,
    f: &mut F,
) -> Result<u64, SourceError> {
    let mut big = false;
    let mut ifaces: Vec<Iface> = Vec::new();
    loop {
        if !r.ensure(12)? {
            if r.avail().is_empty() {
                return Ok(r.frames);
            }
            r.need(12, "block header")?;
        }
        let h = r.avail();
        if u32_at(h, 0, false) == 0x0a0d_0d0a {
            big = match u32_at(h, 8, false) {
                0x1a2b_3c4d => false,
                0x4d3c_2b1a => true,
                _ => return Err(r.damaged("bad section byte-order magic")),
            };
            ifaces.clear();
        }
        let kind = u32_at(h, 0, big);
        let len = u32_at(h, 4, big) as usize;
        if !(12..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
            return Err(r.damaged(format!("block type {kind:#x} of {len} bytes")));
        }
        r.need(len, "block")?;
        let block = &r.avail()[..len];
        let trailer = u32_at(block, len - 4, big) as usize;
        if trailer != len {
            return Err(r.damaged(format!(
                "block type {kind:#x}: length {len} at its start, {trailer} at its end"
            )));
        }
        let body = &block[8..len - 4];
        // A packet: link type, its bytes as a range of the block, timestamp.
        let mut packet = None;
        match kind {
            1 if body.len() >= 8 => {
                let lt = u16_at(body, 0, big);
                let (mul, div) = ts_scale(idb_tsresol(&body[8..], big));
                ifaces.push(Iface {
                    link: LinkType::from_linktype(u32::from(lt)),
                    lt,
                    mul,
                    div,
                });
            }
            6 if body.len() >= 20 => {
                let id = u32_at(body, 0, big);
                let Some(i) = ifaces.get(id as usize).copied() else {
                    return Err(r.damaged(format!("packet of undefined interface {id}")));
                };
                let raw = u64::from(u32_at(body, 4, big)) << 32 | u64::from(u32_at(body, 8, big));
                let cap = u32_at(body, 12, big) as usize;
                if cap > body.len() - 20 {
                    return Err(r.damaged(format!("packet of {cap} bytes longer than its block")));
                }
                packet = Some((i, 28..28 + cap, raw.saturating_mul(i.mul) / i.div));
            }
            3 if body.len() >= 4 => {
                let Some(i) = ifaces.first().copied() else {
                    return Err(r.damaged("packet before any interface"));
                };
                let orig = u32_at(body, 0, big) as usize;
                packet = Some((i, 12..12 + orig.min(body.len() - 4), 0));
            }
            1 | 3 | 6 => return Err(r.damaged(format!("short block type {kind}"))),
            _ => {}
        }
        if let Some((i, range, ts)) = packet {
            if !supported(i.link) {
                let lt = i.lt;
                return Err(r.damaged(format!("packet of unsupported link type {lt}")));
            }
            if range.is_empty() {
                return Err(r.damaged("zero-length packet"));
            }
            r.frames += 1;
            f(i.link, &r.avail()[range], ts);
        }
        r.consume(len);
    }
}

/// The if_tsresol option (code 9) of an interface description block's options; 6 (µs) if absent.
fn idb_tsresol(mut opts: &[u8], big: bool) -> u8 {
    while opts.len() >= 4 {
        let (code, len) = (u16_at(opts, 0, big), u16_at(opts, 2, big));
        let len = usize::from(len);
        if code == 0 {
            break;
        }
        if code == 9 && len >= 1 && opts.len() > 4 {
            return opts[4];
        }
        opts = opts.get(4 + len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    6
}

/// Multiplier and divisor turning pcapng timestamp units of resolution `r` into microseconds.
fn ts_scale(r: u8) -> (u64, u64) {
    if r & 0x80 != 0 {
        let p = u32::from(r & 0x7f).min(63);
        let units = 1u64 << p;
        (1_000_000, units)
    } else {
        match r {
            0..=6 => (10u64.pow(6 - u32::from(r)), 1),
            7..=19 => (1, 10u64.pow(u32::from(r) - 6)),
            _ => (1, 1),
        }
    }
}

/// Read a capture file through `pipeline` into `sink`, then close every session.
pub fn run_file<S: EventSink>(
    path: &Path,
    pipeline: &mut Pipeline,
    sink: &mut S,
) -> Result<(), SourceError> {
    let mut last = 0u64;
    let res = for_each_frame(path, |link, frame, ts| {
        last = last.max(ts);
        pipeline.handle_frame(link, frame, ts, sink);
    });
    pipeline.finish(last, sink);
    res.map(|_| ())
}

/// What [`run_file_sharded`] gives back.
pub struct Sharded<S> {
    /// Each shard's sink.
    pub sinks: Vec<S>,
    /// Each shard's pipeline, finished (a process about to exit may forget them).
    pub pipelines: Vec<Pipeline>,
    /// The counters of all shards, as one pipeline would have counted them.
    pub stats: Stats,
    /// The file's error, if any (every shard reads the whole file).
    pub result: Result<(), SourceError>,
}

/// Read a capture file with `shards` pipelines on as many threads, each decoding its share of
/// the flows into its own sink from `sink` (see [`crate::shard`]). The session and memory
/// bounds of `cfg` are split between the shards (so, at the bounds, which sessions lose out
/// can differ from one pipeline). Events of different shards are not ordered with each other:
/// for aggregate outputs only.
pub fn run_file_sharded<S: EventSink + Send>(
    path: &Path,
    cfg: &PipelineConfig,
    shards: u32,
    sink: impl Fn(u32) -> S + Sync,
) -> Sharded<S> {
    let shards = shards.max(1);
    let mut cfg = cfg.clone();
    let n = shards as usize;
    cfg.max_sessions = (cfg.max_sessions / n).max(1);
    cfg.max_memory /= n;
    let one = |index: u32| {
        let mut p = Pipeline::new(cfg.clone());
        p.set_shard(index, shards);
        p.set_session_ids(u64::from(index) + 1, u64::from(shards));
        let mut s = sink(index);
        let res = run_file(path, &mut p, &mut s);
        let log = p.shard_log();
        (s, p, log, res)
    };
    let done: Vec<_> = std::thread::scope(|sc| {
        let others: Vec<_> = (1..shards)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("mrte-shard-{i}"))
                    .spawn_scoped(sc, move || one(i))
            })
            .collect();
        let mut done = vec![Some(one(0))];
        for t in others {
            // A thread that could not start or panicked: its shard is reported as an error.
            done.push(t.ok().and_then(|h| h.join().ok()));
        }
        done
    });
    let mut sinks = Vec::with_capacity(n);
    let mut pipelines = Vec::with_capacity(n);
    let mut stats = Stats::default();
    let mut logs = Vec::with_capacity(n);
    let mut res = Ok(());
    for d in done {
        match d {
            Some((s, p, log, r)) => {
                sinks.push(s);
                stats.merge(p.stats());
                pipelines.push(p);
                logs.push(log);
                if res.is_ok() {
                    res = r;
                }
            }
            None => {
                if res.is_ok() {
                    res = Err(SourceError::Io(std::io::Error::other(
                        "a decoding thread failed",
                    )));
                }
            }
        }
    }
    if n > 1 {
        stats.peak_buffered_bytes = crate::shard::merge_peaks(&logs);
    }
    Sharded {
        sinks,
        pipelines,
        stats,
        result: res,
    }
}

/// A classic pcap writer (µs resolution, little-endian) that tcpdump and Wireshark read.
pub struct PcapFileWriter<W: Write> {
    inner: W,
}

impl PcapFileWriter<BufWriter<File>> {
    /// Create `path` for frames of link type `link`.
    pub fn create(path: &Path, link: LinkType) -> Result<Self, SourceError> {
        let f = File::create(path)?;
        Self::new(BufWriter::with_capacity(1 << 20, f), link)
    }
}

impl<W: Write> PcapFileWriter<W> {
    /// Wrap a writer; writes the file header.
    pub fn new(mut w: W, link: LinkType) -> Result<Self, SourceError> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
        h[20..24].copy_from_slice(&link.to_linktype().to_le_bytes());
        w.write_all(&h)?;
        Ok(Self { inner: w })
    }

    /// Append one frame taken at `ts_us`.
    pub fn write(&mut self, frame: &[u8], ts_us: u64) -> Result<(), SourceError> {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(frame)?;
        Ok(())
    }

    /// Flush and return the inner writer.
    pub fn finish(mut self) -> Result<W, SourceError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{SessionEvent, SessionId};
    use crate::pipeline::PipelineConfig;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("mrte-pcap-{}-{name}", std::process::id()))
    }

    #[test]
    fn write_then_read_back_through_the_pipeline() {
        let path = tmp("rw.pcap");
        let mut w = PcapFileWriter::create(&path, LinkType::Ethernet).unwrap();
        let b = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(4000, 3306, 1, 100)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, b"").unwrap();
        w.write(&v, 1_700_000_000_123_456).unwrap();
        w.finish().unwrap();
        let mut seen = Vec::new();
        let n = for_each_frame(&path, |l, f, ts| seen.push((l, f.len(), ts))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            seen,
            vec![(LinkType::Ethernet, v.len(), 1_700_000_000_123_456)]
        );
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
        run_file(&path, &mut p, &mut ev).unwrap();
        assert_eq!(p.stats().sessions, 1);
        assert!(matches!(ev.last(), Some((1, SessionEvent::Close(_)))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_magic_and_truncated_file_are_errors() {
        let path = tmp("bad.pcap");
        std::fs::write(&path, b"GARBAGE!GARBAGE!").unwrap();
        assert!(matches!(
            for_each_frame(&path, |_, _, _| {}),
            Err(SourceError::BadMagic(_))
        ));
        let mut w = PcapFileWriter::create(&path, LinkType::Ethernet).unwrap();
        w.write(&[0u8; 60], 1).unwrap();
        w.write(&[0u8; 60], 2).unwrap();
        w.finish().unwrap();
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() - 10]).unwrap();
        let mut n = 0;
        let r = for_each_frame(&path, |_, _, _| n += 1);
        assert!(
            matches!(r, Err(SourceError::Damaged { frames: 1, .. })),
            "{r:?}"
        );
        assert_eq!(n, 1);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn pcapng_big_endian_two_interfaces_and_resolutions() {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::{
            InterfaceDescriptionBlock, InterfaceDescriptionOption,
        };
        use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
        use pcap_file::pcapng::{Block, PcapNgWriter};
        use pcap_file::{DataLink, Endianness};
        use std::time::Duration;
        let path = tmp("two.pcapng");
        let shb = SectionHeaderBlock {
            endianness: Endianness::Big,
            ..SectionHeaderBlock::default()
        };
        let mut w = PcapNgWriter::with_section_header(Vec::new(), shb).unwrap();
        for (lt, resol) in [(DataLink::ETHERNET, 6u8), (DataLink::RAW, 9u8)] {
            let idb = InterfaceDescriptionBlock {
                linktype: lt,
                snaplen: 0,
                options: vec![InterfaceDescriptionOption::IfTsResol(resol)],
            };
            w.write_block(&Block::InterfaceDescription(idb)).unwrap();
        }
        let frames: [(u32, u64, &[u8]); 3] = [
            (0, 1_700_000_000_123_456, b"abcde"),
            (1, 1_700_000_000_123_456_789, b"xyz"),
            (0, 1_700_000_001_000_000, &[7u8; 61]),
        ];
        for (iface, raw, data) in frames {
            let epb = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_nanos(raw),
                original_len: data.len() as u32,
                data: data.into(),
                options: vec![],
            };
            w.write_block(&Block::EnhancedPacket(epb)).unwrap();
        }
        std::fs::write(&path, w.into_inner()).unwrap();
        let mut seen = Vec::new();
        let n = for_each_frame(&path, |l, f, ts| seen.push((l, f.to_vec(), ts))).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            seen,
            vec![
                (LinkType::Ethernet, b"abcde".to_vec(), 1_700_000_000_123_456),
                (LinkType::RawIp, b"xyz".to_vec(), 1_700_000_000_123_456),
                (LinkType::Ethernet, vec![7u8; 61], 1_700_000_001_000_000),
            ]
        );
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..data.len() - 3]).unwrap();
        let r = for_each_frame(&path, |_, _, _| {});
        assert!(
            matches!(r, Err(SourceError::Damaged { frames: 2, .. })),
            "{r:?}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    proptest::proptest! {
        /// Real bytes with random damage: frames or an error, never a panic.
        #[test]
        fn damaged_files_never_panic(
            flips in proptest::collection::vec((0usize..5000, proptest::num::u8::ANY), 0..8),
            cut in 0usize..5000,
            ng in proptest::bool::ANY,
        ) {
            let name = if ng { "pcapng_unknown_blocks.pcapng" } else { "client_session.pcap" };
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
            let sub = if ng { "/hostile/" } else { "/" };
            let mut data = std::fs::read(format!("{dir}{sub}{name}")).unwrap();
            for (at, b) in flips {
                if let Some(x) = data.get_mut(at) {
                    *x = b;
                }
            }
            data.truncate(cut);
            let len = data.len() as u64;
            let mut n = 0u64;
            let r = read_frames(&data[..], Some(len), |_, _, _| n += 1);
            if let Ok(frames) = r {
                proptest::prop_assert_eq!(frames, n);
            }
            let _ = read_frames(&data[..], None, |_, _, _| {});
        }
    }

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(ts_scale(6), (1, 1));
        assert_eq!(ts_scale(9), (1, 1000));
        assert_eq!(ts_scale(3), (1000, 1));
    }
}
