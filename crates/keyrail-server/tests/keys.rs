//! Black-box tests of API keys: management, verify, forward-auth, keys as credentials, rate
//! limits and credits, rotation with grace, reveal, import, suspension, caching and events.

mod common;

use common::{Backend, TestServer, json};
use serde_json::{Value, json};

struct K {
    s: TestServer,
    owner: String,
    ws: String,
}

impl K {
    async fn new() -> Self {
        Self::on(Backend::Sqlite).await.unwrap()
    }

    async fn on(backend: Backend) -> Option<Self> {
        Self::with_options(backend, |_| {}).await
    }

    /// With start options adjusted by `adjust`; the workspace has a webhook endpoint
    /// subscribed to every event, so the outbox holds them ([`TestServer::outbox`]).
    async fn with_options(
        backend: Backend,
        adjust: impl FnOnce(&mut keyrail_server::StartOptions),
    ) -> Option<Self> {
        let s =
            TestServer::start_options(backend, |c| c.webhooks_allow_private = true, adjust).await?;
        let owner = s.user("owner@example.com").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, ws) = json(
            s.post_with("/api/v1/workspaces", &owner, &json!({"name": "Acme"}))
                .await,
        )
        .await;
        assert_eq!(status, 201);
        let ws = ws["id"].as_str().unwrap().to_owned();
        s.subscribe_all(&owner, &ws).await;
        Some(Self { s, owner, ws })
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.s.call(method, path, token, body.as_ref()).await
    }

    /// Sets the workspace's key format (200 expected).
    async fn set_format(&self, format: Value) {
        let (status, body) = self
            .call(
                "PATCH",
                &format!("/api/v1/w/{}", self.ws),
                &self.owner,
                Some(json!({ "key_format": format })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn create(&self, body: Value) -> Value {
        let (status, key) = self
            .call(
                "POST",
                &format!("/api/v1/w/{}/keys", self.ws),
                &self.owner,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        key
    }

    async fn verify(&self, body: Value) -> Value {
        let (status, v) = json(self.s.post_json("/api/v1/keys/verify", &body).await).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    async fn code(&self, key: &str) -> String {
        self.verify(json!({"key": key})).await["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn create_shows_the_key_once_and_verify_says_valid() {
    let k = K::new().await;
    let created = k.create(json!({"name": "ci", "scopes": ["keys:read"], "meta": {"team": "a"}, "external_id": "cust_1", "expires_in_days": 30})).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("kr_") && key.len() == 3 + 36, "{key}");
    assert_eq!(created["prefix"], &key[..7]);
    assert_eq!(created["status"], "active");
    assert!(created["expires_at"].is_string());
    let id = created["id"].as_str().unwrap();

    let (_, got) = k
        .call(
            "GET",
            &format!("/api/v1/w/{}/keys/{id}", k.ws),
            &k.owner,
            None,
        )
        .await;
    assert!(got.get("key").is_none(), "never shown again");
    assert!(!got.to_string().contains(key));
    let (_, list) = k
        .call("GET", &format!("/api/v1/w/{}/keys", k.ws), &k.owner, None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let v = k.verify(json!({"key": key, "scopes": ["keys:read"]})).await;
    assert_eq!(
        (v["valid"].as_bool(), v["code"].as_str()),
        (Some(true), Some("VALID"))
    );
    assert_eq!(v["key_id"], id);
    assert_eq!(v["workspace_id"], k.ws.as_str());
    assert_eq!(v["meta"], json!({"team": "a"}));
    assert_eq!(v["external_id"], "cust_1");
    let v = k
        .verify(json!({"key": key, "scopes": ["keys:write"]}))
        .await;
    assert_eq!(
        (v["valid"].as_bool(), v["code"].as_str()),
        (Some(false), Some("INSUFFICIENT_SCOPE"))
    );

    let unknown = k.verify(json!({"key": "kr_thisisnotakeyatall"})).await;
    assert_eq!(unknown["code"], "NOT_FOUND");
    assert_eq!(unknown["key_id"], Value::Null);
    // One character off: the checksum catches it.
    let mut bad = key.to_owned();
    let last = bad.pop().unwrap();
    bad.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(k.code(&bad).await, "NOT_FOUND");
    let (status, _) = json(
        k.s.post_json("/api/v1/keys/verify", &json!({"key": key, "extra": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let events = k.s.outbox().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("key.created "), "{events:?}");
    let data = events.join("\n");
    assert!(
        data.contains(id) && !data.contains(key),
        "events name the key, never hold it: {data}"
    );
    k.s.stop().await;
}

#[tokio::test]
async fn workspace_key_formats_are_used() {
    let k = K::new().await;
    k.set_format(json!({"prefix": "sgw", "alphabet": "hex", "length": 32, "checksum": false}))
        .await;
    let key = k.create(json!({"name": "a"})).await;
    let secret = key["key"].as_str().unwrap();
    assert!(
        secret.starts_with("sgw_")
            && secret.len() == 36
            && secret[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{secret}"
    );
    assert_eq!(k.code(secret).await, "VALID");
    k.set_format(json!({"prefix": "gr", "alphabet": "base36", "length": 20, "checksum": false}))
        .await;
    let gr = k.create(json!({"name": "b"})).await;
    let g = gr["key"].as_str().unwrap();
    assert!(g.starts_with("gr_") && g.len() == 23, "{g}");
    assert_eq!(k.code(g).await, "VALID");
    assert_eq!(k.code(secret).await, "VALID", "older keys keep working");
    k.s.stop().await;
}

/// A key made under a format its workspace has since left keeps working on a node started
/// afterwards, even when the new format claims its shape (same prefix, a checksummed body of
/// the old key's length): the store remembers every format ever used.
#[tokio::test]
async fn older_formats_survive_a_restart() {
    let k = K::new().await;
    k.set_format(json!({"prefix": "kr", "alphabet": "base62", "length": 36, "checksum": false}))
        .await;
    let old = k.create(json!({"name": "old"})).await;
    let old = old["key"].as_str().unwrap().to_owned();
    assert_eq!(old.len(), 3 + 36);
    k.set_format(json!({"prefix": "kr", "alphabet": "base62", "length": 30, "checksum": true}))
        .await;
    let new = k.create(json!({"name": "new"})).await;
    let new = new["key"].as_str().unwrap().to_owned();
    assert_eq!(new.len(), old.len(), "the same shape");
    assert_eq!(k.code(&old).await, "VALID");

    // Another node on the same database, started now, knows only what the store says.
    let fresh = k.s.another_on_the_same_store().await;
    assert_eq!(fresh.verify_code(&old).await, "VALID");
    assert_eq!(fresh.verify_code(&new).await, "VALID");
    fresh.stop().await;
    k.s.stop().await;
}

#[tokio::test]
async fn revoke_disable_expire_and_suspend() {
    let k = K::new().await;
    let a = k.create(json!({"name": "a", "expires_in_days": 1})).await;
    let key = a["key"].as_str().unwrap().to_owned();
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(k.code(&key).await, "VALID");

    let (status, _) = k
        .call(
            "PATCH",
            &format!("/api/v1/w/{}/keys/{id}", k.ws),
            &k.owner,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        k.code(&key).await,
        "DISABLED",
        "the cache saw the change at once"
    );
    k.call(
        "PATCH",
        &format!("/api/v1/w/{}/keys/{id}", k.ws),
        &k.owner,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(k.code(&key).await, "VALID");

    k.s.clock.advance_secs(86_400 + 1);
    assert_eq!(k.code(&key).await, "EXPIRED");
    // A day later the owner's access token has long expired: log in again.
    let owner = k.s.login_as("owner@example.com", common::PASSWORD).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, listed) = k
        .call(
            "GET",
            &format!("/api/v1/w/{}/keys?status=expired", k.ws),
            &owner,
            None,
        )
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    let (_, b) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys", k.ws),
            &owner,
            Some(json!({"name": "b"})),
        )
        .await;
    let bkey = b["key"].as_str().unwrap().to_owned();
    let bid = b["id"].as_str().unwrap();
    assert_eq!(k.code(&bkey).await, "VALID");
    let (status, revoked) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys/{bid}/revoke", k.ws),
            &owner,
            None,
        )
        .await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")));
    assert_eq!(k.code(&bkey).await, "REVOKED");

    let (_, c) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys", k.ws),
            &owner,
            Some(json!({"name": "c"})),
        )
        .await;
    let ckey = c["key"].as_str().unwrap().to_owned();
    assert_eq!(k.code(&ckey).await, "VALID");
    let root = k.s.user("root@example.com").await;
    let store = &k.s.server.as_ref().unwrap().state.store;
    let root_id = keyrail_core::id::UserId::parse(root["user"]["id"].as_str().unwrap()).unwrap();
    store
        .set_superuser(&root_id, true, keyrail_core::Timestamp::now())
        .await
        .unwrap();
    let root_token = root["access_token"].as_str().unwrap();
    k.call(
        "POST",
        &format!("/api/v1/admin/workspaces/{}/suspend", k.ws),
        root_token,
        None,
    )
    .await;
    assert_eq!(k.code(&ckey).await, "TENANT_SUSPENDED");
    k.call(
        "POST",
        &format!("/api/v1/admin/workspaces/{}/activate", k.ws),
        root_token,
        None,
    )
    .await;
    assert_eq!(k.code(&ckey).await, "VALID");
    let events = k.s.outbox().await;
    assert!(
        events.iter().any(|e| e.starts_with("key.revoked ")),
        "{events:?}"
    );
    k.s.stop().await;
}

#[tokio::test]
async fn rotation_with_and_without_grace() {
    let k = K::new().await;
    let old = k
        .create(json!({"name": "a", "scopes": ["keys:read"], "meta": {"x": 1}}))
        .await;
    let (status, new) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/rotate",
                k.ws,
                old["id"].as_str().unwrap()
            ),
            &k.owner,
            Some(json!({"grace_seconds": 60})),
        )
        .await;
    assert_eq!(status, 200, "{new}");
    assert_ne!(new["id"], old["id"]);
    assert_eq!(new["scopes"], json!(["keys:read"]));
    assert_eq!(new["meta"], json!({"x": 1}));
    let (okey, nkey) = (old["key"].as_str().unwrap(), new["key"].as_str().unwrap());
    assert_eq!(k.code(okey).await, "VALID", "within the grace period");
    assert_eq!(k.code(nkey).await, "VALID");
    k.s.clock.advance_secs(61);
    assert_eq!(k.code(okey).await, "REVOKED");
    assert_eq!(k.code(nkey).await, "VALID");

    // No grace: the old key stops at once; no body means grace 0.
    let resp =
        k.s.http
            .post(k.s.url(&format!(
                "/api/v1/w/{}/keys/{}/rotate",
                k.ws,
                new["id"].as_str().unwrap()
            )))
            .bearer_auth(&k.owner)
            .send()
            .await
            .unwrap();
    let (status, third) = json(resp).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(k.code(nkey).await, "REVOKED");
    let (status, b) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/rotate",
                k.ws,
                third["id"].as_str().unwrap()
            ),
            &k.owner,
            Some(json!({"grace_seconds": 86401})),
        )
        .await;
    assert_eq!((status, b["field"].as_str()), (400, Some("grace_seconds")));
    let events = k.s.outbox().await;
    assert!(
        events.iter().any(|e| e.starts_with("key.rotated ")),
        "{events:?}"
    );
    k.s.stop().await;
}

/// A key is rotated once: rotating it again (while its grace period runs, or at the same time
/// from several clients) is 409 `key_rotated`, and only one replacement is ever made.
#[tokio::test]
async fn a_key_is_rotated_once() {
    let k = K::new().await;
    let old = k.create(json!({"name": "a"})).await;
    let rotate = |id: String| {
        let k = &k;
        async move {
            k.call(
                "POST",
                &format!("/api/v1/w/{}/keys/{id}/rotate", k.ws),
                &k.owner,
                Some(json!({"grace_seconds": 60})),
            )
            .await
        }
    };
    let id = old["id"].as_str().unwrap().to_owned();
    let (status, first) = rotate(id.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = rotate(id.clone()).await;
    assert_eq!(
        (status, again["code"].as_str(), again["error"].as_str()),
        (
            409,
            Some("key_rotated"),
            Some("This key was rotated already; rotate its replacement")
        )
    );
    // The old key's grace period is what the first rotation said.
    assert_eq!(k.code(old["key"].as_str().unwrap()).await, "VALID");
    k.s.clock.advance_secs(61);
    assert_eq!(k.code(old["key"].as_str().unwrap()).await, "REVOKED");

    // Concurrent rotations of one key: one wins, the others are told.
    for round in 0..3 {
        let key = k.create(json!({"name": format!("race-{round}")})).await;
        let id = key["id"].as_str().unwrap().to_owned();
        let (a, b, c, d) = tokio::join!(
            rotate(id.clone()),
            rotate(id.clone()),
            rotate(id.clone()),
            rotate(id.clone())
        );
        let outcomes = [a, b, c, d];
        let won: Vec<&Value> = outcomes
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        for (s, b) in outcomes.iter().filter(|(s, _)| *s != 200) {
            assert_eq!((*s, b["code"].as_str()), (409, Some("key_rotated")), "{b}");
        }
        assert_eq!(k.code(won[0]["key"].as_str().unwrap()).await, "VALID");
        let (_, listed) = k
            .call("GET", &format!("/api/v1/w/{}/keys", k.ws), &k.owner, None)
            .await;
        let names = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["name"] == json!(format!("race-{round}")))
            .count();
        assert_eq!(names, 2, "the key and one replacement: {listed}");
    }
    k.s.stop().await;
}

#[tokio::test]
async fn per_key_rate_limits() {
    let k = K::new().await;
    let a = k
        .create(json!({"name": "a", "rate_limit": {"limit": 3, "window_seconds": 60}}))
        .await;
    let key = a["key"].as_str().unwrap();
    for left in [2, 1, 0] {
        let resp =
            k.s.post_json("/api/v1/keys/verify", &json!({"key": key}))
                .await;
        assert_eq!(resp.headers()["ratelimit-policy"], "\"key\";q=3;w=60");
        let v = json(resp).await.1;
        assert_eq!(v["code"], "VALID");
        assert_eq!(v["rate_limit"]["limit"], 3);
        assert_eq!(v["rate_limit"]["remaining"], left);
    }
    let v = k.verify(json!({"key": key})).await;
    assert_eq!(
        (v["valid"].as_bool(), v["code"].as_str()),
        (Some(false), Some("RATE_LIMITED"))
    );
    // A look (cost 0) reports the exhausted limit and spends nothing.
    let v = k.verify(json!({"key": key, "cost": 0})).await;
    assert_eq!(
        (v["code"].as_str(), &v["rate_limit"]["remaining"]),
        (Some("RATE_LIMITED"), &json!(0))
    );
    // As an API credential, the limit is a 429 with Retry-After.
    let resp = k.s.get_with(&format!("/api/v1/w/{}", k.ws), key).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(resp.headers().contains_key("ratelimit"));
    k.s.clock.advance_secs(20);
    assert_eq!(
        k.code(key).await,
        "VALID",
        "one request per 20 s comes back"
    );
    k.s.stop().await;
}

#[tokio::test]
async fn credits_are_exact_under_concurrency() {
    let Some(k) = K::on(Backend::Sqlite).await else {
        return;
    };
    credits(&k).await;
    k.s.stop().await;
    let Some(k) = K::on(Backend::Postgres).await else {
        return;
    };
    credits(&k).await;
    k.s.stop().await;
}

async fn credits(k: &K) {
    let a = k.create(json!({"name": "a", "remaining": 50})).await;
    let key = a["key"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..80 {
        let http = k.s.http.clone();
        let url = k.s.url("/api/v1/keys/verify");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let v: Value = http
                .post(url)
                .json(&json!({"key": key}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["code"].as_str().unwrap().to_owned()
        }));
    }
    let mut valid = 0;
    let mut exceeded = 0;
    for t in tasks {
        match t.await.unwrap().as_str() {
            "VALID" => valid += 1,
            "USAGE_EXCEEDED" => exceeded += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((valid, exceeded), (50, 30));
    let (_, got) = k
        .call(
            "GET",
            &format!("/api/v1/w/{}/keys/{}", k.ws, a["id"].as_str().unwrap()),
            &k.owner,
            None,
        )
        .await;
    assert_eq!(got["remaining"], 0);
    // A look (cost 0) spends nothing and answers what a request would get.
    let v = k.verify(json!({"key": key, "cost": 0})).await;
    assert_eq!(
        (&v["code"], &v["remaining"]),
        (&json!("USAGE_EXCEEDED"), &json!(0))
    );
}

#[tokio::test]
async fn reveal_only_recoverable_keys() {
    let k = K::new().await;
    let r = k.create(json!({"name": "r", "recoverable": true})).await;
    let (status, shown) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/reveal",
                k.ws,
                r["id"].as_str().unwrap()
            ),
            &k.owner,
            None,
        )
        .await;
    assert_eq!((status, shown["key"].as_str()), (200, r["key"].as_str()));
    let n = k.create(json!({"name": "n"})).await;
    let (status, b) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/reveal",
                k.ws,
                n["id"].as_str().unwrap()
            ),
            &k.owner,
            None,
        )
        .await;
    assert_eq!((status, b["code"].as_str()), (409, Some("not_recoverable")));
    // A developer lacks keys:reveal.
    k.s.user("dev@example.com").await;
    k.call(
        "POST",
        &format!("/api/v1/w/{}/members", k.ws),
        &k.owner,
        Some(json!({"email": "dev@example.com", "role": "developer"})),
    )
    .await;
    let (_, dev) = k.s.login_as("dev@example.com", common::PASSWORD).await;
    let (status, b) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/reveal",
                k.ws,
                r["id"].as_str().unwrap()
            ),
            dev["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(
        (status, b["required"].clone()),
        (403, json!(["keys:reveal"]))
    );
    let store = &k.s.server.as_ref().unwrap().state.store;
    let log = store
        .list_audit(&Default::default(), &keyrail_core::model::Page::first(100))
        .await
        .unwrap();
    assert!(log.iter().any(|e| e.action == "key.reveal"));
    k.s.stop().await;
}

