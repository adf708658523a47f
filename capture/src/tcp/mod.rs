//! Per-direction TCP stream reassembly.
//!
//! A [`Stream`] turns the segments of one direction into in-order [`Chunk`]s: payload slices on the
//! zero-copy fast path (the segment is the next expected byte), copies out of the [`assembler`]
//! buffer for data that arrived out of order, and [`Chunk::Gap`] where bytes are known lost.
//! Retransmissions and overlaps are trimmed; sequence arithmetic wraps. A hole is declared lost
//! when the out-of-order bytes would pass the budget or the hole cap ([`assembler::MAX_RANGES`]),
//! when the peer acknowledges bytes beyond it ([`Stream::handle_peer_ack`]), or at close
//! ([`Stream::flush`]); never filled by a guess. No recursion, no allocation per segment. It does
//! not know about MySQL or sessions.

pub mod assembler;

use assembler::{Assembler, Full};

/// In-order output of a [`Stream`].
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// This many bytes are lost for good.
    Gap(u64),
}

/// Reassembly counters of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Holes declared lost.
    pub gaps: u64,
    /// Bytes in those holes.
    pub gap_bytes: u64,
    /// Duplicate bytes discarded.
    pub retransmitted_bytes: u64,
    /// Segments buffered out of order.
    pub out_of_order: u64,
    /// Times the out-of-order bound (bytes or holes) forced a gap.
    pub ooo_overflow: u64,
    /// Of those, times the hole cap did.
    pub hole_overflow: u64,
}

/// `a` is before `b` in sequence space.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
pub struct Stream {
    next: Option<u32>,
    /// Allocated on the first out-of-order segment, freed when drained.
    ooo: Option<Box<Assembler>>,
    fin_at: Option<u32>,
    /// FIN seen and every byte before it delivered.
    pub finished: bool,
    /// Counters, allocated on the first nonzero one (most streams never need them).
    stats: Option<Box<StreamStats>>,
}

impl Stream {
    /// Reassembly counters so far.
    pub fn stats(&self) -> StreamStats {
        self.stats.as_deref().copied().unwrap_or_default()
    }

    #[inline]
    fn stats_mut(&mut self) -> &mut StreamStats {
        self.stats.get_or_insert_with(Box::default)
    }

    /// Next expected sequence number, once known.
    pub fn next_seq(&self) -> Option<u32> {
        self.next
    }

    /// Feed one segment; in-order chunks go to `out`. Out-of-order bytes are held while they span
    /// at most `max_ooo` bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_segment(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        missing: u32,
        max_ooo: usize,
        out: &mut impl FnMut(Chunk<'_>),
    ) {
        let mut seq = seq;
        if syn {
            seq = seq.wrapping_add(1);
            if self.next.is_none() || payload.is_empty() {
                self.next = Some(seq);
            }
        }
        let total = (payload.len() as u32).saturating_add(missing);
        if fin {
            self.fin_at = Some(seq.wrapping_add(total));
        }
        self.next.get_or_insert(seq);
        if total > 0 {
            self.segment(seq, payload, missing, max_ooo, out);
        }
        self.check_fin();
    }

