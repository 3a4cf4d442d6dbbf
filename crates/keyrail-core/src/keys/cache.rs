//! The verify cache: what this node knows about key digests, known (a [`CachedKey`]) or unknown
//! (remembered briefly), in shards that each have their own lock.
//!
//! A miss reads the store and then fills the cache, with an await in between; a revocation that
//! commits and is evicted in that gap must not be overwritten by the stale copy. So every
//! eviction bumps a generation (its shard's, or the global one for evictions of many keys), a
//! lookup takes a [`Ticket`] of the generations before it reads the store, and the fill is
//! refused when either moved meanwhile. Entries also have a maximum age, as a backstop for an
//! eviction that never arrives.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

const SHARDS: usize = 64;

pub type Digest = [u8; 32];

/// What a cached key needs to tell the cache.
pub trait Aged {
    /// When it was read from the store (ms since the epoch).
    fn loaded_at(&self) -> i64;
}

/// The generations a lookup saw before it read the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    shard: u64,
    global: u64,
}

/// What the cache knows about a digest.
pub enum Known<V> {
    Key(V),
    /// Looked up recently and not found.
    Unknown,
    /// Ask the store.
    Miss,
}

struct Shard<V> {
    keys: HashMap<Digest, V>,
    /// Unknown digests and until when (ms) they stay unknown.
    unknown: HashMap<Digest, i64>,
    generation: u64,
}

pub struct KeyCache<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    global: AtomicU64,
    max_age_ms: i64,
}