#[tokio::test]
async fn import_is_atomic_and_names_duplicates() {
    let k = K::new().await;
    use sha2_free::sha256_hex;
    let (status, out) = k
        .call("POST", &format!("/api/v1/w/{}/keys/import", k.ws), &k.owner, Some(json!({"keys": [
            {"key": "legacy_abcdefghijklmnop1234", "name": "old one", "scopes": ["keys:read"]},
            {"sha256": sha256_hex("legacy_only_hash_known_0001"), "name": "hashed", "external_id": "c9"}
        ]})))
        .await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["imported"], 2);
    assert_eq!(k.code("legacy_abcdefghijklmnop1234").await, "VALID");
    let v = k
        .verify(json!({"key": "legacy_only_hash_known_0001"}))
        .await;
    assert_eq!(
        (v["code"].as_str(), v["external_id"].as_str()),
        (Some("VALID"), Some("c9"))
    );

    let (status, b) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys/import", k.ws),
            &k.owner,
            Some(json!({"keys": [
                {"key": "brand_new_key_aaaaaaaaaaaaaa", "name": "x"},
                {"key": "legacy_abcdefghijklmnop1234", "name": "dup"}
            ]})),
        )
        .await;
    assert_eq!(status, 409, "{b}");
    assert!(b["error"].as_str().unwrap().contains("keys[1]"), "{b}");
    assert_eq!(
        k.code("brand_new_key_aaaaaaaaaaaaaa").await,
        "NOT_FOUND",
        "nothing of a failed import lands"
    );
    let (status, b) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys/import", k.ws),
            &k.owner,
            Some(json!({"keys": []})),
        )
        .await;
    assert_eq!((status, b["field"].as_str()), (400, Some("keys")));
    // Plaintext keys must be what verify can accept, and not guessable: 16+ printable ASCII
    // characters, no spaces. The 400 names the entry.
    for bad in [
        "a",
        "has spaces in this key",
        "ключ_ключ_ключ_ключ",
        "fifteen_chars_x",
    ] {
        let (status, b) = k
            .call(
                "POST",
                &format!("/api/v1/w/{}/keys/import", k.ws),
                &k.owner,
                Some(json!({"keys": [
                    {"key": "fine_key_0123456789abc", "name": "ok"},
                    {"key": bad, "name": "bad"}
                ]})),
            )
            .await;
        assert_eq!(
            (status, b["field"].as_str()),
            (400, Some("keys[1].key")),
            "{bad:?}: {b}"
        );
    }
    assert_eq!(k.code("fine_key_0123456789abc").await, "NOT_FOUND");
    // The one not given is absent, not null (the document says a string, not a nullable one).
    for (entry, field) in [
        (
            json!({"key": null, "sha256": sha256_hex("null_key_0123456789"), "name": "n"}),
            "keys[0].key",
        ),
        (
            json!({"key": "null_hash_0123456789", "sha256": null, "name": "n"}),
            "keys[0].sha256",
        ),
    ] {
        let (status, b) = k
            .call(
                "POST",
                &format!("/api/v1/w/{}/keys/import", k.ws),
                &k.owner,
                Some(json!({ "keys": [entry] })),
            )
            .await;
        assert_eq!((status, b["field"].as_str()), (400, Some(field)), "{b}");
    }
    assert_eq!(k.code("null_hash_0123456789").await, "NOT_FOUND");

    // 1000 keys in one call (over the usual 64 KiB body limit).
    let many: Vec<Value> = (0..1000)
        .map(
            |i| json!({"key": format!("bulk_key_number_{i:06}_xxxxxxxx"), "name": format!("k{i}")}),
        )
        .collect();
    let (status, out) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys/import", k.ws),
            &k.owner,
            Some(json!({"keys": many})),
        )
        .await;
    assert_eq!((status, out["imported"].as_u64()), (201, Some(1000)));
    assert_eq!(k.code("bulk_key_number_000999_xxxxxxxx").await, "VALID");
    k.s.stop().await;
}