    fn segment(
        &mut self,
        seq: u32,
        payload: &[u8],
        missing: u32,
        max_ooo: usize,
        out: &mut impl FnMut(Chunk<'_>),
    ) {
        let total = (payload.len() as u32).saturating_add(missing);
        let mut counted = false;
        // Each turn either delivers or stores the segment, or declares the first hole lost (which
        // moves `next` forward), so the loop ends.
        while let Some(next) = self.next {
            let d = seq.wrapping_sub(next) as i32;
            if d <= 0 {
                let dup = d.unsigned_abs();
                if dup >= total {
                    self.stats_mut().retransmitted_bytes += u64::from(total);
                    return;
                }
                if dup > 0 {
                    self.stats_mut().retransmitted_bytes += u64::from(dup);
                }
                let skip = (dup as usize).min(payload.len());
                let rest_missing = missing - (dup - skip as u32);
                self.deliver(&payload[skip..], rest_missing, out);
                self.drain(out);
                return;
            }
            if !counted {
                counted = true;
                self.stats_mut().out_of_order += 1;
            }
            if missing > 0 {
                // A truncated segment cannot be held: the bytes before it are lost.
                self.skip_hole(seq, out);
                continue;
            }
            let stored = match self.ooo.as_mut() {
                Some(a) => a.insert(next, seq, payload, max_ooo),
                None if payload.len() > max_ooo => Err(Full::Bytes),
                None => self
                    .ooo
                    .insert(Box::default())
                    .insert(next, seq, payload, max_ooo),
            };
            match stored {
                Ok(dup) => {
                    if dup > 0 {
                        self.stats_mut().retransmitted_bytes += dup;
                    }
                    return;
                }
                Err(full) => {
                    self.stats_mut().ooo_overflow += 1;
                    if full == Full::Holes {
                        self.stats_mut().hole_overflow += 1;
                    }
                    self.skip_hole(seq, out);
                }
            }
        }
    }

    fn deliver(&mut self, payload: &[u8], missing: u32, out: &mut impl FnMut(Chunk<'_>)) {
        if !payload.is_empty() {
            out(Chunk::Data(payload));
        }
        if missing > 0 {
            self.stats_mut().gaps += 1;
            self.stats_mut().gap_bytes += u64::from(missing);
            out(Chunk::Gap(u64::from(missing)));
        }
        if let Some(n) = self.next.as_mut() {
            *n = n.wrapping_add(payload.len() as u32).wrapping_add(missing);
        }
    }

    /// Deliver buffered bytes that have become contiguous; free the buffer once empty.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        let Self {
            next, ooo, stats, ..
        } = self;
        let (Some(next), Some(a)) = (next.as_mut(), ooo.as_mut()) else {
            return;
        };
        while let Some((s, e)) = a.first() {
            if seq_lt(*next, s) {
                break;
            }
            let dup = if !seq_lt(*next, e) {
                e.wrapping_sub(s)
            } else {
                next.wrapping_sub(s)
            };
            if dup > 0 {
                stats.get_or_insert_with(Box::default).retransmitted_bytes += u64::from(dup);
            }
            if seq_lt(*next, e) {
                emit(a.bytes(*next, e), out);
                *next = e;
            }
            a.consume_front(e);
        }
        if a.is_empty() {
            *ooo = None;
        }
    }

