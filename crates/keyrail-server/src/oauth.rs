//! The OAuth 2.1 authorization server that `/mcp` points its clients at (API.md "MCP and OAuth
//! 2.1"): the metadata documents (RFC 9728, RFC 8414), dynamic registration (RFC 7591), the
//! token endpoint and revocation (RFC 7009). The authorization endpoint is a console page
//! (`console::oauth`), since a person consents there. The rules are `keyrail_core::apps::oauth`.
//!
//! These endpoints answer errors in RFC 6749's shape, which OAuth clients read:
//! `{"error": "<code>", "error_description": "...", "code": "<code>"}` (the contract's `code`
//! is there too, with the same value).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyrail_core::apps::oauth::{
    OAuthError, OAuthFailure, OAuthTokens, Registration, TokenRequest,
};
use keyrail_core::secret::Secret;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{FailedAuth, Meta};
use crate::error::{ApiError, ErrorBody};
use crate::iplimit::ip_limited;
use crate::state::AppState;

/// The scopes an MCP client is offered, and gets when it asks for none: what the tools need.
pub const MCP_SCOPES: &[&str] = &[
    "keys:read",
    "keys:write",
    "keys:delete",
    "members:read",
    "members:write",
    "apps:read",
    "apps:write",
    "audit:read",
];

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(protected_resource))
        .routes(routes!(protected_resource_mcp))
        .routes(routes!(authorization_server))
        .merge(ip_limited(
            OpenApiRouter::new().routes(routes!(register)),
            state,
            "oauth_register",
            state.config.limits.oauth_register_per_ip,
        ))
        .routes(routes!(token))
        .routes(routes!(revoke));
    router.layer(axum::middleware::from_fn(cors))
}

/// CORS for what a browser-based MCP client (the MCP Inspector, a web IDE) calls from its own
/// origin: the metadata, registration, tokens, revocation and `/mcp`. Any origin may, since
/// nothing here reads a cookie: the credential is a bearer token the page itself holds, or none.
/// A preflight is answered here.
pub async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let preflight = req.method() == axum::http::Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version"),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Authorization, Content-Type, Accept, Mcp-Protocol-Version, Mcp-Session-Id, Last-Event-ID",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

/// The authorization server's issuer: the public URL.
pub fn issuer(state: &AppState) -> &str {
    state.config.public_url.as_str()
}

fn json_response(status: StatusCode, body: &Value, no_store: bool) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if no_store {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// An OAuth error: 401 for `invalid_client` (RFC 6749 5.2), else 400.
fn protocol_error(e: &OAuthError) -> Response {
    let status = if e.code == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    json_response(
        status,
        &json!({"error": e.code, "error_description": e.description, "code": e.code}),
        true,
    )
}

fn failure(f: OAuthFailure) -> Response {
    match f {
        OAuthFailure::Protocol(e) => protocol_error(&e),
        OAuthFailure::Other(e) => ApiError::from(e).into_response(),
    }
}

fn resource_metadata(state: &AppState) -> Value {
    json!({
        "resource": crate::mcp::resource(state),
        "authorization_servers": [issuer(state)],
        "scopes_supported": MCP_SCOPES,
        "bearer_methods_supported": ["header"],
        "resource_name": "keyrail",
        "resource_documentation": format!("{}/docs", issuer(state)),
    })
}

/// RFC 9728 metadata of the protected resource `/mcp`: where its tokens come from.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", tag = "oauth",
    responses((status = 200, description = "`{\"resource\": \"<public_url>/mcp\", \"authorization_servers\": [\"<public_url>\"], \"scopes_supported\", \"bearer_methods_supported\": [\"header\"]}`", content_type = "application/json", body = Object)))]
pub async fn protected_resource(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &resource_metadata(&state), false)
}

/// The same document at the path RFC 9728 3.1 derives from the resource `<public_url>/mcp`.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/mcp", tag = "oauth",
    responses((status = 200, description = "As `/.well-known/oauth-protected-resource`", content_type = "application/json", body = Object)))]
pub async fn protected_resource_mcp(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &resource_metadata(&state), false)
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, description = "`{\"issuer\", \"authorization_endpoint\", \"token_endpoint\", \"registration_endpoint\", \"revocation_endpoint\", \"code_challenge_methods_supported\": [\"S256\"], ...}`", content_type = "application/json", body = Object)))]
pub async fn authorization_server(State(state): State<AppState>) -> Response {
    let base = issuer(&state);
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "registration_endpoint": format!("{base}/oauth/register"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": MCP_SCOPES,
            "authorization_response_iss_parameter_supported": true,
            "service_documentation": format!("{base}/docs"),
        }),
        false,
    )
}

