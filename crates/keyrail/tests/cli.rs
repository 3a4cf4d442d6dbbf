//! Black-box tests of the `keyrail` binary: flags, configuration errors, first start, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_keyrail");

/// A `keyrail` command with a clean environment: no stray `KEYRAIL_*` from the caller.
fn keyrail(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    port: u16,
    /// Collects the server's output (stdout) until it exits.
    output: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// `keyrail serve` on a port of its own choosing, read from its `keyrail listening` line (a
    /// port picked beforehand could be taken by another test's server in the meantime); returns
    /// once it answers `/healthz`, with the time that took.
    fn start(dir: &std::path::Path, extra_env: &[(&str, &str)]) -> (Self, Duration) {
        let mut cmd = keyrail(dir);
        cmd.arg("serve")
            .env("KEYRAIL_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let output = std::thread::spawn(move || {
            let mut out = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("keyrail listening") {
                    let port = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["addr"].as_str()?.rsplit(':').next()?.parse().ok());
                    let _ = port_tx.send(port);
                }
                out.push_str(&line);
                out.push('\n');
            }
            out
        });
        let port: u16 = port_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server says where it listens within 20 s")
            .expect("the listening line names the address");
        let running = Self {
            child,
            port,
            output: Some(output),
        };
        let deadline = started + Duration::from_secs(20);
        loop {
            if let Ok(body) = get(port, "/healthz") {
                assert!(body.ends_with(r#"{"status":"ok"}"#), "{body}");
                return (running, started.elapsed());
            }
            assert!(Instant::now() < deadline, "server did not answer /healthz");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then the exit status and everything the server wrote to stdout.
    fn sigterm(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        let out = self.output.take().unwrap().join().unwrap();
        (status, out)
    }
}

/// A minimal HTTP/1.1 GET, so these tests need no HTTP client runtime.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyrail(dir.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("keyrail {}", env!("CARGO_PKG_VERSION"))
    );
    let out = keyrail(dir.path()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "migrate", "--config", "KEYRAIL_"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn a_bad_limit_stops_the_server_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k.toml"),
        "[limits]\nlogin_per_ip = \"ten\"\n",
    )
    .unwrap();
    let out = keyrail(dir.path())
        .args(["serve", "--config", "k.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("limits.login_per_ip") && err.contains("ten"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = keyrail(dir.path())
        .arg("serve")
        .env("KEYRAIL_LIMITS__SIGNUP_PER_IP", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.signup_per_ip"), "{err}");

    assert!(
        !dir.path().join("keyrail-data").exists(),
        "nothing is created before the config is valid"
    );
}

/// Unknown keys in the file are errors (above); an environment variable `KEYRAIL_*` that names
/// no key (`KEYRAIL_BIN` set by a wrapper script, a typo) is a warning naming it.
#[test]
fn unknown_environment_variables_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyrail(dir.path())
        .arg("config")
        .env("KEYRAIL_LISTN", "x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("KEYRAIL_LISTN") && err.contains("warning"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:8080\""));

    let (server, _) = Running::start(dir.path(), &[("KEYRAIL_BIN", "/usr/bin/keyrail")]);
    let (status, log) = server.sigterm();
    assert!(status.success(), "{log}");
    let warning = log
        .lines()
        .find(|l| l.contains("KEYRAIL_BIN"))
        .unwrap_or_else(|| panic!("no warning naming KEYRAIL_BIN:\n{log}"));
    assert!(warning.contains("\"WARN\""), "{warning}");
}

/// Runs `cmd` until it exits, at most `limit`; `None` (and the process killed) if it is still
/// running then.
fn run_at_most(mut cmd: Command, limit: Duration) -> Option<std::process::Output> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = common::Guard::new("keyrail", child);
    let deadline = Instant::now() + limit;
    while guard.exited().is_none() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.take().map(|c| c.wait_with_output().unwrap())
}

