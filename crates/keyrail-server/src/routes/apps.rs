//! Apps: `/api/v1/builder-profiles`, `/api/v1/apps*` (a developer's integrations, their secrets
//! and tokens) and `W/grants` (members granting apps scopes in a workspace).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use keyrail_core::Timestamp;
use keyrail_core::apps::{AppPatch, NewApp, invalid_client};
use keyrail_core::model::{App, BuilderProfile, GrantView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{FailedAuth, Meta};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::routes::common::{ApiQuery, Caller, List, ListParams, NoStore, some_or_null};
use crate::state::AppState;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_profile, list_profiles))
        .routes(routes!(create_app, list_apps))
        .routes(routes!(get_app, patch_app, delete_app))
        .routes(routes!(rotate_secret))
        .routes(routes!(create_grant, list_grants))
        .routes(routes!(revoke_grant))
        // Client credentials arrive here: the per-IP throttle applies, and failed ones count
        // toward the failed-authentication block.
        .merge(crate::iplimit::ip_limited(
            OpenApiRouter::new().routes(routes!(issue_token)),
            state,
            "global",
            state.config.limits.global_per_principal,
        ))
}

// ---- builder profiles

/// A developer's public identity as an app publisher.
#[derive(Serialize, ToSchema)]
pub struct ProfileOut {
    #[schema(example = "bld_0690yjh8v1a8r3t2kz9m4q5w6e")]
    id: String,
    name: String,
    website: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<BuilderProfile> for ProfileOut {
    fn from(p: BuilderProfile) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name,
            website: p.website,
            created_at: p.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Acme Labs",
    "website": "https://acme.example"
}))]
pub struct ProfileIn {
    /// 1 to 100 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    /// An http(s) URL (printable ASCII, at most 2048 characters), or null.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = r"^(https?://[\x21\x22\x24-\x2e\x30-\x3e\x40-\x7e][\x21-\x7e]*)?$"
    )]
    website: Option<String>,
}

/// Create a builder profile (logged-in users only).
#[utoipa::path(post, path = "/api/v1/builder-profiles", tag = "apps", request_body = ProfileIn,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created", body = ProfileOut),
        (status = 400, description = "Invalid name or website", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "API keys and app tokens cannot", body = ErrorBody),
    ))]
pub async fn create_profile(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<ProfileIn>,
) -> Result<(StatusCode, Json<ProfileOut>), ApiError> {
    let p = state
        .apps
        .create_profile(&actor, &body.name, body.website.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(p.into())))
}

/// The caller's builder profiles.
#[utoipa::path(get, path = "/api/v1/builder-profiles", tag = "apps", params(ListParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Profiles", body = List<ProfileOut>),
        (status = 403, description = "API keys and app tokens cannot", body = ErrorBody),
    ))]
pub async fn list_profiles(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<List<ProfileOut>>, ApiError> {
    let page = params.page()?;
    let data: Vec<ProfileOut> = state
        .apps
        .list_profiles(&actor, &page)
        .await?
        .into_iter()
        .map(ProfileOut::from)
        .collect();
    Ok(Json(List::paged(data, &page, |p| p.id.clone())))
}

// ---- apps

/// An app (never its secret).
#[derive(Serialize, ToSchema)]
pub struct AppOut {
    /// `kr_app_` and 24 characters of `[a-z0-9]`.
    #[schema(example = "kr_app_3kq9x2m4n7p1r5t8v0w6y2z4")]
    client_id: String,
    name: String,
    description: String,
    builder_profile_id: String,
    /// `null`: any workspace may grant the app; else only these.
    workspace_restrictions: Option<Vec<String>>,
    active: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl From<App> for AppOut {
    fn from(a: App) -> Self {
        Self {
            client_id: a.client_id,
            name: a.name,
            description: a.description,
            // Only confidential apps are served here, and they all have a profile.
            builder_profile_id: a
                .builder_profile_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            workspace_restrictions: a
                .workspace_restrictions
                .map(|ids| ids.iter().map(ToString::to_string).collect()),
            active: a.active,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A new app with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedApp {
    /// base64url (no padding) of 16 random bytes: the A128GCM key of the tokens' outer layer.
    client_secret: String,
    #[serde(flatten)]
    app: AppOut,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Chat bridge",
    "description": "Posts build results to a workspace's chat",
    "builder_profile_id": "bld_0690yjh8v1a8r3t2kz9m4q5w6e",
    "workspace_restrictions": null
}))]
pub struct AppIn {
    /// 1 to 100 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    /// Up to 1000 characters.
    #[serde(default)]
    description: Option<String>,
    /// One of the caller's builder profiles.
    builder_profile_id: String,
    /// Workspace ids the app may be granted in; null (the default) for any.
    #[serde(default)]
    workspace_restrictions: Option<Vec<String>>,
}

/// Create an app; `client_secret` is shown this once.
#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", request_body = AppIn,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedApp, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 403, description = "API keys and app tokens cannot", body = ErrorBody),
    ))]
