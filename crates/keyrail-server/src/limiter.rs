//! In-process rate limiting: GCRA state per key ([`MemoryLimiter`]), the failed-authentication
//! IP block ([`FailureTracker`]), and the IETF `RateLimit` fields on responses.
//!
//! Both maps are sharded (one mutex per shard, never held across an await) and bounded: an
//! entry that means nothing any more (a full bucket, a failure log with nothing in its window)
//! is dropped by [`MemoryLimiter::purge`] / [`FailureTracker::purge`], which the server calls from
//! a periodic task, and opportunistically when a shard has doubled since its last clean-up. A
//! check on a key already present allocates nothing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::Timestamp;
use keyrail_core::limits::Rate;
use keyrail_core::ratelimit::{
    Decision, FailurePolicy, FailureWindow, LimiterError, RateLimiter, Tat, gcra,
};

use crate::error::ApiError;

/// `RateLimit-Policy: "name";q=LIMIT;w=WINDOW_SECONDS`
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit: "name";r=REMAINING;t=SECONDS_TO_RESET`
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const DEFAULT_SHARDS: usize = 64;
/// A shard does not clean itself up opportunistically below this many entries.
const MIN_PURGE_LEN: usize = 1024;

/// A map from string keys, split into shards that each have their own lock.
struct Sharded<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Random per map, so that which keys share a shard cannot be planned from outside.
    seed: u64,
}

struct Shard<V> {
    map: HashMap<Box<str>, V>,
    /// Inserting a new key into a shard this full first drops the dead entries.
    purge_at: usize,
}

impl<V> Sharded<V> {
    fn new(shards: usize) -> Self {
        let n = shards.clamp(1, 4096).next_power_of_two();
        Self {
            shards: (0..n)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        purge_at: MIN_PURGE_LEN,
                    })
                })
                .collect(),
            seed: RandomState::new().hash_one("keyrail"),
        }
    }

    /// Picks the shard with a quick seeded mix of the key: shards need spread, not collision
    /// resistance (the map inside each shard hashes with SipHash), and this saves hashing every
    /// key twice with SipHash.
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard<V>> {
        fn mix(h: u64) -> u64 {
            let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^ (h >> 29)
        }
        let mut h = self.seed ^ key.len() as u64;
        let mut bytes = key.as_bytes();
        while let Some((chunk, rest)) = bytes.split_first_chunk::<8>() {
            h = mix(h ^ u64::from_le_bytes(*chunk));
            bytes = rest;
        }
        let mut tail = [0u8; 8];
        tail[..bytes.len()].copy_from_slice(bytes);
        h = mix(h ^ u64::from_le_bytes(tail));
        // The high bits are the best mixed; truncating to usize is intended.
        let i = (h >> 32) as usize & (self.shards.len() - 1);
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every entry for which `dead` holds, shard by shard; returns how many.
    fn purge(&self, dead: impl Fn(&V) -> bool) -> usize {
        let mut removed = 0;
        for shard in &*self.shards {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            removed += s.purge(&dead);
        }
        removed
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

impl<V> Shard<V> {
    fn purge(&mut self, dead: impl Fn(&V) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, v| !dead(v));
        let len = self.map.len();
        // Give back the memory of a flood that has passed.
        if self.map.capacity() > 4 * len.max(MIN_PURGE_LEN) {
            self.map.shrink_to(2 * len);
        }
        self.purge_at = (2 * len).max(MIN_PURGE_LEN);
        before - len
    }

    /// Adds a key that is not present yet, cleaning up first if the shard has doubled.
    fn insert_new(&mut self, key: &str, value: V, dead: impl Fn(&V) -> bool) {
        if self.map.len() >= self.purge_at {
            self.purge(dead);
        }
        self.map.insert(key.into(), value);
    }
}

/// GCRA rate limits kept in this process: one [`Tat`] per key.
pub struct MemoryLimiter {
    map: Sharded<Tat>,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }

    /// `shards` is rounded up to a power of two (1..=4096).
    pub fn with_shards(shards: usize) -> Self {
        Self {
            map: Sharded::new(shards),
        }
    }

    /// The check itself, synchronous: what [`RateLimiter::check`] does, without boxing a future
    /// (for hot paths that know they hold a `MemoryLimiter`).
    pub fn check_sync(&self, key: &str, rate: Rate, cost: u32, now: Timestamp) -> Decision {
        let now_ms = now.millis();
        let mut shard = self.map.shard(key);
        if let Some(slot) = shard.map.get_mut(key) {
            let (decision, next) = gcra(Some(*slot), now_ms, rate, cost);
            if let Some(tat) = next {
                *slot = tat;
            }
            return decision;
        }
        let (decision, next) = gcra(None, now_ms, rate, cost);
        if let Some(tat) = next {
            shard.insert_new(key, tat, |t| t.is_spent(now_ms));
        }
        decision
    }

    /// Drops the keys whose bucket is full again at `now`; returns how many.
    pub fn purge(&self, now: Timestamp) -> usize {
        let now_ms = now.millis();
        self.map.purge(|t| t.is_spent(now_ms))
    }

    /// Keys held (including spent ones not purged yet).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(
        &self,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        Ok(self.check_sync(key, rate, cost, now))
    }
}

/// The failed-authentication block (API.md, Credentials), per source key (the client IP).
pub struct FailureTracker {
    policy: FailurePolicy,
    map: Sharded<FailureWindow>,
}

impl FailureTracker {
    pub fn new(policy: FailurePolicy) -> Self {
        Self {
            policy,
            map: Sharded::new(DEFAULT_SHARDS),
        }
    }

    pub fn policy(&self) -> &FailurePolicy {
        &self.policy
    }

    /// `Some(retry after seconds)` while `key` is blocked.
    pub fn is_blocked(&self, key: &str, now: Timestamp) -> Option<u64> {
        let shard = self.map.shard(key);
        shard.map.get(key)?.blocked(now.millis())
    }

    /// Counts a failed authentication from `key`. `Some(retry after seconds)` when `key` is now
    /// blocked (by this failure or already).
    pub fn record_failure(&self, key: &str, now: Timestamp) -> Option<u64> {
        let now_ms = now.millis();
        let policy = &self.policy;
        let mut shard = self.map.shard(key);
        if let Some(window) = shard.map.get_mut(key) {
            return window.record_failure(policy, now_ms);
        }
        let mut window = FailureWindow::new();
        let blocked = window.record_failure(policy, now_ms);
        shard.insert_new(key, window, |w| w.is_idle(policy, now_ms));
        blocked
    }

    /// Takes a block of `key` decided elsewhere (another node, through Redis) ending at
    /// `until_ms`, so this node refuses the source without asking again.
    pub fn learn_block(&self, key: &str, until_ms: i64, now: Timestamp) {
        let now_ms = now.millis();
        if until_ms <= now_ms {
            return;
        }
        let policy = &self.policy;
        let mut shard = self.map.shard(key);
        if let Some(window) = shard.map.get_mut(key) {
            window.learn_block(until_ms);
            return;
        }
        let mut window = FailureWindow::new();
        window.learn_block(until_ms);
        shard.insert_new(key, window, |w| w.is_idle(policy, now_ms));
    }

    /// Drops the sources with neither a block nor a failure inside the window; returns how many.
    pub fn purge(&self, now: Timestamp) -> usize {
        let now_ms = now.millis();
        self.map.purge(|w| w.is_idle(&self.policy, now_ms))
    }

    /// Sources held (including idle ones not purged yet).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends `s` as a structured-field string: quoted, `"` and `\` escaped, anything outside
