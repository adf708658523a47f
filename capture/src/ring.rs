//! Per-session bounded wait-free SPSC rings between the capture thread and consumers.
//!
//! [`RingSink`] is the producer side: it lives on the capture thread, creates one [`rtrb`] ring
//! per session when the session opens and hands the consumer end out through a channel as a
//! [`SessionStream`]. By default (live capture) a full ring never makes capture wait: the event is
//! dropped, counted, and the session is marked overflowed. Offline readers may opt into
//! backpressure with [`RingSink::set_wait_when_full`]: the producer then waits for ring space. Consumers can poll or `await` a stream (an [`AtomicWaker`] is
//! woken after each push). This module does not decode anything.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::Thread;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, Sender};

use crate::event::{EventSink, Identity, SessionEvent, SessionId, SessionOpen, NO_SLOT};

/// State shared by the two ends of one session's ring.
#[derive(Debug, Default)]
pub struct SessionShared {
    /// Events dropped because the ring was full.
    pub dropped: AtomicU64,
    /// Of those, commands (for the replay's books).
    pub dropped_commands: AtomicU64,
    /// The producer has finished with this session (Close pushed or dropped).
    pub closed: AtomicBool,
    /// Woken after a push when the consumer is waiting (`armed`), and at close.
    pub waker: AtomicWaker,
    /// The consumer registered `waker` and is about to wait: the next push wakes it. Spares
    /// the producer an atomic read-modify-write per event while the consumer keeps up.
    armed: AtomicBool,
    /// Backpressure: the producer is parked until this many slots are free (0: not waiting).
    resume_at: AtomicU64,
    /// The producer thread, recorded the first time it parks.
    producer: OnceLock<Thread>,
}

impl SessionShared {
    /// Wake a parked producer once the consumer has freed enough of the ring.
    #[inline]
    fn after_pop(&self, free: usize) {
        std::sync::atomic::fence(Ordering::SeqCst);
        let want = self.resume_at.load(Ordering::Acquire);
        if want != 0 && free as u64 >= want && self.resume_at.swap(0, Ordering::AcqRel) != 0 {
            if let Some(t) = self.producer.get() {
                t.unpark();
            }
        }
    }
}

/// Consumer end of one session's ring.
#[derive(Debug)]
pub struct SessionStream {
    /// The session's opening facts.
    pub open: SessionOpen,
    consumer: rtrb::Consumer<SessionEvent>,
    shared: Arc<SessionShared>,
}

impl SessionStream {
    /// Next event if one is ready.
    pub fn try_pop(&mut self) -> Option<SessionEvent> {
        let ev = self.consumer.pop().ok();
        if ev.is_some() {
            self.shared.after_pop(self.free_slots());
        }
        ev
    }

    fn free_slots(&self) -> usize {
        self.consumer.buffer().capacity() - self.consumer.slots()
    }

    /// The producer is done and every event has been taken.
    pub fn is_finished(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) && self.consumer.is_empty()
    }

    /// Events lost to a full ring so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Commands among the events lost to a full ring.
    pub fn dropped_commands(&self) -> u64 {
        self.shared.dropped_commands.load(Ordering::Relaxed)
    }

    /// Wait for the next event; `None` once the session is finished.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> NextEvent<'_> {
        NextEvent { stream: self }
    }
}

/// Future returned by [`SessionStream::next`].
#[derive(Debug)]
pub struct NextEvent<'a> {
    stream: &'a mut SessionStream,
}

impl Future for NextEvent<'_> {
    type Output = Option<SessionEvent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let s = &mut self.get_mut().stream;
        if let Some(ev) = s.try_pop() {
            return Poll::Ready(Some(ev));
        }
        s.shared.waker.register(cx.waker());
        // Pairs with the producer's fence after a push: either it sees `armed` and wakes us,
        // or this pop sees its event.
        s.shared.armed.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(ev) = s.try_pop() {
            return Poll::Ready(Some(ev));
        }
        if s.shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(s.try_pop());
        }
        Poll::Pending
    }
}