pub async fn create_app(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<AppIn>,
) -> Result<NoStore<(StatusCode, Json<CreatedApp>)>, ApiError> {
    let (app, secret) = state
        .apps
        .create_app(
            &actor,
            &meta,
            NewApp {
                name: body.name,
                description: body.description,
                builder_profile_id: body.builder_profile_id,
                workspace_restrictions: body.workspace_restrictions,
            },
        )
        .await?;
    Ok(NoStore((
        StatusCode::CREATED,
        Json(CreatedApp {
            client_secret: secret.expose().to_owned(),
            app: app.into(),
        }),
    )))
}

/// The caller's apps.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", params(ListParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Apps", body = List<AppOut>),
        (status = 403, description = "API keys and app tokens cannot", body = ErrorBody),
    ))]
pub async fn list_apps(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<List<AppOut>>, ApiError> {
    let page = params.page()?;
    let data: Vec<AppOut> = state
        .apps
        .list_apps(&actor, &page)
        .await?
        .into_iter()
        .map(AppOut::from)
        .collect();
    Ok(Json(List::paged(data, &page, |a| a.client_id.clone())))
}

/// One of the caller's apps.
#[utoipa::path(get, path = "/api/v1/apps/{client_id}", tag = "apps",
    params(("client_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The app", body = AppOut),
        (status = 404, description = "No such app of the caller's", body = ErrorBody),
    ))]
pub async fn get_app(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(client_id): Path<String>,
) -> Result<Json<AppOut>, ApiError> {
    Ok(Json(state.apps.get_app(&actor, &client_id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "description": "Posts build and deploy results",
    "active": true
}))]
pub struct AppPatchIn {
    /// 1 to 100 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    description: Option<String>,
    /// null removes the restriction.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<Vec<String>>)]
    workspace_restrictions: Option<Option<Vec<String>>>,
    /// false stops the app: its tokens fail and no new ones are made.
    active: Option<bool>,
}

/// Change an app. Deactivating it, or restricting it away from a workspace, stops its tokens
/// there at once.
#[utoipa::path(patch, path = "/api/v1/apps/{client_id}", tag = "apps", request_body = AppPatchIn,
    params(("client_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Updated", body = AppOut),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 404, description = "No such app of the caller's", body = ErrorBody),
    ))]
pub async fn patch_app(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
    ApiJson(body): ApiJson<AppPatchIn>,
) -> Result<Json<AppOut>, ApiError> {
    let app = state
        .apps
        .update_app(
            &actor,
            &meta,
            &client_id,
            AppPatch {
                name: body.name,
                description: body.description,
                workspace_restrictions: body.workspace_restrictions,
                active: body.active,
            },
        )
        .await?;
    Ok(Json(app.into()))
}

/// Delete an app with all its grants; its tokens stop at once.
#[utoipa::path(delete, path = "/api/v1/apps/{client_id}", tag = "apps",
    params(("client_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such app of the caller's", body = ErrorBody),
    ))]
