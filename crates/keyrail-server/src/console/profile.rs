//! The signed-in person's own account as pages: name, password, MFA (setup with a QR code
//! rendered here as SVG, the recovery codes shown once, disable) and sessions (revoke; revoking
//! this one signs out). The same identity use cases as `/api/v1/profile*`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use keyrail_core::model::Session;

use crate::auth::{Meta, clear_cookies};
use crate::console::session::{Posted, Signed, see_other};
use crate::console::view::DoneQuery;
use crate::console::view::{Chrome, Failure, FieldError, When, notice, render, render_status};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/profile", get(page))
        .route("/profile/name", post(rename))
        .route("/profile/password", post(change_password))
        .route("/profile/mfa/setup", post(mfa_setup))
        .route("/profile/mfa/verify", post(mfa_verify))
        .route("/profile/mfa/disable", post(mfa_disable))
        .route("/profile/sessions/{id}/revoke", post(revoke_session))
}

struct SessionView {
    id: String,
    current: bool,
    created: When,
    last_seen: When,
    expires: When,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl SessionView {
    fn new(s: Session, current: &str, now: keyrail_core::Timestamp) -> Self {
        Self {
            current: s.id.as_str() == current,
            id: s.id.to_string(),
            created: When::new(s.created_at, now),
            last_seen: When::new(s.last_used_at, now),
            expires: When::new(s.expires_at, now),
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Template)]
#[template(path = "console/profile.html")]
struct ProfilePage {
    chrome: Chrome,
    name: String,
    mfa_enabled: bool,
    sessions: Vec<SessionView>,
    /// The error of the form that was posted, and which form it was.
    error: FieldError,
    form: &'static str,
}

impl ProfilePage {
    /// The message for `form`'s field `field`.
    fn err(&self, form: &str, field: &str) -> &str {
        if self.form == form {
            self.error.at(field)
        } else {
            ""
        }
    }

    /// A message of `form` that names no field of it (shown above the form).
    fn form_err(&self, form: &str) -> &str {
        if self.form == form && !self.error.message.is_empty() {
            let own = match form {
                "name" => &["name"][..],
                "password" => &["current_password", "new_password"][..],
                "mfa" => &["code"][..],
                _ => &[][..],
            };
            if !own.contains(&self.error.field.as_str()) {
                return &self.error.message;
            }
        }
        ""
    }
}

async fn profile_page(
    state: &AppState,
    who: &Signed,
    done: Option<&str>,
) -> Result<ProfilePage, Failure> {
    let chrome = Chrome::new(state, who, None, "profile")
        .await?
        .with_notice(notice(done));
    let now = state.clock.now();
    let sessions = state
        .identity
        .sessions(&who.session)
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, &who.session.session_id, now))
        .collect();
    Ok(ProfilePage {
        chrome,
        name: who.user.name.clone(),
        mfa_enabled: who.user.mfa_enabled,
        sessions,
        error: FieldError::default(),
        form: "",
    })
}

/// The profile page again with the refusal of one of its forms next to its field.
async fn refused(
    state: &AppState,
    who: &Signed,
    form: &'static str,
    e: ApiError,
    edit: impl FnOnce(&mut ProfilePage),
) -> Result<Response, Failure> {
    let (status, error) = FieldError::of(e)?;
    let mut page = profile_page(state, who, None).await?;
    page.error = error;
    page.form = form;
    edit(&mut page);
    render_status(status, &page)
}

pub async fn page(
    State(state): State<AppState>,
    who: Signed,
    Query(q): Query<DoneQuery>,
) -> Result<Response, Failure> {
    render(&profile_page(&state, &who, q.done.as_deref()).await?)
}

pub async fn rename(State(state): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    let name = posted.form.raw("name").unwrap_or_default();
    match state.identity.rename(&posted.who.session, name).await {
        Ok(_) => Ok(see_other("/profile?done=updated")),
        Err(e) => {
            let name = name.to_owned();
            refused(&state, &posted.who, "name", e.into(), |p| p.name = name).await
        }
    }
}

