//! [`IdentityStore`] for both backends: users, MFA, login throttling and the JWT signing keys.
//! [`sessions`] holds the other half of signing in, [`SessionStore`]: sessions and refresh
//! tokens, MFA challenges and password resets.
//!
//! The backends run the same SQL here; where they differ in [`sessions`] is said there.
//!
//! [`SessionStore`]: keyrail_core::store::SessionStore

use async_trait::async_trait;
use keyrail_core::id::UserId;
use keyrail_core::model::{
    AuditEntry, LoginAttempt, LoginThrottle, MfaState, Page, StoredSigningKey, User,
};
use keyrail_core::store::{IdentityStore, StoreError, StoreResult};
use keyrail_core::time::Timestamp;

use super::{PgStore, SqliteStore, page_bounds};
use crate::error::map_err;

mod rows;
mod sessions;

use rows::{MfaRow, SigningKeyRow, ThrottleRow, UserRow};

/// What a write on a user that is not there reports: the trait gives such writes no `false`.
fn no_such_user(id: &UserId) -> StoreError {
    StoreError::Other(format!("user {id} does not exist"))
}

/// Taken (PostgreSQL) by a signing-key rotation before it checks for a fresh key, and held until
/// it commits: two nodes rotating at once queue, and the second finds the first one's key.
/// SQLite needs none: its `INSERT ... SELECT` takes the database's one write lock before reading.
const PG_SIGNING_KEYS_LOCK: &str = "SELECT pg_advisory_xact_lock(7250113010)";

