//! The OAuth 2.1 authorization server of `/mcp` (API.md "MCP and OAuth 2.1"): dynamic client
//! registration (RFC 7591), the authorization code flow with PKCE S256 (RFC 7636), resource
//! indicators (RFC 8707), refresh tokens rotated with reuse detection, and revocation
//! (RFC 7009).
//!
//! It is the apps model seen from the other side. A registered client is an app of kind
//! [`AppKind::Public`]; the user's consent is a personal grant made by [`Apps::create_grant`],
//! the same use case as `POST W/grants`. The access tokens are the apps' inner tokens with an
//! audience: 5 minutes long, and checked against the grant and the app on every use, so
//! revoking the grant stops them at once. A replayed code or refresh token revokes the grant.

use super::{Apps, SECRET_PURPOSE, TOKEN_TTL_SECS, new_client_id, new_secret};
use crate::audit::{self, RequestMeta};
use crate::crypto::token::{ct_eq, sha256, sha256_hex};
use crate::crypto::{b64url_encode, fill_random_or_panic, seal};
use crate::error::Error;
use crate::events::OutboxEvent;
use crate::id::GrantId;
use crate::model::{
    ActorType, App, AppKind, AuditEntry, GrantFilter, GrantView, OAuthCode, OAuthRefresh, Page,
    Spent, WorkspaceStatus,
};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::time::Timestamp;
use crate::workspaces::Access;

/// An authorization code is good for a minute.
pub const CODE_TTL_SECS: i64 = 60;
/// A refresh token is good for 30 days (each use makes a new one).
pub const REFRESH_TTL_SECS: i64 = 30 * 86_400;
/// A registered client that nobody granted within a day is deleted.
pub const UNUSED_CLIENT_TTL_SECS: i64 = 86_400;
/// Redirect URIs per client, and the length of each.
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 2000;
/// Scopes one request may name, and the length of `state`.
const MAX_SCOPES: usize = 50;
const MAX_STATE_LEN: usize = 1000;
const CODE_PREFIX: &str = "krc_";
const REFRESH_PREFIX: &str = "krr_";

/// An error of the protocol, answered in RFC 6749's shape (`error` and `error_description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// RFC 6749 / 7591 / 8707 error code (`invalid_grant`, `invalid_target`, ...).
    pub code: &'static str,
    pub description: String,
}

/// Why an OAuth request failed: the protocol's answer, or an ordinary failure (the store, a
/// limit) answered as the API answers it.
#[derive(Debug)]
pub enum OAuthFailure {
    Protocol(OAuthError),
    Other(Error),
}

impl From<Error> for OAuthFailure {
    fn from(e: Error) -> Self {
        OAuthFailure::Other(e)
    }
}

impl From<StoreError> for OAuthFailure {
    fn from(e: StoreError) -> Self {
        OAuthFailure::Other(e.into())
    }
}

fn fail(code: &'static str, description: impl Into<String>) -> OAuthFailure {
    OAuthFailure::Protocol(OAuthError {
        code,
        description: description.into(),
    })
}

/// What a client registers (RFC 7591 2); absent fields take the defaults of a public client.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
}

/// The query of `GET /oauth/authorize`, as received.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// A checked authorization request, ready for the user's consent.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub app: App,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub state: Option<String>,
    /// The scopes asked for (the defaults when the request named none).
    pub scopes: Vec<String>,
    pub resource: String,
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum AuthorizeFailure {
    /// The client or its redirect URI is unknown: told to the user, never sent to the URI
    /// (RFC 6749 4.1.2.1), which would make the server an open redirector.
    Shown(String),
    /// Sent back to the client at its (checked) redirect URI.
    Redirect {
        redirect_uri: String,
        error: OAuthError,
        state: Option<String>,
    },
    Other(Error),
}

impl From<Error> for AuthorizeFailure {
    fn from(e: Error) -> Self {
        AuthorizeFailure::Other(e)
    }
}

impl From<StoreError> for AuthorizeFailure {
    fn from(e: StoreError) -> Self {
        AuthorizeFailure::Other(e.into())
    }
}