mod sha2_free {
    pub fn sha256_hex(s: &str) -> String {
        keyrail_core::crypto::token::sha256_hex(s.as_bytes())
    }
}

#[tokio::test]
async fn keys_are_credentials_on_the_api() {
    let k = K::new().await;
    let reader = k
        .create(json!({"name": "reader", "scopes": ["keys:read", "workspace:read"]}))
        .await;
    let key = reader["key"].as_str().unwrap().to_owned();
    let (status, _) = k
        .call("GET", &format!("/api/v1/w/{}/keys", k.ws), &key, None)
        .await;
    assert_eq!(status, 200);
    // Basic with the raw key works too.
    let resp =
        k.s.http
            .get(k.s.url(&format!("/api/v1/w/{}", k.ws)))
            .header("authorization", format!("Basic {key}"))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, b) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys", k.ws),
            &key,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(
        (status, b["code"].as_str(), b["required"].clone()),
        (403, Some("insufficient_scope"), json!(["keys:write"]))
    );
    // A key cannot mint a key with more than it holds.
    let writer = k
        .create(json!({"name": "writer", "scopes": ["keys:write"]}))
        .await;
    let (status, b) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/keys", k.ws),
            writer["key"].as_str().unwrap(),
            Some(json!({"name": "x", "scopes": ["keys:delete"]})),
        )
        .await;
    assert_eq!(
        (status, b["required"].clone()),
        (403, json!(["keys:delete"]))
    );
    // Another workspace is invisible to it.
    let (_, other) = k
        .call(
            "POST",
            "/api/v1/workspaces",
            &k.owner,
            Some(json!({"name": "Other"})),
        )
        .await;
    let (status, _) = k
        .call(
            "GET",
            &format!("/api/v1/w/{}", other["id"].as_str().unwrap()),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Profile is for people.
    let (status, _) = k.call("GET", "/api/v1/profile", &key, None).await;
    assert_eq!(status, 403);

    let (status, b) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/revoke",
                k.ws,
                reader["id"].as_str().unwrap()
            ),
            &k.owner,
            None,
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = k
        .call("GET", &format!("/api/v1/w/{}/keys", k.ws), &key, None)
        .await;
    assert_eq!(
        (status, b["error"].as_str(), b["code"].as_str()),
        (401, Some("API key revoked"), Some("revoked"))
    );
    let exp = k
        .create(json!({"name": "e", "expires_in_days": 1, "scopes": ["keys:read"]}))
        .await;
    k.s.clock.advance_secs(2 * 86_400);
    let (status, b) = k
        .call(
            "GET",
            &format!("/api/v1/w/{}/keys", k.ws),
            exp["key"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str(), b["code"].as_str()),
        (401, Some("API key expired"), Some("expired"))
    );
    k.s.stop().await;
}

