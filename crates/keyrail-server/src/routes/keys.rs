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

use crate::auth::{KeyCheck, Meta, Principal, authenticate};
use crate::error::{ApiError, ErrorBody};
use crate::json::{ApiJson, OptionalJson};
use crate::keyauth::key_rate_headers;
use crate::routes::common::{
    ApiQuery, Caller, List, ListParams, NoStore, absent_or_value, some_or_null,
};
use crate::state::AppState;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    // Failed verifies do not count toward the IP block, and no per-IP limit applies unless
    // `limits.verify_per_ip` is set: the caller is usually one backend verifying for many.
    let verify = OpenApiRouter::new().routes(routes!(verify));
    let verify = match state.config.limits.verify_per_ip {
        Some(rate) => crate::iplimit::ip_limited(verify, state, "verify", rate),
        None => verify,
    };
    let management = OpenApiRouter::new()
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
        );
    crate::outage::needs_store(management, state)
        .merge(verify)
        // Any method: proxies forward the original one. Documented through `ApiDoc`.
        .route("/api/v1/forward-auth", any(forward_auth))
}

const IMPORT_BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDoc {
    #[schema(minimum = 1)]
    limit: u32,
    /// At most 30 days.
    #[schema(minimum = 1, maximum = 2592000)]
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
    /// Usage credits left; null = unlimited. A rotated key that had credits shows 0: they moved
    /// to its replacement, which it spends from during the grace period.
    remaining: Option<i64>,
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
    external_id: Option<String>,
    recoverable: bool,
    /// The key that replaced this one by rotation.
    replaced_by: Option<String>,
}

impl KeyOut {
    pub(crate) fn new(k: ApiKey, now: Timestamp) -> Self {
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
#[schema(example = json!({
    "key": "kr_3ZVhqD0RkT1pWw8n4yFbLc2sXe7Gm9Ja5Qo6U1",
    "id": "key_01m91c7n3ve4j8kq2w5x6y7z8a",
    "name": "billing service",
    "prefix": "kr_3ZVh",
    "scopes": ["keys:read"],
    "status": "active",
    "created_at": "2026-12-04T20:15:00Z",
    "created_by": "usr_01m917jtf8ezpvyp629akjcdys",
    "expires_at": null,
    "last_used_at": null,
    "revoked_at": null,
    "rate_limit": {"limit": 100, "window_seconds": 60},
    "remaining": null,
    "meta": {"plan": "pro"},
    "external_id": "cus_4711",
    "recoverable": false,
    "replaced_by": null
}))]
pub struct NewKeyOut {
    /// The full key. Shown this once; keyrail keeps only its SHA-256.
    key: String,
    #[serde(flatten)]
    meta: KeyOut,
}

impl NewKeyOut {
    /// A key made just now (created or rotated) with its secret, shown this once.
    pub(crate) fn new(key: ApiKey, secret: &Secret, now: Timestamp) -> Self {
        Self {
            key: secret.expose().to_owned(),
            meta: KeyOut::new(key, now),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "billing service",
    "scopes": ["keys:read"],
    "rate_limit": {"limit": 100, "window_seconds": 60},
    "external_id": "cus_4711",
    "meta": {"plan": "pro"}
}))]
pub struct KeyIn {
    /// 1 to 255 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    #[serde(default)]
    #[schema(schema_with = crate::routes::common::scope_list)]
    scopes: Vec<String>,
    /// 1 to 365; null or absent = never expires.
    expires_in_days: Option<u32>,
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<KeyRateLimit>,
    /// Usage credits; null = unlimited.
    #[schema(minimum = 0)]
    remaining: Option<i64>,
    /// A JSON object, at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
    /// 1 to 255 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
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
    Ok(NoStore((
        StatusCode::CREATED,
        Json(NewKeyOut::new(key, &secret, state.clock.now())),
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    /// `active`, `expired`, `revoked` or `disabled`.
    #[param(value_type = KeyStatusName, inline, required = false)]
    pub status: Option<String>,
    /// Only keys with this external id.
    pub external_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Where the previous page stopped (its `next_cursor`); empty or absent for the first page.
    #[param(pattern = r"^[A-Za-z0-9_]{0,64}$")]
    pub cursor: Option<String>,
}

/// A key's status, as `?status=` filters by it.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyStatusName {
    Active,
    Expired,
    Revoked,
    Disabled,
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
    keys_page(&state, &actor, &ws, params).await.map(Json)
}

/// One page of the workspace's keys (the API's listing and the MCP tool's).
pub(crate) async fn keys_page(
    state: &AppState,
    actor: &keyrail_core::workspaces::Actor,
    ws: &str,
    params: KeyListParams,
) -> Result<List<KeyOut>, ApiError> {
    let page = ListParams {
        limit: params.limit,
        cursor: params.cursor,
    }
    .page()?;
    let status = status_filter(params.status.as_deref())?;
    let access = state.workspaces.access(actor, ws).await?;
    let filter = KeyFilter {
        status,
        external_id: params.external_id,
    };
    let now = state.clock.now();
    let keys = state.keys.list(&access, &filter, &page).await?;
    let data: Vec<KeyOut> = keys.into_iter().map(|k| KeyOut::new(k, now)).collect();
    Ok(List::paged(data, &page, |k| k.id.clone()))
}

/// `?status=`: one of the four, or absent for every key (the API's and the console's filter).
pub(crate) fn status_filter(s: Option<&str>) -> Result<Option<KeyStatus>, ApiError> {
    s.map(|s| {
        KeyStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "status must be active, expired, revoked or disabled",
            )
        })
    })
    .transpose()
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
#[schema(example = json!({
    "name": "billing service (prod)",
    "scopes": ["keys:read", "keys:write"],
    "rate_limit": {"limit": 600, "window_seconds": 60},
    "enabled": true
}))]
pub struct KeyPatchIn {
    /// 1 to 255 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    #[schema(schema_with = crate::routes::common::scope_list_or_null)]
    scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<Object>)]
    meta: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<Option<KeyRateLimit>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<i64>, minimum = 0)]
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
#[schema(example = json!({"grace_seconds": 3600}))]
pub struct RotateIn {
    /// 0 to 86400 (default 0): how long the old key keeps working.
    #[serde(default)]
    #[schema(maximum = 86400)]
    grace_seconds: u32,
}

