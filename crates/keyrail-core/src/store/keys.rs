//! API keys.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::{KeyId, WorkspaceId};
use crate::model::{ApiKey, AuditEntry, KeyChanges, KeyFilter, Page};
use crate::time::Timestamp;

/// API keys: issued, imported, listed, changed, rotated, spent and marked used.
///
/// Every change of a stored key appends `key.changed` (subject: the key's hash, which the
/// verify caches are keyed by) to the change log, and every audited write takes its audit entry
/// and writes it, all in one transaction: the change, its announcement and its audit entry
/// commit together or not at all (a refused audit entry is a refused change).
#[async_trait]
pub trait KeyStore: Send + Sync {
    // API keys
    /// A key whose hash exists already is a `Conflict`. Appends `key.changed` for the new hash
    /// (so every node forgets that it was unknown) and writes `audit`. `audit` is `None` only
    /// for the platform's own bootstrap key (`keyrail init`), which no request made.
    async fn insert_key(&self, key: &ApiKey, audit: Option<&AuditEntry>) -> StoreResult<()>;
    /// All or nothing; any hash that exists already (or repeats in the batch) is a `Conflict`.
    /// Appends `key.changed` for every new hash and writes `audit` (one entry for the batch).
    async fn insert_keys(&self, keys: &[ApiKey], audit: &AuditEntry) -> StoreResult<()>;
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
    /// Writes only the fields `changes` names, and `updated_at = at`, in one statement: what a
    /// concurrent change or verify wrote to the other fields (a disable, a revocation, spent
    /// credits) stays. Appends `key.changed` and writes `audit`. The key as stored after, or
    /// `None` (nothing written) when no such key.
    async fn patch_key(
        &self,
        ws: &WorkspaceId,
        id: &KeyId,
        changes: &KeyChanges,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<Option<ApiKey>>;
    /// Revokes the key from `at` on (irreversible), appends `key.changed` and writes `audit`;
    /// the key as revoked. `None` (nothing written) when no such key, or when it is revoked
    /// at `at` already (also by a concurrent revocation).
    async fn revoke_key(
        &self,
        ws: &WorkspaceId,
        id: &KeyId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<Option<ApiKey>>;
    /// Replaces key `old` (of `new`'s workspace) by `new`, atomically: claims `old` (sets its
    /// `replaced_by`), revokes it from `old_until` on (or keeps an earlier revocation), inserts
    /// `new`, appends `key.changed` for the old key's hash and writes `audit`.
    ///
    /// The credits move: `new` gets what `old` has left at that moment (whatever `new` says),
    /// and `old` keeps 0 (or unlimited, if it was). During its grace period the old key spends
    /// from its replacement's counter (see [`KeyStore::consume_credits`]), so the two never
    /// spend more than the key had.
    ///
    /// The new key as stored; `None` (nothing written) when `old` is gone, revoked at
    /// `new.created_at`, or replaced already, also by a concurrent rotation: a key is rotated
    /// at most once.
    async fn rotate_key(
        &self,
        old: &KeyId,
        new: &ApiKey,
        old_until: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<Option<ApiKey>>;
    /// Spends `cost` credits if at least that many remain; the credits left after, or `None`
    /// when there were not enough (nothing spent). Exact under concurrency, across nodes.
    /// Keys with unlimited credits (`remaining` NULL) answer `Some(i64::MAX)`. A rotated key
    /// spends from the counter of the last key of its chain of replacements (rotation moved
    /// its credits there).
    async fn consume_credits(&self, id: &KeyId, cost: i64) -> StoreResult<Option<i64>>;
    /// Sets `last_used_at` of many keys in one statement or transaction (never earlier than
    /// what is stored).
    async fn touch_keys(&self, used: &[(KeyId, Timestamp)]) -> StoreResult<()>;
}
