//! The audit log, profile (name, password, MFA, sessions) and platform administration pages,
//! over HTTP as a browser without script sees them. Each page calls the API's use cases: the
//! tests make changes through the API and read them on the pages, or make them on the pages
//! and see the API answer accordingly.

mod common;

use common::console::{Console, Page};
use common::{PASSWORD, TestServer, json};
use serde_json::{Value, json};

async fn owner(s: &TestServer, email: &str) -> (String, String) {
    s.owner_with_workspace(email).await
}

/// An attribute value as the page's HTML carries it, unescaped.
fn unescape(v: &str) -> String {
    v.replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
}

/// Where the page's "Next page" link goes.
fn next_page(page: &Page) -> Option<String> {
    let at = page.html.find(">Next page</a>")?;
    let href = page.html[..at].rsplit("href=\"").next()?;
    Some(unescape(href.trim_end_matches('"')))
}

fn audit_rows(page: &Page) -> usize {
    page.html.matches("class=\"audit-row\"").count()
}

fn actions(page: &Page, action: &str) -> usize {
    page.html
        .matches(&format!("<code class=\"action\">{action}</code>"))
        .count()
}

/// A hidden or visible input's value on the page.
fn input_value(page: &Page, name: &str) -> String {
    page.html
        .split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {name} on the page:\n{}", page.html))
        .to_owned()
}

