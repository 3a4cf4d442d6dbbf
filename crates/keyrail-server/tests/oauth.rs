//! The OAuth 2.1 authorization server of `/mcp`, over HTTP: the metadata, dynamic registration
//! (limited per IP, audited), the consent page (signed out it asks to sign in first; Allow makes
//! a personal grant capped by the member's scopes; Deny sends `access_denied` back), the code
//! exchange with PKCE S256 and the resource indicator, refresh rotation, and every way around
//! them: a wrong verifier, a replayed code or refresh token (the grant is revoked), a wrong or
//! unregistered redirect URI (never redirected to), another resource, `plain` PKCE, a form
//! without its CSRF token, and tokens used where their audience is not.

mod common;

use common::console::Console;
use common::oauth::{
    REDIRECT, REDIRECT_AT, VERIFIER, authorize_path, code_for, consent, exchange, form,
    hidden_fields, new_client, params, query_param, resource,
};
use common::{PASSWORD, TestServer, json};
use keyrail_core::apps::oauth::s256;
use serde_json::{Value, json};

async fn start() -> TestServer {
    TestServer::start().await
}

async fn register(s: &TestServer, body: Value) -> (u16, Value) {
    json(s.post_json("/oauth/register", &body).await).await
}

/// A person who owns a workspace, signed in on the console.
async fn person<'a>(s: &'a TestServer, email: &str) -> (Console<'a>, String, String) {
    let (token, ws) = s.owner_with_workspace(email).await;
    let console = Console::sign_in(s, email, PASSWORD).await;
    (console, token, ws)
}

async fn grants_of(s: &TestServer, token: &str, ws: &str, client: &str) -> Vec<Value> {
    let (status, body) = s
        .call("GET", &format!("/api/v1/w/{ws}/grants"), token, None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["client_id"] == client)
        .cloned()
        .collect()
}

#[tokio::test]
async fn metadata_points_clients_at_this_server() {
    let s = start().await;
    let (status, prm) = json(s.get("/.well-known/oauth-protected-resource").await).await;
    assert_eq!(status, 200);
    let (_, prm_mcp) = json(s.get("/.well-known/oauth-protected-resource/mcp").await).await;
    assert_eq!(prm, prm_mcp);
    let issuer = prm["authorization_servers"][0].as_str().unwrap().to_owned();
    assert_eq!(prm["resource"], format!("{issuer}/mcp"));
    let (status, asm) = json(s.get("/.well-known/oauth-authorization-server").await).await;
    assert_eq!(status, 200);
    assert_eq!(asm["issuer"], issuer.as_str());
    assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        asm["token_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    for (field, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("registration_endpoint", "/oauth/register"),
        ("revocation_endpoint", "/oauth/revoke"),
    ] {
        assert_eq!(asm[field], format!("{issuer}{path}"), "{field}");
    }
    // A browser-based client may call them from its own origin (no cookie is read here).
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/oauth/token"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    let meta = s.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta.headers()["access-control-allow-origin"], "*");
    // The spec documents them.
    let (_, spec) = json(s.get("/api/v1/openapi.json").await).await;
    for path in [
        "/oauth/authorize",
        "/oauth/register",
        "/oauth/token",
        "/oauth/revoke",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} in the spec");
    }
}

