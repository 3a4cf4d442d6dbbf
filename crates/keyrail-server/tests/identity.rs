//! Black-box tests of accounts, sessions, MFA, lockout and password reset (API.md "Credentials",
//! "Auth", "Profile"), with the server's clock moved instead of sleeping.

mod common;

use common::{
    Backend, FakeSmtp, PASSWORD, TestServer, json, reset_token_in, set_cookie_value, totp_now,
};
use serde_json::{Value, json};

fn b64_json(segment: &str) -> Value {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn err(resp: reqwest::Response) -> (u16, String, String) {
    let (status, body) = json(resp).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn signup_validates_and_refuses_duplicates() {
    let s = TestServer::start().await;
    let user = s.signup("Ada@Example.com").await;
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Test User");
    assert_eq!(
        (user["mfa_enabled"].as_bool(), user["superuser"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(user["id"].as_str().unwrap().starts_with("usr_"));
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(user.get("password_hash").is_none());

    let dup = s
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "ada@example.com", "password": PASSWORD, "name": "x"}),
        )
        .await;
    assert_eq!(err(dup).await.2, "email_taken");
    for (body, field) in [
        (
            json!({"email": "b@example.com", "password": "short", "name": "x"}),
            "password",
        ),
        (
            json!({"email": "b@example.com", "password": "qwerty123456", "name": "x"}),
            "password",
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD, "name": "x"}),
            "email",
        ),
        (
            json!({"email": "b@example.com", "password": PASSWORD, "name": "  "}),
            "name",
        ),
        (
            json!({"email": "b@example.com", "password": PASSWORD, "name": "x", "superuser": true}),
            "superuser",
        ),
    ] {
        let (status, b) = json(s.post_json("/api/v1/auth/signup", &body).await).await;
        assert_eq!(
            (status, b["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {b}"
        );
        assert_eq!(b["field"], field, "{b}");
    }
    let (_, b) = json(
        s.post_json(
            "/api/v1/auth/signup",
            &json!({"email": "b@example.com", "password": "qwerty123456", "name": "x"}),
        )
        .await,
    )
    .await;
    assert!(b["error"].as_str().unwrap().contains("too common"), "{b}");
    s.stop().await;
}

#[tokio::test]
async fn login_issues_eddsa_tokens_published_in_jwks() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    let resp = s
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        resp.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with("\"login\";q="),
        "login carries the RateLimit fields"
    );
    let (status, body) = json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["email"], "ada@example.com");
    let token = body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64_json(parts[0]);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("EdDSA"), Some("at+jwt"))
    );
    let claims = b64_json(parts[1]);
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    assert_eq!(claims["aud"], "http://127.0.0.1:8080");
    assert_eq!(claims["sub"], body["user"]["id"]);
    assert!(claims["sid"].as_str().unwrap().starts_with("ses_"));
    assert!(claims["jti"].is_string());
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 900);

    let (_, jwks) = json(s.get("/.well-known/jwks.json").await).await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid published");
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );

    let token_cookie = cookies
        .iter()
        .find(|c| c.starts_with("keyrail_token="))
        .unwrap();
    assert!(
        token_cookie.contains("HttpOnly") && token_cookie.contains("SameSite=Strict"),
        "{token_cookie}"
    );
    assert!(
        !token_cookie.contains("Secure"),
        "dev mode on plain HTTP: {token_cookie}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("keyrail_csrf=") && !c.contains("HttpOnly"))
    );

    let (status, me) = json(s.get_with("/api/v1/profile", token).await).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("ada@example.com"))
    );
    s.stop().await;
}

#[tokio::test]
async fn credential_failures_have_the_exact_messages() {
    let s = TestServer::start().await;
    let resp = s.get("/api/v1/profile").await;
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        err(resp).await,
        (
            401,
            "Missing or invalid API key".into(),
            "missing_credentials".into()
        )
    );
    let resp = s
        .http
        .get(s.url("/api/v1/profile"))
        .header("authorization", "Token abc")
        .send()
        .await
        .unwrap();
    assert_eq!(err(resp).await.2, "missing_credentials");
    let resp = s.get_with("/api/v1/profile", "kr_notakey").await;
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        err(resp).await,
        (401, "Invalid API key".into(), "invalid_credentials".into())
    );

    let body = s.user("ada@example.com").await;
    let token = body["access_token"].as_str().unwrap();
    let mut tampered = token.to_owned();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        err(s.get_with("/api/v1/profile", &tampered).await).await,
        (
            401,
            "Invalid or expired token".into(),
            "invalid_token".into()
        )
    );
    // alg: none is refused.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let forged = format!("{none}.{}.", parts[1]);
    assert_eq!(
        err(s.get_with("/api/v1/profile", &forged).await).await.2,
        "invalid_token"
    );

    // Expired after 15 minutes.
    s.clock.advance_secs(15 * 60 + 1);
    assert_eq!(
        err(s.get_with("/api/v1/profile", token).await).await.2,
        "invalid_token"
    );
    s.stop().await;
}

