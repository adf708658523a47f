//! The session table: values in a slab of boxed slots, looked up by flow key, threaded on an
//! intrusive doubly-linked least-recently-used list over slab indices.
//!
//! Every operation is O(1): lookup, insert, remove, touch (move to the most recent end), the
//! least recently used entry (for eviction and idle expiry, without scanning), and a cursor that
//! walks the list from its cold end once (for freeing idle buffers). It knows nothing of TCP or
//! MySQL.

use std::hash::{BuildHasher, BuildHasherDefault, Hash};

use hashbrown::HashTable;
use rustc_hash::FxHasher;

const NIL: u32 = u32::MAX;

/// Below this many entries the index grows by doubling; crossing it, it is sized once for the
/// whole capacity hint (no rehash on the way up to it; small tables, as in tests and fuzzing,
/// stay small). The slab grows by doubling: past the allocator's mmap threshold a larger slab
/// is a remap, not a copy.
const PRESIZE_AT: usize = 4096;

struct Slot<K, T> {
    key: K,
    val: Option<Box<T>>,
    prev: u32,
    next: u32,
}

/// Slab + hash index + LRU list.
///
/// The index holds 8 bytes per bucket (slot number and a 32-bit hash of its key), so growing it
/// never touches the keys, and removal finds the bucket by slot number without comparing keys.
pub(crate) struct Table<K, T> {
    index: HashTable<(u32, u32)>,
    slots: Vec<Slot<K, T>>,
    free: Vec<u32>,
    live: usize,
    /// Most entries expected (the session limit): the index is sized for it once
    /// [`PRESIZE_AT`] entries are live.
    hint: usize,
    /// Least recently used.
    head: u32,
    /// Most recently used.
    tail: u32,
    /// Last entry of the prefix (from `head`) already visited by [`Table::next_cold`], or NIL.
    cold: u32,
}

impl<K: Hash + Eq + Copy, T> Default for Table<K, T> {
    fn default() -> Self {
        Self::with_hint(0)
    }
}

/// The 32-bit hash of a key, spread over 64 bits so that hashbrown's bucket bits (low) and tag
/// bits (top 7) both come from it.
#[inline]
fn spread(h: u32) -> u64 {
    u64::from(h) << 32 | u64::from(h)
}

impl<K: Hash + Eq + Copy, T> Table<K, T> {
    /// An empty table expecting up to `hint` entries.
    pub(crate) fn with_hint(hint: usize) -> Self {
        Self {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            hint,
            head: NIL,
            tail: NIL,
            cold: NIL,
        }
    }

    /// The 32-bit hash of a key (as the index uses it).
    #[inline]
    pub(crate) fn hash(k: &K) -> u32 {
        let h = BuildHasherDefault::<FxHasher>::default().hash_one(k);
        (h ^ h >> 32) as u32
    }

    /// Entries.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Index of `k`.
    #[inline]
    pub(crate) fn find(&self, k: &K) -> Option<u32> {
        let h = Self::hash(k);
        let slots = &self.slots;
        self.index
            .find(spread(h), |&(i, hi)| {
                hi == h && slots.get(i as usize).is_some_and(|s| s.key == *k)
            })
            .map(|&(i, _)| i)
    }

    /// The value at `i` (a live index).
    #[inline]
    pub(crate) fn get_mut(&mut self, i: u32) -> &mut T {
        self.slots[i as usize]
            .val
            .as_deref_mut()
            .expect("live table index")
    }

    /// The value at `i`, if live, mutably.
    pub(crate) fn get_mut_checked(&mut self, i: u32) -> Option<&mut T> {
        self.slots
            .get_mut(i as usize)
            .and_then(|s| s.val.as_deref_mut())
    }

