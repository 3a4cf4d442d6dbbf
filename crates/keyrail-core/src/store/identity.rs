//! Users, MFA, login throttling and the JWT signing keys.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::UserId;
use crate::model::{
    AuditEntry, LoginAttempt, LoginThrottle, MfaState, Page, StoredSigningKey, User,
};
use crate::time::Timestamp;

/// Who may sign in, and how: accounts, second factors, the login lockout and the keys that sign
/// tokens. What a sign-in hands out is [`super::SessionStore`]'s.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    // users
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// `email` must already be normalised.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>>;

    /// Sets a new password (a PHC string): a change of credentials. In the same transaction it
    /// spends every outstanding password reset token and pending MFA challenge of the user
    /// ([`super::SessionStore`]'s), so that nothing issued under the old password outlives it. `false` when there is no such
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
        audit: &AuditEntry,
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
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn clear_login_throttle(&self, key: &str) -> StoreResult<()>;
    /// Deletes at most `limit` keys whose window started before `window_start_before` (it is
    /// over) and whose lock, if any, is over at `now`: the next attempt of such a key starts
    /// afresh with or without its row. Says how many went.
    async fn purge_login_throttle(
        &self,
        window_start_before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<u64>;

    // JWT signing keys
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Inserts a key; a duplicate kid is a `Conflict`.
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;
    /// Inserts `key` unless a key created after `fresh_after` is stored: the rotation decided
    /// once for every node sharing the store (concurrent rotations queue on a lock; the later
    /// ones find the first one's key). Says whether it inserted; a duplicate kid is a `Conflict`.
    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        fresh_after: Timestamp,
    ) -> StoreResult<bool>;
}
