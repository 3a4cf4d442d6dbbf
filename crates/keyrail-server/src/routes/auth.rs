//! `/api/v1/auth/*`: signup, login (and its MFA step), refresh, logout, password reset. Public
//! and rate limited per client IP.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::identity::{LoginOutcome, Tokens};
use keyrail_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Meta, UserAuth, clear_cookies, login_cookies};
use crate::error::{ApiError, ErrorBody};
use crate::iplimit::ip_limited;
use crate::json::ApiJson;
use crate::routes::common::NoStore;
use crate::routes::profile::UserOut;
use crate::state::AppState;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let limits = &state.config.limits;
    OpenApiRouter::new()
        .merge(ip_limited(
            OpenApiRouter::new().routes(routes!(signup)),
            state,
            "signup",
            limits.signup_per_ip,
        ))
        .merge(ip_limited(
            OpenApiRouter::new().routes(routes!(login)),
            state,
            "login",
            limits.login_per_ip,
        ))
        .merge(ip_limited(
            OpenApiRouter::new().routes(routes!(password_reset_request)),
            state,
            "password_reset",
            limits.password_reset_per_ip,
        ))
        .routes(routes!(login_mfa))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(password_reset))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "email": "ada@example.com",
    "password": "analytical-engine-1843",
    "name": "Ada Lovelace"
}))]
pub struct SignupIn {
    #[schema(example = "ada@example.com")]
    email: String,
    /// 12 to 128 characters, not a commonly breached password.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Secret,
    #[schema(example = "Ada Lovelace")]
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignupOut {
    user: UserOut,
}

/// Create an account (unless the server runs with `allow_signup = false`).
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupIn,
    responses(
        (status = 201, description = "Account created", body = SignupOut),
        (status = 400, description = "Invalid email, name or password (too short, too long, or breached)", body = ErrorBody),
        (status = 403, description = "`signup_disabled`: the server runs with `allow_signup = false`; superusers create users", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 429, description = "Too many signups from this IP", body = ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignupIn>,
) -> Result<(StatusCode, Json<SignupOut>), ApiError> {
    if !state.config.allow_signup {
        return Err(ApiError::signup_disabled());
    }
    let user = state
        .identity
        .signup(&body.email, &body.password, &body.name)
        .await?;
    Ok((StatusCode::CREATED, Json(SignupOut { user: user.into() })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "analytical-engine-1843"}))]
pub struct LoginIn {
    email: String,
    #[schema(value_type = String, format = Password)]
    password: Secret,
}

/// Access and refresh tokens; or, with MFA on, `{mfa_required: true, mfa_token}`.
#[derive(Serialize, ToSchema)]
pub struct TokensOut {
    access_token: String,
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    user: UserOut,
}

#[derive(Serialize, ToSchema)]
pub struct MfaRequiredOut {
    mfa_required: bool,
    /// Send it with a code to `/api/v1/auth/login/mfa` within 5 minutes.
    mfa_token: String,
}

fn tokens_response(state: &AppState, tokens: Tokens) -> Response {
    let cookies = login_cookies(
        state,
        tokens.access_token.expose(),
        tokens.session_id.as_str(),
        tokens.expires_in,
    );
    let body = TokensOut {
        access_token: tokens.access_token.expose().to_owned(),
        refresh_token: tokens.refresh_token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        user: tokens.user.into(),
    };
    let mut resp = NoStore(Json(body)).into_response();
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Log in with email and password. Sets the `keyrail_token` and `keyrail_csrf` cookies too.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginIn,
    responses(
        (status = 200, description = "Tokens, or the MFA step", body = TokensOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 401, description = "`invalid_login`: wrong email or password (same answer whether the email exists or not)", body = ErrorBody),
        (status = 429, description = "`account_locked` after repeated failures for this email, or too many attempts from this IP; `Retry-After` is set", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<LoginIn>,
) -> Result<Response, ApiError> {
    match state
        .identity
        .login(&meta, &body.email, &body.password)
        .await?
    {
        LoginOutcome::Tokens(tokens) => Ok(tokens_response(&state, *tokens)),
        LoginOutcome::MfaRequired { mfa_token } => Ok(NoStore(Json(MfaRequiredOut {
            mfa_required: true,
            mfa_token: mfa_token.expose().to_owned(),
        }))
        .into_response()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "mfa_token": "mfa_7Yq2Lr9XcW4pN1sB8kD3hF6jT0vZ5mGa",
    "code": "123456"
}))]
pub struct LoginMfaIn {
    #[schema(value_type = String)]
    mfa_token: Secret,
    /// A 6-digit TOTP code or a recovery code.
    #[schema(value_type = String, example = "123456")]
    code: Secret,
}

/// Second step of a login with MFA: a TOTP code (each time step once) or a recovery code (each
/// once). 5 attempts per 5 minutes per user.
#[utoipa::path(post, path = "/api/v1/auth/login/mfa", tag = "auth", request_body = LoginMfaIn,
    responses(
        (status = 200, description = "Tokens", body = TokensOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 401, description = "`invalid_mfa_code` or `invalid_mfa_token`", body = ErrorBody),
        (status = 429, description = "Too many attempts for this user", body = ErrorBody),
    ))]
