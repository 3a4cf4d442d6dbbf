//! API keys: `W/keys*` management, `POST /api/v1/keys/verify` and `/api/v1/forward-auth`.

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use keyrail_core::Timestamp;
use keyrail_core::keys::manage::{ImportedKey, KeyPatch, NewKey};
use keyrail_core::keys::verify::{Verification, VerifyCode};
use keyrail_core::model::{ApiKey, KeyFilter, KeyRateLimit, KeyStatus};
use keyrail_core::secret::Secret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authenticated, Meta, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::json::{ApiJson, OptionalJson};
use crate::keyauth::key_rate_headers;
use crate::routes::common::{ApiQuery, Caller, List, ListParams, NoStore, some_or_null};
use crate::state::AppState;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    // Failed verifies do not count toward the IP block, and no per-IP limit applies unless
    // `limits.verify_per_ip` is set: the caller is usually one backend verifying for many.
    let verify = OpenApiRouter::new().routes(routes!(verify));
    let verify = match state.config.limits.verify_per_ip {
        Some(rate) => crate::iplimit::ip_limited(verify, state, "verify", rate),
        None => verify,
    };
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, patch_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(reveal_key))
        .merge(
            // Imports carry up to 1000 keys: a body limit of their own.
            OpenApiRouter::new()
                .routes(routes!(import_keys))
                .route_layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .merge(verify)
        // Any method: proxies forward the original one. Documented through `ApiDoc`.
        .route("/api/v1/forward-auth", any(forward_auth))
}

const IMPORT_BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDoc {
    limit: u32,
    window_seconds: u32,
}

/// A key's metadata (never the key itself).
#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    id: String,
    name: String,
    /// The workspace prefix and the first 4 characters of the key (`sgw_6f45`).
    prefix: String,
    scopes: Vec<String>,
    /// `active`, `expired`, `revoked` or `disabled`.
    status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    created_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<Timestamp>,
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<KeyRateLimit>,
    remaining: Option<i64>,
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
    external_id: Option<String>,
    recoverable: bool,
    /// The key that replaced this one by rotation.
    replaced_by: Option<String>,
}

impl KeyOut {
    fn new(k: ApiKey, now: Timestamp) -> Self {
        Self {
            status: k.status(now).as_str(),
            id: k.id.to_string(),
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: k.created_at,
            created_by: k.created_by,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            rate_limit: k.rate_limit,
            remaining: k.remaining,
            meta: k.meta,
            external_id: k.external_id,
            recoverable: k.sealed_key.is_some(),
            replaced_by: k.replaced_by.map(|r| r.to_string()),
        }
    }
}

/// A new key: its metadata and, this once, the key.
#[derive(Serialize, ToSchema)]
pub struct NewKeyOut {
    /// The full key. Shown this once; keyrail keeps only its SHA-256.
    key: String,
    #[serde(flatten)]
    meta: KeyOut,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// 1 to 365; null or absent = never expires.
    expires_in_days: Option<u32>,
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<KeyRateLimit>,
    /// Usage credits; null = unlimited.
    remaining: Option<i64>,
    /// A JSON object, at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
    external_id: Option<String>,
    /// Keep the key (encrypted under the master key) so `reveal` can show it again.
    #[serde(default)]
    recoverable: bool,
}

/// Create a key. [keys:write]; only scopes the caller holds.
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/keys", tag = "keys", request_body = KeyIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = NewKeyOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 400, description = "Invalid field (names it)", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<KeyIn>,
) -> Result<NoStore<(StatusCode, Json<NewKeyOut>)>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let (key, secret) = state
        .keys
        .create(
            &access,
            &meta,
            NewKey {
                name: body.name,
                scopes: body.scopes,
                expires_in_days: body.expires_in_days,
                rate_limit: body.rate_limit,
                remaining: body.remaining,
                meta: body.meta,
                external_id: body.external_id,
                recoverable: body.recoverable,
            },
        )
        .await?;
    let now = state.clock.now();
    Ok(NoStore((
        StatusCode::CREATED,
        Json(NewKeyOut {
            key: secret.expose().to_owned(),
            meta: KeyOut::new(key, now),
        }),
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    /// `active`, `expired`, `revoked` or `disabled`.
    status: Option<String>,
    external_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The workspace's keys (metadata only), oldest first. [keys:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/keys", tag = "keys",
    params(("workspace_id" = String, Path), KeyListParams),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Keys", body = List<KeyOut>),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
    ApiQuery(params): ApiQuery<KeyListParams>,
) -> Result<Json<List<KeyOut>>, ApiError> {
    let page = ListParams {
        limit: params.limit,
        cursor: params.cursor,
    }
    .page()?;
    let status = match params.status.as_deref() {
        None => None,
        Some(s) => Some(KeyStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "status must be active, expired, revoked or disabled",
            )
        })?),
    };
    let access = state.workspaces.access(&actor, &ws).await?;
    let filter = KeyFilter {
        status,
        external_id: params.external_id,
    };
    let now = state.clock.now();
    let keys = state.keys.list(&access, &filter, &page).await?;
    let data: Vec<KeyOut> = keys.into_iter().map(|k| KeyOut::new(k, now)).collect();
    Ok(Json(List::paged(data, &page, |k| k.id.clone())))
}

