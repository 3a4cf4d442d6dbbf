//! The rows of the identity tables.

use keyrail_core::id::{SessionId, UserId};
use keyrail_core::model::{LoginThrottle, MfaState, Session, StoredSigningKey, User};
use keyrail_core::secret::Secret;
use keyrail_core::time::Timestamp;

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: String,
    email: String,
    name: String,
    password_hash: String,
    mfa_enabled: bool,
    superuser: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: UserId::from_trusted(r.id),
            email: r.email,
            name: r.name,
            password_hash: Secret::new(r.password_hash),
            mfa_enabled: r.mfa_enabled,
            superuser: r.superuser,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct MfaRow {
    mfa_secret: Option<String>,
    mfa_pending: Option<String>,
    mfa_last_step: Option<i64>,
}

impl From<MfaRow> for MfaState {
    fn from(r: MfaRow) -> Self {
        MfaState {
            secret: r.mfa_secret,
            pending: r.mfa_pending,
            last_step: r.mfa_last_step,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ThrottleRow {
    failures: i64,
    window_start: i64,
    locked_until: i64,
}

impl From<ThrottleRow> for LoginThrottle {
    fn from(r: ThrottleRow) -> Self {
        LoginThrottle {
            // Never negative; a count beyond u32 is as good as u32::MAX.
            failures: u32::try_from(r.failures.max(0)).unwrap_or(u32::MAX),
            window_start: Timestamp::from_millis(r.window_start),
            locked_until: Timestamp::from_millis(r.locked_until),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    id: String,
    user_id: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            id: SessionId::from_trusted(r.id),
            user_id: UserId::from_trusted(r.user_id),
            created_at: Timestamp::from_millis(r.created_at),
            last_used_at: Timestamp::from_millis(r.last_used_at),
            expires_at: Timestamp::from_millis(r.expires_at),
            revoked_at: r.revoked_at.map(Timestamp::from_millis),
            ip: r.ip,
            user_agent: r.user_agent,
        }
    }
}

/// A refresh token looked up with the state of its session.
#[derive(sqlx::FromRow)]
pub(super) struct TokenSessionRow {
    pub(super) session_id: String,
    pub(super) revoked_at: Option<i64>,
    pub(super) expires_at: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct SigningKeyRow {
    kid: String,
    sealed_private: String,
    created_at: i64,
}

impl From<SigningKeyRow> for StoredSigningKey {
    fn from(r: SigningKeyRow) -> Self {
        StoredSigningKey {
            kid: r.kid,
            sealed_private: r.sealed_private,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}
