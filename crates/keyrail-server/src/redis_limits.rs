//! Rate limits shared by every node through Redis (`redis_url`), and what happens while Redis is
//! unreachable (`[limits] on_redis_error`).
//!
//! One decision is one round trip: a Lua script runs core's GCRA step atomically on the key's
//! stored theoretical arrival time (a hash `ms`/`behind`/`per`, as [`Tat`] holds it), writes the
//! new state with a time-to-live of "until the bucket is full again", and answers whether the
//! request passed together with the state it found. The node then builds the [`Decision`] (the
//! `RateLimit` fields, `Retry-After`) from that state with core's own [`gcra`], so the figures a
//! client sees are exactly those of the in-process limiter.
//!
//! Time: the script is given `now` from the node's clock (the `Clock` every other rule uses, so
//! tests can move it), not Redis `TIME`. Nodes are expected to be NTP-synced; a skew of `s` ms
//! between two nodes shifts a key's refill by at most `s` ms and never lets more than the burst
//! through at one instant.
//!
//! Lua numbers are doubles: the arithmetic is exact while `window_ms * count < 2^53` (a million
//! per day is far inside). A rate changed while state is stored is converted with one rounding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use keyrail_core::limits::Rate;
use keyrail_core::ratelimit::{Decision, LimiterError, RateLimiter, Tat, gcra};
use keyrail_core::time::Timestamp;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::limiter::{FailureTracker, MemoryLimiter};

/// How long one Redis call may take before the limiter gives up on it (a hung Redis never hangs
/// a request).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// Prefix of every key keyrail writes in Redis.
pub const NAMESPACE: &str = "keyrail:rl:";

/// Keys longer than this are replaced by their SHA-256 (hex) so a Redis key stays bounded.
const MAX_KEY: usize = 128;

/// KEYS[1]: the state hash; KEYS[2], optional: a failed-authentication block (see
/// [`FAILURE_LUA`]) that gates the step. ARGV: now_ms, count, interval (= window ms), cost.
/// Returns {allowed (0/1), ms (-1: no state), behind, per}: the state as found; or, while the
/// gate is blocked, {-1, end of the block in ms, 0, 1} with nothing spent.
const GCRA_LUA: &str = r#"
local now = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if KEYS[2] then
  local blocked = tonumber(redis.call('GET', KEYS[2]))
  if blocked and now < blocked then return {-1, string.format('%.0f', blocked), '0', '1'} end
end
local st = redis.call('HMGET', KEYS[1], 'ms', 'behind', 'per')
local ms = tonumber(st[1])
local behind0 = tonumber(st[2]) or 0
local per0 = tonumber(st[3]) or 1
local tolerance = interval * count
local start = 0
local capped = false
if ms then
  local per = math.max(per0, 1)
  local behind = math.min(math.max(behind0, 0), per - 1)
  if per ~= count then behind = math.floor(behind * count / per) end
  local d = ms - now
  if d > interval then
    capped = true
    start = tolerance
  elseif d > 0 then
    start = math.max(d * count - behind, 0)
  end
end
local function save(units)
  local whole = math.floor(units / count)
  if whole * count > units then whole = whole - 1 end
  if whole * count < units then whole = whole + 1 end
  redis.call('HSET', KEYS[1], 'ms', string.format('%.0f', now + whole),
    'behind', string.format('%.0f', whole * count - units), 'per', string.format('%.0f', count))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(whole, 1)))
end
local allowed = 0
if cost <= count and start + math.max(cost, 1) * interval <= tolerance then
  allowed = 1
  if cost > 0 then
    save(start + cost * interval)
  elseif capped then
    save(start)
  end
elseif capped then
  save(start)
end
return {allowed, st[1] or '-1', st[2] or '0', st[3] or '1'}
"#;

