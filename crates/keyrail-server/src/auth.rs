//! Turning a request's credentials into a principal: the `Authorization` header (Bearer or
//! Basic) or the `keyrail_token` cookie (with the CSRF double-submit for writes), the
//! failed-authentication IP block, and the client's address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

use keyrail_core::keys::verify::CachedKey;

use crate::keyauth::{self, RateSlot};
use keyrail_core::apps::AppSession;
use keyrail_core::audit::RequestMeta;
use keyrail_core::crypto::jwe;
use keyrail_core::crypto::token;
use keyrail_core::identity::UserSession;
use keyrail_core::limits::Rate;
use keyrail_core::ratelimit::Decision;

use crate::error::ApiError;
use crate::redis_limits::Gated;
use crate::request_log;
use crate::state::AppState;

pub const TOKEN_COOKIE: &str = "keyrail_token";
pub const CSRF_COOKIE: &str = "keyrail_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const REFRESH_COOKIE: &str = "keyrail_refresh";

/// The session cookies' names. Served over HTTPS they carry the `__Host-` prefix, which browsers
/// accept only from a secure origin, for the whole host, without `Domain`: a sibling subdomain
/// or a plain-HTTP man in the middle cannot plant or shadow them.
#[derive(Debug, Clone, Copy)]
pub struct CookieNames {
    pub token: &'static str,
    pub csrf: &'static str,
    /// The console's refresh token (HttpOnly); the API hands refresh tokens out in bodies.
    pub refresh: &'static str,
}

impl CookieNames {
    pub fn for_state(state: &AppState) -> Self {
        if state.config.public_url.is_https() {
            Self {
                token: "__Host-keyrail_token",
                csrf: "__Host-keyrail_csrf",
                refresh: "__Host-keyrail_refresh",
            }
        } else {
            Self {
                token: TOKEN_COOKIE,
                csrf: CSRF_COOKIE,
                refresh: REFRESH_COOKIE,
            }
        }
    }
}

/// The CSRF token of a session: an HMAC of its id under a key only the server holds, so a value
/// an attacker planted in both the cookie and the header does not pass, and neither does
/// another session's token.
pub fn csrf_token(state: &AppState, session_id: &str) -> String {
    token::keyed_tag(&state.master_key, "csrf", session_id.as_bytes())
}

/// The peer address of the connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(parts)))
    }
}

pub fn client_ip(parts: &Parts) -> IpAddr {
    client_ip_of(&parts.extensions, &parts.headers)
}

/// [`client_ip`] from a request's extensions and headers (for the middleware, which holds
/// the whole request).
pub fn client_ip_of(extensions: &axum::http::Extensions, headers: &HeaderMap) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    match extensions.get::<crate::proxies::TrustedProxies>() {
        Some(trusted) => trusted.client(peer, headers),
        None => peer,
    }
}

/// The key that per-IP limits and the failed-auth block count under: the address itself for
/// IPv4, the /64 prefix for IPv6 (one host usually holds a whole /64, so counting single
/// addresses would let it rotate past every limit).
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Where the request came from, for audit entries.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Meta(request_meta(parts)))
    }
}

/// Where a request came from (client IP, user agent), as audit entries record it.
pub fn request_meta(parts: &Parts) -> RequestMeta {
    RequestMeta {
        ip: Some(client_ip(parts).to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Reads one cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

enum Presented<'a> {
    Bearer(&'a str),
    Basic(&'a str),
    Cookie(&'a str),
}

fn presented<'h>(headers: &'h HeaderMap, token_cookie: &str) -> Result<Option<Presented<'h>>, ()> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ())?;
        let (scheme, rest) = value.split_once(' ').ok_or(())?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(());
        }
        return if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Some(Presented::Bearer(rest)))
        } else if scheme.eq_ignore_ascii_case("basic") {
            Ok(Some(Presented::Basic(rest)))
        } else {
            Err(())
        };
    }
    Ok(cookie(headers, token_cookie)
        .filter(|v| !v.is_empty())
        .map(Presented::Cookie))
}

fn missing() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
        "Missing or invalid API key",
    )
}

fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|&b| b == b'.').count() == 2
}

/// The failed-authentication block of the client's address (API.md, Credentials).
pub struct FailedAuth<'a> {
    state: &'a AppState,
    key: String,
    /// With `redis_url`: whether the block still has to be checked in Redis, which
    /// [`FailedAuth::principal_limit`] does in the same round trip as the limit.
    deferred: bool,
}