async fn create_key(s: &TestServer, token: &str, ws: &str, name: &str) -> Value {
    let (status, key) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/keys"),
            token,
            Some(&json!({"name": name})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    key
}

#[tokio::test]
async fn the_audit_log_filters_and_pages_as_the_api_does() {
    let s = TestServer::start().await;
    let (token, ws) = owner(&s, "ada@example.com").await;
    let first = create_key(&s, &token, &ws, "one").await;
    create_key(&s, &token, &ws, "two").await;
    create_key(&s, &token, &ws, "three").await;
    s.revoke_key(&token, &ws, first["id"].as_str().unwrap())
        .await;
    let (_, me) = json(s.get_with("/api/v1/profile", &token).await).await;
    let ada_id = me["id"].as_str().unwrap().to_owned();

    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let all = c.get(&format!("/w/{ws}/audit")).await;
    assert_eq!(all.status, 200, "{}", all.html);
    assert_eq!(audit_rows(&all), 4, "{}", all.html);
    assert_eq!(actions(&all, "key.create"), 3);
    assert_eq!(actions(&all, "key.revoke"), 1);
    // Newest first: the revoke came last.
    let revoke_at = all.html.find(">key.revoke<").unwrap();
    let create_at = all.html.find(">key.create<").unwrap();
    assert!(revoke_at < create_at, "newest first");
    assert!(all.html.contains(&ada_id), "the actor's id");
    assert!(all.html.contains("<time datetime="), "times through When");
    assert!(next_page(&all).is_none(), "one page");

    // The API's filters, with paging that keeps them.
    let p1 = c
        .get(&format!("/w/{ws}/audit?action=key.create&limit=2"))
        .await;
    assert_eq!(p1.status, 200);
    assert_eq!(audit_rows(&p1), 2);
    assert_eq!(actions(&p1, "key.revoke"), 0);
    assert!(
        p1.html.contains("value=\"key.create\""),
        "the filter is kept"
    );
    let next = next_page(&p1).expect("a next page");
    assert!(next.contains("action=key.create"), "{next}");
    assert!(next.contains("limit=2"), "{next}");
    let p2 = c.get(&next).await;
    assert_eq!(p2.status, 200);
    assert_eq!(audit_rows(&p2), 1, "{}", p2.html);
    assert_eq!(actions(&p2, "key.create"), 1);
    assert!(next_page(&p2).is_none());
    assert!(p2.html.contains(">First page</a>"));

    let by_actor = c.get(&format!("/w/{ws}/audit?actor_id={ada_id}")).await;
    assert_eq!(audit_rows(&by_actor), 4);
    let nobody = c.get(&format!("/w/{ws}/audit?actor_id=usr_nobody")).await;
    assert_eq!(audit_rows(&nobody), 0);
    assert!(nobody.html.contains("No entry matches these filters"));

    let later = c
        .get(&format!("/w/{ws}/audit?since=2999-01-01T00:00:00Z&action="))
        .await;
    assert_eq!(later.status, 200);
    assert_eq!(audit_rows(&later), 0);
    let earlier = c
        .get(&format!("/w/{ws}/audit?until=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(audit_rows(&earlier), 0);
    let since = c
        .get(&format!("/w/{ws}/audit?since=2000-01-01T00:00:00Z"))
        .await;
    assert_eq!(audit_rows(&since), 4);

    // A filter the API refuses: its message next to the field, the value kept.
    let bad = c.get(&format!("/w/{ws}/audit?since=yesterday")).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.html.contains("since must be an RFC 3339 timestamp"),
        "{}",
        bad.html
    );
    assert!(bad.html.contains("value=\"yesterday\""));

    // A new workspace's log is empty and says so.
    let (_, other) = json(
        s.post_with("/api/v1/workspaces", &token, &json!({"name": "Empty"}))
            .await,
    )
    .await;
    let empty = c
        .get(&format!("/w/{}/audit", other["id"].as_str().unwrap()))
        .await;
    assert_eq!(empty.status, 200);
    assert!(
        empty.html.contains("Nothing recorded yet"),
        "{}",
        empty.html
    );
    s.stop().await;
}

#[tokio::test]
async fn the_audit_log_needs_audit_read() {
    let s = TestServer::start().await;
    let (token, ws) = owner(&s, "ada@example.com").await;
    s.signup("bob@example.com").await;
    let (status, body) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/members"),
            &token,
            Some(&json!({"email": "bob@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut bob = Console::sign_in(&s, "bob@example.com", PASSWORD).await;
    let page = bob.get(&format!("/w/{ws}/audit")).await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("insufficient_scope"), "{}", page.html);
    assert!(!page.html.contains("audit-row"));
    // A filter error does not tell him more than the 403.
    let page = bob.get(&format!("/w/{ws}/audit?since=bad")).await;
    assert_eq!(page.status, 403);
    s.stop().await;
}

/// The MFA step of the sign-in form; the challenge token of the page.
async fn mfa_challenge(c: &mut Console<'_>, email: &str) -> String {
    let page = c
        .post_public("/login", &[("email", email), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("<label for=\"code\">Code</label>"));
    input_value(&page, "mfa_token")
}

#[tokio::test]
async fn mfa_is_set_up_on_pages_and_asked_at_sign_in() {
    let s = TestServer::start().await;
    owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let profile = c.get("/profile").await;
    assert_eq!(profile.status, 200);
    assert!(profile.html.contains("Set up MFA"));

    let setup = c.post("/profile/mfa/setup", &[]).await;
    assert_eq!(setup.status, 200, "{}", setup.html);
    assert_eq!(setup.header("cache-control"), "no-store");
    let qr = setup
        .html
        .split("<div class=\"qr\">")
        .nth(1)
        .and_then(|r| r.split("</div>").next())
        .expect("a QR code");
    assert!(qr.starts_with("<svg"), "{qr}");
    assert!(qr.contains("<path"), "{qr}");
    assert!(!qr.contains("style"), "the CSP forbids inline style: {qr}");
    assert!(!qr.contains("<script"), "{qr}");
    assert!(!qr.contains("<?xml"), "{qr}");
    let secret = setup.testid("totp-secret").expect("the secret as text");
    assert!(secret.len() >= 16, "{secret}");

    // A wrong code is refused with the API's message; the right one turns MFA on.
    let wrong = c.post("/profile/mfa/verify", &[("code", "12345")]).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.html.contains("Invalid MFA code"), "{}", wrong.html);
    assert!(
        !wrong.html.contains(&secret),
        "the secret is not shown again"
    );
    let code = common::totp_now(&secret, &s.clock);
    let enabled = c.post("/profile/mfa/verify", &[("code", &code)]).await;
    assert_eq!(enabled.status, 200, "{}", enabled.html);
    assert_eq!(enabled.header("cache-control"), "no-store");
    assert!(enabled.html.contains("data-copy=\"recovery-codes\""));
    let codes: Vec<String> = enabled
        .testid("recovery-codes")
        .expect("the recovery codes")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    let profile = c.get("/profile").await;
    assert!(profile.html.contains("Turn off MFA"));
    assert!(
        !profile.html.contains(&codes[0]),
        "the codes are shown once"
    );

    // Signing in now asks for a code: the authenticator's, or a recovery code once.
    s.clock.advance_secs(31);
    let mut with_code = Console::new(&s);
    let challenge = mfa_challenge(&mut with_code, "ada@example.com").await;
    let code = common::totp_now(&secret, &s.clock);
    let ok = with_code
        .post_public("/login/mfa", &[("mfa_token", &challenge), ("code", &code)])
        .await;
    assert_eq!(ok.status, 303, "{}", ok.html);
    assert!(with_code.cookies.contains_key("keyrail_token"));

    let mut with_recovery = Console::new(&s);
    let challenge = mfa_challenge(&mut with_recovery, "ada@example.com").await;
    let ok = with_recovery
        .post_public(
            "/login/mfa",
            &[("mfa_token", &challenge), ("code", &codes[0])],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.html);
    assert!(with_recovery.cookies.contains_key("keyrail_token"));
    let mut again = Console::new(&s);
    let challenge = mfa_challenge(&mut again, "ada@example.com").await;
    let spent = again
        .post_public(
            "/login/mfa",
            &[("mfa_token", &challenge), ("code", &codes[0])],
        )
        .await;
    assert_eq!(spent.status, 401, "a recovery code works once");

    // Turning it off takes a code (5 MFA attempts per 5 minutes: a new window); then the
    // password alone signs in.
    s.clock.advance_secs(301);
    let wrong = c.post("/profile/mfa/disable", &[("code", "000001")]).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.html.contains("Invalid MFA code"));
    let off = c.post("/profile/mfa/disable", &[("code", &codes[1])]).await;
    assert_eq!(off.status, 303, "{}", off.html);
    assert_eq!(off.location(), "/profile?done=mfa_disabled");
    let (status, body) = s.login_as("ada@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert!(body["access_token"].is_string(), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn mfa_setup_needs_a_recent_sign_in() {
    let s = TestServer::start().await;
    owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    // Eleven minutes on: the page still works (its refresh token), the setup asks to sign in.
    s.clock.advance_secs(11 * 60);
    let page = c.post("/profile/mfa/setup", &[]).await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(
        page.html
            .contains("Sign in again with your password to set up MFA"),
        "{}",
        page.html
    );
    assert!(!page.html.contains("totp-secret"));
    s.stop().await;
}

#[tokio::test]
async fn name_and_password_change_with_the_api_messages() {
    let s = TestServer::start().await;
    owner(&s, "ada@example.com").await;
    let mut c = Console::sign_in(&s, "ada@example.com", PASSWORD).await;

    let renamed = c.post("/profile/name", &[("name", "Ada <b>L</b>")]).await;
    assert_eq!(renamed.status, 303);
    let profile = c.get("/profile").await;
    assert!(
        profile.html.contains("Ada &#60;b&#62;L&#60;/b&#62;")
            || profile.html.contains("Ada &lt;b&gt;L&lt;/b&gt;"),
        "escaped"
    );
    let blank = c.post("/profile/name", &[("name", "   ")]).await;
    assert_eq!(blank.status, 400);
    assert!(blank.html.contains("name must be 1 to 100 characters"));

    let weak = c
        .post(
            "/profile/password",
            &[("current_password", PASSWORD), ("new_password", "short")],
        )
        .await;
    assert_eq!(weak.status, 400);
    assert!(
        weak.html
            .contains("<span class=\"field-error\" id=\"new_password-error\">password must be at least 12 characters</span>"),
        "{}",
        weak.html
    );
    let wrong = c
        .post(
            "/profile/password",
            &[
                ("current_password", "not my password at all"),
                ("new_password", "a brand new passphrase 77"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.html.contains("current_password is wrong"));

    let changed = c
        .post(
            "/profile/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a brand new passphrase 77"),
            ],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.html);
    assert_eq!(changed.location(), "/login?done=password_changed");
    assert!(!c.cookies.contains_key("keyrail_token"), "signed out here");
    assert_eq!(c.get("/profile").await.status, 303);
    assert_eq!(s.login_as("ada@example.com", PASSWORD).await.0, 401);
    assert_eq!(
        s.login_as("ada@example.com", "a brand new passphrase 77")
            .await
            .0,
        200
    );
    s.stop().await;
}

/// The session ids in the rows of the sessions table: (id, current).
fn sessions(page: &Page) -> Vec<(String, bool)> {
    page.html
        .split("<tr")
        .skip(1)
        .filter_map(|row| {
            let id = row
                .split("action=\"/profile/sessions/")
                .nth(1)?
                .split('/')
                .next()?
                .to_owned();
            Some((id, row.contains("this session")))
        })
        .collect()
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let s = TestServer::start().await;
    owner(&s, "ada@example.com").await;
    let mut here = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let mut there = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let page = here.get("/profile").await;
    let list = sessions(&page);
    // The API's login in `owner` and the two sign-ins here.
    assert_eq!(list.len(), 3, "{}", page.html);
    assert_eq!(list.iter().filter(|(_, current)| *current).count(), 1);
    let theirs = there.get("/profile").await;
    let there_id = sessions(&theirs)
        .into_iter()
        .find(|(_, current)| *current)
        .unwrap()
        .0;
    let here_id = list.iter().find(|(_, current)| *current).unwrap().0.clone();
    assert_ne!(here_id, there_id);

    let revoked = here
        .post(&format!("/profile/sessions/{there_id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.html);
    assert_eq!(revoked.location(), "/profile?done=session_revoked");
    let gone = there.get("/profile").await;
    assert_eq!(gone.status, 303, "the other browser is signed out");
    assert!(gone.location().starts_with("/login"));
    let page = here.get(revoked.location()).await;
    assert_eq!(sessions(&page).len(), 2);
    assert!(page.html.contains("The session was revoked"));

    // Revoking this one signs out.
    let out = here
        .post(&format!("/profile/sessions/{here_id}/revoke"), &[])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/login?done=signed_out");
    assert!(!here.cookies.contains_key("keyrail_token"));
    assert_eq!(here.get("/profile").await.status, 303);
    s.stop().await;
}

/// Signs `email` up and makes them a platform superuser.
async fn superuser(s: &TestServer, email: &str) {
    let user = s.signup(email).await;
    let store = &s.server.as_ref().unwrap().state.store;
    let id = keyrail_core::id::UserId::parse(user["id"].as_str().unwrap()).unwrap();
    store
        .set_superuser(&id, true, keyrail_core::Timestamp::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn superusers_suspend_and_activate_workspaces() {
    let s = TestServer::start().await;
    let (token, ws) = owner(&s, "ada@example.com").await;
    let key = create_key(&s, &token, &ws, "live").await;
    let key = key["key"].as_str().unwrap().to_owned();
    assert_eq!(s.verify_code(&key).await, "VALID");

    // Someone else: no link, and the pages and forms are refused.
    let mut ada = Console::sign_in(&s, "ada@example.com", PASSWORD).await;
    let keys = ada.get(&format!("/w/{ws}/keys")).await;
    assert!(!keys.html.contains("href=\"/admin\""));
    for path in ["/admin", "/admin/workspaces"] {
        let page = ada.get(path).await;
        assert_eq!(page.status, 403, "{path}");
        assert!(page.html.contains("insufficient_scope"));
    }
    assert_eq!(
        ada.get(&format!("/admin/workspaces/{ws}/suspend"))
            .await
            .status,
        403
    );
    let refused = ada
        .post(&format!("/admin/workspaces/{ws}/suspend"), &[])
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(s.verify_code(&key).await, "VALID");

    superuser(&s, "root@example.com").await;
    let mut root = Console::sign_in(&s, "root@example.com", PASSWORD).await;
    let list = root.get("/admin/workspaces").await;
    assert_eq!(list.status, 200, "{}", list.html);
    assert!(
        list.html.contains("href=\"/admin\""),
        "the link for superusers"
    );
    assert!(list.html.contains("Acme"));
    assert!(
        list.html
            .contains(&format!("/admin/workspaces/{ws}/suspend"))
    );
    let confirm = root.get(&format!("/admin/workspaces/{ws}/suspend")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.html.contains(">Confirm</button>"));
    assert!(confirm.html.contains("Acme"));
    let done = root
        .post(&format!("/admin/workspaces/{ws}/suspend"), &[])
        .await;
    assert_eq!(done.status, 303, "{}", done.html);
    assert_eq!(s.verify_code(&key).await, "TENANT_SUSPENDED");
    let list = root.get(done.location()).await;
    assert!(list.html.contains("The workspace is suspended"));
    assert!(
        list.html
            .contains(&format!("/admin/workspaces/{ws}/activate"))
    );

    let done = root
        .post(&format!("/admin/workspaces/{ws}/activate"), &[])
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(s.verify_code(&key).await, "VALID");
    s.stop().await;
}

#[tokio::test]
async fn superusers_see_and_lift_a_lockout() {
    let s = TestServer::start().await;
    let bob = s.signup("bob@example.com").await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(
            s.login_as("bob@example.com", "wrong password!!").await.0,
            401
        );
    }
    assert_eq!(s.login_as("bob@example.com", PASSWORD).await.0, 429);

    superuser(&s, "root@example.com").await;
    let mut root = Console::sign_in(&s, "root@example.com", PASSWORD).await;
    let users = root.get("/admin").await;
    assert_eq!(users.status, 200, "{}", users.html);
    assert!(users.html.contains("bob@example.com"));
    let unlock = format!("/admin/users/{bob_id}/unlock");
    assert!(users.html.contains(&unlock), "{}", users.html);
    assert_eq!(users.html.matches(">locked</span>").count(), 1);

    // Only a superuser may.
    s.signup("eve@example.com").await;
    let mut eve = Console::sign_in(&s, "eve@example.com", PASSWORD).await;
    assert_eq!(eve.post(&unlock, &[]).await.status, 403);
    assert_eq!(s.login_as("bob@example.com", PASSWORD).await.0, 429);

    let done = root.post(&unlock, &[]).await;
    assert_eq!(done.status, 303, "{}", done.html);
    let users = root.get(done.location()).await;
    assert!(users.html.contains("The user can sign in again"));
    assert!(!users.html.contains(&unlock));
    assert_eq!(s.login_as("bob@example.com", PASSWORD).await.0, 200);
    s.stop().await;
}