/// KEYS[1]: the recent failure times (a list, newest first), KEYS[2]: the end of the block.
/// ARGV: now_ms, count, window_ms, block_ms. Returns the end of the block in ms when this failure
/// started it, minus that end when the source was blocked already, 0 when it is not blocked.
/// The steps of core's `FailureWindow::record_failure`: a failure during a block does not extend
/// it; `count` failures within the window start a block and clear the log.
const FAILURE_LUA: &str = r#"
local now = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local block = tonumber(ARGV[4])
local blocked = tonumber(redis.call('GET', KEYS[2]))
if blocked and now < blocked then return -blocked end
redis.call('LPUSH', KEYS[1], string.format('%.0f', now))
redis.call('LTRIM', KEYS[1], 0, count - 1)
local horizon = now - window
local inside = 0
for _, t in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if tonumber(t) > horizon then inside = inside + 1 end
end
if inside >= count then
  local untl = now + block
  redis.call('SET', KEYS[2], string.format('%.0f', untl), 'PX', string.format('%.0f', math.max(block, 1)))
  redis.call('DEL', KEYS[1])
  return untl
end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(window, 1)))
return 0
"#;

/// What a node does with a limit while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Refuse the request: 503 `store_unavailable` with `Retry-After`.
    Deny,
    /// Let the request through unlimited.
    Allow,
    /// Limit it with this node's in-process limiter (limits then hold per node).
    #[default]
    Local,
}

/// The Redis key for a limiter key: namespaced, and bounded in length.
pub fn redis_key(key: &str) -> String {
    if key.len() <= MAX_KEY {
        return format!("{NAMESPACE}{key}");
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = String::with_capacity(NAMESPACE.len() + 3 + 64);
    out.push_str(NAMESPACE);
    out.push_str("h:");
    for b in digest.as_ref() {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// What one GCRA step in Redis found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Whether the request passed (and was recorded), and the state found.
    Done(bool, Option<Tat>),
    /// The gate is blocked until this instant (ms); nothing was spent.
    Blocked(i64),
}

/// One Redis call, bounded by [`CALL_TIMEOUT`]; its failure as the limiter's.
async fn bounded<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, LimiterError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LimiterError::Unavailable(e.category().to_string())),
        Err(_) => Err(LimiterError::Unavailable("timed out".into())),
    }
}

/// What a limit answers under `deny` while Redis is known down and was not asked.
fn not_asked() -> LimiterError {
    LimiterError::Unavailable("redis is down (not asked)".into())
}

/// GCRA state in one Redis, through a connection that reconnects by itself.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Arc<redis::Script>,
}

impl RedisLimiter {
    /// Prepares the connection without opening it (a Redis that is down at start is an outage
    /// like any other, not a failed start). Errors only for a URL the client cannot use or a
    /// `ca_file` (PEM; empty: the system's roots, for `rediss://`) that cannot be read.
    pub fn new(url: &str, ca_file: &std::path::Path) -> Result<Self, String> {
        let unusable = |e: redis::RedisError| format!("redis_url is not usable: {}", e.category());
        let client = if url.starts_with("rediss://") {
            // The redis crate builds its TLS config on the process default provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root_cert = if ca_file.as_os_str().is_empty() {
                None
            } else {
                Some(std::fs::read(ca_file).map_err(|e| {
                    format!("redis_ca_file {} cannot be read: {e}", ca_file.display())
                })?)
            };
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert,
            };
            redis::Client::build_with_tls(url, certs).map_err(unusable)?
        } else {
            redis::Client::open(url).map_err(unusable)?
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("redis_url is not usable: {}", e.category()))?;
        Ok(Self {
            conn,
            script: Arc::new(redis::Script::new(GCRA_LUA)),
        })
    }

    /// One GCRA step in Redis: the state found and whether the request passed (and was
    /// recorded); or, with a `gate` (the Redis key of a failed-authentication block) that is
    /// blocked, [`Step::Blocked`] and nothing spent.
    pub async fn step(
        &self,
        key: &str,
        gate: Option<&str>,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Step, LimiterError> {
        let mut conn = self.conn.clone();
        let interval = (rate.window.secs().saturating_mul(1000)).max(1);
        let mut call = self.script.key(redis_key(key));
        if let Some(gate) = gate {
            call.key(gate);
        }
        call.arg(now.millis())
            .arg(rate.count)
            .arg(interval)
            .arg(cost);
        let reply: (i64, String, String, String) = bounded(call.invoke_async(&mut conn)).await?;
        let (allowed, ms, behind, per) = reply;
        if allowed < 0 {
            return Ok(Step::Blocked(ms.parse().unwrap_or(i64::MAX)));
        }
        let tat = match ms.parse::<i64>() {
            Ok(ms) if ms >= 0 => Some(Tat {
                ms,
                behind: behind.parse().unwrap_or(0),
                per: per.parse().unwrap_or(1),
            }),
            _ => None,
        };
        Ok(Step::Done(allowed == 1, tat))
    }

    /// Whether Redis answers a `PING` within the call timeout.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(tokio::time::timeout(CALL_TIMEOUT, ping).await, Ok(Ok(_)))
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(
        &self,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        if rate.count == 0 {
            // Nothing passes; no state to read.
            return Ok(gcra(None, now.millis(), rate, cost).0);
        }
        match self.step(key, None, rate, cost, now).await? {
            Step::Done(allowed, found) => Ok(decided(allowed, found, rate, cost, now)),
            // Not asked for: no gate was given.
            Step::Blocked(_) => Err(LimiterError::Unavailable("unexpected block".into())),
        }
    }
}

