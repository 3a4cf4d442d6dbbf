//! API.md "Conventions": every response carries `X-Content-Type-Options: nosniff`, and every
//! response that holds a secret (a new, rotated or revealed key, a client secret, tokens, a TOTP
//! secret, recovery codes) carries `Cache-Control: no-store`.

mod common;

use common::{PASSWORD, TestServer, totp_now};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// Checks the headers of one answer; returns its status and JSON body.
async fn checked(what: &str, resp: reqwest::Response, secret: bool) -> (u16, Value) {
    let headers: HeaderMap = resp.headers().clone();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(
        headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff"),
        "{what}: {status} {headers:?}"
    );
    if secret {
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}: {status} {headers:?}"
        );
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn secrets_are_not_stored_and_nothing_is_sniffed() {
    let s = TestServer::start().await;
    let post = |path: &str, token: &str, body: Value| {
        s.http
            .post(s.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    // Not secrets, but nosniff everywhere: system endpoints, errors, the docs.
    for path in [
        "/healthz",
        "/metrics",
        "/api/v1/openapi.json",
        "/docs",
        "/nope",
    ] {
        checked(path, s.get(path).await, false).await;
    }
    let (status, _) = checked(
        "signup",
        s.post_json(
            "/api/v1/auth/signup",
            &json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}),
        )
        .await,
        false,
    )
    .await;
    assert_eq!(status, 201);

    // Tokens: login and refresh.
    let login = json!({"email": "ada@example.com", "password": PASSWORD});
    let (status, tokens) = checked(
        "login",
        s.post_json("/api/v1/auth/login", &login).await,
        true,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let (status, tokens) = checked(
        "refresh",
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await,
        true,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let t = tokens["access_token"].as_str().unwrap().to_owned();

    // Keys: create, rotate, reveal.
    let (status, ws) = checked(
        "workspace",
        post("/api/v1/workspaces", &t, json!({"name": "Acme"}))
            .await
            .unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 201, "{ws}");
    let ws = ws["id"].as_str().unwrap().to_owned();
    let (status, key) = checked(
        "key create",
        post(
            &format!("/api/v1/w/{ws}/keys"),
            &t,
            json!({"name": "k", "scopes": ["keys:read"], "recoverable": true}),
        )
        .await
        .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, rotated) = checked(
        "key rotate",
        post(
            &format!("/api/v1/w/{ws}/keys/{}/rotate", key["id"].as_str().unwrap()),
            &t,
            json!({}),
        )
        .await
        .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, revealed) = checked(
        "key reveal",
        post(
            &format!(
                "/api/v1/w/{ws}/keys/{}/reveal",
                rotated["id"].as_str().unwrap()
            ),
            &t,
            json!({}),
        )
        .await
        .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{revealed}");

    // Apps: create (client secret), secret rotation, tokens.
    let (status, profile) = checked(
        "builder profile",
        post(
            "/api/v1/builder-profiles",
            &t,
            json!({"name": "Builder", "website": "https://builder.example.com"}),
        )
        .await
        .unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 201, "{profile}");
    let (status, app) = checked(
        "app create",
        post(
            "/api/v1/apps",
            &t,
            json!({"name": "Sync", "description": "d", "builder_profile_id": profile["id"]}),
        )
        .await
        .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let (status, secret) = checked(
        "app secret",
        post(&format!("/api/v1/apps/{client_id}/secret"), &t, json!({}))
            .await
            .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{secret}");
    let (status, grant) = checked(
        "grant",
        post(
            &format!("/api/v1/w/{ws}/grants"),
            &t,
            json!({"client_id": client_id, "scopes": ["keys:read"], "shared": false}),
        )
        .await
        .unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let (status, token) = checked(
        "app token",
        s.http
            .post(s.url(&format!("/api/v1/apps/{client_id}/tokens")))
            .basic_auth(&client_id, secret["client_secret"].as_str())
            .json(&json!({"grant_id": grant["id"]}))
            .send()
            .await
            .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{token}");

    // MFA: setup (TOTP secret), verify (recovery codes), then the two login steps.
    let (status, setup) = checked(
        "mfa setup",
        post("/api/v1/profile/mfa/setup", &t, json!({}))
            .await
            .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{setup}");
    let totp = setup["secret"].as_str().unwrap().to_owned();
    let (status, codes) = checked(
        "mfa verify",
        post(
            "/api/v1/profile/mfa/verify",
            &t,
            json!({"code": totp_now(&totp, &s.clock)}),
        )
        .await
        .unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{codes}");
    let (status, step) = checked(
        "login, MFA step",
        s.post_json("/api/v1/auth/login", &login).await,
        true,
    )
    .await;
    assert_eq!(status, 200, "{step}");
    let (status, tokens) = checked(
        "login mfa",
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": codes["recovery_codes"][0]}),
        )
        .await,
        true,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    s.stop().await;
}

/// The OpenAPI document says which answers hold a secret.
#[tokio::test]
async fn the_openapi_document_names_the_no_store_answers() {
    let s = TestServer::start().await;
    let (_, doc) = common::json(s.get("/api/v1/openapi.json").await).await;
    for (path, method, status) in [
        ("/api/v1/auth/login", "post", "200"),
        ("/api/v1/auth/login/mfa", "post", "200"),
        ("/api/v1/auth/refresh", "post", "200"),
        ("/api/v1/profile/mfa/setup", "post", "200"),
        ("/api/v1/profile/mfa/verify", "post", "200"),
        ("/api/v1/w/{workspace_id}/keys", "post", "201"),
        (
            "/api/v1/w/{workspace_id}/keys/{key_id}/rotate",
            "post",
            "200",
        ),
        (
            "/api/v1/w/{workspace_id}/keys/{key_id}/reveal",
            "post",
            "200",
        ),
        ("/api/v1/apps", "post", "201"),
        ("/api/v1/w/{workspace_id}/export", "get", "200"),
        ("/api/v1/apps/{client_id}/secret", "post", "200"),
        ("/api/v1/apps/{client_id}/tokens", "post", "200"),
    ] {
        let response = &doc["paths"][path][method]["responses"][status];
        assert!(
            response["headers"]["Cache-Control"].is_object(),
            "{method} {path} {status}: {response}"
        );
    }
    s.stop().await;
}
