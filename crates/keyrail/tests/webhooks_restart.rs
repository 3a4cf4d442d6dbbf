//! A node killed (SIGKILL) while it delivers a webhook loses nothing: the job stays in the
//! outbox under a lease, and once the lease ends the restarted server delivers it, with the
//! same `webhook-id`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keyrail");

fn keyrail(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYRAIL_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir);
    cmd.env("KEYRAIL_WEBHOOKS_ALLOW_PRIVATE", "true");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; status and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

fn serve(dir: &std::path::Path, port: u16) -> Child {
    let child = keyrail(dir)
        .arg("serve")
        .env("KEYRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(port, "GET", "/healthz", "", "").is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The `webhook-id` of a raw request.
fn webhook_id(raw: &str) -> String {
    raw.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("webhook-id")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// A receiver that never answers its first request and answers 200 to the others; reports
/// each request's `webhook-id`.
fn receiver() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let mut raw = String::new();
            while !raw.contains("\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => raw.push_str(&String::from_utf8_lossy(&buf[..k])),
                }
            }
            let _ = tx.send(webhook_id(&raw));
            if n == 0 {
                held.push(stream); // hangs: no answer
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (port, rx)
}

#[test]
fn a_node_killed_mid_delivery_delivers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = keyrail(dir.path())
        .args(["init", "--email", "root@example.com"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ws, key) = (
        init["workspace_id"].as_str().unwrap().to_owned(),
        init["api_key"].as_str().unwrap().to_owned(),
    );
    let (rx_port, got) = receiver();
    let port = free_port();
    let mut first = serve(dir.path(), port);
    let (status, hook) = request(
        port,
        "POST",
        &format!("/api/v1/w/{ws}/webhooks"),
        &key,
        &format!(r#"{{"url":"http://127.0.0.1:{rx_port}/hook","events":["key.created"]}}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{hook}");
    let hook: serde_json::Value = serde_json::from_str(&hook).unwrap();
    let hook = hook["id"].as_str().unwrap().to_owned();
    let (status, b) = request(
        port,
        "POST",
        &format!("/api/v1/w/{ws}/keys"),
        &key,
        r#"{"name":"made before the crash"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{b}");

    // The delivery is under way (the receiver holds it): kill the node.
    let id = got
        .recv_timeout(Duration::from_secs(10))
        .expect("a delivery");
    assert!(id.starts_with("msg_"), "{id}");
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = Instant::now();

    let port = free_port();
    let mut second = serve(dir.path(), port);
    let again = got
        .recv_timeout(Duration::from_secs(30))
        .expect("delivered after the restart");
    assert_eq!(again, id, "the same webhook-id");
    let waited = killed_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    let attempts = loop {
        let (status, b) = request(
            port,
            "GET",
            &format!("/api/v1/w/{ws}/webhooks/{hook}/deliveries"),
            &key,
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        if !v["data"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break v["data"].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The killed node's attempt left no record; the restarted one's is the second claim.
    assert_eq!(attempts.as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(
        (
            &attempts[0]["attempt"],
            &attempts[0]["status_code"],
            &attempts[0]["ok"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(200),
            &serde_json::json!(true)
        ),
        "{attempts}"
    );
    assert!(
        waited < Duration::from_secs(25),
        "redelivered after the lease: {waited:?}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}
