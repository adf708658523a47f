//! The thin tokio executor: one TCP connection to the test server driven by the sans-IO parts
//! ([`super::auth::Handshake`], [`super::packet`], [`super::response::ResponseReader`]).
//!
//! Commands go out as given ([`WireConn::send`]; the caller has rewritten what must change) and
//! several may be outstanding before [`WireConn::read_response`] reads their responses in order;
//! each reply carries the time from its send to its last packet. It sets no timeouts (wrap calls
//! in `tokio::time::timeout`) and keeps no statement table.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use super::auth::{self, AuthStep, ConnectParams, Handshake, ServerInfo, Step};
use super::caps::COMPRESS;
use super::packet::{PacketReader, PacketWriter};
use super::response::{Feed, Reply, ResponseReader};
use super::tls::Stream;
use super::{com, WireError};
use mrte_capture::event::ResponseStatus;

/// LOCAL INFILE data goes out in packets of this size.
const INFILE_CHUNK: usize = 64 * 1024;

#[derive(Debug)]
struct Pending {
    reader: ResponseReader,
    sent: Instant,
    /// Sequence id of the response's first packet (plain protocol).
    seq: u8,
    infile: Option<Vec<u8>>,
}

/// A replay connection speaking the wire protocol itself.
#[derive(Debug)]
pub struct WireConn {
    stream: Stream,
    rd: PacketReader,
    wr: PacketWriter,
    out: Vec<u8>,
    caps: u32,
    ext: u32,
    server: ServerInfo,
    params: ConnectParams,
    plugin: String,
    pending: VecDeque<Pending>,
}