pub async fn login_mfa(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<LoginMfaIn>,
) -> Result<Response, ApiError> {
    let tokens = state
        .identity
        .login_mfa(&meta, &body.mfa_token, &body.code)
        .await?;
    Ok(tokens_response(&state, tokens))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "rt_Qm4vX9pL2sK7nB1cW8yD3fH6jR0tZ5aE"}))]
pub struct RefreshIn {
    #[schema(value_type = String)]
    refresh_token: Secret,
}

/// Trade a refresh token for a new pair. The old token is spent; presenting a spent token
/// revokes its whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshIn,
    responses(
        (status = 200, description = "A new pair", body = TokensOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 401, description = "`invalid_token`: unknown, spent (the session is now revoked) or expired", body = ErrorBody),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshIn>,
) -> Result<Response, ApiError> {
    let tokens = state.identity.refresh(&body.refresh_token).await?;
    Ok(tokens_response(&state, tokens))
}

/// Revoke the current session: its access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Logged out; the cookies are cleared"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    UserAuth(who): UserAuth,
) -> Result<Response, ApiError> {
    state.identity.logout(&who).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in clear_cookies(&state) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct ResetRequestIn {
    email: String,
}

/// Ask for a password-reset mail. Always 202, whether the account exists or not.
#[utoipa::path(post, path = "/api/v1/auth/password/reset/request", tag = "auth", request_body = ResetRequestIn,
    responses(
        (status = 202, description = "Accepted; a mail with a single-use token (valid 30 minutes) goes out if the account exists"),
        (status = 429, description = "Too many requests from this IP", body = ErrorBody),
    ))]
pub async fn password_reset_request(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetRequestIn>,
) -> Result<StatusCode, ApiError> {
    state.identity.request_password_reset(&body.email).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "token": "Hk3mP9qL2vX7sN4cB8wD1fJ6yT0rZ5aG",
    "password": "difference-engine-1822"
}))]
pub struct ResetIn {
    #[schema(value_type = String)]
    token: Secret,
    /// 12 to 128 characters, not a commonly breached password.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Secret,
}

/// Set a new password with the mailed token. Unlocks the account and revokes every session.
#[utoipa::path(post, path = "/api/v1/auth/password/reset", tag = "auth", request_body = ResetIn,
    responses(
        (status = 204, description = "Password changed"),
        (status = 400, description = "Invalid or expired token, or a password the policy refuses", body = ErrorBody),
    ))]
pub async fn password_reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<ResetIn>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .reset_password(&meta, &body.token, &body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
