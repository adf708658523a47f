//! Command phase: client command packets become queued [`Pending`] commands, server packets go to
//! the oldest outstanding one's [`ResponseReader`], and commands leave the queue in the order they
//! were sent, each with its response. Any number of commands may be outstanding (pipelining:
//! Connector/J batches, mysql2); commands without a response (SEND_LONG_DATA, STMT_CLOSE, QUIT)
//! wait in the queue behind earlier ones so the order holds.
//!
//! A command's payload is parsed when it leaves the queue, after every earlier response was seen:
//! an EXECUTE pipelined behind its PREPARE then knows the parameter count, and the record's
//! schema and user are those the earlier commands left. LOCAL INFILE file packets and the
//! COM_CHANGE_USER auth packets of the client are absorbed by the outstanding command.

use std::sync::Arc;

use bytes::Bytes;

use super::command::parse_command_shared;
use super::consts::{caps, com};
use super::response::{Expect, ResponseReader, Step};
use super::{use_statement, Anomaly, ConnEvent, Lent, Packet, Proto};
use crate::commit::CommitMarks;
use crate::event::{Command, CommandFlags, CommandRecord, Response, ResponseStatus};

/// Most commands outstanding at once, and most payload bytes they may hold (a capture that sees
/// only the client's direction must not grow without bound); beyond either the oldest is given
/// up as incomplete.
const MAX_OUTSTANDING: usize = 4096;
const MAX_OUTSTANDING_BYTES: usize = 64 << 20;

/// Size of a fresh command arena (see `Proto::arena`). Small enough that a record a consumer
/// keeps long pins little; payloads larger than a quarter of it get their own allocation.
pub(super) const ARENA_CHUNK: usize = 16 << 10;

/// A command sent and not yet handed out.
#[derive(Debug)]
pub(super) struct Pending {
    seq: u64,
    ts_us: u64,
    code: u8,
    len: usize,
    raw: Bytes,
    flags: CommandFlags,
    /// The response expected, if any, and how to read it: its reader is made on the first
    /// byte of the response (a command still waiting, as in a flood of idle sessions, holds
    /// ~100 bytes instead of ~400).
    expect: Option<Expect>,
    caps: u32,
    last_seq: u8,
    eof_unknown: bool,
    reader: Option<Box<ResponseReader>>,
    infile: Option<Vec<u8>>,
}

impl Pending {
    /// No response is expected, or it is complete.
    fn is_done(&self) -> bool {
        match &self.reader {
            Some(r) => r.is_done(),
            None => self.expect.is_none(),
        }
    }

    fn new_reader(&self) -> Option<ResponseReader> {
        let e = self.expect?;
        let r = ResponseReader::new(e, self.caps, self.last_seq);
        Some(if self.eof_unknown { r.eof_unknown() } else { r })
    }

    /// The response reader, made on first use (in `lent`'s spare box when there is one); None
    /// when no response is expected.
    #[inline(always)]
    fn reader(&mut self, lent: &mut Option<Box<Lent>>) -> Option<&mut ResponseReader> {
        if self.reader.is_none() {
            return self.make_reader(lent);
        }
        self.reader.as_deref_mut()
    }

    /// [`Pending::reader`] when there is none yet (once per response: out of line).
    #[inline(never)]
    fn make_reader(&mut self, lent: &mut Option<Box<Lent>>) -> Option<&mut ResponseReader> {
        if self.reader.is_none() {
            let e = self.expect?;
            self.reader = Some(match lent.as_mut().and_then(|l| l.reader.take()) {
                Some(mut b) => {
                    b.renew(e, self.caps, self.last_seq, self.eof_unknown);
                    b
                }
                None => Box::new(self.new_reader()?),
            });
        }
        self.reader.as_deref_mut()
    }

    /// The sequence id of the response's first packet, while none has been read.
    fn start_seq(&self) -> Option<u8> {
        match &self.reader {
            Some(r) => r.at_start().then(|| r.next_seq()),
            None => self
                .expect
                .filter(|&e| e != Expect::Fetch)
                .map(|_| self.last_seq.wrapping_add(1)),
        }
    }

