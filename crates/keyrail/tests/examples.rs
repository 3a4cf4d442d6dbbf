//! The integrator examples against the real binary: `examples/python/client.py` and
//! `examples/typescript/client.ts` take an app's credentials and a grant, get an app token,
//! decrypt it with their JOSE library and call the workspace endpoint with the inner token;
//! rotating the app's secret stops the old secret and the tokens made with it.
//! `examples/python/verify_key.py` and `examples/typescript/verify-key.ts` verify a key for one
//! workspace: VALID for that workspace's key, NOT_FOUND for another workspace's key with the same
//! scope name. Also runs `tsc --noEmit` on the TypeScript examples.
//!
//! Needs `python3` with `jwcrypto` (`python3 -m pip install -r examples/python/requirements.txt`)
//! and Node 20 with `examples/typescript/node_modules` (`cd examples/typescript && npm ci`).
//! Without them the test prints `SKIPPED: ...` and passes, except under `CI`, where it fails.

mod common;

use common::{Guard, free_port, in_ci, request, serve_with, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple 42";

/// Skip (or, under CI, fail) when a client cannot run.
fn skip_or_fail(why: &str, fix: &str) {
    if in_ci() {
        panic!("{why}; CI is set, so the examples test must run: {fix}");
    }
    eprintln!("SKIPPED: {why} (to run it: {fix})");
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Why the Python client cannot run here, if it cannot.
fn python_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import jwcrypto"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "python3 cannot import jwcrypto: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("python3 cannot run: {e}")),
    }
}

/// Why the TypeScript client cannot run here, if it cannot.
fn typescript_missing() -> Option<String> {
    let ts = examples_dir().join("typescript");
    if !ts.join("node_modules").is_dir() {
        return Some("examples/typescript/node_modules is missing".into());
    }
    if !ts.join("node_modules/.bin/tsx").exists() {
        return Some("examples/typescript/node_modules has no tsx".into());
    }
    match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("node --version failed: {}", o.status)),
        Err(e) => Some(format!("node cannot run: {e}")),
    }
}

/// What an integrator hands a client: where keyrail is, the app's credentials, the grant.
struct AppEnv<'a> {
    url: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    grant_id: &'a str,
}

/// Runs a client with the four `KEYRAIL_*` variables and nothing else of the caller's.
fn run_client(mut cmd: Command, env: &AppEnv) -> Output {
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("KEYRAIL_URL", env.url)
        .env("KEYRAIL_CLIENT_ID", env.client_id)
        .env("KEYRAIL_CLIENT_SECRET", env.client_secret)
        .env("KEYRAIL_GRANT_ID", env.grant_id)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

fn python_client(env: &AppEnv) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("client.py")
        .current_dir(examples_dir().join("python"));
    run_client(cmd, env)
}

