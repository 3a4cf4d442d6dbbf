//! `/api/v1/workspaces` and `/api/v1/w/{workspace_id}/...`: workspaces, members, roles, custom
//! scopes and the audit log. Every handler resolves the caller's access first (404 for a
//! workspace it cannot see), then calls the use case, which checks the scopes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keyrail_core::Timestamp;
use keyrail_core::audit::RequestMeta;
use keyrail_core::authz::CatalogEntry;
use keyrail_core::model::{KeyFormat, Workspace};
use keyrail_core::workspaces::{Actor, RoleView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Meta;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::routes::common::{ApiQuery, AuditOut, AuditParams, Caller, List, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace, list_workspaces))
        .routes(routes!(get_workspace, patch_workspace, delete_workspace))
        .routes(routes!(list_members, add_member))
        .routes(routes!(patch_member, delete_member))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(patch_role, delete_role))
        .routes(routes!(list_scopes, create_scope))
        .routes(routes!(delete_scope))
        .routes(routes!(workspace_audit))
        .routes(routes!(scope_catalog))
}

/// The alphabet of a workspace's API keys: `base62`, `hex` or `base36`.
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyAlphabetName {
    Base62,
    Hex,
    Base36,
}

/// The shape of a workspace's API keys.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct KeyFormatDoc {
    /// 1 to 16 lowercase letters or digits, starting with a letter.
    #[schema(example = "kr", pattern = r"^[a-z][a-z0-9]{0,15}$")]
    prefix: String,
    // No doc comment here: with one, utoipa wraps the inline enum in an `allOf` with an object.
    #[schema(inline, value_type = KeyAlphabetName)]
    alphabet: String,
    /// Random characters, at most 128, giving at least 96 bits of randomness: 17 in base62,
    /// 19 in base36, 24 in hex (the schema says 24, which is enough for every alphabet).
    #[schema(example = 30, minimum = 24, maximum = 128)]
    length: u32,
    /// Append 6 base62 characters of CRC32.
    checksum: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceOut {
    id: String,
    name: String,
    /// `active` or `suspended`.
    status: &'static str,
    #[schema(value_type = KeyFormatDoc)]
    key_format: KeyFormat,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// The caller's role (in lists of the caller's workspaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

impl WorkspaceOut {
    pub fn new(ws: Workspace, role: Option<String>) -> Self {
        Self {
            id: ws.id.to_string(),
            name: ws.name,
            status: ws.status.as_str(),
            key_format: ws.key_format,
            created_at: ws.created_at,
            role,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme production"}))]
pub struct WorkspaceIn {
    /// 1 to 100 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
}

/// Create a workspace; the caller becomes its `owner`.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = WorkspaceIn,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created", body = WorkspaceOut),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
    ))]
pub async fn create_workspace(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<WorkspaceIn>,
) -> Result<(StatusCode, Json<WorkspaceOut>), ApiError> {
    let ws = state.workspaces.create(&actor, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(WorkspaceOut::new(ws, Some("owner".into()))),
    ))
}

/// The caller's workspaces, with the caller's role in each.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces",
    security(("bearer" = []), ("cookie" = [])),
    responses((status = 200, description = "Workspaces", body = List<WorkspaceOut>)))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<List<WorkspaceOut>>, ApiError> {
    let data = state
        .workspaces
        .list_mine(&actor)
        .await?
        .into_iter()
        .map(|(ws, role)| WorkspaceOut::new(ws, Some(role)))
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}

/// A workspace. [workspace:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceOut),
        (status = 403, description = "`insufficient_scope` or `tenant_suspended`", body = ErrorBody),
        (status = 404, description = "No such workspace visible to the caller", body = ErrorBody),
    ))]
pub async fn get_workspace(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
) -> Result<Json<WorkspaceOut>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    Ok(Json(WorkspaceOut::new(
        state.workspaces.get(&access)?,
        None,
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Acme (prod)",
    "key_format": {"prefix": "acme", "alphabet": "base62", "length": 32, "checksum": true}
}))]
pub struct WorkspacePatch {
    /// 1 to 100 characters (not only spaces, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: Option<String>,
    #[schema(value_type = Option<KeyFormatDoc>)]
    key_format: Option<KeyFormat>,
}

