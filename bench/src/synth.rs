//! Synthetic captures, written as pcap: many concurrent MySQL sessions (handshake, point selects
//! with result sets, updates, quit) interleaved round-robin as a busy server would see them; a
//! session flood (`--flood`: connections joined mid-stream that each send one query and never
//! close); random bytes on the server port (`--random`: whole connections carrying noise).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use etherparse::PacketBuilder;
use mrte_capture::mysql::consts::caps;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

/// `mrte-bench synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output pcap.
    #[arg(short = 'w', long)]
    pub output: PathBuf,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1000)]
    pub sessions: u32,
    /// Queries per session.
    #[arg(long, default_value_t = 100)]
    pub queries: u32,
    /// Session flood: `--sessions` connections, each one frame (a query, mid-stream, no answer,
    /// never closed).
    #[arg(long, conflicts_with = "random")]
    pub flood: bool,
    /// `--sessions` connections (handshake, FIN) whose payload is random bytes, this many per
    /// connection in each direction.
    #[arg(long, value_name = "BYTES")]
    pub random: Option<usize>,
}

const CAPS: u32 = caps::LONG_PASSWORD
    | caps::CONNECT_WITH_DB
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::DEPRECATE_EOF;

fn packet(seq: u8, payload: &[u8], out: &mut Vec<u8>) {
    let n = payload.len() as u32;
    out.extend_from_slice(&n.to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
}

fn lenenc_str(s: &[u8], out: &mut Vec<u8>) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

fn handshake_v10(conn_id: u32) -> Vec<u8> {
    let mut p = vec![0x0a];
    p.extend_from_slice(b"10.11.6-MariaDB-0+deb12u1\0");
    p.extend_from_slice(&conn_id.to_le_bytes());
    p.extend_from_slice(b"abcdefgh\0");
    p.extend_from_slice(&((CAPS & 0xffff) as u16).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((CAPS >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0");
    p.extend_from_slice(b"mysql_native_password\0");
    let mut out = Vec::new();
    packet(0, &p, &mut out);
    out
}

fn handshake_response() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&CAPS.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"sbtest\0");
    p.push(20);
    p.extend_from_slice(&[0x5a; 20]);
    p.extend_from_slice(b"sbtest\0");
    p.extend_from_slice(b"mysql_native_password\0");
    let mut out = Vec::new();
    packet(1, &p, &mut out);
    out
}

fn ok(seq: u8, affected: u8) -> Vec<u8> {
    let mut out = Vec::new();
    packet(
        seq,
        &[0x00, affected, 0x00, 0x02, 0x00, 0x00, 0x00],
        &mut out,
    );
    out
}

fn query(sql: &[u8]) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql);
    let mut out = Vec::new();
    packet(0, &p, &mut out);
    out
}

fn result_set(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    packet(1, &[1], &mut out);
    let mut col = Vec::new();
    for s in [&b"def"[..], b"sbtest", b"sbtest1", b"sbtest1", b"c", b"c"] {
        lenenc_str(s, &mut col);
    }
    col.push(0x0c);
    col.extend_from_slice(&45u16.to_le_bytes());
    col.extend_from_slice(&480u32.to_le_bytes());
    col.push(254);
    col.extend_from_slice(&0x1001u16.to_le_bytes());
    col.push(0);
    col.extend_from_slice(&[0, 0]);
    packet(2, &col, &mut out);
    let mut row = Vec::new();
    lenenc_str(value, &mut row);
    packet(3, &row, &mut out);
    packet(4, &[0xfe, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00], &mut out);
    out
}

struct Flow {
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    cseq: u32,
    sseq: u32,
}

struct Out {
    w: PcapWriter<BufWriter<File>>,
    ts_us: u64,
    buf: Vec<u8>,
    frames: u64,
}