/// Ring counters kept by the producer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RingStats {
    /// Sessions handed to consumers.
    pub sessions: u64,
    /// Events pushed.
    pub pushed: u64,
    /// Events dropped on a full ring.
    pub dropped_events: u64,
    /// Sessions that lost at least one event.
    pub overflowed_sessions: u64,
    /// Sessions whose consumer went away before the end (events discarded, not counted as drops).
    pub orphaned_sessions: u64,
    /// Sessions given a smaller ring than `--ring` because the ring memory budget was reached.
    pub budget_limited_sessions: u64,
    /// Bytes of ring slots allocated now.
    pub slot_bytes: u64,
    /// Of `dropped_events`, those dropped because the events queued over all rings reached the
    /// queue bound ([`RingSink::set_queue_limit`]) while their session held more than its share.
    pub queue_limited_events: u64,
}

/// Bytes of one ring slot.
pub const SLOT_BYTES: usize = std::mem::size_of::<SessionEvent>();
/// Fewest slots a ring gets, however tight the budget.
pub const MIN_RING: usize = 256;
/// Default bound on the events queued over all rings (`--max-queued-events`).
pub const DEFAULT_QUEUE_LIMIT: usize = 1 << 18;

struct Producer {
    id: SessionId,
    ring: rtrb::Producer<SessionEvent>,
    slots: usize,
    shared: Arc<SessionShared>,
    overflowed: bool,
    /// Events queued in this ring when the producer last looked (for [`RingSink::queued`]).
    seen_queued: usize,
    /// `db`/`user` of dropped command records, for the session's next record that gets through
    /// (records carry them only when they change).
    carry: Option<Box<Identity>>,
    /// Pushed to since the last flush: the consumer's wake check is due (batched sinks).
    wake_due: bool,
}

/// Pushes between two exact recounts of the events queued over all rings (at least; at most
/// one per open session).
const RESCAN_PUSHES: usize = 4096;

/// Producer side: one ring per session, consumers handed out on a channel.
pub struct RingSink {
    capacity: usize,
    /// Where each open session's producer is in `live`.
    index: HashMap<SessionId, u32, BuildHasherDefault<FxHasher>>,
    /// Open sessions' producers (a slot per session, reused after it closes): the driver keeps
    /// the slot with the session and [`EventSink::push_at`] finds it without `index`.
    live: Vec<Option<Producer>>,
    /// Free slots of `live`.
    free: Vec<u32>,
    tx: Sender<SessionStream>,
    stats: RingStats,
    wait_when_full: bool,
    /// Most bytes of ring slots over all open rings (0: no limit).
    budget: usize,
    /// Most events queued over all rings before sessions above their share drop (0: no limit).
    queue_limit: usize,
    /// Events queued over all rings, as last counted (exact at each rescan, kept up to date
    /// with this producer's pushes and the pops it has seen since).
    queued: usize,
    /// Pushes since the last rescan.
    since_rescan: usize,
    /// Rings of closed sessions that their consumers have not drained yet: their events and
    /// slots still count in the queue bound and the ring budget until drained or abandoned (a
    /// replay that lags behind short connections would otherwise hold them unbounded).
    closed: Vec<Producer>,
    /// Where the global order of a dropped commit goes (the replay's commit gate settles it
    /// instead of waiting for a record that will never come).
    dropped_commits: Option<Sender<u64>>,
    /// The driver calls [`EventSink::flush`] after each batch: wake checks wait for it (one
    /// SeqCst fence per batch instead of one per event).
    batched: bool,
    /// Slots of the sessions pushed to since the last flush (batched).
    wake_due: Vec<u32>,
}

