//! API keys, as pages: the list (filters and paging), create (scopes from the catalog, the
//! secret shown once), revoke with confirmation, rotate with grace, disable and enable, reveal.
//! Every action is the API's use case (`state.keys`), with its authorization and audit.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use keyrail_core::keys::manage::{KeyPatch, NewKey};
use keyrail_core::model::{ApiKey, KeyFilter, KeyRateLimit};
use keyrail_core::secret::Secret;
use keyrail_core::workspaces::Access;
use serde::Deserialize;

use crate::auth::Meta;
use crate::console::session::{Form, Posted, Signed, see_other};
use crate::console::view::{Chrome, Failure, FieldError, When, can, encode, render, render_status};
use crate::console::view::{DoneQuery, open_workspace};
use crate::error::ApiError;
use crate::routes::common::ListParams;
use crate::routes::keys::status_filter;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/w/{ws}/keys", get(list).post(create))
        .route("/w/{ws}/keys/new", get(new_form))
        .route("/w/{ws}/keys/{id}", get(detail))
        .route("/w/{ws}/keys/{id}/revoke", get(revoke_confirm).post(revoke))
        .route("/w/{ws}/keys/{id}/rotate", post(rotate))
        .route("/w/{ws}/keys/{id}/enabled", post(set_enabled))
        .route("/w/{ws}/keys/{id}/reveal", post(reveal))
}

/// A key as a row or a detail page shows it.
struct KeyView {
    id: String,
    name: String,
    prefix: String,
    status: &'static str,
    scopes: Vec<String>,
    created: When,
    last_used: Option<When>,
    expires: Option<When>,
    revoked: Option<When>,
    rate_limit: Option<KeyRateLimit>,
    remaining: Option<i64>,
    external_id: Option<String>,
    recoverable: bool,
    replaced_by: Option<String>,
}

impl KeyView {
    fn new(k: ApiKey, state: &AppState) -> Self {
        let now = state.clock.now();
        Self {
            status: k.status(now).as_str(),
            id: k.id.to_string(),
            created: When::new(k.created_at, now),
            last_used: When::opt(k.last_used_at, now),
            expires: When::opt(k.expires_at, now),
            revoked: When::opt(k.revoked_at, now),
            recoverable: k.sealed_key.is_some(),
            replaced_by: k.replaced_by.map(|r| r.to_string()),
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            rate_limit: k.rate_limit,
            remaining: k.remaining,
            external_id: k.external_id,
        }
    }

    fn live(&self) -> bool {
        matches!(self.status, "active" | "disabled")
    }
}

/// What the signed-in person may do with keys here (controls they may not use are not shown).
struct KeyRights {
    write: bool,
    delete: bool,
    reveal: bool,
}

impl KeyRights {
    fn of(access: &Access) -> Self {
        Self {
            write: can(access, &["keys:write"]),
            delete: can(access, &["keys:delete"]),
            reveal: can(access, &["keys:reveal"]),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    status: Option<String>,
    external_id: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyView>,
    rights: KeyRights,
    status: String,
    external_id: String,
    /// The link to the next page, with the filters kept.
    next: Option<String>,
    first_page: bool,
}

impl KeysPage {
    fn is_status(&self, s: &str) -> bool {
        self.status == s
    }
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &who, &ws, q.done.as_deref()).await?;
    let status_name = q.status.as_deref().filter(|s| !s.is_empty());
    let external_id = q.external_id.as_deref().filter(|s| !s.is_empty());
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let filter = KeyFilter {
        status: status_filter(status_name)?,
        external_id: external_id.map(str::to_owned),
    };
    let keys = state.keys.list(&access, &filter, &page).await?;
    let next = page.next_cursor(&keys, |k| k.id.to_string()).map(|last| {
        let mut link = format!("{}?cursor={last}", chrome.ws_path("keys"));
        if let Some(s) = status_name {
            link.push_str(&format!("&status={}", encode(s)));
        }
        if let Some(e) = external_id {
            link.push_str(&format!("&external_id={}", encode(e)));
        }
        link
    });
    render(&KeysPage {
        rights: KeyRights::of(&access),
        keys: keys.into_iter().map(|k| KeyView::new(k, &state)).collect(),
        status: status_name.unwrap_or_default().to_owned(),
        external_id: external_id.unwrap_or_default().to_owned(),
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next,
        chrome,
    })
}

/// A scope the person may put on a key or a role (only the ones they hold: no escalation).
pub(crate) struct ScopeChoice {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) dangerous: bool,
    pub(crate) checked: bool,
}

/// The values of the create form, kept when it is shown again with an error.
#[derive(Default)]
struct NewKeyValues {
    name: String,
    scopes: Vec<String>,
    expires_in_days: String,
    rate_limit: String,
    rate_window: String,
    remaining: String,
    external_id: String,
    recoverable: bool,
}

#[derive(Template)]
#[template(path = "console/key_new.html")]
struct NewKeyPage {
    chrome: Chrome,
    scopes: Vec<ScopeChoice>,
    v: NewKeyValues,
    error: FieldError,
}

pub(crate) fn scope_choices(access: &Access, checked: &[String]) -> Vec<ScopeChoice> {
    access
        .catalog
        .entries()
        .iter()
        .filter(|e| can(access, &[e.name.as_str()]))
        .map(|e| ScopeChoice {
            checked: checked.contains(&e.name),
            name: e.name.clone(),
            description: e.description.clone(),
            dangerous: e.dangerous,
        })
        .collect()
}

