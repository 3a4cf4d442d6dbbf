//! The verify hot path, shared by `POST /keys/verify`, forward-auth and API-key authentication
//! on every endpoint: precheck the shape and checksum (no store), SHA-256, look the digest up in
//! the in-process cache (a miss reads the store once; unknown digests are remembered briefly),
//! then status, expiry, scopes, rate limit and credits. Nothing here holds a lock across an
//! await, and nothing grows with the number of keys except the cache itself.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::authz::{Catalog, CustomScope, ScopeSet, closure};
use crate::clock::Clock;
use crate::crypto::token;
use crate::error::Error;
use crate::id::{KeyId, WorkspaceId};
use crate::keys::cache::{Aged, Digest, KeyCache, Known};
use crate::keys::format::{FormatIndex, Precheck};
use crate::limits::{Rate, Span};
use crate::model::{ApiKey, KeyRateLimit, KeyStatus, WorkspaceStatus, key_status};
use crate::ratelimit::{Decision, RateLimiter};
use crate::store::Store;
use crate::time::Timestamp;

/// How long an unknown digest is remembered.
const NEGATIVE_TTL_MS: i64 = 30_000;
/// How long a key stays cached without being read again: a backstop, should an eviction be
/// lost, on top of the change log that evicts at once.
const MAX_AGE_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyCode {
    Valid,
    NotFound,
    Expired,
    Revoked,
    Disabled,
    InsufficientScope,
    RateLimited,
    UsageExceeded,
    TenantSuspended,
}

impl VerifyCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
            Self::Disabled => "DISABLED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::RateLimited => "RATE_LIMITED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
            Self::TenantSuspended => "TENANT_SUSPENDED",
        }
    }
}

/// A key as the hot path keeps it, one per key in use: what verify decides on or answers with,
/// its effective scopes pre-resolved, and when it was last accepted.
#[derive(Debug)]
pub struct CachedKey {
    pub key: HotKey,
    /// The key's scopes closed under implication in its workspace's catalog.
    pub effective: ScopeSet,
    pub workspace_status: WorkspaceStatus,
    /// When verify last accepted it (ms since the epoch); 0 once a flush has taken it.
    last_used: AtomicI64,
    /// When it was read from the store (ms since the epoch).
    loaded_at: i64,
}

impl Aged for Arc<CachedKey> {
    fn loaded_at(&self) -> i64 {
        self.loaded_at
    }
}

impl CachedKey {
    pub fn rate(&self) -> Option<Rate> {
        self.key.rate_limit.map(|r| Rate {
            count: r.limit,
            window: Span::from_secs(u64::from(r.window_seconds)),
        })
    }

    /// The use not yet written, taking it.
    fn take_use(&self) -> Option<(KeyId, Timestamp)> {
        match self.last_used.swap(0, Ordering::Relaxed) {
            0 => None,
            ms => Some((self.key.id.clone(), Timestamp::from_millis(ms))),
        }
    }
}

/// The fields of an [`ApiKey`] that verify reads; the rest (hash, prefix, creator, sealed key,
/// timestamps of record) stays in the store.
#[derive(Debug)]
pub struct HotKey {
    pub id: KeyId,
    pub workspace_id: WorkspaceId,
    pub name: Box<str>,
    /// As given, not closed under implication.
    pub scopes: Box<[String]>,
    pub meta: Option<Box<serde_json::Value>>,
    pub external_id: Option<Box<str>>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub disabled: bool,
    pub rate_limit: Option<KeyRateLimit>,
    /// Credits left when it was loaded; `None` = unlimited.
    pub remaining: Option<i64>,
}

impl HotKey {
    pub fn status(&self, now: Timestamp) -> KeyStatus {
        key_status(self.revoked_at, self.disabled, self.expires_at, now)
    }
}

impl From<ApiKey> for HotKey {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            workspace_id: k.workspace_id,
            name: k.name.into_boxed_str(),
            scopes: k.scopes.into_boxed_slice(),
            meta: k.meta.map(Box::new),
            external_id: k.external_id.map(String::into_boxed_str),
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            disabled: k.disabled,
            rate_limit: k.rate_limit,
            remaining: k.remaining,
        }
    }
}

/// What a verification found.
#[derive(Debug)]
pub struct Verification {
    pub code: VerifyCode,
    pub key: Option<Arc<CachedKey>>,
    /// Credits left after this request (`None`: unlimited or unknown key).
    pub remaining: Option<i64>,
    /// The key's rate limit and the limiter's decision, when it has one.
    pub rate: Option<(KeyRateLimit, Decision)>,
    /// Scopes asked for and missing (for `INSUFFICIENT_SCOPE`).
    pub missing: Vec<String>,
}