/// printable ASCII left out.
fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
}

fn put(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    // Only printable ASCII goes in, so this cannot fail.
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name.clone(), v);
    }
}

/// Writes `RateLimit-Policy` and `RateLimit` for `decision` under `policy_name`, and
/// `Retry-After` when the request was refused.
pub fn rate_limit_headers(
    headers: &mut HeaderMap,
    policy_name: &str,
    rate: Rate,
    decision: &Decision,
) {
    let mut policy = String::with_capacity(policy_name.len() + 32);
    push_sf_string(&mut policy, policy_name);
    let mut state = policy.clone();
    let _ = write!(policy, ";q={};w={}", rate.count, rate.window.secs());
    let _ = write!(
        state,
        ";r={};t={}",
        decision.remaining, decision.reset_after_secs
    );
    put(headers, &RATELIMIT_POLICY, policy);
    put(headers, &RATELIMIT, state);
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.retry_after_secs.max(1)),
        );
    }
}

/// 429 `too_many_requests` with `Retry-After` from a refused decision.
pub fn too_many(decision: &Decision) -> ApiError {
    too_many_after(decision.retry_after_secs)
}

/// 429 `too_many_requests` with `Retry-After: secs` (at least 1), as for the IP block.
pub fn too_many_after(secs: u64) -> ApiError {
    ApiError::for_status(StatusCode::TOO_MANY_REQUESTS).retry_after(secs)
}