pub async fn delete_app(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.apps.delete_app(&actor, &meta, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SecretOut {
    client_id: String,
    /// The new secret, shown this once.
    client_secret: String,
}

/// A new client secret: the old one and every token made with it stop at once.
#[utoipa::path(post, path = "/api/v1/apps/{client_id}/secret", tag = "apps",
    params(("client_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The new secret", body = SecretOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 404, description = "No such app of the caller's", body = ErrorBody),
    ))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
) -> Result<NoStore<Json<SecretOut>>, ApiError> {
    let secret = state.apps.rotate_secret(&actor, &meta, &client_id).await?;
    Ok(NoStore(Json(SecretOut {
        client_id,
        client_secret: secret.expose().to_owned(),
    })))
}

// ---- tokens

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"grant_id": "grt_0690yjh8v1a8r3t2kz9m4q5w6e"}))]
pub struct TokenIn {
    /// One of this app's grants.
    grant_id: String,
}

/// A 5-minute app token.
#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    /// `<client_id>:<compact JWE>`. The JWE (`dir`, `A128GCM`, key = the 16 secret bytes) holds
    /// `{api_token, grant_id, workspace_id, member_id, scopes, exp}`; send `api_token` as
    /// `Authorization: Bearer`.
    token: String,
    /// Seconds: 300.
    expires_in: i64,
}

/// `client_id` and `client_secret` from `Authorization: Basic base64(client_id:client_secret)`.
fn client_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Make a token for one of the app's grants, authenticated with the client credentials.
#[utoipa::path(post, path = "/api/v1/apps/{client_id}/tokens", tag = "apps", request_body = TokenIn,
    params(("client_id" = String, Path)),
    security(("client_basic" = [])),
    responses(
        (status = 200, description = "A token", body = TokenOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 401, description = "`invalid_client`", body = ErrorBody),
        (status = 403, description = "`app_inactive`, `workspace_restricted` or `tenant_suspended`", body = ErrorBody),
        (status = 404, description = "No such grant of this app", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody),
    ))]