/// Rotate a key: a new key with the same settings; the old one stops now or after the grace
/// period. Usage credits move to the new key: during the grace period the old key spends from
/// the new key's credits (its own `remaining` shows 0), so the two never spend more than the
/// key had. [keys:write]
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
    Ok(NoStore(Json(NewKeyOut::new(
        key,
        &secret,
        state.clock.now(),
    ))))
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
    /// The plaintext key (printable ASCII, no spaces, at least 16 characters; hashed on
    /// arrival, never stored), or
    #[serde(default, deserialize_with = "absent_or_value")]
    #[schema(value_type = String, required = false, pattern = r"^[\x21-\x7e]{16,}$")]
    key: Option<Secret>,
    /// its SHA-256 in hex. Exactly one of the two (absent, not null, for the other).
    #[serde(default, deserialize_with = "absent_or_value")]
    #[schema(value_type = String, required = false, pattern = r"^[0-9a-fA-F]{64}$")]
    sha256: Option<String>,
    /// 1 to 255 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    #[serde(default)]
    #[schema(schema_with = crate::routes::common::scope_list)]
    scopes: Vec<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    #[schema(value_type = Option<Object>)]
    meta: Option<serde_json::Value>,
    /// 1 to 255 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"
    )]
    external_id: Option<String>,
    #[schema(value_type = Option<RateLimitDoc>)]
    rate_limit: Option<KeyRateLimit>,
    #[schema(minimum = 0)]
    remaining: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "keys": [
        {
            "key": "legacy_9fK2mQ7xL4pW1sN8vB3c",
            "name": "imported: reporting",
            "scopes": ["keys:read"],
            "external_id": "legacy-17"
        },
        {
            "sha256": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
            "name": "imported: nightly export",
            "expires_at": "2027-06-30T00:00:00Z"
        }
    ]
}))]
pub struct ImportIn {
    /// 1 to 1000 keys; all or nothing.
    #[schema(min_items = 1, max_items = 1000)]
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
#[schema(example = json!({
    "key": "kr_3ZVhqD0RkT1pWw8n4yFbLc2sXe7Gm9Ja5Qo6U1",
    "scopes": ["keys:read"],
    "workspace_id": "ws_01m917jtf9e3kang85667zc76e"
}))]
pub struct VerifyIn {
    #[schema(value_type = String)]
    key: Secret,
    /// All required.
    #[serde(default)]
    scopes: Vec<String>,
    /// Credits (and rate-limit tokens) this request spends; 0 only looks.
    #[serde(default = "one")]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    cost: u32,
    /// The workspace whose API is being protected: a key of any other workspace is
    /// `NOT_FOUND`. Custom scope names are per workspace, so pass it whenever you check a
    /// workspace's own scopes.
    workspace_id: Option<String>,
}