impl<'a> FailedAuth<'a> {
    /// 429 with `Retry-After` while the client's address is blocked (on any node, with
    /// `redis_url`).
    pub async fn check(state: &'a AppState, parts: &Parts) -> Result<Self, ApiError> {
        let key = ip_key(client_ip(parts));
        let now = state.clock.now();
        let blocked = match &state.shared_failures {
            Some(shared) => shared
                .is_blocked(&key, now)
                .await
                .map_err(|_| ApiError::from(keyrail_core::Error::Unavailable))?,
            None => state.failures.is_blocked(&key, now),
        };
        Self::open(state, key, blocked, false)
    }

    /// As [`FailedAuth::check`], asking Redis nothing yet: a block this node knows of answers
    /// 429 at once; one decided elsewhere is found by [`FailedAuth::principal_limit`], which
    /// the caller must then call before anything is spent for the request.
    fn check_deferred(state: &'a AppState, parts: &Parts) -> Result<Self, ApiError> {
        let key = ip_key(client_ip(parts));
        let now = state.clock.now();
        let (blocked, deferred) = match &state.shared_failures {
            Some(shared) => (shared.is_blocked_here(&key, now), true),
            None => (state.failures.is_blocked(&key, now), false),
        };
        Self::open(state, key, blocked, deferred)
    }

    fn open(
        state: &'a AppState,
        key: String,
        blocked: Option<u64>,
        deferred: bool,
    ) -> Result<Self, ApiError> {
        if let Some(retry) = blocked {
            return Err(blocked_answer(retry));
        }
        Ok(Self {
            state,
            key,
            deferred,
        })
    }

    /// The per-principal limit `limit_key` at `rate`; with a deferred check, together with the
    /// block (one Redis round trip): a blocked address gets 429 and spends nothing.
    async fn principal_limit(&self, limit_key: &str, rate: Rate) -> Result<Decision, ApiError> {
        let state = self.state;
        let now = state.clock.now();
        let unavailable = |_| ApiError::from(keyrail_core::Error::Unavailable);
        match (&state.shared_failures, self.deferred) {
            (Some(shared), true) => {
                match shared
                    .check_gated(&self.key, limit_key, rate, 1, now)
                    .await
                    .map_err(unavailable)?
                {
                    Gated::Decided(d) => Ok(d),
                    Gated::Blocked(retry) => Err(blocked_answer(retry)),
                }
            }
            _ => state
                .limiter
                .check(limit_key, rate, 1, now)
                .await
                .map_err(unavailable),
        }
    }

    /// Counts a failed credential and gives back its own answer, even for the failure that
    /// starts the block: the block applies from the next request on. A source that another
    /// node had blocked already gets the block's 429.
    pub async fn fail(&self, e: ApiError) -> ApiError {
        let now = self.state.clock.now();
        match &self.state.shared_failures {
            // A Redis that does not answer is handled (and logged) inside.
            Some(shared) => {
                if let Ok(Some(b)) = shared.record_failure(&self.key, now).await
                    && b.already
                {
                    return blocked_answer(b.retry_after);
                }
            }
            None => {
                self.state.failures.record_failure(&self.key, now);
            }
        }
        e
    }
}

fn blocked_answer(retry_after: u64) -> ApiError {
    ApiError::for_status(StatusCode::TOO_MANY_REQUESTS).retry_after(retry_after)
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    User(UserSession),
    Key(Arc<CachedKey>),
    /// An app's inner token, checked against its grant and app.
    App(AppSession),
}

/// Any authenticated caller.
pub struct Authenticated {
    pub principal: Principal,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state, KeyCheck::default()).await?;
        Ok(Self { principal })
    }
}

/// What an API key must also pass, checked before its rate limit and credits are spent
/// (forward-auth asks for scopes and a workspace; the API checks scopes per endpoint).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyCheck<'a> {
    pub required: &'a [&'a str],
    /// A key of another workspace is `invalid_credentials`.
    pub workspace: Option<&'a str>,
}

/// Turns the request's credential into a principal: the failed-authentication block, the
/// credential itself (JWT, app token or API key, which `key_check` also applies to), the global
/// limit per principal, and the CSRF check of cookie writes.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
    key_check: KeyCheck<'_>,
) -> Result<Principal, ApiError> {
    authenticate_with(parts, state, key_check, CsrfFrom::Header).await
}

/// Where a cookie-authenticated write carries its CSRF token.
#[derive(Debug, Clone, Copy)]
pub enum CsrfFrom<'a> {
    /// The `X-CSRF-Token` header (the API).
    Header,
    /// A field of the posted form (the console's plain HTML forms).
    Form(&'a [u8]),
}

