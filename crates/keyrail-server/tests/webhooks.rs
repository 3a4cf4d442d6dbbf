//! Black-box tests of webhooks (API.md "Webhooks"): endpoints and their bounds, the secret and
//! its rotation, signed deliveries (checked with the Python `standardwebhooks` package, the
//! reference implementation), retries with the same `webhook-id`, 410 disabling an endpoint,
//! the attempts list, the SSRF guard and scopes.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::TestServer;
use serde_json::{Value, json};

/// One request the receiver got: its webhook headers and body.
#[derive(Clone, Debug)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Got>>,
    /// Statuses to answer, in order; 200 once they run out.
    answers: Mutex<VecDeque<u16>>,
}

/// An HTTP receiver on 127.0.0.1 that records what it gets.
struct Receiver {
    url: String,
    inbox: Arc<Inbox>,
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    inbox.got.lock().unwrap().push(Got {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
    });
    let status = inbox.answers.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start(answers: &[u16]) -> Self {
        let inbox = Arc::new(Inbox::default());
        inbox.answers.lock().unwrap().extend(answers);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/hook"),
            inbox,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` requests came.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        for _ in 0..200 {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} deliveries, got {:?}", self.got());
    }
}

/// Verifies a delivery with the reference implementation (`standardwebhooks` for Python):
/// true when it accepts the delivery under `secret`.
fn python_verifies(secret: &str, got: &Got) -> bool {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
d = json.load(sys.stdin)
try:
    Webhook(d["secret"]).verify(d["body"], {
        "webhook-id": d["id"], "webhook-timestamp": d["timestamp"],
        "webhook-signature": d["signature"]})
    print("ok")
except Exception as e:
    print("refused:", e)
"#;
    let input = json!({"secret": secret, "id": got.id, "timestamp": got.timestamp,
                       "signature": got.signature, "body": got.body});
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        text == "ok" || text.starts_with("refused"),
        "standardwebhooks is missing? (pip install -r examples/python/requirements.txt): {text}"
    );
    text == "ok"
}

struct W {
    s: TestServer,
    owner: String,
    ws: String,
}

impl W {
    async fn new(allow_private: bool) -> Self {
        Self::on(common::Backend::Sqlite, allow_private)
            .await
            .unwrap()
    }

    /// `None` when the backend is PostgreSQL and it is not reachable outside CI.
    async fn on(backend: common::Backend, allow_private: bool) -> Option<Self> {
        let s = TestServer::start_with(backend, |c| c.webhooks_allow_private = allow_private, None)
            .await?;
        let (owner, ws) = s.owner_with_workspace("owner@example.com").await;
        Some(Self { s, owner, ws })
    }

    fn w(&self, path: &str) -> String {
        format!("/api/v1/w/{}{path}", self.ws)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.s
            .call(method, &self.w(path), &self.owner, body.as_ref())
            .await
    }

    async fn endpoint(&self, url: &str, events: &[&str]) -> String {
        let (status, b) = self
            .call(
                "POST",
                "/webhooks",
                Some(json!({"url": url, "events": events})),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    async fn secret(&self) -> String {
        let (status, b) = self.call("GET", "/webhooks/secret", None).await;
        assert_eq!(status, 200, "{b}");
        b["secret"].as_str().unwrap().to_owned()
    }

    async fn create_key(&self, name: &str) -> Value {
        let (status, b) = self
            .call("POST", "/keys", Some(json!({"name": name})))
            .await;
        assert_eq!(status, 201, "{b}");
        b
    }

    async fn deliveries(&self, endpoint: &str) -> Vec<Value> {
        let (status, b) = self
            .call("GET", &format!("/webhooks/{endpoint}/deliveries"), None)
            .await;
        assert_eq!(status, 200, "{b}");
        b["data"].as_array().unwrap().clone()
    }

    /// Waits (up to 10 s) until the endpoint lists `n` attempts.
    async fn wait_deliveries(&self, endpoint: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let d = self.deliveries(endpoint).await;
            if d.len() >= n {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} attempts: {:?}",
            self.deliveries(endpoint).await
        );
    }
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_signed_and_logged() {
    let w = W::new(true).await;
    let rx = Receiver::start(&[500, 200]).await;
    let hook = w.endpoint(&rx.url, &["key.created"]).await;
    let secret = w.secret().await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let key = w.create_key("first").await;

    let first = rx.wait_for(1).await;
    let attempts = w.wait_deliveries(&hook, 1).await;
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(attempts[0]["attempt"], 1);
    let at = keyrail_core::Timestamp::parse_rfc3339(attempts[0]["at"].as_str().unwrap()).unwrap();
    let next =
        keyrail_core::Timestamp::parse_rfc3339(attempts[0]["next_attempt_at"].as_str().unwrap())
            .unwrap();
    assert!(
        next > at && next.millis() - at.millis() <= 10_000,
        "the first retry comes within 10 s: {attempts:?}"
    );
    // Nothing more before the retry is due.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.got().len(), 1);
    w.s.clock.advance_secs(10);
    let got = rx.wait_for(2).await;
    let attempts = w.wait_deliveries(&hook, 2).await;
    assert_eq!(got.len(), 2, "delivered once it got a 200: {got:?}");
    assert_eq!(got[0].id, got[1].id, "the same webhook-id on every attempt");
    assert!(got[0].id.starts_with("msg_"), "{:?}", got[0]);
    assert_eq!(got[0].body, got[1].body, "the same body on every attempt");
    assert!(python_verifies(&secret, &got[0]));
    assert!(python_verifies(&secret, &got[1]));
    assert!(!python_verifies(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &got[1]
    ));
    let body: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(body["type"], "key.created");
    assert_eq!(body["data"]["key_id"], key["id"]);
    assert!(body["timestamp"].is_string());
    assert!(
        !first[0].body.contains(key["key"].as_str().unwrap()),
        "bodies never hold a secret"
    );

    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (
            &attempts[1]["attempt"],
            &attempts[1]["status_code"],
            &attempts[1]["ok"],
            &attempts[1]["next_attempt_at"]
        ),
        (&json!(2), &json!(200), &json!(true), &Value::Null)
    );
    assert_eq!(attempts[0]["event_type"], "key.created");
    assert_eq!(attempts[0]["message_id"], got[0].id.as_str());
    println!(
        "DELIVERY LOG {}",
        serde_json::to_string_pretty(&json!({"data": attempts})).unwrap()
    );
    // An event the endpoint did not subscribe to is not sent.
    let (status, _) = w
        .call(
            "POST",
            &format!("/keys/{}/revoke", key["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.got().len(), 2);
    w.s.stop().await;
}

#[tokio::test]
async fn a_410_disables_the_endpoint() {
    let w = W::new(true).await;
    let rx = Receiver::start(&[410]).await;
    let hook = w.endpoint(&rx.url, &["key.created", "key.revoked"]).await;
    w.create_key("one").await;
    rx.wait_for(1).await;
    let attempts = w.wait_deliveries(&hook, 1).await;
    assert_eq!(
        (&attempts[0]["status_code"], &attempts[0]["ok"]),
        (&json!(410), &json!(false))
    );
    assert_eq!(attempts[0]["next_attempt_at"], Value::Null);
    let (_, list) = w.call("GET", "/webhooks", None).await;
    assert_eq!(list["data"][0]["status"], "disabled", "{list}");
    assert!(list["data"][0]["disabled_at"].is_string());
    w.create_key("two").await;
    w.s.clock.advance_secs(60);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rx.got().len(),
        1,
        "nothing more goes to a disabled endpoint"
    );
    w.s.stop().await;
}

#[tokio::test]
async fn after_a_rotation_deliveries_carry_both_signatures_for_a_day() {
    let w = W::new(true).await;
    let rx = Receiver::start(&[]).await;
    w.endpoint(&rx.url, &["key.created"]).await;
    let old = w.secret().await;
    assert_eq!(w.secret().await, old, "the secret stays until rotated");
    let resp =
        w.s.http
            .post(w.s.url(&w.w("/webhooks/secret/rotate")))
            .bearer_auth(&w.owner)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let new = resp.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(w.secret().await, new);
    let resp =
        w.s.http
            .get(w.s.url(&w.w("/webhooks/secret")))
            .bearer_auth(&w.owner)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");

    w.create_key("k").await;
    let got = rx.wait_for(1).await;
    let sigs: Vec<&str> = got[0].signature.split(' ').collect();
    assert_eq!(sigs.len(), 2, "{:?}", got[0]);
    assert!(sigs.iter().all(|s| s.starts_with("v1,")));
    assert!(python_verifies(&new, &got[0]), "the new secret verifies");
    assert!(python_verifies(&old, &got[0]), "the old secret verifies");
    // The new one comes first.
    let only_new = Got {
        signature: sigs[0].to_owned(),
        ..got[0].clone()
    };
    assert!(python_verifies(&new, &only_new));

    // A day later only the new secret signs (an API key acts: access tokens expired).
    let (_, key) = w
        .call(
            "POST",
            "/keys",
            Some(json!({"name": "ci", "scopes": ["keys:write", "audit:read"]})),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    w.s.clock.advance_secs(86_401);
    let (status, b) =
        w.s.call("POST", &w.w("/keys"), &key, Some(&json!({"name": "k2"})))
            .await;
    assert_eq!(status, 201, "{b}");
    // (The "ci" key's own event is delivered too, before or after the clock moved.)
    let got = rx.wait_for(3).await;
    let k2 = got
        .iter()
        .find(|g| g.body.contains(r#""name":"k2""#))
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(k2.signature.split(' ').count(), 1, "{k2:?}");

    let (_, log) =
        w.s.call(
            "GET",
            &w.w("/audit?action=webhook.secret_rotate"),
            &key,
            None,
        )
        .await;
    assert_eq!(log["data"].as_array().unwrap().len(), 1, "{log}");
    assert!(!log.to_string().contains(&new[6..]));
    w.s.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let w = W::new(false).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://2130706433/",
    ] {
        let (status, b) = w
            .call(
                "POST",
                "/webhooks",
                Some(json!({"url": url, "events": ["key.created"]})),
            )
            .await;
        assert_eq!(
            (status, b["code"].as_str()),
            (400, Some("invalid_request")),
            "{url}: {b}"
        );
        assert_eq!(b["field"], "url", "{url}: {b}");
        assert!(b["error"].as_str().unwrap().contains("url"), "{url}: {b}");
    }
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/", "events": ["key.created"]}),
            "url",
        ),
        (
            json!({"url": "https://u:p@example.com/", "events": ["key.created"]}),
            "url",
        ),
        (
            json!({"url": format!("https://example.com/{}", "a".repeat(2048)), "events": ["key.created"]}),
            "url",
        ),
        (
            json!({"url": "https://example.com/", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "events": ["key.made"]}),
            "events",
        ),
    ] {
        let (status, b) = w.call("POST", "/webhooks", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {b}");
        assert_eq!(b["field"], field, "{body}: {b}");
    }
    let (_, list) = w.call("GET", "/webhooks", None).await;
    assert_eq!(list["data"], json!([]));
    w.s.stop().await;

    // Allowed by the configuration: the same loopback URL is taken.
    let w = W::new(true).await;
    w.endpoint("http://127.0.0.1:8080/hook", &["key.created"])
        .await;
    w.s.stop().await;
}

#[tokio::test]
async fn endpoints_are_listed_deleted_bounded_audited_and_private_to_their_workspace() {
    let w = W::new(true).await;
    let first = w
        .endpoint("http://127.0.0.1:9/a", &["member.added", "key.created"])
        .await;
    let (_, list) = w.call("GET", "/webhooks", None).await;
    assert_eq!(list["data"][0]["id"], first.as_str());
    assert!(first.starts_with("whk_"));
    assert_eq!(
        list["data"][0]["events"],
        json!(["key.created", "member.added"])
    );
    assert_eq!(list["data"][0]["status"], "active");
    for i in 1..20 {
        w.endpoint(&format!("http://127.0.0.1:9/{i}"), &["key.created"])
            .await;
    }
    let (status, b) = w
        .call(
            "POST",
            "/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/21", "events": ["key.created"]})),
        )
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (409, Some("webhook_limit")),
        "{b}"
    );
    let (_, page) = w.call("GET", "/webhooks?limit=15", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 15);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = w
        .call("GET", &format!("/webhooks?limit=15&cursor={cursor}"), None)
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 5);
    assert_eq!(rest["next_cursor"], Value::Null);

    // Another workspace sees none of them.
    let (other, other_ws) = w.s.owner_with_workspace("other@example.com").await;
    for (method, path) in [
        ("DELETE", format!("/api/v1/w/{other_ws}/webhooks/{first}")),
        (
            "GET",
            format!("/api/v1/w/{other_ws}/webhooks/{first}/deliveries"),
        ),
    ] {
        let (status, b) = w.s.call(method, &path, &other, None).await;
        assert_eq!(status, 404, "{method} {path}: {b}");
    }
    let (status, _) =
        w.s.call("GET", &format!("/api/v1/w/{}/webhooks", w.ws), &other, None)
            .await;
    assert!(status == 403 || status == 404, "{status}");

    let (status, _) = w.call("DELETE", &format!("/webhooks/{first}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = w.call("DELETE", &format!("/webhooks/{first}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = w
        .call("GET", &format!("/webhooks/{first}/deliveries"), None)
        .await;
    assert_eq!(status, 404);
    let (_, log) = w.call("GET", "/audit", None).await;
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "webhook.delete");
    assert_eq!(
        actions.iter().filter(|a| **a == "webhook.create").count(),
        20
    );
    assert_eq!(log["data"][0]["target"], first.as_str());
    w.s.stop().await;
}

#[tokio::test]
async fn webhooks_need_their_scopes() {
    let w = W::new(true).await;
    w.s.user("dev@example.com").await;
    w.s.user("member@example.com").await;
    let dev = w.s.login_as("dev@example.com", common::PASSWORD).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let member = w.s.login_as("member@example.com", common::PASSWORD).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (email, role) in [
        ("dev@example.com", "developer"),
        ("member@example.com", "member"),
    ] {
        let (status, b) = w
            .call(
                "POST",
                "/members",
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{b}");
    }
    let hook = json!({"url": "http://127.0.0.1:9/x", "events": ["key.created"]});
    let p = |s: &str| w.w(s);
    for (method, path) in [
        ("GET", p("/webhooks")),
        ("GET", p("/webhooks/secret")),
        ("POST", p("/webhooks/secret/rotate")),
        ("POST", p("/webhooks")),
    ] {
        let body = (method == "POST").then_some(&hook);
        let (status, b) = w.s.call(method, &path, &member, body).await;
        assert_eq!(
            (status, b["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{method} {path}: {b}"
        );
    }
    let (status, b) = w.s.call("POST", &p("/webhooks"), &dev, Some(&hook)).await;
    assert_eq!(status, 201, "developers hold webhooks:write: {b}");

    // A key with webhooks:read only reads.
    let (status, key) = w
        .call(
            "POST",
            "/keys",
            Some(json!({"name": "reader", "scopes": ["webhooks:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap();
    let (status, _) = w.s.call("GET", &p("/webhooks"), key, None).await;
    assert_eq!(status, 200);
    let (status, b) = w.s.call("POST", &p("/webhooks"), key, Some(&hook)).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, b) =
        w.s.call("POST", &p("/webhooks/secret/rotate"), key, None)
            .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    w.s.stop().await;
}

/// `key.expiring` comes 7 days and 1 day before a key expires, once each, however often the
/// scan runs; a key found within a day gets only the 1-day event.
#[tokio::test]
async fn key_expiring_comes_once_per_stage() {
    let w = W::new(true).await;
    w.endpoint("http://127.0.0.1:9/x", &["key.expiring"]).await;
    let (status, soon) = w
        .call(
            "POST",
            "/keys",
            Some(json!({"name": "three days", "expires_in_days": 3})),
        )
        .await;
    assert_eq!(status, 201, "{soon}");
    let (status, sooner) = w
        .call(
            "POST",
            "/keys",
            Some(json!({"name": "one day", "expires_in_days": 1})),
        )
        .await;
    assert_eq!(status, 201, "{sooner}");
    w.create_key("never").await;
    let state = &w.s.server.as_ref().unwrap().state;
    let expiring = |events: Vec<(String, String, Value)>| -> Vec<(String, i64)> {
        events
            .into_iter()
            .filter(|(_, k, _)| k == "key.expiring")
            .map(|(_, _, b)| {
                (
                    b["data"]["key_id"].as_str().unwrap().to_owned(),
                    b["data"]["days"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    // The clock moved a little: the one-day key is now within a day of expiring.
    w.s.clock.advance_secs(60);
    assert_eq!(state.webhooks.scan_expiring(500).await.unwrap(), 2);
    assert_eq!(state.webhooks.scan_expiring(500).await.unwrap(), 0, "once");
    let id = |k: &Value| k["id"].as_str().unwrap().to_owned();
    let mut got = expiring(w.s.outbox_events().await);
    got.sort();
    let mut want = vec![(id(&soon), 7), (id(&sooner), 1)];
    want.sort();
    assert_eq!(got, want);
    w.s.clock.advance_secs(2 * 86_400 + 3600);
    assert_eq!(state.webhooks.scan_expiring(500).await.unwrap(), 1);
    assert_eq!(state.webhooks.scan_expiring(500).await.unwrap(), 0);
    let got = expiring(w.s.outbox_events().await);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2], (id(&soon), 1));
    w.s.stop().await;
}

/// The same on PostgreSQL, where claims take `FOR UPDATE SKIP LOCKED`: a retried delivery and
/// its attempts, and a member event fanned out to its workspace's endpoint only.
#[tokio::test]
async fn deliveries_on_postgres() {
    let Some(w) = W::on(common::Backend::Postgres, true).await else {
        return;
    };
    let rx = Receiver::start(&[503]).await;
    let hook = w.endpoint(&rx.url, &["key.created", "member.added"]).await;
    let secret = w.secret().await;
    w.create_key("pg").await;
    rx.wait_for(1).await;
    w.wait_deliveries(&hook, 1).await;
    w.s.clock.advance_secs(10);
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].id, got[1].id);
    assert!(python_verifies(&secret, &got[1]));
    let attempts = w.wait_deliveries(&hook, 2).await;
    let seen: Vec<(Value, Value)> = attempts
        .iter()
        .map(|a| (a["status_code"].clone(), a["ok"].clone()))
        .collect();
    assert_eq!(
        seen,
        [(json!(503), json!(false)), (json!(200), json!(true))]
    );
    w.s.user("m@example.com").await;
    let (status, _) = w
        .call(
            "POST",
            "/members",
            Some(json!({"email": "m@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201);
    let got = rx.wait_for(3).await;
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(body["type"], "member.added");
    w.s.stop().await;
}
