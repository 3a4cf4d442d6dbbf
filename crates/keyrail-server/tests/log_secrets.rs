//! Runs a full login / MFA / refresh / reset flow with every log level on, captures the log, and
//! checks that no secret reached it: not the password, its hash, the TOTP secret, a TOTP or
//! recovery code, a refresh, access, MFA or reset token. Its own binary, since it installs the
//! process-wide log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Backend, FakeSmtp, PASSWORD, TestServer, json, reset_token_in, totp_now};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .json()
        // Everything, with the one cap the server's own logging adds (rmcp's message dumps).
        .with_env_filter(
            tracing_subscriber::EnvFilter::new("trace")
                .add_directive(keyrail_server::mcp::LOG_DIRECTIVE.parse().unwrap()),
        )
        .with_writer(move || sink.clone())
        .init();

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
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned(), "$argon2id$".to_owned()];

    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap().to_owned();
    secrets.push(t.clone());
    secrets.push(a["refresh_token"].as_str().unwrap().to_owned());
    let (_, setup) = json(
        s.post_with("/api/v1/profile/mfa/setup", &t, &json!({}))
            .await,
    )
    .await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    secrets.push(secret.clone());
    let code = totp_now(&secret, &s.clock);
    let (_, codes) = json(
        s.post_with("/api/v1/profile/mfa/verify", &t, &json!({"code": code}))
            .await,
    )
    .await;
    secrets.push(code);
    for c in codes["recovery_codes"].as_array().unwrap() {
        secrets.push(c.as_str().unwrap().to_owned());
    }
    let (_, step) = s.login_as("ada@example.com", PASSWORD).await;
    secrets.push(step["mfa_token"].as_str().unwrap().to_owned());
    let (status, tokens) = json(
        s.post_json(
            "/api/v1/auth/login/mfa",
            &json!({"mfa_token": step["mfa_token"], "code": codes["recovery_codes"][0]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    secrets.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    let (_, refreshed) = json(
        s.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await,
    )
    .await;
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_owned());

    // Keys made and checked through `/mcp`: the JSON-RPC messages hold them.
    let (status, ws) = json(
        s.post_with("/api/v1/workspaces", &t, &json!({"name": "Acme"}))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    let ws = ws["id"].as_str().unwrap().to_owned();
    let (status, agent) = json(
        s.post_with(
            &format!("/api/v1/w/{ws}/keys"),
            &t,
            &json!({"name": "agent", "scopes": ["keys:read", "keys:write"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let agent = agent["key"].as_str().unwrap().to_owned();
    secrets.push(agent.clone());
    let mcp = |name: &str, arguments: serde_json::Value| {
        s.http
            .post(s.url("/mcp"))
            .bearer_auth(&agent)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}}))
            .send()
    };
    let (status, made) = json(
        mcp(
            "keys_create",
            json!({"workspace_id": ws, "name": "by a tool"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let made = made["result"]["structuredContent"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(made.clone());
    let (status, checked) = json(
        mcp("keys_verify", json!({"workspace_id": ws, "key": made}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["result"]["structuredContent"]["code"], "VALID");
    s.login_as("ada@example.com", "a wrong password 123").await;
    secrets.push("a wrong password 123".to_owned());

    s.post_json(
        "/api/v1/auth/password/reset/request",
        &json!({"email": "ada@example.com"}),
    )
    .await;
    let reset = reset_token_in(&smtp.message(0).await);
    secrets.push(reset.clone());
    let new_password = "a brand new passphrase 9";
    let r = s
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": reset, "password": new_password}),
        )
        .await;
    assert_eq!(r.status(), 204);
    secrets.push(new_password.to_owned());

    s.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.lines().count() > 10, "the log was captured:\n{log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {secret}"
        );
    }
}