#[tokio::test]
async fn wrong_logins_look_the_same_and_lock_after_five() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    for email in ["ada@example.com", "nobody@example.com"] {
        let (status, body) = s.login_as(email, "wrong password here").await;
        assert_eq!(
            (status, body["error"].as_str(), body["code"].as_str()),
            (
                401,
                Some("Invalid email or password"),
                Some("invalid_login")
            )
        );
    }
    for _ in 0..4 {
        assert_eq!(
            s.login_as("ada@example.com", "wrong password here").await.0,
            401
        );
        assert_eq!(
            s.login_as("nobody@example.com", "wrong password here")
                .await
                .0,
            401
        );
    }
    for email in ["ada@example.com", "nobody@example.com"] {
        let resp = s
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1790..=1800).contains(&retry), "{retry}");
        assert_eq!(
            err(resp).await,
            (429, "Account locked".into(), "account_locked".into())
        );
    }
    // The lock lasts 30 minutes.
    s.clock.advance_secs(29 * 60);
    assert_eq!(s.login_as("ada@example.com", PASSWORD).await.0, 429);
    s.clock.advance_secs(61);
    assert_eq!(s.login_as("ada@example.com", PASSWORD).await.0, 200);
    s.stop().await;
}

/// `n` logins with `password` for `email` sent all at once; each answer's status, code and
/// Retry-After.
async fn parallel_logins(
    s: &TestServer,
    email: &str,
    password: &str,
    n: usize,
) -> Vec<(u16, String, Option<u64>)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url) = (s.http.clone(), s.url("/api/v1/auth/login"));
            let body = json!({"email": email, "password": password});
            tokio::spawn(async move {
                let resp = http.post(url).json(&body).send().await.unwrap();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                let (status, body) = json(resp).await;
                (
                    status,
                    body["code"].as_str().unwrap_or("").to_owned(),
                    retry,
                )
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Fifty wrong passwords for one email at once: the lockout is reserved before each password is
/// checked, so no more than the five a window allows are ever checked (each a 401); every other
/// attempt is refused as locked, without hashing. Unknown emails answer the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_logins_check_at_most_five_passwords() {
    use keyrail_core::model::{AuditFilter, Page};
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(s) = TestServer::start_with(backend, |_| {}, None).await else {
            continue;
        };
        s.signup("ada@example.com").await;
        for email in ["ada@example.com", "nobody@example.com"] {
            let answers = parallel_logins(&s, email, "wrong password here", 50).await;
            let wrong = answers
                .iter()
                .filter(|a| (a.0, a.1.as_str()) == (401, "invalid_login"))
                .count();
            let locked: Vec<u64> = answers
                .iter()
                .filter(|a| (a.0, a.1.as_str()) == (429, "account_locked"))
                .map(|a| a.2.expect("a 429 carries Retry-After"))
                .collect();
            assert_eq!(
                (wrong, locked.len()),
                (5, 45),
                "{backend:?} {email}: {answers:?}"
            );
            assert!(locked.iter().all(|r| (1..=1800).contains(r)), "{locked:?}");
            // Locked now, the right password included.
            let (status, body) = s.login_as(email, PASSWORD).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (429, Some("account_locked"))
            );
        }
        let store = &s.server.as_ref().unwrap().state.store;
        let all = store
            .list_audit(&AuditFilter::default(), &Page::first(200))
            .await
            .unwrap();
        let count = |action: &str| all.iter().filter(|e| e.action == action).count();
        assert_eq!(count("user.login_failed"), 10, "{backend:?}");
        assert_eq!(count("user.locked"), 2, "{backend:?}");
        s.stop().await;
    }
}

#[tokio::test]
async fn login_attempts_per_ip_are_limited() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.limits.login_per_ip = "3/15m".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    s.signup("ada@example.com").await;
    for i in 0..3 {
        let resp = s
            .post_json(
                "/api/v1/auth/login",
                &json!({"email": "ada@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let rl = resp.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(rl.contains(&format!("r={}", 2 - i)), "{rl}");
        assert_eq!(resp.headers()["ratelimit-policy"], "\"login\";q=3;w=900");
    }
    let resp = s
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        err(resp).await,
        (429, "Too many requests".into(), "too_many_requests".into())
    );
    s.clock.advance_secs(5 * 60 + 1);
    assert_eq!(
        s.login_as("ada@example.com", PASSWORD).await.0,
        200,
        "one slot is back after w/q"
    );
    s.stop().await;
}

#[tokio::test]
async fn signup_can_be_turned_off() {
    let s = TestServer::start_with(Backend::Sqlite, |c| c.allow_signup = false, None)
        .await
        .unwrap();
    let resp = s
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}),
        )
        .await;
    assert_eq!(
        err(resp).await,
        (
            403,
            "Signup is disabled on this server".to_owned(),
            "signup_disabled".to_owned()
        )
    );
    let (status, _) = s.login_as("ada@example.com", PASSWORD).await;
    assert_eq!(status, 401, "no account was made");
    let (_, doc) = json(s.get("/api/v1/openapi.json").await).await;
    let documented = doc["paths"]["/api/v1/auth/signup"]["post"]["responses"]["403"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(documented.contains("signup_disabled"), "{documented}");
    s.stop().await;
}

