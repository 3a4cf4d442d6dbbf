//! What every console page shares: the frame around it (who is signed in, their workspaces,
//! the navigation), failures shown as pages, times, and rendering.

use askama::Template;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use keyrail_core::Timestamp;
use keyrail_core::workspaces::Access;

use crate::console::session::{Signed, see_other};
use crate::error::ApiError;
use crate::state::AppState;

/// A failure on a console page: an HTML page with the API's message (and status), or, for a
/// missing or expired session, the way to the sign-in page.
#[derive(Debug)]
pub struct Failure {
    error: Box<ApiError>,
    /// Where to come back after signing in (a path on this server).
    next: Option<String>,
}

impl Failure {
    pub fn sign_in() -> Self {
        Self {
            error: Box::new(ApiError::for_status(StatusCode::UNAUTHORIZED)),
            next: None,
        }
    }

    /// A 401 sends the browser to sign in and back to the page it asked for.
    pub fn or_sign_in(error: ApiError, parts: &Parts) -> Self {
        let next = (error.status == StatusCode::UNAUTHORIZED && parts.method == "GET")
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten();
        Self {
            error: Box::new(error),
            next,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.error.status
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self {
            error: Box::new(error),
            next: None,
        }
    }
}

impl From<keyrail_core::Error> for Failure {
    fn from(e: keyrail_core::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// Marks a console error response whose HTML body is meant (the server otherwise answers
/// every failure in the API's JSON shape).
#[derive(Debug, Clone, Copy)]
pub struct ErrorPage;

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorHtml<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
    code: &'a str,
    /// The scopes a 403 `insufficient_scope` names (as the API's `required`).
    required: Vec<&'a str>,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.error.status == StatusCode::UNAUTHORIZED {
            let to = match self.next.as_deref().filter(|n| local_path(n)) {
                Some(next) => format!("/login?next={}", encode(next)),
                None => "/login".to_owned(),
            };
            return see_other(&to);
        }
        let status = self.error.status;
        let page = ErrorHtml {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: &self.error.message,
            code: &self.error.code,
            required: self
                .error
                .extra
                .get("required")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default(),
        }
        .render()
        .unwrap_or_default();
        // The API's response for its status, headers and logged detail; the page as its body.
        let (mut parts, _) = self.error.into_response().into_parts();
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        parts.headers.remove(header::WWW_AUTHENTICATE);
        parts.extensions.insert(ErrorPage);
        Response::from_parts(parts, page.into())
    }
}

