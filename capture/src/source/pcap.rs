//! pcap and pcapng files: a reader that feeds the pipeline, and a classic-pcap writer.
//!
//! The reader accepts classic pcap (µs and ns resolution, either byte order) and pcapng (several
//! interfaces, each with its own link type and timestamp resolution). A damaged tail is reported
//! as an error after the frames before it were decoded. It does not decode anything itself.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

use crate::event::EventSink;
use crate::net::LinkType;
use crate::pipeline::Pipeline;

/// File source errors.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Neither pcap nor pcapng.
    #[error("not a pcap or pcapng file (magic {0:08x})")]
    BadMagic(u32),
    /// The file is damaged at some point; frames before it were decoded.
    #[error("capture file damaged after {frames} frames: {reason}")]
    Damaged {
        /// Frames read before the damage.
        frames: u64,
        /// What the parser said.
        reason: String,
    },
}

/// Call `f(link, frame, ts_us)` for every frame of a pcap or pcapng file; returns the frame count.
pub fn for_each_frame<F: FnMut(LinkType, &[u8], u64)>(
    path: &Path,
    mut f: F,
) -> Result<u64, SourceError> {
    let file = File::open(path)?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    let m = u32::from_le_bytes(magic);
    let chained = std::io::Cursor::new(magic).chain(r);
    let mut frames = 0u64;
    match m {
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
            let mut rd = PcapReader::new(chained).map_err(|e| damaged(0, e))?;
            let link = LinkType::from_linktype(u32::from(rd.header().datalink));
            while let Some(p) = rd.next_packet() {
                let p = p.map_err(|e| damaged(frames, e))?;
                frames += 1;
                f(link, &p.data, p.timestamp.as_micros() as u64);
            }
        }
        0x0a0d_0d0a => {
            let mut rd = PcapNgReader::new(chained).map_err(|e| damaged(0, e))?;
            let mut ifaces: Vec<(LinkType, u64, u64)> = Vec::new();
            while let Some(b) = rd.next_block() {
                let b = b.map_err(|e| damaged(frames, e))?;
                match b {
                    Block::SectionHeader(_) => ifaces.clear(),
                    Block::InterfaceDescription(idb) => {
                        let mut resol = 6u8;
                        for o in &idb.options {
                            if let InterfaceDescriptionOption::IfTsResol(r) = o {
                                resol = *r;
                            }
                        }
                        let (mul, div) = ts_scale(resol);
                        ifaces.push((LinkType::from_linktype(u32::from(idb.linktype)), mul, div));
                    }
                    Block::EnhancedPacket(epb) => {
                        let (link, mul, div) = ifaces
                            .get(epb.interface_id as usize)
                            .copied()
                            .unwrap_or((LinkType::Ethernet, 1, 1));
                        let raw = epb.timestamp.as_nanos() as u64;
                        frames += 1;
                        f(link, &epb.data, raw.saturating_mul(mul) / div);
                    }
                    Block::SimplePacket(spb) => {
                        let link = ifaces.first().map_or(LinkType::Ethernet, |i| i.0);
                        frames += 1;
                        f(link, &spb.data, 0);
                    }
                    _ => {}
                }
            }
        }
        other => return Err(SourceError::BadMagic(other)),
    }
    Ok(frames)
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

fn damaged(frames: u64, e: pcap_file::PcapError) -> SourceError {
    SourceError::Damaged {
        frames,
        reason: e.to_string(),
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

/// A classic pcap writer (µs resolution) that tcpdump and Wireshark read.
pub struct PcapFileWriter<W: Write> {
    inner: pcap_file::pcap::PcapWriter<W>,
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
    pub fn new(w: W, link: LinkType) -> Result<Self, SourceError> {
        let header = PcapHeader {
            datalink: DataLink::from(link.to_linktype()),
            ts_resolution: TsResolution::MicroSecond,
            snaplen: 262_144,
            ..PcapHeader::default()
        };
        let inner =
            pcap_file::pcap::PcapWriter::with_header(w, header).map_err(|e| damaged(0, e))?;
        Ok(Self { inner })
    }

    /// Append one frame taken at `ts_us`.
    pub fn write(&mut self, frame: &[u8], ts_us: u64) -> Result<(), SourceError> {
        let p = PcapPacket::new(Duration::from_micros(ts_us), frame.len() as u32, frame);
        self.inner.write_packet(&p).map_err(|e| damaged(0, e))?;
        Ok(())
    }

    /// Flush and return the inner writer.
    pub fn finish(self) -> Result<W, SourceError> {
        let mut w = self.inner.into_writer();
        w.flush()?;
        Ok(w)
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
    fn pcapng_resolutions() {
        assert_eq!(ts_scale(6), (1, 1));
        assert_eq!(ts_scale(9), (1, 1000));
        assert_eq!(ts_scale(3), (1000, 1));
    }
}