/// The decision for a step Redis took: core's figures for the state found, with Redis's answer
/// (what it recorded is what counts).
fn decided(allowed: bool, found: Option<Tat>, rate: Rate, cost: u32, now: Timestamp) -> Decision {
    let (mut decision, _) = gcra(found, now.millis(), rate, cost);
    decision.allowed = allowed;
    decision
}

/// While Redis is down, at most one call in this span tries it (the others go straight to
/// `on_redis_error`), so an unreachable Redis costs requests nothing, not a timeout each.
pub const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Redis health as this node sees it: a gauge, an error count, one log line per outage.
pub struct RedisHealth {
    down: AtomicBool,
    errors: AtomicU64,
    /// While down: when (ms after `origin`) the next call may try Redis.
    retry_at: AtomicU64,
    origin: std::time::Instant,
}

impl Default for RedisHealth {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }
}

impl RedisHealth {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this call should ask Redis: always while it is up; while it is down, one call per
    /// [`RETRY_EVERY`] (the probe that notices it is back).
    fn should_try(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.elapsed_ms();
        let at = self.retry_at.load(Ordering::Relaxed);
        now >= at
            && self
                .retry_at
                .compare_exchange(at, now + retry_ms(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn failed(&self, error: &LimiterError, mode: OnRedisError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.retry_at
            .store(self.elapsed_ms() + retry_ms(), Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, on_redis_error = ?mode, "redis unreachable: rate limits fall back to on_redis_error until it answers again");
        }
    }

    fn answered(&self) {
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("redis answers again: rate limits are shared again");
        }
    }

    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

fn retry_ms() -> u64 {
    u64::try_from(RETRY_EVERY.as_millis()).unwrap_or(u64::MAX)
}

/// The limiter of a node with `redis_url`: Redis while it answers, `on_redis_error` otherwise.
pub struct SharedLimiter {
    pub redis: RedisLimiter,
    pub local: Arc<MemoryLimiter>,
    pub mode: OnRedisError,
    pub health: RedisHealth,
}

impl SharedLimiter {
    pub fn new(redis: RedisLimiter, local: Arc<MemoryLimiter>, mode: OnRedisError) -> Self {
        Self {
            redis,
            local,
            mode,
            health: RedisHealth::default(),
        }
    }

    /// Prometheus lines: `keyrail_redis_up` and `keyrail_redis_errors_total`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP keyrail_redis_up 1 while Redis answers the rate limiter\n# TYPE keyrail_redis_up gauge\nkeyrail_redis_up {}",
            u8::from(self.health.is_up())
        );
        let _ = writeln!(
            out,
            "# HELP keyrail_redis_errors_total Rate-limit calls Redis did not answer\n# TYPE keyrail_redis_errors_total counter\nkeyrail_redis_errors_total {}",
            self.health.errors()
        );
    }
}

#[async_trait]
impl RateLimiter for SharedLimiter {
    async fn check(
        &self,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        if !self.health.should_try() {
            return self.without_redis(None, key, rate, cost, now);
        }
        match self.redis.check(key, rate, cost, now).await {
            Ok(d) => {
                self.health.answered();
                Ok(d)
            }
            Err(e) => self.without_redis(Some(e), key, rate, cost, now),
        }
    }
}

