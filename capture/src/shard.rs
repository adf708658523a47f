//! One capture file decoded by several pipelines at once, each owning a share of the flows.
//!
//! Every pipeline reads every frame of the file: it sweeps idle sessions on the same frames as a
//! single pipeline would (time comes from every frame, not only its own), and decodes only the
//! frames of its flows, chosen by a hash of the flow's key (frames that belong to no flow, such
//! as non-TCP or other ports, are counted by shard 0). A flood of sessions is per-session work,
//! so shards split it evenly; the counters of all shards add up to a single pipeline's.
//!
//! The one counter that is not a sum, the peak of bytes buffered over all sessions, is rebuilt
//! exactly: each shard logs, per frame, its highest buffered total while decoding the frame and
//! its total after it; [`merge_peaks`] replays the logs in frame order. This module does not
//! spawn threads ([`crate::source::pcap::run_file_sharded`] does), nor order events across
//! shards (so only aggregate outputs may be sharded).

/// Per-frame memory log of one shard.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    pub(crate) index: u32,
    pub(crate) count: u32,
    /// Frames of the file seen so far (this shard's or not): the frame being handled.
    frame: u64,
    /// Highest buffered total at an accounting point of the current frame (0: none).
    peak: u64,
    /// Buffered total logged last.
    last: u64,
    log: Vec<Mark>,
}

/// Shard state after frame `frame`: highest total while decoding it (0 if not decoded here) and
/// the total after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    frame: u64,
    peak: u64,
    after: u64,
}

impl Shard {
    pub(crate) fn new(index: u32, count: u32) -> Self {
        Self {
            index,
            count: count.max(1),
            ..Self::default()
        }
    }

    /// Is a flow whose key hashes to `h` this shard's? (Multiply-shift on the hash's high bits,
    /// which the table's index uses least.)
    #[inline]
    pub(crate) fn owns(&self, h: u32) -> bool {
        ((u64::from(h) * u64::from(self.count)) >> 32) as u32 == self.index
    }

    /// A new frame begins.
    #[inline]
    pub(crate) fn next_frame(&mut self) {
        self.frame += 1;
    }

    /// The buffered total at an accounting point (where a single pipeline updates its peak).
    #[inline]
    pub(crate) fn note(&mut self, buffered: usize) {
        self.peak = self.peak.max(buffered as u64);
    }

    /// The frame is done; `buffered` is the total after it.
    #[inline]
    pub(crate) fn end_frame(&mut self, buffered: usize) {
        let after = buffered as u64;
        if self.peak != 0 || after != self.last {
            self.log.push(Mark {
                frame: self.frame,
                peak: self.peak,
                after,
            });
            self.peak = 0;
            self.last = after;
        }
    }

    pub(crate) fn take_log(&mut self) -> Vec<Mark> {
        std::mem::take(&mut self.log)
    }
}

/// The peak of the buffered total over all shards, as one pipeline fed every frame would have
/// counted it: at each accounting point of a shard, its own total plus every other shard's total
/// after its latest frame (a frame is decoded by one shard; the others only sweep on it, which
/// a single pipeline also does before decoding it).
pub fn merge_peaks(logs: &[Vec<Mark>]) -> u64 {
    let mut after = vec![0u64; logs.len()];
    let mut at = vec![0usize; logs.len()];
    let mut peak = 0u64;
    loop {
        let Some(frame) = logs
            .iter()
            .zip(&at)
            .filter_map(|(l, &i)| l.get(i).map(|m| m.frame))
            .min()
        else {
            return peak;
        };
        // Sweeps first (they only lower totals; no accounting point in them).
        let mut owner = None;
        for (s, l) in logs.iter().enumerate() {
            if let Some(m) = l.get(at[s]).filter(|m| m.frame == frame) {
                if m.peak != 0 {
                    owner = Some((s, m.peak));
                }
                after[s] = m.after;
                at[s] += 1;
            }
        }
        if let Some((s, p)) = owner {
            let others: u64 = after
                .iter()
                .enumerate()
                .filter(|&(o, _)| o != s)
                .map(|(_, &a)| a)
                .sum();
            peak = peak.max(p + others);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_hash_space() {
        let a = Shard::new(0, 2);
        let b = Shard::new(1, 2);
        for h in [
            0u32,
            1,
            0x7fff_ffff,
            0x8000_0000,
            u32::MAX,
            0x1234_5678,
            0xdead_beef,
        ] {
            assert!(a.owns(h) != b.owns(h), "{h:x}");
        }
        let one = Shard::new(0, 1);
        assert!(one.owns(u32::MAX) && one.owns(0));
    }

    #[test]
    fn the_peak_is_the_peak_of_the_sum_not_the_sum_of_the_peaks() {
        // Shard 0 holds 100 over frames 1..3, shard 1 peaks at 70 on frame 2 (then 50) and
        // peaks at 80 on frame 4, after shard 0 let go: the sum peaked at 100 + 70 = 170.
        let mut s0 = Shard::new(0, 2);
        let mut s1 = Shard::new(1, 2);
        let frames: [(Option<usize>, usize, usize); 4] = [
            (Some(100), 100, 0),
            (None, 100, 50),
            (None, 100, 50),
            (None, 0, 0),
        ];
        let ones = [None, Some(70), None, Some(80)];
        for (f, ((p0, a0, a1), p1)) in frames.iter().zip(ones).enumerate() {
            s0.next_frame();
            s1.next_frame();
            if let Some(p) = p0 {
                s0.note(*p);
            }
            if let Some(p) = p1 {
                s1.note(p);
            }
            s0.end_frame(*a0);
            s1.end_frame(if f == 3 { 0 } else { *a1 });
        }
        let logs = [s0.take_log(), s1.take_log()];
        assert_eq!(merge_peaks(&logs), 170);
        assert_eq!(merge_peaks(&[]), 0);
        assert_eq!(merge_peaks(&logs[..1]), 100);
    }
}
