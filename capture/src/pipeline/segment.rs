//! The per-frame path of a known session: a segment into the session (panics contained), the
//! memory books after it, and the decoder's events out to the sink (commands marked by the commit
//! clock and counted). Session opening, closing and expiry live in [`super::lifecycle`].

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::session::{flush_all, process, release_held, Held, Session};
#[cfg(test)]
use super::TEST_PANIC;
use super::{Clock, Pipeline};
use crate::event::{CloseReason, EventSink, SessionEvent};
use crate::mysql::{Anomaly, ConnEvent, Direction, Undecoded};
use crate::net::TcpSegment;
use crate::stats::Stats;
use crate::tcp::seq_lt;

impl Pipeline {
    /// One segment of session `i`, panics contained; closes the session when it ends.
    pub(super) fn segment<S: EventSink>(
        &mut self,
        i: u32,
        dir: Direction,
        seg: &TcpSegment<'_>,
        ts_us: u64,
        sink: &mut S,
    ) {
        let max_ooo = self.cfg.max_ooo_bytes;
        let Self {
            stats,
            table,
            commits,
            ..
        } = self;
        let sess = table.get_mut(i);
        // A bare ACK (no payload, flags or loss) with nothing held delivers no byte to the
        // decoder and changes no buffer: no arena to lend, no books to update (a third of the
        // frames of a request/response workload; with many sessions, cache lines not touched).
        let bare = seg.payload.is_empty()
            && seg.missing == 0
            && !(seg.flags.syn || seg.flags.fin || seg.flags.rst)
            && sess.held.is_empty();
        if !bare {
            sess.conn.swap_arena(&mut self.arena);
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            Self::on_segment(stats, commits, sess, dir, seg, ts_us, max_ooo, sink)
        }));
        match r {
            Ok(close) => {
                if !bare {
                    self.table.get_mut(i).conn.swap_arena(&mut self.arena);
                    self.account(i, ts_us, sink);
                }
                if let Some(reason) = close {
                    self.close(i, ts_us, reason, sink);
                }
            }
            Err(_) => self.panicked(i, seg.payload.len(), ts_us, sink),
        }
    }

    /// Update the memory books after session `i` changed; over the limit, it drops its buffers.
    #[inline]
    pub(super) fn account<S: EventSink>(&mut self, i: u32, ts_us: u64, sink: &mut S) {
        let sess = self.table.get_mut(i);
        let now = sess.buffered();
        if now == (sess.mem as usize) {
            return;
        }
        let grew = now > (sess.mem as usize);
        self.buffered = self.buffered - (sess.mem as usize) + now;
        sess.mem = now as u32;
        self.stats.peak_buffered_bytes = self.stats.peak_buffered_bytes.max(self.buffered as u64);
        if let Some(s) = self.shard.as_mut() {
            s.note(self.buffered);
        }
        // The session whose growth crossed the limit pays for it.
        if !grew || self.cfg.max_memory == 0 || self.buffered <= self.cfg.max_memory {
            return;
        }
        self.stats.memory_drops += 1;
        let max_ooo = self.cfg.max_ooo_bytes;
        let Self {
            stats,
            table,
            commits,
            ..
        } = self;
        let sess = table.get_mut(i);
        let r = catch_unwind(AssertUnwindSafe(|| {
            let conn = flush_all(sess, ts_us, max_ooo);
            if conn.buffered_bytes() > 0 {
                conn.handle_gap(Direction::ToServer, 0, ts_us);
                conn.handle_gap(Direction::ToClient, 0, ts_us);
            }
            sess.shrink_idle();
            Self::drain(stats, commits, sess, sink);
        }));
        if r.is_err() {
            self.panicked(i, 0, ts_us, sink);
            return;
        }
        let sess = self.table.get_mut(i);
        let now = sess.buffered();
        self.buffered = self.buffered - (sess.mem as usize) + now;
        sess.mem = now as u32;
    }

    /// One segment of a known session; the close reason when the session ends with it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_segment<S: EventSink>(
        stats: &mut Stats,
        commits: &mut Clock,
        sess: &mut Session,
        dir: Direction,
        seg: &TcpSegment<'_>,
        ts_us: u64,
        max_ooo: usize,
        sink: &mut S,
    ) -> Option<CloseReason> {
        sess.last_us = ts_us;
        #[cfg(test)]
        if seg.payload.starts_with(TEST_PANIC) {
            panic!("forced decoder panic (test)");
        }
        let peer_next = match dir {
            Direction::ToServer => sess.to_client.next_seq(),
            Direction::ToClient => sess.to_server.next_seq(),
        };
        let early = seg.flags.ack
            && (!seg.payload.is_empty() || seg.flags.fin)
            && peer_next.is_some_and(|n| seq_lt(n, seg.ack));
        if early || sess.held.iter().any(|h| h.dir == dir) {
            stats.out_of_order += 1;
            sess.held.push(Held {
                dir,
                seq: seg.seq,
                ack: seg.ack,
                syn: seg.flags.syn,
                fin: seg.flags.fin,
                payload: seg.payload.to_vec(),
                missing: seg.missing,
                ts_us,
            });
        } else {
            process(
                sess,
                dir,
                seg.seq,
                seg.flags.syn,
                seg.flags.fin,
                seg.payload,
                seg.missing,
                ts_us,
                max_ooo,
            );
        }
        let rst = seg.flags.rst && sess.held.is_empty();
        // Nearly always nothing is held: no call.
        if !sess.held.is_empty() {
            release_held(sess, ts_us, max_ooo, false);
        }
        let done =
            rst || (sess.held.is_empty() && sess.to_server.finished && sess.to_client.finished);
        Self::drain(stats, commits, sess, sink);
        done.then_some(if seg.flags.rst {
            CloseReason::Rst
        } else {
            CloseReason::Fin
        })
    }

    pub(super) fn drain<S: EventSink>(
        stats: &mut Stats,
        commits: &mut Clock,
        sess: &mut Session,
        sink: &mut S,
    ) {
        while let Some(ev) = sess.conn.poll_event() {
            match ev {
                ConnEvent::Login(l) => {
                    sink.push_at(&mut sess.sink_slot, sess.id, SessionEvent::Login(l))
                }
                ConnEvent::Command(mut c) => {
                    commits.mark(&mut c);
                    stats.commands.add(c.command.code());
                    sink.push_at(&mut sess.sink_slot, sess.id, SessionEvent::Command(c));
                }
                ConnEvent::Anomaly(a) => match a {
                    Anomaly::DecodeError(what) => {
                        stats.decode_errors += 1;
                        tracing::debug!(session = %sess.id, "decode error: {what}");
                    }
                    Anomaly::Desync => stats.desyncs += 1,
                    Anomaly::Resync => stats.resyncs += 1,
                    Anomaly::TooLarge => stats.too_large += 1,
                    Anomaly::UnknownCommand(_) => stats.unknown_commands += 1,
                    Anomaly::Tls => {
                        if !sess.tls {
                            sess.tls = true;
                            stats.tls_sessions += 1;
                        }
                    }
                    Anomaly::Compressed => {
                        if !sess.compressed {
                            sess.compressed = true;
                            stats.compressed_sessions += 1;
                        }
                    }
                    Anomaly::Undecoded(why, n) => {
                        stats.undecoded_bytes += n;
                        let u = &mut stats.undecoded;
                        match why {
                            Undecoded::Unsynced => u.unsynced += n,
                            Undecoded::AfterGap => u.after_gap += n,
                            Undecoded::Tls => u.tls += n,
                            Undecoded::TooLarge => u.too_large += n,
                            Undecoded::Incomplete => u.incomplete += n,
                        }
                    }
                },
            }
        }
    }
}
