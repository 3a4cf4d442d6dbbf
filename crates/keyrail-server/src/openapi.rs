//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type, schema::ObjectBuilder,
};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyrail",
        description = "Self-hosted API access management: API keys, logins, roles and app grants.\n\nEvery error has the shape `{\"error\": \"...\", \"code\": \"...\"}`. Unknown JSON fields are rejected with 400, bodies over 64 KiB with 413, bodies that are not JSON with 415. Every response carries `X-Content-Type-Options: nosniff`; every response that holds a secret (a key, a client secret, tokens, a TOTP secret, recovery codes, the webhook secret) carries `Cache-Control: no-store`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(crate::routes::keys::forward_auth),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "system", description = "Health, readiness, metrics and this documentation"),
        (name = "auth", description = "Signup, login, MFA, refresh, logout, password reset, JWKS"),
        (name = "profile", description = "The logged-in user's account, MFA and sessions"),
        (name = "workspaces", description = "Workspaces (tenants)"),
        (name = "members", description = "Members and roles of a workspace"),
        (name = "scopes", description = "The scope catalog and a workspace's own scopes"),
        (name = "export", description = "Workspace export (streamed JSON)"),
        (name = "audit", description = "The append-only audit log and the API request log"),
        (name = "admin", description = "Platform administration (admin:superuser)"),
        (name = "keys", description = "API keys, verify and forward-auth"),
        (name = "apps", description = "Builder profiles, apps, member grants and app tokens"),
        (name = "oauth", description = "The OAuth 2.1 authorization server of `/mcp` (MCP clients): metadata, dynamic registration, tokens, revocation. The authorization endpoint `GET /oauth/authorize` is a console page (consent)"),
        (name = "webhooks", description = "Webhook endpoints, their signing secret and delivery attempts (Standard Webhooks)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from login (EdDSA JWT), an API key, or an app's inner token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("An API key as the Basic credential, for old clients."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An app's client credentials: base64(client_id:client_secret).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "keyrail_token",
                "The session cookie set by login; writes also need the X-CSRF-Token header.",
            ))),
        );
    }
}

/// The answers many operations share, under `components/responses`, and the rule that adds
/// them to every operation that can give them. It runs on the whole document (after the routes
/// are merged into it), and never replaces a response an operation declares itself, which is
/// always the more specific description.
pub struct SharedResponses;

/// `(name, status, description, code, message)` of each shared response; the body is always
/// an `ErrorBody`, and its example is `{"error": message, "code": code}` with the extra field
/// the code carries (see [`example_body`]). Messages as API.md and `error.rs` give them.
const SHARED: [(&str, &str, &str, &str, &str); 10] = [
    (
        "BadRequest",
        "400",
        "`invalid_request`: malformed JSON, an unknown or missing field, a wrong type, or a \
         parameter out of range. `field` names what was wrong.",
        "invalid_request",
        "limit must be an integer from 1 to 200",
    ),
    (
        "Unauthorized",
        "401",
        "No credential, or one that is not valid: `missing_credentials`, \
         `invalid_credentials`, `token_expired`, `key_expired`, `key_revoked` ...",
        "missing_credentials",
        "Missing or invalid API key",
    ),
    (
        "Forbidden",
        "403",
        "The credential is valid but may not do this: `insufficient_scope` (with `required`), \
         `forbidden` (e.g. an API key on an endpoint for logged-in users), `csrf_failed` (a \
         cookie-authenticated write without `X-CSRF-Token`), `tenant_suspended`, \
         `key_disabled` ...",
        "insufficient_scope",
        "Insufficient scope",
    ),
    (
        "NotFound",
        "404",
        "`not_found`: the resource named in the path does not exist or is not visible to \
         the caller.",
        "not_found",
        "Workspace not found",
    ),
    (
        "PayloadTooLarge",
        "413",
        "`payload_too_large`: the request body is over 64 KiB.",
        "payload_too_large",
        "Request body too large (limit 64 KiB)",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "`unsupported_media_type`: the body is not `application/json` (or `application/*+json`).",
        "unsupported_media_type",
        "Content-Type must be application/json",
    ),
    (
        "RequestTimeout",
        "408",
        "`request_timeout`: the server did not finish the request within `request_timeout` \
         (30 s by default).",
        "request_timeout",
        "Request timed out",
    ),
    (
        "TooManyRequests",
        "429",
        "`too_many_requests`: a rate limit (the global limit per principal, a key's own limit, \
         a per-IP limit) or the failed-authentication block of the client's address. \
         `Retry-After` says when to try again; the `RateLimit` fields say which limit.",
        "too_many_requests",
        "Too many requests",
    ),
    (
        "ServiceUnavailable",
        "503",
        "`store_unavailable`: the database (or, with `on_redis_error = \"deny\"`, Redis) does \
         not answer; try again after `Retry-After` seconds.",
        "store_unavailable",
        "Store unavailable, try again shortly",
    ),
    (
        "InternalError",
        "500",
        "`internal_error`: an unexpected failure. The body never says more; the server's log \
         has the details under the response's `X-Request-Id`.",
        "internal_error",
        "Internal server error",
    ),
];

