//! Session lifecycle: opening a session (first SYN or payload, evicting the least recently used
//! when the table is full), closing it (FIN, RST, reuse, idleness, eviction, end of capture,
//! decoder panic) with its counters folded into the pipeline's, and the idle sweep. The per-frame
//! path of an open session is in [`super::segment`].

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::session::{flush_all, Key, Session};
use super::{Pipeline, COLD_US};
use crate::event::{
    CloseReason, EventSink, FlowKey, SessionClose, SessionEvent, SessionId, SessionOpen,
};
use crate::mysql::{Connection, Direction};
use crate::net::TcpSegment;
use crate::tcp::Stream;

impl Pipeline {
    /// A segment of no tracked session: open one when it may start a session (a SYN, or payload
    /// joined mid-stream), evicting the least recently used when the table is full.
    pub(super) fn open<S: EventSink>(
        &mut self,
        key: Key,
        flow: FlowKey,
        dir: Direction,
        seg: &TcpSegment<'_>,
        ts_us: u64,
        sink: &mut S,
    ) {
        let opening = seg.flags.syn || !seg.payload.is_empty() || seg.missing > 0;
        if !opening || seg.flags.rst {
            self.stats.skipped.untracked += 1;
            return;
        }
        if self.table.len() >= self.cfg.max_sessions.max(1) {
            if let Some(oldest) = self.table.oldest() {
                self.close(oldest, ts_us, CloseReason::Evicted, sink);
            }
        }
        let midstream = !seg.flags.syn;
        let id = self.next_id;
        self.next_id += self.id_step;
        self.stats.sessions += 1;
        self.stats.active_sessions += 1;
        if midstream {
            self.stats.midstream_sessions += 1;
        }
        let mut sink_slot = crate::event::NO_SLOT;
        sink.push_at(
            &mut sink_slot,
            id,
            SessionEvent::Open(Box::new(SessionOpen {
                id,
                key: flow,
                ts_us,
                midstream,
            })),
        );
        let i = self.table.insert(
            key,
            Box::new(Session {
                id,
                held: Vec::new(),
                conn: Connection::new(self.cfg.decoder.clone(), midstream),
                to_server: Stream::default(),
                to_client: Stream::default(),
                last_us: ts_us,
                mem: 0,
                sink_slot,
                tls: false,
                compressed: false,
            }),
        );
        self.segment(i, dir, seg, ts_us, sink);
        // Most sessions opened mid-stream by one segment stay idle for long: give the buffers
        // its first events needed back now (one free per session, not per packet).
        if let Some(sess) = self.table.get_mut_checked(i) {
            sess.shrink_idle();
            let now = sess.buffered();
            self.buffered = self.buffered - (sess.mem as usize) + now;
            sess.mem = now as u32;
        }
    }

    /// Decoding session `i` panicked: drop it (its state is suspect), count it, go on.
    #[cold]
    pub(super) fn panicked<S: EventSink>(
        &mut self,
        i: u32,
        bytes: usize,
        ts_us: u64,
        sink: &mut S,
    ) {
        let Some(key) = self.table.key(i) else {
            return;
        };
        let Some(sess) = self.table.remove(i) else {
            return;
        };
        self.buffered -= sess.mem as usize;
        let lost = (bytes + (sess.mem as usize)) as u64;
        self.stats.decoder_panics += 1;
        self.stats.undecoded.decoder_panic += lost;
        self.stats.undecoded_bytes += lost;
        self.stats.desyncs += 1;
        self.stats.active_sessions = self.stats.active_sessions.saturating_sub(1);
        tracing::error!(
            session = sess.id,
            client = %key.flow().client,
            "decoder panicked; session dropped, capture goes on"
        );
        let id = sess.id;
        // Its buffers may be inconsistent; dropping them must not take capture down either.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(sess)));
        sink.push(
            id,
            SessionEvent::Close(SessionClose {
                ts_us,
                reason: CloseReason::DecoderPanic,
            }),
        );
    }