impl std::fmt::Debug for RingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSink")
            .field("capacity", &self.capacity)
            .field("sessions", &self.index.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl RingSink {
    /// A sink whose rings hold `capacity` events each, and the receiver of new sessions.
    pub fn new(capacity: usize) -> (Self, Receiver<SessionStream>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Self::with_sender(capacity, tx), rx)
    }

    /// A sink that hands its sessions to an existing receiver (several capture threads, one
    /// consumer).
    pub fn with_sender(capacity: usize, tx: Sender<SessionStream>) -> Self {
        Self {
            capacity: capacity.max(1),
            index: HashMap::default(),
            live: Vec::new(),
            free: Vec::new(),
            tx,
            stats: RingStats::default(),
            wait_when_full: false,
            budget: 0,
            queue_limit: 0,
            queued: 0,
            since_rescan: 0,
            closed: Vec::new(),
            dropped_commits: None,
            batched: false,
            wake_due: Vec::new(),
        }
    }

    /// Send the global order of every commit record dropped on a full ring to `tx` (a bounded
    /// channel: when it is full too, the gate's own timeout releases the commit).
    pub fn report_dropped_commits(&mut self, tx: Sender<u64>) {
        self.dropped_commits = Some(tx);
    }

    /// Bound the bytes of ring slots over all open rings: a session opened when a full-size ring
    /// would not fit gets what is left (at least [`MIN_RING`] slots), counted as
    /// `budget_limited_sessions`; a smaller ring fills sooner and drops (counted) sooner.
    pub fn set_memory_budget(&mut self, bytes: usize) {
        self.budget = bytes;
    }

    fn slots_for_new_ring(&mut self) -> usize {
        let want = self.capacity;
        if self.budget == 0 {
            return want;
        }
        let left = self.budget.saturating_sub(self.stats.slot_bytes as usize) / SLOT_BYTES;
        if left >= want {
            return want;
        }
        self.stats.budget_limited_sessions += 1;
        left.clamp(MIN_RING.min(want), want)
    }

    /// The session `id` closed (or its consumer went away): its ring is released once drained.
    fn forget(&mut self, id: SessionId) {
        let Some(slot) = self.index.remove(&id) else {
            return;
        };
        self.free.push(slot);
        if let Some(mut p) = self.live.get_mut(slot as usize).and_then(Option::take) {
            let now = p.slots - p.ring.slots();
            self.queued = (self.queued + now).saturating_sub(p.seen_queued);
            p.seen_queued = now;
            if now == 0 || p.ring.is_abandoned() {
                self.release(p);
            } else {
                self.closed.push(p);
            }
        }
    }

    fn release(&mut self, p: Producer) {
        self.stats.slot_bytes -= (p.slots * SLOT_BYTES) as u64;
        self.queued = self.queued.saturating_sub(p.seen_queued);
    }

    /// Bound the events queued over all rings (events pushed and not yet taken by the
    /// consumers: the replay's backlog when the test server lags). Once `events` are queued, an
    /// event for a session holding more than its share (`events` / open sessions, at least
    /// [`MIN_RING`]) is dropped and counted like a full ring's (`dropped_events`, the session
    /// overflowed) and in `queue_limited_events`; sessions that keep up are not affected. The
    /// queue stays under about twice `events`. Opens and closes are never dropped. Not applied
    /// in [`RingSink::set_wait_when_full`] mode (the reader waits instead). 0: no bound.
    pub fn set_queue_limit(&mut self, events: usize) {
        self.queue_limit = events;
    }

    /// Events queued over all rings, as last counted.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Recount the events queued over all rings.
    fn rescan(&mut self) {
        let mut total = 0;
        for p in self.live.iter_mut().flatten() {
            p.seen_queued = p.slots - p.ring.slots();
            total += p.seen_queued;
        }
        let mut freed = 0u64;
        self.closed.retain_mut(|p| {
            p.seen_queued = p.slots - p.ring.slots();
            let keep = p.seen_queued > 0 && !p.ring.is_abandoned();
            if keep {
                total += p.seen_queued;
            } else {
                freed += (p.slots * SLOT_BYTES) as u64;
            }
            keep
        });
        self.stats.slot_bytes -= freed;
        self.queued = total;
        self.since_rescan = 0;
    }

    /// Closed sessions whose rings still hold events their consumers have not taken.
    pub fn draining_sessions(&self) -> usize {
        self.closed.len()
    }

    /// Backpressure mode for offline readers: when a ring is full, `push` parks the thread until
    /// the consumer has freed a quarter of it (or went away), instead of dropping. Never enable
    /// this on a live capture thread.
    pub fn set_wait_when_full(&mut self, wait: bool) {
        self.wait_when_full = wait;
    }

    /// Counters so far.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Sessions with a live ring.
    pub fn open_sessions(&self) -> usize {
        self.index.len()
    }

    /// A new session's ring, its stream handed out and its producer kept at `hint`; false when
    /// nobody takes the stream (counted as orphaned). Once per session: out of the push path.
    #[inline(never)]
    fn open_ring(&mut self, hint: &mut u32, id: SessionId, open: &SessionOpen) -> bool {
        let slots = self.slots_for_new_ring();
        let (ring, consumer) = rtrb::RingBuffer::new(slots);
        let shared = Arc::new(SessionShared::default());
        let stream = SessionStream {
            open: open.clone(),
            consumer,
            shared: shared.clone(),
        };
        if self.tx.send(stream).is_err() {
            self.stats.orphaned_sessions += 1;
            return false;
        }
        self.stats.sessions += 1;
        self.stats.slot_bytes += (slots * SLOT_BYTES) as u64;
        let p = Producer {
            id,
            ring,
            slots,
            shared,
            overflowed: false,
            seen_queued: 0,
            carry: None,
            wake_due: false,
        };
        // An id opened twice replaces (drops) its first ring.
        if let Some(old) = self.index.remove(&id) {
            self.live[old as usize] = None;
            self.free.push(old);
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.live[s as usize] = Some(p);
                s
            }
            None => {
                self.live.push(Some(p));
                (self.live.len() - 1) as u32
            }
        };
        self.index.insert(id, slot);
        *hint = slot;
        true
    }

    /// Backpressure ([`RingSink::set_wait_when_full`]): wait until the ring at `slot` has
    /// room; false when its consumer went away (the session is forgotten).
    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self, slot: u32, id: SessionId) -> bool {
        let Some(p) = self.live.get_mut(slot as usize).and_then(Option::as_mut) else {
            return false;
        };
        let resume = (self.capacity / 4).max(1);
        let _ = p.shared.producer.set(std::thread::current());
        while p.ring.slots() < resume && !p.ring.is_abandoned() {
            p.shared.resume_at.store(resume as u64, Ordering::Release);
            std::sync::atomic::fence(Ordering::SeqCst);
            p.shared.waker.wake();
            if p.ring.slots() < resume && !p.ring.is_abandoned() {
                // The timeout only bounds a wake-up lost to the consumer going away.
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
        p.shared.resume_at.store(0, Ordering::Release);
        if p.ring.is_abandoned() {
            self.stats.orphaned_sessions += 1;
            self.forget(id);
            return false;
        }
        true
    }

    /// Mark every open session closed (end of capture); consumers drain what is left.
    pub fn close_all(&mut self) {
        self.wake_due.clear();
        self.stats.slot_bytes = 0;
        self.closed.clear();
        self.index.clear();
        self.free.clear();
        for p in self.live.drain(..).flatten() {
            p.shared.closed.store(true, Ordering::Release);
            p.shared.waker.wake();
        }
    }
}

/// An event the ring at `p` had no room for: counted, a command's `db`/`user` kept for the
/// session's next record, a commit's order reported.
#[cold]
#[inline(never)]
fn dropped(
    stats: &mut RingStats,
    dropped_commits: Option<&Sender<u64>>,
    p: &mut Producer,
    ev: SessionEvent,
) {
    stats.dropped_events += 1;
    p.shared.dropped.fetch_add(1, Ordering::Relaxed);
    if let SessionEvent::Command(c) = &ev {
        if c.db.is_some() || c.user.is_some() {
            p.carry.get_or_insert_default().absorb(c);
        }
        p.shared.dropped_commands.fetch_add(1, Ordering::Relaxed);
        if c.commit.order > 0 {
            if let Some(tx) = dropped_commits {
                let _ = tx.try_send(c.commit.order);
            }
        }
    }
    if !p.overflowed {
        p.overflowed = true;
        stats.overflowed_sessions += 1;
    }
}

impl EventSink for RingSink {
    #[inline]
    fn push(&mut self, id: SessionId, event: SessionEvent) {
        let mut slot = NO_SLOT;
        self.push_at(&mut slot, id, event);
    }

    fn push_at(&mut self, hint: &mut u32, id: SessionId, mut event: SessionEvent) {
        if let SessionEvent::Open(open) = &event {
            if !self.open_ring(hint, id, open) {
                return;
            }
        }
        let closing = matches!(event, SessionEvent::Close(_));
        let open_rings = self.index.len().max(1);
        let slot = match self.live.get(*hint as usize) {
            Some(Some(p)) if p.id == id => *hint,
            _ => match self.index.get(&id) {
                Some(&s) => {
                    *hint = s;
                    s
                }
                None => return,
            },
        };
        let Some(p) = self.live.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if p.ring.is_abandoned() {
            self.stats.orphaned_sessions += 1;
            self.forget(id);
            return;
        }
        let p = if self.wait_when_full && p.ring.is_full() {
            if !self.wait_for_room(slot, id) {
                return;
            }
            let Some(p) = self.live.get_mut(slot as usize).and_then(Option::as_mut) else {
                return;
            };
            p
        } else {
            p
        };
        let mut over_limit = false;
        if self.queue_limit > 0 && !self.wait_when_full {
            // Pops this session's consumer made since we last looked.
            let now = p.slots - p.ring.slots();
            self.queued = (self.queued + now).saturating_sub(p.seen_queued);
            p.seen_queued = now;
            let share = (self.queue_limit / open_rings).max(MIN_RING);
            // Past twice the bound (many sessions each under its share, or closed sessions not
            // yet drained) every session drops.
            over_limit = self.queued >= self.queue_limit
                && (now >= share || self.queued >= 2 * self.queue_limit)
                && !closing
                && !matches!(event, SessionEvent::Open(_));
        }
        if let (Some(carry), SessionEvent::Command(rec)) = (&p.carry, &mut event) {
            if !over_limit && !p.ring.is_full() {
                rec.db = rec.db.take().or_else(|| carry.db.clone());
                rec.user = rec.user.take().or_else(|| carry.user.clone());
                p.carry = None;
            }
        }
        let pushed = if over_limit {
            self.stats.queue_limited_events += 1;
            Err(rtrb::PushError::Full(event))
        } else {
            p.ring.push(event)
        };
        match pushed {
            Ok(()) => {
                self.stats.pushed += 1;
                if self.queue_limit > 0 {
                    p.seen_queued += 1;
                    self.queued += 1;
                }
            }
            Err(rtrb::PushError::Full(ev)) => {
                dropped(&mut self.stats, self.dropped_commits.as_ref(), p, ev)
            }
        }
        if closing {
            p.shared.closed.store(true, Ordering::Release);
            p.shared.waker.wake();
        } else if self.batched {
            if !p.wake_due {
                p.wake_due = true;
                self.wake_due.push(slot);
            }
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
            if p.shared.armed.load(Ordering::Relaxed)
                && p.shared.armed.swap(false, Ordering::AcqRel)
            {
                p.shared.waker.wake();
            }
        }
        if closing {
            self.forget(id);
        }
        if self.queue_limit > 0 {
            self.since_rescan += 1;
            if self.since_rescan >= RESCAN_PUSHES.max(self.index.len()) {
                self.rescan();
            }
        }
    }

    /// Wake the consumers of the sessions pushed to since the last flush that wait (one fence
    /// for all); from the first flush on, pushes leave the wake check to the next flush.
    fn flush(&mut self) {
        self.batched = true;
        if self.wake_due.is_empty() {
            return;
        }
        // Pairs with the consumer's fence after it sets `armed` (see `SessionStream::next`).
        std::sync::atomic::fence(Ordering::SeqCst);
        for slot in self.wake_due.drain(..) {
            // A slot whose session closed since (and maybe reopened) is skipped or checked
            // once more: a wake check is harmless.
            if let Some(p) = self.live.get_mut(slot as usize).and_then(Option::as_mut) {
                if !p.wake_due {
                    continue;
                }
                p.wake_due = false;
                if p.shared.armed.load(Ordering::Relaxed)
                    && p.shared.armed.swap(false, Ordering::AcqRel)
                {
                    p.shared.waker.wake();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CloseReason, FlowKey, SessionClose};

    fn open(id: SessionId) -> SessionEvent {
        SessionEvent::Open(Box::new(SessionOpen {
            id,
            key: FlowKey {
                client: "198.18.0.1:40000".parse().unwrap(),
                server: "198.18.0.2:3306".parse().unwrap(),
            },
            ts_us: 1,
            midstream: false,
        }))
    }

    fn login() -> SessionEvent {
        SessionEvent::Login(Box::new(crate::event::Login {
            ts_us: 1,
            ok: true,
            ..crate::event::Login::unknown(false)
        }))
    }

    fn close() -> SessionEvent {
        SessionEvent::Close(SessionClose {
            ts_us: 2,
            reason: CloseReason::Fin,
        })
    }

    fn commit(order: u64) -> SessionEvent {
        SessionEvent::Command(Box::new(crate::event::CommandRecord {
            seq: order,
            ts_us: 1,
            command: crate::event::Command::Ping,
            response: Default::default(),
            db: None,
            user: None,
            flags: Default::default(),
            raw: Default::default(),
            infile: None,
            commit: crate::commit::CommitMarks {
                end: (order > 0).then_some(crate::commit::TrxEnd::Commit),
                order,
                ..Default::default()
            },
        }))
    }

    /// A slot kept by the driver finds its session without a lookup; a stale one (its session
    /// closed, the slot given to another) never delivers to the other session.
    #[test]
    fn push_at_slots_go_to_their_session_only() {
        let (mut sink, rx) = RingSink::new(16);
        let mut s7 = NO_SLOT;
        sink.push_at(&mut s7, 7, open(7));
        assert_ne!(s7, NO_SLOT);
        sink.push_at(&mut s7, 7, commit(1));
        sink.push_at(&mut s7, 7, close());
        let mut s8 = NO_SLOT;
        sink.push_at(&mut s8, 8, open(8));
        assert_eq!(s8, s7, "the closed session's slot is reused");
        // 7 is closed: its stale slot must not reach 8's ring.
        sink.push_at(&mut s7, 7, commit(2));
        // A wrong slot is corrected by the lookup.
        let mut wrong = 12345;
        sink.push_at(&mut wrong, 8, commit(3));
        assert_eq!(wrong, s8);
        sink.push(8, commit(4));
        sink.flush();
        let mut a = rx.try_recv().unwrap();
        let mut b = rx.try_recv().unwrap();
        let seqs = |s: &mut SessionStream| {
            std::iter::from_fn(|| s.try_pop())
                .filter_map(|e| match e {
                    SessionEvent::Command(c) => Some(c.seq),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!((a.open.id, seqs(&mut a)), (7, vec![1]));
        assert!(a.is_finished());
        assert_eq!((b.open.id, seqs(&mut b)), (8, vec![3, 4]));
        assert_eq!(sink.open_sessions(), 1);
        assert_eq!(sink.stats().pushed, 6);
    }

    #[test]
    fn commits_dropped_on_a_full_ring_are_reported_by_order() {
        let (mut sink, _rx) = RingSink::new(2);
        let (tx, dropped) = crossbeam_channel::bounded(8);
        sink.report_dropped_commits(tx);
        sink.push(7, open(7));
        sink.push(7, commit(1));
        // Full from here: a commit record and a command that is not a commit are dropped.
        sink.push(7, commit(5));
        sink.push(7, commit(0));
        sink.push(7, commit(9));
        assert_eq!(dropped.try_iter().collect::<Vec<_>>(), [5, 9]);
        assert_eq!(sink.stats().dropped_events, 3);
    }

    #[test]
    fn a_dropped_records_db_and_user_go_with_the_next_record_through() {
        let (mut sink, rx) = RingSink::new(2);
        let with = |order, db: Option<&str>, user: Option<&str>| {
            let mut ev = commit(order);
            if let SessionEvent::Command(c) = &mut ev {
                c.db = db.map(Arc::from);
                c.user = user.map(Arc::from);
            }
            ev
        };
        sink.push(7, open(7));
        sink.push(7, with(0, None, None));
        // Full: these two are dropped, their changes are kept for the next record.
        sink.push(7, with(0, Some("a"), Some("u")));
        sink.push(7, with(0, Some("b"), None));
        let mut s = rx.try_recv().unwrap();
        assert!(matches!(s.try_pop(), Some(SessionEvent::Open(_))));
        assert!(matches!(s.try_pop(), Some(SessionEvent::Command(_))));
        sink.push(7, with(0, None, None));
        let Some(SessionEvent::Command(c)) = s.try_pop() else {
            panic!("no command")
        };
        assert_eq!((c.db.as_deref(), c.user.as_deref()), (Some("b"), Some("u")));
        sink.push(7, with(0, None, None));
        let Some(SessionEvent::Command(c)) = s.try_pop() else {
            panic!("no command")
        };
        assert_eq!((c.db, c.user), (None, None), "given once");
    }

    #[test]
    fn after_a_flush_pushes_wake_a_waiting_consumer_at_the_next_flush() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut sink, rx) = RingSink::new(8);
        sink.push(7, open(7));
        sink.flush();
        let mut s = rx.try_recv().unwrap();
        assert!(matches!(s.try_pop(), Some(SessionEvent::Open(_))));
        assert!(std::pin::pin!(s.next()).poll(&mut cx).is_pending());
        sink.push(7, commit(0));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "no wake before the flush"
        );
        sink.flush();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let got = std::pin::pin!(s.next()).poll(&mut cx);
        assert!(matches!(got, Poll::Ready(Some(SessionEvent::Command(_)))));
        // Not batched (no flush seen): the push itself wakes.
        let (mut sink, rx) = RingSink::new(8);
        sink.push(8, open(8));
        let mut s = rx.try_recv().unwrap();
        assert!(matches!(s.try_pop(), Some(SessionEvent::Open(_))));
        assert!(std::pin::pin!(s.next()).poll(&mut cx).is_pending());
        sink.push(8, commit(0));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn full_ring_counts_exact_drops_and_still_finishes() {
        let (mut sink, rx) = RingSink::new(2);
        sink.push(7, open(7));
        for _ in 0..4 {
            sink.push(7, login());
        }
        sink.push(7, close());
        let mut s = rx.try_recv().unwrap();
        assert_eq!(sink.stats().pushed, 2);
        assert_eq!(sink.stats().dropped_events, 4);
        assert_eq!(sink.stats().overflowed_sessions, 1);
        assert_eq!(s.dropped(), 4);
        assert!(!s.is_finished());
        assert!(matches!(s.try_pop(), Some(SessionEvent::Open(_))));
        assert!(matches!(s.try_pop(), Some(SessionEvent::Login(_))));
        assert!(s.try_pop().is_none());
        assert!(s.is_finished());
        assert_eq!(sink.open_sessions(), 0);
    }

    #[test]
    fn wait_when_full_delivers_everything_without_drops() {
        let (mut sink, rx) = RingSink::new(2);
        sink.set_wait_when_full(true);
        sink.push(3, open(3));
        let mut s = rx.try_recv().unwrap();
        let consumer = std::thread::spawn(move || {
            let mut n = 0;
            while !s.is_finished() {
                if s.try_pop().is_some() {
                    n += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            n
        });
        for _ in 0..1000 {
            sink.push(3, login());
        }
        sink.push(3, close());
        assert_eq!(consumer.join().unwrap(), 1002);
        assert_eq!(sink.stats().dropped_events, 0);
        assert_eq!(sink.stats().pushed, 1002);
    }

    #[test]
    fn wait_when_full_gives_up_on_abandoned_consumer() {
        let (mut sink, rx) = RingSink::new(1);
        sink.set_wait_when_full(true);
        sink.push(4, open(4));
        drop(rx.try_recv().unwrap());
        sink.push(4, login());
        sink.push(4, login());
        assert_eq!(sink.stats().orphaned_sessions, 1);
        assert_eq!(sink.open_sessions(), 0);
    }

    #[test]
    fn the_queue_bound_drops_from_the_laggard_only_and_counts() {
        // Bound 600 over two rings of 4096: the session nobody drains is cut at its share
        // (600 / 2 = 300 events, MIN_RING 256 < 300), the one that keeps up loses nothing.
        let (mut sink, rx) = RingSink::new(4096);
        sink.set_queue_limit(600);
        sink.push(1, open(1));
        sink.push(2, open(2));
        let _lagging = rx.try_recv().unwrap();
        let mut fast = rx.try_recv().unwrap();
        let mut fast_got = 0;
        for _ in 0..2000 {
            sink.push(1, login());
            sink.push(2, login());
            while fast.try_pop().is_some() {
                fast_got += 1;
            }
        }
        sink.push(1, close());
        sink.push(2, close());
        while fast.try_pop().is_some() {
            fast_got += 1;
        }
        let st = sink.stats();
        assert_eq!(fast_got, 2002, "open + 2000 + close, nothing dropped");
        assert_eq!(fast.dropped(), 0);
        assert_eq!(_lagging.dropped(), st.dropped_events);
        assert_eq!(st.queue_limited_events, st.dropped_events);
        // The laggard holds its open and logins up to the bound (the other ring is empty), plus
        // its close, which is never dropped.
        let kept = 2 + 2000 - st.dropped_events;
        assert!((600..=601).contains(&kept), "kept {kept}");
        assert_eq!(st.overflowed_sessions, 1);
        assert_eq!(sink.open_sessions(), 0);
        // The laggard closed but was not drained: its events still count.
        let mut lagging = _lagging;
        let mut held = 0;
        while lagging.try_pop().is_some() {
            held += 1;
        }
        // (+ the other session's close, queued when it closed, taken since, seen at the next
        // recount.)
        assert_eq!(sink.queued(), held + 1);
        assert_eq!(sink.draining_sessions(), 2);
    }

    #[test]
    fn closed_sessions_not_yet_drained_count_in_the_bound_and_the_budget() {
        // Short sessions (open, 20 logins, close) that nobody drains, as when the replay lags
        // behind connection churn: the queue stays under twice the bound, the drops are counted,
        // and the ring budget counts their rings until they are drained.
        let (mut sink, rx) = RingSink::new(1024);
        sink.set_queue_limit(1000);
        sink.set_memory_budget(64 * 1024 * SLOT_BYTES);
        let mut streams = Vec::new();
        for id in 0..500 {
            sink.push(id, open(id));
            for _ in 0..20 {
                sink.push(id, login());
            }
            sink.push(id, close());
            streams.push(rx.try_recv().unwrap());
        }
        let st = sink.stats();
        let held: u64 = streams
            .iter_mut()
            .map(|s| {
                let mut n = 0;
                while s.try_pop().is_some() {
                    n += 1;
                }
                n
            })
            .sum();
        assert_eq!(held + st.dropped_events, 500 * 22);
        // Opens and closes are never dropped (1 000 of them), the rest stops at twice the bound.
        assert!(held <= 2 * 1000 + 2 * 500, "held {held}");
        assert!(st.queue_limited_events > 5000, "{st:?}");
        assert_eq!(st.queue_limited_events, st.dropped_events);
        // Budget for 64 full rings: later sessions got smaller ones.
        assert!(st.budget_limited_sessions > 400, "{st:?}");
        // Drained now: the next rescan releases every ring.
        assert_eq!(sink.open_sessions(), 0);
        for _ in 0..RESCAN_PUSHES {
            sink.push(9999, login());
        }
        sink.push(10_000, open(10_000));
        for _ in 0..RESCAN_PUSHES {
            sink.push(10_000, login());
        }
        assert_eq!(sink.draining_sessions(), 0);
    }

    #[test]
    fn close_all_finishes_streams() {
        let (mut sink, rx) = RingSink::new(8);
        sink.push(1, open(1));
        let mut s = rx.try_recv().unwrap();
        sink.close_all();
        assert!(matches!(s.try_pop(), Some(SessionEvent::Open(_))));
        assert!(s.is_finished());
    }

    #[test]
    fn the_slot_budget_shrinks_new_rings_and_counts_them() {
        let (mut sink, rx) = RingSink::new(1024);
        sink.set_memory_budget(1600 * SLOT_BYTES);
        for id in 1..=3 {
            sink.push(id, open(id));
        }
        let st = sink.stats();
        assert_eq!(st.budget_limited_sessions, 2);
        assert_eq!(st.slot_bytes, ((1024 + 576 + MIN_RING) * SLOT_BYTES) as u64);
        let caps: Vec<usize> = rx
            .try_iter()
            .map(|s| s.consumer.buffer().capacity())
            .collect();
        assert_eq!(caps, vec![1024, 576, MIN_RING]);
        sink.push(
            1,
            SessionEvent::Close(SessionClose {
                ts_us: 2,
                reason: CloseReason::Fin,
            }),
        );
        assert_eq!(
            sink.stats().slot_bytes,
            ((576 + MIN_RING) * SLOT_BYTES) as u64
        );
        sink.push(
            2,
            SessionEvent::Close(SessionClose {
                ts_us: 2,
                reason: CloseReason::Fin,
            }),
        );
        assert_eq!(sink.stats().slot_bytes, (MIN_RING * SLOT_BYTES) as u64);
        sink.push(4, open(4));
        assert_eq!(
            sink.stats().budget_limited_sessions,
            2,
            "room again for a full ring"
        );
    }
}