/// The whole 429 response of a rate-limited endpoint: the error body, `Retry-After` and the
/// `RateLimit` fields.
pub fn too_many_response(policy_name: &str, rate: Rate, decision: &Decision) -> Response {
    let mut resp = too_many(decision).into_response();
    rate_limit_headers(resp.headers_mut(), policy_name, rate, decision);
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keyrail_core::limits::Span;

    use super::*;

    const T0: i64 = 1_795_449_020_000;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            window: Span::from_secs(secs),
        }
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let r = rate(100, 60);
        let limiter = MemoryLimiter::new();
        let d = limiter.check_sync("k", r, 1, at(T0));
        let mut h = HeaderMap::new();
        rate_limit_headers(&mut h, "key", r, &d);
        assert_eq!(h["ratelimit-policy"], r#""key";q=100;w=60"#);
        assert_eq!(h["ratelimit"], r#""key";r=99;t=1"#);
        assert!(h.get(header::RETRY_AFTER).is_none());

        let r = rate(1, 900);
        let _ = limiter.check_sync("login", r, 1, at(T0));
        let d = limiter.check_sync("login", r, 1, at(T0 + 100_500));
        assert!(!d.allowed);
        let mut h = HeaderMap::new();
        rate_limit_headers(&mut h, "login", r, &d);
        assert_eq!(h["ratelimit-policy"], r#""login";q=1;w=900"#);
        assert_eq!(h["ratelimit"], r#""login";r=0;t=800"#);
        assert_eq!(h[header::RETRY_AFTER], "800");
    }

    #[test]
    fn policy_names_are_escaped() {
        let d = Decision {
            allowed: true,
            limit: 5,
            remaining: 4,
            reset_after_secs: 12,
            retry_after_secs: 0,
        };
        let mut h = HeaderMap::new();
        rate_limit_headers(&mut h, "a\"b\\c\né", rate(5, 60), &d);
        assert_eq!(h["ratelimit-policy"], r#""a\"b\\c";q=5;w=60"#);
        assert_eq!(h["ratelimit"], r#""a\"b\\c";r=4;t=12"#);
    }

    #[tokio::test]
    async fn too_many_is_a_429_with_retry_after() {
        let d = Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_after_secs: 60,
            retry_after_secs: 6,
        };
        let e = too_many(&d);
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(6))
        );
        assert_eq!(too_many_after(0).retry_after, Some(1));

        let resp = too_many_response("key", rate(10, 60), &d);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = resp.headers();
        assert_eq!(h[header::RETRY_AFTER], "6");
        assert_eq!(h["ratelimit-policy"], r#""key";q=10;w=60"#);
        assert_eq!(h["ratelimit"], r#""key";r=0;t=60"#);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "Too many requests", "code": "too_many_requests"})
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_checks_never_exceed_the_limit() {
        let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryLimiter::new());
        let r = rate(10, 60);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut allowed = 0;
                    for _ in 0..100 {
                        if limiter
                            .check("key:one", r, 1, at(T0))
                            .await
                            .unwrap()
                            .allowed
                        {
                            allowed += 1;
                        }
                        tokio::task::yield_now().await;
                    }
                    allowed
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 10);
    }

    #[test]
    fn threads_hammering_many_keys_stay_exact() {
        let limiter = MemoryLimiter::with_shards(4);
        let r = rate(7, 1);
        let allowed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..2_000 {
                        let key = format!("k{}", i % 50);
                        if limiter.check_sync(&key, r, 1, at(T0)).allowed {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.into_inner(), 50 * 7);
        assert_eq!(limiter.len(), 50);
    }

    #[test]
    fn looks_and_refusals_store_nothing() {
        let limiter = MemoryLimiter::new();
        let r = rate(10, 60);
        let d = limiter.check_sync("a", r, 0, at(T0));
        assert_eq!((d.allowed, d.remaining), (true, 10));
        let d = limiter.check_sync("b", r, 11, at(T0));
        assert!(!d.allowed);
        assert!(limiter.is_empty());
        assert!(limiter.check_sync("c", r, 3, at(T0)).allowed);
        assert_eq!(limiter.check_sync("c", r, 0, at(T0)).remaining, 7);
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn purge_drops_full_buckets_only() {
        let limiter = MemoryLimiter::new();
        let r = rate(10, 60);
        for i in 0..100 {
            // Key i holds i + 1 requests: its bucket is full again 6 s per request later.
            for _ in 0..=(i % 10) {
                limiter.check_sync(&format!("k{i}"), r, 1, at(T0));
            }
        }
        assert_eq!(limiter.len(), 100);
        assert_eq!(limiter.purge(at(T0)), 0);
        assert_eq!(limiter.purge(at(T0 + 6_000)), 10);
        assert_eq!(limiter.purge(at(T0 + 30_000)), 40);
        assert_eq!(limiter.len(), 50);
        // What is left still limits.
        assert_eq!(limiter.check_sync("k9", r, 0, at(T0 + 30_000)).remaining, 5);
        assert_eq!(limiter.purge(at(T0 + 60_000)), 50);
        assert!(limiter.is_empty());
    }

    #[test]
    fn memory_stays_bounded_without_a_purge_task() {
        // A stream of distinct keys, one per millisecond, each live for one second: about 1,000
        // live at any time. Opportunistic clean-up keeps the map near that.
        let limiter = MemoryLimiter::with_shards(1);
        let r = rate(1, 1);
        let mut max = 0;
        for i in 0..200_000i64 {
            assert!(limiter.check_sync(&i.to_string(), r, 1, at(T0 + i)).allowed);
            max = max.max(limiter.len());
        }
        assert!(max <= 2 * MIN_PURGE_LEN + 1, "{max}");
    }

    #[test]
    fn failure_tracker_blocks_one_source() {
        let t = FailureTracker::new(FailurePolicy::default());
        let ip = "203.0.113.7";
        for i in 0..9 {
            assert_eq!(t.record_failure(ip, at(T0 + i * 1_000)), None);
            assert_eq!(t.is_blocked(ip, at(T0 + i * 1_000)), None);
        }
        assert_eq!(t.record_failure(ip, at(T0 + 9_000)), Some(900));
        assert_eq!(t.is_blocked(ip, at(T0 + 9_000)), Some(900));
        assert_eq!(t.is_blocked(ip, at(T0 + 9_001)), Some(900));
        assert_eq!(t.is_blocked(ip, at(T0 + 609_000)), Some(300));
        assert_eq!(t.record_failure(ip, at(T0 + 609_000)), Some(300));
        assert_eq!(t.is_blocked("198.51.100.1", at(T0 + 9_000)), None);
        assert_eq!(t.is_blocked(ip, at(T0 + 909_000)), None);
        // After the block, a fresh count.
        assert_eq!(t.record_failure(ip, at(T0 + 909_000)), None);
    }

    #[test]
    fn failure_tracker_purges_idle_sources() {
        let policy = FailurePolicy {
            failures: rate(3, 60),
            block: Span::from_secs(120),
        };
        let t = FailureTracker::new(policy);
        assert_eq!(*t.policy(), policy);
        t.record_failure("once", at(T0));
        for i in 0..3 {
            t.record_failure("blocked", at(T0 + i));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.purge(at(T0 + 59_999)), 0);
        assert_eq!(t.purge(at(T0 + 60_000)), 1);
        assert_eq!(t.is_blocked("blocked", at(T0 + 60_000)), Some(61));
        assert_eq!(t.purge(at(T0 + 120_001)), 0);
        assert_eq!(t.purge(at(T0 + 120_002)), 1);
        assert!(t.is_empty());
    }
}
