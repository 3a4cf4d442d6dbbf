//! What the binary's black-box tests share: running `keyrail` as a child process that is
//! killed when dropped, a minimal blocking HTTP/1.1 client, and waiting for a condition.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyrail");

/// `CI` set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `keyrail` command with a clean environment: no stray `KEYRAIL_*` from the caller.
pub fn keyrail(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("KEYRAIL_DATA_DIR", dir.join("keyrail-data"));
    cmd
}

/// A child process killed when dropped, so a failing assertion leaves nothing behind.
pub struct Guard {
    name: &'static str,
    child: Option<Child>,
}

impl Guard {
    pub fn new(name: &'static str, child: Child) -> Self {
        Self {
            name,
            child: Some(child),
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The child, no longer killed on drop.
    pub fn take(&mut self) -> Option<Child> {
        self.child.take()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.child.is_some() {
            eprintln!("stopping {}", self.name);
        }
        self.stop();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so this test needs no runtime.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `sql` with `psql` as user postgres on 127.0.0.1:5432 (database `postgres`); its output,
/// or why it failed.
pub fn psql(sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qtAc",
            sql,
        ])
        .output()
        .map_err(|e| format!("psql cannot run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `keyrail serve` in `dir` (dev mode) with more `KEYRAIL_*` settings, once it answers
/// `/healthz`; and its port. Its output goes to `dir/keyrail.log`.
pub fn serve_with(dir: &Path, settings: &[(&str, &str)]) -> (Guard, u16) {
    serve_at(dir, free_port(), settings)
}

/// [`serve_with`] on `port` (for a test that must know it first, to set `public_url`).
pub fn serve_at(dir: &Path, port: u16, settings: &[(&str, &str)]) -> (Guard, u16) {
    let log = std::fs::File::create(dir.join("keyrail.log")).unwrap();
    let child = keyrail(dir)
        .arg("serve")
        .env("KEYRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYRAIL_DEV", "true")
        .envs(settings.iter().copied())
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .unwrap();
    let mut server = Guard::new("keyrail", child);
    let server_log = || std::fs::read_to_string(dir.join("keyrail.log")).unwrap_or_default();
    wait_until("keyrail answers /healthz", Duration::from_secs(30), || {
        if let Some(status) = server.exited() {
            panic!("keyrail exited ({status}):\n{}", server_log());
        }
        request(port, "GET", "/healthz", &[], None).is_ok_and(|r| r.status == 200)
    });
    (server, port)
}

/// Whether `tool` (a Python command installed with pip) at exactly `version` can run here.
/// When it cannot: outside CI, prints `SKIPPED: ...` and returns false; under CI, fails.
pub fn python_tool(tool: &str, version: &str, test: &str) -> bool {
    let why = match Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(version) => return true,
        Ok(o) => format!(
            "{tool} is not {version}: {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Err(e) => format!("{tool} cannot run: {e}"),
    };
    let fix = format!("python3 -m pip install {tool}=={version}");
    if in_ci() {
        panic!("{why}; CI is set, so the {test} test must run: {fix}");
    }
    eprintln!("SKIPPED: {why} (to run it: {fix})");
    false
}

/// `keyrail init --email admin@example.com` in `dir`: the JSON it prints (`user_id`,
/// `workspace_id`, `api_key`) and what it wrote to stderr (the generated password).
pub fn init_superuser(dir: &Path) -> (serde_json::Value, String) {
    let init = keyrail(dir)
        .args(["init", "--email", "admin@example.com"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(init.status.success(), "keyrail init: {init:?}");
    let stdout = String::from_utf8_lossy(&init.stdout);
    let created = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("keyrail init printed no JSON: {stdout}"));
    (created, String::from_utf8_lossy(&init.stderr).into_owned())
}
