//! Members and roles, as pages: the member list (paging), invite by email with a role, change a
//! member's role, remove a member (with confirmation); custom roles (list, create and edit with
//! a scope picker, delete with confirmation). Every action is the API's use case
//! (`state.workspaces`): the no-escalation rule, the last-owner guard and the audit are its own.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyrail_core::workspaces::{Access, RoleView};
use serde::Deserialize;

use crate::auth::Meta;
use crate::console::keys::{ScopeChoice, scope_choices};
use crate::console::session::{Posted, Signed, see_other};
use crate::console::view::open_workspace;
use crate::console::view::{Chrome, Failure, FieldError, When, can, render, render_status};
use crate::error::ApiError;
use crate::routes::common::ListParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/w/{ws}/members", get(list).post(invite))
        .route(
            "/w/{ws}/members/{id}/role",
            axum::routing::post(change_role),
        )
        .route(
            "/w/{ws}/members/{id}/remove",
            get(remove_confirm).post(remove),
        )
        .route("/w/{ws}/roles", get(roles).post(create_role))
        .route("/w/{ws}/roles/new", get(new_role))
        .route("/w/{ws}/roles/{id}", get(edit_role).post(update_role))
        .route(
            "/w/{ws}/roles/{id}/delete",
            get(delete_role_confirm).post(delete_role),
        )
}

/// A role a select offers: what the form sends (a built-in name or a custom role's id) and
/// the name people read.
struct RoleOption {
    value: String,
    name: String,
}

impl From<&RoleView> for RoleOption {
    fn from(r: &RoleView) -> Self {
        Self {
            value: r
                .id
                .as_ref()
                .map_or_else(|| r.name.clone(), ToString::to_string),
            name: r.name.clone(),
        }
    }
}