#[tokio::test]
async fn forward_auth_for_reverse_proxies() {
    let k = K::new().await;
    k.call(
        "POST",
        &format!("/api/v1/w/{}/scopes", k.ws),
        &k.owner,
        Some(json!({"name": "chats:read"})),
    )
    .await;
    let a = k.create(json!({"name": "a", "scopes": ["chats:read"], "external_id": "cust_7", "rate_limit": {"limit": 2, "window_seconds": 60}})).await;
    let key = a["key"].as_str().unwrap();
    let resp =
        k.s.http
            .get(k.s.url("/api/v1/forward-auth?scopes=chats:read"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-keyrail-principal"],
        a["id"].as_str().unwrap()
    );
    assert_eq!(resp.headers()["x-keyrail-workspace"], k.ws.as_str());
    assert_eq!(resp.headers()["x-keyrail-scopes"], "chats:read");
    assert_eq!(resp.headers()["x-keyrail-external-id"], "cust_7");
    assert!(resp.headers().contains_key("ratelimit"));
    // Any method; scopes from the header.
    let resp =
        k.s.http
            .post(k.s.url("/api/v1/forward-auth"))
            .header("x-keyrail-scopes", "chats:write")
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
    let (status, b) = json(resp).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // A refusal spent nothing: the second of the two allowed requests passes, the third not.
    let resp =
        k.s.http
            .get(k.s.url("/api/v1/forward-auth"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        k.s.http
            .get(k.s.url("/api/v1/forward-auth"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let resp =
        k.s.http
            .get(k.s.url("/api/v1/forward-auth"))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 401);
    let resp =
        k.s.http
            .get(k.s.url("/api/v1/forward-auth"))
            .bearer_auth("kr_nope")
            .send()
            .await
            .unwrap();
    assert_eq!(json(resp).await.1["code"], "invalid_credentials");
    // A logged-in person, in a workspace named by header.
    let resp =
        k.s.http
            .get(k.s.url("/api/v1/forward-auth?scopes=keys:read"))
            .header("x-keyrail-workspace", &k.ws)
            .bearer_auth(&k.owner)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    k.s.stop().await;
}

#[tokio::test]
async fn last_used_is_written_in_batches() {
    let k = K::new().await;
    let a = k.create(json!({"name": "a"})).await;
    for _ in 0..5 {
        k.code(a["key"].as_str().unwrap()).await;
    }
    let path = format!("/api/v1/w/{}/keys/{}", k.ws, a["id"].as_str().unwrap());
    let (_, before) = k.call("GET", &path, &k.owner, None).await;
    assert_eq!(before["last_used_at"], Value::Null, "no write per request");
    k.s.flush_last_used().await;
    let (_, after) = k.call("GET", &path, &k.owner, None).await;
    assert!(after["last_used_at"].is_string(), "{after}");

    // A key used and then changed (which drops it from the cache) before the flush still has
    // its use written; a flush with nothing new writes nothing.
    let b = k.create(json!({"name": "b"})).await;
    k.s.clock.advance_secs(5);
    assert_eq!(k.code(b["key"].as_str().unwrap()).await, "VALID");
    let used_at = keyrail_core::Clock::now(k.s.clock.as_ref());
    let path_b = format!("/api/v1/w/{}/keys/{}", k.ws, b["id"].as_str().unwrap());
    let (status, _) = k
        .call("PATCH", &path_b, &k.owner, Some(json!({"name": "b2"})))
        .await;
    assert_eq!(status, 200);
    k.s.clock.advance_secs(5);
    k.s.flush_last_used().await;
    let (_, b_after) = k.call("GET", &path_b, &k.owner, None).await;
    let written = b_after["last_used_at"]
        .as_str()
        .and_then(keyrail_core::Timestamp::parse_rfc3339)
        .unwrap_or_else(|| panic!("{b_after}"));
    assert!(
        (written.millis() - used_at.millis()).abs() < 1000,
        "the use, not the flush: {b_after}"
    );
    let (_, a_again) = k.call("GET", &path, &k.owner, None).await;
    assert_eq!(a_again["last_used_at"], after["last_used_at"]);
    k.s.stop().await;
}

#[tokio::test]
async fn keys_on_postgres() {
    let Some(k) = K::on(Backend::Postgres).await else {
        return;
    };
    let a = k
        .create(json!({"name": "a", "scopes": ["keys:read"]}))
        .await;
    let key = a["key"].as_str().unwrap();
    assert_eq!(k.code(key).await, "VALID");
    k.call(
        "POST",
        &format!(
            "/api/v1/w/{}/keys/{}/revoke",
            k.ws,
            a["id"].as_str().unwrap()
        ),
        &k.owner,
        None,
    )
    .await;
    assert_eq!(k.code(key).await, "REVOKED");
    k.s.stop().await;
}

#[tokio::test]
async fn rate_limits_never_over_allow_under_concurrency() {
    let k = K::new().await;
    let a = k
        .create(json!({"name": "a", "rate_limit": {"limit": 10, "window_seconds": 3600}}))
        .await;
    let key = a["key"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let http = k.s.http.clone();
        let url = k.s.url("/api/v1/keys/verify");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let v: Value = http
                .post(url)
                .json(&json!({"key": key}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["code"].as_str().unwrap().to_owned()
        }));
    }
    let mut valid = 0;
    for t in tasks {
        if t.await.unwrap() == "VALID" {
            valid += 1;
        }
    }
    assert_eq!(valid, 10);
    k.s.stop().await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
    /// Arbitrary bytes as a key: verify answers NOT_FOUND, and as a credential 401 (never a
    /// panic or a 500).
    #[test]
    fn arbitrary_keys_are_not_found(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = shared_server().await;
            // A client per case: each case has its own runtime.
            let http = reqwest::Client::new();
            let key = String::from_utf8_lossy(&raw).into_owned();
            let resp = http.post(s.url("/api/v1/keys/verify")).json(&json!({"key": key})).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["code"], "NOT_FOUND");
            if let Ok(h) = reqwest::header::HeaderValue::from_bytes(&[b"Bearer ".as_slice(), &raw].concat()) {
                let r = http.get(s.url("/api/v1/profile")).header("authorization", h).header("x-forwarded-for", "x").send().await.unwrap();
                assert!(r.status() == 401 || r.status() == 429, "{}", r.status());
            }
        });
    }
}