/// The default `cost` of a verify (the API's and the `keys_verify` tool's).
pub(crate) fn one() -> u32 {
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
#[schema(example = json!({
    "valid": true,
    "code": "VALID",
    "key_id": "key_01m91c7n3ve4j8kq2w5x6y7z8a",
    "workspace_id": "ws_01m917jtf9e3kang85667zc76e",
    "name": "billing service",
    "scopes": ["keys:read"],
    "meta": {"plan": "pro"},
    "external_id": "cus_4711",
    "expires_at": null,
    "remaining": null,
    "rate_limit": {"limit": 100, "remaining": 99, "reset": 1}
}))]
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
        .verify(
            body.key.expose(),
            &required,
            body.cost,
            body.workspace_id.as_deref(),
        )
        .await?;
    if let Some(key) = &v.key {
        crate::request_log::note(|| crate::request_log::Who::Key(key.clone()));
    }
    let mut resp = Json(verify_out(&v)).into_response();
    if let Some((limit, decision)) = v.rate {
        key_rate_headers(resp.headers_mut(), limit, &decision);
    }
    Ok(resp)
}

/// Describes the query for the OpenAPI document; the handler reads the raw pairs, so that a
/// repeated value can be told apart and refused.
#[allow(dead_code)]
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForwardParams {
    /// Required scopes, comma-separated. With the header `X-Keyrail-Scopes` too, both are
    /// required. An empty or repeated value is 400.
    #[param(
        pattern = r"^[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30}(,[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30})*$"
    )]
    scopes: Option<String>,
    /// The one workspace whose credentials pass (or the header `X-Keyrail-Workspace`): any
    /// credential of another workspace is 401 `invalid_credentials`.
    #[param(pattern = r"^ws_[0-9a-z]{26}$")]
    workspace_id: Option<String>,
}

static X_PRINCIPAL: HeaderName = HeaderName::from_static("x-keyrail-principal");
static X_WORKSPACE: HeaderName = HeaderName::from_static("x-keyrail-workspace");
static X_SCOPES: HeaderName = HeaderName::from_static("x-keyrail-scopes");
static X_EXTERNAL: HeaderName = HeaderName::from_static("x-keyrail-external-id");

/// One value from the query (`name`) or the header: each at most once, never empty. `None`
/// when neither is there.
fn forward_values<'a>(
    query: &'a [(String, String)],
    name: &str,
    headers: &'a HeaderMap,
    header: &HeaderName,
) -> Result<(Option<&'a str>, Option<&'a str>), ApiError> {
    let mut in_query = query
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let from_query = in_query.next();
    let mut in_headers = headers.get_all(header).iter();
    let from_header =
        match in_headers.next() {
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::invalid(header.as_str(), format!("{header} must be ASCII"))
            })?),
            None => None,
        };
    if in_query.next().is_some() {
        return Err(ApiError::invalid(name, format!("{name} is given twice")));
    }
    if in_headers.next().is_some() {
        return Err(ApiError::invalid(
            header.as_str(),
            format!("{header} is given twice"),
        ));
    }
    for (field, v) in [(name, from_query), (header.as_str(), from_header)] {
        if v.is_some_and(|v| v.trim().is_empty()) {
            return Err(ApiError::invalid(field, format!("{field} is empty")));
        }
    }
    Ok((from_query, from_header))
}

/// The scopes forward-auth requires: those of `?scopes=` and of `X-Keyrail-Scopes`, both.
fn required_scopes(
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Vec<String>, ApiError> {
    let (q, h) = forward_values(query, "scopes", headers, &X_SCOPES)?;
    let mut required: Vec<String> = Vec::new();
    for (field, list) in [("scopes", q), ("x-keyrail-scopes", h)] {
        for scope in list.into_iter().flat_map(|l| l.split(',')) {
            let scope = scope.trim();
            if scope.is_empty() {
                return Err(ApiError::invalid(
                    field,
                    format!("{field} holds an empty scope name"),
                ));
            }
            if !required.iter().any(|r| r == scope) {
                required.push(scope.to_owned());
            }
        }
    }
    Ok(required)
}

/// The workspace forward-auth is bound to, from `?workspace_id=` or `X-Keyrail-Workspace`
/// (the same one when both are given).
fn bound_workspace(
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    match forward_values(query, "workspace_id", headers, &X_WORKSPACE)? {
        (Some(q), Some(h)) if q.trim() != h.trim() => Err(ApiError::invalid(
            "workspace_id",
            "workspace_id and X-Keyrail-Workspace name different workspaces",
        )),
        (q, h) => Ok(q.or(h).map(|w| w.trim().to_owned())),
    }
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""))
}

