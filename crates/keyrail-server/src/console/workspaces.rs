//! The start page and the workspace list (switch and create).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::console::session::{Posted, Signed, see_other};
use axum::extract::Query;

use crate::console::view::{Chrome, DoneQuery, Failure, FieldError, notice, render, render_status};
use crate::state::AppState;

/// `/`: the keys of the person's first workspace, or the workspace list when they have none.
pub async fn home(State(state): State<AppState>, who: Signed) -> Result<Response, Failure> {
    let mine = state.workspaces.list_mine(&who.actor()).await?;
    Ok(match mine.first() {
        Some((ws, _)) => see_other(&format!("/w/{}/keys", ws.id)),
        None => see_other("/workspaces"),
    })
}

#[derive(Template)]
#[template(path = "console/workspaces.html")]
struct WorkspacesPage<'a> {
    chrome: Chrome,
    name: &'a str,
    error: FieldError,
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(q): Query<DoneQuery>,
) -> Result<Response, Failure> {
    let chrome = Chrome::new(&state, &who, None, "workspaces")
        .await?
        .with_notice(notice(q.done.as_deref()));
    render(&WorkspacesPage {
        chrome,
        name: "",
        error: FieldError::default(),
    })
}

pub async fn create(State(state): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    let name = posted.form.raw("name").unwrap_or_default();
    match state.workspaces.create(&posted.who.actor(), name).await {
        Ok(ws) => Ok(see_other(&format!("/w/{}/keys?done=created", ws.id))),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            let chrome = Chrome::new(&state, &posted.who, None, "workspaces").await?;
            render_status(
                status,
                &WorkspacesPage {
                    chrome,
                    name,
                    error,
                },
            )
        }
    }
}
