//! A table that forgets what was not used lately, in O(1) per operation:
//! entries go into the newer of two maps; when it is full it becomes the
//! older one and the older one is dropped. A lookup moves a hit from the
//! older map to the newer, so whatever is used once per generation stays.
//! Cheaper than an LRU list (no links, no per-entry order to keep), and the
//! memory is two maps at their limit. Keys may be chosen by any local
//! process (socket names): foldhash's maps are seeded per process.

use std::borrow::Borrow;
use std::hash::Hash;

use foldhash::HashMap;

pub(crate) struct Generations<K, V> {
    newer: HashMap<K, V>,
    older: HashMap<K, V>,
    /// Entries per generation.
    limit: usize,
    /// Weight per generation (e.g. bytes), and what the newer holds.
    budget: usize,
    weight: usize,
    weigh: fn(&V) -> usize,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    /// At most `limit` entries per generation.
    pub fn new(limit: usize) -> Self {
        Self::weighed(limit, usize::MAX, |_| 0)
    }

    /// At most `limit` entries, and entries of `budget` in all by `weigh`
    /// (as they were when they came into the generation, plus
    /// [`Generations::grew`]), per generation.
    pub fn weighed(limit: usize, budget: usize, weigh: fn(&V) -> usize) -> Self {
        Generations {
            newer: HashMap::default(),
            older: HashMap::default(),
            limit: limit.max(1),
            budget,
            weight: 0,
            weigh,
        }
    }

    /// Entries in both generations.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    /// The value of `key`, without keeping it any longer.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.newer.get(key).or_else(|| self.older.get(key))
    }

    /// The value of `key`, kept for another generation.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.newer.contains_key(key) {
            return self.newer.get_mut(key);
        }
        let (key, value) = self.older.remove_entry(key)?;
        Some(self.insert(key, value))
    }

    /// Inserts or replaces `key`'s value, in the newer generation.
    pub fn insert(&mut self, key: K, value: V) -> &mut V {
        self.older.remove(&key);
        if !self.newer.contains_key(&key) && (self.newer.len() >= self.limit || self.weight >= self.budget) {
            self.age();
        }
        self.weight = self.weight.saturating_add((self.weigh)(&value));
        let slot = self.newer.entry(key).insert_entry(value);
        slot.into_mut()
    }

    /// The value of `key` (kept for another generation), else `make()`'s.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if self.newer.contains_key(&key) {
            // just seen: it is there
            return self.newer.entry(key).or_insert_with(make);
        }
        let value = self.older.remove(&key).unwrap_or_else(make);
        self.insert(key, value)
    }

    /// A value in the newer generation grew by `weight`.
    pub fn grew(&mut self, weight: usize) {
        self.weight = self.weight.saturating_add(weight);
    }

    /// Keeps the entries `keep` says to, in both generations.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.newer.retain(&mut keep);
        self.older.retain(keep);
    }

    /// Starts a new generation: the older one is forgotten. Clearing keeps
    /// the map's allocation, so memory does not go up and down.
    fn age(&mut self) {
        std::mem::swap(&mut self.newer, &mut self.older);
        self.newer.clear();
        self.weight = 0;
    }
}

impl<K, V> std::fmt::Debug for Generations<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Generations({} + {} of {})", self.newer.len(), self.older.len(), self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_used_each_generation_stay_and_the_rest_go() {
        let mut g: Generations<u32, u32> = Generations::new(100);
        g.insert(0, 0);
        for key in 1..100_000 {
            g.insert(key, key);
            // key 0 is used once in fewer than `limit` insertions
            if key % 50 == 0 {
                assert_eq!(g.get(&0), Some(&mut 0), "after {key}");
            }
            assert!(g.len() <= 200);
        }
        assert_eq!(g.peek(&0), Some(&0));
        assert_eq!(g.peek(&1), None, "forgotten");
        assert_eq!(g.peek(&99_999), Some(&99_999));
    }

    #[test]
    fn a_budget_starts_a_new_generation_early() {
        let mut g: Generations<u32, Vec<u8>> = Generations::weighed(1000, 100, Vec::len);
        for key in 0..1000 {
            g.insert(key, vec![0; 10]);
            let bytes: usize = (0..=key).filter_map(|k| g.peek(&k)).map(Vec::len).sum();
            assert!(bytes <= 2 * 110, "{bytes} bytes held");
        }
        // growth counts too
        let mut g: Generations<u32, Vec<u8>> = Generations::weighed(1000, 100, Vec::len);
        g.insert(1, Vec::new());
        g.grew(100);
        g.insert(2, Vec::new());
        g.insert(3, Vec::new());
        g.grew(100);
        g.insert(4, Vec::new());
        assert_eq!(g.peek(&1), None);
        assert!(g.peek(&2).is_some() && g.peek(&4).is_some());
    }

    #[test]
    fn insertion_replaces_and_get_or_insert_keeps() {
        let mut g: Generations<String, u32> = Generations::new(2);
        g.insert("a".into(), 1);
        g.insert("b".into(), 2);
        g.insert("c".into(), 3); // a and b are the older generation now
        *g.get_or_insert_with("a".into(), || 9) += 10;
        assert_eq!(g.peek("a"), Some(&11));
        g.insert("a".into(), 5);
        assert_eq!(g.peek("a"), Some(&5));
        assert_eq!(g.len(), 3);
        g.retain(|k, _| k != "c");
        assert_eq!(g.peek("c"), None);
    }
}