    pub(super) fn close<S: EventSink>(
        &mut self,
        i: u32,
        ts_us: u64,
        reason: CloseReason,
        sink: &mut S,
    ) {
        let max_ooo = self.cfg.max_ooo_bytes;
        let Self {
            stats,
            table,
            commits,
            ..
        } = self;
        let Some(sess) = table.get_mut_checked(i) else {
            return;
        };
        sess.conn.swap_arena(&mut self.arena);
        let r = catch_unwind(AssertUnwindSafe(|| {
            flush_all(sess, ts_us, max_ooo).handle_close(ts_us);
            Self::drain(stats, commits, sess, sink);
        }));
        if r.is_err() {
            self.panicked(i, 0, ts_us, sink);
            return;
        }
        if let Some(sess) = self.table.get_mut_checked(i) {
            sess.conn.swap_arena(&mut self.arena);
        }
        let Some(sess) = self.table.remove(i) else {
            return;
        };
        self.buffered -= sess.mem as usize;
        for s in [sess.to_server.stats(), sess.to_client.stats()] {
            self.stats.gaps += s.gaps;
            self.stats.gap_bytes += s.gap_bytes;
            self.stats.retransmitted_bytes += s.retransmitted_bytes;
            self.stats.out_of_order += s.out_of_order;
            self.stats.ooo_overflow += s.ooo_overflow;
        }
        self.stats.active_sessions = self.stats.active_sessions.saturating_sub(1);
        match reason {
            CloseReason::Idle => self.stats.idle_evicted += 1,
            CloseReason::Evicted => self.stats.table_evicted += 1,
            _ => {}
        }
        let mut slot = sess.sink_slot;
        sink.push_at(
            &mut slot,
            sess.id,
            SessionEvent::Close(SessionClose { ts_us, reason }),
        );
        if self.retiring {
            // What the close allocated (its event queue) goes back now, for the next one.
            let mut sess = sess;
            sess.shrink_idle();
            self.retired.push(sess);
        }
    }

    /// Close sessions idle for longer than the timeout and free the buffers of sessions idle for
    /// [`COLD_US`], as of `now_us` (capture time). Walks only the cold end of the table.
    pub fn handle_timeout<S: EventSink>(&mut self, now_us: u64, sink: &mut S) {
        let limit = self.cfg.idle_timeout_us;
        while let Some(i) = self.table.oldest() {
            let last = self.table.get(i).map_or(now_us, |s| s.last_us);
            if now_us.saturating_sub(last) <= limit {
                break;
            }
            self.close(i, last, CloseReason::Idle, sink);
        }
        while let Some(i) = self.table.next_cold() {
            let sess = self.table.get_mut(i);
            if now_us.saturating_sub(sess.last_us) < COLD_US {
                break;
            }
            sess.shrink_idle();
            let now = sess.buffered();
            self.buffered = self.buffered - (sess.mem as usize) + now;
            sess.mem = now as u32;
            self.table.mark_cold(i);
        }
    }

    /// End of capture: flush and close every session. Their memory is freed when the pipeline
    /// is dropped: a process about to exit may `std::mem::forget` it instead (after a flood,
    /// freeing 200 000 sessions one by one, then the allocator giving their pages back at exit,
    /// cost a tenth of the run).
    pub fn finish<S: EventSink>(&mut self, ts_us: u64, sink: &mut S) {
        let mut open: Vec<(SessionId, u32)> = self.table.iter().map(|(i, s)| (s.id, i)).collect();
        open.sort_unstable_by_key(|(id, _)| *id);
        self.table.forget_keys();
        self.retiring = true;
        self.retired.reserve_exact(open.len());
        for (_, i) in open {
            self.close(i, ts_us, CloseReason::EndOfCapture, sink);
        }
        self.retiring = false;
    }
}
