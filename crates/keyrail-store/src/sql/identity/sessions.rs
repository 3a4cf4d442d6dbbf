//! [`SessionStore`] for both backends: sessions and refresh tokens, MFA challenges and password
//! resets.
//!
//! Where the backends differ: revoking sessions appends to the change log in the same
//! transaction (`append_changes`, which on PostgreSQL first takes the change-log lock).

use async_trait::async_trait;
use keyrail_core::id::{SessionId, UserId};
use keyrail_core::model::{AuditEntry, RefreshOutcome, Session};
use keyrail_core::store::{SessionStore, StoreResult};
use keyrail_core::time::Timestamp;

use super::rows::{SessionRow, TokenSessionRow};
use crate::error::map_err;
use crate::sql::{PgStore, SqliteStore};

/// The change-log kind of a revoked session (its subject is the session id).
const SESSION_REVOKED: &str = "session.revoked";

/// Implements [`SessionStore`] for `$store` (one body of SQL, the same on both backends).
macro_rules! session_store {
    ($store:ident) => {
        #[async_trait]
        impl SessionStore for $store {
            // sessions and refresh tokens
            async fn insert_session(
                &self,
                session: &Session,
                refresh_hash: &str,
                password_hash: Option<&str>,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // One statement: the password cannot change between the check and the insert.
                let inserted = sqlx::query(
                    "INSERT INTO sessions
                         (id, user_id, created_at, last_used_at, expires_at, revoked_at, ip,
                          user_agent)
                     SELECT $1, id, $3, $4, $5, $6, $7, $8 FROM users
                     WHERE id = $2 AND ($9 IS NULL OR password_hash = $9)",
                )
                .bind(session.id.as_str())
                .bind(session.user_id.as_str())
                .bind(session.created_at.millis())
                .bind(session.last_used_at.millis())
                .bind(session.expires_at.millis())
                .bind(session.revoked_at.map(Timestamp::millis))
                .bind(session.ip.as_deref())
                .bind(session.user_agent.as_deref())
                .bind(password_hash)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if inserted == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (hash, session_id, created_at, spent_at)
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(refresh_hash)
                .bind(session.id.as_str())
                .bind(session.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
                let row: Option<SessionRow> = sqlx::query_as(
                    "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, ip,
                            user_agent
                     FROM sessions WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Session::from))
            }

            async fn active_sessions(
                &self,
                user: &UserId,
                now: Timestamp,
            ) -> StoreResult<Vec<Session>> {
                let rows: Vec<SessionRow> = sqlx::query_as(
                    "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, ip,
                            user_agent
                     FROM sessions
                     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
                     ORDER BY created_at DESC, id DESC",
                )
                .bind(user.as_str())
                .bind(now.millis())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Session::from).collect())
            }

            async fn rotate_refresh(
                &self,
                old_hash: &str,
                new_hash: &str,
                now: Timestamp,
            ) -> StoreResult<RefreshOutcome> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Spend first, conditionally. Of two concurrent rotations of one token, the
                // second waits for the first (row lock / write lock) and then matches nothing,
                // so it is told apart below as a reuse.
                let spent: Option<String> = sqlx::query_scalar(
                    "UPDATE refresh_tokens SET spent_at = $1
                     WHERE hash = $2 AND spent_at IS NULL
                     RETURNING session_id",
                )
                .bind(now.millis())
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;

                if let Some(session_id) = spent {
                    let session: Option<SessionRow> = sqlx::query_as(
                        "UPDATE sessions SET last_used_at = $1
                         WHERE id = $2 AND revoked_at IS NULL AND expires_at > $1
                         RETURNING id, user_id, created_at, last_used_at, expires_at,
                                   revoked_at, ip, user_agent",
                    )
                    .bind(now.millis())
                    .bind(session_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let Some(session) = session else {
                        // Revoked or expired: nothing is written (dropping rolls back).
                        return Ok(RefreshOutcome::Dead);
                    };
                    sqlx::query(
                        "INSERT INTO refresh_tokens (hash, session_id, created_at, spent_at)
                         VALUES ($1, $2, $3, NULL)",
                    )
                    .bind(new_hash)
                    .bind(session_id.as_str())
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    tx.commit().await.map_err(map_err)?;
                    return Ok(RefreshOutcome::Rotated(session.into()));
                }

                let found: Option<TokenSessionRow> = sqlx::query_as(
                    "SELECT t.session_id, s.revoked_at, s.expires_at
                     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                     WHERE t.hash = $1",
                )
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(found) = found else {
                    return Ok(RefreshOutcome::Unknown);
                };
                if found.revoked_at.is_some() || found.expires_at <= now.millis() {
                    return Ok(RefreshOutcome::Dead);
                }
                // The token exists and is spent, its session live: reuse. End the session.
                let revoked = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now.millis())
                .bind(found.session_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if revoked > 0 {
                    Self::append_changes(&mut tx, now, SESSION_REVOKED, &[&found.session_id])
                        .await?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(RefreshOutcome::Reused(SessionId::from_trusted(
                    found.session_id,
                )))
            }

            async fn revoke_session(
                &self,
                user: &UserId,
                id: &SessionId,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Expired sessions are revoked too: an access token issued shortly before the
                // session expired outlives it, and the change log is how other nodes learn.
                let revoked = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                )
                .bind(at.millis())
                .bind(id.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if revoked == 0 {
                    return Ok(false);
                }
                Self::append_changes(&mut tx, at, SESSION_REVOKED, &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn revoke_user_sessions(
                &self,
                user: &UserId,
                at: Timestamp,
            ) -> StoreResult<Vec<SessionId>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let mut ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $1
                     WHERE user_id = $2 AND revoked_at IS NULL
                     RETURNING id",
                )
                .bind(at.millis())
                .bind(user.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                ids.sort();
                let subjects: Vec<&str> = ids.iter().map(String::as_str).collect();
                Self::append_changes(&mut tx, at, SESSION_REVOKED, &subjects).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(ids.into_iter().map(SessionId::from_trusted).collect())
            }

            async fn sessions_revoked_since(
                &self,
                since: Timestamp,
            ) -> StoreResult<Vec<SessionId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE revoked_at >= $1 ORDER BY revoked_at, id",
                )
                .bind(since.millis())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(ids.into_iter().map(SessionId::from_trusted).collect())
            }

            // single-use tokens: MFA challenges and password resets
            async fn insert_mfa_challenge(
                &self,
                hash: &str,
                user: &UserId,
                password_hash: &str,
                expires_at: Timestamp,
            ) -> StoreResult<bool> {
                // One statement: the password cannot change between the check and the insert.
                let inserted = sqlx::query(
                    "INSERT INTO mfa_challenges (hash, user_id, expires_at)
                     SELECT $1, id, $3 FROM users WHERE id = $2 AND password_hash = $4",
                )
                .bind(hash)
                .bind(user.as_str())
                .bind(expires_at.millis())
                .bind(password_hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(inserted > 0)
            }

            async fn mfa_challenge_user(
                &self,
                hash: &str,
                now: Timestamp,
            ) -> StoreResult<Option<UserId>> {
                let user: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM mfa_challenges
                     WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(hash)
                .bind(now.millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(user.map(UserId::from_trusted))
            }

            async fn consume_mfa_challenge(&self, hash: &str, now: Timestamp) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE mfa_challenges SET used_at = $1
                     WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
                )
                .bind(now.millis())
                .bind(hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn insert_password_reset(
                &self,
                hash: &str,
                user: &UserId,
                expires_at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO password_resets (hash, user_id, expires_at, used_at)
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(hash)
                .bind(user.as_str())
                .bind(expires_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn password_reset_user(
                &self,
                hash: &str,
                now: Timestamp,
            ) -> StoreResult<Option<UserId>> {
                let user: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM password_resets
                     WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(hash)
                .bind(now.millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(user.map(UserId::from_trusted))
            }

            async fn consume_password_reset(
                &self,
                hash: &str,
                password_hash: &str,
                now: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<Option<UserId>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // The user's row first, as every password write takes it first (PostgreSQL: its
                // row lock orders them; taking a token's row first would deadlock two resets
                // racing with two tokens of one user).
                let user: Option<String> = sqlx::query_scalar(
                    "UPDATE users SET password_hash = $1, updated_at = $2
                     WHERE id = (SELECT user_id FROM password_resets
                                 WHERE hash = $3 AND used_at IS NULL AND expires_at > $2)
                     RETURNING id",
                )
                .bind(password_hash)
                .bind(now.millis())
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(user) = user else {
                    return Ok(None);
                };
                // Then the token, conditionally: one spent meanwhile (by a racing reset with
                // another token, which spends this one) fails the reset, and dropping the
                // transaction rolls the password write back.
                let spent = sqlx::query(
                    "UPDATE password_resets SET used_at = $1
                     WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
                )
                .bind(now.millis())
                .bind(hash)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if spent == 0 {
                    return Ok(None);
                }
                Self::spend_password_tokens(&mut tx, &user, now).await?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Some(UserId::from_trusted(user)))
            }

            // cleanup
            async fn purge_refresh_tokens(&self, now: Timestamp, limit: u32) -> StoreResult<u64> {
                // Dead sessions are found by sessions_revoked_at_idx and
                // sessions_expires_at_idx, their tokens by refresh_tokens_session_id_idx.
                self.delete_batch(
                    "DELETE FROM refresh_tokens WHERE hash IN (
                         SELECT t.hash FROM sessions s
                         JOIN refresh_tokens t ON t.session_id = s.id
                         WHERE s.revoked_at IS NOT NULL OR s.expires_at <= $1
                         LIMIT $2)",
                    now,
                    limit,
                )
                .await
            }

            async fn purge_sessions(
                &self,
                ended_before: Timestamp,
                limit: u32,
            ) -> StoreResult<u64> {
                self.delete_batch(
                    "DELETE FROM sessions WHERE id IN (
                         SELECT id FROM sessions WHERE revoked_at < $1 OR expires_at < $1
                         LIMIT $2)",
                    ended_before,
                    limit,
                )
                .await
            }

            async fn purge_mfa_challenges(&self, now: Timestamp, limit: u32) -> StoreResult<u64> {
                self.delete_batch(
                    "DELETE FROM mfa_challenges WHERE hash IN (
                         SELECT hash FROM mfa_challenges
                         WHERE expires_at <= $1 OR used_at IS NOT NULL
                         LIMIT $2)",
                    now,
                    limit,
                )
                .await
            }

            async fn purge_password_resets(&self, now: Timestamp, limit: u32) -> StoreResult<u64> {
                self.delete_batch(
                    "DELETE FROM password_resets WHERE hash IN (
                         SELECT hash FROM password_resets
                         WHERE expires_at <= $1 OR used_at IS NOT NULL
                         LIMIT $2)",
                    now,
                    limit,
                )
                .await
            }
        }
    };
}

session_store!(SqliteStore);
session_store!(PgStore);