    /// The value at `i`, if live.
    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize).and_then(|s| s.val.as_deref())
    }

    /// The key of the live entry `i`.
    pub(crate) fn key(&self, i: u32) -> Option<K> {
        self.slots
            .get(i as usize)
            .filter(|s| s.val.is_some())
            .map(|s| s.key)
    }

    /// Insert `v` under `k` (not present) as the most recently used; its index.
    pub(crate) fn insert(&mut self, k: K, v: Box<T>) -> u32 {
        if self.live == PRESIZE_AT && self.hint > PRESIZE_AT {
            let more = self.hint - self.live;
            self.index.reserve(more, |&(_, h)| spread(h));
        }
        let i = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.key = k;
                s.val = Some(v);
                i
            }
            None => {
                self.slots.push(Slot {
                    key: k,
                    val: Some(v),
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let h = Self::hash(&k);
        self.index
            .insert_unique(spread(h), (i, h), |&(_, h)| spread(h));
        self.live += 1;
        self.link_tail(i);
        i
    }

    /// Remove the entry `i`.
    pub(crate) fn remove(&mut self, i: u32) -> Option<Box<T>> {
        let s = self.slots.get_mut(i as usize)?;
        let v = s.val.take()?;
        let h = Self::hash(&s.key);
        if let Ok(e) = self.index.find_entry(spread(h), |&(j, _)| j == i) {
            e.remove();
        }
        self.live -= 1;
        self.unlink(i);
        self.free.push(i);
        Some(v)
    }

    /// Drop the key index at once (end of capture: every entry is about to be removed, and
    /// [`Table::find`] is not called again until they all are). Removals then cost no lookup.
    pub(crate) fn forget_keys(&mut self) {
        self.index = HashTable::new();
    }

    /// Mark `i` most recently used.
    #[inline]
    pub(crate) fn touch(&mut self, i: u32) {
        if self.cold == i {
            self.cold = self.slots[i as usize].prev;
        }
        if self.tail != i {
            self.unlink(i);
            self.link_tail(i);
        }
    }

    /// The least recently used entry.
    pub(crate) fn oldest(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// The next entry after the visited cold prefix, oldest first; `mark_cold` it to move on.
    pub(crate) fn next_cold(&self) -> Option<u32> {
        let i = if self.cold == NIL {
            self.head
        } else {
            self.slots[self.cold as usize].next
        };
        (i != NIL).then_some(i)
    }

    /// Extend the visited cold prefix to `i` (the entry `next_cold` returned).
    pub(crate) fn mark_cold(&mut self, i: u32) {
        self.cold = i;
    }

    /// Live entries (any order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.val.as_deref().map(|v| (i as u32, v)))
    }

    fn link_tail(&mut self, i: u32) {
        let s = &mut self.slots[i as usize];
        s.prev = self.tail;
        s.next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.slots[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if self.cold == i {
            self.cold = prev;
        }
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(t: &Table<u32, u32>) -> Vec<u32> {
        let mut v = Vec::new();
        let mut i = t.head;
        while i != NIL {
            v.push(*t.get(i).unwrap());
            i = t.slots[i as usize].next;
        }
        v
    }

    #[test]
    fn lru_order_reuse_and_cold_cursor() {
        let mut t: Table<u32, u32> = Table::default();
        let ix: Vec<u32> = (0..5).map(|k| t.insert(k, Box::new(k))).collect();
        assert_eq!(order(&t), vec![0, 1, 2, 3, 4]);
        t.touch(ix[1]);
        t.touch(ix[4]);
        assert_eq!(order(&t), vec![0, 2, 3, 1, 4]);
        assert_eq!(t.oldest(), Some(ix[0]));
        // Visit the two coldest.
        for want in [0, 2] {
            let i = t.next_cold().unwrap();
            assert_eq!(*t.get(i).unwrap(), want);
            t.mark_cold(i);
        }
        // Touching a visited entry takes it out of the visited prefix; the cursor stays valid.
        t.touch(ix[2]);
        assert_eq!(order(&t), vec![0, 3, 1, 4, 2]);
        assert_eq!(t.next_cold().map(|i| *t.get(i).unwrap()), Some(3));
        // Removing the cursor's entry moves the cursor back.
        t.remove(ix[0]);
        assert_eq!(t.next_cold().map(|i| *t.get(i).unwrap()), Some(3));
        let j = t.insert(9, Box::new(9));
        assert_eq!(j, ix[0], "freed slots are reused");
        assert_eq!(order(&t), vec![3, 1, 4, 2, 9]);
        assert_eq!(t.len(), 5);
        assert_eq!(t.find(&9), Some(j));
        for k in [3, 4, 1, 2, 9] {
            let i = t.find(&k).unwrap();
            t.remove(i);
        }
        assert_eq!((t.len(), t.oldest(), t.next_cold()), (0, None, None));
    }
}
