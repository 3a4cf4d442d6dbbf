//! Signing in (with the MFA step), out, up, and the password reset, as pages. The same
//! identity use cases as `/api/v1/auth/*`, under the same per-IP limits.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::identity::{LoginOutcome, Tokens};
use serde::Deserialize;

use crate::auth::{Meta, clear_cookies};
use crate::console::session::{Posted, PublicForm, Signed, see_other, session_cookies};
use crate::console::view::{Failure, FieldError, local_path, notice, render, render_status};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    email: &'a str,
    next: &'a str,
    error: &'a str,
    notice: Option<&'static str>,
    allow_signup: bool,
}

/// Where to go after signing in: the page that asked, if it is one of ours.
fn next_of(next: Option<&str>) -> &str {
    next.filter(|n| local_path(n)).unwrap_or("/")
}

pub async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
    who: Option<Signed>,
) -> Result<Response, Failure> {
    if who.is_some() {
        return Ok(see_other(next_of(q.next.as_deref())));
    }
    render(&LoginPage {
        email: "",
        next: next_of(q.next.as_deref()),
        error: "",
        notice: notice(q.done.as_deref()),
        allow_signup: state.config.allow_signup,
    })
}

/// The session cookies, and on to the page that asked.
fn signed_in(state: &AppState, tokens: &Tokens, next: &str) -> Response {
    let mut resp = see_other(next);
    for c in session_cookies(state, tokens) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    parts: axum::http::request::Parts,
    PublicForm(form): PublicForm,
) -> Result<Response, Failure> {
    let next = next_of(form.raw("next")).to_owned();
    let limits = &state.config.limits;
    crate::iplimit::require(&state, &parts, "login", limits.login_per_ip).await?;
    let email = form.text("email").unwrap_or_default();
    match state
        .identity
        .login(&meta, email, &form.secret("password"))
        .await
    {
        Ok(LoginOutcome::Tokens(tokens)) => Ok(signed_in(&state, &tokens, &next)),
        Ok(LoginOutcome::MfaRequired { mfa_token }) => render(&MfaPage {
            mfa_token: mfa_token.expose(),
            next: &next,
            error: "",
        }),
        Err(e) => {
            let e = ApiError::from(e);
            // Wrong credentials and a locked account are said on the form itself.
            if !matches!(
                e.status,
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ) {
                return Err(e.into());
            }
            render_status(
                e.status,
                &LoginPage {
                    email,
                    next: &next,
                    error: &e.message,
                    notice: None,
                    allow_signup: state.config.allow_signup,
                },
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/mfa.html")]
struct MfaPage<'a> {
    mfa_token: &'a str,
    next: &'a str,
    error: &'a str,
}

pub async fn login_mfa(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PublicForm(form): PublicForm,
) -> Result<Response, Failure> {
    let next = next_of(form.raw("next")).to_owned();
    let mfa_token = form.secret("mfa_token");
    match state
        .identity
        .login_mfa(&meta, &mfa_token, &form.secret("code"))
        .await
    {
        Ok(tokens) => Ok(signed_in(&state, &tokens, &next)),
        Err(e) => {
            let e = ApiError::from(e);
            // A wrong code may be tried again with the same challenge; an expired or unknown
            // challenge starts over.
            if e.code != "invalid_mfa_code" {
                return Err(e.into());
            }
            render_status(
                e.status,
                &MfaPage {
                    mfa_token: mfa_token.expose(),
                    next: &next,
                    error: &e.message,
                },
            )
        }
    }
}

/// Ends the session (its tokens stop at once, on every node) and clears the cookies.
pub async fn logout(State(state): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    state.identity.logout(&posted.who.session).await?;
    let mut resp = see_other("/login?done=signed_out");
    for c in clear_cookies(&state) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

#[derive(Template)]
#[template(path = "console/signup.html")]
struct SignupPage<'a> {
    name: &'a str,
    email: &'a str,
    error: FieldError,
}

pub async fn signup_page(State(state): State<AppState>) -> Result<Response, Failure> {
    if !state.config.allow_signup {
        return Err(ApiError::signup_disabled().into());
    }
    render(&SignupPage {
        name: "",
        email: "",
        error: FieldError::default(),
    })
}

pub async fn signup(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    PublicForm(form): PublicForm,
) -> Result<Response, Failure> {
    if !state.config.allow_signup {
        return Err(ApiError::signup_disabled().into());
    }
    let limits = &state.config.limits;
    crate::iplimit::require(&state, &parts, "signup", limits.signup_per_ip).await?;
    let name = form.raw("name").unwrap_or_default();
    let email = form.raw("email").unwrap_or_default();
    match state
        .identity
        .signup(email, &form.secret("password"), name)
        .await
    {
        Ok(_) => Ok(see_other("/login?done=signed_up")),
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            render_status(status, &SignupPage { name, email, error })
        }
    }
}

#[derive(Template)]
#[template(path = "console/forgot.html")]
struct ForgotPage {
    notice: Option<&'static str>,
}

pub async fn forgot_page(Query(q): Query<LoginQuery>) -> Result<Response, Failure> {
    render(&ForgotPage {
        notice: notice(q.done.as_deref()),
    })
}

/// Always the same answer, whether the account exists or not.
pub async fn forgot(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    PublicForm(form): PublicForm,
) -> Result<Response, Failure> {
    let limits = &state.config.limits;
    crate::iplimit::require(
        &state,
        &parts,
        "password_reset",
        limits.password_reset_per_ip,
    )
    .await?;
    state
        .identity
        .request_password_reset(form.text("email").unwrap_or_default())
        .await?;
    Ok(see_other("/forgot-password?done=reset_sent"))
}

#[derive(Deserialize)]
pub struct ResetQuery {
    #[serde(default)]
    token: String,
}

#[derive(Template)]
#[template(path = "console/reset.html")]
struct ResetPage<'a> {
    token: &'a str,
    error: &'a str,
}

/// The page the reset mail links to (`/reset-password?token=`).
pub async fn reset_page(Query(q): Query<ResetQuery>) -> Result<Response, Failure> {
    render(&ResetPage {
        token: &q.token,
        error: "",
    })
}

pub async fn reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    PublicForm(form): PublicForm,
) -> Result<Response, Failure> {
    let token = form.secret("token");
    match state
        .identity
        .reset_password(&meta, &token, &form.secret("password"))
        .await
    {
        Ok(()) => {
            // Every session ended, this browser's too.
            let mut resp = see_other("/login?done=password_reset");
            for c in clear_cookies(&state) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            Ok(resp.into_response())
        }
        Err(e) => {
            let (status, error) = FieldError::of(e.into())?;
            render_status(
                status,
                &ResetPage {
                    token: token.expose(),
                    error: &error.message,
                },
            )
        }
    }
}