#[tokio::test]
async fn signups_and_reset_requests_per_ip_are_limited() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.limits.signup_per_ip = "2/1h".parse().unwrap();
            c.limits.password_reset_per_ip = "2/1h".parse().unwrap();
        },
        None,
    )
    .await
    .unwrap();
    s.signup("a@example.com").await;
    s.signup("b@example.com").await;
    let resp = s
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "c@example.com", "password": PASSWORD, "name": "C"}),
        )
        .await;
    assert_eq!(resp.headers()["ratelimit-policy"], "\"signup\";q=2;w=3600");
    assert_eq!(err(resp).await.0, 429);
    for expected in [202, 202, 429] {
        let r = s
            .post_json(
                "/api/v1/auth/password/reset/request",
                &json!({"email": "a@example.com"}),
            )
            .await;
        assert_eq!(r.status(), expected);
    }
    s.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let s = TestServer::start().await;
    let first = s.user("ada@example.com").await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = json(
        s.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r1}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    let a2 = second["access_token"].as_str().unwrap();
    assert_eq!(s.get_with("/api/v1/profile", a2).await.status(), 200);

    // Presenting the spent token again: 401, and the whole session dies, new tokens included.
    let (status, body) = json(
        s.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r1}))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert_eq!(s.get_with("/api/v1/profile", a2).await.status(), 401);
    assert_eq!(
        s.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r2}))
            .await
            .status(),
        401
    );
    assert_eq!(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": "nonsense"})
        )
        .await
        .status(),
        401
    );
    s.stop().await;
}

#[tokio::test]
async fn logout_and_session_revocation_take_effect_at_once() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let (_, b) = s.login_as("ada@example.com", PASSWORD).await;
    let (ta, tb) = (
        a["access_token"].as_str().unwrap(),
        b["access_token"].as_str().unwrap(),
    );

    let (status, list) = json(s.get_with("/api/v1/profile/sessions", ta).await).await;
    assert_eq!(status, 200);
    let sessions = list["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(list["next_cursor"], Value::Null);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let resp = s
        .http
        .delete(s.url(&format!("/api/v1/profile/sessions/{other}")))
        .bearer_auth(ta)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        err(s.get_with("/api/v1/profile", tb).await).await.2,
        "invalid_token"
    );
    let resp = s
        .http
        .delete(s.url(&format!("/api/v1/profile/sessions/{other}")))
        .bearer_auth(ta)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let resp = s
        .http
        .post(s.url("/api/v1/auth/logout"))
        .bearer_auth(ta)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("keyrail_token=;"))
    );
    assert_eq!(
        err(s.get_with("/api/v1/profile", ta).await).await.2,
        "invalid_token"
    );
    assert_eq!(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": a["refresh_token"]})
        )
        .await
        .status(),
        401
    );
    s.stop().await;
}