/// Every session ends with the password change, this one too: on to sign in again.
pub async fn change_password(
    State(state): State<AppState>,
    posted: Posted,
) -> Result<Response, Failure> {
    let form = &posted.form;
    match state
        .identity
        .change_password(
            &posted.who.session,
            &form.secret("current_password"),
            &form.secret("new_password"),
        )
        .await
    {
        Ok(()) => {
            let mut resp = see_other("/login?done=password_changed");
            for c in clear_cookies(&state) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            Ok(resp)
        }
        Err(e) => refused(&state, &posted.who, "password", e.into(), |_| {}).await,
    }
}

/// The setup step: the secret as a QR code and as text, and the form for the first code.
#[derive(Template)]
#[template(path = "console/profile_mfa.html")]
struct MfaSetupPage {
    chrome: Chrome,
    /// The QR code of the `otpauth://` URL, as SVG made here (no script, no style).
    qr: Option<String>,
    secret: Option<String>,
    error: String,
}

/// The QR code of `data` as inline SVG: the `qrcode` crate's rendering without its XML
/// declaration, with an accessible name. Attributes only (the CSP forbids inline style).
fn qr_svg(data: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::internal(format!("qr code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code for your authenticator app\" ",
        1,
    ))
}

pub async fn mfa_setup(State(state): State<AppState>, posted: Posted) -> Result<Response, Failure> {
    let who = &posted.who;
    match state.identity.mfa_setup(&who.session).await {
        Ok(setup) => render(&MfaSetupPage {
            chrome: Chrome::new(&state, who, None, "profile").await?,
            qr: Some(qr_svg(setup.otpauth_url.expose())?),
            secret: Some(setup.secret.expose().to_owned()),
            error: String::new(),
        }),
        // "Sign in again with your password", "already enabled": said on the profile page.
        Err(e) => {
            let e = ApiError::from(e);
            if !matches!(e.status, StatusCode::FORBIDDEN | StatusCode::CONFLICT) {
                return Err(e.into());
            }
            let status = e.status;
            let mut page = profile_page(&state, who, None).await?;
            page.form = "mfa";
            page.error = FieldError {
                field: String::new(),
                message: e.message.into_owned(),
            };
            render_status(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "console/profile_codes.html")]
struct RecoveryCodesPage {
    chrome: Chrome,
    codes: Vec<String>,
}

pub async fn mfa_verify(
    State(state): State<AppState>,
    Meta(meta): Meta,
    posted: Posted,
) -> Result<Response, Failure> {
    let who = &posted.who;
    match state
        .identity
        .mfa_enable(&meta, &who.session, &posted.form.secret("code"))
        .await
    {
        Ok(codes) => render(&RecoveryCodesPage {
            chrome: Chrome::new(&state, who, None, "profile").await?,
            codes: codes.iter().map(|c| c.expose().to_owned()).collect(),
        }),
        Err(e) => {
            // A wrong code may be tried again (the pending secret stays); the QR code is not
            // shown again: it was a secret of the setup page.
            let (status, error) = FieldError::of(e.into())?;
            render_status(
                status,
                &MfaSetupPage {
                    chrome: Chrome::new(&state, who, None, "profile").await?,
                    qr: None,
                    secret: None,
                    error: error.message,
                },
            )
        }
    }
}

pub async fn mfa_disable(
    State(state): State<AppState>,
    posted: Posted,
) -> Result<Response, Failure> {
    match state
        .identity
        .mfa_disable(&posted.who.session, &posted.form.secret("code"))
        .await
    {
        Ok(()) => Ok(see_other("/profile?done=mfa_disabled")),
        Err(e) => refused(&state, &posted.who, "mfa", e.into(), |_| {}).await,
    }
}

pub async fn revoke_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, Failure> {
    let who = &posted.who;
    state.identity.revoke_session(&who.session, &id).await?;
    if id == who.session.session_id {
        let mut resp = see_other("/login?done=signed_out");
        for c in clear_cookies(&state) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        return Ok(resp);
    }
    Ok(see_other("/profile?done=session_revoked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_svg_without_style_or_prolog() {
        let svg = qr_svg(
            "otpauth://totp/keyrail:ada%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=keyrail",
        )
        .unwrap();
        assert!(svg.starts_with("<svg role=\"img\" aria-label="), "{svg}");
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("<path"));
        for banned in ["style", "<?xml", "<script", " on"] {
            assert!(!svg.contains(banned), "{banned} in {svg}");
        }
    }
}