impl SharedLimiter {
    /// The decision while Redis did not answer (`e`), or was not asked (`None`: known down,
    /// between probes): a failure is counted and logged, then `on_redis_error` decides.
    fn without_redis(
        &self,
        e: Option<LimiterError>,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError> {
        if let Some(e) = &e {
            self.health.failed(e, self.mode);
        }
        match self.mode {
            OnRedisError::Deny => Err(e.unwrap_or_else(not_asked)),
            OnRedisError::Allow => Ok(Decision {
                allowed: true,
                limit: rate.count,
                remaining: rate.count.saturating_sub(cost),
                reset_after_secs: 0,
                retry_after_secs: 0,
            }),
            OnRedisError::Local => Ok(self.local.check_sync(key, rate, cost, now)),
        }
    }
}

/// Whole seconds from `now_ms` to `until_ms`, rounded up, at least 1.
fn secs_until(until_ms: i64, now_ms: i64) -> u64 {
    let ms = u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0);
    ms.div_ceil(1000).max(1)
}

/// A rate-limit decision gated by a failed-authentication block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gated {
    Decided(Decision),
    /// The source is blocked for this many more seconds; nothing was spent.
    Blocked(u64),
}

/// A failure the block counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Seconds until the block ends.
    pub retry_after: u64,
    /// The source was blocked before this failure (by another node, say), not by it.
    pub already: bool,
}

/// The failed-authentication IP block of a node with `redis_url`: counted and enforced in
/// Redis, so a source blocked on one node is blocked on all; `on_redis_error` while it is down.
///
/// Every block this node hears of from Redis is also kept in `local`, so a source known to be
/// blocked is refused without a round trip. Where the block is checked with the request's
/// per-principal limit ([`SharedFailures::check_gated`], one script), the request asks Redis
/// nothing else about it: a block decided on another node is in force here from the next
/// request on, with no round trip of its own.
pub struct SharedFailures {
    redis: RedisLimiter,
    script: redis::Script,
    pub local: Arc<FailureTracker>,
    limits: Arc<SharedLimiter>,
}

impl SharedFailures {
    /// Shares `limits`' connection, mode and health.
    pub fn new(limits: Arc<SharedLimiter>, local: Arc<FailureTracker>) -> Self {
        Self {
            redis: limits.redis.clone(),
            script: redis::Script::new(FAILURE_LUA),
            local,
            limits,
        }
    }

    fn log_key(key: &str) -> String {
        redis_key(&format!("fa:{key}"))
    }

    fn block_key(key: &str) -> String {
        redis_key(&format!("fb:{key}"))
    }

    /// Redis did not answer (`e`) or was not asked (`None`): counted, then `Err` under `deny`.
    fn down(&self, e: Option<LimiterError>) -> Result<(), LimiterError> {
        if let Some(e) = &e {
            self.limits.health.failed(e, self.limits.mode);
        }
        match self.limits.mode {
            OnRedisError::Deny => Err(e.unwrap_or_else(not_asked)),
            _ => Ok(()),
        }
    }

    /// Whether this node knows `key` to be blocked: blocks heard of from Redis, and while Redis
    /// is down under `local`, this node's own count. No round trip.
    pub fn is_blocked_here(&self, key: &str, now: Timestamp) -> Option<u64> {
        self.local.is_blocked(key, now)
    }

    /// `Some(retry after seconds)` while `key` is blocked, asking Redis (one round trip);
    /// `Err` only while Redis is down under `on_redis_error = "deny"`.
    pub async fn is_blocked(&self, key: &str, now: Timestamp) -> Result<Option<u64>, LimiterError> {
        if let Some(secs) = self.is_blocked_here(key, now) {
            return Ok(Some(secs));
        }
        if !self.limits.health.should_try() {
            return self.fallback_blocked(key, now, None);
        }
        let mut conn = self.redis.conn.clone();
        let cmd = redis::cmd("GET").arg(Self::block_key(key)).clone();
        match bounded(cmd.query_async::<Option<i64>>(&mut conn)).await {
            Ok(until) => {
                self.limits.health.answered();
                Ok(until.and_then(|u| self.heard(key, u, now)))
            }
            Err(e) => self.fallback_blocked(key, now, Some(e)),
        }
    }

    /// Keeps a block Redis reported (`until` ms); its seconds left, if not over.
    fn heard(&self, key: &str, until: i64, now: Timestamp) -> Option<u64> {
        let now_ms = now.millis();
        (now_ms < until).then(|| {
            self.local.learn_block(key, until, now);
            secs_until(until, now_ms)
        })
    }

