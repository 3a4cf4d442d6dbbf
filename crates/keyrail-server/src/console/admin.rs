//! Platform administration as pages, for superusers: users (unlock a locked sign-in) and
//! workspaces (suspend with confirmation, activate). The use cases are `state.admin`'s, which
//! refuse anyone else with 403 `insufficient_scope` (the navigation shows the link only to
//! superusers).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use keyrail_core::model::WorkspaceStatus;
use serde::Deserialize;

use crate::auth::Meta;
use crate::console::session::{Posted, Signed, see_other};
use crate::console::view::{Chrome, Failure, When, encode, notice, render};
use crate::routes::common::ListParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(users))
        .route("/admin/users/{id}/unlock", post(unlock))
        .route("/admin/workspaces", get(workspaces))
        .route(
            "/admin/workspaces/{id}/suspend",
            get(suspend_confirm).post(suspend),
        )
        .route("/admin/workspaces/{id}/activate", post(activate))
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    cursor: Option<String>,
    done: Option<String>,
}

struct UserView {
    id: String,
    email: String,
    name: String,
    superuser: bool,
    mfa_enabled: bool,
    locked_until: Option<When>,
    created: When,
}

#[derive(Template)]
#[template(path = "console/admin_users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserView>,
    first_page: bool,
    next: Option<String>,
}

fn next_link(path: &str, full: bool, last: Option<String>) -> Option<String> {
    full.then_some(last)
        .flatten()
        .map(|last| format!("{path}?cursor={}", encode(&last)))
}

pub async fn users(
    State(state): State<AppState>,
    who: Signed,
    Query(q): Query<PageQuery>,
) -> Result<Response, Failure> {
    let actor = who.actor();
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let users = state.admin.users(&actor, &page).await?;
    let chrome = Chrome::new(&state, &who, None, "admin")
        .await?
        .with_notice(notice(q.done.as_deref()));
    let now = state.clock.now();
    let full = users.len() as u32 >= page.limit;
    let last = users.last().map(|u| u.id.to_string());
    let mut views = Vec::with_capacity(users.len());
    for u in users {
        let locked = state.admin.locked_until(&actor, &u).await?;
        views.push(UserView {
            id: u.id.to_string(),
            locked_until: When::opt(locked, now),
            created: When::new(u.created_at, now),
            email: u.email,
            name: u.name,
            superuser: u.superuser,
            mfa_enabled: u.mfa_enabled,
        });
    }
    render(&UsersPage {
        chrome,
        users: views,
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next: next_link("/admin", full, last),
    })
}

pub async fn unlock(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    state.admin.unlock(&posted.who.actor(), &meta, &id).await?;
    Ok(see_other("/admin?done=unlocked"))
}

struct WorkspaceView {
    id: String,
    name: String,
    suspended: bool,
    created: When,
}

#[derive(Template)]
#[template(path = "console/admin_workspaces.html")]
struct WorkspacesPage {
    chrome: Chrome,
    workspaces: Vec<WorkspaceView>,
    first_page: bool,
    next: Option<String>,
}

pub async fn workspaces(
    State(state): State<AppState>,
    who: Signed,
    Query(q): Query<PageQuery>,
) -> Result<Response, Failure> {
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let list = state.admin.workspaces(&who.actor(), &page).await?;
    let chrome = Chrome::new(&state, &who, None, "admin")
        .await?
        .with_notice(notice(q.done.as_deref()));
    let now = state.clock.now();
    let full = list.len() as u32 >= page.limit;
    let last = list.last().map(|w| w.id.to_string());
    render(&WorkspacesPage {
        chrome,
        workspaces: list
            .into_iter()
            .map(|w| WorkspaceView {
                id: w.id.to_string(),
                suspended: w.status == WorkspaceStatus::Suspended,
                created: When::new(w.created_at, now),
                name: w.name,
            })
            .collect(),
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next: next_link("/admin/workspaces", full, last),
    })
}

#[derive(Template)]
#[template(path = "console/admin_suspend.html")]
struct SuspendPage {
    chrome: Chrome,
    id: String,
    name: String,
}

/// The confirmation step of a suspend (every key and app of the workspace stops).
pub async fn suspend_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let ws = state.admin.workspace(&who.actor(), &id).await?;
    let chrome = Chrome::new(&state, &who, None, "admin").await?;
    render(&SuspendPage {
        chrome,
        id: ws.id.to_string(),
        name: ws.name,
    })
}

pub async fn suspend(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    state
        .admin
        .set_status(&posted.who.actor(), &meta, &id, WorkspaceStatus::Suspended)
        .await?;
    Ok(see_other("/admin/workspaces?done=suspended"))
}

pub async fn activate(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    state
        .admin
        .set_status(&posted.who.actor(), &meta, &id, WorkspaceStatus::Active)
        .await?;
    Ok(see_other("/admin/workspaces?done=activated"))
}