/// One key's metadata. [keys:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/keys/{key_id}", tag = "keys",
    params(("workspace_id" = String, Path), ("key_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The key", body = KeyOut),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn get_key(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Json<KeyOut>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let key = state.keys.get(&access, &id).await?;
    Ok(Json(KeyOut::new(key, state.clock.now())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatchIn {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<Object>)]
    meta: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<Option<KeyRateLimit>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<i64>)]
    remaining: Option<Option<i64>>,
    /// false disables the key (verify answers DISABLED), true enables it again.
    enabled: Option<bool>,
}

/// Change a key. [keys:write]; absent fields stay, `null` clears.
#[utoipa::path(patch, path = "/api/v1/w/{workspace_id}/keys/{key_id}", tag = "keys", request_body = KeyPatchIn,
    params(("workspace_id" = String, Path), ("key_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The key", body = KeyOut),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn patch_key(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<KeyPatchIn>,
) -> Result<Json<KeyOut>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let key = state
        .keys
        .update(
            &access,
            &meta,
            &id,
            KeyPatch {
                name: body.name,
                scopes: body.scopes,
                meta: body.meta,
                rate_limit: body.rate_limit,
                remaining: body.remaining,
                enabled: body.enabled,
            },
        )
        .await?;
    Ok(Json(KeyOut::new(key, state.clock.now())))
}

/// Revoke a key: irreversible, in force at once on every node. [keys:delete]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/keys/{key_id}/revoke", tag = "keys",
    params(("workspace_id" = String, Path), ("key_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The key, now `revoked`", body = KeyOut),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Json<KeyOut>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let key = state.keys.revoke(&access, &meta, &id).await?;
    Ok(Json(KeyOut::new(key, state.clock.now())))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// 0 to 86400 (default 0): how long the old key keeps working.
    #[serde(default)]
    grace_seconds: u32,
}

/// Rotate a key: a new key with the same settings; the old one stops now or after the grace
/// period. [keys:write]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/keys/{key_id}/rotate", tag = "keys", request_body = RotateIn,
    params(("workspace_id" = String, Path), ("key_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The new key (`id`, `key`, `prefix`, ...), shown this once", body = NewKeyOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 400, description = "grace_seconds out of range", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "`key_revoked`, or `key_rotated` (a key is rotated once; rotate its replacement)", body = ErrorBody),
    ))]
pub async fn rotate_key(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> Result<NoStore<Json<NewKeyOut>>, ApiError> {
    let grace = body.map_or(0, |b| b.grace_seconds);
    let access = state.workspaces.access(&actor, &ws).await?;
    let (key, secret) = state.keys.rotate(&access, &meta, &id, grace).await?;
    Ok(NoStore(Json(NewKeyOut {
        key: secret.expose().to_owned(),
        meta: KeyOut::new(key, state.clock.now()),
    })))
}

#[derive(Serialize, ToSchema)]
pub struct RevealOut {
    key: String,
}

/// Show a recoverable key again. [keys:reveal]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/keys/{key_id}/reveal", tag = "keys",
    params(("workspace_id" = String, Path), ("key_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The key", body = RevealOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "`not_recoverable`", body = ErrorBody),
    ))]