impl WireConn {
    /// Connect to `addr` and log in (TLS, when negotiated, names the server by its address).
    pub async fn connect(
        addr: impl ToSocketAddrs,
        params: ConnectParams,
    ) -> Result<Self, WireError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let host = stream.peer_addr()?.ip().to_string();
        let mut c = Self {
            stream: Stream::Plain(stream),
            rd: PacketReader::new(params.max_packet as usize),
            wr: PacketWriter::new(),
            out: Vec::with_capacity(4 * 1024),
            caps: 0,
            ext: 0,
            server: ServerInfo::default(),
            params: params.clone(),
            plugin: String::new(),
            pending: VecDeque::new(),
        };
        let mut hs = Handshake::new(params, true);
        loop {
            let step = match c.rd.next_packet()? {
                Some(p) => hs.on_packet(p.seq, p.payload)?,
                None => {
                    c.fill().await?;
                    continue;
                }
            };
            match step {
                Step::Send { seq, payload } => {
                    c.wr.write(seq, 0, &payload, &mut c.out)?;
                    c.flush().await?;
                }
                Step::Wait => {}
                Step::StartTls { seq, payload } => {
                    if c.rd.buffered() > 0 {
                        return Err(WireError::Protocol("bytes before the TLS handshake".into()));
                    }
                    c.wr.write(seq, 0, &payload, &mut c.out)?;
                    c.flush().await?;
                    let name = c.params.ssl_name.as_deref().unwrap_or(&host);
                    c.stream
                        .upgrade(name, c.params.ssl_mode, c.params.ssl_ca.as_deref())
                        .await?;
                    let Step::Send { seq, payload } = hs.on_tls_ready()? else {
                        return Err(WireError::Protocol("no login after TLS".into()));
                    };
                    c.wr.write(seq, 0, &payload, &mut c.out)?;
                    c.flush().await?;
                }
                Step::Done => break,
            }
        }
        (c.caps, c.ext) = hs.negotiated();
        c.server = hs.server().clone();
        c.plugin = hs.plugin().unwrap_or_default().to_owned();
        if c.caps & COMPRESS != 0 {
            c.rd.set_compressed();
            c.wr.set_compressed();
        }
        Ok(c)
    }

    /// The greeting's facts (connection id, version, scramble...).
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// Negotiated (capabilities, MariaDB extended capabilities).
    pub fn capabilities(&self) -> (u32, u32) {
        (self.caps, self.ext)
    }

    /// The auth plugin the login ended with.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// TLS is on.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Commands sent and not yet read.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    async fn fill(&mut self) -> Result<(), WireError> {
        let buf = self.rd.input();
        buf.reserve(super::packet::READ_CHUNK);
        if self.stream.read_buf(buf).await? == 0 {
            return Err(WireError::Closed);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.sent_out();
        }
        Ok(())
    }

    fn sent_out(&mut self) {
        self.out.clear();
        if self.out.capacity() > 256 * 1024 {
            // A large command grew it: an idle session keeps a small buffer.
            self.out = Vec::with_capacity(4 * 1024);
        }
    }

    /// Write what [`Self::queue`] buffered without waiting, in one `send` when the socket has
    /// room (the usual case): true when all of it went out; false when some is left for
    /// [`Self::flush_queued`] (a full socket, or TLS).
    pub fn try_flush(&mut self) -> Result<bool, WireError> {
        if self.out.is_empty() {
            return Ok(true);
        }
        let n = self.stream.try_write(&self.out)?;
        if n == self.out.len() {
            self.sent_out();
            return Ok(true);
        }
        self.out.drain(..n);
        Ok(false)
    }

    /// Buffer a command (payload as captured, command byte first) without writing it; it goes
    /// out with the next [`Self::flush_queued`], `send` or `read_response`.
    pub fn queue(&mut self, payload: &[u8], infile: Option<Vec<u8>>) -> Result<(), WireError> {
        match payload.first() {
            None => return Err(WireError::Protocol("empty command".into())),
            Some(&com::CHANGE_USER) => {
                return Err(WireError::Protocol(
                    "COM_CHANGE_USER goes through change_user (it re-runs auth)".into(),
                ))
            }
            Some(_) => {}
        }
        let (seq, _) = self.wr.write(0, 0, payload, &mut self.out)?;
        self.pending.push_back(Pending {
            reader: ResponseReader::for_command(payload, self.caps, seq.wrapping_sub(1)),
            sent: Instant::now(),
            seq,
            infile,
        });
        Ok(())
    }

    /// Write what [`Self::queue`] buffered.
    pub async fn flush_queued(&mut self) -> Result<(), WireError> {
        self.flush().await
    }

    /// Send a command; its response is read by a later [`Self::read_response`].
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), WireError> {
        self.queue(payload, None)?;
        self.flush().await
    }

    /// Send a command whose response may ask for a LOCAL INFILE file: `infile` is what goes
    /// (prod's client's bytes); `None` sends an empty file.
    pub async fn send_with_infile(
        &mut self,
        payload: &[u8],
        infile: Option<Vec<u8>>,
    ) -> Result<(), WireError> {
        self.queue(payload, infile)?;
        self.flush().await
    }

    /// Send a command and read its response.
    pub async fn send_raw(&mut self, payload: &[u8]) -> Result<Reply, WireError> {
        self.send(payload).await?;
        self.read_response().await
    }

    /// Read the response of the oldest outstanding command (taken off the queue also when the
    /// read fails; a read cancelled midway leaves the connection unusable: drop it).
    pub async fn read_response(&mut self) -> Result<Reply, WireError> {
        let mut reply = Reply::default();
        self.read_response_into(&mut reply).await?;
        Ok(reply)
    }

    /// [`Self::read_response`] into `out` (overwritten when the read succeeds, left as it was
    /// when it fails): the replay's hot path reuses one reply per session instead of moving
    /// each (a few hundred bytes) through the futures that return it.
    pub async fn read_response_into(&mut self, out: &mut Reply) -> Result<(), WireError> {
        let r = self.read_front(out).await;
        if r.is_err() {
            self.pending.pop_front();
        }
        r
    }

    async fn read_front(&mut self, out: &mut Reply) -> Result<(), WireError> {
        self.flush().await?;
        // Read in place (the reader is large: not moved per response), taken off at the end.
        let Some(pend) = self.pending.front_mut() else {
            return Err(WireError::NothingOutstanding);
        };
        if pend.reader.is_done() {
            self.take_reply(false, out);
            return Ok(());
        }
        let check_seq = !self.rd.is_compressed();
        let mut want = pend.seq;
        loop {
            let mut infile = None;
            while let Some(p) = self.rd.next_packet()? {
                if check_seq && p.first_seq != want {
                    return Err(WireError::Protocol(format!(
                        "packet sequence {} where {want} was due",
                        p.first_seq
                    )));
                }
                want = p.seq.wrapping_add(1);
                let Some(pend) = self.pending.front_mut() else {
                    return Err(WireError::NothingOutstanding);
                };
                match pend.reader.feed(p.seq, p.payload)? {
                    Feed::More => {}
                    Feed::Done => {
                        self.take_reply(true, out);
                        return Ok(());
                    }
                    Feed::LocalInfile => {
                        infile = Some(pend.infile.take());
                        break;
                    }
                }
            }
            match infile {
                Some(data) => {
                    want = self.send_infile(want, data).await?;
                    if let Some(pend) = self.pending.front_mut() {
                        pend.reader.client_packet(want.wrapping_sub(1));
                    }
                }
                None => self.fill().await?,
            }
        }
    }

    /// Take the oldest outstanding command's reply off the queue into `out` (with its latency
    /// when it had a response on the wire).
    fn take_reply(&mut self, timed: bool, out: &mut Reply) {
        let Some(pend) = self.pending.pop_front() else {
            *out = Reply::default();
            return;
        };
        *out = pend.reader.into_reply();
        if timed {
            out.latency_us = pend.sent.elapsed().as_micros() as u64;
        }
    }

    /// Send LOCAL INFILE data and the closing empty packet from `seq`; returns the sequence id
    /// the server's answer will carry.
    async fn send_infile(&mut self, seq: u8, data: Option<Vec<u8>>) -> Result<u8, WireError> {
        let data = data.unwrap_or_default();
        let mut packets: Vec<&[u8]> = data.chunks(INFILE_CHUNK).collect();
        packets.push(&[]);
        let comp = self.rd.comp_seq().wrapping_add(1);
        let (next, _) = self.wr.write_packets(seq, comp, &packets, &mut self.out)?;
        self.flush().await?;
        Ok(next)
    }

    /// COM_CHANGE_USER: log in again as `user` (auth re-run, session state reset). A refusal
    /// is a reply with status Err, as for any command.
    pub async fn change_user(
        &mut self,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> Result<Reply, WireError> {
        if !self.pending.is_empty() {
            return Err(WireError::Protocol(
                "change_user with commands outstanding".into(),
            ));
        }
        let (payload, mut x) = auth::change_user(
            &self.server,
            self.caps,
            self.params.collation,
            user,
            password,
            db,
            &self.params.attributes,
            self.stream.is_tls(),
        )?;
        let sent = Instant::now();
        self.wr.write(0, 0, &payload, &mut self.out)?;
        self.flush().await?;
        let mut reply = Reply::default();
        loop {
            let Some(p) = self.rd.next_packet()? else {
                self.fill().await?;
                continue;
            };
            let (seq, step) = (p.seq, x.on_packet(p.payload));
            reply.packets += 1;
            match step {
                Ok(AuthStep::Reply(r)) => {
                    let comp = self.rd.comp_seq().wrapping_add(1);
                    self.wr
                        .write(seq.wrapping_add(1), comp, &r, &mut self.out)?;
                    self.flush().await?;
                }
                Ok(AuthStep::Wait) => {}
                Ok(AuthStep::Ok) => {
                    reply.status = ResponseStatus::Ok;
                    self.plugin = x.plugin().to_owned();
                    break;
                }
                Err(WireError::Auth { code, message }) => {
                    reply.status = ResponseStatus::Err;
                    reply.error = Some((code, message));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        reply.latency_us = sent.elapsed().as_micros() as u64;
        Ok(reply)
    }

    /// COM_QUIT and close.
    pub async fn quit(mut self) -> Result<(), WireError> {
        self.send(&[com::QUIT]).await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}