    fn fallback_blocked(
        &self,
        key: &str,
        now: Timestamp,
        e: Option<LimiterError>,
    ) -> Result<Option<u64>, LimiterError> {
        self.down(e)?;
        Ok(match self.limits.mode {
            OnRedisError::Local => self.local.is_blocked(key, now),
            _ => None,
        })
    }

    /// The rate limit `key` (`rate`, `cost`) unless `source` is blocked, in one round trip:
    /// a blocked source spends nothing. While Redis is down: `on_redis_error`, with this node's
    /// own view of the block under `local`.
    pub async fn check_gated(
        &self,
        source: &str,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Gated, LimiterError> {
        let limits = &self.limits;
        let e = if limits.health.should_try() {
            let gate = Self::block_key(source);
            match limits.redis.step(key, Some(&gate), rate, cost, now).await {
                Ok(Step::Done(allowed, found)) => {
                    limits.health.answered();
                    return Ok(Gated::Decided(decided(allowed, found, rate, cost, now)));
                }
                Ok(Step::Blocked(until)) => {
                    limits.health.answered();
                    // A block that just ended: one more step, without the gate, would pass it;
                    // the request is refused for one second at most, as the block says.
                    let secs = self.heard(source, until, now).unwrap_or(1);
                    return Ok(Gated::Blocked(secs));
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        if limits.mode == OnRedisError::Local
            && let Some(secs) = self.local.is_blocked(source, now)
        {
            // Counted as the outage it is, as the limit below would be.
            if let Some(e) = &e {
                limits.health.failed(e, limits.mode);
            }
            return Ok(Gated::Blocked(secs));
        }
        limits
            .without_redis(e, key, rate, cost, now)
            .map(Gated::Decided)
    }

    /// Counts a failed authentication from `key`: `Some` when it is now blocked (by this
    /// failure, or already).
    pub async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Blocked>, LimiterError> {
        let fallback = |this: &Self| {
            Ok(match this.limits.mode {
                OnRedisError::Local => {
                    this.local
                        .record_failure(key, now)
                        .map(|retry_after| Blocked {
                            retry_after,
                            already: false,
                        })
                }
                _ => None,
            })
        };
        if !self.limits.health.should_try() {
            self.down(None)?;
            return fallback(self);
        }
        let policy = self.local.policy();
        let mut conn = self.redis.conn.clone();
        let mut call = self.script.key(Self::log_key(key));
        call.key(Self::block_key(key))
            .arg(now.millis())
            .arg(policy.failures.count.max(1))
            .arg(policy.failures.window.secs().saturating_mul(1000))
            .arg(policy.block.secs().saturating_mul(1000));
        let e = match bounded(call.invoke_async::<i64>(&mut conn)).await {
            Ok(until) => {
                self.limits.health.answered();
                return Ok(self
                    .heard(key, until.saturating_abs(), now)
                    .map(|retry_after| Blocked {
                        retry_after,
                        already: until < 0,
                    }));
            }
            Err(e) => e,
        };
        self.down(Some(e))?;
        fallback(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_bounded() {
        assert_eq!(
            redis_key("login:ip:203.0.113.7"),
            "keyrail:rl:login:ip:203.0.113.7"
        );
        let long = "x".repeat(10_000);
        let k = redis_key(&long);
        assert!(
            k.starts_with("keyrail:rl:h:") && k.len() == NAMESPACE.len() + 2 + 64,
            "{k}"
        );
        assert_ne!(k, redis_key(&"y".repeat(10_000)));
    }

    #[tokio::test]
    async fn a_url_the_client_cannot_use_is_refused() {
        let none = std::path::Path::new("");
        let e = RedisLimiter::new("http://:secret@nope", none)
            .err()
            .unwrap();
        assert!(!e.contains("secret"), "{e}");
        let e = RedisLimiter::new(
            "rediss://:secret@cache:6380",
            "/nonexistent/ca.pem".as_ref(),
        )
        .err()
        .unwrap();
        assert!(e.contains("redis_ca_file") && !e.contains("secret"), "{e}");
        // A Redis that is down is no reason to refuse: the connection is made lazily.
        assert!(RedisLimiter::new("redis://127.0.0.1:1/0", none).is_ok());
        assert!(RedisLimiter::new("rediss://127.0.0.1:1/0", none).is_ok());
    }
}