#[tokio::test]
async fn registration_is_checked_audited_and_limited_per_ip() {
    let s = TestServer::start_with(
        common::Backend::Sqlite,
        |c| c.limits.oauth_register_per_ip = "3/1h".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    let (status, body) = register(
        &s,
        json!({"client_name": "Claude", "redirect_uris": ["http://127.0.0.1:5000/cb", "https://client.example/cb"], "scope": "ignored", "logo_uri": null}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["client_name"], "Claude");
    assert!(
        body.get("client_secret").is_none(),
        "a public client has no secret"
    );
    let client = body["client_id"].as_str().unwrap().to_owned();
    let audited = s
        .query_strings(&format!(
            "SELECT action FROM audit_log WHERE target = '{client}'"
        ))
        .await;
    assert_eq!(audited, vec!["app.register".to_owned()]);

    for (bad, code) in [
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
    ] {
        let (status, body) = register(&s, bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
        assert_eq!(body["code"], code);
    }
    // Three in the hour from this address (refused ones count), then 429.
    let (status, body) = register(&s, json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(status, 429, "{body}");

    // A public client is not a developer's app: no client-credentials tokens, no management.
    let (admin_token, _) = s.owner_with_workspace("dev@example.com").await;
    let (status, _) = s
        .call("GET", &format!("/api/v1/apps/{client}"), &admin_token, None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn code_flow_with_pkce_consent_refresh_and_replays() {
    let s = start().await;
    let res = resource(&s).await;
    let client = new_client(&s, "Claude <b>Desktop</b>").await;
    let challenge = s256(VERIFIER);
    let p = params(&client, &res, &challenge, &[]);

    // Signed out: sign in first, then back here.
    let mut anon = Console::new(&s);
    let page = anon.get(&authorize_path(&p)).await;
    assert_eq!(page.status, 303);
    assert!(
        page.location()
            .starts_with("/login?next=%2Foauth%2Fauthorize%3F"),
        "{}",
        page.location()
    );

    let (mut c, token, ws) = person(&s, "owner@example.com").await;
    let page = c.get(&authorize_path(&p)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("Claude &lt;b&gt;Desktop&lt;/b&gt;")
            || page.html.contains("Claude &#60;b&#62;"),
        "the name, escaped"
    );
    assert!(
        page.html.contains("members:admin") && page.html.contains("dangerous"),
        "scopes, dangerous marked"
    );
    assert!(page.html.contains(">Allow<") && page.html.contains(">Deny<"));
    assert!(
        page.html
            .contains("<label for=\"workspace\">Workspace</label>")
    );
    assert!(
        page.header("content-security-policy")
            .contains("form-action 'self' http://127.0.0.1:49152"),
        "{}",
        page.header("content-security-policy")
    );

    // Without the form's CSRF token nothing is granted.
    let mut fields = hidden_fields(&page);
    fields.retain(|(k, _)| k != "csrf_token");
    fields.push(("workspace_id".into(), ws.clone()));
    fields.push(("decision".into(), "allow".into()));
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let refused = c.post_public("/oauth/authorize", &refs).await;
    assert_eq!(refused.status, 403);
    assert!(grants_of(&s, &token, &ws, &client).await.is_empty());

    // Allow: back to the client with the code, the state and the issuer.
    let back = c.post("/oauth/authorize", &refs).await;
    assert_eq!(back.status, 303, "{}", back.html);
    let to = back.location();
    assert!(
        to.starts_with("http://127.0.0.1:49152/callback?code=krc_"),
        "{to}"
    );
    assert_eq!(query_param(to, "state").as_deref(), Some("xyz-state"));
    assert!(query_param(to, "iss").is_some());
    let code = query_param(to, "code").unwrap();
    let grants = grants_of(&s, &token, &ws, &client).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["shared"], false);

    // A wrong verifier spends the code; presenting it again is a replay: the grant goes.
    let (status, body) = exchange(&s, &client, &code, &"b".repeat(43), REDIRECT_AT, &res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = exchange(&s, &client, &code, VERIFIER, REDIRECT_AT, &res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        grants_of(&s, &token, &ws, &client).await.is_empty(),
        "a replayed code revokes the grant"
    );

    // Again, properly: consent, then the exchange.
    let code = code_for(&mut c, &p, &ws).await;
    // The redirect URI must be the request's; the resource must be the one asked for.
    let (status, body) = exchange(&s, &client, &code, VERIFIER, REDIRECT, &res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let code = code_for(&mut c, &p, &ws).await;
    let other = res.replace("/mcp", "/api");
    let (status, body) = exchange(&s, &client, &code, VERIFIER, REDIRECT_AT, &other).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );

    let code = code_for(&mut c, &p, &ws).await;
    let resp = s
        .http
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(common::console::form_body(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT_AT),
            ("resource", &res),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let (status, tokens) = json(resp).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    // Capped by what the owner may grant an app; the re-consent replaced the earlier grants.
    assert_eq!(tokens["scope"], "keys:read keys:write members:admin");
    assert_eq!(grants_of(&s, &token, &ws, &client).await.len(), 1);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The code is single use even when it worked.
    let (status, _) = exchange(&s, &client, &code, VERIFIER, REDIRECT_AT, &res).await;
    assert_eq!(status, 400);
    // ... and that replay revoked the grant: the refresh token died with it.
    let (status, body) = refresh_with(&s, &client, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // The access token is for /mcp only: the API refuses it.
    let (status, body) = s
        .call("GET", &format!("/api/v1/w/{ws}/keys"), &access, None)
        .await;
    assert_eq!(status, 401, "{body}");
    drop(access);

    // Refresh rotation: each refresh token works once; the spent one again revokes the grant.
    let code = code_for(&mut c, &p, &ws).await;
    let (_, tokens) = exchange(&s, &client, &code, VERIFIER, REDIRECT_AT, &res).await;
    let r1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, next) = refresh_with(&s, &client, &r1).await;
    assert_eq!(status, 200, "{next}");
    let r2 = next["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    let (status, _) = refresh_with(&s, &client, &r2.replace("krr_", "krr_x")).await;
    assert_eq!(status, 400);
    assert_eq!(
        grants_of(&s, &token, &ws, &client).await.len(),
        1,
        "an unknown token changes nothing"
    );
    let (status, body) = refresh_with(&s, &client, &r1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        grants_of(&s, &token, &ws, &client).await.is_empty(),
        "reuse revokes the grant"
    );
    let (status, _) = refresh_with(&s, &client, &r2).await;
    assert_eq!(status, 400, "the newer token died with the grant");

    // RFC 7009: revoking a refresh token revokes the grant.
    let code = code_for(&mut c, &p, &ws).await;
    let (_, tokens) = exchange(&s, &client, &code, VERIFIER, REDIRECT_AT, &res).await;
    let r = tokens["refresh_token"].as_str().unwrap();
    let (status, _, _) = form(&s, "/oauth/revoke", &[("token", r), ("client_id", &client)]).await;
    assert_eq!(status, 200);
    assert!(grants_of(&s, &token, &ws, &client).await.is_empty());
    let (status, _, _) = form(&s, "/oauth/revoke", &[("token", "krr_unknown")]).await;
    assert_eq!(status, 200, "an unknown token is not told apart");

    // A code lives a minute.
    let code = code_for(&mut c, &p, &ws).await;
    s.clock.advance_secs(61);
    let (status, body) = exchange(&s, &client, &code, VERIFIER, REDIRECT_AT, &res).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

async fn refresh_with(s: &TestServer, client: &str, refresh: &str) -> (u16, Value) {
    let (status, _, body) = form(
        s,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client),
            ("refresh_token", refresh),
        ],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn bad_authorization_requests_are_never_redirected_blindly() {
    let s = start().await;
    let res = resource(&s).await;
    let client = new_client(&s, "Tool").await;
    let challenge = s256(VERIFIER);
    let (mut c, _, _) = person(&s, "owner@example.com").await;

    // An unregistered redirect URI or an unknown client: an error page, no redirect.
    for over in [
        [("redirect_uri", "http://evil.example/cb")],
        [("redirect_uri", "http://127.0.0.1:49152/other")],
        [("client_id", "kr_app_doesnotexist")],
    ] {
        let page = c
            .get(&authorize_path(&params(&client, &res, &challenge, &over)))
            .await;
        assert_eq!(page.status, 400, "{over:?}: {}", page.html);
        assert!(page.location().is_empty());
    }
    // Otherwise the error goes back to the client, with the state.
    for (over, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("resource", "")], "invalid_target"),
        (
            vec![("resource", "https://other.example/mcp")],
            "invalid_target",
        ),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid")], "invalid_scope"),
    ] {
        let page = c
            .get(&authorize_path(&params(&client, &res, &challenge, &over)))
            .await;
        assert_eq!(page.status, 303, "{over:?}: {}", page.html);
        let to = page.location();
        assert!(to.starts_with("http://127.0.0.1:49152/callback?"), "{to}");
        assert_eq!(query_param(to, "error").as_deref(), Some(error), "{over:?}");
        assert_eq!(query_param(to, "state").as_deref(), Some("xyz-state"));
    }
    // Deny: access_denied.
    let p = params(&client, &res, &challenge, &[]);
    let page = c.get(&authorize_path(&p)).await;
    let mut fields = hidden_fields(&page);
    fields.retain(|(k, _)| k != "csrf_token");
    fields.push(("decision".into(), "deny".into()));
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = c.post("/oauth/authorize", &refs).await;
    assert_eq!(back.status, 303);
    assert_eq!(
        query_param(back.location(), "error").as_deref(),
        Some("access_denied")
    );
    // A parameter given twice is refused.
    let mut twice = p.clone();
    twice.push(("redirect_uri", "http://127.0.0.1:1/callback"));
    let page = c.get(&authorize_path(&twice)).await;
    assert_eq!(page.status, 400);
}

#[tokio::test]
async fn consent_is_capped_by_the_members_scopes() {
    let s = start().await;
    let res = resource(&s).await;
    let client = new_client(&s, "Tool").await;
    let challenge = s256(VERIFIER);
    let (owner_token, ws) = s.owner_with_workspace("owner@example.com").await;
    s.user("member@example.com").await;
    let (status, body) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/members"),
            &owner_token,
            Some(&json!({"email": "member@example.com", "role": "developer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut c = Console::sign_in(&s, "member@example.com", PASSWORD).await;
    let p = params(
        &client,
        &res,
        &challenge,
        &[("scope", "keys:read keys:write members:admin")],
    );
    let back = consent(&mut c, &p, &ws).await;
    assert_eq!(back.status, 303, "{}", back.html);
    let grants = grants_of(&s, &owner_token, &ws, &client).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(
        grants[0]["scopes"],
        json!(["keys:read", "keys:write"]),
        "only what a developer holds"
    );

    // Asking only for what the member lacks: refused on the page, nothing granted.
    let p = params(&client, &res, &challenge, &[("scope", "members:admin")]);
    let page = consent(&mut c, &p, &ws).await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("You hold none of the scopes"));
    // The earlier grant is still there.
    assert_eq!(grants_of(&s, &owner_token, &ws, &client).await.len(), 1);
}
