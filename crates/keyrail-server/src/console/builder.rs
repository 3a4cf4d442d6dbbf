//! The developer side of apps, as pages (`/apps`): builder profiles, the person's apps (create
//! with the client secret shown once, edit, deactivate, a new secret with confirmation, delete
//! with confirmation). Every action is the API's use case (`state.apps`), with its audit.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use keyrail_core::apps::{AppPatch, NewApp};
use keyrail_core::model::{App, BuilderProfile, Page};
use keyrail_core::secret::Secret;
use serde::Deserialize;

use crate::auth::Meta;
use crate::console::session::{Form, Posted, Signed, see_other};
use crate::console::view::DoneQuery;
use crate::console::view::{
    Chrome, Failure, FieldError, When, encode, notice, render, render_status,
};
use crate::routes::common::ListParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/new", get(new_form))
        .route("/apps/profiles", get(profiles).post(create_profile))
        .route("/apps/{client_id}", get(detail).post(update))
        .route("/apps/{client_id}/active", post(set_active))
        .route(
            "/apps/{client_id}/secret",
            get(secret_confirm).post(new_secret),
        )
        .route("/apps/{client_id}/delete", get(delete_confirm).post(delete))
}

async fn chrome(state: &AppState, who: &Signed, done: Option<&str>) -> Result<Chrome, Failure> {
    Ok(Chrome::new(state, who, None, "developer")
        .await?
        .with_notice(notice(done)))
}

/// The person's builder profiles (one page of the largest size: the choices of a select).
async fn my_profiles(state: &AppState, who: &Signed) -> Result<Vec<BuilderProfile>, Failure> {
    Ok(state
        .apps
        .list_profiles(&who.actor(), &Page::first(Page::MAX_LIMIT))
        .await?)
}

/// An app as the pages show it (never its secret).
struct AppView {
    client_id: String,
    name: String,
    description: String,
    profile: String,
    /// `None`: any workspace.
    restrictions: Option<Vec<String>>,
    active: bool,
    created: When,
    updated: When,
}

impl AppView {
    fn new(a: App, profiles: &[BuilderProfile], state: &AppState) -> Self {
        let now = state.clock.now();
        let profile = profiles
            .iter()
            .find(|p| Some(&p.id) == a.builder_profile_id.as_ref())
            .map_or_else(
                || {
                    a.builder_profile_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                },
                |p| p.name.clone(),
            );
        Self {
            client_id: a.client_id,
            name: a.name,
            description: a.description,
            profile,
            restrictions: a
                .workspace_restrictions
                .map(|ids| ids.iter().map(ToString::to_string).collect()),
            active: a.active,
            created: When::new(a.created_at, now),
            updated: When::new(a.updated_at, now),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/apps_mine.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppView>,
    has_profile: bool,
    next: Option<String>,
    first_page: bool,
}

pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let chrome = chrome(&state, &who, q.done.as_deref()).await?;
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let apps = state.apps.list_apps(&who.actor(), &page).await?;
    let next = page
        .next_cursor(&apps, |a| a.client_id.clone())
        .map(|last| format!("/apps?cursor={}", encode(&last)));
    let profiles = my_profiles(&state, &who).await?;
    render(&AppsPage {
        apps: apps
            .into_iter()
            .map(|a| AppView::new(a, &profiles, &state))
            .collect(),
        has_profile: !profiles.is_empty(),
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next,
        chrome,
    })
}

// ---- builder profiles

struct ProfileRow {
    name: String,
    website: Option<String>,
    created: When,
}

#[derive(Template)]
#[template(path = "console/apps_profiles.html")]
struct ProfilesPage {
    chrome: Chrome,
    profiles: Vec<ProfileRow>,
    next: Option<String>,
    first_page: bool,
    name: String,
    website: String,
    error: FieldError,
}

async fn profiles_page(
    state: &AppState,
    who: &Signed,
    q: &ListQuery,
    name: String,
    website: String,
    error: FieldError,
) -> Result<ProfilesPage, Failure> {
    let chrome = chrome(state, who, q.done.as_deref()).await?;
    let page = ListParams {
        limit: None,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let list = state.apps.list_profiles(&who.actor(), &page).await?;
    let next = page
        .next_cursor(&list, |p| p.id.to_string())
        .map(|last| format!("/apps/profiles?cursor={}", encode(&last)));
    let now = state.clock.now();
    Ok(ProfilesPage {
        profiles: list
            .into_iter()
            .map(|p| ProfileRow {
                name: p.name,
                website: p.website,
                created: When::new(p.created_at, now),
            })
            .collect(),
        first_page: q.cursor.as_deref().is_none_or(str::is_empty),
        next,
        chrome,
        name,
        website,
        error,
    })
}

pub async fn profiles(
    State(state): State<AppState>,
    who: Signed,
    Query(q): Query<ListQuery>,
) -> Result<Response, Failure> {
    let page = profiles_page(
        &state,
        &who,
        &q,
        String::new(),
        String::new(),
        FieldError::default(),
    )
    .await?;
    render(&page)
}

pub async fn create_profile(
    State(state): State<AppState>,
    posted: Posted,
) -> Result<Response, Failure> {
    let form = &posted.form;
    let name = form.raw("name").unwrap_or_default().to_owned();
    let website = form.text("website").map(str::to_owned);
    match state
        .apps
        .create_profile(&posted.who.actor(), &name, website.as_deref())
        .await
    {
        Ok(_) => Ok(see_other("/apps/profiles?done=created")),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            let page = profiles_page(
                &state,
                &posted.who,
                &ListQuery::default(),
                name,
                website.unwrap_or_default(),
                error,
            )
            .await?;
            render_status(status, &page)
        }
    }
}

// ---- create and edit

/// The values of the app form, kept when it is shown again with an error.
#[derive(Default)]
struct AppValues {
    name: String,
    description: String,
    profile_id: String,
    /// Restricted to the workspaces below (else any workspace).
    only: bool,
    /// Ticked workspaces among the person's own.
    workspaces: Vec<String>,
    /// Other workspace ids, separated by commas or spaces.
    other: String,
}

impl AppValues {
    fn of(form: &Form) -> Self {
        Self {
            name: form.raw("name").unwrap_or_default().to_owned(),
            description: form.raw("description").unwrap_or_default().to_owned(),
            profile_id: form
                .raw("builder_profile_id")
                .unwrap_or_default()
                .to_owned(),
            only: form.raw("restrict") == Some("only"),
            workspaces: form.all("workspaces"),
            other: form.raw("other_workspaces").unwrap_or_default().to_owned(),
        }
    }