/// RFC 7591 client metadata (unknown fields are ignored, as 2 says).
#[derive(ToSchema)]
#[schema(example = json!({
    "client_name": "Claude",
    "redirect_uris": ["http://127.0.0.1:33418/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none"
}))]
#[allow(dead_code)]
pub struct RegisterIn {
    /// Shown on the consent page; at most 100 characters, no control characters (default
    /// `MCP client`).
    #[schema(max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    client_name: Option<String>,
    /// 1 to 10: `https://`, `http://` on a loopback host (any port matches), or a private-use
    /// scheme. No fragment, no userinfo.
    #[schema(min_items = 1, max_items = 10)]
    redirect_uris: Vec<String>,
    #[schema(max_items = 4)]
    grant_types: Option<Vec<GrantTypeName>>,
    #[schema(max_items = 4)]
    response_types: Option<Vec<ResponseTypeName>>,
    /// Public clients only.
    token_endpoint_auth_method: Option<AuthMethodName>,
}

/// A grant type a client may use.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GrantTypeName {
    AuthorizationCode,
    RefreshToken,
}

/// The response type of the authorization endpoint.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ResponseTypeName {
    Code,
}

/// How a client authenticates at the token endpoint: not at all (a public client).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AuthMethodName {
    None,
}

/// The registered client.
#[derive(Serialize, ToSchema)]
pub struct RegisterOut {
    #[schema(example = "kr_app_4k2m9q8w7e6r5t4y3u2i1o0p")]
    client_id: String,
    /// Unix seconds.
    client_id_issued_at: i64,
    client_name: String,
    redirect_uris: Vec<String>,
    grant_types: [&'static str; 2],
    response_types: [&'static str; 1],
    token_endpoint_auth_method: &'static str,
}

/// An OAuth error (RFC 6749 5.2): `error` is the code.
#[derive(Serialize, ToSchema)]
pub struct OAuthErrorBody {
    #[schema(example = "invalid_grant")]
    error: String,
    error_description: String,
    /// The same as `error`.
    code: String,
}

fn string_list(v: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, OAuthFailure> {
    let bad = || {
        OAuthFailure::Protocol(OAuthError {
            code: "invalid_client_metadata",
            description: format!("{field} must be a list of strings"),
        })
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= 10 => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

fn string_field(v: Option<&Value>, field: &str) -> Result<Option<String>, OAuthFailure> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(OAuthFailure::Protocol(OAuthError {
            code: "invalid_client_metadata",
            description: format!("{field} must be a string"),
        })),
    }
}

fn registration(body: &[u8]) -> Result<Registration, OAuthFailure> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        OAuthFailure::Protocol(OAuthError {
            code: "invalid_client_metadata",
            description: "The body must be a JSON object of client metadata".into(),
        })
    })?;
    let Value::Object(map) = value else {
        return Err(OAuthFailure::Protocol(OAuthError {
            code: "invalid_client_metadata",
            description: "The body must be a JSON object of client metadata".into(),
        }));
    };
    Ok(Registration {
        client_name: string_field(map.get("client_name"), "client_name")?,
        redirect_uris: string_list(map.get("redirect_uris"), "redirect_uris")?.unwrap_or_default(),
        token_endpoint_auth_method: string_field(
            map.get("token_endpoint_auth_method"),
            "token_endpoint_auth_method",
        )?,
        grant_types: string_list(map.get("grant_types"), "grant_types")?,
        response_types: string_list(map.get("response_types"), "response_types")?,
    })
}

/// RFC 7591 dynamic registration of a public client (an app of kind `public`, with no secret).
/// Limited per client IP (`limits.oauth_register_per_ip`) and audited (`app.register`).
#[utoipa::path(post, path = "/oauth/register", tag = "oauth",
    request_body(content = RegisterIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = RegisterOut),
        (status = 400, description = "`invalid_client_metadata` or `invalid_redirect_uri`", body = OAuthErrorBody),
        (status = 429, description = "Too many registrations from this address", body = ErrorBody),
    ))]
pub async fn register(State(state): State<AppState>, Meta(meta): Meta, body: Bytes) -> Response {
    let reg = match registration(&body) {
        Ok(r) => r,
        Err(f) => return failure(f),
    };
    match state.apps.register_client(&meta, reg).await {
        Ok(app) => {
            let out = RegisterOut {
                client_id: app.client_id,
                client_id_issued_at: app.created_at.millis() / 1000,
                client_name: app.name,
                redirect_uris: app.redirect_uris,
                grant_types: ["authorization_code", "refresh_token"],
                response_types: ["code"],
                token_endpoint_auth_method: "none",
            };
            json_response(
                StatusCode::CREATED,
                &serde_json::to_value(out).unwrap_or_default(),
                true,
            )
        }
        Err(f) => failure(f),
    }
}

/// A form body's fields (`application/x-www-form-urlencoded`); a field given twice is an error
/// (RFC 6749 3.2).
fn form_fields(body: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, OAuthFailure> {
    let mut out: Vec<Option<String>> = vec![None; names.len()];
    for (k, v) in form_urlencoded::parse(body) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_some() {
                return Err(OAuthFailure::Protocol(OAuthError {
                    code: "invalid_request",
                    description: format!("{k} is given more than once"),
                }));
            }
            out[i] = Some(v.into_owned());
        }
    }
    Ok(out)
}