/// Rename a workspace or change its key format. [workspace:write]
#[utoipa::path(patch, path = "/api/v1/w/{workspace_id}", tag = "workspaces", request_body = WorkspacePatch,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The workspace", body = WorkspaceOut),
        (status = 400, description = "Invalid name or key format (under 96 bits of randomness)", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn patch_workspace(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<WorkspacePatch>,
) -> Result<Json<WorkspaceOut>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let ws = state
        .workspaces
        .update(&access, &meta, body.name.as_deref(), body.key_format)
        .await?;
    Ok(Json(WorkspaceOut::new(ws, None)))
}

/// Delete a workspace and everything in it. [workspace:delete]
#[utoipa::path(delete, path = "/api/v1/w/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn delete_workspace(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
) -> Result<StatusCode, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    state.workspaces.delete(&access, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl MemberOut {
    fn new(
        member: &keyrail_core::model::Member,
        email: String,
        name: String,
        role: String,
    ) -> Self {
        Self {
            id: member.id.to_string(),
            user_id: member.user_id.to_string(),
            email,
            name,
            role,
            created_at: member.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    id: String,
    user_id: String,
    email: String,
    name: String,
    /// A built-in role name or a custom role's name.
    role: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

/// Members of the workspace. [members:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/members", tag = "members",
    params(("workspace_id" = String, Path), ListParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Members", body = List<MemberOut>),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn list_members(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<List<MemberOut>>, ApiError> {
    members_page(&state, &actor, &ws, params).await.map(Json)
}

/// One page of the workspace's members (the API's listing and the MCP tool's).
pub(crate) async fn members_page(
    state: &AppState,
    actor: &Actor,
    ws: &str,
    params: ListParams,
) -> Result<List<MemberOut>, ApiError> {
    let page = params.page()?;
    let access = state.workspaces.access(actor, ws).await?;
    let mut data = Vec::new();
    for m in state.workspaces.members(&access, &page).await? {
        let role = state
            .workspaces
            .role_name(&access.workspace.id, &m.member.role)
            .await?;
        data.push(MemberOut::new(&m.member, m.email, m.name, role));
    }
    Ok(List::paged(data, &page, |m| m.id.clone()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "role": "developer"}))]
pub struct MemberIn {
    email: String,
    /// A built-in role (`owner`, `admin`, `developer`, `member`, `viewer`) or a custom role's
    /// id or name.
    #[schema(pattern = r"^[a-z0-9_-]{1,64}$")]
    role: String,
}

/// Add an existing user to the workspace. [members:write]; nobody can give a role with scopes
/// they do not hold.
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/members", tag = "members", request_body = MemberIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Added", body = MemberOut),
        (status = 400, description = "Unknown role", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "No user with that email", body = ErrorBody),
        (status = 409, description = "`member_exists`", body = ErrorBody),
    ))]
pub async fn add_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<MemberIn>,
) -> Result<(StatusCode, Json<MemberOut>), ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let (member, user, role) = state
        .workspaces
        .add_member(&access, &meta, &body.email, &body.role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(MemberOut::new(&member, user.email, user.name, role)),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "admin"}))]
pub struct MemberPatch {
    /// A built-in role's name, or a custom role's id or name.
    #[schema(pattern = r"^[a-z0-9_-]{1,64}$")]
    role: String,
}

/// Change a member's role. [members:write]; the last owner cannot be demoted (409), and the
/// caller must hold every scope of both the member's current and new role.
#[utoipa::path(patch, path = "/api/v1/w/{workspace_id}/members/{member_id}", tag = "members", request_body = MemberPatch,
    params(("workspace_id" = String, Path), ("member_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Updated", body = MemberOut),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
    ))]
pub async fn patch_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberPatch>,
) -> Result<Json<MemberOut>, ApiError> {
    set_member_role(&state, &actor, &meta, &ws, &id, &body.role)
        .await
        .map(Json)
}