fn typescript_client(env: &AppEnv) -> Output {
    // What `npx tsx client.ts` runs, without npx's own lookups.
    let dir = examples_dir().join("typescript");
    let mut cmd = Command::new(dir.join("node_modules/.bin/tsx"));
    cmd.arg("client.ts").current_dir(dir);
    run_client(cmd, env)
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one JSON line a client prints on success.
fn client_line(name: &str, out: &Output) -> Value {
    assert!(out.status.success(), "{name} failed: {}", describe(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{name} must print one line: {}",
        describe(out)
    );
    serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {}", describe(out)))
}

/// keyrail serving in `dir` (dev mode), once it answers `/healthz`; and its port.
fn serve(dir: &Path) -> (Guard, u16) {
    serve_with(dir, &[])
}

/// One call: the status it must answer, else the response; the JSON body (or null).
fn call(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
    want: u16,
) -> Value {
    let body = body.map(|b| b.to_string());
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let r = request(port, method, path, &headers, body.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(
        r.status,
        want,
        "{method} {path} {}\n{r:?}",
        body.unwrap_or_default()
    );
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn python_and_typescript_clients_act_for_a_member_through_a_grant() {
    let python = python_missing();
    let typescript = typescript_missing();
    if let Some(why) = &python {
        skip_or_fail(
            why,
            "python3 -m pip install -r examples/python/requirements.txt",
        );
    }
    if let Some(why) = &typescript {
        skip_or_fail(
            why,
            "install Node 20 and npm, then (cd examples/typescript && npm ci)",
        );
    }
    if python.is_some() || typescript.is_some() {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = serve(dir.path());
    let url = format!("http://127.0.0.1:{port}");
    let call = |method: &str, path: &str, auth: Option<&str>, body: Option<Value>, want: u16| {
        call(port, method, path, auth, body, want)
    };

    // A user with a workspace.
    let email = "builder@example.com";
    let signup = call(
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": email, "password": PASSWORD, "name": "App Builder"})),
        201,
    );
    let user_id = signup["user"]["id"].as_str().unwrap().to_owned();
    let login = call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
        200,
    );
    let user = format!("Bearer {}", login["access_token"].as_str().unwrap());
    let user = Some(user.as_str());
    let workspace = call(
        "POST",
        "/api/v1/workspaces",
        user,
        Some(json!({"name": "Acme"})),
        201,
    );
    let ws = workspace["id"].as_str().unwrap().to_owned();

    // The app, through a builder profile.
    let profile = call(
        "POST",
        "/api/v1/builder-profiles",
        user,
        Some(json!({"name": "Acme Tools", "website": "https://tools.example.com"})),
        201,
    );
    let app = call(
        "POST",
        "/api/v1/apps",
        user,
        Some(json!({
            "name": "Example integration",
            "description": "examples/python and examples/typescript",
            "builder_profile_id": profile["id"],
            "workspace_restrictions": null,
        })),
        201,
    );
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    assert!(client_id.starts_with("kr_app_"), "{app}");
    assert_eq!(
        secret.len(),
        22,
        "16 bytes, base64url without padding: {app}"
    );

    // The member's personal grant to the app.
    let grant = call(
        "POST",
        &format!("/api/v1/w/{ws}/grants"),
        user,
        Some(json!({"client_id": client_id, "scopes": ["workspace:read"], "shared": false})),
        201,
    );
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let member_id = grant["member_id"].as_str().unwrap().to_owned();
    assert_eq!(grant["workspace_id"], ws.as_str(), "{grant}");
    let members = call("GET", &format!("/api/v1/w/{ws}/members"), user, None, 200);
    let me = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user_id.as_str())
        .unwrap_or_else(|| panic!("the owner is not among the members: {members}"));
    assert_eq!(me["id"], member_id.as_str(), "{grant}\n{members}");

    let env = AppEnv {
        url: &url,
        client_id: &client_id,
        client_secret: &secret,
        grant_id: &grant_id,
    };
    let check = |name: &str, out: &Output| {
        let line = client_line(name, out);
        assert_eq!(line["workspace"]["id"], ws.as_str(), "{name}: {line}");
        assert_eq!(line["workspace"]["name"], "Acme", "{name}: {line}");
        assert_eq!(line["workspace_id"], ws.as_str(), "{name}: {line}");
        assert_eq!(line["grant_id"], grant_id.as_str(), "{name}: {line}");
        assert_eq!(line["member_id"], member_id.as_str(), "{name}: {line}");
        assert_eq!(line["scopes"], json!(["workspace:read"]), "{name}: {line}");
        let exp = line["exp"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: exp is not an integer: {line}"));
        let now = now_unix();
        assert!(
            exp > now && exp <= now + 300 + 5,
            "{name}: exp {exp} is not within 5 minutes of now ({now}): {line}"
        );
    };
    check("examples/python/client.py", &python_client(&env));
    check("examples/typescript/client.ts", &typescript_client(&env));

    // An inner token made with the current secret, opened by the Python example's own code,
    // works until the secret is rotated.
    let basic = format!("Basic {}", base64(&format!("{client_id}:{secret}")));
    let issued = call(
        "POST",
        &format!("/api/v1/apps/{client_id}/tokens"),
        Some(&basic),
        Some(json!({"grant_id": grant_id})),
        200,
    );
    assert_eq!(issued["expires_in"], 300, "{issued}");
    let opened = Command::new("python3")
        .args([
            "-c",
            "import sys, client; \
             print(client.open_token(sys.argv[1], sys.argv[2], client.secret_key(sys.argv[3]))\
             ['api_token'])",
            issued["token"].as_str().unwrap(),
            &client_id,
            &secret,
        ])
        .current_dir(examples_dir().join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", describe(&opened));
    let api_token = String::from_utf8(opened.stdout).unwrap().trim().to_owned();
    let bearer_app = format!("Bearer {api_token}");
    let r = call(
        "GET",
        &format!("/api/v1/w/{ws}"),
        Some(&bearer_app),
        None,
        200,
    );
    assert_eq!(r["id"], ws.as_str(), "{r}");

    // A new secret: the old one and the token made with it stop at once.
    let rotated = call(
        "POST",
        &format!("/api/v1/apps/{client_id}/secret"),
        user,
        None,
        200,
    );
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret, "{rotated}");
    assert_eq!(new_secret.len(), 22, "{rotated}");
    let r = call(
        "GET",
        &format!("/api/v1/w/{ws}"),
        Some(&bearer_app),
        None,
        401,
    );
    assert_eq!(r["code"], "invalid_token", "{r}");

    let out = python_client(&env);
    assert!(
        !out.status.success(),
        "the old secret still works: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "the old secret must fail with 401 invalid_client: {}",
        describe(&out)
    );
    let out = typescript_client(&env);
    assert!(
        !out.status.success(),
        "the old secret still works: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "the old secret must fail with 401 invalid_client: {}",
        describe(&out)
    );

    // The new secret works for both.
    let env = AppEnv {
        client_secret: &new_secret,
        ..env
    };
    check("examples/python/client.py", &python_client(&env));
    check("examples/typescript/client.ts", &typescript_client(&env));

    server.stop();
}

/// Runs a verify example with `KEYRAIL_URL`, `KEYRAIL_WORKSPACE_ID` (unless `None`) and nothing
/// else of the caller's `KEYRAIL_*`, the key on standard input, the scopes as arguments.
fn run_verify(mut cmd: Command, url: &str, workspace: Option<&str>, key: &str) -> Output {
    use std::io::Write;
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("KEYRAIL_URL", url)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ws) = workspace {
        cmd.env("KEYRAIL_WORKSPACE_ID", ws);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{key}").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// `examples/python/verify_key.py SCOPE...`
fn python_verify(url: &str, workspace: Option<&str>, key: &str, scopes: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("verify_key.py")
        .args(scopes)
        .current_dir(examples_dir().join("python"));
    run_verify(cmd, url, workspace, key)
}

/// `npx tsx verify-key.ts SCOPE...`, without npx's own lookups.
fn typescript_verify(url: &str, workspace: Option<&str>, key: &str, scopes: &[&str]) -> Output {
    let dir = examples_dir().join("typescript");
    let mut cmd = Command::new(dir.join("node_modules/.bin/tsx"));
    cmd.arg("verify-key.ts").args(scopes).current_dir(dir);
    run_verify(cmd, url, workspace, key)
}

/// A user who signed up (signup is open to anyone), logged in and made a workspace with its own
/// `orders:read` scope and two keys: one carrying `orders:read`, one with no scope.
struct Tenant {
    ws: String,
    key: String,
    key_id: String,
    unscoped_key: String,
}

fn tenant(port: u16, email: &str, workspace_name: &str) -> Tenant {
    call(
        port,
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(json!({"email": email, "password": PASSWORD, "name": workspace_name})),
        201,
    );
    let login = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
        200,
    );
    let user = format!("Bearer {}", login["access_token"].as_str().unwrap());
    let user = Some(user.as_str());
    let workspace = call(
        port,
        "POST",
        "/api/v1/workspaces",
        user,
        Some(json!({"name": workspace_name})),
        201,
    );
    let ws = workspace["id"].as_str().unwrap().to_owned();
    let post = |path: &str, body: Value| {
        call(
            port,
            "POST",
            &format!("/api/v1/w/{ws}/{path}"),
            user,
            Some(body),
            201,
        )
    };
    post("scopes", json!({"name": "orders:read"}));
    let key = post("keys", json!({"name": "orders", "scopes": ["orders:read"]}));
    let unscoped = post("keys", json!({"name": "unscoped", "scopes": []}));
    Tenant {
        key: key["key"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        unscoped_key: unscoped["key"].as_str().unwrap().to_owned(),
        ws,
    }
}

#[test]
fn verify_examples_accept_only_keys_of_their_workspace() {
    let python = Command::new("python3")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_or_else(
            |e| Some(format!("python3 cannot run: {e}")),
            |o| (!o.status.success()).then(|| format!("python3 --version failed: {}", o.status)),
        );
    let typescript = typescript_missing();
    if let Some(why) = &python {
        skip_or_fail(why, "install python3");
    }
    if let Some(why) = &typescript {
        skip_or_fail(
            why,
            "install Node 20 and npm, then (cd examples/typescript && npm ci)",
        );
    }
    if python.is_some() || typescript.is_some() {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = serve(dir.path());
    let url = format!("http://127.0.0.1:{port}");

    // The service owner's workspace, and a stranger's with a scope of the same name.
    let acme = tenant(port, "owner@acme.example", "Acme");
    let other = tenant(port, "stranger@example.net", "Other");
    assert_ne!(acme.ws, other.ws);

    // What the examples guard against: checking the scope alone accepts the stranger's key.
    let r = call(
        port,
        "POST",
        "/api/v1/keys/verify",
        None,
        Some(json!({"key": other.key, "scopes": ["orders:read"]})),
        200,
    );
    assert_eq!(r["code"], "VALID", "{r}");
    assert_eq!(r["workspace_id"], other.ws.as_str(), "{r}");

    type Verify = fn(&str, Option<&str>, &str, &[&str]) -> Output;
    let examples: [(&str, Verify); 2] = [
        ("examples/python/verify_key.py", python_verify),
        ("examples/typescript/verify-key.ts", typescript_verify),
    ];
    for (name, verify) in examples {
        // The exit status, and the one JSON line printed.
        let run = |ws: Option<&str>, key: &str, scopes: &[&str]| {
            let out = verify(&url, ws, key, scopes);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
            let line: Value = match lines.as_slice() {
                [] => Value::Null,
                [one] => serde_json::from_str(one)
                    .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {}", describe(&out))),
                _ => panic!("{name} must print at most one line: {}", describe(&out)),
            };
            (out.status.code(), line, out)
        };

        // The workspace's own key with the scope: VALID, exit 0.
        let (code, line, out) = run(Some(&acme.ws), &acme.key, &["orders:read"]);
        assert_eq!(code, Some(0), "{name}: {}", describe(&out));
        assert_eq!(line["code"], "VALID", "{name}: {line}");
        assert_eq!(line["key_id"], acme.key_id.as_str(), "{name}: {line}");
        assert_eq!(line["workspace_id"], acme.ws.as_str(), "{name}: {line}");
        assert_eq!(line["scopes"], json!(["orders:read"]), "{name}: {line}");

        // The stranger's key, same scope name, bound to Acme: NOT_FOUND, nothing about it.
        let (code, line, out) = run(Some(&acme.ws), &other.key, &["orders:read"]);
        assert_eq!(code, Some(1), "{name}: {}", describe(&out));
        assert_eq!(line["code"], "NOT_FOUND", "{name}: {line}");
        for field in ["key_id", "workspace_id", "external_id", "scopes"] {
            assert!(line[field].is_null(), "{name}: {field} leaked: {line}");
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("NOT_FOUND"),
            "{name} must name the code on stderr: {}",
            describe(&out)
        );

        // The same key bound to its own workspace is VALID: the NOT_FOUND above is the binding.
        let (code, line, out) = run(Some(&other.ws), &other.key, &["orders:read"]);
        assert_eq!(code, Some(0), "{name}: {}", describe(&out));
        assert_eq!(line["workspace_id"], other.ws.as_str(), "{name}: {line}");

        // The scopes are passed: Acme's key without orders:read is refused.
        let (code, line, out) = run(Some(&acme.ws), &acme.unscoped_key, &["orders:read"]);
        assert_eq!(code, Some(1), "{name}: {}", describe(&out));
        assert_eq!(line["code"], "INSUFFICIENT_SCOPE", "{name}: {line}");

        // No workspace configured: the example refuses to run rather than check scopes alone.
        let (code, _, out) = run(None, &acme.key, &["orders:read"]);
        assert_eq!(code, Some(2), "{name}: {}", describe(&out));
        assert!(out.stdout.is_empty(), "{name}: {}", describe(&out));
    }

    // keyrail gone: exit 3 (fail closed), not a verdict.
    server.stop();
    for (name, verify) in examples {
        let out = verify(&url, Some(&acme.ws), &acme.key, &["orders:read"]);
        assert_eq!(out.status.code(), Some(3), "{name}: {}", describe(&out));
        assert!(out.stdout.is_empty(), "{name}: {}", describe(&out));
    }
}

/// Standard base64 with padding, for the Basic credential.
fn base64(s: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `npx tsc --noEmit` in examples/typescript, so the examples keep type-checking.
#[test]
fn typescript_client_type_checks() {
    if let Some(why) = typescript_missing() {
        skip_or_fail(
            &why,
            "install Node 20 and npm, then (cd examples/typescript && npm ci)",
        );
        return;
    }
    let dir = examples_dir().join("typescript");
    let out = Command::new(dir.join("node_modules/.bin/tsc"))
        .arg("--noEmit")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tsc --noEmit in examples/typescript: {}",
        describe(&out)
    );
}

#[test]
fn basic_credentials_are_standard_base64() {
    // RFC 7617, section 2.
    assert_eq!(
        base64("Aladdin:open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(base64("a"), "YQ==");
    assert_eq!(base64("ab"), "YWI=");
    assert_eq!(base64("abc"), "YWJj");
}

/// `examples/python/webhook_receiver.py` checks keyrail's signatures with the `standardwebhooks`
/// package: a key's creation arrives signed, after one refused arrival (500) it is retried with
/// the same `webhook-id`; after a secret rotation, a receiver still holding the old secret keeps
/// accepting deliveries (two signatures), and one holding a wrong secret refuses them.
#[test]
fn python_webhook_receiver_checks_signatures_and_sees_retries() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    if let Some(why) = python_missing() {
        skip_or_fail(
            &why,
            "python3 -m pip install -r examples/python/requirements.txt",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The receiver is on this machine: private addresses are allowed for this test only.
    let (mut server, port) = serve_with(dir.path(), &[("KEYRAIL_WEBHOOKS_ALLOW_PRIVATE", "true")]);
    let t = tenant(port, "hooks@acme.example", "Hooks");
    let login = call(
        port,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "hooks@acme.example", "password": PASSWORD})),
        200,
    );
    let user = format!("Bearer {}", login["access_token"].as_str().unwrap());
    let user = Some(user.as_str());
    let w = |rest: &str| format!("/api/v1/w/{}{rest}", t.ws);
    let secret = call(port, "GET", &w("/webhooks/secret"), user, None, 200)["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // A receiver that refuses each message's first arrival, and prints what it accepted.
    let receive = |secret: &str, fail_first: u32| {
        let rport = free_port();
        let mut child = Command::new("python3")
            .args(["webhook_receiver.py", "--port", &rport.to_string()])
            .args(["--fail-first", &fail_first.to_string()])
            .current_dir(examples_dir().join("python"))
            .env("KEYRAIL_WEBHOOK_SECRET", secret)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let guard = Guard::new("webhook_receiver.py", child);
        wait_until("the receiver listens", Duration::from_secs(10), || {
            request(rport, "GET", "/", &[], None).is_ok()
        });
        (guard, rport, rx)
    };
    let next_line = |rx: &mpsc::Receiver<String>, what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("the receiver never printed {what}"),
            }
        }
    };

    let (_good, good_port, good_rx) = receive(&secret, 1);
    let hook = call(
        port,
        "POST",
        &w("/webhooks"),
        user,
        Some(
            json!({"url": format!("http://127.0.0.1:{good_port}/keyrail"),
                    "events": ["key.created", "key.revoked"]}),
        ),
        201,
    );
    let key = call(
        port,
        "POST",
        &w("/keys"),
        user,
        Some(json!({"name": "hooked", "scopes": []})),
        201,
    );
    let line = next_line(&good_rx, "key.created", &|l| l.starts_with('{'));
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "key.created", "{event}");
    assert_eq!(event["data"]["key_id"], key["id"], "{event}");
    assert_eq!(event["attempt"], 2, "the 500 was retried: {event}");
    assert!(
        !line.contains(key["key"].as_str().unwrap()),
        "the secret key travelled: {line}"
    );
    // The receiver prints the event before its 204 reaches the server, which then records the
    // attempt: wait for the record.
    let deliveries_path = format!(
        "/api/v1/w/{}/webhooks/{}/deliveries",
        t.ws,
        hook["id"].as_str().unwrap()
    );
    let attempts = || -> Vec<(Value, Value)> {
        let deliveries = call(port, "GET", &deliveries_path, user, None, 200);
        println!("deliveries of {}:\n{deliveries:#}", hook["id"]);
        deliveries["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["status_code"].clone(), d["ok"].clone()))
            .collect()
    };
    wait_until("the 204 attempt recorded", Duration::from_secs(10), || {
        attempts().len() >= 2
    });
    let attempts = attempts();
    assert!(
        attempts.contains(&(json!(500), json!(false)))
            && attempts.contains(&(json!(204), json!(true))),
        "{attempts:?}"
    );

    // A new secret: the receiver that still holds the old one accepts the next event (keyrail
    // signs with both for 24 hours) ...
    let rotated = call(port, "POST", &w("/webhooks/secret/rotate"), user, None, 200);
    assert_ne!(rotated["secret"], secret.as_str());
    call(
        port,
        "POST",
        &format!(
            "/api/v1/w/{}/keys/{}/revoke",
            t.ws,
            key["id"].as_str().unwrap()
        ),
        user,
        None,
        200,
    );
    let line = next_line(&good_rx, "key.revoked", &|l| l.contains("key.revoked"));
    assert!(
        line.contains(r#""attempt": 1"#) || line.contains(r#""attempt": 2"#),
        "{line}"
    );

    // ... and one with a wrong secret refuses every delivery.
    let wrong = format!("whsec_{}", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=");
    let (_bad, bad_port, bad_rx) = receive(&wrong, 0);
    call(
        port,
        "POST",
        &w("/webhooks"),
        user,
        Some(
            json!({"url": format!("http://127.0.0.1:{bad_port}/keyrail"),
                    "events": ["key.created"]}),
        ),
        201,
    );
    call(
        port,
        "POST",
        &w("/keys"),
        user,
        Some(json!({"name": "second", "scopes": []})),
        201,
    );
    next_line(&bad_rx, "a refusal", &|l| {
        l.starts_with("refused a delivery")
    });
    server.stop();
}
