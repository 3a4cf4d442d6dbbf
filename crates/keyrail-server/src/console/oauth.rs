//! `/oauth/authorize`: the authorization endpoint of the OAuth server (`crate::oauth`), a
//! console page because a person consents there. Signed out, the sign-in page comes first and
//! returns here. The page names the client, where it will be sent back, and the scopes it asks
//! for (dangerous ones marked); the person picks a workspace and presses `Allow` or `Deny`.
//! Allow makes a personal grant (`Apps::consent`, through `Apps::create_grant`) and sends a
//! code back to the client.
//!
//! The request's parameters travel through the form as hidden fields and are checked again
//! when it is posted: nothing the browser sends back is trusted.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyrail_core::apps::oauth::{Authorization, AuthorizeFailure, AuthorizeRequest, OAuthError};
use keyrail_core::authz::catalog::builtin_catalog;
use keyrail_core::model::WorkspaceStatus;

use crate::auth::Meta;
use crate::console::session::{Form, Posted, Signed, see_other};
use crate::console::view::{Failure, encode, render_status};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/oauth/authorize", get(page).post(decide))
}

/// The authorization request's parameters, in the order they are carried.
const PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
    "scope",
    "resource",
];

/// The request from a query string or a posted form; a parameter given twice is refused
/// (RFC 6749 3.1).
fn request_of(fields: &Form) -> Result<AuthorizeRequest, Failure> {
    let mut values: Vec<Option<String>> = Vec::with_capacity(PARAMS.len());
    for name in PARAMS {
        if fields.count(name) > 1 {
            return Err(ApiError::invalid(*name, format!("{name} is given more than once")).into());
        }
        values.push(fields.raw(name).map(str::to_owned));
    }
    let mut it = values.into_iter();
    let mut next = || it.next().flatten();
    Ok(AuthorizeRequest {
        response_type: next(),
        client_id: next(),
        redirect_uri: next(),
        code_challenge: next(),
        code_challenge_method: next(),
        state: next(),
        scope: next(),
        resource: next(),
    })
}

struct ScopeLine {
    name: String,
    description: String,
    dangerous: bool,
}

#[derive(Template)]
#[template(path = "console/oauth_consent.html")]
struct ConsentPage {
    client_name: String,
    redirect_host: String,
    user_name: String,
    user_email: String,
    csrf: String,
    params: Vec<(&'static str, String)>,
    scopes: Vec<ScopeLine>,
    /// (id, name) of the person's active workspaces.
    workspaces: Vec<(String, String)>,
    error: String,
}

/// What a browser may be sent to after the form: this server, and the client's redirect URI
/// (`form-action` also governs the redirect that answers the post).
fn form_action_source(redirect_uri: &str) -> String {
    let (scheme, rest) = redirect_uri.split_once(':').unwrap_or(("", ""));
    match rest.strip_prefix("//") {
        Some(after) if scheme == "http" || scheme == "https" => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            format!("{scheme}://{}", &after[..end])
        }
        _ => format!("{scheme}:"),
    }
}

async fn consent_page(
    state: &AppState,
    who: &Signed,
    auth: &Authorization,
    status: StatusCode,
    error: String,
) -> Result<Response, Failure> {
    let workspaces = state
        .workspaces
        .list_mine(&who.actor())
        .await?
        .into_iter()
        .filter(|(ws, _)| ws.status == WorkspaceStatus::Active)
        .map(|(ws, _)| (ws.id.to_string(), ws.name))
        .collect();
    let catalog = builtin_catalog();
    let scopes = auth
        .scopes
        .iter()
        .map(|name| {
            let entry = catalog.get(name);
            ScopeLine {
                name: name.clone(),
                description: entry.map(|e| e.description.to_string()).unwrap_or_default(),
                dangerous: entry.is_some_and(|e| e.dangerous),
            }
        })
        .collect();
    let mut params: Vec<(&'static str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", auth.app.client_id.clone()),
        ("redirect_uri", auth.redirect_uri.clone()),
        ("code_challenge", auth.code_challenge.clone()),
        ("code_challenge_method", "S256".into()),
        ("scope", auth.scopes.join(" ")),
        ("resource", auth.resource.clone()),
    ];
    if let Some(s) = &auth.state {
        params.push(("state", s.clone()));
    }
    let source = form_action_source(&auth.redirect_uri);
    // Only characters a CSP source may hold: a crafted URI cannot add a directive.
    let csp_source = if source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".:-+[]/".contains(&b))
    {
        source.clone()
    } else {
        String::new()
    };
    let page = ConsentPage {
        client_name: auth.app.name.clone(),
        redirect_host: source.clone(),
        user_name: who.user.name.clone(),
        user_email: who.user.email.clone(),
        csrf: who.csrf.clone(),
        params,
        scopes,
        workspaces,
        error,
    };
    let mut resp = render_status(status, &page)?;
    let csp = crate::console::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {csp_source}"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(resp)
}

/// Back to the client's redirect URI with `params` (and the issuer, RFC 9207).
fn back_to_client(state: &AppState, redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut to = redirect_uri.to_owned();
    let mut sep = if to.contains('?') { '&' } else { '?' };
    for (k, v) in params
        .iter()
        .copied()
        .chain([("iss", crate::oauth::issuer(state))])
    {
        to.push(sep);
        to.push_str(k);
        to.push('=');
        to.push_str(&encode(v));
        sep = '&';
    }
    see_other(&to)
}

