//! Webhooks: `W/webhooks*` (the workspace's signing secret, its endpoints and their delivery
//! attempts). Delivery itself is [`crate::webhooks_worker`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyrail_core::Timestamp;
use keyrail_core::webhooks::{DeliveryAttempt, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Meta;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::routes::common::{ApiQuery, Caller, List, ListParams, NoStore};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_webhook_secret))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_deliveries))
}

/// 1 to 64 of the event types (`schema_with` of `events`).
fn event_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(keyrail_core::events::EVENT_TYPES)),
        )
        .min_items(Some(1))
        .max_items(Some(64))
        .build()
}

/// The workspace's signing secret.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookSecretOut)]
pub struct SecretOut {
    /// `whsec_` + base64 of 32 random bytes. The HMAC key is the base64-decoded part.
    secret: String,
}

/// A webhook endpoint.
#[derive(Serialize, ToSchema)]
pub struct WebhookOut {
    id: String,
    url: String,
    events: Vec<String>,
    /// `active`, or `disabled` once a delivery was answered 410 Gone.
    status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    disabled_at: Option<Timestamp>,
}

impl From<WebhookEndpoint> for WebhookOut {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id.to_string(),
            status: if e.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
            url: e.url,
            events: e.events,
            created_at: e.created_at,
            disabled_at: e.disabled_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.acme.example/keyrail",
    "events": ["key.created", "key.revoked"]
}))]
pub struct WebhookIn {
    /// http or https, at most 2048 characters, no user info. Unless the server runs with
    /// `webhooks_allow_private = true`, the host must not be or resolve to a private, loopback,
    /// link-local or otherwise reserved address.
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = r"^https?://[\x21-\x7e]+$"
    )]
    url: String,
    /// One or more of `key.created`, `key.revoked`, `key.rotated`, `key.expiring`,
    /// `grant.created`, `grant.revoked`, `member.added`, `member.removed`,
    /// `app.secret_rotated`.
    #[schema(schema_with = event_list)]
    events: Vec<String>,
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    id: String,
    /// The message (`webhook-id`), the same on every attempt of one event.
    message_id: String,
    event_type: String,
    /// 1 for the first attempt.
    attempt: u32,
    /// The endpoint's status; null when it gave none (timeout, connection refused).
    status_code: Option<u16>,
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    ok: bool,
    /// Why it failed when there is no status to say it.
    error: Option<String>,
    /// When the next attempt is due; null when there is none.
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<Timestamp>,
}

impl From<DeliveryAttempt> for DeliveryOut {
    fn from(d: DeliveryAttempt) -> Self {
        Self {
            id: d.id.to_string(),
            message_id: d.event_id.to_string(),
            event_type: d.event_type,
            attempt: d.attempt,
            status_code: d.status_code,
            at: d.at,
            ok: d.ok,
            error: d.error,
            next_attempt_at: d.next_attempt_at,
        }
    }
}

/// The workspace's webhook signing secret (made on first use). [webhooks:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/webhooks/secret", tag = "webhooks",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The secret", body = SecretOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn get_webhook_secret(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
) -> Result<NoStore<Json<SecretOut>>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let secret = state.webhooks.secret(&access).await?;
    Ok(NoStore(Json(SecretOut {
        secret: secret.expose().to_owned(),
    })))
}

/// A new signing secret. For 24 hours deliveries carry two signatures, the new secret's
/// first: `v1,<new> v1,<old>`. [webhooks:write]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/webhooks/secret/rotate", tag = "webhooks",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The new secret", body = SecretOut, headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
) -> Result<NoStore<Json<SecretOut>>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let secret = state.webhooks.rotate_secret(&access, &meta).await?;
    Ok(NoStore(Json(SecretOut {
        secret: secret.expose().to_owned(),
    })))
}

/// Add an endpoint (at most 20 per workspace). [webhooks:write]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/webhooks", tag = "webhooks", request_body = WebhookIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created", body = WebhookOut),
        (status = 400, description = "Invalid `url` (shape, or a forbidden address) or `events`", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "`webhook_limit`: the workspace has 20 endpoints", body = ErrorBody),
    ))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<WebhookIn>,
) -> Result<(StatusCode, Json<WebhookOut>), ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let endpoint = state
        .webhooks
        .create(&access, &meta, &body.url, &body.events)
        .await?;
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// The workspace's endpoints, oldest first. [webhooks:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/webhooks", tag = "webhooks",
    params(("workspace_id" = String, Path), ListParams),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Endpoints", body = List<WebhookOut>),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<List<WebhookOut>>, ApiError> {
    let page = params.page()?;
    let access = state.workspaces.access(&actor, &ws).await?;
    let data: Vec<WebhookOut> = state
        .webhooks
        .list(&access, &page)
        .await?
        .into_iter()
        .map(WebhookOut::from)
        .collect();
    Ok(Json(List::paged(data, &page, |w| w.id.clone())))
}

/// Delete an endpoint, with its pending deliveries and its attempts. [webhooks:write]
#[utoipa::path(delete, path = "/api/v1/w/{workspace_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("workspace_id" = String, Path), ("webhook_id" = String, Path)),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    state.webhooks.delete(&access, &meta, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's delivery attempts, oldest first (kept 7 days). [webhooks:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("workspace_id" = String, Path), ("webhook_id" = String, Path), ListParams),
    security(("bearer" = []), ("basic" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Attempts", body = List<DeliveryOut>),
        (status = 400, description = "Bad paging", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((ws, id)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<List<DeliveryOut>>, ApiError> {
    let page = params.page()?;
    let access = state.workspaces.access(&actor, &ws).await?;
    let data: Vec<DeliveryOut> = state
        .webhooks
        .deliveries(&access, &id, &page)
        .await?
        .into_iter()
        .map(DeliveryOut::from)
        .collect();
    Ok(Json(List::paged(data, &page, |d| d.id.clone())))
}
