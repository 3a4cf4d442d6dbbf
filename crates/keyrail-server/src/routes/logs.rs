//! The API request log: `GET /api/v1/admin/logs` [admin:superuser] and `GET W/logs`
//! [audit:read] (API.md "Audit, logs, export").

use axum::Json;
use axum::extract::{Path, State};
use keyrail_core::Timestamp;
use keyrail_core::model::Page;
use keyrail_core::request_log::{RequestLogFilter, RequestLogRow, StatusFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::routes::common::{ApiQuery, Caller, List, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_logs))
        .routes(routes!(workspace_logs))
}

/// Who made a request.
#[derive(Serialize, ToSchema)]
pub struct LogPrincipal {
    /// `key` (an API key), `user` (a person) or `app` (an app's grant).
    #[serde(rename = "type")]
    pub kind: String,
    /// The key id, user id or grant id (never a credential).
    pub id: String,
}

/// One API request.
#[derive(Serialize, ToSchema)]
pub struct LogOut {
    /// `log_<n>`; later requests have larger numbers.
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub method: String,
    /// The route template, e.g. `/api/v1/w/{workspace_id}/keys/{key_id}`.
    pub route: String,
    pub status: u16,
    /// Time from the request's arrival to its response head, in microseconds.
    pub latency_us: i64,
    /// `null` when the request carried no credential that was recognised.
    pub principal: Option<LogPrincipal>,
    pub workspace_id: Option<String>,
    pub ip: Option<String>,
    /// At most 256 characters.
    pub user_agent: Option<String>,
    /// As in the response's `X-Request-Id`.
    pub request_id: String,
}

impl From<RequestLogRow> for LogOut {
    fn from(r: RequestLogRow) -> Self {
        let e = r.entry;
        Self {
            id: r.id.to_string(),
            at: e.at,
            method: e.method,
            route: e.route,
            status: e.status,
            latency_us: e.latency_us,
            principal: e.principal.map(|p| LogPrincipal {
                kind: p.kind.as_str().to_owned(),
                id: p.id,
            }),
            workspace_id: e.workspace_id,
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
        }
    }
}

/// Request-log filters beside paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// One status code (`404`) or a class (`4xx`, `5xx`, ...).
    #[param(pattern = r"^[1-5]([0-9]{2}|[xX]{2})$")]
    pub status: Option<String>,
    /// Only this principal's requests: a key id, user id or grant id.
    #[param(min_length = 1, max_length = 64)]
    pub principal: Option<String>,
    /// RFC 3339; requests at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339; requests before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Where the previous page stopped (its `next_cursor`, `log_<n>`).
    #[param(pattern = r"^(log_[1-9][0-9]{0,17})?$")]
    pub cursor: Option<String>,
}

/// The admin listing's filters: [`LogParams`] and a workspace.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminLogParams {
    /// Only this workspace's requests.
    #[param(min_length = 1, max_length = 64)]
    pub workspace_id: Option<String>,
    /// One status code (`404`) or a class (`4xx`, `5xx`, ...).
    #[param(pattern = r"^[1-5]([0-9]{2}|[xX]{2})$")]
    pub status: Option<String>,
    /// Only this principal's requests: a key id, user id or grant id.
    #[param(min_length = 1, max_length = 64)]
    pub principal: Option<String>,
    /// RFC 3339; requests at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339; requests before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// Where the previous page stopped (its `next_cursor`, `log_<n>`).
    #[param(pattern = r"^(log_[1-9][0-9]{0,17})?$")]
    pub cursor: Option<String>,
}

/// The longest id a filter takes (ids are ~30 characters).
const ID_MAX: usize = 64;

fn id_filter(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.is_empty() || s.len() > ID_MAX => Err(ApiError::invalid(
            field.to_owned(),
            format!("{field} must be an id of 1 to {ID_MAX} characters"),
        )),
        v => Ok(v),
    }
}

fn ts(field: &str, v: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    v.map(|s| {
        Timestamp::parse_rfc3339(s).ok_or_else(|| {
            ApiError::invalid(
                field.to_owned(),
                format!("{field} must be an RFC 3339 timestamp"),
            )
        })
    })
    .transpose()
}

impl LogParams {
    fn split(self) -> Result<(RequestLogFilter, Page), ApiError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(StatusFilter::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "status must be a status code (e.g. 404) or a class (e.g. 4xx)",
                )
            })?),
        };
        let filter = RequestLogFilter {
            workspace_id: None,
            status,
            since: ts("since", self.since.as_deref())?,
            until: ts("until", self.until.as_deref())?,
            principal_id: id_filter("principal", self.principal)?,
        };
        let page = ListParams {
            limit: self.limit,
            cursor: self.cursor,
        }
        .page()?;
        Ok((filter, page))
    }
}

/// Every API request of the platform, newest first. [admin:superuser]
#[utoipa::path(get, path = "/api/v1/admin/logs", tag = "admin",
    params(AdminLogParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Requests", body = List<LogOut>),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn admin_logs(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(params): ApiQuery<AdminLogParams>,
) -> Result<Json<List<LogOut>>, ApiError> {
    let workspace_id = id_filter("workspace_id", params.workspace_id)?;
    let (mut filter, page) = LogParams {
        status: params.status,
        principal: params.principal,
        since: params.since,
        until: params.until,
        limit: params.limit,
        cursor: params.cursor,
    }
    .split()?;
    filter.workspace_id = workspace_id;
    let rows = state.admin.request_logs(&actor, filter, &page).await?;
    let data: Vec<LogOut> = rows.into_iter().map(LogOut::from).collect();
    Ok(Json(List::paged(data, &page, |e| e.id.clone())))
}

/// The workspace's API requests, newest first: those made with its keys and app grants, and
/// those its members made on its routes. [audit:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/logs", tag = "audit",
    params(("workspace_id" = String, Path), LogParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Requests", body = List<LogOut>),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn workspace_logs(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Json<List<LogOut>>, ApiError> {
    logs_page(&state, &actor, &ws, params).await.map(Json)
}

/// One page of the workspace's request log (the API's listing and the MCP tool's).
pub(crate) async fn logs_page(
    state: &AppState,
    actor: &keyrail_core::workspaces::Actor,
    ws: &str,
    params: LogParams,
) -> Result<List<LogOut>, ApiError> {
    let (filter, page) = params.split()?;
    let access = state.workspaces.access(actor, ws).await?;
    let rows = state
        .workspaces
        .request_logs(&access, filter, &page)
        .await?;
    let data: Vec<LogOut> = rows.into_iter().map(LogOut::from).collect();
    Ok(List::paged(data, &page, |e| e.id.clone()))
}
