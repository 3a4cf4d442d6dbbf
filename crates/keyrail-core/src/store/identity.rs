//! Users, MFA, login throttling, sessions and refresh tokens, single-use tokens and the JWT
//! signing keys.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::{SessionId, UserId};
use crate::model::{
    LoginAttempt, LoginThrottle, MfaState, Page, RefreshOutcome, Session, StoredSigningKey, User,
};
use crate::time::Timestamp;

/// Who may sign in, and how: accounts, second factors, sessions and the keys that sign tokens.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    // users
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// `email` must already be normalised.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>>;

    /// Sets a new password (a PHC string): a change of credentials. In the same transaction it
    /// spends every outstanding password reset token and pending MFA challenge of the user, so
    /// that nothing issued under the old password outlives it. `false` when there is no such
    /// user.
    async fn set_password_hash(&self, id: &UserId, hash: &str, at: Timestamp) -> StoreResult<bool>;
    /// Replaces the hash of the same password (stronger parameters), only while the stored hash
    /// is still `old_hash`: a password changed meanwhile stays changed. Spends nothing. `false`
    /// when the stored hash is another (or there is no such user).
    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        old_hash: &str,
        new_hash: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    async fn set_user_name(&self, id: &UserId, name: &str, at: Timestamp) -> StoreResult<bool>;
    /// Grants or removes platform superuser rights.
    async fn set_superuser(&self, id: &UserId, superuser: bool, at: Timestamp)
    -> StoreResult<bool>;

    // MFA
    async fn mfa_state(&self, user: &UserId) -> StoreResult<MfaState>;
    /// Stores (or clears) a TOTP secret awaiting confirmation.
    async fn set_mfa_pending(&self, user: &UserId, sealed: Option<&str>) -> StoreResult<()>;
    /// Turns MFA on: the secret becomes the enabled one, `mfa_enabled` is set, the pending secret
    /// is cleared, `last_step` is recorded and the recovery codes are replaced, atomically.
    async fn enable_mfa(
        &self,
        user: &UserId,
        sealed_secret: &str,
        last_step: i64,
        recovery_code_hashes: &[String],
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Turns MFA off and deletes the secret and the recovery codes.
    async fn disable_mfa(&self, user: &UserId, at: Timestamp) -> StoreResult<()>;
    /// Records `step` as the last accepted TOTP step if it is later than the stored one; `false`
    /// when it is not (a replay). Atomic: two concurrent uses of one code cannot both pass.
    async fn advance_totp_step(&self, user: &UserId, step: i64) -> StoreResult<bool>;
    /// Marks an unused recovery code used; `false` when no such unused code exists.
    async fn use_recovery_code(
        &self,
        user: &UserId,
        code_hash: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    async fn unused_recovery_codes(&self, user: &UserId) -> StoreResult<u32>;

    // login throttling per email (keyed by a hash of the normalised email)
    async fn login_throttle(&self, key: &str) -> StoreResult<Option<LoginThrottle>>;
    /// Reserves one password check for `key`, atomically (one statement: of any number of
    /// concurrent callers, on any number of nodes, at most `limit` are granted per window).
    /// Refused while `locked_until > now`, or when the window (started after
    /// `window_start_after`) already holds `limit` attempts; otherwise a window that started at
    /// or before `window_start_after` is over and a new one starts at `now` with this attempt,
    /// else the attempt is counted in the current one. A reserved attempt stays counted as a
    /// failure unless [`IdentityStore::clear_login_throttle`] forgets the key.
    async fn reserve_login_attempt(
        &self,
        key: &str,
        now: Timestamp,
        window_start_after: Timestamp,
        limit: u32,
    ) -> StoreResult<LoginAttempt>;
    /// Locks the key until `until` and resets its count, if its window is still the one that
    /// started at `window_start` (one a correct password cleared meanwhile is not locked
    /// again); `false` when nothing was locked.
    async fn lock_login(
        &self,
        key: &str,
        window_start: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    async fn clear_login_throttle(&self, key: &str) -> StoreResult<()>;

    // sessions and refresh tokens (stored as SHA-256 hex digests)
    /// Creates a session with its first refresh token.
    async fn insert_session(&self, session: &Session, refresh_hash: &str) -> StoreResult<()>;
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
    /// [`IdentityStore::set_password_hash`]) spends every other reset token and pending MFA
    /// challenge of the user, all in one transaction. Returns the user; `None` when the token is
    /// unknown, used or expired, and then nothing is written.
    async fn consume_password_reset(
        &self,
        hash: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UserId>>;

    // JWT signing keys
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Inserts a key; a duplicate kid is a `Conflict`.
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;
}