/// The body of `POST /oauth/token`, as received. The code, the verifier and the refresh
/// token are secrets: their `Debug` never shows them.
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<Secret>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub code_verifier: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub resource: Option<String>,
}

/// What the token endpoint hands out.
pub struct OAuthTokens {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_in: i64,
    /// The grant's scopes, space-separated.
    pub scope: String,
}

/// `https://`, `http://` on a loopback host, or a private-use scheme (RFC 8252 7.1); never a
/// fragment, never a scheme a browser runs or reads locally.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() || uri.len() > MAX_URI_LEN {
        return Err(format!(
            "redirect URIs must be 1 to {MAX_URI_LEN} characters"
        ));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) || uri.contains('#') {
        return Err("a redirect URI has no whitespace and no fragment".into());
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err("a redirect URI must be an absolute URI".into());
    };
    let scheme_ok = scheme.len() >= 2
        && scheme.as_bytes()[0].is_ascii_lowercase()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b));
    if !scheme_ok {
        return Err("a redirect URI must start with a lowercase scheme".into());
    }
    match scheme {
        "https" => match authority(rest) {
            Some(a) if !a.is_empty() => Ok(()),
            _ => Err("an https redirect URI needs a host".into()),
        },
        "http" => match authority(rest).map(split_port) {
            Some((host, _)) if is_loopback(host) => Ok(()),
            _ => Err(
                "an http redirect URI must be on a loopback host (127.0.0.1, [::1] or localhost)"
                    .into(),
            ),
        },
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "filesystem" | "ws"
        | "wss" | "ftp" => Err(format!("the scheme {scheme} cannot be a redirect URI")),
        _ => Ok(()),
    }
}

/// The authority of `//authority/path`, if the URI has one.
fn authority(rest: &str) -> Option<&str> {
    let rest = rest.strip_prefix("//")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // No userinfo: `https://good.example@evil.example/` is a classic trick.
    (!authority.contains('@')).then_some(authority)
}

/// `host` and `port` of an authority (`[::1]:8080`, `127.0.0.1`).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[..end + 2];
        let port = authority[end + 2..].strip_prefix(':');
        return (host, port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// Whether `presented` is the registered URI `registered`: the same string, or, for an http
/// loopback URI, the same but for the port (RFC 8252 7.3: a native app listens on whatever
/// port it gets).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Some(reg), Some(pre)) = (
        registered.strip_prefix("http://"),
        presented.strip_prefix("http://"),
    ) else {
        return false;
    };
    let split = |s: &str| -> Option<(String, String)> {
        let end = s.find(['/', '?']).unwrap_or(s.len());
        let (host, port) = split_port(&s[..end]);
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        (is_loopback(host) && port_ok).then(|| (host.to_owned(), s[end..].to_owned()))
    };
    match (split(reg), split(pre)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A PKCE verifier or challenge: 43 to 128 unreserved characters (RFC 7636 4.1).
fn pkce_shaped(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// BASE64URL(SHA-256(verifier)) (RFC 7636 4.2).
pub fn s256(verifier: &str) -> String {
    b64url_encode(&sha256(verifier.as_bytes()))
}

/// A new random token with `prefix`, and its hash (what the store keeps).
fn new_token(prefix: &str) -> (Secret, String) {
    let mut bytes = [0u8; 32];
    fill_random_or_panic(&mut bytes);
    let token = format!("{prefix}{}", b64url_encode(&bytes));
    let hash = sha256_hex(token.as_bytes());
    (Secret::new(token), hash)
}

fn parse_scope(raw: Option<&str>, defaults: &[&str]) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for name in raw.unwrap_or("").split_ascii_whitespace() {
        let shaped = name.len() <= 64
            && name.split_once(':').is_some_and(|(r, a)| {
                let part = |p: &str| {
                    p.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                        && p.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)
                        })
                };
                part(r) && part(a)
            });
        if !shaped {
            return Err(format!(
                "scope {name:?} is not a scope name (resource:action)"
            ));
        }
        if !scopes.iter().any(|s| s == name) {
            scopes.push(name.to_owned());
        }
    }
    if scopes.len() > MAX_SCOPES {
        return Err(format!("at most {MAX_SCOPES} scopes"));
    }
    if scopes.is_empty() {
        scopes = defaults.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok(scopes)
}