struct MemberRow {
    id: String,
    name: String,
    email: String,
    role: String,
    joined: When,
    /// The person may change or remove this member (the use case would accept it).
    manage: bool,
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct MembersPage {
    chrome: Chrome,
    members: Vec<MemberRow>,
    /// Roles the person may give (empty without members:write).
    roles: Vec<RoleOption>,
    write: bool,
    admin: bool,
    next: Option<String>,
    first_page: bool,
    /// The invite form's values and error.
    email: String,
    role: String,
    error: FieldError,
    /// A failed role change or removal, as the API said it.
    row_error: String,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

/// What the list page shows besides its rows.
#[derive(Default)]
struct ListState {
    cursor: Option<String>,
    email: String,
    role: String,
    error: FieldError,
    row_error: String,
}

async fn members_page(
    state: &AppState,
    access: &Access,
    chrome: Chrome,
    s: ListState,
) -> Result<MembersPage, Failure> {
    let page = ListParams {
        limit: None,
        cursor: s.cursor.clone(),
    }
    .page()?;
    let members = state.workspaces.members(access, &page).await?;
    let write = can(access, &["members:write"]);
    let roles = if write {
        state
            .workspaces
            .grantable_roles(access)
            .await?
            .iter()
            .map(RoleOption::from)
            .collect()
    } else {
        Vec::new()
    };
    let next = page
        .next_cursor(&members, |m| m.member.id.to_string())
        .map(|last| format!("{}?cursor={last}", chrome.ws_path("members")));
    let now = state.clock.now();
    let mut rows = Vec::with_capacity(members.len());
    for m in members {
        let role = state
            .workspaces
            .role_name(&access.workspace.id, &m.member.role)
            .await?;
        rows.push(MemberRow {
            manage: state.workspaces.may_manage(access, &m.member).await?,
            id: m.member.id.to_string(),
            joined: When::new(m.member.created_at, now),
            name: m.name,
            email: m.email,
            role,
        });
    }
    Ok(MembersPage {
        members: rows,
        roles,
        write,
        admin: can(access, &["members:admin"]),
        next,
        first_page: s.cursor.as_deref().is_none_or(str::is_empty),
        email: s.email,
        role: s.role,
        error: s.error,
        row_error: s.row_error,
        chrome,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &who, &ws, q.done.as_deref()).await?;
    let page = members_page(
        &state,
        &access,
        chrome,
        ListState {
            cursor: q.cursor,
            ..ListState::default()
        },
    )
    .await?;
    render(&page)
}

pub async fn invite(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &posted.who, &ws, None).await?;
    let email = posted.form.text("email").unwrap_or_default();
    let role = posted.form.text("role").unwrap_or_default();
    let added = state
        .workspaces
        .add_member(&access, &meta, email, role)
        .await;
    let e = match added {
        Ok(_) => return Ok(see_other(&format!("/w/{ws}/members?done=added"))),
        Err(e) => ApiError::from(e),
    };
    // "No user with that email" belongs next to the email field, not on an error page.
    let (status, error) = if e.status == StatusCode::NOT_FOUND {
        (
            e.status,
            FieldError {
                field: "email".to_owned(),
                message: e.message.into_owned(),
            },
        )
    } else {
        FieldError::of(e)?
    };
    let page = members_page(
        &state,
        &access,
        chrome,
        ListState {
            email: email.to_owned(),
            role: role.to_owned(),
            error,
            ..ListState::default()
        },
    )
    .await?;
    render_status(status, &page)
}

pub async fn change_role(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &posted.who, &ws, None).await?;
    let role = posted.form.text("role").unwrap_or_default();
    match state
        .workspaces
        .update_member(&access, &meta, &id, role)
        .await
    {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/members?done=updated"))),
        Err(e) => {
            // The last owner (409) or an unknown role (400): said above the list.
            let (status, error) = FieldError::of(e.into())?;
            let page = members_page(
                &state,
                &access,
                chrome,
                ListState {
                    row_error: error.message,
                    ..ListState::default()
                },
            )
            .await?;
            render_status(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "console/member_remove.html")]
struct RemovePage {
    chrome: Chrome,
    id: String,
    name: String,
    email: String,
    error: String,
}

/// The member `id` as the confirmation page names them.
async fn member_named(
    state: &AppState,
    access: &Access,
    id: &str,
) -> Result<(String, String), Failure> {
    access.require(&["members:write"])?;
    let member_id = keyrail_core::id::MemberId::parse(id)
        .ok_or_else(|| Failure::from(keyrail_core::Error::NotFound { what: "member" }))?;
    let member = state
        .store
        .member_by_id(&access.workspace.id, &member_id)
        .await
        .map_err(keyrail_core::Error::from)?
        .ok_or_else(|| Failure::from(keyrail_core::Error::NotFound { what: "member" }))?;
    let user = state
        .store
        .user_by_id(&member.user_id)
        .await
        .map_err(keyrail_core::Error::from)?
        .ok_or_else(|| Failure::from(keyrail_core::Error::NotFound { what: "member" }))?;
    Ok((user.name, user.email))
}

/// The confirmation step of a removal.
pub async fn remove_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &who, &ws, None).await?;
    let (name, email) = member_named(&state, &access, &id).await?;
    render(&RemovePage {
        chrome,
        id,
        name,
        email,
        error: String::new(),
    })
}

pub async fn remove(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &posted.who, &ws, None).await?;
    match state.workspaces.remove_member(&access, &meta, &id).await {
        Ok(()) => {
            // Leaving a workspace oneself: its pages are no longer theirs.
            let me = access.member.as_ref().is_some_and(|m| m.id.as_str() == id);
            Ok(see_other(&if me {
                "/workspaces".to_owned()
            } else {
                format!("/w/{ws}/members?done=removed")
            }))
        }
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            let (name, email) = member_named(&state, &access, &id).await?;
            render_status(
                status,
                &RemovePage {
                    chrome,
                    id,
                    name,
                    email,
                    error: error.message,
                },
            )
        }
    }
}

// roles

