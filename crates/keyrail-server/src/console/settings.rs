//! A workspace's settings, as pages: its name, the shape of its API keys, its own scopes
//! (list, create, delete with confirmation) and deleting the workspace. Every action is the
//! API's use case (`state.workspaces`), with its authorization, validation and audit.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use keyrail_core::model::{Alphabet, KeyFormat};
use keyrail_core::workspaces::Access;

use crate::auth::Meta;
use crate::console::session::{Form, Posted, Signed, see_other};
use crate::console::view::{Chrome, Failure, FieldError, can, render, render_status};
use crate::console::view::{DoneQuery, open_workspace};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/w/{ws}/settings", get(settings))
        .route("/w/{ws}/settings/name", post(rename))
        .route("/w/{ws}/settings/key-format", post(key_format))
        .route("/w/{ws}/scopes", get(scopes).post(create_scope))
        .route(
            "/w/{ws}/scopes/{name}/delete",
            get(delete_scope_confirm).post(delete_scope),
        )
        .route("/w/{ws}/delete", get(delete_confirm).post(delete))
}

/// The key-format form's values.
struct FormatValues {
    prefix: String,
    alphabet: String,
    length: String,
    checksum: bool,
}

impl FormatValues {
    fn of(f: &KeyFormat) -> Self {
        Self {
            prefix: f.prefix.clone(),
            alphabet: alphabet_name(f.alphabet).to_owned(),
            length: f.length.to_string(),
            checksum: f.checksum,
        }
    }

    fn from_form(form: &Form) -> Self {
        Self {
            prefix: form.raw("prefix").unwrap_or_default().to_owned(),
            alphabet: form.raw("alphabet").unwrap_or_default().to_owned(),
            length: form.raw("length").unwrap_or_default().to_owned(),
            checksum: form.checked("checksum"),
        }
    }
}

fn alphabet_name(a: Alphabet) -> &'static str {
    match a {
        Alphabet::Base62 => "base62",
        Alphabet::Hex => "hex",
        Alphabet::Base36 => "base36",
    }
}

/// The form's fields as the API's `KeyFormat` (the use case validates it).
fn key_format_of(form: &Form) -> Result<KeyFormat, ApiError> {
    let alphabet = match form.text("alphabet") {
        Some("base62") => Alphabet::Base62,
        Some("hex") => Alphabet::Hex,
        Some("base36") => Alphabet::Base36,
        _ => {
            return Err(ApiError::invalid(
                "key_format.alphabet".to_owned(),
                "key_format.alphabet must be base62, hex or base36".to_owned(),
            ));
        }
    };
    let length: u32 = form.number("length", "key_format.length")?.ok_or_else(|| {
        ApiError::invalid(
            "key_format.length".to_owned(),
            "key_format.length must be a whole number".to_owned(),
        )
    })?;
    Ok(KeyFormat {
        prefix: form.text("prefix").unwrap_or_default().to_owned(),
        alphabet,
        length,
        checksum: form.checked("checksum"),
    })
}

/// What a key of the workspace's current format looks like: `prefix_`, one `x` per random
/// character, one `c` per checksum character.
fn key_shape(f: &KeyFormat) -> String {
    let length = usize::try_from(f.length).unwrap_or(0);
    let mut shape = format!("{}_{}", f.prefix, "x".repeat(length));
    if f.checksum {
        shape.push_str("cccccc");
    }
    shape
}

#[derive(Template)]
#[template(path = "console/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    name: String,
    format: FormatValues,
    /// The current format's shape and strength.
    shape: String,
    bits: u32,
    alphabet: &'static str,
    write: bool,
    delete: bool,
    name_error: FieldError,
    format_error: FieldError,
}

impl SettingsPage {
    fn is_alphabet(&self, a: &str) -> bool {
        self.format.alphabet == a
    }
}

fn settings_page(access: &Access, chrome: Chrome) -> SettingsPage {
    let ws = &access.workspace;
    SettingsPage {
        name: ws.name.clone(),
        format: FormatValues::of(&ws.key_format),
        shape: key_shape(&ws.key_format),
        bits: ws.key_format.bits().floor() as u32,
        alphabet: alphabet_name(ws.key_format.alphabet),
        write: can(access, &["workspace:write"]),
        delete: can(access, &["workspace:delete"]),
        name_error: FieldError::default(),
        format_error: FieldError::default(),
        chrome,
    }
}

pub async fn settings(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &who, &ws, q.done.as_deref()).await?;
    state.workspaces.get(&access)?;
    render(&settings_page(&access, chrome))
}