pub async fn new_form(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &who, &ws, None).await?;
    // The form of a use case the person may not use is not shown.
    access.require(&["keys:write"])?;
    render(&NewKeyPage {
        scopes: scope_choices(&access, &[]),
        chrome,
        v: NewKeyValues {
            rate_window: "60".to_owned(),
            ..NewKeyValues::default()
        },
        error: FieldError::default(),
    })
}

/// The create form's fields as the API's `NewKey`.
fn new_key(form: &Form) -> Result<NewKey, ApiError> {
    let limit: Option<u32> = form.number("rate_limit", "rate_limit.limit")?;
    let window: Option<u32> = form.number("rate_window", "rate_limit.window_seconds")?;
    let rate_limit = match (limit, window) {
        (None, _) => None,
        (Some(limit), window) => Some(KeyRateLimit {
            limit,
            window_seconds: window.unwrap_or(60),
        }),
    };
    Ok(NewKey {
        name: form.raw("name").unwrap_or_default().to_owned(),
        scopes: form.all("scopes"),
        expires_in_days: form.number("expires_in_days", "expires_in_days")?,
        rate_limit,
        remaining: form.number("remaining", "remaining")?,
        meta: None,
        external_id: form.text("external_id").map(str::to_owned),
        recoverable: form.checked("recoverable"),
    })
}

/// A page that shows a key's secret, this once.
#[derive(Template)]
#[template(path = "console/key_secret.html")]
struct SecretPage {
    chrome: Chrome,
    key: KeyView,
    secret: Secret,
    /// What happened: `created`, `rotated` or `revealed`.
    what: &'static str,
    grace_seconds: u32,
}

impl SecretPage {
    fn secret(&self) -> &str {
        self.secret.expose()
    }
}

pub async fn create(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &posted.who, &ws, None).await?;
    let form = &posted.form;
    let created = match new_key(form) {
        Ok(new) => state
            .keys
            .create(&access, &meta, new)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match created {
        Ok((key, secret)) => render(&SecretPage {
            chrome,
            key: KeyView::new(key, &state),
            secret,
            what: "created",
            grace_seconds: 0,
        }),
        Err(e) => {
            let (status, error) = FieldError::of(e)?;
            let v = NewKeyValues {
                name: form.raw("name").unwrap_or_default().to_owned(),
                scopes: form.all("scopes"),
                expires_in_days: form.raw("expires_in_days").unwrap_or_default().to_owned(),
                rate_limit: form.raw("rate_limit").unwrap_or_default().to_owned(),
                rate_window: form.raw("rate_window").unwrap_or_default().to_owned(),
                remaining: form.raw("remaining").unwrap_or_default().to_owned(),
                external_id: form.raw("external_id").unwrap_or_default().to_owned(),
                recoverable: form.checked("recoverable"),
            };
            render_status(
                status,
                &NewKeyPage {
                    scopes: scope_choices(&access, &v.scopes),
                    chrome,
                    v,
                    error,
                },
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/key.html")]
struct KeyPage {
    chrome: Chrome,
    key: KeyView,
    rights: KeyRights,
}

pub async fn detail(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &who, &ws, q.done.as_deref()).await?;
    let key = state.keys.get(&access, &id).await?;
    render(&KeyPage {
        chrome,
        key: KeyView::new(key, &state),
        rights: KeyRights::of(&access),
    })
}

#[derive(Template)]
#[template(path = "console/key_revoke.html")]
struct RevokePage {
    chrome: Chrome,
    key: KeyView,
}

/// The confirmation step of a revoke (a revoke cannot be undone).
pub async fn revoke_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &who, &ws, None).await?;
    access.require(&["keys:delete"])?;
    let key = state.keys.get(&access, &id).await?;
    render(&RevokePage {
        chrome,
        key: KeyView::new(key, &state),
    })
}

pub async fn revoke(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let access = state.workspaces.access(&posted.who.actor(), &ws).await?;
    state.keys.revoke(&access, &meta, &id).await?;
    Ok(see_other(&format!("/w/{ws}/keys?done=revoked")))
}

pub async fn rotate(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &posted.who, &ws, None).await?;
    let grace: u32 = posted
        .form
        .number("grace_seconds", "grace_seconds")?
        .unwrap_or(0);
    let (key, secret) = state.keys.rotate(&access, &meta, &id, grace).await?;
    render(&SecretPage {
        chrome,
        key: KeyView::new(key, &state),
        secret,
        what: "rotated",
        grace_seconds: grace,
    })
}

pub async fn set_enabled(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let access = state.workspaces.access(&posted.who.actor(), &ws).await?;
    let enabled = posted.form.raw("enabled") == Some("true");
    state
        .keys
        .update(
            &access,
            &meta,
            &id,
            KeyPatch {
                enabled: Some(enabled),
                ..KeyPatch::default()
            },
        )
        .await?;
    let done = if enabled { "enabled" } else { "disabled" };
    Ok(see_other(&format!("/w/{ws}/keys/{id}?done={done}")))
}

pub async fn reveal(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, id)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "keys", &posted.who, &ws, None).await?;
    let secret = state.keys.reveal(&access, &meta, &id).await?;
    let key = state.keys.get(&access, &id).await?;
    render(&SecretPage {
        chrome,
        key: KeyView::new(key, &state),
        secret,
        what: "revealed",
        grace_seconds: 0,
    })
}