pub async fn reveal_key(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
) -> Result<NoStore<Json<RevealOut>>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let secret = state.keys.reveal(&access, &meta, &id).await?;
    Ok(NoStore(Json(RevealOut {
        key: secret.expose().to_owned(),
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyIn {
    /// The plaintext key (hashed on arrival, never stored), or
    #[schema(value_type = Option<String>)]
    key: Option<Secret>,
    /// its SHA-256 in hex.
    sha256: Option<String>,
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
    external_id: Option<String>,
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<KeyRateLimit>,
    remaining: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportIn {
    /// 1 to 1000 keys; all or nothing.
    keys: Vec<ImportKeyIn>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportOut {
    imported: usize,
    ids: Vec<String>,
}

/// Bring existing keys from another system without reissuing them. [keys:write]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/keys/import", tag = "keys", request_body = ImportIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Imported", body = ImportOut),
        (status = 400, description = "Invalid entry (names its index)", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 409, description = "`duplicate_key`, naming the index", body = ErrorBody),
    ))]
pub async fn import_keys(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<ImportIn>,
) -> Result<(StatusCode, Json<ImportOut>), ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let keys = body
        .keys
        .into_iter()
        .map(|k| ImportedKey {
            key: k.key,
            sha256: k.sha256,
            name: k.name,
            scopes: k.scopes,
            expires_at: k.expires_at,
            meta: k.meta,
            external_id: k.external_id,
            rate_limit: k.rate_limit,
            remaining: k.remaining,
        })
        .collect();
    let ids = state.keys.import(&access, &meta, keys).await?;
    Ok((
        StatusCode::CREATED,
        Json(ImportOut {
            imported: ids.len(),
            ids: ids.into_iter().map(|i| i.to_string()).collect(),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyIn {
    #[schema(value_type = String)]
    key: Secret,
    /// All required.
    #[serde(default)]
    scopes: Vec<String>,
    /// Credits (and rate-limit tokens) this request spends; 0 only looks.
    #[serde(default = "one")]
    cost: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize, ToSchema)]
pub struct VerifyRate {
    limit: u32,
    remaining: u32,
    /// Seconds until the limit is whole again.
    reset: u64,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyOut<'a> {
    valid: bool,
    /// VALID, NOT_FOUND, EXPIRED, REVOKED, DISABLED, INSUFFICIENT_SCOPE, RATE_LIMITED,
    /// USAGE_EXCEEDED or TENANT_SUSPENDED.
    code: &'static str,
    key_id: Option<&'a str>,
    workspace_id: Option<&'a str>,
    name: Option<&'a str>,
    scopes: Option<&'a [String]>,
    #[schema(value_type = Option<Object>)]
    meta: Option<&'a serde_json::Value>,
    external_id: Option<&'a str>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    remaining: Option<i64>,
    rate_limit: Option<VerifyRate>,
}

/// The answer of verify for a verification (borrowing it: nothing is copied); the CLI's
/// `keys verify` prints the same.
pub fn verify_out(v: &Verification) -> VerifyOut<'_> {
    let k = v.key.as_ref().map(|c| &c.key);
    VerifyOut {
        valid: v.code == VerifyCode::Valid,
        code: v.code.as_str(),
        key_id: k.map(|k| k.id.as_str()),
        workspace_id: k.map(|k| k.workspace_id.as_str()),
        name: k.map(|k| &*k.name),
        scopes: k.map(|k| &*k.scopes),
        meta: k.and_then(|k| k.meta.as_deref()),
        external_id: k.and_then(|k| k.external_id.as_deref()),
        expires_at: k.and_then(|k| k.expires_at),
        remaining: v.remaining.or_else(|| k.and_then(|k| k.remaining)),
        rate_limit: v.rate.map(|(l, d)| VerifyRate {
            limit: l.limit,
            remaining: d.remaining,
            reset: d.reset_after_secs,
        }),
    }
}

/// Verify a key (no credentials needed: the key is the credential). Always 200 for a
/// well-formed request; `valid` and `code` tell the outcome.
#[utoipa::path(post, path = "/api/v1/keys/verify", tag = "keys", request_body = VerifyIn,
    responses(
        (status = 200, description = "The outcome", body = VerifyOut<'static>),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 429, description = "Too many requests from this client IP: only when `limits.verify_per_ip` is set (off by default)", body = ErrorBody),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyIn>,
) -> Result<Response, ApiError> {
    let required: Vec<&str> = body.scopes.iter().map(String::as_str).collect();
    let v = state
        .verifier
        .verify(body.key.expose(), &required, body.cost)
        .await?;
    let mut resp = Json(verify_out(&v)).into_response();
    if let Some((limit, decision)) = v.rate {
        key_rate_headers(resp.headers_mut(), limit, &decision);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForwardParams {
    /// Required scopes, comma-separated (or the header `X-Keyrail-Scopes`).
    scopes: Option<String>,
}

static X_PRINCIPAL: HeaderName = HeaderName::from_static("x-keyrail-principal");
static X_WORKSPACE: HeaderName = HeaderName::from_static("x-keyrail-workspace");
static X_SCOPES: HeaderName = HeaderName::from_static("x-keyrail-scopes");
static X_EXTERNAL: HeaderName = HeaderName::from_static("x-keyrail-external-id");

fn required_scopes(params: &ForwardParams, headers: &HeaderMap) -> Vec<String> {
    let from_header = headers.get(&X_SCOPES).and_then(|v| v.to_str().ok());
    params
        .scopes
        .as_deref()
        .or(from_header)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""))
}

/// For reverse proxies (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`), any
/// method: checks the `Authorization` header like the API does and the required scopes; 200
/// with `X-Keyrail-*` headers, or the API's 401/403/429.
#[utoipa::path(get, path = "/api/v1/forward-auth", tag = "keys",
    params(ForwardParams),
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Allowed; see the X-Keyrail-Principal, X-Keyrail-Workspace, X-Keyrail-Scopes and X-Keyrail-External-Id headers"),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "`insufficient_scope` or `tenant_suspended`", body = ErrorBody),
        (status = 429, description = "Rate limited (`Retry-After`, RateLimit fields)", body = ErrorBody),
    ))]
pub async fn forward_auth(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ForwardParams>,
    auth: Result<Authenticated, ApiError>,
) -> Result<Response, ApiError> {
    let required = required_scopes(&params, &headers);
    let Authenticated { principal } = auth?;
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    match principal {
        Principal::Key(key) => {
            let missing = key.effective.missing(&required);
            if !missing.is_empty() {
                return Err(keyrail_core::authz::insufficient_scope(missing).into());
            }
            h.insert(X_PRINCIPAL.clone(), header(key.key.id.as_str()));
            h.insert(X_WORKSPACE.clone(), header(key.key.workspace_id.as_str()));
            h.insert(X_SCOPES.clone(), header(&key.key.scopes.join(",")));
            if let Some(e) = &key.key.external_id {
                h.insert(X_EXTERNAL.clone(), header(e));
            }
        }
        Principal::App(app) => {
            let grant_id = app.grant_id.to_string();
            let ws = app.workspace_id.to_string();
            let actor = keyrail_core::workspaces::Actor::App(app);
            let access = state.workspaces.access(&actor, &ws).await?;
            access.require(&required.iter().map(String::as_str).collect::<Vec<_>>())?;
            h.insert(X_PRINCIPAL.clone(), header(&grant_id));
            h.insert(X_WORKSPACE.clone(), header(&ws));
            h.insert(
                X_SCOPES.clone(),
                header(&access.effective.names().join(",")),
            );
        }
        Principal::User(session) => {
            // A person holds scopes only inside a workspace; name it with X-Keyrail-Workspace.
            let ws = headers
                .get(&X_WORKSPACE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let user = state.identity.user(&session).await?;
            let actor = keyrail_core::workspaces::Actor::User {
                user_id: user.id.clone(),
                superuser: user.superuser,
            };
            let scopes = match &ws {
                Some(ws) => {
                    let access = state.workspaces.access(&actor, ws).await?;
                    access.require(&required.iter().map(String::as_str).collect::<Vec<_>>())?;
                    h.insert(X_WORKSPACE.clone(), header(access.workspace.id.as_str()));
                    access.effective.names().join(",")
                }
                None if required.is_empty() => String::new(),
                None => return Err(keyrail_core::authz::insufficient_scope(required).into()),
            };
            h.insert(X_PRINCIPAL.clone(), header(user.id.as_str()));
            h.insert(X_SCOPES.clone(), header(&scopes));
        }
    }
    Ok(resp)
}