impl Out {
    fn frame(&mut self, f: &mut Flow, to_server: bool, flags: u8, payload: &[u8]) -> Result<()> {
        let (src, dst) = if to_server {
            (f.client, f.server)
        } else {
            (f.server, f.client)
        };
        let (seq, ack) = if to_server {
            (f.cseq, f.sseq)
        } else {
            (f.sseq, f.cseq)
        };
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 65535);
        if flags & 0x02 != 0 {
            b = b.syn();
        }
        if flags & 0x10 != 0 {
            b = b.ack(ack);
        }
        if flags & 0x01 != 0 {
            b = b.fin();
        }
        if flags & 0x08 != 0 {
            b = b.psh();
        }
        self.buf.clear();
        b.write(&mut self.buf, payload).context("building frame")?;
        let adv = payload.len() as u32 + u32::from(flags & 0x03 != 0);
        if to_server {
            f.cseq = f.cseq.wrapping_add(adv);
        } else {
            f.sseq = f.sseq.wrapping_add(adv);
        }
        self.ts_us += 3;
        let pkt = PcapPacket::new(
            Duration::from_micros(self.ts_us),
            self.buf.len() as u32,
            &self.buf,
        );
        self.w.write_packet(&pkt).context("writing pcap")?;
        self.frames += 1;
        Ok(())
    }

    /// MySQL bytes as MSS-sized segments.
    fn data(&mut self, f: &mut Flow, to_server: bool, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(1448) {
            self.frame(f, to_server, 0x18, chunk)?;
        }
        Ok(())
    }
}

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn flow(i: u32) -> Flow {
    Flow {
        client: (
            Ipv4Addr::new(198, 18, 0, 10 + (i / 50_000) as u8).octets(),
            10_000 + (i % 50_000) as u16,
        ),
        server: (Ipv4Addr::new(198, 18, 0, 2).octets(), 3306),
        cseq: 1_000_000u32.wrapping_mul(i + 1),
        sseq: 4_000_000_000u32.wrapping_add(i * 7919),
    }
}

fn flood(out: &mut Out, sessions: u32) -> Result<()> {
    for i in 0..sessions {
        let mut f = flow(i);
        let sql = format!("SELECT c FROM sbtest1 WHERE id={}", i % 10_000 + 1);
        out.data(&mut f, true, &query(sql.as_bytes()))?;
    }
    Ok(())
}

fn random(out: &mut Out, sessions: u32, bytes: usize) -> Result<()> {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; bytes];
    let mut flows: Vec<Flow> = (0..sessions).map(flow).collect();
    for f in flows.iter_mut() {
        out.frame(f, true, 0x02, &[])?;
        out.frame(f, false, 0x12, &[])?;
        out.frame(f, true, 0x10, &[])?;
    }
    for f in flows.iter_mut() {
        noise.fill(&mut buf);
        out.data(f, false, &buf)?;
        noise.fill(&mut buf);
        out.data(f, true, &buf)?;
    }
    for f in flows.iter_mut() {
        out.frame(f, true, 0x11, &[])?;
        out.frame(f, false, 0x11, &[])?;
        out.frame(f, true, 0x10, &[])?;
    }
    Ok(())
}

/// Write the synthetic capture.
pub fn run(a: SynthArgs) -> Result<()> {
    let file =
        File::create(&a.output).with_context(|| format!("creating {}", a.output.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let w = PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), header)?;
    let mut out = Out {
        w,
        ts_us: 1_700_000_000_000_000,
        buf: Vec::with_capacity(2048),
        frames: 0,
    };
    if a.flood || a.random.is_some() {
        match a.random {
            Some(n) => random(&mut out, a.sessions, n)?,
            None => flood(&mut out, a.sessions)?,
        }
        out.w.into_writer().flush().context("writing pcap")?;
        eprintln!(
            "wrote {} frames, {} {} sessions to {}",
            out.frames,
            a.sessions,
            if a.flood { "flood" } else { "random-bytes" },
            a.output.display()
        );
        return Ok(());
    }
    let mut flows: Vec<Flow> = (0..a.sessions).map(flow).collect();
    for (i, f) in flows.iter_mut().enumerate() {
        out.frame(f, true, 0x02, &[])?;
        out.frame(f, false, 0x12, &[])?;
        out.frame(f, true, 0x10, &[])?;
        out.data(f, false, &handshake_v10(i as u32 + 1))?;
        out.data(f, true, &handshake_response())?;
        out.data(f, false, &ok(2, 0))?;
    }
    let pad = vec![b'x'; 100];
    for q in 0..a.queries {
        for (i, f) in flows.iter_mut().enumerate() {
            let id = (q as usize * 7 + i) % 10_000 + 1;
            if q % 10 == 9 {
                let sql = format!("UPDATE sbtest1 SET k=k+1 WHERE id={id}");
                out.data(f, true, &query(sql.as_bytes()))?;
                out.data(f, false, &ok(1, 1))?;
            } else {
                let sql = format!("SELECT c FROM sbtest1 WHERE id={id}");
                out.data(f, true, &query(sql.as_bytes()))?;
                out.data(f, false, &result_set(&pad))?;
            }
            out.frame(f, true, 0x10, &[])?;
        }
    }
    for f in flows.iter_mut() {
        let mut quit = Vec::new();
        packet(0, &[0x01], &mut quit);
        out.data(f, true, &quit)?;
        out.frame(f, true, 0x11, &[])?;
        out.frame(f, false, 0x11, &[])?;
        out.frame(f, true, 0x10, &[])?;
    }
    eprintln!(
        "wrote {} frames, {} sessions x {} queries to {}",
        out.frames,
        a.sessions,
        a.queries,
        a.output.display()
    );
    Ok(())
}
