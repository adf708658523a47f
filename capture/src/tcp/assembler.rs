//! Out-of-order bytes of one direction: one buffer and a small fixed array of the sequence ranges
//! held in it (the shape of smoltcp's assembler).
//!
//! The buffer is a ring whose size is a power of two: the byte of sequence number `s` lives at
//! `(s - anchor) mod size`, so delivering or adding bytes never moves others. It is allocated by the
//! first out-of-order segment and doubles while the held span grows, up to the caller's byte budget
//! (rounded down to a power of two). Ranges are sorted, disjoint and never touching (touching
//! ranges merge), at most [`MAX_RANGES`]. Storing a segment copies it into the ring and updates the
//! array: no allocation unless the ring must grow. It does not decide what is lost: a full buffer
//! or array is reported to the caller ([`Full`]).

/// Most disjoint ranges (so holes) held per direction.
pub const MAX_RANGES: usize = 32;
/// Smallest buffer allocated.
const MIN_BUF: usize = 16 << 10;
/// Largest byte budget honoured: every range stays well inside half the sequence space.
const MAX_BUDGET: usize = 1 << 30;

/// Why a segment could not be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The held bytes would span more than the byte budget.
    Bytes,
    /// It would open one more hole than [`MAX_RANGES`] allows.
    Holes,
}

/// Buffered ranges of one direction (see the module docs).
#[derive(Debug)]
pub struct Assembler {
    /// The ring; its length is 0 or a power of two.
    buf: Vec<u8>,
    /// A sequence number whose byte lives at `buf[0]`.
    anchor: u32,
    /// `[start, end)` sequence numbers; only the first `n` are used.
    ranges: [(u32, u32); MAX_RANGES],
    n: usize,
}

impl Default for Assembler {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            anchor: 0,
            ranges: [(0, 0); MAX_RANGES],
            n: 0,
        }
    }
}

/// The budget actually applied: a power of two, at most [`MAX_BUDGET`].
fn effective(budget: usize) -> usize {
    let b = budget.min(MAX_BUDGET);
    if b == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - b.leading_zeros())
    }
}

impl Assembler {
    /// No range held.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Number of ranges held.
    pub fn ranges(&self) -> usize {
        self.n
    }

    /// The first range, `[start, end)`.
    pub fn first(&self) -> Option<(u32, u32)> {
        (self.n > 0).then(|| self.ranges[0])
    }

    /// End of the last range.
    pub fn last_end(&self) -> Option<u32> {
        (self.n > 0).then(|| self.ranges[self.n - 1].1)
    }

    /// Bytes held in ranges.
    pub fn held(&self) -> usize {
        self.ranges[..self.n]
            .iter()
            .map(|(a, b)| b.wrapping_sub(*a) as usize)
            .sum()
    }

    /// Bytes allocated for the buffer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Address of the buffer (tests check that storing a segment does not reallocate).
    #[cfg(test)]
    pub(crate) fn buf_addr(&self) -> usize {
        self.buf.as_ptr() as usize
    }

    /// Store `data` at sequence number `seq`. Every range (and `seq`) lies after `next`, the
    /// stream's next expected byte. Returns the bytes that were already held (duplicates).
    pub fn insert(&mut self, next: u32, seq: u32, data: &[u8], budget: usize) -> Result<u64, Full> {
        if data.is_empty() {
            return Ok(0);
        }
        let rel = |s: u32| u64::from(s.wrapping_sub(next));
        let len = u32::try_from(data.len()).map_err(|_| Full::Bytes)?;
        let end = seq.wrapping_add(len);
        let (mut lo, mut hi) = (seq, end);
        if self.n > 0 {
            if rel(self.ranges[0].0) < rel(lo) {
                lo = self.ranges[0].0;
            }
            if rel(self.ranges[self.n - 1].1) > rel(hi) {
                hi = self.ranges[self.n - 1].1;
            }
        }
        let span = (rel(hi) - rel(lo)) as usize;
        let budget = effective(budget);
        if span > budget {
            return Err(Full::Bytes);
        }
        // Ranges i..j overlap or touch [seq, end) and merge with it.
        let i = self.ranges[..self.n].partition_point(|r| rel(r.1) < rel(seq));
        let j = self.ranges[..self.n].partition_point(|r| rel(r.0) <= rel(end));
        if i == j && self.n == MAX_RANGES {
            return Err(Full::Holes);
        }
        let mut dup = 0u64;
        let (mut start, mut stop) = (seq, end);
        for &(a, b) in &self.ranges[i..j] {
            let from = rel(a).max(rel(seq));
            let to = rel(b).min(rel(end));
            dup += to.saturating_sub(from);
            if rel(a) < rel(start) {
                start = a;
            }
            if rel(b) > rel(stop) {
                stop = b;
            }
        }
        if self.buf.len() < span {
            self.grow(span.next_power_of_two().max(MIN_BUF).min(budget), lo);
        }
        self.write(seq, data);
        // Replace ranges i..j by the merged one.
        if i == j {
            self.ranges.copy_within(i..self.n, i + 1);
            self.n += 1;
        } else {
            self.ranges.copy_within(j..self.n, i + 1);
            self.n -= j - i - 1;
        }
        self.ranges[i] = (start, stop);
        Ok(dup)
    }