struct RoleRow {
    id: String,
    name: String,
    scopes: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/roles.html")]
struct RolesPage {
    chrome: Chrome,
    builtin: Vec<RoleRow>,
    custom: Vec<RoleRow>,
}

pub async fn roles(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &who, &ws, q.done.as_deref()).await?;
    let (builtin, custom): (Vec<_>, Vec<_>) = state
        .workspaces
        .roles(&access)
        .await?
        .into_iter()
        .partition(|r| r.builtin);
    let row = |r: RoleView| RoleRow {
        id: r.id.map_or_else(|| r.name.clone(), |i| i.to_string()),
        name: r.name,
        scopes: r.scopes,
    };
    render(&RolesPage {
        chrome,
        builtin: builtin.into_iter().map(row).collect(),
        custom: custom.into_iter().map(row).collect(),
    })
}

#[derive(Template)]
#[template(path = "console/role_form.html")]
struct RoleFormPage {
    chrome: Chrome,
    /// The role being edited (`None`: a new one).
    id: Option<String>,
    name: String,
    scopes: Vec<ScopeChoice>,
    error: FieldError,
}

pub async fn new_role(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &who, &ws, None).await?;
    access.require(&["members:admin"])?;
    render(&RoleFormPage {
        scopes: scope_choices(&access, &[]),
        chrome,
        id: None,
        name: String::new(),
        error: FieldError::default(),
    })
}

pub async fn create_role(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &posted.who, &ws, None).await?;
    let name = posted.form.text("name").unwrap_or_default();
    let scopes = posted.form.all("scopes");
    match state
        .workspaces
        .create_role(&access, &meta, name, &scopes)
        .await
    {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/roles?done=created"))),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            render_status(
                status,
                &RoleFormPage {
                    scopes: scope_choices(&access, &scopes),
                    chrome,
                    id: None,
                    name: name.to_owned(),
                    error,
                },
            )
        }
    }
}

/// A custom role of the workspace, by id (404 for a built-in role or another workspace's).
async fn custom_role(state: &AppState, access: &Access, id: &str) -> Result<RoleView, Failure> {
    state
        .workspaces
        .roles(access)
        .await?
        .into_iter()
        .find(|r| r.id.as_ref().is_some_and(|i| i.as_str() == id))
        .ok_or_else(|| keyrail_core::Error::NotFound { what: "role" }.into())
}

pub async fn edit_role(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &who, &ws, None).await?;
    let role = custom_role(&state, &access, &id).await?;
    render(&RoleFormPage {
        scopes: scope_choices(&access, &role.scopes),
        chrome,
        id: Some(id),
        name: role.name,
        error: FieldError::default(),
    })
}

pub async fn update_role(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &posted.who, &ws, None).await?;
    let name = posted.form.text("name").unwrap_or_default();
    let scopes = posted.form.all("scopes");
    match state
        .workspaces
        .update_role(&access, &meta, &id, Some(name), Some(&scopes))
        .await
    {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/roles?done=updated"))),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            render_status(
                status,
                &RoleFormPage {
                    scopes: scope_choices(&access, &scopes),
                    chrome,
                    id: Some(id),
                    name: name.to_owned(),
                    error,
                },
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/role_delete.html")]
struct RoleDeletePage {
    chrome: Chrome,
    id: String,
    name: String,
    error: String,
}

pub async fn delete_role_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &who, &ws, None).await?;
    let role = custom_role(&state, &access, &id).await?;
    render(&RoleDeletePage {
        chrome,
        id,
        name: role.name,
        error: String::new(),
    })
}

pub async fn delete_role(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "members", &posted.who, &ws, None).await?;
    match state.workspaces.delete_role(&access, &meta, &id).await {
        Ok(()) => Ok(see_other(&format!("/w/{ws}/roles?done=deleted"))),
        Err(e) => {
            // A role somebody holds (409): said on the confirmation page.
            let (status, error) = FieldError::of(e.into())?;
            let role = custom_role(&state, &access, &id).await?;
            render_status(
                status,
                &RoleDeletePage {
                    chrome,
                    id,
                    name: role.name,
                    error: error.message,
                },
            )
        }
    }
}
