//! `/api/v1/profile*`: the logged-in user's own account, MFA and sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyrail_core::Timestamp;
use keyrail_core::model::{Session, User};
use keyrail_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Meta, UserAuth};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::routes::common::NoStore;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_profile, patch_profile))
        .routes(routes!(change_password))
        .routes(routes!(mfa_setup))
        .routes(routes!(mfa_verify))
        .routes(routes!(mfa_disable))
        .routes(routes!(list_sessions))
        .routes(routes!(delete_session))
}

/// A user, wherever one is returned.
#[derive(Serialize, ToSchema)]
pub struct UserOut {
    id: String,
    email: String,
    name: String,
    mfa_enabled: bool,
    superuser: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email,
            name: u.name,
            mfa_enabled: u.mfa_enabled,
            superuser: u.superuser,
            created_at: u.created_at,
        }
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/profile", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not a logged-in user (API keys and app tokens)", body = ErrorBody),
    ))]
pub async fn get_profile(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(state.identity.user(&who).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada King"}))]
pub struct ProfilePatch {
    /// 1 to 100 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
}

/// Change the caller's display name.
#[utoipa::path(patch, path = "/api/v1/profile", tag = "profile", request_body = ProfilePatch,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub async fn patch_profile(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
    ApiJson(body): ApiJson<ProfilePatch>,
) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(state.identity.rename(&who, &body.name).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "current_password": "analytical-engine-1843",
    "new_password": "difference-engine-1822"
}))]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: Secret,
    /// 12 to 128 characters, not a commonly breached password.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    new_password: Secret,
}

/// Change the password. Every session ends, this one included: log in again.
#[utoipa::path(post, path = "/api/v1/profile/password", tag = "profile", request_body = PasswordChange,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Wrong current password, or a new one the policy refuses", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .change_password(&who, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct MfaSetupOut {
    /// Base32 TOTP secret (RFC 6238, SHA1, 6 digits, 30 s).
    secret: String,
    otpauth_url: String,
}

/// Start MFA setup: a new TOTP secret, confirmed by `/profile/mfa/verify`.
#[utoipa::path(post, path = "/api/v1/profile/mfa/setup", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The secret to put in an authenticator app", body = MfaSetupOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 409, description = "`mfa_already_enabled`", body = ErrorBody),
    ))]
pub async fn mfa_setup(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
) -> Result<NoStore<Json<MfaSetupOut>>, ApiError> {
    let setup = state.identity.mfa_setup(&who).await?;
    Ok(NoStore(Json(MfaSetupOut {
        secret: setup.secret.expose().to_owned(),
        otpauth_url: setup.otpauth_url.expose().to_owned(),
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "123456"}))]
pub struct CodeIn {
    #[schema(value_type = String, example = "123456")]
    code: Secret,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesOut {
    /// 10 single-use codes, shown this once.
    recovery_codes: Vec<String>,
}

/// Confirm the secret with a current code: MFA is on. 5 attempts per 5 minutes.
#[utoipa::path(post, path = "/api/v1/profile/mfa/verify", tag = "profile", request_body = CodeIn,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "MFA enabled", body = RecoveryCodesOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 400, description = "Invalid code", body = ErrorBody),
        (status = 409, description = "`mfa_already_enabled` or `mfa_not_set_up`", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn mfa_verify(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<CodeIn>,
) -> Result<NoStore<Json<RecoveryCodesOut>>, ApiError> {
    let codes = state.identity.mfa_enable(&meta, &who, &body.code).await?;
    Ok(NoStore(Json(RecoveryCodesOut {
        recovery_codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
    })))
}

/// Turn MFA off with a current TOTP code or a recovery code.
#[utoipa::path(post, path = "/api/v1/profile/mfa/disable", tag = "profile", request_body = CodeIn,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "MFA disabled"),
        (status = 400, description = "Invalid code", body = ErrorBody),
        (status = 409, description = "`mfa_not_enabled`", body = ErrorBody),
    ))]
pub async fn mfa_disable(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
    ApiJson(body): ApiJson<CodeIn>,
) -> Result<StatusCode, ApiError> {
    state.identity.mfa_disable(&who, &body.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    id: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last_used_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    ip: Option<String>,
    user_agent: Option<String>,
    /// The session of the token that made this request.
    current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    data: Vec<SessionOut>,
    next_cursor: Option<String>,
}

fn session_out(s: Session, current: &str) -> SessionOut {
    SessionOut {
        current: s.id.as_str() == current,
        id: s.id.to_string(),
        created_at: s.created_at,
        last_used_at: s.last_used_at,
        expires_at: s.expires_at,
        ip: s.ip,
        user_agent: s.user_agent,
    }
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/api/v1/profile/sessions", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Sessions", body = SessionList)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state.identity.sessions(&who).await?;
    Ok(Json(SessionList {
        data: sessions
            .into_iter()
            .map(|s| session_out(s, &who.session_id))
            .collect(),
        next_cursor: None,
    }))
}

/// Revoke one of the caller's sessions: its tokens stop working at once.
#[utoipa::path(delete, path = "/api/v1/profile/sessions/{id}", tag = "profile",
    params(("id" = String, Path, description = "Session id (`ses_...`)")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such live session of the caller", body = ErrorBody),
    ))]
pub async fn delete_session(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identity.revoke_session(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