/// `redis_url` no longer stops `serve`: a node whose Redis is down starts, stays ready, says
/// so in `/readyz`, and the URL's password is in no output.
#[test]
fn serve_starts_with_a_redis_url_even_while_redis_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://:redissecret@127.0.0.1:{}", free_port());
    let (server, _) = Running::start(
        dir.path(),
        &[
            ("KEYRAIL_REDIS_URL", url.as_str()),
            ("KEYRAIL_LIMITS__ON_REDIS_ERROR", "deny"),
        ],
    );
    let ready = get(server.port, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains(r#""redis":"degraded""#), "{ready}");
    let (status, out) = server.sigterm();
    assert!(status.success());
    assert!(!out.contains("redissecret"), "{out}");
}

#[test]
fn a_bad_on_redis_error_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = keyrail(dir.path());
    cmd.arg("serve")
        .env("KEYRAIL_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("KEYRAIL_LIMITS__ON_REDIS_ERROR", "sometimes");
    let out = run_at_most(cmd, Duration::from_secs(15)).expect("serve started");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("on_redis_error"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k.toml"),
        "[limits]\nlogin_per_ip = \"50/15m\"\nsignup_per_ip = \"3/1h\"\n",
    )
    .unwrap();
    let out = keyrail(dir.path())
        .args(["config", "--config", "k.toml"])
        .env("KEYRAIL_LIMITS__LOGIN_PER_IP", "100/15m")
        .env("KEYRAIL_MASTER_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("login_per_ip = \"100/15m\""), "{text}");
    assert!(text.contains("signup_per_ip = \"3/1h\""), "{text}");
    assert!(
        !text.contains(&"ab".repeat(32)),
        "the master key must not be printed"
    );
}

#[test]
fn first_start_creates_the_data_dir_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, took) = Running::start(dir.path(), &[]);
    eprintln!("first start answered /healthz after {took:?}");
    let ready = get(server.port, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let data = dir.path().join("keyrail-data");
    let key_file = data.join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        data.join("keyrail.db").exists(),
        "SQLite file lives in the data dir"
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    let (status, log) = server.sigterm();
    assert!(
        status.success(),
        "SIGTERM should be a clean exit: {status:?}\n{log}"
    );
    assert!(log.contains("\"stopped\""), "{log}");
    // Logs are JSON lines.
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }

    let (server, _) = Running::start(dir.path(), &[]);
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the master key is reused"
    );
    let (status, log) = server.sigterm();
    assert!(status.success(), "{status:?}\n{log}");
}

#[test]
fn migrate_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyrail(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(first["applied"].as_u64().unwrap() >= 1, "{first}");
    assert!(first["store"].as_str().unwrap().starts_with("sqlite"));
    let out = keyrail(dir.path()).arg("migrate").output().unwrap();
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["applied"], 0);
}

#[test]
fn an_unreachable_database_fails_clearly_without_leaking_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyrail(dir.path())
        .arg("serve")
        .env(
            "KEYRAIL_DATABASE_URL",
            "postgres://keyrail:hunter2secret@127.0.0.1:1/keyrail",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("database"), "{all}");
    assert!(!all.contains("hunter2secret"), "{all}");
}