fn other_workspace() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "Invalid API key",
    )
}

/// For reverse proxies (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`), any
/// method: checks the `Authorization` header like the API does, the bound workspace and the
/// required scopes, and only then spends the key's rate limit and credits; 200 with
/// `X-Keyrail-*` headers, or the API's 401/403/429.
#[utoipa::path(get, path = "/api/v1/forward-auth", tag = "keys",
    params(ForwardParams,
        ("X-Keyrail-Scopes" = Option<String>, Header, description = "Required scopes, comma-separated (with `?scopes=`, both are required)",
            pattern = r"^[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30}(,[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30})*$"),
        ("X-Keyrail-Workspace" = Option<String>, Header, description = "The workspace to bind to (or `?workspace_id=`)",
            pattern = r"^ws_[0-9a-z]{26}$")),
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, description = "Allowed; see the X-Keyrail-Principal, X-Keyrail-Workspace, X-Keyrail-Scopes and X-Keyrail-External-Id headers"),
        (status = 400, description = "An empty or repeated scopes or workspace value", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials, or a credential of another workspace", body = ErrorBody),
        (status = 403, description = "`insufficient_scope` or `tenant_suspended`", body = ErrorBody),
        (status = 429, description = "Rate limited (`Retry-After`, RateLimit fields)", body = ErrorBody),
    ))]
pub async fn forward_auth(
    State(state): State<AppState>,
    // The request itself, taken apart: the `Parts` extractor would clone the headers and the
    // extensions on every call of this hot path.
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let query: Vec<(String, String)> = match parts.uri.query() {
        None => Vec::new(),
        Some(_) => axum::extract::Query::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|_| ApiError::invalid("query", "the query string is malformed"))?,
    };
    let required = required_scopes(&query, &parts.headers)?;
    let required: Vec<&str> = required.iter().map(String::as_str).collect();
    let bound = bound_workspace(&query, &parts.headers)?;
    let principal = authenticate(
        &parts,
        &state,
        KeyCheck {
            required: &required,
            workspace: bound.as_deref(),
        },
    )
    .await?;
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    match principal {
        Principal::Key(key) => {
            // Workspace and scopes were checked before the key's limit and credits were spent.
            h.insert(X_PRINCIPAL.clone(), header(key.key.id.as_str()));
            h.insert(X_WORKSPACE.clone(), header(key.key.workspace_id.as_str()));
            h.insert(X_SCOPES.clone(), header(&key.key.scopes.join(",")));
            if let Some(e) = &key.key.external_id {
                h.insert(X_EXTERNAL.clone(), header(e));
            }
        }
        Principal::App(app) => {
            if bound
                .as_deref()
                .is_some_and(|b| b != app.workspace_id.as_str())
            {
                return Err(other_workspace());
            }
            let grant_id = app.grant_id.to_string();
            let ws = app.workspace_id.to_string();
            let actor = keyrail_core::workspaces::Actor::App(app);
            let access = state.workspaces.access(&actor, &ws).await?;
            access.require(&required)?;
            h.insert(X_PRINCIPAL.clone(), header(&grant_id));
            h.insert(X_WORKSPACE.clone(), header(&ws));
            h.insert(
                X_SCOPES.clone(),
                header(&access.effective.names().join(",")),
            );
        }
        Principal::User(session) => {
            // A person holds scopes only inside a workspace: the bound one.
            let user = state.identity.user(&session).await?;
            let actor = keyrail_core::workspaces::Actor::User {
                user_id: user.id.clone(),
                superuser: user.superuser,
            };
            let scopes = match &bound {
                Some(ws) => {
                    let access = match state.workspaces.access(&actor, ws).await {
                        Ok(a) => a,
                        // Not a member there: a credential of another workspace.
                        Err(keyrail_core::Error::NotFound { .. }) => {
                            return Err(other_workspace());
                        }
                        Err(e) => return Err(e.into()),
                    };
                    access.require(&required)?;
                    h.insert(X_WORKSPACE.clone(), header(access.workspace.id.as_str()));
                    access.effective.names().join(",")
                }
                None if required.is_empty() => String::new(),
                None => {
                    return Err(keyrail_core::authz::insufficient_scope(
                        required.iter().map(|s| (*s).to_owned()).collect(),
                    )
                    .into());
                }
            };
            h.insert(X_PRINCIPAL.clone(), header(user.id.as_str()));
            h.insert(X_SCOPES.clone(), header(&scopes));
        }
    }
    Ok(resp)
}