/// Changes a member's role (the API's `PATCH` and the MCP tool's).
pub(crate) async fn set_member_role(
    state: &AppState,
    actor: &Actor,
    meta: &RequestMeta,
    ws: &str,
    id: &str,
    role: &str,
) -> Result<MemberOut, ApiError> {
    let access = state.workspaces.access(actor, ws).await?;
    let member = state
        .workspaces
        .update_member(&access, meta, id, role)
        .await?;
    let user = state
        .store
        .user_by_id(&member.user_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let role = state
        .workspaces
        .role_name(&access.workspace.id, &member.role)
        .await?;
    Ok(MemberOut::new(&member, user.email, user.name, role))
}

/// Remove a member. [members:write]; the last owner cannot be removed (409).
#[utoipa::path(delete, path = "/api/v1/w/{workspace_id}/members/{member_id}", tag = "members",
    params(("workspace_id" = String, Path), ("member_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
    ))]
pub async fn delete_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    state.workspaces.remove_member(&access, &meta, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RoleOut {
    /// The role's id (`rol_...`); for built-in roles, their name.
    id: String,
    name: String,
    scopes: Vec<String>,
    builtin: bool,
}

impl From<RoleView> for RoleOut {
    fn from(r: RoleView) -> Self {
        Self {
            id: r.id.map_or_else(|| r.name.clone(), |i| i.to_string()),
            name: r.name,
            scopes: r.scopes,
            builtin: r.builtin,
        }
    }
}

/// Built-in and custom roles. [members:admin]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/roles", tag = "members",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Roles, built-in first (strongest first)", body = List<RoleOut>),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn list_roles(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
) -> Result<Json<List<RoleOut>>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let data = state
        .workspaces
        .roles(&access)
        .await?
        .into_iter()
        .map(RoleOut::from)
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "support", "scopes": ["keys:read", "audit:read"]}))]
pub struct RoleIn {
    /// 1 to 64 of `a-z 0-9 _ -`, not a built-in role's name.
    #[schema(pattern = r"^(?!(owner|admin|developer|member|viewer)$)[a-z0-9_-]{1,64}$")]
    name: String,
    #[schema(schema_with = crate::routes::common::scope_list)]
    scopes: Vec<String>,
}

/// Define a custom role. [members:admin]; only scopes the caller holds.
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/roles", tag = "members", request_body = RoleIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created", body = RoleOut),
        (status = 400, description = "Invalid name or unknown scope", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 409, description = "`role_exists`", body = ErrorBody),
    ))]
pub async fn create_role(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<RoleIn>,
) -> Result<(StatusCode, Json<RoleOut>), ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let role = state
        .workspaces
        .create_role(&access, &meta, &body.name, &body.scopes)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RoleOut {
            id: role.id.to_string(),
            name: role.name,
            scopes: role.scopes,
            builtin: false,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scopes": ["keys:read"]}))]
pub struct RolePatch {
    /// 1 to 64 of `a-z 0-9 _ -`, not a built-in role's name.
    #[schema(pattern = r"^(?!(owner|admin|developer|member|viewer)$)[a-z0-9_-]{1,64}$")]
    name: Option<String>,
    #[schema(schema_with = crate::routes::common::scope_list_or_null)]
    scopes: Option<Vec<String>>,
}

/// Change a custom role. [members:admin]
#[utoipa::path(patch, path = "/api/v1/w/{workspace_id}/roles/{role_id}", tag = "members", request_body = RolePatch,
    params(("workspace_id" = String, Path), ("role_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Updated", body = RoleOut),
        (status = 400, description = "Invalid name or unknown scope", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found (built-in roles cannot be changed)", body = ErrorBody),
        (status = 409, description = "`role_exists`", body = ErrorBody),
    ))]
pub async fn patch_role(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RolePatch>,
) -> Result<Json<RoleOut>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let role = state
        .workspaces
        .update_role(
            &access,
            &meta,
            &id,
            body.name.as_deref(),
            body.scopes.as_deref(),
        )
        .await?;
    Ok(Json(RoleOut {
        id: role.id.to_string(),
        name: role.name,
        scopes: role.scopes,
        builtin: false,
    }))
}

/// Delete a custom role nobody holds. [members:admin]
#[utoipa::path(delete, path = "/api/v1/w/{workspace_id}/roles/{role_id}", tag = "members",
    params(("workspace_id" = String, Path), ("role_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "`role_in_use`", body = ErrorBody),
    ))]