impl<V: Aged + Clone> KeyCache<V> {
    /// Entries older than `max_age_ms` are looked up again.
    pub fn new(max_age_ms: i64) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        keys: HashMap::new(),
                        unknown: HashMap::new(),
                        generation: 0,
                    })
                })
                .collect(),
            global: AtomicU64::new(0),
            max_age_ms,
        }
    }

    fn shard(&self, d: &Digest) -> &RwLock<Shard<V>> {
        &self.shards[usize::from(d[0]) % SHARDS]
    }

    pub fn get(&self, d: &Digest, now_ms: i64) -> Known<V> {
        self.get_as_of(d, now_ms, now_ms)
    }

    /// As [`Self::get`], with keys' age measured at `fresh_at_ms` instead of now: while the
    /// store is unreachable, a key that was fresh when the outage began goes on answering.
    pub fn get_as_of(&self, d: &Digest, now_ms: i64, fresh_at_ms: i64) -> Known<V> {
        let shard = self.shard(d).read().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = shard.keys.get(d) {
            if fresh_at_ms - v.loaded_at() <= self.max_age_ms {
                return Known::Key(v.clone());
            }
            return Known::Miss;
        }
        match shard.unknown.get(d) {
            Some(until) if *until > now_ms => Known::Unknown,
            _ => Known::Miss,
        }
    }

    /// Take it before reading the store for `d`.
    pub fn ticket(&self, d: &Digest) -> Ticket {
        let shard = self.shard(d).read().unwrap_or_else(|e| e.into_inner());
        Ticket {
            shard: shard.generation,
            // Read under the shard lock: an eviction of many keys bumps it before it takes any.
            global: self.global.load(Ordering::Acquire),
        }
    }

    fn current(&self, shard: &Shard<V>, ticket: Ticket) -> bool {
        shard.generation == ticket.shard && self.global.load(Ordering::Acquire) == ticket.global
    }

    /// Caches `v` unless something was evicted since `ticket` was taken: `Err(v)` then, and the
    /// caller answers with what it read without keeping it. `Ok` holds the entry replaced.
    pub fn insert(&self, d: Digest, ticket: Ticket, v: V) -> Result<Option<V>, V> {
        let mut shard = self.shard(&d).write().unwrap_or_else(|e| e.into_inner());
        if !self.current(&shard, ticket) {
            return Err(v);
        }
        shard.unknown.remove(&d);
        Ok(shard.keys.insert(d, v))
    }

    /// Remembers `d` as unknown until `until_ms`, unless something was evicted since `ticket`
    /// (the key may have been created meanwhile).
    pub fn insert_unknown(&self, d: Digest, ticket: Ticket, until_ms: i64) -> bool {
        let mut shard = self.shard(&d).write().unwrap_or_else(|e| e.into_inner());
        if !self.current(&shard, ticket) {
            return false;
        }
        shard.unknown.insert(d, until_ms);
        true
    }

    /// Forgets `d`, known or unknown; returns the key it held.
    pub fn evict(&self, d: &Digest) -> Option<V> {
        let mut shard = self.shard(d).write().unwrap_or_else(|e| e.into_inner());
        shard.generation += 1;
        shard.unknown.remove(d);
        shard.keys.remove(d)
    }

    /// Forgets every key for which `gone` holds (and every unknown digest when `unknown` is
    /// set); `dropped` sees each key removed.
    pub fn evict_where(
        &self,
        gone: impl Fn(&V) -> bool,
        unknown: bool,
        mut dropped: impl FnMut(V),
    ) {
        // First, so that a fill whose ticket is older is refused from now on.
        self.global.fetch_add(1, Ordering::AcqRel);
        for s in &*self.shards {
            let mut shard = s.write().unwrap_or_else(|e| e.into_inner());
            let doomed: Vec<Digest> = shard
                .keys
                .iter()
                .filter(|(_, v)| gone(v))
                .map(|(d, _)| *d)
                .collect();
            for d in doomed {
                if let Some(v) = shard.keys.remove(&d) {
                    dropped(v);
                }
            }
            if unknown {
                shard.unknown.clear();
            }
        }
    }

    /// Drops unknown digests past their time (at `now_ms`) and keys past the maximum age at
    /// `fresh_at_ms` (`dropped` sees each key).
    pub fn purge(&self, now_ms: i64, fresh_at_ms: i64, mut dropped: impl FnMut(V)) {
        for s in &*self.shards {
            let mut shard = s.write().unwrap_or_else(|e| e.into_inner());
            shard.unknown.retain(|_, until| *until > now_ms);
            let old: Vec<Digest> = shard
                .keys
                .iter()
                .filter(|(_, v)| fresh_at_ms - v.loaded_at() > self.max_age_ms)
                .map(|(d, _)| *d)
                .collect();
            for d in old {
                if let Some(v) = shard.keys.remove(&d) {
                    dropped(v);
                }
            }
        }
    }

    /// Calls `f` on every key, under each shard's read lock in turn.
    pub fn for_each(&self, mut f: impl FnMut(&V)) {
        for s in &*self.shards {
            s.read()
                .unwrap_or_else(|e| e.into_inner())
                .keys
                .values()
                .for_each(&mut f);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).keys.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Entry {
        revoked: bool,
        at: i64,
    }

    impl Aged for Entry {
        fn loaded_at(&self) -> i64 {
            self.at
        }
    }

    const D: Digest = [7; 32];
    const OTHER: Digest = [8; 32];

    fn active(at: i64) -> Entry {
        Entry { revoked: false, at }
    }

    #[test]
    fn a_fill_that_raced_an_eviction_is_refused() {
        let cache = KeyCache::new(60_000);
        // A lookup misses and reads the store: the key is active there...
        let ticket = cache.ticket(&D);
        let stale = active(0);
        // ... then a revocation commits and is evicted before the lookup fills the cache.
        assert!(cache.evict(&D).is_none());
        assert_eq!(cache.insert(D, ticket, stale.clone()), Err(stale));
        assert!(matches!(cache.get(&D, 1), Known::Miss));
        // The next lookup reads the revoked key and keeps it.
        let fresh = Entry {
            revoked: true,
            at: 2,
        };
        let ticket = cache.ticket(&D);
        assert_eq!(cache.insert(D, ticket, fresh.clone()), Ok(None));
        assert!(matches!(cache.get(&D, 3), Known::Key(e) if e == fresh));
    }

    #[test]
    fn evicting_many_refuses_older_fills_everywhere() {
        let cache = KeyCache::new(60_000);
        let ticket = cache.ticket(&D);
        // A workspace was suspended: every fill that began before is stale.
        cache.evict_where(|_: &Entry| true, false, drop);
        assert!(cache.insert(D, ticket, active(0)).is_err());
        assert!(!cache.insert_unknown(D, ticket, 10));
        // An eviction of another digest in another shard does not disturb this one.
        let ticket = cache.ticket(&D);
        cache.evict(&OTHER);
        assert!(cache.insert(D, ticket, active(0)).is_ok());
    }

    #[test]
    fn an_unknown_digest_created_meanwhile_is_not_remembered_as_unknown() {
        let cache: KeyCache<Entry> = KeyCache::new(60_000);
        let ticket = cache.ticket(&D);
        // The key is created (and its digest evicted) while the lookup found nothing.
        cache.evict(&D);
        assert!(!cache.insert_unknown(D, ticket, 30_000));
        assert!(matches!(cache.get(&D, 1), Known::Miss));
        let ticket = cache.ticket(&D);
        assert!(cache.insert_unknown(D, ticket, 30_000));
        assert!(matches!(cache.get(&D, 1), Known::Unknown));
        assert!(matches!(cache.get(&D, 30_000), Known::Miss));
    }

    #[test]
    fn entries_expire_after_the_maximum_age() {
        let cache = KeyCache::new(1_000);
        let ticket = cache.ticket(&D);
        cache.insert(D, ticket, active(0)).unwrap();
        assert!(matches!(cache.get(&D, 1_000), Known::Key(_)));
        assert!(matches!(cache.get(&D, 1_001), Known::Miss));
        let mut dropped = Vec::new();
        cache.purge(1_001, 1_001, |e| dropped.push(e));
        assert_eq!(dropped, vec![active(0)]);
        assert!(cache.is_empty());
    }

    #[test]
    fn age_measured_at_an_earlier_time_keeps_old_entries() {
        let cache = KeyCache::new(1_000);
        let ticket = cache.ticket(&D);
        cache.insert(D, ticket, active(0)).unwrap();
        // Fresh at 900 (when the store went away), long past the maximum age at 5_000.
        assert!(matches!(cache.get_as_of(&D, 5_000, 900), Known::Key(_)));
        assert!(matches!(cache.get_as_of(&D, 5_000, 1_001), Known::Miss));
        cache.purge(5_000, 900, drop);
        assert_eq!(cache.len(), 1);
        cache.purge(5_000, 5_000, drop);
        assert!(cache.is_empty());
    }
}
