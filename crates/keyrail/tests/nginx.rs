//! Real nginx in front of a tiny upstream, every request checked by keyrail's forward-auth
//! through `auth_request`, with the shipped config `examples/nginx/nginx.conf`, bound to one
//! workspace: a key of another workspace carrying a scope of the same name is refused.
//!
//! Needs the `nginx` binary (Debian package `nginx`). Without it the test prints
//! `SKIPPED: nginx not installed` and passes, except under `CI`, where it fails.

mod common;

use common::{Guard, free_port, in_ci, keyrail, request, wait_until};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TEMPLATE: &str = include_str!("../../../examples/nginx/nginx.conf");

/// nginx on PATH, else where distributions put it (/usr/sbin is not on a user's PATH).
fn find_nginx() -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    let known = [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ];
    on_path
        .into_iter()
        .chain(known.iter().map(PathBuf::from))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Skip (or, under CI, fail) when nginx cannot run this test.
fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("{why}; CI is set, so the nginx test must run: install the `nginx` package");
    }
    eprintln!("SKIPPED: {why}");
}

/// What the upstream received: the request line and its headers (names lowercased).
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: HashMap<String, String>,
}

/// The protected API: answers every request 200 "upstream ok", echoing the principal.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Err(e) = Self::answer(conn, &seen2) {
                            eprintln!("upstream: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => eprintln!("upstream accept: {e}"),
                }
            }
        });
        Self {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn answer(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::other(
                    "connection closed before the headers",
                ));
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&raw);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("").to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let principal = headers
            .get("x-keyrail-principal")
            .cloned()
            .unwrap_or_default();
        seen.lock().unwrap().push(Seen {
            request_line,
            headers,
        });
        let body = format!("upstream ok\nprincipal={principal}\n");
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )?;
        conn.flush()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shipped template with its four placeholders filled in.