impl Verification {
    fn just(code: VerifyCode, key: Option<Arc<CachedKey>>) -> Self {
        Self {
            code,
            key,
            remaining: None,
            rate: None,
            missing: Vec::new(),
        }
    }
}

pub fn digest_of_hex(hex: &str) -> Option<Digest> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(d: &Digest) -> String {
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub struct KeyVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limiter: Arc<dyn RateLimiter>,
    cache: KeyCache<Arc<CachedKey>>,
    formats: RwLock<Arc<FormatIndex>>,
    /// Uses not yet written of keys no longer in the cache (evicted, or a flush that failed).
    used: Mutex<Vec<(KeyId, Timestamp)>>,
    /// When the store became unreachable (ms since the epoch), 0 while it answers: the hot
    /// path reads it with one atomic load.
    down_since: AtomicI64,
    /// How long cached keys go on answering once the store is unreachable (`store_outage_grace`).
    grace_ms: AtomicI64,
    /// Verifications answered from the cache while the store was unreachable.
    served_down: AtomicU64,
}

/// Default of `store_outage_grace`.
pub const OUTAGE_GRACE_MS: i64 = 5 * 60_000;

impl KeyVerifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limiter: Arc<dyn RateLimiter>,
    ) -> Self {
        Self {
            store,
            clock,
            limiter,
            cache: KeyCache::new(MAX_AGE_MS),
            formats: RwLock::new(Arc::new(FormatIndex::new(Vec::new()))),
            used: Mutex::new(Vec::new()),
            down_since: AtomicI64::new(0),
            grace_ms: AtomicI64::new(OUTAGE_GRACE_MS),
            served_down: AtomicU64::new(0),
        }
    }

    /// How long cached keys go on answering while the store is unreachable, counted from when
    /// the outage began (not from each key's loading), even past their usual maximum age.
    /// Zero: not at all.
    pub fn set_outage_grace(&self, grace: Span) {
        let ms = i64::try_from(grace.secs().saturating_mul(1000)).unwrap_or(i64::MAX);
        self.grace_ms.store(ms, Ordering::Relaxed);
    }

    /// The store stopped answering at `at`. True when this begins an outage (not already in
    /// one): from now on, cache misses answer [`Error::Unavailable`] without asking the store,
    /// and hits go on for the grace.
    pub fn store_down(&self, at: Timestamp) -> bool {
        // 0 means "up": an outage beginning at the epoch itself is recorded as 1 ms after.
        let since = at.millis().max(1);
        self.down_since
            .compare_exchange(0, since, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The store answers again, and the caller has applied the change log since before the
    /// outage (or dropped the cache, see [`Self::forget_all`]): the cache is trusted as usual.
    /// When the outage began, if there was one.
    pub fn store_up(&self) -> Option<Timestamp> {
        match self.down_since.swap(0, Ordering::AcqRel) {
            0 => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }

    /// When the current outage began, if the store is unreachable.
    pub fn down_since(&self) -> Option<Timestamp> {
        match self.down_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }

    /// Verifications answered from the cache while the store was unreachable, since start.
    pub fn served_during_outage(&self) -> u64 {
        self.served_down.load(Ordering::Relaxed)
    }

    /// Forgets every cached key and unknown digest: after an outage the change log could not
    /// cover, nothing cached can be trusted.
    pub fn forget_all(&self) {
        self.cache
            .evict_where(|_| true, true, |gone| self.keep_use(&gone));
    }

    /// Adds every key format a workspace has ever had to the index (at start, and every 30 s
    /// for other nodes' changes): keys made under an earlier format keep being looked up.
    pub async fn reload_formats(&self) -> Result<(), Error> {
        let formats = self.store.key_formats().await?;
        let mut guard = self.formats.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        next.extend(formats);
        *guard = Arc::new(next);
        Ok(())
    }

    /// Adds a workspace's new key format to the index. Formats are never dropped while the
    /// process runs, so keys made under an earlier format keep being looked up.
    pub fn add_format(&self, format: &crate::model::KeyFormat) {
        let mut guard = self.formats.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**guard).clone();
        next.insert(format);
        *guard = Arc::new(next);
    }

    /// Drops a key from the cache (by the hex digest the store and the change log use) and
    /// forgets that it was unknown.
    pub fn evict_hex(&self, hash_hex: &str) {
        if let Some(d) = digest_of_hex(hash_hex)
            && let Some(gone) = self.cache.evict(&d)
        {
            self.keep_use(&gone);
        }
    }

    /// Drops every cached key of a workspace (suspension, deletion, scope changes).
    pub fn evict_workspace(&self, ws: &WorkspaceId) {
        self.cache.evict_where(
            |k| &k.key.workspace_id == ws,
            false,
            |gone| self.keep_use(&gone),
        );
    }

    /// A key leaving the cache keeps its last use for the next flush.
    fn keep_use(&self, gone: &CachedKey) {
        if let Some((id, at)) = gone.take_use() {
            self.mark_used(id, at);
        }
    }

    /// Forgets the negative cache (keys were imported).
    pub fn forget_unknown(&self) {
        self.cache.evict_where(|_| false, true, drop);
    }

    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    /// The keys used since the last call, each once with its latest use; the caller writes
    /// them in one batch.
    pub fn take_used(&self) -> Vec<(KeyId, Timestamp)> {
        let mut out = std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()));
        self.cache.for_each(|k| out.extend(k.take_use()));
        // A key evicted and loaded again since the last flush appears twice: keep the latest.
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        out.dedup_by(|later, first| later.0 == first.0);
        out
    }

    /// Records a use to write with the next batch, e.g. again after a failed flush.
    pub fn mark_used(&self, id: KeyId, at: Timestamp) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, at));
    }

    /// Drops expired negative entries, and keys cached for longer than the maximum age (while
    /// the store is unreachable, age counts up to when the outage began: those keys may still
    /// answer during the grace).
    pub fn purge(&self) {
        let now = self.clock.now().millis();
        let fresh_at = match self.down_since.load(Ordering::Acquire) {
            0 => now,
            since => since.min(now),
        };
        self.cache.purge(now, fresh_at, |gone| self.keep_use(&gone));
    }

    async fn load(&self, d: &Digest, now: i64) -> Result<Option<Arc<CachedKey>>, Error> {
        let Some(key) = self.store.key_by_hash(&hex(d)).await? else {
            return Ok(None);
        };
        let Some(ws) = self.store.workspace_by_id(&key.workspace_id).await? else {
            return Ok(None);
        };
        let custom: Vec<CustomScope> = self
            .store
            .scopes_of(&ws.id)
            .await?
            .into_iter()
            .filter_map(|s| CustomScope::new(&s.name, &s.description, s.dangerous).ok())
            .collect();
        let catalog = Catalog::with_custom(&custom);
        let given = ScopeSet::parse(&key.scopes, "scopes").unwrap_or_default();
        let mut effective = closure(&given, &catalog);
        if given.is_superuser() {
            effective = effective.union(&given);
        }
        Ok(Some(Arc::new(CachedKey {
            // The cache is keyed by the digest; what verify never reads is not kept.
            key: HotKey::from(key),
            effective,
            workspace_status: ws.status,
            last_used: AtomicI64::new(0),
            loaded_at: now,
        })))
    }

    /// Looks a key up: cache, then store (once), remembering unknown digests briefly.
    pub async fn lookup(&self, raw: &str) -> Result<Option<Arc<CachedKey>>, Error> {
        self.lookup_at(raw, self.clock.now()).await
    }

    async fn lookup_at(&self, raw: &str, at: Timestamp) -> Result<Option<Arc<CachedKey>>, Error> {
        let precheck = self
            .formats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .precheck(raw);
        if precheck != Precheck::LookUp {
            return Ok(None);
        }
        let d = token::sha256(raw.as_bytes());
        let now = at.millis();
        let down_since = self.down_since.load(Ordering::Acquire);
        if down_since != 0 {
            return self.lookup_while_down(&d, now, down_since);
        }
        match self.cache.get(&d, now) {
            Known::Key(hit) => return Ok(Some(hit)),
            Known::Unknown => return Ok(None),
            Known::Miss => {}
        }
        // Taken before the store is read: a change evicted while the read is under way makes
        // the fill below a no-op instead of caching what the change just replaced.
        let ticket = self.cache.ticket(&d);
        let loaded = match self.load(&d, now).await {
            Err(Error::Unavailable) => {
                // Known from a failed query before the change-log poll notices; the poll ends it.
                self.store_down(at);
                return Err(Error::Unavailable);
            }
            other => other?,
        };
        match loaded {
            Some(found) => {
                // Two requests may have loaded it at once: keep the use of the one replaced.
                if let Ok(Some(replaced)) = self.cache.insert(d, ticket, found.clone()) {
                    self.keep_use(&replaced);
                }
                Ok(Some(found))
            }
            None => {
                self.cache.insert_unknown(d, ticket, now + NEGATIVE_TTL_MS);
                Ok(None)
            }
        }
    }

    /// The cache alone, while the store is unreachable: keys fresh when the outage began answer
    /// for the grace (revocations and evictions applied before it included), unknown digests
    /// stay unknown for their time, and anything else is [`Error::Unavailable`] rather than a
    /// `NOT_FOUND` no one checked.
    #[cold]
    fn lookup_while_down(
        &self,
        d: &Digest,
        now: i64,
        since: i64,
    ) -> Result<Option<Arc<CachedKey>>, Error> {
        let grace = self.grace_ms.load(Ordering::Relaxed);
        if grace == 0 || now.saturating_sub(since) > grace {
            return Err(Error::Unavailable);
        }
        match self.cache.get_as_of(d, now, since.min(now)) {
            Known::Key(hit) => {
                self.served_down.fetch_add(1, Ordering::Relaxed);
                Ok(Some(hit))
            }
            Known::Unknown => Ok(None),
            Known::Miss => Err(Error::Unavailable),
        }
    }

    /// The whole check. `cost` is spent from the rate limit and the credits (0 only looks), and
    /// only once everything else passed. With `workspace`, a key of any other workspace is
    /// `NOT_FOUND`, as if it did not exist: custom scope names are per workspace, so a service
    /// protecting one tenant's API must not accept another tenant's key that happens to carry a
    /// scope of the same name.
    pub async fn verify(
        &self,
        raw: &str,
        required: &[&str],
        cost: u32,
        workspace: Option<&str>,
    ) -> Result<Verification, Error> {
        let now = self.clock.now();
        let Some(found) = self
            .lookup_at(raw, now)
            .await?
            .filter(|k| workspace.is_none_or(|ws| k.key.workspace_id.as_str() == ws))
        else {
            return Ok(Verification::just(VerifyCode::NotFound, None));
        };
        if found.workspace_status != WorkspaceStatus::Active {
            return Ok(Verification::just(VerifyCode::TenantSuspended, Some(found)));
        }
        match found.key.status(now) {
            KeyStatus::Active => {}
            KeyStatus::Revoked => return Ok(Verification::just(VerifyCode::Revoked, Some(found))),
            KeyStatus::Disabled => {
                return Ok(Verification::just(VerifyCode::Disabled, Some(found)));
            }
            KeyStatus::Expired => return Ok(Verification::just(VerifyCode::Expired, Some(found))),
        }
        let missing = found.effective.missing(required);
        if !missing.is_empty() {
            let mut v = Verification::just(VerifyCode::InsufficientScope, Some(found));
            v.missing = missing;
            return Ok(v);
        }
        let mut rate = None;
        if let (Some(limit), Some(r)) = (found.key.rate_limit, found.rate()) {
            let decision = self
                .limiter
                .check(found.key.id.as_str(), r, cost, now)
                .await
                .map_err(|_| Error::Unavailable)?;
            rate = Some((limit, decision));
            if !decision.allowed {
                let mut v = Verification::just(VerifyCode::RateLimited, Some(found));
                v.rate = rate;
                return Ok(v);
            }
        }
        let mut remaining = None;
        if found.key.remaining.is_some() {
            match self
                .store
                .consume_credits(&found.key.id, i64::from(cost))
                .await?
            {
                // A look (cost 0) at spent credits reports them spent, as the rate limit does.
                Some(left) if cost > 0 || left > 0 => remaining = Some(left),
                _ => {
                    let mut v = Verification::just(VerifyCode::UsageExceeded, Some(found));
                    v.rate = rate;
                    v.remaining = Some(0);
                    return Ok(v);
                }
            }
        }
        found.last_used.store(now.millis(), Ordering::Relaxed);
        Ok(Verification {
            code: VerifyCode::Valid,
            key: Some(found),
            remaining,
            rate,
            missing: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests_round_trip() {
        let d = token::sha256(b"kr_example");
        assert_eq!(digest_of_hex(&hex(&d)), Some(d));
        assert_eq!(digest_of_hex("zz"), None);
        assert_eq!(digest_of_hex(&"é".repeat(32)), None);
    }
}
