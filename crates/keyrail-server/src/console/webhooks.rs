//! Webhooks of a workspace, as pages: the endpoints (add with the events the API accepts,
//! delete with confirmation), an endpoint's delivery attempts (paged), and the signing secret
//! shown on a page rendered from a POST. Every action is the API's use case (`state.webhooks`).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use keyrail_core::events::EVENT_TYPES;
use keyrail_core::secret::Secret;
use keyrail_core::webhooks::{DeliveryAttempt, WebhookEndpoint};
use keyrail_core::workspaces::Access;
use serde::Deserialize;

use crate::auth::Meta;
use crate::console::session::{Posted, Signed, see_other};
use crate::console::view::open_workspace;
use crate::console::view::{Chrome, Failure, FieldError, When, can, encode, render, render_status};
use crate::error::ApiError;
use crate::routes::common::ListParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/w/{ws}/webhooks", get(list).post(create))
        .route("/w/{ws}/webhooks/secret", post(show_secret))
        .route("/w/{ws}/webhooks/{id}", get(detail))
        .route(
            "/w/{ws}/webhooks/{id}/delete",
            get(delete_confirm).post(delete),
        )
}

struct EndpointView {
    id: String,
    url: String,
    events: Vec<String>,
    created: When,
    disabled: Option<When>,
}

impl EndpointView {
    fn new(e: WebhookEndpoint, state: &AppState) -> Self {
        let now = state.clock.now();
        Self {
            id: e.id.to_string(),
            url: e.url,
            events: e.events,
            created: When::new(e.created_at, now),
            disabled: When::opt(e.disabled_at, now),
        }
    }
}

/// An event type on the add form.
struct EventChoice {
    name: &'static str,
    checked: bool,
}

fn event_choices(checked: &[String]) -> Vec<EventChoice> {
    EVENT_TYPES
        .iter()
        .map(|&name| EventChoice {
            name,
            checked: checked.iter().any(|c| c == name),
        })
        .collect()
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    endpoints: Vec<EndpointView>,
    next: Option<String>,
    first_page: bool,
    /// `webhooks:write`: add and delete.
    write: bool,
    url: String,
    events: Vec<EventChoice>,
    error: FieldError,
}

async fn page(
    state: &AppState,
    access: &Access,
    chrome: Chrome,
    cursor: Option<String>,
    url: String,
    checked: &[String],
    error: FieldError,
) -> Result<WebhooksPage, Failure> {
    let page = ListParams {
        limit: None,
        cursor: cursor.clone(),
    }
    .page()?;
    let list = state.webhooks.list(access, &page).await?;
    let next = page
        .next_cursor(&list, |e| e.id.to_string())
        .map(|last| format!("{}?cursor={}", chrome.ws_path("webhooks"), encode(&last)));
    Ok(WebhooksPage {
        endpoints: list
            .into_iter()
            .map(|e| EndpointView::new(e, state))
            .collect(),
        next,
        first_page: cursor.as_deref().is_none_or(str::is_empty),
        write: can(access, &["webhooks:write"]),
        url,
        events: event_choices(checked),
        error,
        chrome,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "webhooks", &who, &ws, q.done.as_deref()).await?;
    let p = page(
        &state,
        &access,
        chrome,
        q.cursor,
        String::new(),
        &[],
        FieldError::default(),
    )
    .await?;
    render(&p)
}

pub async fn create(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "webhooks", &posted.who, &ws, None).await?;
    let url = posted.form.text("url").unwrap_or_default().to_owned();
    let events = posted.form.all("events");
    match state.webhooks.create(&access, &meta, &url, &events).await {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/webhooks?done=created"))),
        Err(e) => {
            let (status, error) = FieldError::of(ApiError::from(e))?;
            let p = page(&state, &access, chrome, None, url, &events, error).await?;
            render_status(status, &p)
        }
    }
}

#[derive(Template)]
#[template(path = "console/webhooks_secret.html")]
struct SecretPage {
    chrome: Chrome,
    secret: Secret,
}

impl SecretPage {
    fn secret(&self) -> &str {
        self.secret.expose()
    }
}

/// The signing secret, on the page this POST renders (never in a URL or after a redirect).
pub async fn show_secret(
    State(state): State<AppState>,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "webhooks", &posted.who, &ws, None).await?;
    let secret = state.webhooks.secret(&access).await?;
    render(&SecretPage { chrome, secret })
}

struct DeliveryView {
    event_type: String,
    attempt: u32,
    status_code: Option<u16>,
    ok: bool,
    error: Option<String>,
    at: When,
    next_attempt: Option<When>,
}

impl DeliveryView {
    fn new(d: DeliveryAttempt, state: &AppState) -> Self {
        let now = state.clock.now();
        Self {
            event_type: d.event_type,
            attempt: d.attempt,
            status_code: d.status_code,
            ok: d.ok,
            error: d.error,
            at: When::new(d.at, now),
            next_attempt: When::opt(d.next_attempt_at, now),
        }
    }
}

#[derive(Template)]
#[template(path = "console/webhook.html")]
struct EndpointPage {
    chrome: Chrome,
    endpoint: EndpointView,
    deliveries: Vec<DeliveryView>,
    write: bool,
    next: Option<String>,
    first_page: bool,
}

pub async fn detail(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "webhooks", &who, &ws, q.done.as_deref()).await?;
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let deliveries = state.webhooks.deliveries(&access, &id, &page).await?;
    let endpoint = state.webhooks.get(&access, &id).await?;
    let next = page
        .next_cursor(&deliveries, |d| d.id.to_string())
        .map(|last| {
            format!(
                "{}?cursor={}",
                chrome.ws_path(&format!("webhooks/{id}")),
                encode(&last)
            )
        });
    render(&EndpointPage {
        endpoint: EndpointView::new(endpoint, &state),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView::new(d, &state))
            .collect(),
        write: can(&access, &["webhooks:write"]),
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next,
        chrome,
    })
}

#[derive(Template)]
#[template(path = "console/webhook_delete.html")]
struct DeletePage {
    chrome: Chrome,
    endpoint: EndpointView,
}

pub async fn delete_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "webhooks", &who, &ws, None).await?;
    access.require(&["webhooks:write"])?;
    let endpoint = state.webhooks.get(&access, &id).await?;
    render(&DeletePage {
        chrome,
        endpoint: EndpointView::new(endpoint, &state),
    })
}

pub async fn delete(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let access = state.workspaces.access(&posted.who.actor(), &ws).await?;
    state.webhooks.delete(&access, &meta, &id).await?;
    Ok(see_other(&format!("/w/{ws}/webhooks?done=deleted")))
}