pub async fn issue_token(
    State(state): State<AppState>,
    parts: Parts,
    Path(client_id): Path<String>,
    ApiJson(body): ApiJson<TokenIn>,
) -> Result<NoStore<Json<TokenOut>>, ApiError> {
    let guard = FailedAuth::check(&state, &parts).await?;
    let Some((id, secret)) = client_credentials(&parts.headers) else {
        return Err(guard.fail(invalid_client().into()).await);
    };
    if id != client_id {
        return Err(guard.fail(invalid_client().into()).await);
    }
    let issued = match state
        .apps
        .issue_token(&client_id, &secret, &body.grant_id)
        .await
    {
        Ok(t) => t,
        Err(e @ keyrail_core::Error::Unauthenticated { .. }) => {
            return Err(guard.fail(e.into()).await);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(NoStore(Json(TokenOut {
        token: issued.token.expose().to_owned(),
        expires_in: issued.expires_in,
    })))
}

// ---- grants

/// A member's grant of scopes to an app in this workspace.
#[derive(Serialize, ToSchema)]
pub struct GrantOut {
    #[schema(example = "grt_0690yjh8v1a8r3t2kz9m4q5w6e")]
    id: String,
    client_id: String,
    app_name: String,
    /// The member who granted (tokens act as this member).
    member_id: String,
    workspace_id: String,
    scopes: Vec<String>,
    shared: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<GrantView> for GrantOut {
    fn from(v: GrantView) -> Self {
        let g = v.grant;
        Self {
            id: g.id.to_string(),
            client_id: g.client_id,
            app_name: v.app_name,
            member_id: g.member_id.to_string(),
            workspace_id: g.workspace_id.to_string(),
            scopes: g.scopes,
            shared: g.shared,
            created_at: g.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "client_id": "kr_app_3kq9x2m4n7p1r5t8v0w6y2z4",
    "scopes": ["keys:read"],
    "shared": false
}))]
pub struct GrantIn {
    client_id: String,
    /// At least one scope, and at most the caller's own scopes.
    #[schema(schema_with = crate::routes::common::scope_list_nonempty)]
    scopes: Vec<String>,
    /// A shared grant (one per app per workspace) needs `apps:write` and `workspace:write`.
    #[serde(default)]
    shared: bool,
}

/// Grant an app scopes in this workspace. Any member for a personal grant; a shared grant
/// needs `apps:write` and `workspace:write`. Scopes are capped by the caller's own.
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/grants", tag = "apps", request_body = GrantIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Granted", body = GrantOut),
        (status = 400, description = "Unknown scope", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`, `app_inactive`, `workspace_restricted` or `forbidden` (not a logged-in member)", body = ErrorBody),
        (status = 404, description = "No such workspace or app", body = ErrorBody),
        (status = 409, description = "`grant_exists`", body = ErrorBody),
    ))]
pub async fn create_grant(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<GrantIn>,
) -> Result<(StatusCode, Json<GrantOut>), ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let grant = state
        .apps
        .create_grant(&access, &meta, &body.client_id, &body.scopes, body.shared)
        .await?;
    Ok((StatusCode::CREATED, Json(grant.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantParams {
    /// Only this app's grants.
    pub client_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Where the previous page stopped (its `next_cursor`); empty or absent for the first page.
    #[param(pattern = r"^[A-Za-z0-9_]{0,64}$")]
    pub cursor: Option<String>,
}

/// The workspace's grants with `apps:read`; otherwise the caller's own.
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/grants", tag = "apps",
    params(("workspace_id" = String, Path), GrantParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Grants", body = List<GrantOut>),
        (status = 404, description = "No such workspace", body = ErrorBody),
    ))]
pub async fn list_grants(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
    ApiQuery(params): ApiQuery<GrantParams>,
) -> Result<Json<List<GrantOut>>, ApiError> {
    grants_page(&state, &actor, &ws, params).await.map(Json)
}

/// One page of the grants the caller may see (the API's listing and the MCP tool's).
pub(crate) async fn grants_page(
    state: &AppState,
    actor: &keyrail_core::workspaces::Actor,
    ws: &str,
    params: GrantParams,
) -> Result<List<GrantOut>, ApiError> {
    let page = ListParams {
        limit: params.limit,
        cursor: params.cursor,
    }
    .page()?;
    let access = state.workspaces.access(actor, ws).await?;
    let data: Vec<GrantOut> = state
        .apps
        .list_grants(&access, params.client_id, &page)
        .await?
        .into_iter()
        .map(GrantOut::from)
        .collect();
    Ok(List::paged(data, &page, |g| g.id.clone()))
}

/// Revoke a grant: its tokens stop at once. The granting member may always; others need
/// `apps:write` (and `workspace:write` for a shared grant).
#[utoipa::path(delete, path = "/api/v1/w/{workspace_id}/grants/{grant_id}", tag = "apps",
    params(("workspace_id" = String, Path), ("grant_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "No such grant", body = ErrorBody),
    ))]
pub async fn revoke_grant(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, grant_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    state.apps.revoke_grant(&access, &meta, &grant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_basic_client_credentials() {
        let mut h = HeaderMap::new();
        assert_eq!(client_credentials(&h), None);
        // base64("kr_app_x:s3cr:et") — the secret may hold ':' after the first.
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic a3JfYXBwX3g6czNjcjpldA=="),
        );
        assert_eq!(
            client_credentials(&h),
            Some(("kr_app_x".into(), "s3cr:et".into()))
        );
        for bad in ["Bearer a3JfYXBwX3g6cw==", "Basic !!!", "Basic a3JfYXBwX3g="] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(client_credentials(&h), None, "{bad}");
        }
    }
}
