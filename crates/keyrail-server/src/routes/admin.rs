//! `/api/v1/admin/*`: platform administration [admin:superuser].

use axum::Json;
use axum::extract::{Path, State};
use keyrail_core::model::WorkspaceStatus;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Meta;
use crate::error::{ApiError, ErrorBody};
use crate::routes::common::{ApiQuery, AuditOut, AuditParams, Caller, List, ListParams};
use crate::routes::profile::UserOut;
use crate::routes::workspaces::WorkspaceOut;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users))
        .routes(routes!(unlock))
        .routes(routes!(suspend))
        .routes(routes!(activate))
        .routes(routes!(audit))
}

/// Every user account. [admin:superuser]
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin",
    params(ListParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Users", body = List<UserOut>),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn users(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<List<UserOut>>, ApiError> {
    let page = params.page()?;
    let users = state.admin.users(&actor, &page).await?;
    let last = users.last().map(|u| u.id.to_string());
    let full = users.len() as u32 >= page.limit;
    Ok(Json(List {
        data: users.into_iter().map(UserOut::from).collect(),
        next_cursor: if full { last } else { None },
    }))
}

/// Lift a user's login lockout. [admin:superuser]
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/unlock", tag = "admin",
    params(("id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn unlock(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(state.admin.unlock(&actor, &meta, &id).await?.into()))
}

/// Suspend a workspace: every credential bound to it gets 403 `tenant_suspended`.
/// [admin:superuser]
#[utoipa::path(post, path = "/api/v1/admin/workspaces/{id}/suspend", tag = "admin",
    params(("id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceOut),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn suspend(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceOut>, ApiError> {
    let ws = state
        .admin
        .set_status(&actor, &meta, &id, WorkspaceStatus::Suspended)
        .await?;
    Ok(Json(WorkspaceOut::new(ws, None)))
}

/// Reactivate a suspended workspace. [admin:superuser]
#[utoipa::path(post, path = "/api/v1/admin/workspaces/{id}/activate", tag = "admin",
    params(("id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceOut),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn activate(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceOut>, ApiError> {
    let ws = state
        .admin
        .set_status(&actor, &meta, &id, WorkspaceStatus::Active)
        .await?;
    Ok(Json(WorkspaceOut::new(ws, None)))
}

/// The audit log of the whole platform, newest first. [admin:superuser]
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    params(AuditParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Entries", body = List<AuditOut>),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<List<AuditOut>>, ApiError> {
    let (filter, page) = params.split()?;
    let entries = state.admin.audit(&actor, filter, &page).await?;
    let data: Vec<AuditOut> = entries.into_iter().map(AuditOut::from).collect();
    Ok(Json(List::paged(data, &page, |e| e.id.clone())))
}
