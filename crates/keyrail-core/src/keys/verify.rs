//! The verify hot path, shared by `POST /keys/verify`, forward-auth and API-key authentication
//! on every endpoint: precheck the shape and checksum (no store), SHA-256, look the digest up in
//! the in-process cache (a miss reads the store once; unknown digests are remembered briefly),
//! then status, expiry, scopes, rate limit and credits. Nothing here holds a lock across an
//! await, and nothing grows with the number of keys except the cache itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::authz::{Catalog, CustomScope, ScopeSet, closure};
use crate::clock::Clock;
use crate::crypto::token;
use crate::error::Error;
use crate::id::{KeyId, WorkspaceId};
use crate::keys::format::{FormatIndex, Precheck};
use crate::limits::{Rate, Span};
use crate::model::{ApiKey, KeyRateLimit, KeyStatus, WorkspaceStatus};
use crate::ratelimit::{Decision, RateLimiter};
use crate::store::Store;
use crate::time::Timestamp;

/// How long an unknown digest is remembered.
const NEGATIVE_TTL_MS: i64 = 30_000;
const SHARDS: usize = 64;

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

/// A key as the hot path keeps it: the record, its effective scopes pre-resolved.
#[derive(Debug)]
pub struct CachedKey {
    pub key: ApiKey,
    /// The key's scopes closed under implication in its workspace's catalog.
    pub effective: ScopeSet,
    pub workspace_status: WorkspaceStatus,
}

impl CachedKey {
    pub fn rate(&self) -> Option<Rate> {
        self.key.rate_limit.map(|r| Rate {
            count: r.limit,
            window: Span::from_secs(u64::from(r.window_seconds)),
        })
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

type Digest = [u8; 32];

struct Shards<V> {
    shards: Vec<RwLock<HashMap<Digest, V>>>,
}

impl<V: Clone> Shards<V> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, d: &Digest) -> &RwLock<HashMap<Digest, V>> {
        &self.shards[usize::from(d[0]) % SHARDS]
    }

    fn get(&self, d: &Digest) -> Option<V> {
        self.shard(d)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(d)
            .cloned()
    }

    fn insert(&self, d: Digest, v: V) {
        self.shard(&d)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d, v);
    }

    fn remove(&self, d: &Digest) {
        self.shard(d)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(d);
    }

    fn clear(&self) {
        for s in &self.shards {
            s.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        for s in &self.shards {
            s.write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, v| keep(v));
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
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
    cache: Shards<Arc<CachedKey>>,
    negative: Shards<i64>,
    formats: RwLock<Arc<FormatIndex>>,
    used: Mutex<HashMap<KeyId, Timestamp>>,
}

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
            cache: Shards::new(),
            negative: Shards::new(),
            formats: RwLock::new(Arc::new(FormatIndex::new(Vec::new()))),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Rebuilds the index of key formats from every workspace (at start and when a workspace's
    /// key format changes).
    pub async fn reload_formats(&self) -> Result<(), Error> {
        let mut formats = Vec::new();
        let mut page = crate::model::Page::first(crate::model::Page::MAX_LIMIT);
        loop {
            let batch = self.store.list_workspaces(&page).await?;
            let done = batch.len() < page.limit as usize;
            page.after = batch.last().map(|w| w.id.to_string());
            formats.extend(batch.into_iter().map(|w| w.key_format));
            if done {
                break;
            }
        }
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
        if let Some(d) = digest_of_hex(hash_hex) {
            self.cache.remove(&d);
            self.negative.remove(&d);
        }
    }

    /// Drops every cached key of a workspace (suspension, deletion, scope changes).
    pub fn evict_workspace(&self, ws: &WorkspaceId) {
        self.cache.retain(|k| &k.key.workspace_id != ws);
    }

    /// Forgets the negative cache (a key was created or imported).
    pub fn forget_unknown(&self) {
        self.negative.clear();
    }

    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    /// The keys used since the last call, with when; the caller writes them in one batch.
    pub fn take_used(&self) -> Vec<(KeyId, Timestamp)> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.drain().collect()
    }

    /// Records a use (again), e.g. after a failed flush.
    pub fn mark_used(&self, id: KeyId, at: Timestamp) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let slot = used.entry(id).or_insert(at);
        if *slot < at {
            *slot = at;
        }
    }

    /// Drops expired negative entries.
    pub fn purge(&self) {
        let now = self.clock.now().millis();
        self.negative.retain(|until| *until > now);
    }

    async fn load(&self, d: &Digest) -> Result<Option<Arc<CachedKey>>, Error> {
        let Some(mut key) = self.store.key_by_hash(&hex(d)).await? else {
            return Ok(None);
        };
        // The cache is keyed by the digest; what verify never reads is not kept.
        key.hash = String::new();
        key.sealed_key = None;
        key.created_by = None;
        key.prefix.shrink_to_fit();
        key.scopes.shrink_to_fit();
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
            key,
            effective,
            workspace_status: ws.status,
        })))
    }

    /// Looks a key up: cache, then store (once), remembering unknown digests briefly.
    pub async fn lookup(&self, raw: &str) -> Result<Option<Arc<CachedKey>>, Error> {
        let precheck = self
            .formats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .precheck(raw);
        if precheck != Precheck::LookUp {
            return Ok(None);
        }
        let d = token::sha256(raw.as_bytes());
        if let Some(hit) = self.cache.get(&d) {
            return Ok(Some(hit));
        }
        let now = self.clock.now().millis();
        if self.negative.get(&d).is_some_and(|until| until > now) {
            return Ok(None);
        }
        match self.load(&d).await? {
            Some(found) => {
                self.cache.insert(d, found.clone());
                Ok(Some(found))
            }
            None => {
                self.negative.insert(d, now + NEGATIVE_TTL_MS);
                Ok(None)
            }
        }
    }

    /// The whole check. `cost` is spent from the rate limit and the credits (0 only looks).
    pub async fn verify(
        &self,
        raw: &str,
        required: &[&str],
        cost: u32,
    ) -> Result<Verification, Error> {
        let Some(found) = self.lookup(raw).await? else {
            return Ok(Verification::just(VerifyCode::NotFound, None));
        };
        let now = self.clock.now();
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
                Some(left) => remaining = Some(left),
                None => {
                    let mut v = Verification::just(VerifyCode::UsageExceeded, Some(found));
                    v.rate = rate;
                    v.remaining = Some(0);
                    return Ok(v);
                }
            }
        }
        {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            match used.get_mut(&found.key.id) {
                Some(at) => *at = now,
                None => {
                    used.insert(found.key.id.clone(), now);
                }
            }
        }
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
