//! Black-box tests of `GET W/export`: what a workspace export holds, what it never holds, who
//! may take one, and that it pages through workspaces larger than one store page.

mod common;

use common::{PASSWORD, TestServer, json, totp_now};
use serde_json::{Value, json};
use sqlx::Connection;

/// Every value of `sql` (one text column) on the server's SQLite database, NULLs left out.
async fn db_texts(s: &TestServer, sql: &str) -> Vec<String> {
    let file = s
        .dir
        .path()
        .join("data")
        .join(keyrail_store::SQLITE_FILE_NAME);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let rows: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows.into_iter().flatten().collect()
}

struct Export {
    status: u16,
    cache_control: Option<String>,
    text: String,
}

async fn export(s: &TestServer, ws: &str, token: &str) -> Export {
    let resp = s.get_with(&format!("/api/v1/w/{ws}/export"), token).await;
    let status = resp.status().as_u16();
    let cache_control = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    Export {
        status,
        cache_control,
        text,
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("export is not JSON ({e}): {text}"))
}

async fn ok(s: &TestServer, method: &str, path: &str, token: &str, body: Value) -> Value {
    let (status, b) = s.call(method, path, token, Some(&body)).await;
    assert!(
        status == 200 || status == 201,
        "{method} {path}: {status} {b}"
    );
    b
}

