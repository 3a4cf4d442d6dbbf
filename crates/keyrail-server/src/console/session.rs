//! Who is looking at a console page, and what a posted form carries.
//!
//! A page is signed in by the same `keyrail_token` cookie as the API, through the same
//! [`authenticate_with`]: the failed-credential block, the per-principal limit, and for a write
//! the CSRF token, which a console form carries as its `csrf_token` field (an HMAC of the
//! session id, as the API's `X-CSRF-Token`). The console also keeps the session's refresh token
//! in an HttpOnly cookie, so a page outlives the 15-minute access token: [`refresh`] trades it
//! before the handler runs, with the same rotation and reuse detection as `/auth/refresh`.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyrail_core::identity::{Tokens, UserSession};
use keyrail_core::model::User;
use keyrail_core::secret::Secret;
use keyrail_core::workspaces::Actor;

use crate::auth::{
    CookieNames, CsrfFrom, KeyCheck, Principal, authenticate_with, cookie, csrf_token,
    login_cookies, refresh_cookie,
};
use crate::console::view::Failure;
use crate::error::ApiError;
use crate::json::BODY_LIMIT;
use crate::state::AppState;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// A signed-in person on a console page.
pub struct Signed {
    pub session: UserSession,
    pub user: User,
    /// This session's CSRF token, for the page's forms.
    pub csrf: String,
}

impl Signed {
    pub fn actor(&self) -> Actor {
        Actor::User {
            user_id: self.user.id.clone(),
            superuser: self.user.superuser,
        }
    }

    async fn from_principal(state: &AppState, principal: Principal) -> Result<Self, Failure> {
        match principal {
            Principal::User(session) => {
                let user = state.identity.user(&session).await?;
                let csrf = csrf_token(state, &session.session_id);
                Ok(Self {
                    session,
                    user,
                    csrf,
                })
            }
            // The console is for people; a key or an app token in `Authorization` is not one.
            Principal::Key(_) | Principal::App(_) => Err(Failure::sign_in()),
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Failure> {
        // A GET carries no CSRF token and needs none: it changes nothing.
        let principal = authenticate_with(parts, state, KeyCheck::default(), CsrfFrom::Header)
            .await
            .map_err(|e| Failure::or_sign_in(e, parts))?;
        Self::from_principal(state, principal).await
    }
}

/// `Option<Signed>`: whoever is signed in, or nobody (the sign-in page itself).
impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Failure> {
        if cookie(&parts.headers, CookieNames::for_state(state).token).is_none() {
            return Ok(None);
        }
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// The fields of a posted `application/x-www-form-urlencoded` form, in order (a field may
/// repeat: one per ticked checkbox).
#[derive(Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

/// Names only: a form carries passwords, codes and tokens, which must never reach a log line.
impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.fields.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self {
            fields: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The field's value, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The field's value as sent (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many times the field is given.
    pub fn count(&self, name: &str) -> usize {
        self.fields.iter().filter(|(k, _)| k == name).count()
    }

    /// A secret field (a password, a code), as sent.
    pub fn secret(&self, name: &str) -> Secret {
        Secret::new(self.raw(name).unwrap_or_default().to_owned())
    }

    /// Every value of a repeated field (ticked checkboxes), without blanks.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// A checkbox: ticked when present with any value.
    pub fn checked(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// An optional whole number; a value that is not one is a 400 naming `field`.
    pub fn number<T: std::str::FromStr>(
        &self,
        name: &str,
        field: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::invalid(field.to_owned(), format!("{field} must be a whole number"))
            }),
        }
    }
}

/// Reads a posted form (at most the API's body limit).
async fn read_form(body: Body) -> Result<Form, Failure> {
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| Failure::from(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)))?;
    Ok(Form::parse(&bytes))
}

/// A form posted by anyone (sign in, sign up, password reset): the same-origin check of
/// [`crate::console::same_origin`] applies; there is no session yet to bind a token to.
pub struct PublicForm(pub Form);

impl FromRequest<AppState> for PublicForm {
    type Rejection = Failure;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, Failure> {
        Ok(Self(read_form(req.into_body()).await?))
    }
}

/// A form posted by a signed-in person: authenticated by the session cookie, with the CSRF
/// token from its `csrf_token` field. A form without the right token gets 403 `csrf_failed`
/// and changes nothing.
pub struct Posted {
    pub who: Signed,
    pub form: Form,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Failure> {
        let (parts, body) = req.into_parts();
        let form = read_form(body).await?;
        let token = form.raw(CSRF_FIELD).unwrap_or_default().as_bytes();
        let principal =
            authenticate_with(&parts, state, KeyCheck::default(), CsrfFrom::Form(token))
                .await
                .map_err(|e| Failure::or_sign_in(e, &parts))?;
        let who = Signed::from_principal(state, principal).await?;
        Ok(Self { who, form })
    }
}

/// Console middleware: when the access-token cookie is missing or no longer valid and the
/// refresh cookie is there, trade the refresh token for a new pair before the page runs, and
/// hand the new cookies to the browser. A refresh token that fails (spent, expired, its
/// session revoked) clears the cookies; the page then asks to sign in.
pub async fn refresh(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let names = CookieNames::for_state(&state);
    let Some(refresh_token) = cookie(req.headers(), names.refresh)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
    else {
        return next.run(req).await;
    };
    let access_ok = match cookie(req.headers(), names.token).filter(|v| !v.is_empty()) {
        Some(token) => state.identity.authenticate(token).await.is_ok(),
        None => false,
    };
    if access_ok {
        return next.run(req).await;
    }
    match state.identity.refresh(&Secret::new(refresh_token)).await {
        Ok(tokens) => {
            // The page sees the new access token as if the browser had sent it.
            let cookie_header = format!("{}={}", names.token, tokens.access_token.expose());
            req.headers_mut().remove(header::COOKIE);
            if let Ok(v) = HeaderValue::from_str(&cookie_header) {
                req.headers_mut().insert(header::COOKIE, v);
            }
            let mut resp = next.run(req).await;
            for c in session_cookies(&state, &tokens) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        Err(keyrail_core::Error::Unavailable) => next.run(req).await,
        Err(_) => {
            req.headers_mut().remove(header::COOKIE);
            let mut resp = next.run(req).await;
            for c in crate::auth::clear_cookies(&state) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
    }
}

/// The cookies of a console sign-in: the API's two and the refresh token.
pub fn session_cookies(state: &AppState, tokens: &Tokens) -> [HeaderValue; 3] {
    let [token, csrf] = login_cookies(
        state,
        tokens.access_token.expose(),
        tokens.session_id.as_str(),
        tokens.expires_in,
    );
    let refresh = refresh_cookie(
        state,
        tokens.refresh_token.expose(),
        state.identity.config.refresh_ttl_secs,
    );
    [token, csrf, refresh]
}

/// Whether the request is a write (the methods a form can post).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A redirect after a successful post (303: the browser follows with a GET).
pub fn see_other(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_reads_repeated_fields_and_never_prints_values() {
        let form = Form::parse(
            b"name=%20billing%20&scopes=keys%3Aread&scopes=&scopes=a%3Ab&password=hunter2+secret",
        );
        assert_eq!(form.text("name"), Some("billing"));
        assert_eq!(form.all("scopes"), ["keys:read", "a:b"]);
        assert_eq!(form.raw("password"), Some("hunter2 secret"));
        assert!(!form.checked("recoverable"));
        let shown = format!("{form:?}");
        assert!(
            shown.contains("password") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(form.number::<u32>("name", "n").is_err());
        assert_eq!(form.number::<u32>("missing", "n").unwrap(), None);
    }
}