fn render_config(listen: u16, keyrail: u16, upstream: u16, workspace: &str) -> String {
    for placeholder in [
        "@LISTEN@",
        "@KEYRAIL_ADDR@",
        "@UPSTREAM_ADDR@",
        "@WORKSPACE_ID@",
    ] {
        assert!(
            TEMPLATE.contains(placeholder),
            "the template lost {placeholder}"
        );
    }
    let conf = TEMPLATE
        .replace("@LISTEN@", &format!("127.0.0.1:{listen}"))
        .replace("@KEYRAIL_ADDR@", &format!("127.0.0.1:{keyrail}"))
        .replace("@UPSTREAM_ADDR@", &format!("127.0.0.1:{upstream}"))
        .replace("@WORKSPACE_ID@", workspace);
    let left = conf
        .split('@')
        .skip(1)
        .step_by(2)
        .find(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    assert!(
        left.is_none(),
        "placeholder @{}@ is left",
        left.unwrap_or("")
    );
    conf
}

#[test]
fn nginx_auth_request_maps_keyrail_answers_to_the_client() {
    let Some(nginx) = find_nginx() else {
        skip_or_fail("nginx not installed");
        return;
    };
    let version = Command::new(&nginx).arg("-V").output().unwrap();
    let build = String::from_utf8_lossy(&version.stderr).into_owned();
    if !build.contains("http_auth_request_module") {
        skip_or_fail(&format!(
            "{} lacks the auth_request module:\n{build}",
            nginx.display()
        ));
        return;
    }
    eprintln!(
        "using {}: {}",
        nginx.display(),
        build.lines().next().unwrap_or("")
    );

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // keyrail: a superuser key, a custom scope and the three keys under test.
    std::fs::write(dir.join("pw.txt"), "a long root passphrase 42\n").unwrap();
    let out = keyrail(dir)
        .args([
            "init",
            "--email",
            "root@example.com",
            "--password-file",
            "pw.txt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let admin = init["api_key"].as_str().unwrap().to_owned();
    let ws = init["workspace_id"].as_str().unwrap().to_owned();
    let root_id = init["user_id"].as_str().unwrap().to_owned();

    let keyrail_port = free_port();
    let log = std::fs::File::create(dir.join("keyrail.log")).unwrap();
    let child = keyrail(dir)
        .arg("serve")
        .env("KEYRAIL_LISTEN", format!("127.0.0.1:{keyrail_port}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut keyrail_proc = Guard::new("keyrail", child);
    wait_until("keyrail answers /healthz", Duration::from_secs(20), || {
        assert!(keyrail_proc.exited().is_none(), "keyrail exited");
        request(keyrail_port, "GET", "/healthz", &[], None).is_ok_and(|r| r.status == 200)
    });

    let bearer_admin = format!("Bearer {admin}");
    let api = |path: &str, body: &str| {
        let r = request(
            keyrail_port,
            "POST",
            &format!("/api/v1/w/{ws}/{path}"),
            &[("Authorization", &bearer_admin)],
            Some(body),
        )
        .unwrap();
        assert_eq!(r.status, 201, "POST {path} {body}\n{r:?}");
        r.json()
    };
    api("scopes", r#"{"name":"orders:read"}"#);
    let good = api("keys", r#"{"name":"good","scopes":["orders:read"]}"#);
    let unscoped = api("keys", r#"{"name":"unscoped","scopes":[]}"#);
    let limited = api(
        "keys",
        r#"{"name":"limited","scopes":["orders:read"],"rate_limit":{"limit":2,"window_seconds":60}}"#,
    );
    let key = |v: &serde_json::Value| v["key"].as_str().unwrap().to_owned();
    let (good_key, unscoped_key, limited_key) = (key(&good), key(&unscoped), key(&limited));
    let good_id = good["id"].as_str().unwrap().to_owned();
    let limited_id = limited["id"].as_str().unwrap().to_owned();

    // Another tenant: signup is open, so anyone can make a workspace, give it a scope of its own
    // called `orders:read` and a key carrying it.
    let post = |path: &str, auth: Option<&str>, body: &str, want: u16| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = request(keyrail_port, "POST", path, &headers, Some(body)).unwrap();
        assert_eq!(r.status, want, "POST {path} {body}\n{r:?}");
        r.json()
    };
    let login = |email: &str, password: &str| {
        let body = serde_json::json!({"email": email, "password": password}).to_string();
        let r = post("/api/v1/auth/login", None, &body, 200);
        format!("Bearer {}", r["access_token"].as_str().unwrap())
    };
    let stranger_password = "another long passphrase 77";
    post(
        "/api/v1/auth/signup",
        None,
        &serde_json::json!({"email": "stranger@example.net", "password": stranger_password,
            "name": "Stranger"})
        .to_string(),
        201,
    );
    let stranger_jwt = login("stranger@example.net", stranger_password);
    let stranger = Some(stranger_jwt.as_str());
    let other_ws = post("/api/v1/workspaces", stranger, r#"{"name":"Other"}"#, 201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(other_ws, ws);
    post(
        &format!("/api/v1/w/{other_ws}/scopes"),
        stranger,
        r#"{"name":"orders:read"}"#,
        201,
    );
    let other_key = post(
        &format!("/api/v1/w/{other_ws}/keys"),
        stranger,
        r#"{"name":"lookalike","scopes":["orders:read"]}"#,
        201,
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // What the binding guards against: forward-auth asked for the scope alone lets it in.
    let r = request(
        keyrail_port,
        "GET",
        "/api/v1/forward-auth",
        &[
            ("Authorization", &format!("Bearer {other_key}")),
            ("X-Keyrail-Scopes", "orders:read"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("X-Keyrail-Workspace"),
        Some(other_ws.as_str()),
        "{r:?}"
    );
    let root_jwt = login("root@example.com", "a long root passphrase 42");

    // The protected API and nginx in front of it.
    let upstream = Upstream::start();
    let nginx_dir = dir.join("nginx");
    std::fs::create_dir(&nginx_dir).unwrap();
    let nginx_port = free_port();
    let conf = nginx_dir.join("nginx.conf");
    std::fs::write(
        &conf,
        render_config(nginx_port, keyrail_port, upstream.port, &ws),
    )
    .unwrap();
    let error_log = nginx_dir.join("error.log");
    let nginx_out = std::fs::File::create(nginx_dir.join("stderr.log")).unwrap();
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&nginx_dir)
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off; master_process off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(nginx_out.try_clone().unwrap()))
        .stderr(Stdio::from(nginx_out))
        .spawn()
        .unwrap();
    let mut nginx_proc = Guard::new("nginx", child);
    let nginx_logs = || {
        let read = |f: &str| std::fs::read_to_string(nginx_dir.join(f)).unwrap_or_default();
        format!(
            "--- nginx stderr\n{}--- nginx error.log\n{}",
            read("stderr.log"),
            read("error.log")
        )
    };
    wait_until("nginx accepts connections", Duration::from_secs(10), || {
        if let Some(status) = nginx_proc.exited() {
            panic!("nginx exited ({status}):\n{}", nginx_logs());
        }
        TcpStream::connect(("127.0.0.1", nginx_port)).is_ok()
    });

    let through_at = |path: &str, auth: Option<&str>, extra: &[(&str, &str)]| {
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        request(nginx_port, "GET", path, &headers, None)
            .unwrap_or_else(|e| panic!("request through nginx: {e}\n{}", nginx_logs()))
    };
    let through =
        |auth: Option<&str>, extra: &[(&str, &str)]| through_at("/orders/42?x=1", auth, extra);
    let bearer = |k: &str| format!("Bearer {k}");

    // No credentials: 401 from keyrail, passed through natively with its WWW-Authenticate.
    let r = through(None, &[]);
    assert_eq!(r.status, 401, "{r:?}\n{}", nginx_logs());
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{r:?}"
    );
    assert_eq!(r.json()["code"], "unauthorized", "{r:?}");

    // A key that matches nothing: 401.
    let r = through(Some(&bearer(&format!("kr_{}", "A".repeat(36)))), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|v| v.contains("invalid_token")),
        "{r:?}"
    );

    // A valid key without the location's scope: 403.
    let r = through(Some(&bearer(&unscoped_key)), &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["code"], "forbidden", "{r:?}");
    // ...even if the client names the scopes itself: nginx sets X-Keyrail-Scopes.
    let r = through(Some(&bearer(&unscoped_key)), &[("X-Keyrail-Scopes", "")]);
    assert_eq!(r.status, 403, "{r:?}");

    // The other tenant's key carries a scope named `orders:read` too, but nginx binds keyrail to
    // this workspace: 401, also when the client names the other workspace itself (nginx sets
    // X-Keyrail-Workspace, and the auth subrequest carries no query string).
    let forged_ws = format!("/orders/42?workspace_id={other_ws}");
    for (path, extra) in [
        ("/orders/42?x=1", vec![]),
        (
            forged_ws.as_str(),
            vec![("X-Keyrail-Workspace", other_ws.as_str())],
        ),
    ] {
        let r = through_at(path, Some(&bearer(&other_key)), &extra);
        assert_eq!(r.status, 401, "{path} {extra:?}: {r:?}\n{}", nginx_logs());
        assert!(
            r.header("WWW-Authenticate")
                .is_some_and(|v| v.contains("invalid_token")),
            "{r:?}"
        );
        assert_eq!(r.json()["code"], "unauthorized", "{r:?}");
    }
    // So is the other tenant's login: not a member of this workspace.
    let r = through(stranger, &[("X-Keyrail-Workspace", &other_ws)]);
    assert_eq!(r.status, 401, "{r:?}\n{}", nginx_logs());

    assert!(
        upstream.seen().is_empty(),
        "denied requests reached the upstream: {:?}",
        upstream.seen()
    );

    // The right key: 200 from the upstream, which learns who called and cannot be fooled by a
    // client-sent X-Keyrail-Principal.
    let r = through(
        Some(&bearer(&good_key)),
        &[("X-Keyrail-Principal", "key_forged")],
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", nginx_logs());
    assert!(r.body.starts_with("upstream ok"), "{r:?}");
    assert!(r.body.contains(&format!("principal={good_id}\n")), "{r:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(s.request_line, "GET /orders/42?x=1 HTTP/1.0", "{s:?}");
    assert_eq!(
        s.headers.get("x-keyrail-principal"),
        Some(&good_id),
        "{s:?}"
    );
    assert_eq!(s.headers.get("x-keyrail-workspace"), Some(&ws), "{s:?}");
    assert_eq!(
        s.headers.get("x-keyrail-scopes").map(String::as_str),
        Some("orders:read"),
        "{s:?}"
    );
    assert!(
        !s.headers.contains_key("authorization"),
        "the key went upstream: {s:?}"
    );

    // The raw key as a Basic credential works too.
    let r = through(Some(&format!("Basic {good_key}")), &[]);
    assert_eq!(r.status, 200, "{r:?}");

    // This workspace's key passes whatever workspace the client names, and the upstream learns
    // the workspace keyrail vouched for.
    let r = through_at(
        &forged_ws,
        Some(&bearer(&good_key)),
        &[("X-Keyrail-Workspace", &other_ws)],
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", nginx_logs());
    assert!(r.body.contains(&format!("principal={good_id}\n")), "{r:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[2].headers.get("x-keyrail-workspace"),
        Some(&ws),
        "{seen:?}"
    );

    // A member's login (the owner's JWT) passes in the bound workspace without naming it.
    let r = through(Some(&root_jwt), &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", nginx_logs());
    assert!(r.body.contains(&format!("principal={root_id}\n")), "{r:?}");

    // A key limited to 2 per minute: 200, 200, then a real 429 with Retry-After.
    for n in 1..=2 {
        let r = through(Some(&bearer(&limited_key)), &[]);
        assert_eq!(r.status, 200, "request {n} of the limited key: {r:?}");
        assert!(
            r.body.contains(&format!("principal={limited_id}\n")),
            "{r:?}"
        );
        assert!(
            r.header("RateLimit-Policy")
                .is_some_and(|v| v.contains("q=2")),
            "{r:?}"
        );
    }
    let r = through(Some(&bearer(&limited_key)), &[]);
    assert_eq!(r.status, 429, "{r:?}\n{}", nginx_logs());
    let retry: u64 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {r:?}"));
    assert!((1..=60).contains(&retry), "{r:?}");
    assert!(
        r.header("RateLimit").is_some_and(|v| v.contains("r=0")),
        "{r:?}"
    );
    assert!(
        r.header("RateLimit-Policy")
            .is_some_and(|v| v.contains("q=2")),
        "{r:?}"
    );
    assert_eq!(r.json()["code"], "too_many_requests", "{r:?}");
    assert_eq!(upstream.seen().len(), 6, "{:?}", upstream.seen());

    // keyrail gone: nginx fails closed with 502, the upstream is not reached.
    keyrail_proc.stop();
    let r = through(Some(&bearer(&good_key)), &[]);
    assert_eq!(r.status, 502, "{r:?}\n{}", nginx_logs());
    assert_eq!(r.json()["code"], "auth_unavailable", "{r:?}");
    assert_eq!(upstream.seen().len(), 6, "{:?}", upstream.seen());

    nginx_proc.stop();
}