fn refused(state: &AppState, redirect_uri: &str, e: &OAuthError, st: Option<&str>) -> Response {
    let mut params = vec![
        ("error", e.code),
        ("error_description", e.description.as_str()),
    ];
    if let Some(s) = st {
        params.push(("state", s));
    }
    back_to_client(state, redirect_uri, &params)
}

/// Checks the request; what cannot go on is an error page or a redirect with the error.
async fn checked(state: &AppState, req: &AuthorizeRequest) -> Result<Authorization, Response> {
    match state
        .apps
        .check_authorization(req, &crate::mcp::resource(state), crate::oauth::MCP_SCOPES)
        .await
    {
        Ok(auth) => Ok(auth),
        Err(AuthorizeFailure::Shown(message)) => {
            Err(Failure::from(ApiError::invalid("client_id", message)).into_response())
        }
        Err(AuthorizeFailure::Redirect {
            redirect_uri,
            error,
            state: st,
        }) => Err(refused(state, &redirect_uri, &error, st.as_deref())),
        Err(AuthorizeFailure::Other(e)) => Err(Failure::from(e).into_response()),
    }
}

async fn page(State(state): State<AppState>, who: Signed, RawQuery(query): RawQuery) -> Response {
    let fields = Form::parse(query.unwrap_or_default().as_bytes());
    let req = match request_of(&fields) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let auth = match checked(&state, &req).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    consent_page(&state, &who, &auth, StatusCode::OK, String::new())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn decide(State(state): State<AppState>, Meta(meta): Meta, posted: Posted) -> Response {
    let Posted { who, form } = posted;
    let req = match request_of(&form) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let auth = match checked(&state, &req).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let st = auth.state.as_deref();
    if form.raw("decision") != Some("allow") {
        let denied = OAuthError {
            code: "access_denied",
            description: "The user denied the request".into(),
        };
        return refused(&state, &auth.redirect_uri, &denied, st);
    }
    let result = async {
        let ws = form
            .text("workspace_id")
            .ok_or_else(|| ApiError::invalid("workspace_id", "Pick a workspace"))?;
        let access = state.workspaces.access(&who.actor(), ws).await?;
        Ok::<_, ApiError>(state.apps.consent(&access, &meta, &auth).await?)
    }
    .await;
    match result {
        Ok((code, _grant)) => {
            let mut params = vec![("code", code.expose())];
            if let Some(s) = st {
                params.push(("state", s));
            }
            back_to_client(&state, &auth.redirect_uri, &params)
        }
        Err(e) => consent_page(&state, &who, &auth, e.status, e.message.to_string())
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}

/// The authorization request's query, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AuthorizeQuery {
    /// `code`.
    response_type: String,
    /// The client's id from `POST /oauth/register`.
    client_id: String,
    /// One of the client's registered redirect URIs (a loopback one on any port).
    redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)).
    code_challenge: String,
    /// `S256` (`plain` is refused).
    code_challenge_method: String,
    /// Returned with the code or the error.
    state: Option<String>,
    /// Scopes, space-separated; absent: the protected resource's `scopes_supported`.
    scope: Option<String>,
    /// `<public_url>/mcp` (RFC 8707).
    resource: String,
}

/// The authorization endpoint (RFC 6749 4.1.1, PKCE S256, RFC 8707): a console page for a
/// person, not an API. Signed out, it sends the browser to sign in first. Signed in, it shows
/// the consent page (the client's name, the scopes it asks for with dangerous ones marked, a
/// `Workspace` select, `Allow` and `Deny`), whose form posts back here; Allow makes a personal
/// grant of the requested scopes the person holds and sends the browser to the redirect URI
/// with `code`, `state` and `iss` (RFC 9207).
#[utoipa::path(get, path = "/oauth/authorize", params(AuthorizeQuery),
    responses(
        (status = 200, description = "The consent page", content_type = "text/html", body = String),
        (status = 303, description = "Signed out: to `/login?next=...`. Or back to the client's redirect URI with `error` (`invalid_request`, `invalid_target`, `invalid_scope`, `unsupported_response_type`) and `state`"),
        (status = 400, description = "An unknown client, or a redirect URI it did not register: an error page, never a redirect", content_type = "text/html", body = String),
    ))]
#[allow(dead_code)]
async fn authorize_document() {}

/// Adds `GET /oauth/authorize` to the OpenAPI document (the console's routes are outside it).
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::Path as _;
    let mut operation = __path_authorize_document::operation();
    // `tag` is applied by the router macros, which this path does not go through.
    operation.tags = Some(vec!["oauth".to_owned()]);
    openapi.paths.add_path_operation(
        __path_authorize_document::path(),
        __path_authorize_document::methods(),
        operation,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_names_the_redirect_origin() {
        assert_eq!(
            form_action_source("http://127.0.0.1:33418/callback?x=1"),
            "http://127.0.0.1:33418"
        );
        assert_eq!(
            form_action_source("https://client.example/cb"),
            "https://client.example"
        );
        assert_eq!(
            form_action_source("cursor://anysphere.cursor-retrieval/oauth/callback"),
            "cursor:"
        );
        assert_eq!(
            form_action_source("com.example.app:/oauth2redirect"),
            "com.example.app:"
        );
    }
}
