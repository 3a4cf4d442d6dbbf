//! Apps in a workspace, as pages: the grants (paged), "Grant an app" (scopes from the catalog,
//! only those the person holds; `shared` only for who may make one) and revoking a grant with
//! confirmation. Every action is the API's use case (`state.apps`), with its authorization and
//! audit. The developer side (builder profiles, the person's own apps) is [`super::builder`].

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use keyrail_core::apps;
use keyrail_core::model::{GrantView, Page};
use keyrail_core::workspaces::Access;
use serde::Deserialize;

use crate::auth::Meta;
use crate::console::keys::{ScopeChoice, scope_choices};
use crate::console::session::{Posted, Signed, see_other};
use crate::console::view::open_workspace;
use crate::console::view::{Chrome, Failure, FieldError, When, can, encode, render, render_status};
use crate::error::ApiError;
use crate::routes::common::ListParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/w/{ws}/apps", get(list).post(grant))
        .route("/w/{ws}/apps/grant", get(grant_form))
        .route(
            "/w/{ws}/apps/grants/{id}/revoke",
            get(revoke_confirm).post(revoke),
        )
}

/// A grant as a row shows it.
struct GrantRow {
    id: String,
    app_name: String,
    client_id: String,
    scopes: Vec<String>,
    shared: bool,
    /// Who granted it: "you", a member's name, or their member id.
    granted_by: String,
    created: When,
    /// Whether the person may revoke it (the use case decides anyway).
    revocable: bool,
}

/// Names of the workspace's members by member id, when the person may see members (one page of
/// the largest size; anyone beyond it is shown by id).
async fn member_names(state: &AppState, access: &Access) -> HashMap<String, String> {
    if !can(access, &["members:read"]) {
        return HashMap::new();
    }
    state
        .workspaces
        .members(access, &Page::first(Page::MAX_LIMIT))
        .await
        .map(|ms| {
            ms.into_iter()
                .map(|m| (m.member.id.to_string(), m.name))
                .collect()
        })
        .unwrap_or_default()
}

fn rows(
    grants: Vec<GrantView>,
    access: &Access,
    names: &HashMap<String, String>,
    state: &AppState,
) -> Vec<GrantRow> {
    let now = state.clock.now();
    let me = access.member.as_ref().map(|m| m.id.to_string());
    grants
        .into_iter()
        .map(|v| {
            let g = v.grant;
            let member = g.member_id.to_string();
            let own = me.as_deref() == Some(member.as_str());
            let revocable = apps::may_revoke(access, &g);
            GrantRow {
                id: g.id.to_string(),
                app_name: v.app_name,
                client_id: g.client_id,
                revocable,
                granted_by: if own {
                    "you".to_owned()
                } else {
                    names.get(&member).cloned().unwrap_or(member)
                },
                scopes: g.scopes,
                shared: g.shared,
                created: When::new(g.created_at, now),
            }
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/apps_grants.html")]
struct GrantsPage {
    chrome: Chrome,
    grants: Vec<GrantRow>,
    /// With `apps:read` the list is the workspace's; otherwise the person's own grants.
    all: bool,
    next: Option<String>,
    first_page: bool,
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "apps", &who, &ws, q.done.as_deref()).await?;
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let grants = state.apps.list_grants(&access, None, &page).await?;
    let next = page
        .next_cursor(&grants, |g| g.grant.id.to_string())
        .map(|last| format!("{}?cursor={}", chrome.ws_path("apps"), encode(&last)));
    let names = member_names(&state, &access).await;
    render(&GrantsPage {
        all: can(&access, &["apps:read"]),
        grants: rows(grants, &access, &names, &state),
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next,
        chrome,
    })
}

#[derive(Template)]
#[template(path = "console/apps_grant.html")]
struct GrantFormPage {
    chrome: Chrome,
    scopes: Vec<ScopeChoice>,
    client_id: String,
    shared: bool,
    /// Whether the person may make shared grants.
    may_share: bool,
    error: FieldError,
}

#[derive(Deserialize, Default)]
pub struct GrantQuery {
    client_id: Option<String>,
}

pub async fn grant_form(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<GrantQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "apps", &who, &ws, None).await?;
    render(&GrantFormPage {
        scopes: scope_choices(&access, &[]),
        client_id: q.client_id.unwrap_or_default(),
        shared: false,
        may_share: apps::may_share(&access),
        chrome,
        error: FieldError::default(),
    })
}

pub async fn grant(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "apps", &posted.who, &ws, None).await?;
    let form = &posted.form;
    let client_id = form.text("client_id").unwrap_or_default().to_owned();
    let scopes = form.all("scopes");
    let shared = form.checked("shared");
    match state
        .apps
        .create_grant(&access, &meta, &client_id, &scopes, shared)
        .await
    {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/apps?done=granted"))),
        Err(e) => {
            // An unknown app is the person's to fix (a mistyped client id): the form again, with
            // the API's 404 and message next to the field. The workspace was found above, so the
            // only 404 left is the app's.
            let e = ApiError::from(e);
            let (status, error) = if e.status == axum::http::StatusCode::NOT_FOUND {
                (
                    e.status,
                    FieldError {
                        field: "client_id".to_owned(),
                        message: e.message.into_owned(),
                    },
                )
            } else {
                FieldError::of(e)?
            };
            render_status(
                status,
                &GrantFormPage {
                    scopes: scope_choices(&access, &scopes),
                    client_id,
                    shared,
                    may_share: apps::may_share(&access),
                    chrome,
                    error,
                },
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/apps_grant_revoke.html")]
struct RevokePage {
    chrome: Chrome,
    id: String,
    /// The grant as listed, when the person can see it in the list of its app's grants.
    grant: Option<GrantRow>,
}

/// The confirmation step of a revoke. `?client_id=` (the row's link carries it) finds the grant
/// among its app's grants to name it; the revoke itself decides who may.
pub async fn revoke_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
    Query(q): Query<GrantQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "apps", &who, &ws, None).await?;
    let grant = match q.client_id.filter(|c| !c.is_empty()) {
        Some(client_id) => {
            let found = state
                .apps
                .list_grants(&access, Some(client_id), &Page::first(Page::MAX_LIMIT))
                .await?
                .into_iter()
                .filter(|g| g.grant.id.to_string() == id)
                .collect::<Vec<_>>();
            let names = member_names(&state, &access).await;
            rows(found, &access, &names, &state).pop()
        }
        None => None,
    };
    render(&RevokePage { chrome, id, grant })
}

pub async fn revoke(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let access = state.workspaces.access(&posted.who.actor(), &ws).await?;
    state.apps.revoke_grant(&access, &meta, &id).await?;
    Ok(see_other(&format!("/w/{ws}/apps?done=grant_revoked")))
}