/// The example body of a shared response.
fn example_body(code: &str, message: &str) -> serde_json::Value {
    let mut body = serde_json::json!({ "error": message, "code": code });
    match code {
        "invalid_request" => body["field"] = "limit".into(),
        "insufficient_scope" => body["required"] = serde_json::json!(["keys:write"]),
        _ => {}
    }
    body
}

fn header(description: &str, schema: Schema) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn shared_response(name: &str, description: &str, code: &str, message: &str) -> Response {
    let example = example_body(code, message);
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .example(Some(example))
            .build(),
    );
    if matches!(name, "TooManyRequests" | "ServiceUnavailable") {
        r = r.header_ref("Retry-After", Ref::new("#/components/headers/Retry-After"));
    }
    if name == "TooManyRequests" {
        r = r
            .header_ref("RateLimit", Ref::new("#/components/headers/RateLimit"))
            .header_ref(
                "RateLimit-Policy",
                Ref::new("#/components/headers/RateLimit-Policy"),
            );
    }
    r.build()
}

/// The shared example that fits an operation's own error answer, if one does: its description
/// names the shared answer's code first, or describes the plain case the shared answer shows
/// (no credential; a workspace that is not there; a rate limit).
fn fitting_example(status: &str, description: &str, path: &str) -> Option<serde_json::Value> {
    let (_, _, _, code, message) = SHARED.iter().find(|s| s.1 == status)?;
    let fits = match description
        .strip_prefix('`')
        .and_then(|d| d.split('`').next())
    {
        Some(first) => first == *code,
        None => match status {
            "401" => description.starts_with("Missing or invalid"),
            "404" => {
                description.starts_with("Not found") && path.starts_with("/api/v1/w/{workspace_id}")
            }
            "429" => description == "Too many requests",
            _ => false,
        },
    };
    fits.then(|| example_body(code, message))
}

/// Whether the operation needs a credential: some security requirement names a scheme.
fn is_protected(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|reqs| {
        !reqs.is_empty()
            && reqs.iter().all(|r| {
                serde_json::to_value(r).is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            })
    })
}

/// The shared responses `op` can give, by what it takes.
fn applicable(op: &Operation, path: &str) -> Vec<&'static str> {
    let params: Vec<ParameterIn> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p.parameter_in.clone()),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has_path = path.contains('{');
    let has_query = params
        .iter()
        .any(|p| matches!(p, ParameterIn::Query | ParameterIn::Header));
    let has_body = op.request_body.is_some();
    let protected = is_protected(op);
    let mut out = Vec::new();
    if has_body || has_query {
        out.push("BadRequest");
    }
    if protected {
        out.extend(["Unauthorized", "Forbidden"]);
    }
    if has_path {
        out.push("NotFound");
    }
    if has_body {
        out.extend(["PayloadTooLarge", "UnsupportedMediaType"]);
    }
    if protected {
        out.push("TooManyRequests");
    }
    // Authentication and every body-taking public endpoint (login, signup, refresh, reset,
    // verify) read the store.
    if protected || has_body {
        out.push("ServiceUnavailable");
    }
    // Every request: the request timeout and an unexpected failure.
    out.extend(["RequestTimeout", "InternalError"]);
    out
}

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.headers.insert(
            "Retry-After".into(),
            RefOr::T(header(
                "Seconds to wait before trying again.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .build()
                    .into(),
            )),
        );
        components.headers.insert(
            "RateLimit".into(),
            RefOr::T(header(
                "IETF RateLimit fields: `\"<policy>\";r=<remaining>;t=<seconds to reset>`.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .build()
                    .into(),
            )),
        );
        components.headers.insert(
            "RateLimit-Policy".into(),
            RefOr::T(header(
                "IETF RateLimit-Policy: `\"<policy>\";q=<limit>;w=<window seconds>`.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .build()
                    .into(),
            )),
        );
        for (name, _, description, code, message) in SHARED {
            components.responses.insert(
                name.into(),
                RefOr::T(shared_response(name, description, code, message)),
            );
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                // An error answer the operation declares itself shows the shared example
                // where that is what the server can answer.
                for (status, r) in op.responses.responses.iter_mut() {
                    let RefOr::T(r) = r else { continue };
                    let Some(RefOr::T(media)) = r.content.get_mut("application/json") else {
                        continue;
                    };
                    let error_body = matches!(&media.schema,
                        Some(RefOr::Ref(s)) if s.ref_location.ends_with("/ErrorBody"));
                    if error_body && media.example.is_none() {
                        media.example = fitting_example(status, &r.description, path);
                    }
                }
                for name in applicable(op, path) {
                    let status = SHARED
                        .iter()
                        .find(|s| s.0 == name)
                        .map(|s| s.1)
                        .unwrap_or_default();
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                        });
                }
            }
        }
    }
}

/// Rules between fields that the derived schemas cannot say, added to the finished document.
pub struct BodyRules;

impl Modify for BodyRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        // An imported key gives exactly one of `key` and `sha256`.
        if let Some(RefOr::T(derived)) = components.schemas.remove("ImportKeyIn") {
            let present = |field: &str| ObjectBuilder::new().required(field).build();
            let exactly_one = OneOfBuilder::new()
                .item(present("key"))
                .item(present("sha256"))
                .build();
            components.schemas.insert(
                "ImportKeyIn".into(),
                RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(derived)
                        .item(Schema::OneOf(exactly_one))
                        .build(),
                )),
            );
        }
    }
}