impl Apps {
    /// RFC 7591 dynamic registration of a public client. Audited (`app.register`, by nobody).
    pub async fn register_client(
        &self,
        meta: &RequestMeta,
        reg: Registration,
    ) -> Result<App, OAuthFailure> {
        let bad = |d: String| fail("invalid_client_metadata", d);
        if let Some(method) = reg.token_endpoint_auth_method.as_deref()
            && method != "none"
        {
            return Err(bad(
                "token_endpoint_auth_method must be \"none\": only public clients register here"
                    .into(),
            ));
        }
        if let Some(types) = &reg.grant_types
            && (types.len() > 4
                || types
                    .iter()
                    .any(|t| t != "authorization_code" && t != "refresh_token"))
        {
            return Err(bad(
                "grant_types may name only authorization_code and refresh_token".into(),
            ));
        }
        if let Some(types) = &reg.response_types
            && (types.len() > 4 || types.iter().any(|t| t != "code"))
        {
            return Err(bad("response_types may name only code".into()));
        }
        if reg.redirect_uris.is_empty() || reg.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(fail(
                "invalid_redirect_uri",
                format!("redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs"),
            ));
        }
        let mut redirect_uris: Vec<String> = Vec::with_capacity(reg.redirect_uris.len());
        for uri in reg.redirect_uris {
            check_redirect_uri(&uri).map_err(|d| fail("invalid_redirect_uri", d))?;
            if !redirect_uris.contains(&uri) {
                redirect_uris.push(uri);
            }
        }
        let name = match reg.client_name.as_deref().map(str::trim) {
            None | Some("") => "MCP client".to_owned(),
            Some(n) => {
                if n.chars().count() > 100 || n.chars().any(char::is_control) {
                    return Err(bad(
                        "client_name must be at most 100 characters, without control characters"
                            .into(),
                    ));
                }
                n.to_owned()
            }
        };
        // A secret nobody ever sees: the row needs one, and `authenticate_client` refuses a
        // public client before looking at it.
        let (raw, _) = new_secret();
        let now = self.clock.now();
        let app = App {
            client_id: new_client_id(),
            owner_id: None,
            builder_profile_id: None,
            kind: AppKind::Public,
            redirect_uris,
            name,
            description: String::new(),
            workspace_restrictions: None,
            active: true,
            sealed_secret: seal::seal(&self.master, SECRET_PURPOSE, raw.as_ref()),
            secret_generation: 1,
            created_at: now,
            updated_at: now,
        };
        let entry = audit::entry(
            now,
            meta,
            None,
            (ActorType::Anonymous, None),
            "app.register",
            Some(app.client_id.clone()),
            true,
        );
        self.store.insert_app(&app, &entry).await?;
        Ok(app)
    }

    /// The public client `client_id`, active; `None` for anything else.
    async fn public_client(&self, client_id: Option<&str>) -> Result<Option<App>, Error> {
        let Some(id) =
            client_id.filter(|c| c.starts_with(super::CLIENT_ID_PREFIX) && c.len() <= 64)
        else {
            return Ok(None);
        };
        Ok(self
            .store
            .app_by_client_id(id)
            .await?
            .filter(|a| a.kind == AppKind::Public && a.active))
    }

    /// Checks an authorization request (RFC 6749 4.1.1 with PKCE and RFC 8707) for the
    /// resource `resource`. `default_scopes` are asked for when the request names none.
    pub async fn check_authorization(
        &self,
        req: &AuthorizeRequest,
        resource: &str,
        default_scopes: &[&str],
    ) -> Result<Authorization, AuthorizeFailure> {
        let app = self
            .public_client(req.client_id.as_deref())
            .await?
            .ok_or_else(|| {
                AuthorizeFailure::Shown(
                    "This client is not registered here (or was removed). Ask the application \
                     to connect again."
                        .into(),
                )
            })?;
        let redirect_uri = match req.redirect_uri.as_deref() {
            Some(uri) if app.redirect_uris.iter().any(|r| redirect_matches(r, uri)) => {
                uri.to_owned()
            }
            Some(_) => {
                return Err(AuthorizeFailure::Shown(
                    "The redirect URI is not one this client registered.".into(),
                ));
            }
            None => {
                return Err(AuthorizeFailure::Shown(
                    "The request names no redirect URI.".into(),
                ));
            }
        };
        let state = req.state.clone().filter(|s| !s.is_empty());
        let back = |code: &'static str, description: &str| AuthorizeFailure::Redirect {
            redirect_uri: redirect_uri.clone(),
            error: OAuthError {
                code,
                description: description.to_owned(),
            },
            state: state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return Err(back("invalid_request", "state is too long"));
        }
        if req.response_type.as_deref() != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        if req.code_challenge_method.as_deref() != Some("S256") {
            return Err(back(
                "invalid_request",
                "PKCE is required, with code_challenge_method S256",
            ));
        }
        let code_challenge = match req.code_challenge.as_deref() {
            Some(c) if pkce_shaped(c) => c.to_owned(),
            _ => {
                return Err(back(
                    "invalid_request",
                    "code_challenge must be 43 to 128 characters of base64url",
                ));
            }
        };
        match req.resource.as_deref() {
            Some(r) if r == resource => {}
            Some(_) => return Err(back("invalid_target", "resource is not served here")),
            None => {
                return Err(back(
                    "invalid_target",
                    "resource is required (the URL of the MCP endpoint)",
                ));
            }
        }
        let scopes = parse_scope(req.scope.as_deref(), default_scopes)
            .map_err(|d| back("invalid_scope", &d))?;
        Ok(Authorization {
            app,
            redirect_uri,
            code_challenge,
            state,
            scopes,
            resource: resource.to_owned(),
        })
    }

    /// The user allowed the client in the workspace of `access`: a personal grant of the
    /// requested scopes the member holds (made by [`Apps::create_grant`], the rules of
    /// `POST W/grants`), replacing the member's earlier grant to this client, and a code for it.
    pub async fn consent(
        &self,
        access: &Access,
        meta: &RequestMeta,
        auth: &Authorization,
    ) -> Result<(Secret, GrantView), Error> {
        let member = Self::granting_member(access)?;
        let held: Vec<String> = auth
            .scopes
            .iter()
            .filter(|s| access.catalog.contains(s) && access.effective.covers(&[s.as_str()]))
            .cloned()
            .collect();
        if held.is_empty() {
            return Err(Error::forbidden(
                "insufficient_scope",
                "You hold none of the scopes this client asks for in this workspace",
            ));
        }
        let earlier = self
            .store
            .list_grants(
                &access.workspace.id,
                &GrantFilter {
                    member_id: Some(member.id.clone()),
                    client_id: Some(auth.app.client_id.clone()),
                },
                &Page::first(10),
            )
            .await?;
        for view in earlier.iter().filter(|v| !v.grant.shared) {
            self.revoke_grant(access, meta, view.grant.id.as_str())
                .await?;
        }
        let grant = self
            .create_grant(access, meta, &auth.app.client_id, &held, false)
            .await?;
        let (code, code_hash) = new_token(CODE_PREFIX);
        let now = self.clock.now();
        self.store
            .insert_oauth_code(&OAuthCode {
                code_hash,
                client_id: auth.app.client_id.clone(),
                grant_id: grant.grant.id.clone(),
                redirect_uri: auth.redirect_uri.clone(),
                code_challenge: auth.code_challenge.clone(),
                resource: auth.resource.clone(),
                created_at: now,
                expires_at: Timestamp::from_millis(now.millis() + CODE_TTL_SECS * 1000),
            })
            .await?;
        Ok((code, grant))
    }

    /// `POST /oauth/token` for the resource `resource`.
    pub async fn token(
        &self,
        meta: &RequestMeta,
        req: &TokenRequest,
        resource: &str,
    ) -> Result<OAuthTokens, OAuthFailure> {
        let app = self
            .public_client(req.client_id.as_deref())
            .await?
            .ok_or_else(|| fail("invalid_client", "Unknown client"))?;
        match req.grant_type.as_deref() {
            Some("authorization_code") => self.redeem_code(meta, &app, req, resource).await,
            Some("refresh_token") => self.redeem_refresh(meta, &app, req).await,
            Some(_) => Err(fail(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(fail("invalid_request", "grant_type is required")),
        }
    }

    async fn redeem_code(
        &self,
        meta: &RequestMeta,
        app: &App,
        req: &TokenRequest,
        resource: &str,
    ) -> Result<OAuthTokens, OAuthFailure> {
        let invalid = || {
            fail(
                "invalid_grant",
                "The authorization code is invalid or expired",
            )
        };
        let presented = req
            .code
            .as_ref()
            .map(Secret::expose)
            .filter(|c| c.starts_with(CODE_PREFIX) && c.len() <= 100)
            .ok_or_else(invalid)?;
        // Taken before anything is compared: a code is spent by any attempt, right or wrong,
        // so a wrong verifier cannot be retried.
        let code = match self
            .store
            .take_oauth_code(&sha256_hex(presented.as_bytes()))
            .await?
        {
            Spent::First(c) => c,
            Spent::Again(c) => {
                self.revoke_replayed(meta, &c.client_id, &c.grant_id)
                    .await?;
                return Err(fail(
                    "invalid_grant",
                    "The authorization code was used already; the grant it made is revoked",
                ));
            }
            Spent::Unknown => return Err(invalid()),
        };
        if code.client_id != app.client_id || code.expires_at <= self.clock.now() {
            return Err(invalid());
        }
        if req.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
            return Err(fail(
                "invalid_grant",
                "redirect_uri must be the one of the authorization request",
            ));
        }
        let verified = req
            .code_verifier
            .as_ref()
            .map(Secret::expose)
            .is_some_and(|v| {
                pkce_shaped(v) && ct_eq(s256(v).as_bytes(), code.code_challenge.as_bytes())
            });
        if !verified {
            return Err(fail(
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            ));
        }
        if req.resource.as_deref().is_some_and(|r| r != code.resource) || code.resource != resource
        {
            return Err(fail(
                "invalid_target",
                "resource must be the one of the authorization request",
            ));
        }
        self.issue_pair(app, &code.grant_id, &code.resource).await
    }

    async fn redeem_refresh(
        &self,
        meta: &RequestMeta,
        app: &App,
        req: &TokenRequest,
    ) -> Result<OAuthTokens, OAuthFailure> {
        let invalid = || fail("invalid_grant", "The refresh token is invalid or expired");
        let presented = req
            .refresh_token
            .as_ref()
            .map(Secret::expose)
            .filter(|t| t.starts_with(REFRESH_PREFIX) && t.len() <= 100)
            .ok_or_else(invalid)?;
        let hash = sha256_hex(presented.as_bytes());
        let current = self
            .store
            .oauth_refresh_by_hash(&hash)
            .await?
            .ok_or_else(invalid)?;
        if current.client_id != app.client_id || current.expires_at <= self.clock.now() {
            return Err(invalid());
        }
        if req
            .resource
            .as_deref()
            .is_some_and(|r| r != current.resource)
        {
            return Err(fail(
                "invalid_target",
                "resource must be the one the refresh token was made for",
            ));
        }
        let (next, next_hash) = new_token(REFRESH_PREFIX);
        let now = self.clock.now();
        let next_row = OAuthRefresh {
            token_hash: next_hash,
            client_id: current.client_id.clone(),
            grant_id: current.grant_id.clone(),
            resource: current.resource.clone(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.millis() + REFRESH_TTL_SECS * 1000),
        };
        match self.store.rotate_oauth_refresh(&hash, &next_row).await? {
            Spent::First(_) => {}
            Spent::Again(t) => {
                self.revoke_replayed(meta, &t.client_id, &t.grant_id)
                    .await?;
                return Err(fail(
                    "invalid_grant",
                    "The refresh token was used already; the grant is revoked",
                ));
            }
            Spent::Unknown => return Err(invalid()),
        }
        let grant = self.live_grant(app, &current.grant_id).await?;
        Ok(OAuthTokens {
            access_token: self.access_token(app, &grant, &current.resource)?,
            refresh_token: next,
            expires_in: TOKEN_TTL_SECS,
            scope: grant.scopes.join(" "),
        })
    }

    /// The grant behind a code or refresh token, if it may still get tokens.
    async fn live_grant(
        &self,
        app: &App,
        grant_id: &GrantId,
    ) -> Result<crate::model::Grant, OAuthFailure> {
        let gone = || fail("invalid_grant", "The grant was revoked");
        let grant = match self.store.grant_by_id(grant_id).await? {
            Some(v) if v.grant.client_id == app.client_id => v.grant,
            _ => return Err(gone()),
        };
        let workspace = self
            .store
            .workspace_by_id(&grant.workspace_id)
            .await?
            .ok_or_else(gone)?;
        if workspace.status == WorkspaceStatus::Suspended {
            return Err(OAuthFailure::Other(crate::workspaces::tenant_suspended()));
        }
        Ok(grant)
    }

    fn access_token(
        &self,
        app: &App,
        grant: &crate::model::Grant,
        resource: &str,
    ) -> Result<Secret, Error> {
        self.inner_token(app, grant, Some(resource))
            .map(|(token, _)| Secret::new(token))
    }

    /// An access token and a first refresh token for a grant.
    async fn issue_pair(
        &self,
        app: &App,
        grant_id: &GrantId,
        resource: &str,
    ) -> Result<OAuthTokens, OAuthFailure> {
        let grant = self.live_grant(app, grant_id).await?;
        let access_token = self.access_token(app, &grant, resource)?;
        let (refresh_token, token_hash) = new_token(REFRESH_PREFIX);
        let now = self.clock.now();
        self.store
            .insert_oauth_refresh(&OAuthRefresh {
                token_hash,
                client_id: app.client_id.clone(),
                grant_id: grant.id.clone(),
                resource: resource.to_owned(),
                created_at: now,
                expires_at: Timestamp::from_millis(now.millis() + REFRESH_TTL_SECS * 1000),
            })
            .await?;
        Ok(OAuthTokens {
            access_token,
            refresh_token,
            expires_in: TOKEN_TTL_SECS,
            scope: grant.scopes.join(" "),
        })
    }

    /// A code or refresh token came back a second time: someone holds a copy, so the grant
    /// (and with it every token made from it) is revoked.
    async fn revoke_replayed(
        &self,
        meta: &RequestMeta,
        client_id: &str,
        grant_id: &GrantId,
    ) -> Result<(), Error> {
        let Some(view) = self.store.grant_by_id(grant_id).await? else {
            return Ok(());
        };
        self.delete_grant_as_client(meta, client_id, &view).await
    }

    /// Deletes a grant on behalf of its own client (a revocation or a replay), audited as the
    /// app.
    async fn delete_grant_as_client(
        &self,
        meta: &RequestMeta,
        client_id: &str,
        view: &GrantView,
    ) -> Result<(), Error> {
        let g = &view.grant;
        let entry: AuditEntry = audit::entry(
            self.clock.now(),
            meta,
            Some(g.workspace_id.clone()),
            (ActorType::App, Some(client_id.to_owned())),
            "grant.revoke",
            Some(g.id.to_string()),
            true,
        )
        .with_event(OutboxEvent::new(
            "grant.revoked",
            super::grant_event(g),
            g.workspace_id.clone(),
        ));
        self.store
            .delete_grant(&g.workspace_id, &g.id, &entry)
            .await?;
        Ok(())
    }

    /// RFC 7009: revokes the grant behind a refresh token or an access token of `resource`
    /// (the grant is the authorization; every token of it stops). Unknown tokens, and tokens
    /// of another client, change nothing and are not told apart.
    pub async fn revoke_token(
        &self,
        meta: &RequestMeta,
        client_id: Option<&str>,
        token: &str,
        resource: &str,
    ) -> Result<(), Error> {
        let grant_id = if token.starts_with(REFRESH_PREFIX) && token.len() <= 100 {
            match self
                .store
                .oauth_refresh_by_hash(&sha256_hex(token.as_bytes()))
                .await?
            {
                Some(t) => t.grant_id,
                None => return Ok(()),
            }
        } else {
            match self.authenticate(token, Some(resource)).await {
                Ok(session) => session.grant_id,
                Err(Error::Unavailable) => return Err(Error::Unavailable),
                Err(_) => return Ok(()),
            }
        };
        let Some(view) = self.store.grant_by_id(&grant_id).await? else {
            return Ok(());
        };
        if client_id.is_some_and(|c| c != view.grant.client_id) {
            return Ok(());
        }
        let client = view.grant.client_id.clone();
        self.delete_grant_as_client(meta, &client, &view).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_requests_debug_hides_its_secrets() {
        let req = TokenRequest {
            grant_type: Some("authorization_code".into()),
            code: Some(Secret::new("krc_code-value".into())),
            code_verifier: Some(Secret::new("verifier-value".into())),
            refresh_token: Some(Secret::new("krr_refresh-value".into())),
            ..TokenRequest::default()
        };
        let shown = format!("{req:?}");
        assert!(shown.contains("authorization_code"), "{shown}");
        for secret in ["code-value", "verifier-value", "refresh-value"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn redirect_uris_are_checked() {
        for good in [
            "https://client.example/cb",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:33418/callback",
            "http://localhost:3000/cb?x=1",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
        ] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "http://client.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://good.example@evil.example/cb",
            "https://client.example/cb#frag",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "/relative",
            "https:///nohost",
            "HTTPS://client.example/cb",
            "https://client.example/a b",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_redirects_match_on_any_port_and_nothing_else_does() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_matches(reg, "http://127.0.0.1:49152/callback"));
        assert!(redirect_matches(reg, "http://127.0.0.1/callback"));
        assert!(redirect_matches(
            "http://localhost:3000/cb",
            "http://localhost:4000/cb"
        ));
        assert!(redirect_matches("http://[::1]/cb", "http://[::1]:9/cb"));
        for other in [
            "http://127.0.0.1:49152/callback2",
            "http://127.0.0.1:49152/callback?x=1",
            "http://localhost:49152/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:80a/callback",
            "https://127.0.0.1/callback",
        ] {
            assert!(!redirect_matches(reg, other), "{other}");
        }
        let https = "https://client.example/cb";
        assert!(redirect_matches(https, https));
        assert!(!redirect_matches(https, "https://client.example:8443/cb"));
        assert!(!redirect_matches(https, "https://client.example/cb/"));
    }

    #[test]
    fn scopes_default_and_are_shaped() {
        assert_eq!(
            parse_scope(None, &["keys:read"]).unwrap(),
            vec!["keys:read"]
        );
        assert_eq!(
            parse_scope(Some("keys:read  keys:write keys:read"), &[]).unwrap(),
            vec!["keys:read", "keys:write"]
        );
        assert!(parse_scope(Some("openid"), &[]).is_err());
        assert!(parse_scope(Some("Keys:read"), &[]).is_err());
        let many: Vec<String> = (0..51).map(|i| format!("r{i}:read")).collect();
        assert!(parse_scope(Some(&many.join(" ")), &[]).is_err());
    }

    proptest::proptest! {
        /// Whatever arrives as a redirect URI, the checks answer without panicking, and a URI
        /// always matches itself.
        #[test]
        fn redirect_checks_never_panic(s in "\\PC{0,80}") {
            let _ = check_redirect_uri(&s);
            proptest::prop_assert!(redirect_matches(&s, &s));
            let _ = redirect_matches("http://127.0.0.1/cb", &s);
            let _ = parse_scope(Some(&s), &[]);
        }
    }
}