#[tokio::test]
async fn sessions_of_one_user_are_invisible_to_another() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let b = s.user("bob@example.com").await;
    let (_, list) = json(
        s.get_with(
            "/api/v1/profile/sessions",
            b["access_token"].as_str().unwrap(),
        )
        .await,
    )
    .await;
    let bob_session = list["data"][0]["id"].as_str().unwrap().to_owned();
    let resp = s
        .http
        .delete(s.url(&format!("/api/v1/profile/sessions/{bob_session}")))
        .bearer_auth(a["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        s.get_with("/api/v1/profile", b["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn profile_updates_and_password_change() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    let resp = s
        .http
        .patch(s.url("/api/v1/profile"))
        .bearer_auth(t)
        .json(&json!({"name": "Ada L."}))
        .send()
        .await
        .unwrap();
    let (status, me) = json(resp).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("Ada L.")));

    let wrong = s.post_with("/api/v1/profile/password", t, &json!({"current_password": "not it at all", "new_password": "another long passphrase 7"})).await;
    assert_eq!(err(wrong).await.0, 400);
    let ok = s
        .post_with(
            "/api/v1/profile/password",
            t,
            &json!({"current_password": PASSWORD, "new_password": "another long passphrase 7"}),
        )
        .await;
    assert_eq!(ok.status(), 204);
    assert_eq!(
        s.get_with("/api/v1/profile", t).await.status(),
        401,
        "sessions end with a password change"
    );
    assert_eq!(s.login_as("ada@example.com", PASSWORD).await.0, 401);
    assert_eq!(
        s.login_as("ada@example.com", "another long passphrase 7")
            .await
            .0,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn totp_mfa_setup_login_replay_and_recovery_codes() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    let (status, setup) = json(
        s.post_with("/api/v1/profile/mfa/setup", t, &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{setup}");
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let url = setup["otpauth_url"].as_str().unwrap();
    assert!(
        url.starts_with("otpauth://totp/")
            && url.contains(&format!("secret={secret}"))
            && url.contains("digits=6")
            && url.contains("period=30"),
        "{url}"
    );

    let (status, _) = json(
        s.post_with("/api/v1/profile/mfa/verify", t, &json!({"code": "000000"}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, codes) = json(
        s.post_with(
            "/api/v1/profile/mfa/verify",
            t,
            &json!({"code": totp_now(&secret, &s.clock)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{codes}");
    let codes: Vec<String> = codes["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let (_, me) = json(s.get_with("/api/v1/profile", t).await).await;
    assert_eq!(me["mfa_enabled"], true);

    // Login now asks for the second step; the code used to enable MFA cannot be replayed.
    let (status, step) = s.login_as("ada@example.com", PASSWORD).await;
    assert_eq!(
        (status, step["mfa_required"].as_bool()),
        (200, Some(true)),
        "{step}"
    );
    assert!(step.get("access_token").is_none());
    let mfa_token = step["mfa_token"].as_str().unwrap().to_owned();
    let replay = s
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": mfa_token, "code": totp_now(&secret, &s.clock)}),
        )
        .await;
    assert_eq!(
        err(replay).await,
        (401, "Invalid MFA code".into(), "invalid_mfa_code".into())
    );
    s.clock.advance_secs(30);
    let (status, tokens) = json(
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": mfa_token, "code": totp_now(&secret, &s.clock)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string());
    // The challenge is spent.
    let again = s
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": mfa_token, "code": codes[0]}),
        )
        .await;
    assert_eq!(err(again).await.2, "invalid_mfa_token");

    // A recovery code works once (after the per-user attempt window has passed).
    s.clock.advance_secs(5 * 60 + 1);
    let (_, step) = s.login_as("ada@example.com", PASSWORD).await;
    let (status, _) = json(
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": codes[0]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (_, step) = s.login_as("ada@example.com", PASSWORD).await;
    let (status, _) = json(
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": codes[0]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);

    // The MFA token expires after 5 minutes.
    let (_, step) = s.login_as("ada@example.com", PASSWORD).await;
    s.clock.advance_secs(5 * 60 + 1);
    let late = s
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": codes[1]}),
        )
        .await;
    assert_eq!(err(late).await.2, "invalid_mfa_token");

    // Disable with a fresh code.
    s.clock.advance_secs(30);
    let t2 = tokens["access_token"].as_str().unwrap();
    let (_, fresh) = s.login_as("ada@example.com", PASSWORD).await;
    let (_, fresh) = json(
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": fresh["mfa_token"], "code": codes[2]}),
        )
        .await,
    )
    .await;
    let t3 = fresh["access_token"].as_str().unwrap();
    let _ = t2;
    let resp = s
        .post_with(
            "/api/v1/profile/mfa/disable",
            t3,
            &json!({"code": totp_now(&secret, &s.clock)}),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let (status, body) = s.login_as("ada@example.com", PASSWORD).await;
    assert_eq!((status, body["access_token"].is_string()), (200, true));
    s.stop().await;
}

#[tokio::test]
async fn mfa_attempts_are_limited_per_user() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    let (_, setup) = json(
        s.post_with("/api/v1/profile/mfa/setup", t, &json!({}))
            .await,
    )
    .await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let (status, _) = json(
        s.post_with(
            "/api/v1/profile/mfa/verify",
            t,
            &json!({"code": totp_now(&secret, &s.clock)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (_, step) = s.login_as("ada@example.com", PASSWORD).await;
    // 1 attempt used by verify above; 4 more wrong ones, then the limit.
    for _ in 0..4 {
        let r = s
            .post_json(
                "/api/v1/auth/login/mfa",
                &json!({"mfa_token": step["mfa_token"], "code": "123456"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    s.clock.advance_secs(30);
    let r = s
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": totp_now(&secret, &s.clock)}),
        )
        .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(err(r).await.0, 429);
    s.stop().await;
}

#[tokio::test]
async fn password_reset_by_mail_unlocks_and_ends_sessions() {
    let smtp = FakeSmtp::start().await;
    let port = smtp.port;
    let s = TestServer::start_with(
        Backend::Sqlite,
        move |c| {
            c.smtp_url = format!("smtp://127.0.0.1:{port}");
            c.dev = false;
        },
        None,
    )
    .await
    .unwrap();
    let a = s.user("ada@example.com").await;
    for _ in 0..5 {
        s.login_as("ada@example.com", "wrong password here").await;
    }
    assert_eq!(
        s.login_as("ada@example.com", PASSWORD).await.0,
        429,
        "locked"
    );

    assert_eq!(
        s.post_json(
            "/api/v1/auth/password/reset/request",
            &json!({"email": "nobody@example.com"})
        )
        .await
        .status(),
        202
    );
    let resp = s
        .post_json(
            "/api/v1/auth/password/reset/request",
            &json!({"email": "ADA@example.com"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().contains_key("ratelimit-policy"));
    let mail = smtp.message(0).await;
    assert!(mail.contains("ada@example.com"), "{mail}");
    assert_eq!(
        smtp.messages.lock().await.len(),
        1,
        "no mail for an unknown address"
    );
    let token = reset_token_in(&mail);

    let weak = s
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": token, "password": "short"}),
        )
        .await;
    assert_eq!(err(weak).await.0, 400);
    let ok = s
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": token, "password": "a brand new passphrase 9"}),
        )
        .await;
    assert_eq!(ok.status(), 204);
    let reuse = s
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": token, "password": "a brand new passphrase 10"}),
        )
        .await;
    assert_eq!(err(reuse).await.0, 400);
    assert_eq!(
        s.get_with("/api/v1/profile", a["access_token"].as_str().unwrap())
            .await
            .status(),
        401,
        "sessions revoked"
    );
    assert_eq!(
        s.login_as("ada@example.com", "a brand new passphrase 9")
            .await
            .0,
        200,
        "unlocked"
    );

    // Tokens expire after 30 minutes.
    s.post_json(
        "/api/v1/auth/password/reset/request",
        &json!({"email": "ada@example.com"}),
    )
    .await;
    let late = reset_token_in(&smtp.message(1).await);
    s.clock.advance_secs(31 * 60);
    let resp = s
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": late, "password": "yet another passphrase 11"}),
        )
        .await;
    assert_eq!(err(resp).await.0, 400);
    s.stop().await;
}

#[tokio::test]
async fn cookie_writes_need_the_csrf_header() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    let resp = s
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    let cookie_of = |name: &str| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned()
    };
    let (token, csrf) = (cookie_of("keyrail_token"), cookie_of("keyrail_csrf"));
    let cookies = format!("keyrail_token={token}; keyrail_csrf={csrf}");
    let r = s
        .http
        .get(s.url("/api/v1/profile"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .post(s.url("/api/v1/profile/mfa/setup"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(
        err(r).await,
        (
            403,
            "CSRF token missing or invalid".into(),
            "csrf_failed".into()
        )
    );
    let r = s
        .http
        .post(s.url("/api/v1/profile/mfa/setup"))
        .header("cookie", &cookies)
        .header("x-csrf-token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(s.url("/api/v1/profile/mfa/setup"))
        .header("cookie", &cookies)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Plain double-submit would pass a value the attacker planted in both cookie and header:
    // the token is bound to the session, so it does not.
    let planted = format!("keyrail_token={token}; keyrail_csrf=attacker");
    let r = s
        .http
        .post(s.url("/api/v1/profile/mfa/disable"))
        .header("cookie", &planted)
        .header("x-csrf-token", "attacker")
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(err(r).await.2, "csrf_failed");
    // Another session's token (the attacker's own, from their login) does not pass either.
    s.signup("eve@example.com").await;
    let eve = s.login_set_cookies("eve@example.com").await;
    let eve_csrf = set_cookie_value(&eve, "keyrail_csrf").unwrap();
    assert_ne!(eve_csrf, csrf);
    let r = s
        .http
        .post(s.url("/api/v1/profile/mfa/disable"))
        .header(
            "cookie",
            format!("keyrail_token={token}; keyrail_csrf={eve_csrf}"),
        )
        .header("x-csrf-token", &eve_csrf)
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(err(r).await.2, "csrf_failed");
    s.stop().await;
}

#[tokio::test]
async fn over_https_the_session_cookies_are_host_prefixed() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.public_url = serde_json::from_value(json!("https://auth.example.com")).unwrap(),
        None,
    )
    .await
    .unwrap();
    s.signup("ada@example.com").await;
    let set = s.login_set_cookies("ada@example.com").await;
    let value_of = |name: &str| set_cookie_value(&set, name);
    let token = value_of("__Host-keyrail_token").expect("__Host- token cookie");
    let csrf = value_of("__Host-keyrail_csrf").expect("__Host- csrf cookie");
    assert!(
        set.iter()
            .all(|c| c.contains("; Secure") && c.contains("Path=/"))
    );
    assert!(value_of("keyrail_token").is_none());
    // The prefixed cookie is the credential; the plain name is not read over HTTPS.
    let r = s
        .http
        .get(s.url("/api/v1/profile"))
        .header("cookie", format!("__Host-keyrail_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(s.url("/api/v1/profile"))
        .header("cookie", format!("keyrail_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .post(s.url("/api/v1/auth/logout"))
        .header("cookie", format!("__Host-keyrail_token={token}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.stop().await;
}

#[tokio::test]
async fn failed_credentials_block_the_ip_but_logins_do_not_count() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let good = a["access_token"].as_str().unwrap();
    for _ in 0..8 {
        s.login_as("ada@example.com", "wrong password here").await;
    }
    // API.md: "10 failed authentications ... 429": each of the ten gets its 401, the request
    // after them the 429.
    for _ in 0..10 {
        assert_eq!(
            s.get_with("/api/v1/profile", "kr_bogus").await.status(),
            401
        );
    }
    let eleventh = s.get_with("/api/v1/profile", "kr_bogus").await;
    assert_eq!(eleventh.status(), 429);
    let blocked = s.get_with("/api/v1/profile", good).await;
    let retry: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((890..=900).contains(&retry), "{retry}");
    assert_eq!(
        err(blocked).await,
        (429, "Too many requests".into(), "too_many_requests".into())
    );
    s.clock.advance_secs(15 * 60 + 1);
    assert_eq!(
        s.get_with("/api/v1/profile", good).await.status(),
        401,
        "token expired meanwhile, but no block"
    );
    s.stop().await;
}

#[tokio::test]
async fn identity_works_on_postgres() {
    let Some(s) = TestServer::start_with(Backend::Postgres, |_| {}, None).await else {
        return;
    };
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    assert_eq!(s.get_with("/api/v1/profile", t).await.status(), 200);
    let (status, b) = json(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": a["refresh_token"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": a["refresh_token"]})
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        s.get_with("/api/v1/profile", b["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    s.stop().await;
}

#[tokio::test]
async fn identity_events_are_audited() {
    use keyrail_core::model::{AuditFilter, Page};
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    for _ in 0..5 {
        s.login_as("ada@example.com", "wrong password here").await;
    }
    let (_, setup) = json(
        s.post_with("/api/v1/profile/mfa/setup", t, &json!({}))
            .await,
    )
    .await;
    let code = totp_now(setup["secret"].as_str().unwrap(), &s.clock);
    assert_eq!(
        s.post_with("/api/v1/profile/mfa/verify", t, &json!({"code": code}))
            .await
            .status(),
        200
    );

    let store = &s.server.as_ref().unwrap().state.store;
    let all = store
        .list_audit(&AuditFilter::default(), &Page::first(200))
        .await
        .unwrap();
    let count = |action: &str| all.iter().filter(|e| e.action == action).count();
    assert_eq!(count("user.login"), 1);
    assert_eq!(count("user.login_failed"), 5);
    assert_eq!(count("user.locked"), 1);
    assert_eq!(count("user.mfa_enabled"), 1);
    let login = all.iter().find(|e| e.action == "user.login").unwrap();
    assert_eq!(login.actor_id.as_deref(), a["user"]["id"].as_str());
    assert_eq!(login.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(login.outcome, "success");
    let failed = all
        .iter()
        .find(|e| e.action == "user.login_failed")
        .unwrap();
    assert_eq!(failed.outcome, "failure");
    assert_eq!(failed.target.as_deref(), a["user"]["id"].as_str());
    s.stop().await;
}

#[tokio::test]
async fn old_password_hashes_are_upgraded_at_login() {
    use keyrail_core::Clock;
    let s = TestServer::start().await;
    let user = s.signup("ada@example.com").await;
    let id = keyrail_core::id::UserId::parse(user["id"].as_str().unwrap()).unwrap();
    let store = s.server.as_ref().unwrap().state.store.clone();
    // A hash made with weaker, older parameters (m=8 MiB, t=1).
    let weak = {
        use argon2::PasswordHasher as _;
        let params = argon2::Params::new(8192, 1, 1, Some(32)).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        a.hash_password_with_salt(PASSWORD.as_bytes(), b"0123456789abcdef")
            .unwrap()
            .to_string()
    };
    store
        .set_password_hash(&id, &weak, s.clock.now())
        .await
        .unwrap();
    assert_eq!(s.login_as("ada@example.com", PASSWORD).await.0, 200);
    let stored = store.user_by_id(&id).await.unwrap().unwrap();
    let phc = stored.password_hash.expose();
    assert!(
        phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "rehashed with the OWASP parameters: {phc}"
    );
    assert_eq!(s.login_as("ada@example.com", PASSWORD).await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn rotated_signing_keys_stay_published_until_their_tokens_expire() {
    use keyrail_core::Clock;
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let old_token = a["access_token"].as_str().unwrap().to_owned();
    let (_, jwks) = json(s.get("/.well-known/jwks.json").await).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let state = s.server.as_ref().unwrap().state.clone();

    // 31 days on, the hourly refresh makes a new key; tokens of the old one still verify.
    s.clock.advance_secs(31 * 86_400);
    state
        .identity
        .keyring
        .refresh(state.store.as_ref(), &state.master_key, s.clock.now())
        .await
        .unwrap();
    let (_, jwks) = json(s.get("/.well-known/jwks.json").await).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let (_, fresh) = s.login_as("ada@example.com", PASSWORD).await;
    let kid_of = |t: &str| {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let new_token = fresh["access_token"].as_str().unwrap();
    assert_ne!(
        kid_of(new_token),
        kid_of(&old_token),
        "new tokens use the new key"
    );
    assert_eq!(s.get_with("/api/v1/profile", new_token).await.status(), 200);

    // Once every token of the old key has expired, it leaves the published set.
    s.clock.advance_secs(20 * 60);
    let (_, jwks) = json(s.get("/.well-known/jwks.json").await).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid_of(new_token)]);
    s.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_counts() {
    use keyrail_core::model::{AuditFilter, Page};
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.trusted_proxies = vec!["127.0.0.0/8".into()],
        None,
    )
    .await
    .unwrap();
    s.signup("ada@example.com").await;
    let login = |xff: &'static str| {
        s.http
            .post(s.url("/api/v1/auth/login"))
            .header("x-forwarded-for", xff)
            .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
            .send()
    };
    assert_eq!(
        login("198.51.100.1, 203.0.113.9").await.unwrap().status(),
        200
    );
    let store = &s.server.as_ref().unwrap().state.store;
    let log = store
        .list_audit(
            &AuditFilter {
                action: Some("user.login".into()),
                ..Default::default()
            },
            &Page::first(10),
        )
        .await
        .unwrap();
    assert_eq!(
        log[0].ip.as_deref(),
        Some("203.0.113.9"),
        "the right-most untrusted hop"
    );
    s.stop().await;

    // Without the setting, the header is ignored: anyone can send it.
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    let resp = s
        .http
        .post(s.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let store = &s.server.as_ref().unwrap().state.store;
    let log = store
        .list_audit(
            &AuditFilter {
                action: Some("user.login".into()),
                ..Default::default()
            },
            &Page::first(10),
        )
        .await
        .unwrap();
    assert_eq!(log[0].ip.as_deref(), Some("127.0.0.1"));
    s.stop().await;
}

#[tokio::test]
async fn mfa_setup_needs_a_recent_password_sign_in() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    // Eleven minutes later the session lives on (a refreshed token, a stolen cookie), but
    // binding an authenticator asks for the password again.
    s.clock.advance_secs(11 * 60);
    let (status, refreshed) = json(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": a["refresh_token"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let t = refreshed["access_token"].as_str().unwrap();
    let r = s
        .post_with("/api/v1/profile/mfa/setup", t, &json!({}))
        .await;
    assert_eq!(
        err(r).await,
        (
            403,
            "Sign in again with your password to set up MFA".into(),
            "reauthentication_required".into()
        )
    );
    // A fresh sign-in may.
    let (_, fresh) = s.login_as("ada@example.com", PASSWORD).await;
    let r = s
        .post_with(
            "/api/v1/profile/mfa/setup",
            fresh["access_token"].as_str().unwrap(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn wrong_current_passwords_are_limited_per_user() {
    let s = TestServer::start().await;
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    let change = |current: &'static str| json!({"current_password": current, "new_password": "another long passphrase 7"});
    // A stolen session cannot guess the password through the change endpoint: five tries per
    // 30 minutes (the login lockout's numbers), and then not even the right one passes.
    for _ in 0..5 {
        let r = s
            .post_with("/api/v1/profile/password", t, &change("guess number one"))
            .await;
        assert_eq!(r.status(), 400);
    }
    let r = s
        .post_with("/api/v1/profile/password", t, &change(PASSWORD))
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The allowance comes back at five per 30 minutes: one every six.
    s.clock.advance_secs(6 * 60 + 1);
    let r = s
        .post_with("/api/v1/profile/password", t, &change(PASSWORD))
        .await;
    assert_eq!(r.status(), 204);
    s.stop().await;
}

#[tokio::test]
async fn look_alike_emails_do_not_make_second_accounts() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    let signup = |email: &str| json!({"email": email, "password": PASSWORD, "name": "Not Ada"});
    // Fullwidth letters are the same address: taken.
    let r = s
        .post_json(
            "/api/v1/auth/signup",
            &signup("ＡＤＡ@ｅｘａｍｐｌｅ.ｃｏｍ"),
        )
        .await;
    assert_eq!(err(r).await.2, "email_taken");
    // Invisible characters, combining marks and Latin mixed with Cyrillic are refused.
    for email in [
        "ada\u{200B}@example.com",
        "ada\u{0332}@example.com",
        "\u{0430}da@example.com",
    ] {
        let r = s.post_json("/api/v1/auth/signup", &signup(email)).await;
        let (status, body) = json(r).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (400, Some("invalid_request"), Some("email")),
            "{email:?}: {body}"
        );
    }
    // And the fullwidth form logs in to the one account.
    let (status, _) = s.login_as("ａｄａ@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// A server that mails through a [`FakeSmtp`].
async fn with_mail() -> (FakeSmtp, TestServer) {
    let smtp = FakeSmtp::start().await;
    let port = smtp.port;
    let s = TestServer::start_with(
        Backend::Sqlite,
        move |c| {
            c.smtp_url = format!("smtp://127.0.0.1:{port}");
            c.dev = false;
        },
        None,
    )
    .await
    .unwrap();
    (smtp, s)
}

/// Asks for a reset of ada@example.com; the token of the `n`-th mail.
async fn reset_token(s: &TestServer, smtp: &FakeSmtp, n: usize) -> String {
    let r = s
        .post_json(
            "/api/v1/auth/password/reset/request",
            &json!({"email": "ada@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    reset_token_in(&smtp.message(n).await)
}

/// Resets the password with `token`: the status and the field an error names (null for none).
async fn reset_with(s: &TestServer, token: &str, password: &str) -> (u16, Value) {
    let resp = s
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": token, "password": password}),
        )
        .await;
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
    (status, body["field"].clone())
}

/// Resets the password with `token`: the status (a 204 has no body).
async fn reset_status(s: &TestServer, token: &str, password: &str) -> u16 {
    s.post_json(
        "/api/v1/auth/password/reset",
        &json!({"token": token, "password": password}),
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn using_a_reset_token_spends_the_older_ones() {
    let (smtp, s) = with_mail().await;
    s.signup("ada@example.com").await;
    let older = reset_token(&s, &smtp, 0).await;
    let newer = reset_token(&s, &smtp, 1).await;
    assert_ne!(older, newer);
    assert_eq!(
        reset_status(&s, &newer, "a brand new passphrase 9").await,
        204
    );
    assert_eq!(
        reset_with(&s, &older, "an attacker's passphrase 1").await,
        (400, json!("token")),
        "the older token died with the reset"
    );
    assert_eq!(
        s.login_as("ada@example.com", "a brand new passphrase 9")
            .await
            .0,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn a_password_change_spends_outstanding_reset_tokens() {
    let (smtp, s) = with_mail().await;
    let a = s.user("ada@example.com").await;
    let token = reset_token(&s, &smtp, 0).await;
    let changed = s
        .post_with(
            "/api/v1/profile/password",
            a["access_token"].as_str().unwrap(),
            &json!({"current_password": PASSWORD, "new_password": "another long passphrase 7"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    assert_eq!(
        reset_with(&s, &token, "an attacker's passphrase 1").await,
        (400, json!("token")),
        "a reset token asked for before the change no longer works"
    );
    assert_eq!(
        s.login_as("ada@example.com", "another long passphrase 7")
            .await
            .0,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn a_password_reset_spends_pending_mfa_logins() {
    let (smtp, s) = with_mail().await;
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    let (_, setup) = json(
        s.post_with("/api/v1/profile/mfa/setup", t, &json!({}))
            .await,
    )
    .await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let r = s
        .post_with(
            "/api/v1/profile/mfa/verify",
            t,
            &json!({"code": totp_now(&secret, &s.clock)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Whoever knew the old password got this far, but the reset comes first.
    let (status, step) = s.login_as("ada@example.com", PASSWORD).await;
    assert_eq!((status, step["mfa_required"].as_bool()), (200, Some(true)));
    let token = reset_token(&s, &smtp, 0).await;
    assert_eq!(
        reset_status(&s, &token, "a brand new passphrase 9").await,
        204
    );
    s.clock.advance_secs(30);
    let late = s
        .post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": totp_now(&secret, &s.clock)}),
        )
        .await;
    assert_eq!(
        err(late).await,
        (
            401,
            "Invalid or expired MFA token".into(),
            "invalid_mfa_token".into()
        )
    );
    // The new password's own MFA login goes through.
    let (_, step) = s
        .login_as("ada@example.com", "a brand new passphrase 9")
        .await;
    s.clock.advance_secs(30);
    let (status, _) = json(
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": totp_now(&secret, &s.clock)}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// The session id (`sid`) of an access token.
fn sid_of(body: &Value) -> keyrail_core::id::SessionId {
    let token = body["access_token"].as_str().unwrap();
    let claims = b64_json(token.split('.').nth(1).unwrap());
    keyrail_core::id::SessionId::parse(claims["sid"].as_str().unwrap()).unwrap()
}

/// Spends `body`'s refresh token: the new pair.
async fn refreshed(s: &TestServer, body: &Value) -> Value {
    let (status, next) = json(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": body["refresh_token"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{next}");
    next
}

async fn logout(s: &TestServer, body: &Value) {
    let r = s
        .http
        .post(s.url("/api/v1/auth/logout"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// The background cleanup, run once through the server's own function: refresh tokens of dead
/// sessions, sessions dead for longer than the retention, old change-log entries, spent or
/// expired MFA challenges and reset tokens, and finished lockout windows go; what lives keeps
/// working, reuse detection of a live session included.
#[tokio::test]
async fn cleanup_removes_what_is_dead_and_keeps_what_lives() {
    use keyrail_server::background::{Cleaned, cleanup};
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(s) = TestServer::start_with(backend, |_| {}, None).await else {
            continue;
        };
        // Bob, with MFA, leaves a login at its second step: a challenge that expires.
        let bob = s.user("bob@example.com").await;
        let t = bob["access_token"].as_str().unwrap();
        let (_, setup) = json(
            s.post_with("/api/v1/profile/mfa/setup", t, &json!({}))
                .await,
        )
        .await;
        let code = totp_now(setup["secret"].as_str().unwrap(), &s.clock);
        let r = s
            .post_with("/api/v1/profile/mfa/verify", t, &json!({"code": code}))
            .await;
        assert_eq!(r.status(), 200);
        let (_, step) = s.login_as("bob@example.com", PASSWORD).await;
        assert_eq!(step["mfa_required"], true);
        // Ada: session A rotated once and logged out (two dead tokens, a change-log entry);
        // session B live and rotated once (a spent token kept for reuse detection).
        let a = refreshed(&s, &s.user("ada@example.com").await).await;
        logout(&s, &a).await;
        let (_, b) = s.login_as("ada@example.com", PASSWORD).await;
        let b2 = refreshed(&s, &b).await;
        // A failed login of an unknown email; a reset token of Ada's.
        assert_eq!(
            s.login_as("nobody@example.com", "wrong password here")
                .await
                .0,
            401
        );
        let r = s
            .post_json(
                "/api/v1/auth/password/reset/request",
                &json!({"email": "ada@example.com"}),
            )
            .await;
        assert_eq!(r.status(), 202);

        // Eight days on, session C is logged out: the newest change-log entry.
        s.clock.advance_secs(8 * 86_400);
        let (_, c) = s.login_as("ada@example.com", PASSWORD).await;
        logout(&s, &c).await;

        let state = &s.server.as_ref().unwrap().state;
        let done = cleanup(state).await.unwrap();
        assert_eq!(
            done,
            Cleaned {
                // The first signing key's announcement (at the start) and session A's logout.
                changes: 2,
                refresh_tokens: 3,
                sessions: 1,
                login_throttle: 1,
                mfa_challenges: 1,
                password_resets: 1,
                ..Cleaned::default()
            },
            "{backend:?}"
        );
        let store = &state.store;
        assert!(store.session_by_id(&sid_of(&a)).await.unwrap().is_none());
        assert!(store.session_by_id(&sid_of(&c)).await.unwrap().is_some());
        let log = store.changes_after(0, 100).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].subject, sid_of(&c).as_str());
        let key = keyrail_core::identity::login_throttle_key("nobody@example.com");
        assert_eq!(store.login_throttle(&key).await.unwrap(), None);
        assert_eq!(cleanup(state).await.unwrap(), Cleaned::default());

        // The live session goes on: it refreshes, and its spent token still ends it.
        let b3 = refreshed(&s, &b2).await;
        let reuse = s
            .post_json(
                "/api/v1/auth/refresh",
                &json!({"refresh_token": b["refresh_token"]}),
            )
            .await;
        assert_eq!(err(reuse).await.2, "invalid_token");
        assert_eq!(
            s.get_with("/api/v1/profile", b3["access_token"].as_str().unwrap())
                .await
                .status(),
            401
        );
        // Bob's new login completes.
        s.clock.advance_secs(30);
        let (_, step) = s.login_as("bob@example.com", PASSWORD).await;
        let code = totp_now(setup["secret"].as_str().unwrap(), &s.clock);
        let (status, _) = json(
            s.post_json(
                "/api/v1/auth/login/mfa",
                &json!({"mfa_token": step["mfa_token"], "code": code}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
        s.stop().await;
    }
}