/// One server for the property test's cases (each case has its own runtime, the server its own
/// thread and runtime).
async fn shared_server() -> &'static common::Remote {
    static SERVER: std::sync::OnceLock<common::Remote> = std::sync::OnceLock::new();
    if let Some(s) = SERVER.get() {
        return s;
    }
    let remote = common::Remote::spawn();
    SERVER.get_or_init(|| remote)
}

#[tokio::test]
async fn the_global_limit_applies_per_principal_and_not_to_verify() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.limits.global_per_principal = "3/1m".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    let a = s.user("ada@example.com").await;
    let t = a["access_token"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(s.get_with("/api/v1/profile", t).await.status(), 200);
    }
    let resp = s.get_with("/api/v1/profile", t).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // Another principal has its own budget.
    let b = s.user("bob@example.com").await;
    assert_eq!(
        s.get_with("/api/v1/profile", b["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // Verify has no per-IP limit unless `verify_per_ip` is set: its caller is usually one
    // backend verifying for all of its clients. Unknown keys do not block the caller either.
    for _ in 0..20 {
        let r = s
            .post_json("/api/v1/keys/verify", &json!({"key": "kr_unknown"}))
            .await;
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("ratelimit-policy"), "{r:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn verify_per_ip_limits_verify_when_set() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| c.limits.verify_per_ip = Some("3/1m".parse().unwrap()),
        None,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let r = s
            .post_json("/api/v1/keys/verify", &json!({"key": "kr_unknown"}))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], "\"verify\";q=3;w=60");
    }
    let r = s
        .post_json("/api/v1/keys/verify", &json!({"key": "kr_unknown"}))
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let (_, body) = json(r).await;
    assert_eq!(body["code"], "too_many_requests");
    s.stop().await;
}