/// Implements [`IdentityStore`] for `$store`, whose connections are `$conn` (one body of SQL,
/// the same on both backends); `$rotation_lock` is an optional statement run before a
/// signing-key rotation's check.
macro_rules! identity_store {
    ($store:ident, $conn:ty, $rotation_lock:expr) => {
        impl $store {
            /// Spends every live reset token and pending MFA challenge of `user`, inside the
            /// caller's transaction, after its password write (which took the user's row first:
            /// every password write does, so they queue on it): what was issued under the old
            /// password dies with it. Used by [`sessions`] too.
            async fn spend_password_tokens(
                conn: &mut $conn,
                user: &str,
                at: Timestamp,
            ) -> StoreResult<()> {
                for spend in [
                    "UPDATE password_resets SET used_at = $1
                     WHERE user_id = $2 AND used_at IS NULL AND expires_at > $1",
                    "UPDATE mfa_challenges SET used_at = $1
                     WHERE user_id = $2 AND used_at IS NULL AND expires_at > $1",
                ] {
                    sqlx::query(spend)
                        .bind(at.millis())
                        .bind(user)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl IdentityStore for $store {
            // users
            async fn insert_user(&self, user: &User) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users
                         (id, email, name, password_hash, mfa_enabled, superuser,
                          created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(user.id.as_str())
                .bind(user.email.as_str())
                .bind(user.name.as_str())
                .bind(user.password_hash.expose())
                .bind(user.mfa_enabled)
                .bind(user.superuser)
                .bind(user.created_at.millis())
                .bind(user.updated_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(User::from))
            }

            async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(User::from))
            }

            async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(User::from).collect())
            }

            async fn set_password_hash(
                &self,
                id: &UserId,
                hash: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(hash)
                .bind(at.millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::spend_password_tokens(&mut tx, id.as_str(), at).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn upgrade_password_hash(
                &self,
                id: &UserId,
                old_hash: &str,
                new_hash: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2
                     WHERE id = $3 AND password_hash = $4",
                )
                .bind(new_hash)
                .bind(at.millis())
                .bind(id.as_str())
                .bind(old_hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn set_user_name(
                &self,
                id: &UserId,
                name: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated =
                    sqlx::query("UPDATE users SET name = $1, updated_at = $2 WHERE id = $3")
                        .bind(name)
                        .bind(at.millis())
                        .bind(id.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                Ok(updated > 0)
            }

            async fn set_superuser(
                &self,
                id: &UserId,
                superuser: bool,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated =
                    sqlx::query("UPDATE users SET superuser = $1, updated_at = $2 WHERE id = $3")
                        .bind(superuser)
                        .bind(at.millis())
                        .bind(id.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                Ok(updated > 0)
            }

            // MFA
            async fn mfa_state(&self, user: &UserId) -> StoreResult<MfaState> {
                let row: Option<MfaRow> = sqlx::query_as(
                    "SELECT mfa_secret, mfa_pending, mfa_last_step FROM users WHERE id = $1",
                )
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                // A user that does not exist has no MFA.
                Ok(row.map(MfaState::from).unwrap_or_default())
            }

            async fn set_mfa_pending(
                &self,
                user: &UserId,
                sealed: Option<&str>,
            ) -> StoreResult<()> {
                let updated = sqlx::query("UPDATE users SET mfa_pending = $1 WHERE id = $2")
                    .bind(sealed)
                    .bind(user.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if updated == 0 {
                    return Err(no_such_user(user));
                }
                Ok(())
            }

            async fn enable_mfa(
                &self,
                user: &UserId,
                sealed_secret: &str,
                last_step: i64,
                recovery_code_hashes: &[String],
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE users
                     SET mfa_secret = $1, mfa_enabled = $2, mfa_pending = NULL,
                         mfa_last_step = $3, updated_at = $4
                     WHERE id = $5",
                )
                .bind(sealed_secret)
                .bind(true)
                .bind(last_step)
                .bind(at.millis())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Err(no_such_user(user));
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                for hash in recovery_code_hashes {
                    sqlx::query(
                        "INSERT INTO recovery_codes (user_id, code_hash, used_at, created_at)
                         VALUES ($1, $2, NULL, $3)",
                    )
                    .bind(user.as_str())
                    .bind(hash.as_str())
                    .bind(at.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn disable_mfa(&self, user: &UserId, at: Timestamp) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE users
                     SET mfa_secret = NULL, mfa_enabled = $1, mfa_pending = NULL,
                         mfa_last_step = NULL, updated_at = $2
                     WHERE id = $3",
                )
                .bind(false)
                .bind(at.millis())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Err(no_such_user(user));
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn advance_totp_step(&self, user: &UserId, step: i64) -> StoreResult<bool> {
                // One conditional write: of two concurrent uses of a step, the second finds the
                // step already stored and matches nothing.
                let updated = sqlx::query(
                    "UPDATE users SET mfa_last_step = $1
                     WHERE id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)",
                )
                .bind(step)
                .bind(user.as_str())
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn use_recovery_code(
                &self,
                user: &UserId,
                code_hash: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1
                     WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(at.millis())
                .bind(user.as_str())
                .bind(code_hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn unused_recovery_codes(&self, user: &UserId) -> StoreResult<u32> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }

            // login throttling
            async fn login_throttle(&self, key: &str) -> StoreResult<Option<LoginThrottle>> {
                let row: Option<ThrottleRow> = sqlx::query_as(
                    "SELECT failures, window_start, locked_until FROM login_throttle
                     WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(LoginThrottle::from))
            }

            async fn reserve_login_attempt(
                &self,
                key: &str,
                now: Timestamp,
                window_start_after: Timestamp,
                limit: u32,
            ) -> StoreResult<LoginAttempt> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // One statement decides, under the row lock (PostgreSQL) or the write lock
                // (SQLite): the row is created, or updated only when neither locked nor full.
                // A refused upsert updates and returns nothing (PostgreSQL still locks the row,
                // so the read below sees the state that refused it).
                let reserved: Option<ThrottleRow> = sqlx::query_as(
                    "INSERT INTO login_throttle (key, failures, window_start, locked_until)
                     VALUES ($1, 1, $2, 0)
                     ON CONFLICT (key) DO UPDATE SET
                         failures = CASE WHEN login_throttle.window_start < $3 THEN 1
                                         ELSE login_throttle.failures + 1 END,
                         window_start = CASE WHEN login_throttle.window_start < $3 THEN $2
                                             ELSE login_throttle.window_start END
                     WHERE login_throttle.locked_until <= $2
                       AND (login_throttle.window_start < $3 OR login_throttle.failures < $4)
                     RETURNING failures, window_start, locked_until",
                )
                .bind(key)
                .bind(now.millis())
                .bind(window_start_after.millis())
                .bind(i64::from(limit))
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                if let Some(row) = reserved {
                    tx.commit().await.map_err(map_err)?;
                    return Ok(LoginAttempt::Reserved(row.into()));
                }
                let found: Option<ThrottleRow> = sqlx::query_as(
                    "SELECT failures, window_start, locked_until FROM login_throttle
                     WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                // The upsert conflicted, so the row exists in this transaction's view.
                found
                    .map(|row| LoginAttempt::Refused(row.into()))
                    .ok_or_else(|| StoreError::Other("login throttle row vanished".into()))
            }

            async fn lock_login(
                &self,
                key: &str,
                window_start: Timestamp,
                until: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let locked = sqlx::query(
                    "UPDATE login_throttle SET failures = 0, locked_until = $3
                     WHERE key = $1 AND window_start = $2",
                )
                .bind(key)
                .bind(window_start.millis())
                .bind(until.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                // Audited only when this call locked it (a cleared window locks nothing).
                if locked > 0 {
                    Self::write_audit(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(locked > 0)
            }

            async fn clear_login_throttle(&self, key: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn purge_login_throttle(
                &self,
                window_start_before: Timestamp,
                now: Timestamp,
                limit: u32,
            ) -> StoreResult<u64> {
                // A window is over as reserve_login_attempt sees it: started strictly before.
                let deleted = sqlx::query(
                    "DELETE FROM login_throttle WHERE key IN (
                         SELECT key FROM login_throttle
                         WHERE window_start < $1 AND locked_until <= $2
                         LIMIT $3)",
                )
                .bind(window_start_before.millis())
                .bind(now.millis())
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(deleted)
            }

            // JWT signing keys
            async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
                let rows: Vec<SigningKeyRow> = sqlx::query_as(
                    "SELECT kid, sealed_private, created_at FROM signing_keys
                     ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredSigningKey::from).collect())
            }

            async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, sealed_private, created_at)
                     VALUES ($1, $2, $3)",
                )
                .bind(key.kid.as_str())
                .bind(key.sealed_private.as_str())
                .bind(key.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn rotate_signing_key(
                &self,
                key: &StoredSigningKey,
                fresh_after: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let lock: Option<&'static str> = $rotation_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                let inserted = sqlx::query(
                    "INSERT INTO signing_keys (kid, sealed_private, created_at)
                     SELECT $1, $2, $3
                     WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE created_at > $4)",
                )
                .bind(key.kid.as_str())
                .bind(key.sealed_private.as_str())
                .bind(key.created_at.millis())
                .bind(fresh_after.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if inserted == 1 {
                    // The other nodes reload their keyrings (and publish the key) at once.
                    Self::append_changes(
                        &mut tx,
                        key.created_at,
                        "signing_key.created",
                        &[key.kid.as_str()],
                    )
                    .await?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(inserted == 1)
            }
        }
    };
}

identity_store!(SqliteStore, sqlx::SqliteConnection, None);
identity_store!(PgStore, sqlx::PgConnection, Some(PG_SIGNING_KEYS_LOCK));
