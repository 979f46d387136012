//! A map with a fixed number of places that forgets its least recently used
//! entry to make room for a new one: the per-client rate table
//! ([`crate::proxy::limits::RateLimiter`]) and the metrics micro-cache
//! ([`crate::proxy::coalesce`]).
//!
//! Every operation but [`Lru::retain`] is O(1), whatever the number of
//! entries: a hash map from key to place, and the places in a vector linked
//! in order of use (most recent first). Removing an entry moves the last
//! place into the hole, so the vector stays dense and nothing is scanned.
//! Memory grows with the entries actually held, up to the capacity.
//!
//! Pure and safe: no I/O, no locks (the owner holds one), no `unsafe`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// "No place": the end of the list.
const NIL: usize = usize::MAX;

/// A map of at most `capacity` entries, in order of use.
pub struct Lru<K, V> {
    /// Where each key's entry is in `places`.
    index: HashMap<K, usize>,
    places: Vec<Place<K, V>>,
    /// The most recently used place, or [`NIL`] when empty.
    head: usize,
    /// The least recently used place, or [`NIL`] when empty.
    tail: usize,
    capacity: usize,
}

struct Place<K, V> {
    key: K,
    value: V,
    /// The place used just more recently, or [`NIL`].
    newer: usize,
    /// The place used just less recently, or [`NIL`].
    older: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map that holds at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            index: HashMap::new(),
            places: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The value under `key`, which becomes the most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = *self.index.get(key)?;
        self.touch(at);
        Some(&mut self.places[at].value)
    }

    /// The value under `key`, leaving the order of use as it is.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.index.get(key).map(|&at| &self.places[at].value)
    }

    /// Puts `value` under `key`, as the most recently used. Returns the
    /// entry that left: the one this key held before, or, when the map was
    /// full, the least recently used one, forgotten to make room.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if let Some(&at) = self.index.get(&key) {
            self.touch(at);
            let old = std::mem::replace(&mut self.places[at].value, value);
            return Some((key, old));
        }
        let evicted = if self.places.len() >= self.capacity {
            self.pop_lru()
        } else {
            None
        };
        let at = self.places.len();
        self.index.insert(key.clone(), at);
        self.places.push(Place {
            key,
            value,
            newer: NIL,
            older: NIL,
        });
        self.link_front(at);
        evicted
    }

    /// Removes the entry under `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = *self.index.get(key)?;
        Some(self.remove_at(at).1)
    }

    /// The least recently used entry, left where it is.
    pub fn peek_lru(&self) -> Option<(&K, &V)> {
        self.places.get(self.tail).map(|p| (&p.key, &p.value))
    }

    /// Removes the least recently used entry and returns it.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        (self.tail != NIL).then(|| self.remove_at(self.tail))
    }

    /// Keeps only the entries for which `keep` is true, leaving the order of
    /// the others as it was. O(n): for rare clean-ups, never per request.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        // From the last place down: removing place `i` moves the last place
        // into it, and that one has been seen already.
        for at in (0..self.places.len()).rev() {
            let place = &mut self.places[at];
            if !keep(&place.key, &mut place.value) {
                self.remove_at(at);
            }
        }
    }

    /// The keys, most recently used first.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let place = self.places.get(at)?;
            at = place.older;
            Some(&place.key)
        })
    }

    /// Makes place `at` the most recently used.
    fn touch(&mut self, at: usize) {
        if self.head != at {
            self.unlink(at);
            self.link_front(at);
        }
    }

    fn link_front(&mut self, at: usize) {
        self.places[at].newer = NIL;
        self.places[at].older = self.head;
        match self.places.get_mut(self.head) {
            Some(old_head) => old_head.newer = at,
            None => self.tail = at,
        }
        self.head = at;
    }

    fn unlink(&mut self, at: usize) {
        let (newer, older) = (self.places[at].newer, self.places[at].older);
        match self.places.get_mut(newer) {
            Some(p) => p.older = older,
            None => self.head = older,
        }
        match self.places.get_mut(older) {
            Some(p) => p.newer = newer,
            None => self.tail = newer,
        }
    }

    /// Takes the entry at `at` out, and moves the last place into the hole.
    fn remove_at(&mut self, at: usize) -> (K, V) {
        self.unlink(at);
        let last = self.places.len() - 1;
        let place = self.places.swap_remove(at);
        self.index.remove(&place.key);
        if at != last {
            // The place that was last is at `at` now: repoint its neighbours
            // and its key.
            let (newer, older) = (self.places[at].newer, self.places[at].older);
            match self.places.get_mut(newer) {
                Some(p) => p.older = at,
                None => self.head = at,
            }
            match self.places.get_mut(older) {
                Some(p) => p.newer = at,
                None => self.tail = at,
            }
            if let Some(i) = self.index.get_mut(&self.places[at].key) {
                *i = at;
            }
        }
        (place.key, place.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lru: &Lru<u32, u32>) -> Vec<u32> {
        lru.keys().copied().collect()
    }

    /// The links agree with the index, both ways, and every place is on
    /// the list once.
    fn check(lru: &Lru<u32, u32>) {
        let forward = keys(lru);
        assert_eq!(forward.len(), lru.len());
        assert_eq!(lru.index.len(), lru.len());
        let mut backward = Vec::new();
        let mut at = lru.tail;
        while let Some(p) = lru.places.get(at) {
            backward.push(p.key);
            at = p.newer;
            assert!(backward.len() <= lru.len(), "a loop in the links");
        }
        backward.reverse();
        assert_eq!(forward, backward);
        for (key, &at) in &lru.index {
            assert_eq!(lru.places[at].key, *key);
        }
    }

    #[test]
    fn the_least_recently_used_entry_makes_room() {
        let mut lru = Lru::new(3);
        for k in 1..=3 {
            assert_eq!(lru.insert(k, k * 10), None);
        }
        assert_eq!(keys(&lru), [3, 2, 1]);
        // Using 1 makes 2 the least recently used.
        assert_eq!(lru.get(&1), Some(&mut 10));
        assert_eq!(keys(&lru), [1, 3, 2]);
        assert_eq!(lru.insert(4, 40), Some((2, 20)));
        assert_eq!(keys(&lru), [4, 1, 3]);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.peek(&2), None);
        check(&lru);
        // Peeking leaves the order alone.
        assert_eq!(lru.peek(&3), Some(&30));
        assert_eq!(lru.peek_lru(), Some((&3, &30)));
        assert_eq!(keys(&lru), [4, 1, 3]);
    }

    #[test]
    fn inserting_a_key_again_replaces_its_value_and_uses_it() {
        let mut lru = Lru::new(2);
        lru.insert(1, 10);
        lru.insert(2, 20);
        assert_eq!(lru.insert(1, 11), Some((1, 10)));
        assert_eq!(keys(&lru), [1, 2]);
        assert_eq!(lru.insert(3, 30), Some((2, 20)));
        assert_eq!(lru.peek(&1), Some(&11));
        check(&lru);
    }

    #[test]
    fn removing_keeps_the_order_of_the_rest() {
        let mut lru = Lru::new(5);
        for k in 1..=5 {
            lru.insert(k, k);
        }
        // The middle, the most and the least recent, then the only one left.
        assert_eq!(lru.remove(&3), Some(3));
        assert_eq!(keys(&lru), [5, 4, 2, 1]);
        check(&lru);
        assert_eq!(lru.remove(&5), Some(5));
        assert_eq!(lru.pop_lru(), Some((1, 1)));
        assert_eq!(keys(&lru), [4, 2]);
        check(&lru);
        assert_eq!(lru.remove(&9), None);
        lru.remove(&4);
        lru.remove(&2);
        assert!(lru.is_empty());
        assert_eq!(lru.pop_lru(), None);
        assert_eq!(lru.peek_lru(), None);
        check(&lru);
        lru.insert(7, 7);
        assert_eq!(keys(&lru), [7]);
        check(&lru);
    }

    #[test]
    fn retain_drops_what_it_is_told_and_nothing_else() {
        let mut lru = Lru::new(10);
        for k in 1..=10 {
            lru.insert(k, k);
        }
        lru.get(&2);
        lru.retain(|k, _| k % 3 != 0);
        assert_eq!(keys(&lru), [2, 10, 8, 7, 5, 4, 1]);
        check(&lru);
    }

    #[test]
    fn a_capacity_of_zero_holds_one() {
        let mut lru = Lru::new(0);
        assert_eq!(lru.capacity(), 1);
        lru.insert(1, 1);
        assert_eq!(lru.insert(2, 2), Some((1, 1)));
        assert_eq!(keys(&lru), [2]);
    }

    /// Against a plain model (a vector in order of use) over a long mixed
    /// run of every operation on few keys, so that each path is taken often.
    #[test]
    fn agrees_with_a_model_over_a_long_run() {
        let mut lru = Lru::new(8);
        let mut model: Vec<(u32, u32)> = Vec::new(); // most recent first
        let mut seed = 0x2545_f491_u32;
        for step in 0..20_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let key = seed % 13;
            match seed >> 28 {
                0..=5 => {
                    let evicted = lru.insert(key, step);
                    let expected = match model.iter().position(|e| e.0 == key) {
                        Some(i) => Some(model.remove(i)),
                        None if model.len() == 8 => model.pop(),
                        None => None,
                    };
                    model.insert(0, (key, step));
                    assert_eq!(evicted, expected, "insert {key} at {step}");
                }
                6..=10 => {
                    let got = lru.get(&key).copied();
                    let expected = model.iter().position(|e| e.0 == key).map(|i| {
                        let e = model.remove(i);
                        model.insert(0, e);
                        e.1
                    });
                    assert_eq!(got, expected, "get {key} at {step}");
                }
                11..=13 => {
                    let expected = model
                        .iter()
                        .position(|e| e.0 == key)
                        .map(|i| model.remove(i).1);
                    assert_eq!(lru.remove(&key), expected, "remove {key} at {step}");
                }
                _ => assert_eq!(lru.pop_lru(), model.pop(), "pop at {step}"),
            }
            let order: Vec<u32> = model.iter().map(|e| e.0).collect();
            assert_eq!(keys(&lru), order, "at {step}");
        }
        check(&lru);
    }

    #[test]
    fn keys_may_be_looked_up_by_a_borrowed_form() {
        let mut lru: Lru<Box<[u8]>, u8> = Lru::new(2);
        lru.insert(b"abc"[..].into(), 1);
        assert_eq!(lru.get(&b"abc"[..]), Some(&mut 1));
        assert_eq!(lru.remove(&b"abc"[..]), Some(1));
    }
}