#[tokio::test]
async fn editing_a_key_keeps_spent_credits_spent() {
    let k = K::new().await;
    let a = k.create(json!({"name": "a", "remaining": 5})).await;
    let key = a["key"].as_str().unwrap();
    let path = format!("/api/v1/w/{}/keys/{}", k.ws, a["id"].as_str().unwrap());
    k.code(key).await;
    k.code(key).await;
    let (_, renamed) = k
        .call("PATCH", &path, &k.owner, Some(json!({"name": "b"})))
        .await;
    assert_eq!(
        (renamed["name"].as_str(), renamed["remaining"].as_i64()),
        (Some("b"), Some(3))
    );
    let (_, topped) = k
        .call("PATCH", &path, &k.owner, Some(json!({"remaining": 10})))
        .await;
    assert_eq!(topped["remaining"], 10);
    assert_eq!(k.verify(json!({"key": key})).await["remaining"], 9);
    let (_, unlimited) = k
        .call("PATCH", &path, &k.owner, Some(json!({"remaining": null})))
        .await;
    assert_eq!(unlimited["remaining"], Value::Null);
    k.s.stop().await;
}

#[tokio::test]
async fn nobody_acts_on_a_key_stronger_than_themselves() {
    let k = K::new().await;
    let admin = k.s.user("admin@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = k
        .call(
            "POST",
            &format!("/api/v1/w/{}/members", k.ws),
            &k.owner,
            Some(json!({"email": "admin@example.com", "role": "admin"})),
        )
        .await;
    assert_eq!(status, 201);
    // The owner's key can delete the workspace; an admin cannot.
    let strong = k
        .create(json!({"name": "owner's", "scopes": ["workspace:delete"], "recoverable": true}))
        .await;
    let id = strong["id"].as_str().unwrap();
    let base = format!("/api/v1/w/{}/keys/{id}", k.ws);
    for (method, path, body) in [
        ("POST", format!("{base}/reveal"), None),
        ("PATCH", base.clone(), Some(json!({"name": "mine now"}))),
        ("PATCH", base.clone(), Some(json!({"enabled": false}))),
        ("POST", format!("{base}/rotate"), Some(json!({}))),
        ("POST", format!("{base}/revoke"), None),
    ] {
        let (status, b) = k.call(method, &path, &admin, body).await;
        assert_eq!(
            (status, b["code"].as_str(), &b["required"]),
            (
                403,
                Some("insufficient_scope"),
                &json!(["workspace:delete"])
            ),
            "{method} {path}: {b}"
        );
    }
    assert_eq!(k.code(strong["key"].as_str().unwrap()).await, "VALID");
    // A key within the admin's own scopes is theirs to manage.
    let weak = k
        .create(json!({"name": "reader", "scopes": ["keys:read"], "recoverable": true}))
        .await;
    let weak_base = format!("/api/v1/w/{}/keys/{}", k.ws, weak["id"].as_str().unwrap());
    let (status, b) = k
        .call("POST", &format!("{weak_base}/reveal"), &admin, None)
        .await;
    assert_eq!((status, &b["key"]), (200, &weak["key"]), "{b}");
    let (status, _) = k
        .call("POST", &format!("{weak_base}/revoke"), &admin, None)
        .await;
    assert_eq!(status, 200);
    k.s.stop().await;
}

#[tokio::test]
async fn the_change_log_is_drained_however_long_it_grew() {
    use keyrail_core::id::{KeyId, WorkspaceId};
    if common::skip_in_cluster("one node's follower, driven by hand") {
        return;
    }
    // The follower polls hourly here; the test runs one catch-up itself.
    let k = K::with_options(Backend::Sqlite, |o| {
        o.change_poll = std::time::Duration::from_secs(3600)
    })
    .await
    .unwrap();
    let (s, ws) = (&k.s, &k.ws);
    let keys = [
        k.create(json!({"name": "busy"})).await,
        k.create(json!({"name": "victim"})).await,
    ];
    let victim = keys[1]["key"].as_str().unwrap();
    let verify = async |key: &str| k.code(key).await;
    assert_eq!(verify(victim).await, "VALID");
    // Another node writes 1,500 changes, then revokes the cached key: this node hears of it
    // only through the change log.
    let state = &s.server.as_ref().unwrap().state;
    let ws_id = WorkspaceId::parse(ws).unwrap();
    let busy = KeyId::parse(keys[0]["id"].as_str().unwrap()).unwrap();
    let seq = state.store.latest_change().await.unwrap();
    let now = state.clock.now();
    let entry = |action: &str| {
        keyrail_core::audit::entry(
            now,
            &keyrail_core::audit::RequestMeta::default(),
            Some(ws_id.clone()),
            (keyrail_core::model::ActorType::User, None),
            action,
            None,
            true,
        )
    };
    for n in 0..1_500 {
        let credits = keyrail_core::model::KeyChanges {
            remaining: Some(Some(n)),
            ..Default::default()
        };
        assert!(
            state
                .store
                .patch_key(&ws_id, &busy, &credits, now, &entry("key.update"))
                .await
                .unwrap()
                .is_some()
        );
    }
    let victim_id = KeyId::parse(keys[1]["id"].as_str().unwrap()).unwrap();
    assert!(
        state
            .store
            .revoke_key(&ws_id, &victim_id, now, &entry("key.revoke"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(verify(victim).await, "VALID", "still cached");
    let (reached, result) = keyrail_server::background::catch_up(state, seq).await;
    result.unwrap();
    assert_eq!(reached, state.store.latest_change().await.unwrap());
    assert_eq!(verify(victim).await, "REVOKED");
    k.s.stop().await;
}

#[tokio::test]
async fn forward_auth_scope_sources_and_workspace_binding() {
    let k = K::new().await;
    for name in ["chats:read", "chats:write"] {
        k.call(
            "POST",
            &format!("/api/v1/w/{}/scopes", k.ws),
            &k.owner,
            Some(json!({ "name": name })),
        )
        .await;
    }
    let key = k
        .create(json!({"name": "reader", "scopes": ["chats:read"], "remaining": 100}))
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let fa = async |query: &str, headers: &[(&str, &str)]| {
        let mut req =
            k.s.http
                .get(k.s.url(&format!("/api/v1/forward-auth{query}")));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        answer(req.bearer_auth(&key).send().await.unwrap()).await
    };
    let (status, _) = fa("?scopes=chats:read", &[]).await;
    assert_eq!(status, 200);
    // Both sources are required when both are present: the query cannot loosen the header.
    let (status, b) = fa("?scopes=chats:read", &[("x-keyrail-scopes", "chats:write")]).await;
    assert_eq!(
        (status, &b["required"]),
        (403, &json!(["chats:write"])),
        "{b}"
    );
    // Empty or repeated values are refused, not read as "no scope needed".
    for (query, headers) in [
        ("?scopes=", vec![("x-keyrail-scopes", "chats:write")]),
        ("?scopes=chats:read&scopes=", vec![]),
        ("?scopes=chats:read,,x:y", vec![]),
        ("", vec![("x-keyrail-scopes", "")]),
        (
            "",
            vec![
                ("x-keyrail-scopes", "chats:read"),
                ("x-keyrail-scopes", "chats:write"),
            ],
        ),
    ] {
        let (status, b) = fa(query, &headers).await;
        assert_eq!(
            (status, b["code"].as_str()),
            (400, Some("invalid_request")),
            "{query} {headers:?}: {b}"
        );
    }

    // Bound to the workspace: a key of another workspace, whatever its scopes are called, is
    // an invalid credential. Anyone can sign up and name a scope `chats:read`.
    let eve = k.s.user("eve@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other) = k
        .call(
            "POST",
            "/api/v1/workspaces",
            &eve,
            Some(json!({"name": "Evil"})),
        )
        .await;
    let other = other["id"].as_str().unwrap().to_owned();
    k.call(
        "POST",
        &format!("/api/v1/w/{other}/scopes"),
        &eve,
        Some(json!({"name": "chats:read"})),
    )
    .await;
    let (_, evil) = k
        .call(
            "POST",
            &format!("/api/v1/w/{other}/keys"),
            &eve,
            Some(json!({"name": "evil", "scopes": ["chats:read"]})),
        )
        .await;
    let evil = evil["key"].as_str().unwrap();
    for bind in [
        format!("?scopes=chats:read&workspace_id={}", k.ws),
        "?scopes=chats:read".to_owned(),
    ] {
        let mut req =
            k.s.http
                .get(k.s.url(&format!("/api/v1/forward-auth{bind}")));
        if !bind.contains("workspace_id") {
            req = req.header("x-keyrail-workspace", &k.ws);
        }
        let (status, b) = answer(req.bearer_auth(evil).send().await.unwrap()).await;
        assert_eq!(
            (status, b["code"].as_str(), b["error"].as_str()),
            (401, Some("invalid_credentials"), Some("Invalid API key")),
            "{bind}"
        );
    }
    let (status, _) = fa(&format!("?scopes=chats:read&workspace_id={}", k.ws), &[]).await;
    assert_eq!(status, 200);
    let (status, _) = fa(
        &format!("?workspace_id={}", k.ws),
        &[("x-keyrail-workspace", other.as_str())],
    )
    .await;
    assert_eq!(status, 400, "two different workspaces");
    // Verify binds the same way: NOT_FOUND with nothing about the key.
    let v = k
        .verify(json!({"key": evil, "scopes": ["chats:read"], "workspace_id": k.ws}))
        .await;
    assert_eq!(
        (&v["code"], &v["key_id"], &v["workspace_id"]),
        (&json!("NOT_FOUND"), &json!(null), &json!(null))
    );
    let v = k
        .verify(json!({"key": key, "scopes": ["chats:read"], "workspace_id": k.ws}))
        .await;
    assert_eq!(v["code"], "VALID");
    // A person is bound the same way: the owner is no member of the other workspace.
    let resp =
        k.s.http
            .get(k.s.url(&format!("/api/v1/forward-auth?workspace_id={other}")))
            .bearer_auth(&k.owner)
            .send()
            .await
            .unwrap();
    assert_eq!(json(resp).await.1["code"], "invalid_credentials");
    // Refusals spent no credits: 100 - the three requests that passed.
    let v = k.verify(json!({"key": key, "cost": 0})).await;
    assert_eq!(v["remaining"], 97);
    k.s.stop().await;
}

/// Status and JSON body, `null` for an empty body (forward-auth's 200).
async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A key change and its audit entry commit together or not at all: when the audit entry cannot
/// be written, the change is not made either (and the caller hears 500, not a secret that was
/// never recorded).
#[tokio::test]
async fn a_key_change_whose_audit_entry_fails_is_not_made() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(k) = K::on(backend).await else {
            return;
        };
        key_changes_fail_with_their_audit(&k).await;
        k.s.stop().await;
    }
}

async fn key_changes_fail_with_their_audit(k: &K) {
    let keys = format!("/api/v1/w/{}/keys", k.ws);
    let listed = async || -> Vec<Value> {
        let (status, list) = k.call("GET", &keys, &k.owner, None).await;
        assert_eq!(status, 200, "{list}");
        list["data"].as_array().unwrap().clone()
    };
    let kept = k.create(json!({"name": "kept"})).await;
    let secret = kept["key"].as_str().unwrap().to_owned();
    let one = format!("{keys}/{}", kept["id"].as_str().unwrap());

    let refused = k.s.refuse_audit("key.create").await;
    let (status, b) = k
        .call("POST", &keys, &k.owner, Some(json!({"name": "lost"})))
        .await;
    assert_eq!(status, 500, "{b}");
    assert_eq!(listed().await.len(), 1, "no key without its audit entry");
    k.s.allow(&refused).await;

    let refused = k.s.refuse_audit("key.import").await;
    let imported = "sk_live_audit_0123456789abcdef";
    let (status, b) = k
        .call(
            "POST",
            &format!("{keys}/import"),
            &k.owner,
            Some(json!({"keys": [{"key": imported, "name": "imp"}]})),
        )
        .await;
    assert_eq!(status, 500, "{b}");
    assert_eq!(k.code(imported).await, "NOT_FOUND");
    assert_eq!(listed().await.len(), 1);
    k.s.allow(&refused).await;

    let refused = k.s.refuse_audit("key.update").await;
    let (status, b) = k
        .call(
            "PATCH",
            &one,
            &k.owner,
            Some(json!({"name": "renamed", "enabled": false})),
        )
        .await;
    assert_eq!(status, 500, "{b}");
    let (_, got) = k.call("GET", &one, &k.owner, None).await;
    assert_eq!(
        (&got["name"], &got["status"]),
        (&json!("kept"), &json!("active"))
    );
    assert_eq!(k.code(&secret).await, "VALID");
    k.s.allow(&refused).await;

    let refused = k.s.refuse_audit("key.revoke").await;
    let (status, b) = k
        .call("POST", &format!("{one}/revoke"), &k.owner, None)
        .await;
    assert_eq!(status, 500, "{b}");
    assert_eq!(k.code(&secret).await, "VALID");
    k.s.allow(&refused).await;

    let refused = k.s.refuse_audit("key.rotate").await;
    let (status, b) = k
        .call(
            "POST",
            &format!("{one}/rotate"),
            &k.owner,
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(status, 500, "{b}");
    assert_eq!(k.code(&secret).await, "VALID");
    let keys_now = listed().await;
    assert_eq!(keys_now.len(), 1, "no replacement: {keys_now:?}");
    assert_eq!(keys_now[0]["replaced_by"], Value::Null);
    k.s.allow(&refused).await;

    // With the audit log writable again, each of them works and is recorded.
    let (status, _) = k
        .call("PATCH", &one, &k.owner, Some(json!({"name": "renamed"})))
        .await;
    assert_eq!(status, 200);
    let (status, _) = k
        .call("POST", &format!("{one}/rotate"), &k.owner, Some(json!({})))
        .await;
    assert_eq!(status, 200);
    let (_, log) = k
        .call("GET", &format!("/api/v1/w/{}/audit", k.ws), &k.owner, None)
        .await;
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.rotate", "key.update", "key.create", "webhook.create"]
    );
    // A change that failed wrote no webhook event either: the refused revoke and rotation
    // left nothing in the outbox.
    let types: Vec<String> =
        k.s.outbox()
            .await
            .iter()
            .map(|e| e.split(' ').next().unwrap().to_owned())
            .collect();
    assert_eq!(types, ["key.created", "key.rotated"]);
}

/// PATCH writes only what the request names: a concurrent `enabled: false` and renames never
/// leave the key enabled, and a concurrent scope reduction is never undone by a rename.
#[tokio::test]
async fn concurrent_patches_of_one_key_lose_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(k) = K::on(backend).await else {
            return;
        };
        concurrent_patches(&k).await;
        k.s.stop().await;
    }
}

async fn concurrent_patches(k: &K) {
    let key = k
        .create(json!({"name": "k", "scopes": ["keys:read", "members:read"]}))
        .await;
    let path = format!("/api/v1/w/{}/keys/{}", k.ws, key["id"].as_str().unwrap());
    let patch = async |body: Value| {
        let (status, b) = k.call("PATCH", &path, &k.owner, Some(body)).await;
        assert_eq!(status, 200, "{b}");
    };
    for round in 0..25 {
        patch(json!({"enabled": true, "scopes": ["keys:read", "members:read"]})).await;
        tokio::join!(
            patch(json!({"name": format!("a{round}")})),
            patch(json!({"enabled": false})),
            patch(json!({"name": format!("b{round}")})),
            patch(json!({"scopes": ["keys:read"]})),
            patch(json!({"name": format!("c{round}")})),
        );
        let (_, got) = k.call("GET", &path, &k.owner, None).await;
        assert_eq!(
            (&got["status"], &got["scopes"]),
            (&json!("disabled"), &json!(["keys:read"])),
            "{:?} round {round}: {got}",
            k.s.pg.is_some()
        );
    }
}

/// Rotation moves the credits to the new key; during the grace period the old key spends from
/// the same counter, so the two together never get more than the key had.
#[tokio::test]
async fn rotation_moves_the_credits_and_the_old_key_shares_them() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(k) = K::on(backend).await else {
            return;
        };
        rotation_shares_credits(&k).await;
        k.s.stop().await;
    }
}