    /// A server byte for this command's response arrived at `ts_us`.
    pub(super) fn first_byte(&mut self, ts_us: u64, lent: &mut Option<Box<Lent>>) {
        if let Some(r) = self.reader(lent) {
            if !r.is_done() {
                r.response_mut().first_byte_us.get_or_insert(ts_us);
            }
        }
    }
}

impl Proto {
    pub(super) fn on_client_packet(&mut self, p: Packet<'_>, ts_us: u64) {
        if p.seq != 0 {
            if let Some(pend) = self.pending.iter_mut().find(|q| !q.is_done()) {
                if let Some(r) = pend.reader(&mut self.arena) {
                    if r.in_local_infile() {
                        r.client_packet(p.seq);
                        if p.len > 0 {
                            pend.infile
                                .get_or_insert_with(Vec::new)
                                .extend_from_slice(p.payload);
                        }
                        pend.ts_us = ts_us;
                        return;
                    }
                    if r.in_auth() {
                        r.client_packet(p.seq);
                        return;
                    }
                }
            }
            // Compressed, the server goes by the frame's sequence id: Connector/J 2.7 starts a
            // command with the inner id where the previous one ended, and prod answers it.
            if !self.compressed {
                self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "client packet out of sequence",
                )));
                return;
            }
        }
        let Some(&code) = p.payload.first() else {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError("empty command")));
            return;
        };
        let mut flags = CommandFlags {
            midstream: self.midstream,
            after_gap: std::mem::take(&mut self.after_gap),
            ..CommandFlags::default()
        };
        let raw = if p.truncated || p.len > self.max_command {
            flags.too_large = true;
            self.emit(ConnEvent::Anomaly(Anomaly::TooLarge));
            self.undecoded(super::Undecoded::TooLarge, p.len + 4);
            Bytes::new()
        } else {
            self.copy_raw(code, p.payload)
        };
        // A payload of 16 MiB or more came in several packets; the response follows the last.
        let last_seq = (p.len / 0xff_ffff) as u8;
        let expect = Expect::for_command(code);
        while !self.pending.is_empty()
            && (self.pending.len() >= MAX_OUTSTANDING
                || self.pending_bytes + raw.len() > MAX_OUTSTANDING_BYTES)
        {
            self.give_up_front(ts_us);
        }
        self.pending_bytes += raw.len();
        if self.pending.capacity() == 0 {
            // One in flight is the common case: a session idle with one command waiting for
            // its answer should not hold room for four.
            self.pending.reserve_exact(1);
        }
        self.pending.push_back(Pending {
            seq: self.next_seq,
            ts_us,
            code,
            len: p.len,
            raw,
            flags,
            expect,
            caps: self.caps,
            last_seq,
            eof_unknown: !self.deprecate_eof_known,
            reader: None,
            infile: None,
        });
        self.next_seq += 1;
        self.emit_done(ts_us);
    }

    /// The command payload as a [`Bytes`]: split off the arena, except a PREPARE's (its text is
    /// kept for the statement's lifetime, by the decoder and by replay, and must not pin a
    /// chunk) and large payloads.
    fn copy_raw(&mut self, code: u8, payload: &[u8]) -> Bytes {
        if code == com::STMT_PREPARE || payload.len() > ARENA_CHUNK / 4 {
            return Bytes::copy_from_slice(payload);
        }
        let arena = &mut self.arena.get_or_insert_with(Box::default).arena;
        if arena.capacity() - arena.len() < payload.len() {
            *arena = bytes::BytesMut::with_capacity(ARENA_CHUNK);
        }
        arena.extend_from_slice(payload);
        arena.split().freeze()
    }

    /// One server packet of the command phase, followed in the fed bytes by `rest`. Returns
    /// the bytes of `rest` consumed as well: when the packet leaves the response among its
    /// result rows, the whole row packets that follow are read in one run
    /// ([`ResponseReader::feed_rows`]: same outcome as one by one, no per-packet dispatch).
    #[inline]
    pub(super) fn on_server_packet(&mut self, p: Packet<'_>, rest: &[u8], ts_us: u64) -> usize {
        let Some(front) = self.pending.front_mut() else {
            if !self.midstream && !self.after_gap {
                self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "server packet without a command",
                )));
            }
            return 0;
        };
        let Some(r) = front.reader(&mut self.arena) else {
            self.on_server_packet_slow(p, ts_us);
            return 0;
        };
        if p.seq != r.next_seq() {
            self.on_server_packet_slow(p, ts_us);
            return 0;
        }
        r.response_mut().first_byte_us.get_or_insert(ts_us);
        let step = r.feed(p.seq, p.payload, p.len);
        if step != Step::NeedMore || r.has_anomaly() || !self.deprecate_eof_known {
            self.after_feed(ts_us);
            return 0;
        }
        r.feed_rows(rest)
    }

    /// A server packet whose sequence id is not the one the oldest response expects: either
    /// the oldest response was misread and this one starts the next, or it is out of place.
    #[inline(never)]
    fn on_server_packet_slow(&mut self, p: Packet<'_>, ts_us: u64) {
        let next_start = self.pending.iter().skip(1).find_map(|q| q.start_seq());
        let front_waits = self.pending.front().is_some_and(|q| !q.is_done());
        if front_waits && next_start == Some(p.seq) && !self.compressed {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "response ended early",
            )));
            self.give_up_front(ts_us);
            self.emit_done(ts_us);
        }
        let Some(r) = self
            .pending
            .front_mut()
            .and_then(|q| q.reader(&mut self.arena))
        else {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "server packet without a command",
            )));
            return;
        };
        r.response_mut().first_byte_us.get_or_insert(ts_us);
        r.feed(p.seq, p.payload, p.len);
        self.after_feed(ts_us);
    }

    fn after_feed(&mut self, ts_us: u64) {
        let Some(r) = self
            .pending
            .front_mut()
            .and_then(|q| q.reader(&mut self.arena))
        else {
            return;
        };
        let anomaly = r.take_anomaly();
        let inferred = r.inferred_deprecate_eof();
        let done = r.is_done();
        if done {
            r.response_mut().last_byte_us = Some(ts_us);
        }
        if let Some(what) = anomaly {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(what)));
        }
        if let Some(v) = inferred {
            if !self.deprecate_eof_known {
                self.deprecate_eof_known = true;
                if v {
                    self.caps |= caps::DEPRECATE_EOF;
                } else {
                    self.caps &= !caps::DEPRECATE_EOF;
                }
            }
        }
        if done {
            self.emit_done(ts_us);
        }
    }

    /// Hand out the commands at the head of the queue whose responses are complete.
    fn emit_done(&mut self, ts_us: u64) {
        while self.pending.front().is_some_and(|q| q.is_done()) {
            if let Some(q) = self.pending.pop_front() {
                self.finish(q, ts_us, false);
            }
        }
    }

    /// The oldest command's response will not be read to its end.
    fn give_up_front(&mut self, ts_us: u64) {
        if let Some(q) = self.pending.pop_front() {
            let incomplete = !q.is_done();
            self.finish(q, ts_us, incomplete);
        }
    }

    /// Hand out every queued command; those still waiting are marked incomplete.
    pub(super) fn flush_pending(&mut self, ts_us: u64, incomplete: bool) {
        while let Some(q) = self.pending.pop_front() {
            let inc = incomplete && !q.is_done();
            self.finish(q, ts_us, inc);
        }
    }

    /// Parse the command, apply what it changed in the session, and emit the record.
    fn finish(&mut self, q: Pending, ts_us: u64, incomplete: bool) {
        // Only the first record after a change carries `db`/`user` (an `Arc` clone is a locked
        // increment on a line the consumer decrements); first, before the record's stores.
        let (db, user) = if self.identity_sent {
            (None, None)
        } else {
            self.identity_sent = true;
            (self.db.clone(), self.user.clone())
        };
        self.pending_bytes = self.pending_bytes.saturating_sub(q.raw.len());
        // A command whose response never began reads as an unread response.
        let mut unread = None;
        if q.reader.is_none() {
            unread = q.new_reader();
        }
        let Pending {
            seq,
            ts_us: sent_us,
            code,
            len,
            raw,
            mut flags,
            mut reader,
            infile,
            ..
        } = q;
        let mut empty = None;
        // Read where it is (in the reader) and moved once, straight into the record's box.
        let response: &mut Response = match (reader.as_deref_mut(), unread.as_mut()) {
            (Some(r), _) | (None, Some(r)) => {
                flags.response_incomplete = incomplete || r.is_broken();
                r.finish_response()
            }
            (None, None) => empty.insert(Response::default()),
        };
        if flags.response_incomplete
            && response.last_byte_us.is_none()
            && response.first_byte_us.is_some()
        {
            response.last_byte_us = Some(ts_us);
        }
        let command = if flags.too_large {
            match code {
                com::QUERY => Command::Query {
                    sql: Bytes::new(),
                    attributes: Vec::new(),
                },
                com::STMT_PREPARE => Command::StmtPrepare { sql: Bytes::new() },
                _ => Command::Unknown { code, len },
            }
        } else {
            match parse_command_shared(&raw, self.caps, &mut self.stmts) {
                Ok(c) => c,
                Err(_) => {
                    self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                        "malformed command",
                    )));
                    Command::Unknown { code, len }
                }
            }
        };
        if let Command::Unknown { code, .. } = command {
            if !flags.too_large {
                self.emit(ConnEvent::Anomaly(Anomaly::UnknownCommand(code)));
            }
        }
        let prepared = match &command {
            Command::StmtExecute { stmt_id, .. } => {
                self.stmts.get(*stmt_id).and_then(|s| s.sql.as_deref())
            }
            _ => None,
        };
        let end = self.trx.observe(&command, prepared, response);
        // What the command changed is read before the record is built: the box's lines were
        // just written (often freed a moment ago on the consumer's core), and reading them
        // back at once waits for those stores.
        if response.status == ResponseStatus::Ok {
            self.apply(&command, response);
        }
        // Built on the stack and copied into its box (~470 bytes): allocating first
        // (`Box::new_uninit` + `Box::write`) leaves the copy in place too (callgrind), only
        // field-wise writes into the uninitialised box (unsafe) would not.
        let rec = Box::new(CommandRecord {
            seq,
            ts_us: sent_us,
            command,
            response: std::mem::take(response),
            db,
            user,
            flags,
            raw,
            infile: infile.map(Bytes::from),
            commit: CommitMarks {
                end,
                ..CommitMarks::default()
            },
        });
        // The reader's box is kept for the next command's response.
        if let (Some(r), Some(l)) = (reader, self.arena.as_mut()) {
            l.reader.get_or_insert(r);
        }
        self.emit(ConnEvent::Command(rec));
    }

    /// What a successful command changed in the session.
    fn apply(&mut self, command: &Command, response: &Response) {
        match command {
            Command::InitDb { schema } => {
                self.db = Some(Arc::from(schema.as_str()));
                self.identity_sent = false;
            }
            Command::ChangeUser { user, db, .. } => {
                self.user = Some(Arc::from(user.as_str()));
                self.db = db.as_deref().map(Arc::from);
                self.identity_sent = false;
                self.stmts.clear();
            }
            Command::Query { sql, .. } => {
                if let Some(db) = use_statement(sql) {
                    self.db = Some(Arc::from(db.as_str()));
                    self.identity_sent = false;
                }
            }
            Command::StmtPrepare { sql } => {
                if let Some(ok) = &response.prepare_ok {
                    self.stmts
                        .on_prepare_ok(ok.stmt_id, ok.num_params, Some(sql.clone()));
                }
            }
            _ => {}
        }
    }
}