/// [`authenticate`], with the CSRF token of a cookie write taken from `csrf`.
pub async fn authenticate_with(
    parts: &Parts,
    state: &AppState,
    key_check: KeyCheck<'_>,
    csrf: CsrfFrom<'_>,
) -> Result<Principal, ApiError> {
    authenticate_for(parts, state, key_check, csrf, Audience::Api).await
}

/// The credentials of a resource served beside the API (`/mcp`): an API key, or an OAuth access
/// token made for `resource` (RFC 8707). Session tokens, cookies and the API's app tokens are
/// refused there, as the resource's tokens are refused by the API.
pub async fn authenticate_resource(
    parts: &Parts,
    state: &AppState,
    resource: &str,
) -> Result<Principal, ApiError> {
    authenticate_for(
        parts,
        state,
        KeyCheck::default(),
        CsrfFrom::Header,
        Audience::Resource(resource),
    )
    .await
}

/// Whom a token must have been made for.
#[derive(Clone, Copy)]
enum Audience<'a> {
    /// The API (and the console): sessions, app tokens without an audience, keys.
    Api,
    /// A resource of its own: keys, and app tokens whose audience is this.
    Resource(&'a str),
}

async fn authenticate_for(
    parts: &Parts,
    state: &AppState,
    key_check: KeyCheck<'_>,
    csrf: CsrfFrom<'_>,
    audience: Audience<'_>,
) -> Result<Principal, ApiError> {
    {
        let guard = FailedAuth::check_deferred(state, parts)?;
        let names = CookieNames::for_state(state);
        let credential = match presented(&parts.headers, names.token) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(missing()),
            Err(()) => return Err(guard.fail(missing()).await),
        };
        let (raw, via_cookie) = match credential {
            Presented::Bearer(t) => (t, false),
            Presented::Basic(k) => (k, false),
            Presented::Cookie(t) => (t, true),
        };
        let token_audience = match audience {
            Audience::Api => None,
            // Only a header's credential: a browser sends cookies on its own.
            Audience::Resource(_) if via_cookie => return Err(missing()),
            Audience::Resource(r) => Some(r),
        };
        let principal = if looks_like_jwt(raw) {
            if token_audience.is_some() {
                return Err(guard
                    .fail(keyrail_core::Error::invalid_token().into())
                    .await);
            }
            match state.identity.authenticate(raw).await {
                Ok(session) => {
                    request_log::note(|| request_log::Who::User(session.user_id.clone()));
                    Principal::User(session)
                }
                Err(keyrail_core::Error::Unavailable) => {
                    return Err(keyrail_core::Error::Unavailable.into());
                }
                Err(e) => return Err(guard.fail(e.into()).await),
            }
        } else if !via_cookie && jwe::looks_like_dir_jwe(raw) {
            match state.apps.authenticate(raw, token_audience).await {
                Ok(app) => {
                    request_log::note(|| request_log::Who::App {
                        grant: app.grant_id.clone(),
                        workspace: app.workspace_id.clone(),
                    });
                    Principal::App(app)
                }
                Err(keyrail_core::Error::Unavailable) => {
                    return Err(keyrail_core::Error::Unavailable.into());
                }
                Err(e) => return Err(guard.fail(e.into()).await),
            }
        } else {
            // With `redis_url`, a block decided on another node and not yet heard of here is
            // found with the per-principal limit below, after the key's own limit and credits
            // were spent: one request per node and block, from a blocked address, with a valid
            // key. Checking the block first would cost every request a round trip.
            let v = state
                .verifier
                .verify(raw, key_check.required, 1, key_check.workspace)
                .await?;
            if let Some(key) = &v.key {
                // The key is who asked, whether or not it passes.
                request_log::note(|| request_log::Who::Key(key.clone()));
            }
            if let (Some(slot), Some(rate)) = (parts.extensions.get::<RateSlot>(), v.rate) {
                slot.put(rate);
            }
            if let Some(e) = keyauth::failure(&v) {
                // Only failed credentials count toward the IP block, not limits or suspension.
                return Err(if e.status == StatusCode::UNAUTHORIZED {
                    guard.fail(e).await
                } else {
                    e
                });
            }
            match v.key {
                Some(key) => Principal::Key(key),
                None => return Err(guard.fail(missing()).await),
            }
        };
        // The global limit per principal (`limits.global_per_principal`).
        let limit_key = match &principal {
            Principal::User(s) => format!("global:{}", s.user_id),
            Principal::Key(k) => format!("global:{}", k.key.id),
            Principal::App(a) => format!("global:{}", a.grant_id),
        };
        let decision = guard
            .principal_limit(&limit_key, state.config.limits.global_per_principal)
            .await?;
        if !decision.allowed {
            return Err(crate::limiter::too_many(&decision));
        }
        if via_cookie && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let header_value = match csrf {
                CsrfFrom::Header => parts
                    .headers
                    .get(CSRF_HEADER)
                    .map(HeaderValue::as_bytes)
                    .unwrap_or(b""),
                CsrfFrom::Form(value) => value,
            };
            let bound = match &principal {
                Principal::User(session) => token::ct_eq(
                    csrf_token(state, &session.session_id).as_bytes(),
                    header_value,
                ),
                Principal::Key(_) | Principal::App(_) => false,
            };
            if !bound {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "CSRF token missing or invalid",
                ));
            }
        }
        Ok(principal)
    }
}

