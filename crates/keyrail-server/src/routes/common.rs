//! Pieces shared by the resource modules: the acting principal, list paging, and the shapes
//! that several endpoints return.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::Timestamp;
use keyrail_core::model::{AuditEntry, Page};
use keyrail_core::workspaces::Actor;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authenticated, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// A scope name as the API takes it: `resource:action`, each part a lowercase letter then
/// lowercase letters, digits, `_` or `-` (at most 64 characters in all).
pub const SCOPE_PATTERN: &str = r"^[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30}$";

fn scope_array(nullable: bool, min_items: usize) -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let ty = if nullable {
        SchemaType::from_iter([Type::Array, Type::Null])
    } else {
        SchemaType::Type(Type::Array)
    };
    ArrayBuilder::new()
        .schema_type(ty)
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(SCOPE_PATTERN))
                .description(Some("A scope name, `resource:action`.")),
        )
        .min_items((min_items > 0).then_some(min_items))
        .build()
}

/// The schema of a list of scope names (`schema_with`).
pub fn scope_list() -> utoipa::openapi::schema::Array {
    scope_array(false, 0)
}

/// [`scope_list`] with at least one name.
pub fn scope_list_nonempty() -> utoipa::openapi::schema::Array {
    scope_array(false, 1)
}

/// [`scope_list`] or `null`.
pub fn scope_list_or_null() -> utoipa::openapi::schema::Array {
    scope_array(true, 0)
}

/// The caller as the domain sees it (for workspace-scoped and platform endpoints).
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated { principal } = Authenticated::from_request_parts(parts, state).await?;
        actor_of(principal, state).await.map(Caller)
    }
}

/// The domain's actor for an authenticated principal.
pub async fn actor_of(principal: Principal, state: &AppState) -> Result<Actor, ApiError> {
    match principal {
        Principal::User(session) => {
            let user = state.identity.user(&session).await?;
            Ok(Actor::User {
                user_id: user.id,
                superuser: user.superuser,
            })
        }
        Principal::Key(key) => Ok(Actor::Key {
            key_id: key.key.id.clone(),
            workspace_id: key.key.workspace_id.clone(),
            effective: key.effective.clone(),
        }),
        Principal::App(app) => Ok(Actor::App(app)),
    }
}

/// A response that holds a secret (a key, a client secret, tokens, a TOTP secret, recovery
/// codes): it carries `Cache-Control: no-store` (API.md "Conventions").
pub struct NoStore<T>(pub T);

impl<T: IntoResponse> IntoResponse for NoStore<T> {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// `null` and absent differ for PATCH: absent leaves the field alone, `null` clears it.
pub fn some_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A field that may be absent but not `null` (its schema is a plain type, not nullable).
pub fn absent_or_value<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `?limit=` (1..200, default 50) and `?cursor=` (the `next_cursor` of the previous page).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Where the previous page stopped (its `next_cursor`); empty or absent for the first page.
    #[param(pattern = r"^[A-Za-z0-9_]{0,64}$")]
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match &self.limit {
            None => Page::DEFAULT_LIMIT,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=Page::MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", "limit must be an integer from 1 to 200")
                })?,
        };
        let after = match &self.cursor {
            Some(c) if !c.is_empty() => {
                if c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(ApiError::invalid(
                        "cursor",
                        "cursor is not one this server gave",
                    ));
                }
                Some(c.clone())
            }
            _ => None,
        };
        Ok(Page { limit, after })
    }
}

/// Reads the query string into `T`, with the contract's 400 on a bad one.
pub fn query<T: serde::de::DeserializeOwned>(parts_query: Option<&str>) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(
        &format!("/?{}", parts_query.unwrap_or(""))
            .parse()
            .map_err(|_| ApiError::invalid("query", "malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::invalid("query", format!("invalid query string: {}", e.body_text())))
}

/// A query-string extractor whose failures are the contract's 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        query(parts.uri.query()).map(ApiQuery)
    }
}

/// A page of results.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// `next_cursor` is the id of the last item when the page is full.
    pub fn paged(data: Vec<T>, page: &Page, id_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = page.next_cursor(&data, id_of);
        Self { data, next_cursor }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditActor {
    /// `user`, `key`, `app` or `anonymous`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

/// One audit record.
#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub workspace_id: Option<String>,
    pub actor: AuditActor,
    /// `<resource>.<verb>`, e.g. `key.revoke`.
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
}

impl From<AuditEntry> for AuditOut {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id.to_string(),
            at: e.at,
            workspace_id: e.workspace_id.map(|w| w.to_string()),
            actor: AuditActor {
                kind: e.actor_type.as_str().to_owned(),
                id: e.actor_id,
            },
            action: e.action,
            target: e.target,
            ip: e.ip,
            user_agent: e.user_agent,
            outcome: e.outcome,
        }
    }
}

/// Audit filters beside paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this action (e.g. `key.revoke`).
    pub action: Option<String>,
    /// Only this actor's entries.
    pub actor_id: Option<String>,
    /// RFC 3339; entries at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339; entries before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Where the previous page stopped (its `next_cursor`); empty or absent for the first page.
    #[param(pattern = r"^[A-Za-z0-9_]{0,64}$")]
    pub cursor: Option<String>,
}

impl AuditParams {
    pub fn split(self) -> Result<(keyrail_core::model::AuditFilter, Page), ApiError> {
        let ts = |field: &str, v: &Option<String>| -> Result<Option<Timestamp>, ApiError> {
            v.as_deref()
                .map(|s| {
                    Timestamp::parse_rfc3339(s).ok_or_else(|| {
                        ApiError::invalid(
                            field.to_owned(),
                            format!("{field} must be an RFC 3339 timestamp"),
                        )
                    })
                })
                .transpose()
        };
        let filter = keyrail_core::model::AuditFilter {
            workspace_id: None,
            since: ts("since", &self.since)?,
            until: ts("until", &self.until)?,
            action: self.action,
            actor_id: self.actor_id,
        };
        let page = ListParams {
            limit: self.limit,
            cursor: self.cursor,
        }
        .page()?;
        Ok((filter, page))
    }
}
