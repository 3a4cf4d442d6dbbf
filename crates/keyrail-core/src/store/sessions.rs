//! Sessions and refresh tokens, and the single-use tokens of signing in: MFA challenges and
//! password resets.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::{SessionId, UserId};
use crate::model::{AuditEntry, RefreshOutcome, Session};
use crate::time::Timestamp;

/// What signing in hands out, and what it takes to finish or recover one: sessions with their
/// refresh tokens, the MFA challenge between a password and a second factor, password resets.
#[async_trait]
pub trait SessionStore: Send + Sync {
    // sessions and refresh tokens (stored as SHA-256 hex digests)
    /// Creates a session with its first refresh token.
    /// With its audit entry (`user.login`), in the same transaction. Given `password_hash`
    /// (the hash the login checked the password against), only while that is still the user's
    /// password: a login racing a password change opens no session that would outlive the
    /// change (`false`, nothing written).
    async fn insert_session(
        &self,
        session: &Session,
        refresh_hash: &str,
        password_hash: Option<&str>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>>;
    /// The user's sessions that are neither revoked nor expired at `now`, newest first.
    async fn active_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>>;
    /// Spends `old_hash` and stores `new_hash` in the same session, atomically. A spent token
    /// revokes its session (and appends `session.revoked` to the change log).
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
    ) -> StoreResult<RefreshOutcome>;
    /// Revokes one session of `user` (+ `session.revoked` change); `false` when there is no such
    /// live session of that user.
    async fn revoke_session(
        &self,
        user: &UserId,
        id: &SessionId,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Revokes every live session of the user (+ one change each); returns their ids.
    async fn revoke_user_sessions(
        &self,
        user: &UserId,
        at: Timestamp,
    ) -> StoreResult<Vec<SessionId>>;
    /// Sessions revoked at or after `since` (to rebuild the in-memory revocation set at start).
    async fn sessions_revoked_since(&self, since: Timestamp) -> StoreResult<Vec<SessionId>>;

    // single-use tokens: MFA challenges and password resets (SHA-256 hex digests)
    /// Stores a challenge for a login whose password was checked against `password_hash`, only
    /// while that is still the user's password: a login racing a password change gets no
    /// challenge (`false`, as for a user that does not exist).
    async fn insert_mfa_challenge(
        &self,
        hash: &str,
        user: &UserId,
        password_hash: &str,
        expires_at: Timestamp,
    ) -> StoreResult<bool>;
    /// The user of a live (unexpired, unused) challenge.
    async fn mfa_challenge_user(&self, hash: &str, now: Timestamp) -> StoreResult<Option<UserId>>;
    /// Spends the challenge; `false` if it was already spent or expired.
    async fn consume_mfa_challenge(&self, hash: &str, now: Timestamp) -> StoreResult<bool>;
    async fn insert_password_reset(
        &self,
        hash: &str,
        user: &UserId,
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// The user of a live (unexpired, unused) reset token.
    async fn password_reset_user(&self, hash: &str, now: Timestamp) -> StoreResult<Option<UserId>>;
    /// Spends a live reset token and sets its user's password to `password_hash`, which (as
    /// [`super::IdentityStore::set_password_hash`]) spends every other reset token and pending MFA
    /// challenge of the user, all in one transaction. Returns the user; `None` when the token is
    /// unknown, used or expired, and then nothing is written.
    async fn consume_password_reset(
        &self,
        hash: &str,
        password_hash: &str,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<Option<UserId>>;

    // cleanup: each deletes at most `limit` rows in one statement and says how many
    /// Deletes refresh tokens of sessions revoked or expired at `now`: a dead session's token
    /// gets a 401 with or without its row. A live session keeps all of its tokens, spent ones
    /// included, since presenting a spent one is how reuse is detected.
    async fn purge_refresh_tokens(&self, now: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Deletes sessions revoked or expired before `ended_before` (with any refresh tokens they
    /// still have: purge those first, so that this never cascades far).
    async fn purge_sessions(&self, ended_before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Deletes MFA challenges used, or expired at `now`.
    async fn purge_mfa_challenges(&self, now: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Deletes password reset tokens used, or expired at `now`.
    async fn purge_password_resets(&self, now: Timestamp, limit: u32) -> StoreResult<u64>;
}
