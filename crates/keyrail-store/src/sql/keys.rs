//! [`KeyStore`] for both backends: API keys.
//!
//! Every write is one transaction holding the change, its `key.changed` announcement and its
//! audit entry. Nothing here rewrites a key from a copy read earlier: each statement names the
//! columns it changes, so concurrent changes of other columns (a disable, a revocation, credits
//! spent by verifies) are never undone.
//!
//! Where the backends differ: `touch_keys` locks the keys' rows before each batch
//! (`lock_keys`, PostgreSQL only; SQLite has a single writer), and appending to the change log
//! (`append_changes`) takes the change-log lock on PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use keyrail_core::id::{KeyId, WorkspaceId};
use keyrail_core::model::{ApiKey, AuditEntry, KeyChanges, KeyFilter, Page};
use keyrail_core::store::{KeyStore, StoreError, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::{PgStore, SqliteStore, page_bounds};
use crate::error::map_err;

mod rows;

use rows::{
    EXISTING_HASHES_SQL, INSERT_KEYS_SQL, KeyChangeParams, KeyParams, KeyRow, TOUCH_KEYS_SQL,
    bind_key, key_columns, key_insert_chunks, key_status_at, latest_uses, padded_batches,
};

/// The change-log kind of a key that was created, changed, revoked or rotated (its subject is
/// the key's hash: the verify cache, and its memory of unknown keys, are keyed by it).
const KEY_CHANGED: &str = "key.changed";

/// The key whose credit counter key `$1` spends: the key itself, or, once it was rotated, the
/// last key of its chain of replacements (rotation moved the credits there). The chain is
/// followed by primary key, at most 64 links (a key is rotated once, so a chain grows by one
/// per rotation; a key rotated during its grace period is itself revoked soon after).
macro_rules! credit_owner {
    () => {
        "WITH RECURSIVE chain (id, next, hops) AS (
             SELECT id, replaced_by, 0 FROM keys WHERE id = $1
             UNION ALL
             SELECT k.id, k.replaced_by, chain.hops + 1
             FROM keys k JOIN chain ON k.id = chain.next
             WHERE chain.hops < 64
         ) "
    };
}

/// The id the chain of [`credit_owner!`] ends at.
macro_rules! chain_end {
    () => {
        "(SELECT id FROM chain ORDER BY hops DESC LIMIT 1)"
    };
}

