//! API keys.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::{KeyId, WorkspaceId};
use crate::model::{ApiKey, KeyFilter, Page};
use crate::time::Timestamp;

/// API keys: issued, imported, listed, changed, rotated, spent and marked used.
#[async_trait]
pub trait KeyStore: Send + Sync {
    // API keys
    /// A key whose hash exists already is a `Conflict`.
    async fn insert_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// All or nothing; any hash that exists already (or repeats in the batch) is a `Conflict`.
    async fn insert_keys(&self, keys: &[ApiKey]) -> StoreResult<()>;
    async fn key_by_id(&self, ws: &WorkspaceId, id: &KeyId) -> StoreResult<Option<ApiKey>>;
    /// The verify path's lookup (one indexed query).
    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Which of these hashes exist already (for naming the duplicates of an import).
    async fn existing_key_hashes(&self, hashes: &[String]) -> StoreResult<Vec<String>>;
    /// By id (creation order). `status` is evaluated at `now`; `external_id` matches exactly.
    async fn list_keys(
        &self,
        ws: &WorkspaceId,
        filter: &KeyFilter,
        now: Timestamp,
        page: &Page,
    ) -> StoreResult<Vec<ApiKey>>;
    /// Saves name, scopes, meta, rate_limit, disabled, updated_at, expires_at, revoked_at,
    /// replaced_by and appends `key.changed` (subject: the key's hash) in the same transaction.
    /// Revocation is irreversible: a stored `revoked_at` is only ever moved earlier, and a
    /// stored `replaced_by` is kept.
    /// `false` when no such key. Credits are not written here (concurrent verifies spend them):
    /// see [`KeyStore::set_key_remaining`].
    async fn update_key(&self, key: &ApiKey) -> StoreResult<bool>;
    /// Sets the credits left (`None` = unlimited) and appends `key.changed`.
    async fn set_key_remaining(
        &self,
        ws: &WorkspaceId,
        id: &KeyId,
        remaining: Option<i64>,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Inserts `new` and saves `old` (its `revoked_at` / `replaced_by` set by the caller),
    /// appending `key.changed` for the old key's hash, atomically. `false` (nothing written)
    /// when `old` is gone or was replaced already, also by a concurrent rotation: a key is
    /// rotated at most once.
    async fn rotate_key(&self, old: &ApiKey, new: &ApiKey) -> StoreResult<bool>;
    /// Spends `cost` credits if at least that many remain; the credits left after, or `None`
    /// when there were not enough (nothing spent). Exact under concurrency, across nodes.
    /// Keys with unlimited credits (`remaining` NULL) answer `Some(i64::MAX)`.
    async fn consume_credits(&self, id: &KeyId, cost: i64) -> StoreResult<Option<i64>>;
    /// Sets `last_used_at` of many keys in one statement or transaction (never earlier than
    /// what is stored).
    async fn touch_keys(&self, used: &[(KeyId, Timestamp)]) -> StoreResult<()>;
}
