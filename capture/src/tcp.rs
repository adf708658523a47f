//! Per-direction TCP stream reassembly.
//!
//! A [`Stream`] turns the segments of one direction into in-order [`Chunk`]s: payload slices on the
//! zero-copy fast path (the segment is the next expected byte), buffered copies only for
//! out-of-order segments, and [`Chunk::Gap`] where bytes are known lost. Retransmissions and
//! overlaps are trimmed; sequence arithmetic wraps. A hole is declared lost when the out-of-order
//! buffer passes its bound, when the peer acknowledges bytes beyond it ([`Stream::handle_peer_ack`]),
//! or at close ([`Stream::flush`]). It does not know about MySQL or sessions.

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
    /// Times the out-of-order bound forced a gap.
    pub ooo_overflow: u64,
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
    ooo: Vec<(u32, Vec<u8>)>,
    ooo_bytes: usize,
    fin_at: Option<u32>,
    /// FIN seen and every byte before it delivered.
    pub finished: bool,
    /// Counters.
    pub stats: StreamStats,
}

impl Stream {
    /// Next expected sequence number, once known.
    pub fn next_seq(&self) -> Option<u32> {
        self.next
    }

    /// Feed one segment; in-order chunks go to `out`.
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
        let total = payload.len() as u32 + missing;
        if fin {
            self.fin_at = Some(seq.wrapping_add(total));
        }
        let next = *self.next.get_or_insert(seq);
        if total > 0 {
            let d = seq.wrapping_sub(next) as i32;
            if d == 0 {
                self.deliver(payload, missing, out);
                self.drain(out);
            } else if d < 0 {
                let dup = d.unsigned_abs();
                if dup >= total {
                    self.stats.retransmitted_bytes += u64::from(total);
                } else {
                    self.stats.retransmitted_bytes += u64::from(dup);
                    let skip = (dup as usize).min(payload.len());
                    let rest_missing = missing - (dup - skip as u32);
                    self.deliver(&payload[skip..], rest_missing, out);
                    self.drain(out);
                }
            } else {
                self.stats.out_of_order += 1;
                if self.ooo_bytes + payload.len() > max_ooo {
                    self.stats.ooo_overflow += 1;
                    self.skip_to_first_buffered_or(seq, out);
                    self.handle_segment(seq, false, false, payload, missing, max_ooo, out);
                    return;
                }
                if missing > 0 {
                    self.skip_to_first_buffered_or(seq, out);
                    self.handle_segment(seq, false, false, payload, missing, max_ooo, out);
                    return;
                }
                self.ooo_bytes += payload.len();
                let pos = self.ooo.partition_point(|(s, _)| seq_lt(*s, seq));
                self.ooo.insert(pos, (seq, payload.to_vec()));
            }
        }
        self.check_fin();
    }

    fn deliver(&mut self, payload: &[u8], missing: u32, out: &mut impl FnMut(Chunk<'_>)) {
        if !payload.is_empty() {
            out(Chunk::Data(payload));
        }
        if missing > 0 {
            self.stats.gaps += 1;
            self.stats.gap_bytes += u64::from(missing);
            out(Chunk::Gap(u64::from(missing)));
        }
        if let Some(n) = self.next.as_mut() {
            *n = n.wrapping_add(payload.len() as u32 + missing);
        }
    }

    /// Deliver buffered segments that have become contiguous.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some((s, _)) = self.ooo.first() {
            let Some(next) = self.next else { return };
            let s = *s;
            if seq_lt(next, s) {
                return;
            }
            let (_, data) = self.ooo.remove(0);
            self.ooo_bytes -= data.len();
            let dup = next.wrapping_sub(s) as usize;
            if dup >= data.len() {
                self.stats.retransmitted_bytes += data.len() as u64;
                continue;
            }
            self.stats.retransmitted_bytes += dup as u64;
            out(Chunk::Data(&data[dup..]));
            self.next = Some(next.wrapping_add((data.len() - dup) as u32));
        }
    }

    /// Declare the hole before the first buffered segment (or before `seq`) lost.
    fn skip_to_first_buffered_or(&mut self, seq: u32, out: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next else { return };
        let target = match self.ooo.first() {
            Some((s, _)) if seq_lt(*s, seq) => *s,
            _ => seq,
        };
        if seq_lt(next, target) {
            let lost = target.wrapping_sub(next);
            self.stats.gaps += 1;
            self.stats.gap_bytes += u64::from(lost);
            out(Chunk::Gap(u64::from(lost)));
            self.next = Some(target);
        }
        self.drain(out);
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
        while seq_lt(self.next.unwrap_or(limit), limit) {
            let before = self.next;
            self.skip_to_first_buffered_or(limit, out);
            if self.next == before {
                break;
            }
        }
        self.check_fin();
    }

    /// Declare everything before `seq` lost without delivering buffered data after it yet.
    pub fn declare_lost_until(&mut self, seq: u32, out: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next else { return };
        if seq_lt(next, seq) {
            let lost = seq.wrapping_sub(next);
            self.stats.gaps += 1;
            self.stats.gap_bytes += u64::from(lost);
            out(Chunk::Gap(u64::from(lost)));
            self.next = Some(seq);
        }
    }

    /// Deliver buffered segments that are now contiguous.
    pub fn drain_ready(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        self.drain(out);
        self.check_fin();
    }

    /// End of the connection: deliver what is buffered, declaring holes lost.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some((s, _)) = self.ooo.first() {
            let s = *s;
            self.skip_to_first_buffered_or(s, out);
        }
    }

    fn check_fin(&mut self) {
        if let (Some(f), Some(n)) = (self.fin_at, self.next) {
            if !seq_lt(n, f) {
                self.finished = true;
            }
        }
    }

    /// Bytes buffered out of order.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
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
        assert_eq!(s.stats.out_of_order, 1);
        assert_eq!(s.stats.retransmitted_bytes, 6 + 1);
        assert_eq!(s.stats.gaps, 0);
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
        assert_eq!(s.stats.retransmitted_bytes, 1);
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
        assert_eq!(s.stats.gaps, 4);
        assert_eq!(s.stats.gap_bytes, 19);
        assert_eq!(s.stats.ooo_overflow, 2);
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
                let end = (at + c).min(data.len());
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
    }
}
