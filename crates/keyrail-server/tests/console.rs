//! The web console over HTTP, as a browser sees it without running script: sign-in (with MFA),
//! the session cookie and its refresh, CSRF, the security headers, and the keys pages calling
//! the API's own use cases (a key made on a page verifies over the API; a key revoked on a page
//! stops). The click-through tests in a real browser are in `crates/keyrail/tests/browser.rs`.

mod common;

use common::console::Console;
use common::{PASSWORD, TestServer, json};
use serde_json::json;

async fn owner(s: &TestServer, email: &str) -> (String, String) {
    s.owner_with_workspace(email).await
}

#[tokio::test]
async fn pages_ask_to_sign_in_and_come_back_after() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::new(&s);
    let page = c.get(&format!("/w/{ws}/keys?status=active")).await;
    assert_eq!(page.status, 303);
    let next = format!("/login?next=%2Fw%2F{ws}%2Fkeys%3Fstatus%3Dactive");
    assert_eq!(page.location(), next);
    let page = c
        .post_public(
            "/login",
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("next", &format!("/w/{ws}/keys?status=active")),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(page.location(), format!("/w/{ws}/keys?status=active"));
    let page = c.get(page.location().to_owned().as_str()).await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("API keys"));

    // `next` never leads off the server.
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let mut c = Console::new(&s);
        let page = c
            .post_public(
                "/login",
                &[
                    ("email", "ada@example.com"),
                    ("password", PASSWORD),
                    ("next", evil),
                ],
            )
            .await;
        assert_eq!(page.location(), "/", "{evil}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_said_on_the_form_with_the_api_message() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    let mut c = Console::new(&s);
    let page = c
        .post_public(
            "/login",
            &[
                ("email", "ada@example.com"),
                ("password", "not the password at all"),
            ],
        )
        .await;
    assert_eq!(page.status, 401);
    assert!(
        page.html.contains("Invalid email or password"),
        "{}",
        page.html
    );
    assert!(!c.cookies.contains_key("keyrail_token"));
    s.stop().await;
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    for path in [
        "/login",
        "/signup",
        "/forgot-password",
        &format!("/w/{ws}/keys"),
    ] {
        let page = c.get(path).await;
        let csp = page.header("content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(page.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(page.header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(page.header("cache-control"), "no-store", "{path}");
        assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
        // No inline script anywhere: the CSP would block it.
        assert!(!page.html.contains("<script>"), "{path}");
        assert!(!page.html.contains("style=\""), "{path}");
    }
    let css = c.get("/console/assets/console.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
    assert!(css.html.contains("prefers-color-scheme: dark"));
    let js = c.get("/console/assets/console.js").await;
    assert!(js.header("content-type").starts_with("text/javascript"));
    assert_eq!(c.get("/console/assets/nope.js").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_key_made_on_the_page_verifies_and_a_key_revoked_there_stops() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let list = c.get(&format!("/w/{ws}/keys")).await;
    assert!(list.html.contains(">Create API key</button>"));
    assert!(
        list.html.contains("No API keys yet"),
        "empty state says what to do"
    );
    let form = c.get(&format!("/w/{ws}/keys/new")).await;
    assert!(form.html.contains("<label for=\"name\">Name</label>"));
    assert!(form.html.contains(">Create</button>"));
    assert!(
        form.html.contains("value=\"keys:read\""),
        "scopes from the catalog"
    );
    assert!(
        form.html.contains("dangerous"),
        "dangerous scopes are marked"
    );

    let page = c
        .post(
            &format!("/w/{ws}/keys"),
            &[
                ("name", "billing"),
                ("scopes", "keys:read"),
                ("scopes", "workspace:read"),
                ("rate_limit", "100"),
                ("rate_window", "60"),
                ("external_id", "cus_1"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_eq!(page.header("cache-control"), "no-store");
    let key = page.testid("new-key").expect("the new key is on the page");
    assert!(key.starts_with("kr_"), "{key}");
    assert!(page.html.contains("data-copy=\"new-key\""), "a copy button");
    assert_eq!(s.verify_code(&key).await, "VALID");

    // The list shows it, with its status and a Revoke button per row.
    let list = c.get(&format!("/w/{ws}/keys")).await;
    assert!(list.html.contains("billing"));
    assert!(list.html.contains(">Revoke</button>"));
    assert!(
        !list.html.contains(&key),
        "the list never shows the key itself"
    );
    let (_, keys) = json(
        s.get_with(&format!("/api/v1/w/{ws}/keys"), &api_token(&s).await)
            .await,
    )
    .await;
    let id = keys["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        keys["data"][0]["scopes"],
        json!(["keys:read", "workspace:read"])
    );
    assert_eq!(
        keys["data"][0]["rate_limit"],
        json!({"limit": 100, "window_seconds": 60})
    );

    // Revoke asks first; Confirm revokes.
    let confirm = c.get(&format!("/w/{ws}/keys/{id}/revoke")).await;
    assert!(confirm.html.contains(">Confirm</button>"));
    assert_eq!(s.verify_code(&key).await, "VALID", "asking is not revoking");
    let done = c.post(&format!("/w/{ws}/keys/{id}/revoke"), &[]).await;
    assert_eq!(done.status, 303);
    assert_eq!(done.location(), format!("/w/{ws}/keys?done=revoked"));
    assert_eq!(s.verify_code(&key).await, "REVOKED");
    let list = c.get(done.location()).await;
    assert!(list.html.contains("The key was revoked."));
    assert!(list.html.contains("status revoked"));

    // The audit log names the person, as for the API.
    let (_, audit) = json(
        s.get_with(
            &format!("/api/v1/w/{ws}/audit?action=key.revoke"),
            &api_token(&s).await,
        )
        .await,
    )
    .await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["data"][0]["actor"]["type"], "user");
    s.stop().await;
}

async fn api_token(s: &TestServer) -> String {
    let (_, body) = s.login_as("ada@example.com", PASSWORD).await;
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_form_without_the_csrf_token_changes_nothing() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let page = c
        .post_public(&format!("/w/{ws}/keys"), &[("name", "sneaky")])
        .await;
    assert_eq!(page.status, 403);
    assert!(page.html.contains("CSRF token missing or invalid"));
    let page = c
        .post_public(
            &format!("/w/{ws}/keys"),
            &[("csrf_token", "0000"), ("name", "sneaky")],
        )
        .await;
    assert_eq!(page.status, 403);
    // Another session's token does not pass either.
    let other = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let page = c
        .post_public(
            &format!("/w/{ws}/keys"),
            &[("csrf_token", &other.csrf()), ("name", "sneaky")],
        )
        .await;
    assert_eq!(page.status, 403);
    let (_, keys) = json(
        s.get_with(&format!("/api/v1/w/{ws}/keys"), &api_token(&s).await)
            .await,
    )
    .await;
    assert_eq!(keys["data"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let body = common::console::form_body(&[("email", "ada@example.com"), ("password", PASSWORD)]);
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let resp = http
            .post(s.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(name, value)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{name}: {value}");
        assert!(resp.headers().get("set-cookie").is_none());
    }
    s.stop().await;
}

#[tokio::test]
async fn a_member_without_keys_write_sees_no_create_button_and_is_refused_anyway() {
    let s = TestServer::start().await;
    let (token, ws) = owner(&s, "ada@example.com").await;
    s.user("bob@example.com").await;
    let (status, role) = json(
        s.post_with(
            &format!("/api/v1/w/{ws}/roles"),
            &token,
            &json!({"name": "reader", "scopes": ["workspace:read", "keys:read"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let (status, body) = json(
        s.post_with(
            &format!("/api/v1/w/{ws}/members"),
            &token,
            &json!({"email": "bob@example.com", "role": role["id"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut c = Console::sign_in(&s, "bob@example.com", PASSWORD).await;
    let list = c.get(&format!("/w/{ws}/keys")).await;
    assert_eq!(list.status, 200, "{}", list.html);
    assert!(!list.html.contains("Create API key"), "no create button");
    assert_eq!(c.get(&format!("/w/{ws}/keys/new")).await.status, 403);
    let page = c.post(&format!("/w/{ws}/keys"), &[("name", "nope")]).await;
    assert_eq!(page.status, 403);
    assert!(page.html.contains("Insufficient scope"));
    assert!(
        page.html.contains("<code>keys:write</code>"),
        "the page names the missing scope: {}",
        page.html
    );
    // Nor a workspace that is not theirs: 404, as the API.
    let (_, other_ws) = owner(&s, "eve@example.com").await;
    assert_eq!(c.get(&format!("/w/{other_ws}/keys")).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn markup_in_a_key_name_is_shown_as_text() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let evil = "<script>alert(1)</script>";
    let page = c.post(&format!("/w/{ws}/keys"), &[("name", evil)]).await;
    assert_eq!(page.status, 200);
    let list = c.get(&format!("/w/{ws}/keys")).await;
    assert!(!list.html.contains(evil));
    assert!(
        list.html
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || list.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        list.html
    );
    s.stop().await;
}

#[tokio::test]
async fn a_field_the_api_refuses_is_named_next_to_the_field_and_the_values_stay() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let page = c
        .post(
            &format!("/w/{ws}/keys"),
            &[
                ("name", "x"),
                ("expires_in_days", "9999"),
                ("external_id", "cus_9"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.html.contains("expires_in_days"), "{}", page.html);
    assert!(page.html.contains("value=\"cus_9\""), "values are kept");
    let page = c
        .post(
            &format!("/w/{ws}/keys"),
            &[("name", "x"), ("remaining", "lots")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("remaining must be a whole number"));
    s.stop().await;
}

#[tokio::test]
async fn the_session_outlives_its_access_token_and_ends_at_sign_out() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let first = c.cookies["keyrail_token"].clone();
    assert!(c.cookies.contains_key("keyrail_refresh"));
    s.clock.advance_secs(16 * 60);
    let page = c.get(&format!("/w/{ws}/keys")).await;
    assert_eq!(page.status, 200, "refreshed: {}", page.location());
    assert_ne!(c.cookies["keyrail_token"], first, "a new access token");

    let out = c.post("/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/login?done=signed_out");
    assert!(c.cookies.is_empty(), "{:?}", c.cookies);
    s.stop().await;
}

#[tokio::test]
async fn a_stolen_refresh_cookie_dies_with_the_session() {
    let s = TestServer::start().await;
    let (_, ws) = owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let stolen = c.cookies.clone();
    c.post("/logout", &[]).await;
    s.clock.advance_secs(16 * 60);
    let mut thief = Console::new(&s);
    thief.cookies = stolen;
    let page = thief.get(&format!("/w/{ws}/keys")).await;
    assert_eq!(page.status, 303);
    assert!(page.location().starts_with("/login"));
    s.stop().await;
}

#[tokio::test]
async fn sign_in_with_mfa_asks_for_the_code() {
    let s = TestServer::start().await;
    let (token, _ws) = owner(&s, "ada@example.com").await;
    let (_, setup) = json(
        s.post_with("/api/v1/profile/mfa/setup", &token, &json!({}))
            .await,
    )
    .await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let code = common::totp_now(&secret, &s.clock);
    let (status, body) = json(
        s.post_with("/api/v1/profile/mfa/verify", &token, &json!({"code": code}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s.clock.advance_secs(31);

    let mut c = Console::new(&s);
    let page = c
        .post_public(
            "/login",
            &[("email", "ada@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("<label for=\"code\">Code</label>"));
    assert!(
        !c.cookies.contains_key("keyrail_token"),
        "not signed in yet"
    );
    let mfa_token = page
        .html
        .split("name=\"mfa_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let wrong = c
        .post_public(
            "/login/mfa",
            &[("mfa_token", &mfa_token), ("code", "000000")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.html.contains("<label for=\"code\">Code</label>"),
        "asked again"
    );
    let code = common::totp_now(&secret, &s.clock);
    let ok = c
        .post_public("/login/mfa", &[("mfa_token", &mfa_token), ("code", &code)])
        .await;
    assert_eq!(ok.status, 303, "{}", ok.html);
    assert!(c.cookies.contains_key("keyrail_token"));
    s.stop().await;
}

#[tokio::test]
async fn sign_up_and_reset_a_password_on_pages() {
    let smtp = common::FakeSmtp::start().await;
    let port = smtp.port;
    let s = TestServer::start_with(
        common::Backend::Sqlite,
        move |c| {
            c.smtp_url = format!("smtp://127.0.0.1:{port}");
            c.dev = false;
        },
        None,
    )
    .await
    .unwrap();
    let mut c = Console::new(&s);
    let page = c
        .post_public(
            "/signup",
            &[
                ("name", "Ada"),
                ("email", "ada@example.com"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.html.contains("value=\"ada@example.com\""));
    assert!(page.html.contains("password"), "{}", page.html);
    let page = c
        .post_public(
            "/signup",
            &[
                ("name", "Ada"),
                ("email", "ada@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(page.location(), "/login?done=signed_up");

    let page = c
        .post_public("/forgot-password", &[("email", "ada@example.com")])
        .await;
    assert_eq!(page.location(), "/forgot-password?done=reset_sent");
    let unknown = c
        .post_public("/forgot-password", &[("email", "nobody@example.com")])
        .await;
    assert_eq!(
        unknown.location(),
        page.location(),
        "same answer for an unknown address"
    );
    let mail = smtp.message(0).await;
    assert!(mail.contains("/reset-password?token="), "{mail}");
    let token = common::reset_token_in(&mail);
    let form = c.get(&format!("/reset-password?token={token}")).await;
    assert!(form.html.contains(&token));
    let new_password = "a brand new passphrase 77";
    let done = c
        .post_public(
            "/reset-password",
            &[("token", &token), ("password", new_password)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    Console::sign_in(&s, "ada@example.com", new_password).await;
    s.stop().await;
}

#[tokio::test]
async fn the_sign_in_form_spends_the_same_per_ip_budget_as_the_api() {
    let s = TestServer::start_with(
        common::Backend::Sqlite,
        |c| c.limits.login_per_ip = "3/15m".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    s.signup("ada@example.com").await;
    // Two through the API, one through the form: the budget of 3 is spent.
    for _ in 0..2 {
        let (status, _) = s.login_as("ada@example.com", PASSWORD).await;
        assert_eq!(status, 200);
    }
    let mut c = Console::new(&s);
    let fields = [("email", "ada@example.com"), ("password", PASSWORD)];
    assert_eq!(c.post_public("/login", &fields).await.status, 303);
    // The fourth is refused on either side, whichever it goes through.
    let page = c.post_public("/login", &fields).await;
    assert_eq!(page.status, 429, "{}", page.html);
    assert!(page.header("retry-after").parse::<u64>().is_ok());
    let (status, _) = s.login_as("ada@example.com", PASSWORD).await;
    assert_eq!(status, 429);
    s.stop().await;
}
