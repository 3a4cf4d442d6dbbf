//! `keyrail backup` and `keyrail restore`, run as the real binary: a SQLite deployment with real
//! data (an MFA user, keys including a recoverable one, an app with a grant, audit entries) is
//! backed up while its server runs, restored into a fresh PostgreSQL database, and served from
//! there with the same master key. Run with `--nocapture` to see the commands' output.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keyrail_core::Timestamp;
use keyrail_core::crypto::TotpSecret;
use keyrail_core::crypto::totp::step_at;
use keyrail_store::testing::TempPostgres;
use serde_json::{Value, json};

mod common;

use common::{Guard, free_port, keyrail, request, wait_until};

const MASTER_KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";
const PASSWORD: &str = "correct horse battery staple 42";

/// A `keyrail` command for one deployment: its data dir, its database, the shared master key.
fn cmd(data_dir: &Path, database_url: &str) -> Command {
    let mut c = keyrail(data_dir);
    c.env("KEYRAIL_DATA_DIR", data_dir.join("keyrail-data"))
        .env("KEYRAIL_DATABASE_URL", database_url)
        .env("KEYRAIL_MASTER_KEY", MASTER_KEY)
        // The webhook endpoint of the test points at this machine.
        .env("KEYRAIL_WEBHOOKS_ALLOW_PRIVATE", "true")
        .env("KEYRAIL_LOG_LEVEL", "warn");
    c
}