/// Implements [`KeyStore`] for `$store`, whose connections are `$conn` (one body of SQL; the
/// key row locks of `touch_keys` are PostgreSQL's only).
macro_rules! key_store {
    ($store:ident, $conn:ty) => {
        impl $store {
            /// Inserts the keys with multi-row statements (see [`key_insert_chunks`]), inside
            /// the caller's transaction.
            async fn insert_key_rows(conn: &mut $conn, keys: &[KeyParams<'_>]) -> StoreResult<()> {
                for chunk in key_insert_chunks(keys) {
                    // A power of two: its statement is the log2-th.
                    let sql = Arc::clone(&INSERT_KEYS_SQL[chunk.len().trailing_zeros() as usize]);
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for p in chunk {
                        query = bind_key!(query, p);
                    }
                    query.execute(&mut *conn).await.map_err(map_err)?;
                }
                Ok(())
            }

            /// Writes the audit entry, then announces the keys (the change-log lock is taken
            /// last, so it is held only until the commit that follows), inside the caller's
            /// transaction.
            async fn audit_and_announce(
                conn: &mut $conn,
                audit: Option<&AuditEntry>,
                at: Timestamp,
                hashes: &[&str],
            ) -> StoreResult<()> {
                if let Some(entry) = audit {
                    Self::write_audit(conn, entry).await?;
                }
                Self::append_changes(conn, at, KEY_CHANGED, hashes).await
            }
        }

        #[async_trait]
        impl KeyStore for $store {
            async fn insert_key(
                &self,
                key: &ApiKey,
                audit: Option<&AuditEntry>,
            ) -> StoreResult<()> {
                let p = KeyParams::new(key)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // A duplicate fails here as a Conflict; dropping the transaction rolls back.
                Self::insert_key_rows(&mut tx, std::slice::from_ref(&p)).await?;
                // Announced although new: a node that looked the key up before (a guess, or a
                // key made elsewhere by its owner) forgets that it was unknown.
                Self::audit_and_announce(&mut tx, audit, key.created_at, &[&key.hash]).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn insert_keys(&self, keys: &[ApiKey], audit: &AuditEntry) -> StoreResult<()> {
                let mut params = keys
                    .iter()
                    .map(KeyParams::new)
                    .collect::<StoreResult<Vec<_>>>()?;
                if params.is_empty() {
                    return Ok(());
                }
                // In hash order: two concurrent imports sharing hashes then meet at the first
                // shared one (the later waits, then conflicts) instead of each waiting for a hash
                // the other inserted (PostgreSQL's unique index would report a deadlock).
                params.sort_unstable_by(|a, b| a.key.hash.cmp(&b.key.hash));
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Any duplicate, in the table or within the batch, fails a statement as a
                // Conflict; the transaction is then rolled back as it is dropped.
                Self::insert_key_rows(&mut tx, &params).await?;
                // Imported keys are the ones other nodes may remember as unknown (they were in
                // use elsewhere): one entry per key, so each node drops exactly those.
                let hashes: Vec<&str> = params.iter().map(|p| p.key.hash.as_str()).collect();
                Self::audit_and_announce(&mut tx, Some(audit), audit.at, &hashes).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn key_by_id(&self, ws: &WorkspaceId, id: &KeyId) -> StoreResult<Option<ApiKey>> {
                let row: Option<KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys WHERE id = $1 AND workspace_id = $2"
                ))
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(ApiKey::try_from).transpose()
            }

            async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
                let row: Option<KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys WHERE hash = $1"
                ))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(ApiKey::try_from).transpose()
            }

            async fn existing_key_hashes(&self, hashes: &[String]) -> StoreResult<Vec<String>> {
                // Each hash once, in the order given.
                let mut seen = HashSet::new();
                let unique: Vec<&str> = hashes
                    .iter()
                    .map(String::as_str)
                    .filter(|h| seen.insert(*h))
                    .collect();
                let mut found = HashSet::new();
                for batch in padded_batches(&unique) {
                    let mut query =
                        sqlx::query_scalar(AssertSqlSafe(Arc::clone(&EXISTING_HASHES_SQL)));
                    for hash in batch {
                        query = query.bind(hash);
                    }
                    let rows: Vec<String> = query.fetch_all(&self.pool).await.map_err(map_err)?;
                    found.extend(rows);
                }
                Ok(unique
                    .into_iter()
                    .filter(|h| found.contains(*h))
                    .map(str::to_owned)
                    .collect())
            }

            async fn list_keys(
                &self,
                ws: &WorkspaceId,
                filter: &KeyFilter,
                now: Timestamp,
                page: &Page,
            ) -> StoreResult<Vec<ApiKey>> {
                let (after, limit) = page_bounds(page);
                // One statement for every combination of filters: an absent filter is a NULL
                // parameter whose predicate is true. The status is computed at `now` exactly
                // as ApiKey::status computes it.
                let rows: Vec<KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys
                     WHERE workspace_id = $1 AND id > $2
                       AND ($3 IS NULL OR external_id = $3)
                       AND ($4 IS NULL OR ",
                    key_status_at!("$5"),
                    " = $4)
                     ORDER BY id LIMIT $6"
                ))
                .bind(ws.as_str())
                .bind(after)
                .bind(filter.external_id.as_deref())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(now.millis())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(ApiKey::try_from).collect()
            }

            async fn patch_key(
                &self,
                ws: &WorkspaceId,
                id: &KeyId,
                changes: &KeyChanges,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<Option<ApiKey>> {
                let c = KeyChangeParams::new(changes)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // One statement: each column is the value given when the change names it,
                // else what is stored at the moment it is written (under the row lock on
                // PostgreSQL, the write lock on SQLite). Revocation and replacement are not
                // columns a change can write: a revoked key stays revoked.
                let row: Option<KeyRow> = sqlx::query_as(concat!(
                    "UPDATE keys SET
                         name = COALESCE($1, name),
                         scopes = COALESCE($2, scopes),
                         meta = CASE WHEN $3 THEN $4 ELSE meta END,
                         rate_limit_limit = CASE WHEN $5 THEN $6 ELSE rate_limit_limit END,
                         rate_limit_window = CASE WHEN $5 THEN $7 ELSE rate_limit_window END,
                         remaining = CASE WHEN $8 THEN $9 ELSE remaining END,
                         disabled = COALESCE($10, disabled),
                         updated_at = $11
                     WHERE id = $12 AND workspace_id = $13
                     RETURNING ",
                    key_columns!()
                ))
                .bind(changes.name.as_deref())
                .bind(c.scopes.as_deref())
                .bind(changes.meta.is_some())
                .bind(c.meta.as_deref())
                .bind(changes.rate_limit.is_some())
                .bind(c.rate_limit_limit())
                .bind(c.rate_limit_window())
                .bind(changes.remaining.is_some())
                .bind(changes.remaining.flatten())
                .bind(changes.disabled)
                .bind(at.millis())
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(row) = row else {
                    // No such key: nothing written (dropping the transaction rolls back).
                    return Ok(None);
                };
                let key = ApiKey::try_from(row)?;
                Self::audit_and_announce(&mut tx, Some(audit), at, &[&key.hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Some(key))
            }

            async fn revoke_key(
                &self,
                ws: &WorkspaceId,
                id: &KeyId,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<Option<ApiKey>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Only ever earlier: a key revoked by `at` already (also a rotated key whose
                // grace period is over) is left as it is, and nothing is announced or audited.
                let row: Option<KeyRow> = sqlx::query_as(concat!(
                    "UPDATE keys SET revoked_at = $1, updated_at = $1
                     WHERE id = $2 AND workspace_id = $3
                       AND (revoked_at IS NULL OR revoked_at > $1)
                     RETURNING ",
                    key_columns!()
                ))
                .bind(at.millis())
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let key = ApiKey::try_from(row)?;
                Self::audit_and_announce(&mut tx, Some(audit), at, &[&key.hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Some(key))
            }

            async fn rotate_key(
                &self,
                old: &KeyId,
                new: &ApiKey,
                old_until: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<Option<ApiKey>> {
                let now = new.created_at;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Claims the old key for this replacement first: of concurrent rotations of
                // one key, one finds it unclaimed (the others wait for its row or write lock,
                // then find it claimed); a key revoked meanwhile is not replaced either. The
                // revocation only ever moves earlier. Holding the row, the credits read here
                // are the last word: a concurrent spender of the old key waits, then finds
                // them moved and follows `replaced_by` to the new key.
                let claimed: Option<(String, Option<i64>)> = sqlx::query_as(
                    "UPDATE keys SET replaced_by = $1, updated_at = $2,
                         revoked_at = CASE
                             WHEN revoked_at IS NULL OR revoked_at > $3 THEN $3
                             ELSE revoked_at
                         END
                     WHERE id = $4 AND workspace_id = $5 AND replaced_by IS NULL
                       AND (revoked_at IS NULL OR revoked_at > $2)
                     RETURNING hash, remaining",
                )
                .bind(new.id.as_str())
                .bind(now.millis())
                .bind(old_until.millis())
                .bind(old.as_str())
                .bind(new.workspace_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some((old_hash, credits)) = claimed else {
                    // Gone, revoked, or replaced already: nothing was written.
                    return Ok(None);
                };
                if credits.is_some() {
                    // The old key keeps 0 of its own (never unlimited: NULL would be).
                    sqlx::query("UPDATE keys SET remaining = 0 WHERE id = $1")
                        .bind(old.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                let new = ApiKey {
                    remaining: credits,
                    ..new.clone()
                };
                // A colliding new key fails here as a Conflict; the claim is rolled back with
                // the transaction.
                let p = KeyParams::new(&new)?;
                Self::insert_key_rows(&mut tx, std::slice::from_ref(&p)).await?;
                Self::audit_and_announce(&mut tx, Some(audit), now, &[&old_hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Some(new))
            }

            async fn consume_credits(&self, id: &KeyId, cost: i64) -> StoreResult<Option<i64>> {
                if cost < 0 {
                    return Err(StoreError::Other(format!(
                        "cannot spend a negative number of credits ({cost})"
                    )));
                }
                // A few rounds at most: a round only repeats when the credits grew (an update)
                // or moved (a rotation) between its two statements.
                for _ in 0..3 {
                    // One conditional write on the counter's owner: concurrent spenders queue
                    // on its row lock (PostgreSQL) or the write lock (SQLite), each seeing what
                    // the previous one left, so no more than the credits are ever spent.
                    let left: Option<i64> = sqlx::query_scalar(concat!(
                        credit_owner!(),
                        "UPDATE keys SET remaining = remaining - $2
                         WHERE id = ",
                        chain_end!(),
                        " AND remaining >= $2
                         RETURNING remaining"
                    ))
                    .bind(id.as_str())
                    .bind(cost)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                    if left.is_some() {
                        return Ok(left);
                    }
                    // Nothing spent: unlimited, too few credits, moved by a rotation that
                    // committed meanwhile, or no such key.
                    let remaining: Option<Option<i64>> = sqlx::query_scalar(concat!(
                        credit_owner!(),
                        "SELECT remaining FROM keys WHERE id = ",
                        chain_end!()
                    ))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                    match remaining {
                        None => return Ok(None),
                        Some(None) => return Ok(Some(i64::MAX)),
                        Some(Some(n)) if n < cost => return Ok(None),
                        Some(Some(_)) => {}
                    }
                }
                Ok(None)
            }

            async fn touch_keys(&self, used: &[(KeyId, Timestamp)]) -> StoreResult<()> {
                let latest = latest_uses(used);
                if latest.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Batch after batch in id order, each locked (PostgreSQL) right before it is
                // written: every caller takes the row locks in ascending id order. A repeated
                // row (the padding) sets the same time again.
                for batch in padded_batches(&latest) {
                    let ids: Vec<&str> = batch.iter().map(|(id, _)| *id).collect();
                    Self::lock_keys(&mut tx, &ids).await?;
                    let mut query = sqlx::query(AssertSqlSafe(Arc::clone(&TOUCH_KEYS_SQL)));
                    for (id, at) in batch {
                        query = query.bind(id).bind(at);
                    }
                    query.execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            }
        }
    };
}

key_store!(SqliteStore, SqliteConnection);
key_store!(PgStore, PgConnection);