pub async fn rename(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &posted.who, &ws, None).await?;
    let name = posted.form.raw("name").unwrap_or_default();
    match state
        .workspaces
        .update(&access, &meta, Some(name), None)
        .await
    {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/settings?done=updated"))),
        Err(e) => {
            let (status, name_error) = FieldError::of(e.into())?;
            let mut page = settings_page(&access, chrome);
            page.name = name.to_owned();
            page.name_error = name_error;
            render_status(status, &page)
        }
    }
}

pub async fn key_format(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &posted.who, &ws, None).await?;
    let updated = match key_format_of(&posted.form) {
        Ok(format) => state
            .workspaces
            .update(&access, &meta, None, Some(format))
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/settings?done=updated"))),
        Err(e) => {
            let (status, format_error) = FieldError::of(e)?;
            let mut page = settings_page(&access, chrome);
            page.format = FormatValues::from_form(&posted.form);
            page.format_error = format_error;
            render_status(status, &page)
        }
    }
}

// the workspace's own scopes

struct ScopeRow {
    name: String,
    description: String,
    dangerous: bool,
}

#[derive(Template)]
#[template(path = "console/scopes.html")]
struct ScopesPage {
    chrome: Chrome,
    custom: Vec<ScopeRow>,
    name: String,
    description: String,
    dangerous: bool,
    error: FieldError,
}

fn scopes_page(state: &AppState, access: &Access, chrome: Chrome) -> Result<ScopesPage, Failure> {
    let custom = state
        .workspaces
        .scopes(access)?
        .into_iter()
        .filter(|e| !e.builtin)
        .map(|e| ScopeRow {
            name: e.name,
            description: e.description,
            dangerous: e.dangerous,
        })
        .collect();
    Ok(ScopesPage {
        chrome,
        custom,
        name: String::new(),
        description: String::new(),
        dangerous: false,
        error: FieldError::default(),
    })
}

pub async fn scopes(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &who, &ws, q.done.as_deref()).await?;
    render(&scopes_page(&state, &access, chrome)?)
}

pub async fn create_scope(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &posted.who, &ws, None).await?;
    let form = &posted.form;
    let name = form.text("name").unwrap_or_default();
    let description = form.text("description").unwrap_or_default();
    let dangerous = form.checked("dangerous");
    match state
        .workspaces
        .create_scope(&access, &meta, name, description, dangerous)
        .await
    {
        Ok(_) => Ok(see_other(&format!("/w/{ws}/scopes?done=created"))),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            let mut page = scopes_page(&state, &access, chrome)?;
            page.name = name.to_owned();
            page.description = description.to_owned();
            page.dangerous = dangerous;
            page.error = error;
            render_status(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "console/scope_delete.html")]
struct ScopeDeletePage {
    chrome: Chrome,
    name: String,
}

pub async fn delete_scope_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path((ws, name)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &who, &ws, None).await?;
    access.require(&["workspace:write"])?;
    // Built-in scopes and unknown names: the use case's own answer.
    access.catalog.check_deletable(&name)?;
    render(&ScopeDeletePage { chrome, name })
}

pub async fn delete_scope(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path((ws, name)): Path<(String, String)>,
    posted: Posted,
) -> Result<Response, Failure> {
    let access = state.workspaces.access(&posted.who.actor(), &ws).await?;
    state.workspaces.delete_scope(&access, &meta, &name).await?;
    Ok(see_other(&format!("/w/{ws}/scopes?done=deleted")))
}

// deleting the workspace

#[derive(Template)]
#[template(path = "console/workspace_delete.html")]
struct DeletePage {
    chrome: Chrome,
    name: String,
    typed: String,
    error: String,
}

pub async fn delete_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path(ws): Path<String>,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &who, &ws, None).await?;
    access.require(&["workspace:delete"])?;
    render(&DeletePage {
        chrome,
        name: access.workspace.name.clone(),
        typed: String::new(),
        error: String::new(),
    })
}

pub async fn delete(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(ws): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let (access, chrome) = open_workspace(&state, "settings", &posted.who, &ws, None).await?;
    // The typed name is the page's own safeguard against a slip; the use case decides the rest.
    let typed = posted.form.text("confirm_name").unwrap_or_default();
    if typed != access.workspace.name {
        return render_status(
            StatusCode::BAD_REQUEST,
            &DeletePage {
                chrome,
                name: access.workspace.name.clone(),
                typed: typed.to_owned(),
                error: "Type the workspace's name exactly to delete it.".to_owned(),
            },
        );
    }
    state.workspaces.delete(&access, &meta).await?;
    Ok(see_other("/workspaces?done=workspace_deleted"))
}
