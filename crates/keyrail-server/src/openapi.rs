//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
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