/// A workspace with members, a custom role and scope, keys (one recoverable), an app grant, an
/// MFA-enabled owner and audit entries; then exports by three callers.
#[tokio::test]
async fn an_export_holds_the_workspace_and_no_secret() {
    // The webhook endpoint below points at this machine.
    let s = TestServer::start_with(
        common::Backend::Sqlite,
        |c| c.webhooks_allow_private = true,
        None,
    )
    .await
    .unwrap();
    let (owner, ws) = s.owner_with_workspace("owner@example.com").await;
    let w = |rest: &str| format!("/api/v1/w/{ws}{rest}");

    // MFA for the owner: its TOTP secret must never appear.
    let setup = ok(&s, "POST", "/api/v1/profile/mfa/setup", &owner, json!({})).await;
    let totp_secret = setup["secret"].as_str().unwrap().to_owned();
    let code = totp_now(&totp_secret, &s.clock);
    ok(
        &s,
        "POST",
        "/api/v1/profile/mfa/verify",
        &owner,
        json!({"code": code}),
    )
    .await;

    // A second member (role `member`: no export:read).
    let plain = s.user("plain@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = ok(
        &s,
        "POST",
        &w("/members"),
        &owner,
        json!({"email": "plain@example.com", "role": "member"}),
    )
    .await;
    let plain_member = m["id"].as_str().unwrap().to_owned();

    ok(
        &s,
        "POST",
        &w("/scopes"),
        &owner,
        json!({"name": "chats:read", "description": "Read chats", "dangerous": false}),
    )
    .await;
    ok(
        &s,
        "POST",
        &w("/roles"),
        &owner,
        json!({"name": "support", "scopes": ["workspace:read", "chats:read"]}),
    )
    .await;

    let plain_key = ok(
        &s,
        "POST",
        &w("/keys"),
        &owner,
        json!({"name": "plain key", "scopes": ["chats:read"]}),
    )
    .await;
    let recoverable = ok(
        &s,
        "POST",
        &w("/keys"),
        &owner,
        json!({"name": "recoverable key", "recoverable": true}),
    )
    .await;
    let exporter = ok(
        &s,
        "POST",
        &w("/keys"),
        &owner,
        json!({"name": "exporter", "scopes": ["export:read"]}),
    )
    .await;
    let raw_keys: Vec<String> = [&plain_key, &recoverable, &exporter]
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_owned())
        .collect();
    let exporter_key = raw_keys[2].clone();

    // An app of the owner's, granted in the workspace.
    let profile = ok(
        &s,
        "POST",
        "/api/v1/builder-profiles",
        &owner,
        json!({"name": "Builder Co"}),
    )
    .await;
    let app = ok(
        &s,
        "POST",
        "/api/v1/apps",
        &owner,
        json!({"name": "Sync", "description": "Syncs", "builder_profile_id": profile["id"]}),
    )
    .await;
    let client_secret = app["client_secret"].as_str().unwrap().to_owned();
    let grant = ok(
        &s,
        "POST",
        &w("/grants"),
        &owner,
        json!({"client_id": app["client_id"], "scopes": ["workspace:read"], "shared": false}),
    )
    .await;

    // A webhook endpoint, and the workspace's webhook secret (which must never be exported).
    let hook = ok(
        &s,
        "POST",
        &w("/webhooks"),
        &owner,
        json!({"url": "http://127.0.0.1:9/hooks/keyrail", "events": ["key.revoked"]}),
    )
    .await;
    let (status, body) = s.call("GET", &w("/webhooks/secret"), &owner, None).await;
    assert_eq!(status, 200, "{body}");
    let webhook_secret = body["secret"].as_str().unwrap().to_owned();
    let webhook_key = webhook_secret.trim_start_matches("whsec_").to_owned();

    // The secrets as stored.
    let mut stored = db_texts(&s, "SELECT hash FROM keys").await;
    stored.extend(db_texts(&s, "SELECT sealed_key FROM keys").await);
    stored.extend(db_texts(&s, "SELECT password_hash FROM users").await);
    stored.extend(db_texts(&s, "SELECT mfa_secret FROM users").await);
    stored.extend(db_texts(&s, "SELECT sealed_secret FROM apps").await);
    stored.extend(db_texts(&s, "SELECT code_hash FROM recovery_codes").await);
    // 3 hashes, 1 sealed key, 2 password hashes, 1 TOTP secret, 1 app secret, recovery codes.
    assert!(stored.len() >= 9, "{stored:?}");
    let mut secrets = stored;
    secrets.extend(raw_keys.iter().cloned());
    secrets.push(totp_secret.clone());
    secrets.push(client_secret.clone());
    secrets.push(PASSWORD.to_owned());
    secrets.push(webhook_key);
    secrets.extend(db_texts(&s, "SELECT sealed FROM webhook_secrets").await);

    // The owner holds export:read-all: everything, emails and audit included.
    let full = export(&s, &ws, &owner).await;
    assert_eq!(full.status, 200, "{}", full.text);
    assert_eq!(full.cache_control.as_deref(), Some("no-store"));
    for secret in &secrets {
        assert!(
            !full.text.contains(secret.as_str()),
            "a secret leaked into the export: {secret}"
        );
    }
    let doc = parse(&full.text);
    assert_eq!(doc["format"], "keyrail-export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["sensitive"], true);
    assert_eq!(doc["workspace"]["id"], ws.as_str());
    assert!(doc["workspace"]["key_format"]["prefix"].is_string());
    let members = doc["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    let emails: Vec<&str> = members
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&"owner@example.com") && emails.contains(&"plain@example.com"));
    assert!(
        members
            .iter()
            .any(|m| m["id"] == plain_member.as_str() && m["role"] == "member")
    );
    let roles = doc["roles"].as_array().unwrap();
    assert!(
        roles
            .iter()
            .any(|r| r["name"] == "support" && r["builtin"] == false)
    );
    assert!(
        roles
            .iter()
            .any(|r| r["name"] == "owner" && r["builtin"] == true)
    );
    let scopes = doc["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "only the workspace's own: {scopes:?}");
    assert_eq!(scopes[0]["name"], "chats:read");
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let rk = keys
        .iter()
        .find(|k| k["id"] == recoverable["id"])
        .expect("the recoverable key is exported");
    assert_eq!(rk["recoverable"], true);
    assert_eq!(rk["name"], "recoverable key");
    assert!(
        keys.iter()
            .all(|k| k.get("hash").is_none() && k.get("key").is_none())
    );
    let grants = doc["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["id"], grant["id"]);
    let hooks = doc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["id"], hook["id"]);
    assert_eq!(hooks[0]["url"], "http://127.0.0.1:9/hooks/keyrail");
    assert_eq!(hooks[0]["events"], json!(["key.revoked"]));
    let audit = doc["audit"].as_array().unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "key.create",
        "member.add",
        "role.create",
        "grant.create",
        "workspace.export_all",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }

    // An API key with export:read only: no emails, no audit log, and still no secret.
    let limited = export(&s, &ws, &exporter_key).await;
    assert_eq!(limited.status, 200, "{}", limited.text);
    for secret in &secrets {
        assert!(!limited.text.contains(secret.as_str()), "leaked: {secret}");
    }
    assert!(!limited.text.contains("@example.com"), "{}", limited.text);
    let doc = parse(&limited.text);
    assert_eq!(doc["sensitive"], false);
    assert!(doc.get("audit").is_none(), "{doc}");
    assert_eq!(doc["members"].as_array().unwrap().len(), 2);
    assert!(doc["members"][0].get("email").is_none());
    assert_eq!(doc["keys"].as_array().unwrap().len(), 3);

    // A member without export:read: 403, and nothing recorded as exported.
    let (status, b) = s.call("GET", &w("/export"), &plain, None).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );

    // Both exports were recorded, each under its own action.
    let (status, log) = s
        .call("GET", &w("/audit?action=workspace.export"), &owner, None)
        .await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["actor"]["type"], "key");
    s.stop().await;
}