    /// An app's values, its restrictions split into the person's workspaces and the others.
    fn of_app(app: &AppView, chrome: &Chrome) -> Self {
        let ids = app.restrictions.clone().unwrap_or_default();
        let (mine, other): (Vec<String>, Vec<String>) = ids
            .into_iter()
            .partition(|id| chrome.workspaces.iter().any(|w| &w.id == id));
        Self {
            name: app.name.clone(),
            description: app.description.clone(),
            profile_id: String::new(),
            only: app.restrictions.is_some(),
            workspaces: mine,
            other: other.join(", "),
        }
    }

    /// `workspace_restrictions` as the API takes it: `None` for any workspace.
    fn restrictions(&self) -> Option<Vec<String>> {
        self.only.then(|| {
            let mut ids = self.workspaces.clone();
            ids.extend(
                self.other
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            ids
        })
    }

    fn ticked(&self, id: &str) -> bool {
        self.workspaces.iter().any(|w| w == id)
    }
}

struct ProfileChoice {
    id: String,
    name: String,
}

#[derive(Template)]
#[template(path = "console/apps_new.html")]
struct NewAppPage {
    chrome: Chrome,
    profiles: Vec<ProfileChoice>,
    v: AppValues,
    error: FieldError,
}

fn choices(profiles: Vec<BuilderProfile>) -> Vec<ProfileChoice> {
    profiles
        .into_iter()
        .map(|p| ProfileChoice {
            id: p.id.to_string(),
            name: p.name,
        })
        .collect()
}

pub async fn new_form(State(state): State<AppState>, who: Signed) -> Result<Response, Failure> {
    let chrome = chrome(&state, &who, None).await?;
    let profiles = my_profiles(&state, &who).await?;
    if profiles.is_empty() {
        // An app needs a builder profile: make one first.
        return Ok(see_other("/apps/profiles"));
    }
    render(&NewAppPage {
        profiles: choices(profiles),
        chrome,
        v: AppValues::default(),
        error: FieldError::default(),
    })
}

/// A page that shows an app's client secret, this once.
#[derive(Template)]
#[template(path = "console/apps_secret.html")]
struct SecretPage {
    chrome: Chrome,
    app: AppView,
    secret: Secret,
    /// `created` or `regenerated`.
    what: &'static str,
}

impl SecretPage {
    fn secret(&self) -> &str {
        self.secret.expose()
    }
}

pub async fn create(
    State(state): State<AppState>,
    Meta(meta): Meta,
    posted: Posted,
) -> Result<Response, Failure> {
    // Read before the app is made, so that its secret is shown whatever happens after.
    let chrome = chrome(&state, &posted.who, None).await?;
    let profiles = my_profiles(&state, &posted.who).await?;
    let v = AppValues::of(&posted.form);
    let created = state
        .apps
        .create_app(
            &posted.who.actor(),
            &meta,
            NewApp {
                name: v.name.clone(),
                description: Some(v.description.clone()),
                builder_profile_id: v.profile_id.clone(),
                workspace_restrictions: v.restrictions(),
            },
        )
        .await;
    match created {
        Ok((app, secret)) => render(&SecretPage {
            chrome,
            app: AppView::new(app, &profiles, &state),
            secret,
            what: "created",
        }),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            render_status(
                status,
                &NewAppPage {
                    profiles: choices(profiles),
                    chrome,
                    v,
                    error,
                },
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/apps_app.html")]
struct AppPage {
    chrome: Chrome,
    app: AppView,
    v: AppValues,
    error: FieldError,
}

async fn app_view(state: &AppState, who: &Signed, client_id: &str) -> Result<AppView, Failure> {
    let app = state.apps.get_app(&who.actor(), client_id).await?;
    let profiles = my_profiles(state, who).await?;
    Ok(AppView::new(app, &profiles, state))
}

pub async fn detail(
    State(state): State<AppState>,
    who: Signed,
    Path(client_id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, Failure> {
    let chrome = chrome(&state, &who, q.done.as_deref()).await?;
    let app = app_view(&state, &who, &client_id).await?;
    render(&AppPage {
        v: AppValues::of_app(&app, &chrome),
        app,
        chrome,
        error: FieldError::default(),
    })
}

pub async fn update(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let v = AppValues::of(&posted.form);
    let updated = state
        .apps
        .update_app(
            &posted.who.actor(),
            &meta,
            &client_id,
            AppPatch {
                name: Some(v.name.clone()),
                description: Some(v.description.clone()),
                workspace_restrictions: Some(v.restrictions()),
                active: None,
            },
        )
        .await;
    match updated {
        Ok(_) => Ok(see_other(&format!(
            "/apps/{}?done=updated",
            encode(&client_id)
        ))),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            let chrome = chrome(&state, &posted.who, None).await?;
            let app = app_view(&state, &posted.who, &client_id).await?;
            render_status(
                status,
                &AppPage {
                    app,
                    chrome,
                    v,
                    error,
                },
            )
        }
    }
}

pub async fn set_active(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let active = posted.form.raw("active") == Some("true");
    state
        .apps
        .update_app(
            &posted.who.actor(),
            &meta,
            &client_id,
            AppPatch {
                active: Some(active),
                ..AppPatch::default()
            },
        )
        .await?;
    let done = if active {
        "app_activated"
    } else {
        "app_deactivated"
    };
    Ok(see_other(&format!(
        "/apps/{}?done={done}",
        encode(&client_id)
    )))
}

#[derive(Template)]
#[template(path = "console/apps_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    app: AppView,
    /// `secret` or `delete`.
    what: &'static str,
}

/// The confirmation step before a new secret (`secret`) or a delete (`delete`).
async fn confirm(
    state: &AppState,
    who: &Signed,
    client_id: &str,
    what: &'static str,
) -> Result<Response, Failure> {
    let chrome = chrome(state, who, None).await?;
    let app = app_view(state, who, client_id).await?;
    render(&ConfirmPage { chrome, app, what })
}

pub async fn secret_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path(client_id): Path<String>,
) -> Result<Response, Failure> {
    confirm(&state, &who, &client_id, "secret").await
}

pub async fn new_secret(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    // What the page needs is read first: once the secret is rotated, a failure to show it
    // would leave the app with a secret nobody has.
    let chrome = chrome(&state, &posted.who, None).await?;
    let app = app_view(&state, &posted.who, &client_id).await?;
    let secret = state
        .apps
        .rotate_secret(&posted.who.actor(), &meta, &client_id)
        .await?;
    render(&SecretPage {
        chrome,
        app,
        secret,
        what: "regenerated",
    })
}

pub async fn delete_confirm(
    State(state): State<AppState>,
    who: Signed,
    Path(client_id): Path<String>,
) -> Result<Response, Failure> {
    confirm(&state, &who, &client_id, "delete").await
}

pub async fn delete(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Path(client_id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    state
        .apps
        .delete_app(&posted.who.actor(), &meta, &client_id)
        .await?;
    Ok(see_other("/apps?done=deleted"))
}