async fn rotation_shares_credits(k: &K) {
    let old = k.create(json!({"name": "metered", "remaining": 10})).await;
    let (status, new) = k
        .call(
            "POST",
            &format!(
                "/api/v1/w/{}/keys/{}/rotate",
                k.ws,
                old["id"].as_str().unwrap()
            ),
            &k.owner,
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(new["remaining"], 10, "the credits moved: {new}");
    let mut tasks = Vec::new();
    for secret in [&old["key"], &new["key"]] {
        for _ in 0..6 {
            let http = k.s.http.clone();
            let url = k.s.url("/api/v1/keys/verify");
            let body = json!({ "key": secret });
            tasks.push(tokio::spawn(async move {
                let v: Value = http
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["code"].as_str().unwrap().to_owned()
            }));
        }
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let valid = codes.iter().filter(|c| *c == "VALID").count();
    let exceeded = codes.iter().filter(|c| *c == "USAGE_EXCEEDED").count();
    assert_eq!((valid, exceeded), (10, 2), "{codes:?}");
    let remaining = async |key: &Value| {
        let (_, got) = k
            .call(
                "GET",
                &format!("/api/v1/w/{}/keys/{}", k.ws, key["id"].as_str().unwrap()),
                &k.owner,
                None,
            )
            .await;
        got["remaining"].clone()
    };
    assert_eq!(remaining(&new).await, 0);
    assert_eq!(
        remaining(&old).await,
        0,
        "the old key shows no credits of its own"
    );
}