    /// Declare lost the hole before the first buffered byte (or before `seq` if earlier), then
    /// deliver what became contiguous.
    fn skip_hole(&mut self, seq: u32, out: &mut impl FnMut(Chunk<'_>)) {
        let target = match self.ooo.as_ref().and_then(|a| a.first()) {
            Some((s, _)) if seq_lt(s, seq) => s,
            _ => seq,
        };
        self.lose_until(target, out);
        self.drain(out);
    }

    /// A gap from `next` to `to` (nothing if `to` is not after `next`).
    fn lose_until(&mut self, to: u32, out: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next else { return };
        if seq_lt(next, to) {
            let lost = to.wrapping_sub(next);
            self.stats_mut().gaps += 1;
            self.stats_mut().gap_bytes += u64::from(lost);
            out(Chunk::Gap(u64::from(lost)));
            self.next = Some(to);
        }
    }

    /// Move `next` to `limit`: buffered bytes before it are delivered, holes before it declared
    /// lost; nothing at or after `limit` is delivered.
    fn advance_to(&mut self, limit: u32, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some(next) = self.next {
            if !seq_lt(next, limit) {
                break;
            }
            let first = self.ooo.as_ref().and_then(|a| a.first());
            match first {
                Some((s, e)) if !seq_lt(next, s) => {
                    let end = if seq_lt(limit, e) { limit } else { e };
                    if let Some(a) = self.ooo.as_mut() {
                        if seq_lt(next, end) {
                            emit(a.bytes(next, end), out);
                            self.next = Some(end);
                        }
                        a.consume_front(end);
                    }
                }
                Some((s, _)) if seq_lt(s, limit) => self.lose_until(s, out),
                _ => self.lose_until(limit, out),
            }
        }
        if self.ooo.as_ref().is_some_and(|a| a.is_empty()) {
            self.ooo = None;
        }
    }

    /// The peer acknowledged everything before `ack`: bytes before it that are not here are lost.
    pub fn handle_peer_ack(&mut self, ack: u32, out: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next else { return };
        if !seq_lt(next, ack) {
            return;
        }
        if let Some(fin) = self.fin_at {
            if !seq_lt(fin, ack) && fin == next {
                return;
            }
        }
        let limit = match self.fin_at {
            Some(f) if seq_lt(f, ack) => f,
            _ => ack,
        };
        self.advance_to(limit, out);
        self.drain(out);
        self.check_fin();
    }

    /// Advance to `seq`: buffered bytes before it are delivered and holes declared lost, without
    /// delivering buffered data after it yet.
    pub fn declare_lost_until(&mut self, seq: u32, out: &mut impl FnMut(Chunk<'_>)) {
        self.advance_to(seq, out);
    }

    /// Deliver buffered segments that are now contiguous.
    pub fn drain_ready(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        self.drain(out);
        self.check_fin();
    }

    /// End of the connection: deliver what is buffered, declaring holes lost.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        let last = self.ooo.as_ref().and_then(|a| a.last_end());
        if let Some(end) = last {
            self.advance_to(end, out);
        }
        self.check_fin();
    }

    fn check_fin(&mut self) {
        if let (Some(f), Some(n)) = (self.fin_at, self.next) {
            if !seq_lt(n, f) {
                self.finished = true;
            }
        }
    }

    /// Bytes held out of order (in ranges).
    pub fn buffered(&self) -> usize {
        self.ooo.as_ref().map_or(0, |a| a.held())
    }

    /// Memory held by this stream beyond its fixed size: the out-of-order buffer and its ranges
    /// (0 when nothing is out of order). For a global memory budget.
    pub fn held_bytes(&self) -> usize {
        self.ooo
            .as_ref()
            .map_or(0, |a| a.capacity() + std::mem::size_of::<Assembler>())
    }
}

/// Ring bytes as one or two data chunks.
fn emit((x, y): (&[u8], &[u8]), out: &mut impl FnMut(Chunk<'_>)) {
    for d in [x, y] {
        if !d.is_empty() {
            out(Chunk::Data(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq)]
    enum Out {
        D(Vec<u8>),
        G(u64),
    }

    fn collect(out: &mut Vec<Out>) -> impl FnMut(Chunk<'_>) + '_ {
        |c| match c {
            Chunk::Data(d) => out.push(Out::D(d.to_vec())),
            Chunk::Gap(n) => out.push(Out::G(n)),
        }
    }

    fn bytes(v: &[Out]) -> Vec<u8> {
        v.iter()
            .flat_map(|o| match o {
                Out::D(d) => d.clone(),
                Out::G(_) => vec![],
            })
            .collect()
    }

    #[test]
    fn in_order_reorder_and_retransmit() {
        let mut s = Stream::default();
        let mut o = Vec::new();
        let mut f = collect(&mut o);
        s.handle_segment(99, true, false, b"", 0, 1 << 20, &mut f);
        s.handle_segment(100, false, false, b"abc", 0, 1 << 20, &mut f);
        s.handle_segment(106, false, false, b"ghi", 0, 1 << 20, &mut f);
        s.handle_segment(103, false, false, b"def", 0, 1 << 20, &mut f);
        s.handle_segment(101, false, false, b"bcdefg", 0, 1 << 20, &mut f);
        s.handle_segment(108, false, false, b"ijk", 0, 1 << 20, &mut f);
        drop(f);
        assert_eq!(bytes(&o), b"abcdefghijk");
        assert_eq!(s.stats().out_of_order, 1);
        assert_eq!(s.stats().retransmitted_bytes, 6 + 1);
        assert_eq!(s.stats().gaps, 0);
    }

    #[test]
    fn wraps_around_2_pow_32() {
        let mut s = Stream::default();
        let mut o = Vec::new();
        let mut f = collect(&mut o);
        let start = u32::MAX - 2;
        s.handle_segment(start, false, false, b"ab", 0, 1 << 20, &mut f);
        s.handle_segment(
            start.wrapping_add(4),
            false,
            false,
            b"de",
            0,
            1 << 20,
            &mut f,
        );
        s.handle_segment(
            start.wrapping_add(2),
            false,
            false,
            b"c",
            0,
            1 << 20,
            &mut f,
        );
        s.handle_segment(
            start.wrapping_add(2),
            false,
            false,
            b"c",
            0,
            1 << 20,
            &mut f,
        );
        s.handle_segment(
            start.wrapping_add(3),
            false,
            false,
            b"x",
            0,
            1 << 20,
            &mut f,
        );
        drop(f);
        assert_eq!(bytes(&o), b"abcxde");
        assert_eq!(s.stats().retransmitted_bytes, 1);
        assert_eq!(s.next_seq(), Some(start.wrapping_add(6)));
    }

    #[test]
    fn hole_declared_by_peer_ack_and_by_overflow() {
        let mut s = Stream::default();
        let mut o = Vec::new();
        let mut f = collect(&mut o);
        s.handle_segment(0, false, false, b"aa", 0, 8, &mut f);
        s.handle_segment(5, false, false, b"ff", 0, 8, &mut f);
        s.handle_peer_ack(7, &mut f);
        s.handle_peer_ack(10, &mut f);
        s.handle_segment(20, false, false, b"1234567", 0, 8, &mut f);
        s.handle_segment(30, false, false, b"123456789", 0, 8, &mut f);
        drop(f);
        assert_eq!(
            o,
            vec![
                Out::D(b"aa".to_vec()),
                Out::G(3),
                Out::D(b"ff".to_vec()),
                Out::G(3),
                Out::G(10),
                Out::D(b"1234567".to_vec()),
                Out::G(3),
                Out::D(b"123456789".to_vec()),
            ]
        );
        assert_eq!(s.stats().gaps, 4);
        assert_eq!(s.stats().gap_bytes, 19);
        assert_eq!(s.stats().ooo_overflow, 2);
    }

    #[test]
    fn snaplen_missing_becomes_gap_and_fin_finishes() {
        let mut s = Stream::default();
        let mut o = Vec::new();
        let mut f = collect(&mut o);
        s.handle_segment(10, false, false, b"abc", 4, 1 << 20, &mut f);
        s.handle_segment(17, false, true, b"z", 0, 1 << 20, &mut f);
        drop(f);
        assert_eq!(
            o,
            vec![Out::D(b"abc".to_vec()), Out::G(4), Out::D(b"z".to_vec())]
        );
        assert!(s.finished);
    }

    proptest! {
        #[test]
        fn any_order_and_duplication_rebuilds_the_stream(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(1usize..50, 1..40),
            order in proptest::collection::vec(any::<u16>(), 0..80),
            isn in any::<u32>(),
        ) {
            let mut segs = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= data.len() { break; }
                // At most 64 segments: at most 32 holes, the cap.
                let end = (at + (*c).max(data.len() / 64 + 1)).min(data.len());
                segs.push((at, end));
                at = end;
            }
            let mut feed: Vec<(usize, usize)> = segs.clone();
            for (i, o) in order.iter().enumerate() {
                let n = feed.len();
                let j = *o as usize % n;
                if i % 3 == 0 { feed.push(feed[j]); } else { feed.swap(i % n, j); }
            }
            let mut s = Stream::default();
            let mut o = Vec::new();
            let mut f = collect(&mut o);
            s.handle_segment(isn, true, false, b"", 0, 1 << 20, &mut f);
            for (a, b) in feed {
                s.handle_segment(isn.wrapping_add(1).wrapping_add(a as u32), false, false, &data[a..b], 0, 1 << 20, &mut f);
            }
            s.flush(&mut f);
            drop(f);
            prop_assert!(o.iter().all(|x| matches!(x, Out::D(_))));
            prop_assert_eq!(bytes(&o), data);
        }

        /// A window of up to 1 MiB in MSS-like segments, shuffled, with duplicates and re-cut
        /// retransmissions: rebuilt exactly, and the buffer is freed at the end.
        #[test]
        fn shuffled_window_with_retransmissions_rebuilds_exactly(
            len in 1usize..1_000_000,
            seed in any::<u64>(),
            isn in any::<u32>(),
        ) {
            let mut rng = Rng(seed | 1);
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let seg = (len / 64 + 1).max(536);
            let segs: Vec<(usize, usize)> =
                (0..len).step_by(seg).map(|a| (a, (a + seg).min(len))).collect();
            let mut feed: Vec<(u64, (usize, usize))> =
                segs.iter().map(|&r| (rng.next(), r)).collect();
            for _ in 0..rng.next() % 16 {
                let i = (rng.next() as usize) % segs.len();
                let j = (i + 1).min(segs.len() - 1);
                feed.push((rng.next(), segs[i]));
                feed.push((rng.next(), (segs[i].0, segs[j].1)));
            }
            feed.sort_unstable();
            let mut s = Stream::default();
            let mut o = Vec::new();
            let mut f = collect(&mut o);
            s.handle_segment(isn, true, false, b"", 0, 16 << 20, &mut f);
            for (_, (a, b)) in feed {
                let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                s.handle_segment(seq, false, false, &data[a..b], 0, 16 << 20, &mut f);
            }
            s.flush(&mut f);
            drop(f);
            prop_assert!(o.iter().all(|x| matches!(x, Out::D(_))));
            prop_assert!(bytes(&o) == data, "bytes differ");
            prop_assert_eq!(s.stats().gaps, 0);
            prop_assert_eq!(s.stats().ooo_overflow, 0);
            prop_assert_eq!(s.held_bytes(), 0);
        }

        /// Lost segments, a tiny budget and more holes than the cap: every byte delivered is the
        /// original byte at its place, gaps account for the rest, nothing is guessed.
        #[test]
        fn lossy_input_is_delivered_or_counted_never_guessed(
            data in proptest::collection::vec(any::<u8>(), 1..3000),
            cuts in proptest::collection::vec(1usize..60, 1..40),
            keys in proptest::collection::vec(any::<u16>(), 1..300),
            budget in 1usize..5000,
            isn in any::<u32>(),
        ) {
            let mut segs = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= data.len() { break; }
                let end = (at + c).min(data.len());
                segs.push((at, end));
                at = end;
            }
            // Keys choose segments with repeats; those never chosen are lost.
            let feed: Vec<(usize, usize)> =
                keys.iter().map(|k| segs[*k as usize % segs.len()]).collect();
            let furthest = feed.iter().map(|r| r.1).max().unwrap_or(0);
            let mut s = Stream::default();
            let mut o = Vec::new();
            let mut f = collect(&mut o);
            s.handle_segment(isn, true, false, b"", 0, budget, &mut f);
            for (a, b) in feed {
                let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                s.handle_segment(seq, false, false, &data[a..b], 0, budget, &mut f);
            }
            s.flush(&mut f);
            drop(f);
            let mut pos = 0usize;
            let (mut gaps, mut gap_bytes) = (0, 0);
            for x in &o {
                match x {
                    Out::D(d) => {
                        prop_assert_eq!(&data[pos..pos + d.len()], &d[..]);
                        pos += d.len();
                    }
                    Out::G(n) => {
                        gaps += 1;
                        gap_bytes += n;
                        pos += *n as usize;
                    }
                }
            }
            prop_assert_eq!(pos, furthest);
            prop_assert_eq!(s.stats().gaps, gaps);
            prop_assert_eq!(s.stats().gap_bytes, gap_bytes);
            prop_assert_eq!(s.held_bytes(), 0);
        }
    }

    /// xorshift64: test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn hole_cap_exceeded_declares_the_first_hole_lost() {
        let mut s = Stream::default();
        let mut o = Vec::new();
        let mut f = collect(&mut o);
        s.handle_segment(0, true, false, b"", 0, 1 << 20, &mut f);
        // Bytes 1.. expected; every other byte from 2 on arrives: one hole before each.
        for k in 0..assembler::MAX_RANGES as u32 {
            s.handle_segment(2 + 2 * k, false, false, b"x", 0, 1 << 20, &mut f);
        }
        drop(f);
        assert!(o.is_empty());
        assert_eq!(s.stats().ooo_overflow, 0);
        let mut f = collect(&mut o);
        s.handle_segment(100, false, false, b"y", 0, 1 << 20, &mut f);
        drop(f);
        assert_eq!(o, vec![Out::G(1), Out::D(b"x".to_vec())]);
        assert_eq!(s.stats().hole_overflow, 1);
        assert_eq!(s.stats().ooo_overflow, 1);
        assert_eq!(s.stats().gaps, 1);
        let mut f = collect(&mut o);
        // The holes filled one by one: all the rest arrives whole.
        for k in 0..assembler::MAX_RANGES as u32 - 1 {
            s.handle_segment(3 + 2 * k, false, false, b"-", 0, 1 << 20, &mut f);
        }
        s.handle_segment(3 + 2 * 31, false, false, &[b'.'; 35], 0, 1 << 20, &mut f);
        drop(f);
        assert_eq!(s.stats().gaps, 1);
        assert_eq!(bytes(&o).len(), 99);
        assert_eq!(bytes(&o).last(), Some(&b'y'));
        assert_eq!(s.next_seq(), Some(101));
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn out_of_order_segments_do_not_allocate_per_segment() {
        assert!(
            std::mem::size_of::<Stream>() <= 96,
            "ranges must not be inline"
        );
        let mut s = Stream::default();
        let mut o = Vec::new();
        let mut f = collect(&mut o);
        s.handle_segment(0, true, false, b"", 0, 16 << 20, &mut f);
        assert_eq!(s.held_bytes(), 0);
        let seg = [7u8; 1000];
        // Byte 1..1001 is lost for now; ten segments after it fit the first buffer.
        let addr = |s: &Stream| s.ooo.as_ref().map(|a| (a.buf_addr(), a.capacity()));
        s.handle_segment(1001, false, false, &seg, 0, 16 << 20, &mut f);
        let first = addr(&s);
        assert!(first.is_some());
        for k in 2..11 {
            s.handle_segment(1 + k * 1000, false, false, &seg, 0, 16 << 20, &mut f);
            assert_eq!(addr(&s), first, "segment {k} reallocated");
        }
        // 1000 more segments: the ring doubles a few times, never per segment.
        let mut sizes = vec![first];
        for k in 11..1011 {
            s.handle_segment(1 + k * 1000, false, false, &seg, 0, 16 << 20, &mut f);
            if sizes.last() != Some(&addr(&s)) {
                sizes.push(addr(&s));
            }
        }
        assert!(sizes.len() <= 8, "{} allocations", sizes.len());
        assert!(s.held_bytes() >= 1010 * 1000);
        s.handle_segment(1, false, false, &seg, 0, 16 << 20, &mut f);
        drop(f);
        assert_eq!(bytes(&o).len(), 1011 * 1000);
        assert_eq!(s.held_bytes(), 0, "freed once drained");
        assert_eq!(s.stats().gaps, 0);
    }
}