pub async fn delete_role(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    state.workspaces.delete_role(&access, &meta, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A scope of the catalog.
#[derive(Serialize, ToSchema)]
pub struct ScopeOut {
    #[schema(example = "keys:read")]
    name: String,
    description: String,
    dangerous: bool,
    /// The scopes this one implies directly.
    implies: Vec<String>,
    builtin: bool,
}

impl From<CatalogEntry> for ScopeOut {
    fn from(e: CatalogEntry) -> Self {
        Self {
            name: e.name,
            description: e.description,
            dangerous: e.dangerous,
            implies: e.implies,
            builtin: e.builtin,
        }
    }
}

/// The workspace's scope catalog: built-in scopes and its own. [workspace:write]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/scopes", tag = "scopes",
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The catalog", body = List<ScopeOut>),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn list_scopes(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
) -> Result<Json<List<ScopeOut>>, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let data = state
        .workspaces
        .scopes(&access)?
        .into_iter()
        .map(ScopeOut::from)
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "chats:read",
    "description": "Read the workspace's chat history",
    "dangerous": false
}))]
pub struct ScopeIn {
    /// `resource:action`, not one of keyrail's own resources (`workspace`, `members`, `keys`,
    /// `apps`, `webhooks`, `audit`, `export`, `admin`).
    #[schema(
        example = "chats:read",
        pattern = r"^(?!(workspace|members|keys|apps|webhooks|audit|export|admin):)[a-z][a-z0-9_-]{0,30}:[a-z][a-z0-9_-]{0,30}$"
    )]
    name: String,
    /// One line, at most 256 characters (may be empty).
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    description: String,
    #[serde(default)]
    dangerous: bool,
}

/// Add a scope for the workspace's own API. [workspace:write]
#[utoipa::path(post, path = "/api/v1/w/{workspace_id}/scopes", tag = "scopes", request_body = ScopeIn,
    params(("workspace_id" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, description = "Created", body = ScopeOut),
        (status = 400, description = "Invalid name (pattern, length, reserved resource)", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 409, description = "`scope_exists`", body = ErrorBody),
    ))]
pub async fn create_scope(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<ScopeIn>,
) -> Result<(StatusCode, Json<ScopeOut>), ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    let entry = state
        .workspaces
        .create_scope(
            &access,
            &meta,
            &body.name,
            &body.description,
            body.dangerous,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(entry.into())))
}

/// Delete a custom scope. Its name is taken off every key, grant and custom role of the
/// workspace at once: a scope made again under the same name gives them nothing. [workspace:write]
#[utoipa::path(delete, path = "/api/v1/w/{workspace_id}/scopes/{name}", tag = "scopes",
    params(("workspace_id" = String, Path), ("name" = String, Path)),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Built-in scopes cannot be deleted", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "Not found", body = ErrorBody),
    ))]
pub async fn delete_scope(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Meta(meta): Meta,
    Path((ws, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = state.workspaces.access(&actor, &ws).await?;
    state.workspaces.delete_scope(&access, &meta, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The workspace's audit log, newest first. [audit:read]
#[utoipa::path(get, path = "/api/v1/w/{workspace_id}/audit", tag = "audit",
    params(("workspace_id" = String, Path), AuditParams),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Entries", body = List<AuditOut>),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
    ))]
pub async fn workspace_audit(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(ws): Path<String>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<List<AuditOut>>, ApiError> {
    audit_page(&state, &actor, &ws, params).await.map(Json)
}

/// One page of the workspace's audit log (the API's listing and the MCP tool's).
pub(crate) async fn audit_page(
    state: &AppState,
    actor: &Actor,
    ws: &str,
    params: AuditParams,
) -> Result<List<AuditOut>, ApiError> {
    let (filter, page) = params.split()?;
    let access = state.workspaces.access(actor, ws).await?;
    let entries = state.workspaces.audit_log(&access, filter, &page).await?;
    let data: Vec<AuditOut> = entries.into_iter().map(AuditOut::from).collect();
    Ok(List::paged(data, &page, |e| e.id.clone()))
}

/// The built-in scope catalog (a workspace's own scopes are under `W/scopes`).
#[utoipa::path(get, path = "/api/v1/scopes", tag = "scopes",
    responses((status = 200, description = "The built-in catalog", body = List<ScopeOut>)))]
pub async fn scope_catalog() -> Json<List<ScopeOut>> {
    Json(List {
        data: keyrail_core::authz::builtin()
            .iter()
            .cloned()
            .map(ScopeOut::from)
            .collect(),
        next_cursor: None,
    })
}