/// More keys than one store page (500): the export pages through all of them.
#[tokio::test]
async fn an_export_pages_through_thousands_of_keys() {
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let Some(s) = TestServer::start_with(backend, |_| {}, None).await else {
            continue;
        };
        pages_through_thousands_of_keys(s).await;
    }
}

async fn pages_through_thousands_of_keys(s: TestServer) {
    let (owner, ws) = s.owner_with_workspace("big@example.com").await;
    const KEYS: usize = 2_600;
    let mut made = 0;
    while made < KEYS {
        let batch: Vec<Value> = (made..(made + 400).min(KEYS))
            .map(|i| {
                let digest =
                    ring::digest::digest(&ring::digest::SHA256, format!("k{i}").as_bytes());
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                json!({"sha256": hex, "name": format!("k{i}")})
            })
            .collect();
        made += batch.len();
        let (status, b) = json(
            s.post_with(
                &format!("/api/v1/w/{ws}/keys/import"),
                &owner,
                &json!({ "keys": batch }),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{b}");
    }
    let e = export(&s, &ws, &owner).await;
    assert_eq!(e.status, 200);
    let doc = parse(&e.text);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), KEYS);
    let mut ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), KEYS, "every key once");
    // The audit section pages too (here: the import batches, the workspace, this export).
    assert!(doc["audit"].as_array().unwrap().len() >= 8);
    s.stop().await;
}

/// A store failure after the response started cuts the body short: the client sees a broken
/// transfer, never a complete-looking document.
#[tokio::test]
async fn a_failure_midway_breaks_the_transfer() {
    let s = TestServer::start().await;
    let (owner, ws) = s.owner_with_workspace("cut@example.com").await;
    let (status, _) = s
        .call(
            "POST",
            &format!("/api/v1/w/{ws}/keys"),
            &owner,
            Some(&json!({"name": "k"})),
        )
        .await;
    assert_eq!(status, 201);
    // The grants section (after workspace, members, roles, scopes and keys) cannot be read.
    s.exec_sql("ALTER TABLE grants RENAME TO grants_gone").await;
    let resp = s.get_with(&format!("/api/v1/w/{ws}/export"), &owner).await;
    assert_eq!(resp.status(), 200, "the failure comes after the headers");
    match resp.text().await {
        Err(e) => assert!(e.is_body() || e.is_decode(), "{e:?}"),
        Ok(text) => panic!("a failed export ended like a complete one: {text}"),
    }
    s.exec_sql("ALTER TABLE grants_gone RENAME TO grants").await;
    s.stop().await;
}