fn get_with(port: u16, path: &str, token: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn post_json(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn init_makes_a_superuser_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "a long root passphrase 42\n").unwrap();
    let run = |args: &[&str]| {
        let out = keyrail(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (first, _) = run(&[
        "init",
        "--email",
        "root@example.com",
        "--password-file",
        "pw.txt",
    ]);
    assert!(first["user_id"].as_str().unwrap().starts_with("usr_"));
    assert!(first["workspace_id"].as_str().unwrap().starts_with("ws_"));
    let api_key = first["api_key"].as_str().unwrap().to_owned();
    assert!(api_key.starts_with("kr_"), "{api_key}");
    let (second, _) = run(&[
        "init",
        "--email",
        "root@example.com",
        "--password-file",
        "pw.txt",
    ]);
    assert_eq!(
        (&first["user_id"], &first["workspace_id"]),
        (&second["user_id"], &second["workspace_id"])
    );
    let (_, stderr) = run(&["init", "--email", "ops@example.com"]);
    assert!(stderr.contains("generated password"), "{stderr}");

    let (server, _) = Running::start(dir.path(), &[]);
    let resp = post_json(
        server.port,
        "/api/v1/auth/login",
        r#"{"email":"root@example.com","password":"a long root passphrase 42"}"#,
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""superuser":true"#), "{resp}");
    // The init key is a platform superuser key.
    let users = get_with(server.port, "/api/v1/admin/users", &api_key).unwrap();
    assert!(users.starts_with("HTTP/1.1 200"), "{users}");
    server.sigterm();

    // Operators can check a key from the shell.
    let out = keyrail(dir.path())
        .args(["keys", "verify", &api_key, "--scope", "keys:read"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "VALID");
    // Bound to a workspace: the admin workspace's key passes there and nowhere else.
    let workspace_id = v["workspace_id"].as_str().unwrap().to_owned();
    for (ws, code, exit) in [
        (workspace_id.as_str(), "VALID", Some(0)),
        ("ws_someone_else", "NOT_FOUND", Some(1)),
    ] {
        let out = keyrail(dir.path())
            .args(["keys", "verify", &api_key, "--workspace", ws])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), exit);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["code"], code);
    }
    let out = keyrail(dir.path())
        .args(["keys", "verify", "kr_not_a_key"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "NOT_FOUND");
}

/// Slowloris against a process with few file descriptors: 600 half-open connections (more than
/// its 256 descriptors) must not keep `/healthz` from answering. Before, every descriptor ended
/// up held by a connection that never finished its request and accept failed with EMFILE.
#[test]
fn half_open_sockets_beyond_the_file_limit_do_not_starve_the_server() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" serve"#)
        .arg(BIN)
        .current_dir(dir.path())
        .env("KEYRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYRAIL_") && k != "KEYRAIL_LISTEN" {
            cmd.env_remove(k);
        }
    }
    let mut child = common::Guard::new("keyrail", cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/healthz").is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut idle = Vec::new();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for i in 0..600 {
        // A server that stopped accepting leaves the connection in its backlog, then in SYN
        // retries once that is full.
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connection {i} was not accepted: {e}"));
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        idle.push(s);
    }
    let started = Instant::now();
    let answer = get(port, "/healthz");
    let took = started.elapsed();
    child.stop();
    let answer = answer.unwrap_or_else(|e| panic!("/healthz failed after {took:?}: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(3), "/healthz took {took:?}");
    drop(idle);
}

/// `master_key_file` (a secret store's mounted file): `keyrail init` seals with the key read
/// from it and writes no `master.key` of its own; `keyrail keys verify` with the same file
/// opens the same store; a missing file stops the command naming the file.
#[test]
fn the_master_key_can_come_from_a_mounted_file() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("mounted-master-key");
    std::fs::write(&mounted, format!("{}\n", "5e".repeat(32))).unwrap();
    std::fs::write(dir.path().join("pw.txt"), "a long root passphrase 42\n").unwrap();
    let out = keyrail(dir.path())
        .env("KEYRAIL_MASTER_KEY_FILE", &mounted)
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
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = dir.path().join("keyrail-data");
    assert!(data.join("keyrail.db").exists());
    assert!(
        !data.join("master.key").exists(),
        "no key of its own beside the mounted one"
    );

    let out = keyrail(dir.path())
        .env("KEYRAIL_MASTER_KEY_FILE", &mounted)
        .args(["keys", "verify", made["api_key"].as_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("VALID"));

    let out = keyrail(dir.path())
        .env("KEYRAIL_MASTER_KEY_FILE", dir.path().join("not-mounted"))
        .args([
            "init",
            "--email",
            "root@example.com",
            "--password-file",
            "pw.txt",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not-mounted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.join("master.key").exists());
}