/// A logged-in person (access token or cookie). API keys and app tokens get 403.
pub struct UserAuth(pub UserSession);

impl FromRequestParts<AppState> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated { principal } = Authenticated::from_request_parts(parts, state).await?;
        match principal {
            Principal::User(session) => Ok(Self(session)),
            Principal::Key(_) | Principal::App(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Only a logged-in user can do this; API keys and app tokens cannot",
            )),
        }
    }
}

/// `Set-Cookie` values for a login: the access token (HttpOnly) and the session's CSRF token
/// (readable by the page's script, sent back as `X-CSRF-Token`).
pub fn login_cookies(
    state: &AppState,
    access_token: &str,
    session_id: &str,
    max_age: i64,
) -> [HeaderValue; 2] {
    let names = CookieNames::for_state(state);
    [
        set_cookie(state, names.token, access_token, max_age, true),
        set_cookie(
            state,
            names.csrf,
            &csrf_token(state, session_id),
            max_age,
            false,
        ),
    ]
}

/// The console's refresh-token cookie (HttpOnly), which lets a page outlive its access token.
pub fn refresh_cookie(state: &AppState, refresh_token: &str, max_age: i64) -> HeaderValue {
    let names = CookieNames::for_state(state);
    set_cookie(state, names.refresh, refresh_token, max_age, true)
}

/// `Set-Cookie` values that clear the session cookies.
pub fn clear_cookies(state: &AppState) -> [HeaderValue; 3] {
    let names = CookieNames::for_state(state);
    [
        set_cookie(state, names.token, "", 0, true),
        set_cookie(state, names.csrf, "", 0, false),
        set_cookie(state, names.refresh, "", 0, true),
    ]
}

/// One session cookie: host-only, whole path, `SameSite=Strict`, `Secure` unless on plain-HTTP
/// dev mode (the same attributes to set and to clear, or a browser keeps the old one).
fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: i64,
    http_only: bool,
) -> HeaderValue {
    let secure = if state.config.public_url.is_https() || !state.config.dev {
        "; Secure"
    } else {
        ""
    };
    let http_only = if http_only { "; HttpOnly" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}{http_only}; SameSite=Strict{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever arrives in `Authorization` or `Cookie`, the parser answers without panicking.
        #[test]
        fn credential_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            for name in [header::AUTHORIZATION, header::COOKIE] {
                if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                    let mut h = HeaderMap::new();
                    h.insert(name, v);
                    let _ = presented(&h, TOKEN_COOKIE);
                    let _ = cookie(&h, TOKEN_COOKIE);
                }
            }
            let s = String::from_utf8_lossy(&bytes);
            let _ = looks_like_jwt(&s);
        }
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key("203.0.113.7".parse().unwrap()), "203.0.113.7");
        assert_eq!(ip_key("::ffff:203.0.113.7".parse().unwrap()), "203.0.113.7");
    }

    #[test]
    fn parses_credentials() {
        let mut h = HeaderMap::new();
        assert!(matches!(presented(&h, TOKEN_COOKIE), Ok(None)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(matches!(
            presented(&h, TOKEN_COOKIE),
            Ok(Some(Presented::Bearer("abc")))
        ));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic kr_x"),
        );
        assert!(matches!(
            presented(&h, TOKEN_COOKIE),
            Ok(Some(Presented::Basic("kr_x")))
        ));
        for bad in ["Bearer", "Bearer ", "Token abc", "abc"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(presented(&h, TOKEN_COOKIE).is_err(), "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; keyrail_token=eyJx.y.z; c=d"),
        );
        assert!(matches!(
            presented(&h, TOKEN_COOKIE),
            Ok(Some(Presented::Cookie("eyJx.y.z")))
        ));
        assert_eq!(cookie(&h, "c"), Some("d"));
        assert_eq!(cookie(&h, "keyrail"), None);
    }
}