fn run(what: &str, c: &mut Command, log: &mut String) -> Output {
    let out = c.output().unwrap();
    let text = format!(
        "$ keyrail {what}\n[exit: {}]\n[stdout]\n{}[stderr]\n{}\n",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    log.push_str(&text);
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn serve(data_dir: &Path, database_url: &str) -> (Guard, u16) {
    let port = free_port();
    let child = cmd(data_dir, database_url)
        .arg("serve")
        .env("KEYRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard::new("keyrail serve", child);
    wait_until(
        "the server answers /healthz",
        Duration::from_secs(30),
        || request(port, "GET", "/healthz", &[], None).is_ok_and(|r| r.status == 200),
    );
    (guard, port)
}

/// Sends a request; status and JSON body (null when empty).
fn call(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let header;
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = auth {
        header = if a.starts_with("Basic ") {
            a.to_owned()
        } else {
            format!("Bearer {a}")
        };
        headers.push(("Authorization", &header));
    }
    let body = body.map(|b| b.to_string());
    let r = request(port, method, path, &headers, body.as_deref()).unwrap();
    let v = if r.body.trim().is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

fn ok(port: u16, method: &str, path: &str, auth: Option<&str>, body: Value) -> Value {
    let (status, b) = call(port, method, path, auth, Some(body));
    assert!(
        status == 200 || status == 201,
        "{method} {path}: {status} {b}"
    );
    b
}

fn totp(secret: &str, steps_ahead: u64) -> String {
    let s = TotpSecret::from_base32(secret).unwrap();
    let step = step_at(Timestamp::now()).unwrap() + steps_ahead;
    format!("{:06}", s.code_at(step))
}

fn basic(user: &str, pass: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{pass}");
    let b = input.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// What the source deployment holds, to check on the restored one.
struct Data {
    email: String,
    totp_secret: String,
    ws: String,
    keys: Vec<String>,
    recoverable_id: String,
    recoverable_key: String,
    client_id: String,
    client_secret: String,
    grant_id: String,
    webhook_id: String,
    webhook_secret: String,
}

fn populate(port: u16) -> Data {
    let email = "ops@example.com".to_owned();
    ok(
        port,
        "POST",
        "/api/v1/auth/signup",
        None,
        json!({"email": email, "password": PASSWORD, "name": "Ops"}),
    );
    let login = ok(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    );
    let token = login["access_token"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());
    let setup = ok(port, "POST", "/api/v1/profile/mfa/setup", t, json!({}));
    let totp_secret = setup["secret"].as_str().unwrap().to_owned();
    ok(
        port,
        "POST",
        "/api/v1/profile/mfa/verify",
        t,
        json!({"code": totp(&totp_secret, 0)}),
    );
    let ws = ok(
        port,
        "POST",
        "/api/v1/workspaces",
        t,
        json!({"name": "Acme"}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let w = |rest: &str| format!("/api/v1/w/{ws}{rest}");
    let plain = ok(
        port,
        "POST",
        &w("/keys"),
        t,
        json!({"name": "plain", "scopes": ["keys:read"]}),
    );
    let rec = ok(
        port,
        "POST",
        &w("/keys"),
        t,
        json!({"name": "recoverable", "recoverable": true}),
    );
    let profile = ok(
        port,
        "POST",
        "/api/v1/builder-profiles",
        t,
        json!({"name": "Builder"}),
    );
    let app = ok(
        port,
        "POST",
        "/api/v1/apps",
        t,
        json!({"name": "Sync", "description": "Syncs", "builder_profile_id": profile["id"]}),
    );
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let client_secret = app["client_secret"].as_str().unwrap().to_owned();
    let grant = ok(
        port,
        "POST",
        &w("/grants"),
        t,
        json!({"client_id": client_id, "scopes": ["workspace:read"], "shared": false}),
    );
    // The app's credentials work on the source.
    ok(
        port,
        "POST",
        &format!("/api/v1/apps/{client_id}/tokens"),
        Some(&basic(&client_id, &client_secret)),
        json!({"grant_id": grant["id"]}),
    );
    let hook = ok(
        port,
        "POST",
        &w("/webhooks"),
        t,
        json!({"url": "http://127.0.0.1:9/hooks", "events": ["key.revoked", "grant.revoked"]}),
    );
    let (status, secret) = call(port, "GET", &w("/webhooks/secret"), t, None);
    assert_eq!(status, 200, "{secret}");
    // The request log is written in batches: wait until the key creations are in it.
    let logged = || {
        let (_, logs) = call(port, "GET", &w("/logs?status=201"), t, None);
        logs["data"].as_array().is_some_and(|d| !d.is_empty())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !logged() {
        assert!(
            std::time::Instant::now() < deadline,
            "the request log stays empty"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Data {
        webhook_id: hook["id"].as_str().unwrap().to_owned(),
        webhook_secret: secret["secret"].as_str().unwrap().to_owned(),
        email,
        totp_secret,
        ws,
        keys: vec![
            plain["key"].as_str().unwrap().to_owned(),
            rec["key"].as_str().unwrap().to_owned(),
        ],
        recoverable_id: rec["id"].as_str().unwrap().to_owned(),
        recoverable_key: rec["key"].as_str().unwrap().to_owned(),
        client_id,
        client_secret,
        grant_id: grant["id"].as_str().unwrap().to_owned(),
    }
}

fn check_restored(port: u16, d: &Data) {
    for key in &d.keys {
        let (status, v) = call(
            port,
            "POST",
            "/api/v1/keys/verify",
            None,
            Some(json!({"key": key})),
        );
        assert_eq!((status, v["code"].as_str()), (200, Some("VALID")), "{v}");
    }
    let (status, first) = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": d.email, "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["mfa_required"], true,
        "MFA survived the restore: {first}"
    );
    // The step used at setup is recorded (and restored): the next one is accepted.
    let tokens = ok(
        port,
        "POST",
        "/api/v1/auth/login/mfa",
        None,
        json!({"mfa_token": first["mfa_token"], "code": totp(&d.totp_secret, 1)}),
    );
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let revealed = ok(
        port,
        "POST",
        &format!("/api/v1/w/{}/keys/{}/reveal", d.ws, d.recoverable_id),
        Some(&token),
        json!({}),
    );
    assert_eq!(
        revealed["key"],
        d.recoverable_key.as_str(),
        "the sealed key opens"
    );
    let minted = ok(
        port,
        "POST",
        &format!("/api/v1/apps/{}/tokens", d.client_id),
        Some(&basic(&d.client_id, &d.client_secret)),
        json!({"grant_id": d.grant_id}),
    );
    assert!(minted["token"].is_string(), "{minted}");
    let (status, audit) = call(
        port,
        "GET",
        &format!("/api/v1/w/{}/audit?action=grant.create", d.ws),
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");
    // The webhook endpoint and its sealed secret came along.
    let (_, hooks) = call(
        port,
        "GET",
        &format!("/api/v1/w/{}/webhooks", d.ws),
        Some(&token),
        None,
    );
    assert_eq!(hooks["data"][0]["id"], d.webhook_id.as_str(), "{hooks}");
    let (_, secret) = call(
        port,
        "GET",
        &format!("/api/v1/w/{}/webhooks/secret", d.ws),
        Some(&token),
        None,
    );
    assert_eq!(
        secret["secret"],
        d.webhook_secret.as_str(),
        "the sealed secret opens"
    );
    // So did the request log of the source.
    let (_, logs) = call(
        port,
        "GET",
        &format!("/api/v1/w/{}/logs?status=201", d.ws),
        Some(&token),
        None,
    );
    assert!(
        logs["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route"] == "/api/v1/w/{workspace_id}/keys"),
        "{logs}"
    );
}

#[test]
fn sqlite_backup_restores_into_postgres_and_serves() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pg) = rt.block_on(TempPostgres::create()) else {
        return;
    };
    let Some(pg2) = rt.block_on(TempPostgres::create()) else {
        return;
    };
    let mut log = String::new();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let archive = src.path().join("keyrail.backup");

    let (mut server, port) = serve(src.path(), "");
    let data = populate(port);

    // Backed up while the server runs.
    let out = run(
        "backup --out keyrail.backup   (SQLite, server running)",
        cmd(src.path(), "").args(["backup", "--out"]).arg(&archive),
        &mut log,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("master key is NOT included"), "{err}");
    assert!(err.contains("keys: 2 rows"), "{err}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tables"]["grants"], 1, "{summary}");
    server.stop();

    // A damaged archive is refused before anything is written.
    let damaged = src.path().join("damaged.backup");
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();
    let out = run(
        "restore --from damaged.backup   (one byte flipped)",
        cmd(dst.path(), &pg2.url)
            .args(["restore", "--from"])
            .arg(&damaged),
        &mut log,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("damaged") && err.contains("checksum"), "{err}");

    // Into a fresh PostgreSQL database.
    let out = run(
        "restore --from keyrail.backup   (fresh PostgreSQL)",
        cmd(dst.path(), &pg.url)
            .args(["restore", "--from"])
            .arg(&archive),
        &mut log,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("users: 1 rows"), "{}", stderr(&out));

    // Not again into a database that holds data, unless --force.
    let out = run(
        "restore --from keyrail.backup   (same database again, no --force)",
        cmd(dst.path(), &pg.url)
            .args(["restore", "--from"])
            .arg(&archive),
        &mut log,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    let out = run(
        "restore --from keyrail.backup --force",
        cmd(dst.path(), &pg.url)
            .args(["restore", "--force", "--from"])
            .arg(&archive),
        &mut log,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The damaged attempt wrote nothing: the second database still takes a plain restore.
    let out = run(
        "restore --from keyrail.backup   (into the database the damaged archive was refused for)",
        cmd(dst.path(), &pg2.url)
            .args(["restore", "--from"])
            .arg(&archive),
        &mut log,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let (mut restored, port) = serve(dst.path(), &pg.url);
    check_restored(port, &data);
    log.push_str(
        "\nserver on the restored PostgreSQL database: both keys verify VALID, login with \
         password + TOTP works, the recoverable key reveals the same secret, the app's client \
         credentials mint a token, the audit log has the grant.\n",
    );
    restored.stop();
    if Path::new("/work/notes").is_dir() {
        let _ = std::fs::write("/work/notes/backup-roundtrip.txt", &log);
    }
    rt.block_on(pg.drop_db());
    rt.block_on(pg2.drop_db());
}
