//! [`KeyStore`] for both backends: API keys.
//!
//! Where the backends differ: `touch_keys` locks the keys' rows before each batch
//! (`lock_keys`, PostgreSQL only; SQLite has a single writer), and appending to the change log
//! (`append_changes`) takes the change-log lock on PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use keyrail_core::id::{KeyId, WorkspaceId};
use keyrail_core::model::{ApiKey, KeyFilter, Page};
use keyrail_core::store::{KeyStore, StoreError, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::{PgStore, SqliteStore, page_bounds};
use crate::error::map_err;

mod rows;

use rows::{
    EXISTING_HASHES_SQL, INSERT_KEYS_SQL, KeyParams, KeyRow, TOUCH_KEYS_SQL, bind_key, key_columns,
    key_insert_chunks, key_status_at, latest_uses, padded_batches,
};

/// The change-log kind of a key that was changed, revoked or rotated (its subject is the key's
/// hash: the verify cache is keyed by it).
const KEY_CHANGED: &str = "key.changed";

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

            /// Saves what may change in a key (see [`KeyStore::update_key`]) inside the caller's
            /// transaction; returns the key's hash, or `None` when there is no such key.
            async fn save_key(conn: &mut $conn, p: &KeyParams<'_>) -> StoreResult<Option<String>> {
                let k = p.key;
                sqlx::query_scalar(
                    // A revocation is irreversible: `revoked_at` only ever moves earlier and
                    // `replaced_by` is set once, whatever the (maybe stale) copy says, so an
                    // edit racing a revoke or a rotation cannot bring the key back.
                    "UPDATE keys
                     SET name = $1, scopes = $2, meta = $3, rate_limit_limit = $4,
                         rate_limit_window = $5, disabled = $6, updated_at = $7,
                         expires_at = $8,
                         revoked_at = CASE
                             WHEN revoked_at IS NULL THEN $9
                             WHEN $9 IS NULL OR revoked_at <= $9 THEN revoked_at
                             ELSE $9
                         END,
                         replaced_by = COALESCE(replaced_by, $10)
                     WHERE id = $11 AND workspace_id = $12
                     RETURNING hash",
                )
                .bind(k.name.as_str())
                .bind(p.scopes.as_str())
                .bind(p.meta.as_deref())
                .bind(p.rate_limit_limit())
                .bind(p.rate_limit_window())
                .bind(k.disabled)
                .bind(k.updated_at.millis())
                .bind(k.expires_at.map(Timestamp::millis))
                .bind(k.revoked_at.map(Timestamp::millis))
                .bind(k.replaced_by.as_ref().map(KeyId::as_str))
                .bind(k.id.as_str())
                .bind(k.workspace_id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)
            }
        }

        #[async_trait]
        impl KeyStore for $store {
            async fn insert_key(&self, key: &ApiKey) -> StoreResult<()> {
                let p = KeyParams::new(key)?;
                let query = sqlx::query(concat!(
                    "INSERT INTO keys (",
                    key_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19, $20)"
                ));
                bind_key!(query, &p)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn insert_keys(&self, keys: &[ApiKey]) -> StoreResult<()> {
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

            async fn update_key(&self, key: &ApiKey) -> StoreResult<bool> {
                let p = KeyParams::new(key)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let Some(hash) = Self::save_key(&mut tx, &p).await? else {
                    return Ok(false);
                };
                Self::append_changes(&mut tx, key.updated_at, KEY_CHANGED, &[&hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn set_key_remaining(
                &self,
                ws: &WorkspaceId,
                id: &KeyId,
                remaining: Option<i64>,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let hash: Option<String> = sqlx::query_scalar(
                    "UPDATE keys SET remaining = $1, updated_at = $2
                     WHERE id = $3 AND workspace_id = $4
                     RETURNING hash",
                )
                .bind(remaining)
                .bind(at.millis())
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(hash) = hash else {
                    return Ok(false);
                };
                Self::append_changes(&mut tx, at, KEY_CHANGED, &[&hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn rotate_key(&self, old: &ApiKey, new: &ApiKey) -> StoreResult<bool> {
                if new.workspace_id != old.workspace_id {
                    return Err(StoreError::Other(
                        "a key's replacement belongs to another workspace".into(),
                    ));
                }
                let old_params = KeyParams::new(old)?;
                let new_params = KeyParams::new(new)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Claims the old key for this replacement first: of concurrent rotations of
                // one key, one finds it unclaimed (the others wait for its row or write lock,
                // then find it claimed).
                let claimed: Option<String> = sqlx::query_scalar(
                    "UPDATE keys SET replaced_by = $1
                     WHERE id = $2 AND workspace_id = $3 AND replaced_by IS NULL
                     RETURNING id",
                )
                .bind(new.id.as_str())
                .bind(old.id.as_str())
                .bind(old.workspace_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                if claimed.is_none() {
                    // Gone, or replaced already: nothing was written (dropping rolls back).
                    return Ok(false);
                }
                let Some(hash) = Self::save_key(&mut tx, &old_params).await? else {
                    return Ok(false);
                };
                // A colliding new key fails here as a Conflict; the old key's save is rolled
                // back with the transaction.
                Self::insert_key_rows(&mut tx, std::slice::from_ref(&new_params)).await?;
                Self::append_changes(&mut tx, old.updated_at, KEY_CHANGED, &[&hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn consume_credits(&self, id: &KeyId, cost: i64) -> StoreResult<Option<i64>> {
                if cost < 0 {
                    return Err(StoreError::Other(format!(
                        "cannot spend a negative number of credits ({cost})"
                    )));
                }
                // A few rounds at most: a round only repeats when the credits grew (an update)
                // between its two statements.
                for _ in 0..3 {
                    // One conditional write: concurrent spenders queue on the row lock
                    // (PostgreSQL) or the write lock (SQLite), each seeing what the previous one
                    // left, so no more than the credits are ever spent.
                    let left: Option<i64> = sqlx::query_scalar(
                        "UPDATE keys SET remaining = remaining - $2
                         WHERE id = $1 AND remaining >= $2
                         RETURNING remaining",
                    )
                    .bind(id.as_str())
                    .bind(cost)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                    if left.is_some() {
                        return Ok(left);
                    }
                    // Nothing spent: unlimited, too few credits, or no such key.
                    let remaining: Option<Option<i64>> =
                        sqlx::query_scalar("SELECT remaining FROM keys WHERE id = $1")
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