    /// Move to a ring of `size` bytes anchored at `anchor`, keeping the held bytes.
    fn grow(&mut self, size: usize, anchor: u32) {
        let (ranges, n) = (self.ranges, self.n);
        let old = std::mem::replace(
            self,
            Self {
                buf: vec![0; size],
                anchor,
                ranges,
                n,
            },
        );
        for &(a, b) in &old.ranges[..old.n] {
            let (x, y) = old.bytes(a, b);
            self.write(a, x);
            self.write(a.wrapping_add(x.len() as u32), y);
        }
    }

    fn index(&self, seq: u32) -> usize {
        seq.wrapping_sub(self.anchor) as usize & (self.buf.len() - 1)
    }

    fn write(&mut self, seq: u32, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let at = self.index(seq);
        let first = data.len().min(self.buf.len() - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// The held bytes `[from, to)` (inside one range), in one or two pieces of the ring.
    pub fn bytes(&self, from: u32, to: u32) -> (&[u8], &[u8]) {
        let len = to.wrapping_sub(from) as usize;
        if len == 0 || self.buf.is_empty() {
            return (&[], &[]);
        }
        let at = self.index(from);
        let first = len.min(self.buf.len() - at);
        (&self.buf[at..at + first], &self.buf[..len - first])
    }

    /// Forget the first range's bytes before `to` (the whole range when `to` is at or past its end).
    pub fn consume_front(&mut self, to: u32) {
        let Some((a, b)) = self.first() else { return };
        if to.wrapping_sub(a) >= b.wrapping_sub(a) {
            self.ranges.copy_within(1..self.n, 0);
            self.n -= 1;
        } else {
            self.ranges[0].0 = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(a: &Assembler) -> Vec<(u32, u32)> {
        a.ranges[..a.n].to_vec()
    }

    #[test]
    fn merges_touching_and_overlapping_ranges_and_counts_duplicates() {
        let mut a = Assembler::default();
        assert_eq!(a.insert(0, 10, b"abc", 100), Ok(0));
        assert_eq!(a.insert(0, 20, b"uvw", 100), Ok(0));
        assert_eq!(a.insert(0, 5, b"x", 100), Ok(0));
        assert_eq!(ranges(&a), vec![(5, 6), (10, 13), (20, 23)]);
        assert_eq!(a.insert(0, 13, b"def", 100), Ok(0));
        assert_eq!(ranges(&a), vec![(5, 6), (10, 16), (20, 23)]);
        assert_eq!(a.insert(0, 12, b"cdefghijkl", 100), Ok(6));
        assert_eq!(ranges(&a), vec![(5, 6), (10, 23)]);
        assert_eq!(a.bytes(10, 23), (&b"abcdefghijklw"[..], &b""[..]));
        assert_eq!(a.held(), 14);
        a.consume_front(6);
        a.consume_front(15);
        assert_eq!(ranges(&a), vec![(15, 23)]);
        assert_eq!(a.bytes(15, 23), (&b"fghijklw"[..], &b""[..]));
    }

    #[test]
    fn budget_and_range_cap_are_reported() {
        let mut a = Assembler::default();
        assert_eq!(a.insert(0, 10, b"ab", 8), Ok(0));
        assert_eq!(a.insert(0, 18, b"z", 8), Err(Full::Bytes));
        assert_eq!(a.insert(0, 17, b"z", 8), Ok(0));
        let mut a = Assembler::default();
        for k in 0..MAX_RANGES as u32 {
            assert_eq!(a.insert(0, 10 + 3 * k, b"a", 1 << 20), Ok(0));
        }
        assert_eq!(a.insert(0, 1000, b"a", 1 << 20), Err(Full::Holes));
        // Filling a hole merges two ranges: allowed at the cap.
        assert_eq!(a.insert(0, 11, b"bb", 1 << 20), Ok(0));
        assert_eq!(a.ranges(), MAX_RANGES - 1);
    }

    #[test]
    fn a_segment_before_the_buffer_moves_it_and_keeps_the_bytes() {
        let mut a = Assembler::default();
        let next = u32::MAX - 100;
        a.insert(next, next.wrapping_add(200), b"later", 1 << 20)
            .unwrap();
        a.insert(next, next.wrapping_add(50), b"early", 1 << 20)
            .unwrap();
        let s = next.wrapping_add(200);
        a.consume_front(next.wrapping_add(55));
        let (x, y) = a.bytes(s, s.wrapping_add(5));
        assert_eq!([x, y].concat(), b"later");
    }
}