/// The token form (RFC 6749 4.1.3 and 6).
#[derive(ToSchema)]
#[schema(example = json!({
    "grant_type": "authorization_code",
    "client_id": "kr_app_4k2m9q8w7e6r5t4y3u2i1o0p",
    "code": "krc_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5",
    "redirect_uri": "http://127.0.0.1:33418/callback",
    "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "resource": "https://keyrail.example.com/mcp"
}))]
#[allow(dead_code)]
pub struct TokenIn {
    grant_type: GrantTypeName,
    client_id: String,
    /// authorization_code: the code from the redirect.
    code: Option<String>,
    /// authorization_code: the redirect URI of the authorization request.
    redirect_uri: Option<String>,
    /// authorization_code: the PKCE verifier.
    code_verifier: Option<String>,
    /// refresh_token: the refresh token (it is spent; the answer holds the next one).
    refresh_token: Option<String>,
    /// `<public_url>/mcp` (RFC 8707); when given, it must be the authorization's.
    resource: Option<String>,
}

/// Tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    /// For `Authorization: Bearer` on `/mcp` only; 5 minutes.
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    #[schema(example = 300)]
    expires_in: i64,
    /// Single use: each refresh answers with the next. A spent one presented again revokes the
    /// grant.
    refresh_token: String,
    /// The grant's scopes, space-separated.
    scope: String,
}

/// The token endpoint: `authorization_code` (with the PKCE verifier) and `refresh_token`.
/// Public clients: no client authentication, the `client_id` is named. A failed code or refresh
/// token counts toward the client address's failed-authentication block.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens (`Cache-Control: no-store`)", body = TokenOut),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `invalid_target`, `unsupported_grant_type`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody),
        (status = 403, description = "`tenant_suspended`", body = ErrorBody),
        (status = 429, description = "The client's address is blocked for failed attempts", body = ErrorBody),
    ))]
pub async fn token(
    State(state): State<AppState>,
    Meta(meta): Meta,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let guard = match FailedAuth::check(&state, &parts).await {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let fields = match form_fields(
        &body,
        &[
            "grant_type",
            "code",
            "redirect_uri",
            "client_id",
            "code_verifier",
            "refresh_token",
            "resource",
        ],
    ) {
        Ok(f) => f,
        Err(f) => return failure(f),
    };
    let [
        grant_type,
        code,
        redirect_uri,
        client_id,
        code_verifier,
        refresh_token,
        resource,
    ] = <[Option<String>; 7]>::try_from(fields).unwrap_or_default();
    let req = TokenRequest {
        grant_type,
        code: code.map(Secret::new),
        redirect_uri,
        client_id,
        code_verifier: code_verifier.map(Secret::new),
        refresh_token: refresh_token.map(Secret::new),
        resource,
    };
    match state
        .apps
        .token(&meta, &req, &crate::mcp::resource(&state))
        .await
    {
        Ok(tokens) => token_answer(tokens),
        Err(OAuthFailure::Protocol(e)) if matches!(e.code, "invalid_grant" | "invalid_client") => {
            let answer = protocol_error(&e);
            let blocked = guard
                .fail(ApiError::for_status(StatusCode::UNAUTHORIZED))
                .await;
            if blocked.status == StatusCode::TOO_MANY_REQUESTS {
                return blocked.into_response();
            }
            answer
        }
        Err(f) => failure(f),
    }
}

fn token_answer(t: OAuthTokens) -> Response {
    let out = TokenOut {
        access_token: t.access_token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.expose().to_owned(),
        scope: t.scope,
    };
    json_response(
        StatusCode::OK,
        &serde_json::to_value(out).unwrap_or_default(),
        true,
    )
}

/// The revocation form (RFC 7009 2.1).
#[derive(ToSchema)]
#[schema(example = json!({
    "token": "krr_cmVmcmVzaHRva2VuZXhhbXBsZW9ubHlub3RyZWFs",
    "token_type_hint": "refresh_token",
    "client_id": "kr_app_4k2m9q8w7e6r5t4y3u2i1o0p"
}))]
#[allow(dead_code)]
pub struct RevokeIn {
    /// A refresh token or an access token.
    #[schema(min_length = 1, max_length = 4096)]
    token: String,
    /// `refresh_token` or `access_token` (a hint; both are tried).
    token_type_hint: Option<String>,
    client_id: Option<String>,
}

/// RFC 7009 revocation: the grant behind the token is revoked, so every token of it stops at
/// once. 200 whether or not the token was known.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content = RevokeIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or not a token of this server"),
        (status = 400, description = "`invalid_request`: no token", body = OAuthErrorBody),
    ))]
pub async fn revoke(State(state): State<AppState>, Meta(meta): Meta, body: Bytes) -> Response {
    let fields = match form_fields(&body, &["token", "client_id"]) {
        Ok(f) => f,
        Err(f) => return failure(f),
    };
    let [token, client_id] = <[Option<String>; 2]>::try_from(fields).unwrap_or_default();
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 4096) else {
        return protocol_error(&OAuthError {
            code: "invalid_request",
            description: "token is required".into(),
        });
    };
    match state
        .apps
        .revoke_token(
            &meta,
            client_id.as_deref(),
            &token,
            &crate::mcp::resource(&state),
        )
        .await
    {
        Ok(()) => json_response(StatusCode::OK, &json!({}), true),
        Err(e) => ApiError::from(e).into_response(),
    }
}