/// A path on this server (`/...`, not `//host` nor `/\host`), safe to redirect to.
pub fn local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.chars().any(|c| c.is_control())
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Renders a page; `no_store` for a page that shows a secret (every console page is sent with
/// `no-store` anyway: they show a person's private data).
pub fn render<T: Template>(page: &T) -> Result<Response, Failure> {
    match page.render() {
        Ok(html) => Ok(Html(html).into_response()),
        Err(e) => Err(ApiError::internal(format!("template: {e}")).into()),
    }
}

/// [`render`] with a status (a form shown again with its error).
pub fn render_status<T: Template>(status: StatusCode, page: &T) -> Result<Response, Failure> {
    let mut resp = render(page)?;
    *resp.status_mut() = status;
    resp.extensions_mut().insert(ErrorPage);
    Ok(resp)
}

/// A time as pages show it: relative ("3 minutes ago"), with the exact time on hover and in
/// the `datetime` attribute.
#[derive(Debug, Clone)]
pub struct When {
    pub iso: String,
    pub relative: String,
}

impl When {
    pub fn new(t: Timestamp, now: Timestamp) -> Self {
        Self {
            iso: t.to_string(),
            relative: relative(t, now),
        }
    }

    pub fn opt(t: Option<Timestamp>, now: Timestamp) -> Option<Self> {
        t.map(|t| Self::new(t, now))
    }
}

/// "just now", "5 minutes ago", "in 3 days".
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let secs = (t.millis() - now.millis()) / 1000;
    let abs = secs.unsigned_abs();
    let (n, unit) = match abs {
        0..=44 => return "just now".to_owned(),
        45..=5399 => (abs.div_ceil(60).max(1), "minute"),
        5400..=129_599 => ((abs + 1800) / 3600, "hour"),
        129_600..=3_887_999 => ((abs + 43_200) / 86_400, "day"),
        3_888_000..=31_535_999 => ((abs + 1_296_000) / 2_592_000, "month"),
        _ => ((abs + 15_768_000) / 31_536_000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if secs < 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

/// A workspace in the switcher.
#[derive(Debug, Clone)]
pub struct WsLink {
    pub id: String,
    pub name: String,
    pub role: String,
}

/// The current workspace and what the signed-in person may do there (a control they may not
/// use is not shown; the server refuses it anyway).
#[derive(Debug, Clone)]
pub struct Current {
    pub id: String,
    pub name: String,
    pub suspended: bool,
}

/// The frame of every signed-in page.
pub struct Chrome {
    pub user_name: String,
    pub email: String,
    pub superuser: bool,
    pub csrf: String,
    pub workspaces: Vec<WsLink>,
    pub current: Option<Current>,
    /// Which navigation link is the current page (`keys`, `members`, ...).
    pub section: &'static str,
    /// A one-line notice after a redirect (`?done=`), from a fixed list.
    pub notice: Option<&'static str>,
}

impl Chrome {
    pub async fn new(
        state: &AppState,
        who: &Signed,
        access: Option<&Access>,
        section: &'static str,
    ) -> Result<Self, Failure> {
        let workspaces = state
            .workspaces
            .list_mine(&who.actor())
            .await?
            .into_iter()
            .map(|(ws, role)| WsLink {
                id: ws.id.to_string(),
                name: ws.name,
                role,
            })
            .collect();
        Ok(Self {
            user_name: who.user.name.clone(),
            email: who.user.email.clone(),
            superuser: who.user.superuser,
            csrf: who.csrf.clone(),
            workspaces,
            current: access.map(|a| Current {
                id: a.workspace.id.to_string(),
                name: a.workspace.name.clone(),
                suspended: a.workspace.status.as_str() != "active",
            }),
            section,
            notice: None,
        })
    }

    pub fn with_notice(mut self, notice: Option<&'static str>) -> Self {
        self.notice = notice;
        self
    }

    /// The current workspace's id ("" outside one).
    pub fn ws_id(&self) -> &str {
        self.current.as_ref().map_or("", |c| c.id.as_str())
    }

    /// The link of a workspace page (`/w/{id}/{rest}`), for the current workspace.
    pub fn ws_path(&self, rest: &str) -> String {
        match &self.current {
            Some(c) => format!("/w/{}/{rest}", c.id),
            None => "/".to_owned(),
        }
    }
}

/// `?done=`: which notice a page shows after a redirect (see [`notice`]).
#[derive(serde::Deserialize, Default)]
pub struct DoneQuery {
    pub done: Option<String>,
}

/// What every workspace page starts with: the person's access to the workspace (404 for one
/// that is not theirs, as the API) and the frame, with `section` current in the navigation.
pub async fn open_workspace(
    state: &AppState,
    section: &'static str,
    who: &Signed,
    ws: &str,
    done: Option<&str>,
) -> Result<(Access, Chrome), Failure> {
    let access = state.workspaces.access(&who.actor(), ws).await?;
    let chrome = Chrome::new(state, who, Some(&access), section)
        .await?
        .with_notice(notice(done));
    Ok((access, chrome))
}

/// Whether the access holds every scope in `scopes` (to show or hide a control).
pub fn can(access: &Access, scopes: &[&str]) -> bool {
    access.require(scopes).is_ok()
}

/// A field error shown next to its field: the API's message and the field it names.
#[derive(Debug, Default, Clone)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// The error of a refused form, if it is the person's to fix (a 4xx other than 401/403);
    /// anything else becomes the error page.
    pub fn of(e: ApiError) -> Result<(StatusCode, Self), Failure> {
        let fixable = e.status.is_client_error()
            && e.status != StatusCode::UNAUTHORIZED
            && e.status != StatusCode::FORBIDDEN
            && e.status != StatusCode::NOT_FOUND
            && e.status != StatusCode::TOO_MANY_REQUESTS;
        if !fixable {
            return Err(e.into());
        }
        let field = e
            .extra
            .get("field")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok((
            e.status,
            Self {
                field,
                message: e.message.into_owned(),
            },
        ))
    }

    /// The message if it belongs to `field`.
    pub fn at(&self, field: &str) -> &str {
        if self.field == field {
            &self.message
        } else {
            ""
        }
    }
}

/// `?done=` notices after a redirect: a fixed list, so a link cannot put words on the page.
pub fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "revoked" => "The key was revoked.",
        "updated" => "Saved.",
        "enabled" => "The key is enabled again.",
        "disabled" => "The key is disabled: verify answers DISABLED until you enable it.",
        "created" => "Created.",
        "deleted" => "Deleted.",
        "removed" => "Removed.",
        "added" => "The member is added.",
        "granted" => "The app is granted.",
        "grant_revoked" => "The grant was revoked: the app's tokens for it stopped working.",
        "app_activated" => "The app is active again.",
        "app_deactivated" => "The app is inactive: its tokens are refused until you activate it.",
        "signed_out" => "You are signed out.",
        "workspace_deleted" => "The workspace is deleted, with its keys, apps and webhooks.",
        "reset_sent" => {
            "If an account exists for that address, a mail with a reset link is on its way."
        }
        "password_reset" => "Your password is changed. Sign in with the new one.",
        "signed_up" => "Your account is ready. Sign in.",
        "password_changed" => {
            "Your password is changed and every session ended. Sign in with the new one."
        }
        "mfa_disabled" => "Two-factor authentication is off.",
        "session_revoked" => "The session was revoked: its tokens stopped working.",
        "unlocked" => "The user can sign in again.",
        "suspended" => "The workspace is suspended: its keys and apps are refused.",
        "activated" => "The workspace is active again.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = Timestamp::from_millis(1_000_000_000_000);
        let at = |s: i64| relative(now.plus_secs(s), now);
        assert_eq!(at(0), "just now");
        assert_eq!(at(-30), "just now");
        assert_eq!(at(-60), "1 minute ago");
        assert_eq!(at(-300), "5 minutes ago");
        assert_eq!(at(-7200), "2 hours ago");
        assert_eq!(at(3 * 86_400), "in 3 days");
        assert_eq!(at(-400 * 86_400), "1 year ago");
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert!(local_path("/w/ws_1/keys?status=active"));
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a\nb",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn notices_come_from_a_fixed_list() {
        assert_eq!(notice(Some("revoked")), Some("The key was revoked."));
        assert_eq!(notice(Some("<script>")), None);
        assert_eq!(notice(None), None);
    }
}
