//! The workspace's audit log as a page: newest first, the API's filters (`action`, `actor_id`,
//! `since`, `until`, parsed by the API's own [`AuditParams::split`]) and paging that keeps them.
//! Reading it needs `audit:read`, checked by the use case (`state.workspaces.audit_log`).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use keyrail_core::model::AuditEntry;
use serde::Deserialize;

use crate::console::session::Signed;
use crate::console::view::{Chrome, Failure, FieldError, When, encode, render, render_status};
use crate::routes::common::AuditParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/w/{ws}/audit", get(list))
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    actor_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Page size, as the API takes it (not in the form; kept by the paging links).
    limit: Option<String>,
    cursor: Option<String>,
}

/// A filter field as the form sends it: blank is no filter.
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// One entry as a row shows it.
struct EntryView {
    at: When,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    outcome: String,
}

impl EntryView {
    fn new(e: AuditEntry, now: keyrail_core::Timestamp) -> Self {
        Self {
            at: When::new(e.at, now),
            actor_type: e.actor_type.as_str().to_owned(),
            actor_id: e.actor_id,
            action: e.action,
            target: e.target,
            ip: e.ip,
            user_agent: e.user_agent,
            outcome: e.outcome,
        }
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<EntryView>,
    action: String,
    actor_id: String,
    since: String,
    until: String,
    filtered: bool,
    first_page: bool,
    /// The first page with the filters kept.
    first: String,
    next: Option<String>,
    error: FieldError,
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Failure> {
    let access = state.workspaces.access(&who.actor(), &ws).await?;
    let chrome = Chrome::new(&state, &who, Some(&access), "audit").await?;
    // The filters the form kept: blank fields are no filter.
    let params = AuditParams {
        action: given(&q.action),
        actor_id: given(&q.actor_id),
        since: given(&q.since),
        until: given(&q.until),
        limit: given(&q.limit),
        cursor: q.cursor.clone(),
    };
    let kept = [
        ("action", params.action.clone()),
        ("actor_id", params.actor_id.clone()),
        ("since", params.since.clone()),
        ("until", params.until.clone()),
        ("limit", params.limit.clone()),
    ];
    let value = |i: usize| kept[i].1.clone().unwrap_or_default();
    let filtered = kept[..4].iter().any(|(_, v)| v.is_some());
    let first_page = q.cursor.as_deref().is_none_or(str::is_empty);
    let filters: String = kept
        .iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("&{name}={}", encode(v))))
        .collect();
    let first = match filters.strip_prefix('&') {
        Some(f) => format!("/w/{ws}/audit?{f}"),
        None => format!("/w/{ws}/audit"),
    };
    let mut page_out = AuditPage {
        action: value(0),
        actor_id: value(1),
        since: value(2),
        until: value(3),
        filtered,
        first_page,
        first,
        entries: Vec::new(),
        next: None,
        error: FieldError::default(),
        chrome,
    };
    // The API's parsing of the same filters, with its messages.
    let (filter, page) = match params.split() {
        Ok(split) => split,
        Err(e) => {
            // Authorization first: a person without audit:read sees 403, not a filter error.
            access.require(&["audit:read"])?;
            let (status, error) = FieldError::of(e)?;
            page_out.error = error;
            return render_status(status, &page_out);
        }
    };
    let entries = state.workspaces.audit_log(&access, filter, &page).await?;
    page_out.next = page
        .next_cursor(&entries, |e| e.id.to_string())
        .map(|last| format!("/w/{ws}/audit?cursor={}{filters}", encode(&last)));
    let now = state.clock.now();
    page_out.entries = entries
        .into_iter()
        .map(|e| EntryView::new(e, now))
        .collect();
    render(&page_out)
}
