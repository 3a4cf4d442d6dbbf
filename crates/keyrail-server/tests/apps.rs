//! Black-box tests of apps (OAuth-style integrations): builder profiles, apps, member grants,
//! the two-layer tokens an app gets for a grant, and everything that must stop those tokens at
//! once (expiry, revocation, secret rotation, deactivation, deletion, workspace restriction,
//! demotion, removal), written against API.md "Apps" and the decisions in apps-spec.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, PASSWORD, TestServer, b64, json, open_jwe};
use keyrail_core::Clock;
use serde_json::{Value, json};

/// An app as its builder holds it.
#[derive(Clone)]
struct App {
    client_id: String,
    secret: String,
}

impl App {
    /// The 16 bytes the secret stands for: the key of the outer JWE.
    fn key(&self) -> Vec<u8> {
        secret_bytes(&self.secret)
    }
}

fn secret_bytes(secret: &str) -> Vec<u8> {
    let bytes = URL_SAFE_NO_PAD
        .decode(secret)
        .unwrap_or_else(|e| panic!("client_secret {secret:?} is not base64url: {e}"));
    assert_eq!(bytes.len(), 16, "client_secret {secret:?}");
    bytes
}

/// The protected header of a compact JWE.
fn jwe_header(compact: &str) -> Value {
    let first = compact.split('.').next().unwrap();
    serde_json::from_slice(&b64(first)).unwrap()
}

/// What the tokens endpoint gave, opened as an app would open it.
struct Minted {
    payload: Value,
    api_token: String,
}

/// Status and `code` of an answer (`""` when there is none), for short assertions.
fn sc(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["code"].as_str().unwrap_or(""))
}

fn required(b: &Value) -> Vec<String> {
    b["required"]
        .as_array()
        .unwrap_or_else(|| panic!("no required in {b}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

struct T {
    s: TestServer,
    /// The owner's access token.
    owner: String,
    /// A workspace the owner made.
    ws: String,
}

impl T {
    async fn new() -> Self {
        Self::on(Backend::Sqlite).await.unwrap()
    }

    async fn on(backend: Backend) -> Option<Self> {
        // Many tests here present dead tokens on purpose: keep the IP block out of the way.
        let s = TestServer::start_full(
            backend,
            |c| {
                c.limits.failed_auth_per_ip = "1000000/1m".parse().unwrap();
                // Tests of events subscribe an endpoint that refuses connections.
                c.webhooks_allow_private = true;
            },
            None,
        )
        .await?;
        let owner = s.user("owner@example.com").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut t = Self {
            s,
            owner,
            ws: String::new(),
        };
        let ws = t.workspace(&t.owner, "Acme").await;
        t.ws = ws;
        Some(t)
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

    /// `W` of the test's workspace followed by `rest`.
    fn w(&self, rest: &str) -> String {
        format!("/api/v1/w/{}{rest}", self.ws)
    }

    /// Signs a person up and logs them in: their access token.
    async fn person(&self, email: &str) -> String {
        self.s.user(email).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn workspace(&self, token: &str, name: &str) -> String {
        let (status, ws) = self
            .call(
                "POST",
                "/api/v1/workspaces",
                token,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{ws}");
        ws["id"].as_str().unwrap().to_owned()
    }

    /// A new person added to the test's workspace with `role`: (member id, access token).
    async fn member(&self, email: &str, role: &str) -> (String, String) {
        let token = self.person(email).await;
        let (status, m) = self
            .call(
                "POST",
                &self.w("/members"),
                &self.owner,
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{m}");
        (m["id"].as_str().unwrap().to_owned(), token)
    }

    /// The owner's member id in the test's workspace.
    async fn owner_member_id(&self) -> String {
        let (status, members) = self
            .call("GET", &self.w("/members"), &self.owner, None)
            .await;
        assert_eq!(status, 200, "{members}");
        members["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == "owner@example.com")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn profile(&self, token: &str) -> String {
        let (status, p) = self
            .call(
                "POST",
                "/api/v1/builder-profiles",
                token,
                Some(json!({"name": "Builder Co", "website": "https://builder.example.com"})),
            )
            .await;
        assert_eq!(status, 201, "{p}");
        p["id"].as_str().unwrap().to_owned()
    }

    /// A new app of the person behind `token` (with a new builder profile).
    async fn app(&self, token: &str, restrictions: Value) -> App {
        let profile = self.profile(token).await;
        let (status, a) = self
            .call(
                "POST",
                "/api/v1/apps",
                token,
                Some(json!({
                    "name": "Acme Sync",
                    "description": "Syncs things",
                    "builder_profile_id": profile,
                    "workspace_restrictions": restrictions,
                })),
            )
            .await;
        assert_eq!(status, 201, "{a}");
        App {
            client_id: a["client_id"].as_str().unwrap().to_owned(),
            secret: a["client_secret"].as_str().unwrap().to_owned(),
        }
    }

    async fn grant(
        &self,
        token: &str,
        ws: &str,
        client_id: &str,
        scopes: &[&str],
        shared: bool,
    ) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/w/{ws}/grants"),
            token,
            Some(json!({"client_id": client_id, "scopes": scopes, "shared": shared})),
        )
        .await
    }

    /// A personal grant in the test's workspace that must succeed: its id.
    async fn grant_ok(&self, token: &str, app: &App, scopes: &[&str]) -> String {
        let (status, g) = self
            .grant(token, &self.ws, &app.client_id, scopes, false)
            .await;
        assert_eq!(status, 201, "{g}");
        g["id"].as_str().unwrap().to_owned()
    }

    /// `POST /apps/{path_id}/tokens` with Basic `user:pass`.
    async fn mint_as(&self, path_id: &str, user: &str, pass: &str, grant_id: &str) -> (u16, Value) {
        json(
            self.s
                .http
                .post(self.s.url(&format!("/api/v1/apps/{path_id}/tokens")))
                .basic_auth(user, Some(pass))
                .json(&json!({"grant_id": grant_id}))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn mint(&self, app: &App, grant_id: &str) -> (u16, Value) {
        self.mint_as(&app.client_id, &app.client_id, &app.secret, grant_id)
            .await
    }

    /// A token that must be issued, opened with the app's secret.
    async fn token(&self, app: &App, grant_id: &str) -> Minted {
        let (status, b) = self.mint(app, grant_id).await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["expires_in"], 300, "{b}");
        let token = b["token"].as_str().unwrap();
        let (client_id, jwe) = token
            .split_once(':')
            .unwrap_or_else(|| panic!("token is <client_id>:<JWE>: {token}"));
        assert_eq!(client_id, app.client_id);
        let (header, payload) = open_jwe(jwe, &app.key()).expect("opens with the app's secret");
        assert_eq!(header["alg"], "dir", "{header}");
        assert_eq!(header["enc"], "A128GCM", "{header}");
        assert_eq!(payload["grant_id"], grant_id, "{payload}");
        Minted {
            api_token: payload["api_token"].as_str().unwrap().to_owned(),
            payload,
        }
    }

    /// `GET W` with an app's api token must fail as a dead token.
    async fn assert_dead(&self, api_token: &str, why: &str) {
        let resp = self
            .s
            .http
            .get(self.s.url(&self.w("")))
            .bearer_auth(api_token)
            .send()
            .await
            .unwrap();
        let www = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, b) = json(resp).await;
        assert_eq!(
            (status, b["code"].as_str(), b["error"].as_str()),
            (401, Some("invalid_token"), Some("Invalid or expired token")),
            "{why}: {b}"
        );
        let www = www.unwrap_or_else(|| panic!("{why}: a 401 carries WWW-Authenticate"));
        assert!(www.starts_with("Bearer"), "{why}: {www}");
    }

    /// `GET W` with an app's api token must work.
    async fn assert_live(&self, api_token: &str, why: &str) {
        let (status, b) = self.call("GET", &self.w(""), api_token, None).await;
        assert_eq!(status, 200, "{why}: {b}");
        assert_eq!(b["id"], self.ws.as_str(), "{why}");
    }

    async fn grants(&self, token: &str, query: &str) -> Vec<Value> {
        let (status, list) = self
            .call("GET", &self.w(&format!("/grants{query}")), token, None)
            .await;
        assert_eq!(status, 200, "{list}");
        assert!(list.get("next_cursor").is_some(), "{list}");
        list["data"].as_array().unwrap().clone()
    }

    async fn superuser(&self) -> String {
        let root = self.s.user("root@example.com").await;
        let store = &self.s.server.as_ref().unwrap().state.store;
        let id = keyrail_core::id::UserId::parse(root["user"]["id"].as_str().unwrap()).unwrap();
        store
            .set_superuser(&id, true, keyrail_core::Timestamp::now())
            .await
            .unwrap();
        root["access_token"].as_str().unwrap().to_owned()
    }

    /// An API key of the test's workspace with `scopes`.
    async fn api_key(&self, scopes: &[&str]) -> String {
        let (status, k) = self
            .call(
                "POST",
                &self.w("/keys"),
                &self.owner,
                Some(json!({"name": "a key", "scopes": scopes})),
            )
            .await;
        assert_eq!(status, 201, "{k}");
        k["key"].as_str().unwrap().to_owned()
    }

    fn now_unix(&self) -> i64 {
        self.s.clock.now().millis() / 1000
    }
}

fn is_client_id(id: &str) -> bool {
    id.strip_prefix("kr_app_").is_some_and(|rest| {
        rest.len() == 24
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn is_secret(secret: &str) -> bool {
    secret.len() == 22
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD
            .decode(secret)
            .is_ok_and(|bytes| bytes.len() == 16)
}

#[tokio::test]
async fn builder_profiles_belong_to_their_person() {
    let t = T::new().await;
    let (status, p) = t
        .call(
            "POST",
            "/api/v1/builder-profiles",
            &t.owner,
            Some(json!({"name": "Builder Co", "website": "https://builder.example.com"})),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert!(p["id"].as_str().unwrap().starts_with("bld_"), "{p}");
    assert_eq!(p["name"], "Builder Co");
    assert_eq!(p["website"], "https://builder.example.com");
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'), "{p}");
    let (status, bare) = t
        .call(
            "POST",
            "/api/v1/builder-profiles",
            &t.owner,
            Some(json!({"name": "No site"})),
        )
        .await;
    assert_eq!(status, 201, "website is optional: {bare}");
    assert_eq!(bare["website"], Value::Null);
    let (status, _) = t
        .call(
            "POST",
            "/api/v1/builder-profiles",
            &t.owner,
            Some(json!({"name": "Null site", "website": null})),
        )
        .await;
    assert_eq!(status, 201);

    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (
            json!({"name": "a", "website": "javascript:alert(1)"}),
            "website",
        ),
        (
            json!({"name": "a", "website": "ftp://builder.example.com"}),
            "website",
        ),
    ] {
        let (status, b) = t
            .call(
                "POST",
                "/api/v1/builder-profiles",
                &t.owner,
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            sc(&(status, b.clone())),
            (400, "invalid_request"),
            "{body}: {b}"
        );
        assert!(b["error"].as_str().unwrap().contains(field), "{body}: {b}");
    }
    let (status, _) = t
        .call(
            "POST",
            "/api/v1/builder-profiles",
            &t.owner,
            Some(json!({"name": "a", "verified": true})),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");

    let (status, list) = t
        .call("GET", "/api/v1/builder-profiles", &t.owner, None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 3, "{list}");
    assert!(list.get("next_cursor").is_some(), "{list}");
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == p["id"])
    );
    let other = t.person("other@example.com").await;
    let (status, theirs) = t
        .call("GET", "/api/v1/builder-profiles", &other, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(theirs["data"], json!([]), "only the caller's own");

    let key = t.api_key(&["workspace:read"]).await;
    let r = t.call("GET", "/api/v1/builder-profiles", &key, None).await;
    assert_eq!(sc(&r), (403, "forbidden"), "{}", r.1);
    let r = t
        .call(
            "POST",
            "/api/v1/builder-profiles",
            &key,
            Some(json!({"name": "by key"})),
        )
        .await;
    assert_eq!(sc(&r), (403, "forbidden"), "{}", r.1);
    t.s.stop().await;
}

#[tokio::test]
async fn apps_are_created_listed_updated_and_private_to_their_owner() {
    let t = T::new().await;
    let profile = t.profile(&t.owner).await;
    let (status, a) = t
        .call(
            "POST",
            "/api/v1/apps",
            &t.owner,
            Some(json!({"name": "Acme Sync", "builder_profile_id": profile, "workspace_restrictions": null})),
        )
        .await;
    assert_eq!(status, 201, "{a}");
    let client_id = a["client_id"].as_str().unwrap().to_owned();
    let secret = a["client_secret"].as_str().unwrap().to_owned();
    assert!(is_client_id(&client_id), "{client_id}");
    assert!(is_secret(&secret), "{secret}");
    assert_eq!(a["name"], "Acme Sync");
    assert_eq!(a["description"], "", "description defaults to empty");
    assert_eq!(a["builder_profile_id"], profile.as_str());
    assert_eq!(a["workspace_restrictions"], Value::Null);
    assert_eq!(a["active"], true);
    assert!(a["created_at"].as_str().unwrap().ends_with('Z'), "{a}");
    assert!(a["updated_at"].as_str().unwrap().ends_with('Z'), "{a}");
    // A second app gets its own id and secret.
    let b = t.app(&t.owner, Value::Null).await;
    assert_ne!(b.client_id, client_id);
    assert_ne!(b.secret, secret);

    let path = format!("/api/v1/apps/{client_id}");
    let (status, got) = t.call("GET", &path, &t.owner, None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["client_id"], client_id.as_str());
    assert!(
        got.get("client_secret").is_none(),
        "never shown again: {got}"
    );
    assert!(!got.to_string().contains(&secret));
    let (status, list) = t.call("GET", "/api/v1/apps", &t.owner, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert!(list.get("next_cursor").is_some(), "{list}");
    assert!(!list.to_string().contains(&secret) && !list.to_string().contains(&b.secret));
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.get("client_secret").is_none())
    );

    let (status, upd) = t
        .call(
            "PATCH",
            &path,
            &t.owner,
            Some(json!({"name": "Acme Sync 2", "description": "Now with more sync"})),
        )
        .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(upd["name"], "Acme Sync 2");
    assert_eq!(upd["description"], "Now with more sync");
    assert_eq!(upd["active"], true);
    assert!(upd.get("client_secret").is_none(), "{upd}");
    let (_, got) = t.call("GET", &path, &t.owner, None).await;
    assert_eq!(got["name"], "Acme Sync 2");
    let (status, _) = t
        .call(
            "PATCH",
            &path,
            &t.owner,
            Some(json!({"client_secret": "mine"})),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, _) = t
        .call("PATCH", &path, &t.owner, Some(json!({"name": ""})))
        .await;
    assert_eq!(status, 400);

    // Someone else's app does not exist for another person, whatever they try.
    let other = t.person("other@example.com").await;
    for (method, p, body) in [
        ("GET", path.clone(), None),
        ("PATCH", path.clone(), Some(json!({"name": "mine now"}))),
        ("DELETE", path.clone(), None),
        ("POST", format!("{path}/secret"), None),
    ] {
        let r = t.call(method, &p, &other, body).await;
        assert_eq!(sc(&r), (404, "not_found"), "{method} {p}: {}", r.1);
    }
    let (_, theirs) = t.call("GET", "/api/v1/apps", &other, None).await;
    assert_eq!(theirs["data"], json!([]));
    let (_, got) = t.call("GET", &path, &t.owner, None).await;
    assert_eq!(got["name"], "Acme Sync 2", "untouched by the other person");
    // A superuser sees every app.
    let root = t.superuser().await;
    let (status, _) = t.call("GET", &path, &root, None).await;
    assert_eq!(status, 200);

    let (status, _) = t.call("DELETE", &path, &t.owner, None).await;
    assert_eq!(status, 204);
    let r = t.call("GET", &path, &t.owner, None).await;
    assert_eq!(sc(&r), (404, "not_found"));
    t.s.stop().await;
}

#[tokio::test]
async fn app_creation_is_validated() {
    let t = T::new().await;
    let mine = t.profile(&t.owner).await;
    let other = t.person("other@example.com").await;
    let theirs = t.profile(&other).await;
    let cases = [
        (
            json!({"name": "a", "builder_profile_id": theirs}),
            "builder_profile_id",
        ),
        (
            json!({"name": "a", "builder_profile_id": "bld_doesnotexist"}),
            "builder_profile_id",
        ),
        (json!({"name": "", "builder_profile_id": mine}), "name"),
        (
            json!({"name": "x".repeat(101), "builder_profile_id": mine}),
            "name",
        ),
        (
            json!({"name": "a", "description": "d".repeat(1001), "builder_profile_id": mine}),
            "description",
        ),
        (
            json!({"name": "a", "builder_profile_id": mine, "workspace_restrictions": []}),
            "workspace_restrictions",
        ),
        (
            json!({"name": "a", "builder_profile_id": mine, "workspace_restrictions": ["not-a-workspace"]}),
            "workspace_restrictions",
        ),
    ];
    for (body, field) in cases {
        let (status, b) = t
            .call("POST", "/api/v1/apps", &t.owner, Some(body.clone()))
            .await;
        assert_eq!(
            (status, b["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}: {b}"
        );
        assert!(
            b["error"].as_str().unwrap().contains(field),
            "the message names {field}: {b}"
        );
    }
    let (status, _) = t
        .call(
            "POST",
            "/api/v1/apps",
            &t.owner,
            Some(json!({"name": "a", "builder_profile_id": mine, "active": false})),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, a) = t
        .call(
            "POST",
            "/api/v1/apps",
            &t.owner,
            Some(json!({"name": "a", "description": "d".repeat(1000), "builder_profile_id": mine, "workspace_restrictions": [t.ws]})),
        )
        .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["workspace_restrictions"], json!([t.ws]));
    let (_, list) = t.call("GET", "/api/v1/apps", &t.owner, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    t.s.stop().await;
}

#[tokio::test]
async fn api_keys_and_app_tokens_cannot_manage_apps_or_grant() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let key = t
        .api_key(&[
            "apps:read",
            "apps:write",
            "workspace:read",
            "workspace:write",
        ])
        .await;
    let grant = t
        .grant_ok(&t.owner, &app, &["workspace:read", "apps:write"])
        .await;
    let app_token = t.token(&app, &grant).await.api_token;
    let p = format!("/api/v1/apps/{}", app.client_id);
    for (who, cred) in [("API key", &key), ("app token", &app_token)] {
        for (method, path, body) in [
            ("GET", "/api/v1/builder-profiles".to_owned(), None),
            (
                "POST",
                "/api/v1/builder-profiles".to_owned(),
                Some(json!({"name": "x"})),
            ),
            ("GET", "/api/v1/apps".to_owned(), None),
            (
                "POST",
                "/api/v1/apps".to_owned(),
                Some(json!({"name": "x", "builder_profile_id": "bld_x"})),
            ),
            ("GET", p.clone(), None),
            ("PATCH", p.clone(), Some(json!({"name": "x"}))),
            ("POST", format!("{p}/secret"), None),
            ("DELETE", p.clone(), None),
            (
                "POST",
                t.w("/grants"),
                Some(json!({"client_id": app.client_id, "scopes": ["workspace:read"]})),
            ),
            (
                "POST",
                t.w("/grants"),
                Some(
                    json!({"client_id": app.client_id, "scopes": ["workspace:read"], "shared": true}),
                ),
            ),
        ] {
            let r = t.call(method, &path, cred, body).await;
            assert_eq!(
                sc(&r),
                (403, "forbidden"),
                "{who}: {method} {path}: {}",
                r.1
            );
        }
    }
    // Nothing changed: the app, its secret and the token still work.
    let (_, got) = t.call("GET", &p, &t.owner, None).await;
    assert_eq!(got["name"], "Acme Sync");
    t.assert_live(&app_token, "nothing was rotated or deleted")
        .await;
    assert_eq!(t.grants(&t.owner, "").await.len(), 1);
    t.s.stop().await;
}

#[tokio::test]
async fn a_token_round_trip_acts_as_the_member_within_the_grant() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let me = t.owner_member_id().await;
    let (status, g) = t
        .grant(&t.owner, &t.ws, &app.client_id, &["workspace:read"], false)
        .await;
    assert_eq!(status, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    assert!(gid.starts_with("grt_"), "{g}");
    assert_eq!(g["client_id"], app.client_id.as_str());
    assert_eq!(g["app_name"], "Acme Sync");
    assert_eq!(g["member_id"], me.as_str());
    assert_eq!(g["workspace_id"], t.ws.as_str());
    assert_eq!(g["scopes"], json!(["workspace:read"]));
    assert_eq!(g["shared"], false, "personal by default");
    assert!(g["created_at"].as_str().unwrap().ends_with('Z'), "{g}");
    let listed = t.grants(&t.owner, "").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], gid.as_str());

    let (status, b) = t.mint(&app, &gid).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["expires_in"], 300);
    let token = b["token"].as_str().unwrap();
    let prefix = format!("{}:", app.client_id);
    assert!(token.starts_with(&prefix), "{token}");
    let jwe = &token[prefix.len()..];
    let (header, payload) = open_jwe(jwe, &app.key()).expect("opens with the 16 secret bytes");
    assert_eq!(header["alg"], "dir", "{header}");
    assert_eq!(header["enc"], "A128GCM", "{header}");
    assert!(open_jwe(jwe, &[7u8; 16]).is_none(), "no other key opens it");
    assert_eq!(payload["grant_id"], gid.as_str(), "{payload}");
    assert_eq!(payload["workspace_id"], t.ws.as_str(), "{payload}");
    assert_eq!(payload["member_id"], me.as_str(), "{payload}");
    assert_eq!(payload["scopes"], json!(["workspace:read"]), "{payload}");
    let exp = payload["exp"].as_i64().expect("exp is Unix seconds");
    let expected = t.now_unix() + 300;
    assert!(
        (expected - 3..=expected + 3).contains(&exp),
        "exp {exp} should be about {expected} (server clock + 300 s)"
    );
    let api_token = payload["api_token"].as_str().unwrap().to_owned();
    assert_eq!(
        api_token.split('.').count(),
        5,
        "a compact JWE: {api_token}"
    );
    let inner = jwe_header(&api_token);
    assert_eq!(inner["alg"], "dir", "{inner}");
    assert_eq!(inner["enc"], "A256GCM", "{inner}");
    assert!(inner["kid"].is_string(), "{inner}");
    assert!(
        !api_token.contains(&app.secret) && !token.contains(&app.secret),
        "the secret never travels"
    );

    // Acting as the member, within the grant's scopes.
    t.assert_live(&api_token, "workspace:read was granted")
        .await;
    let (status, b) = t.call("GET", &t.w("/keys"), &api_token, None).await;
    assert_eq!(
        (status, b["code"].as_str(), b["error"].as_str()),
        (403, Some("insufficient_scope"), Some("Insufficient scope")),
        "the owner holds keys:read, the grant does not: {b}"
    );
    assert_eq!(required(&b), ["keys:read"]);
    let r = t.call("GET", "/api/v1/profile", &api_token, None).await;
    assert_eq!(sc(&r), (403, "forbidden"), "profile is for people: {}", r.1);
    let r = t
        .call(
            "PATCH",
            "/api/v1/profile",
            &api_token,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(sc(&r), (403, "forbidden"), "{}", r.1);
    let r = t
        .call("GET", "/api/v1/profile/sessions", &api_token, None)
        .await;
    assert_eq!(sc(&r), (403, "forbidden"), "{}", r.1);
    // Another workspace of the same person is invisible to the token.
    let other = t.workspace(&t.owner, "Other").await;
    let r = t
        .call("GET", &format!("/api/v1/w/{other}"), &api_token, None)
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    let (status, _) = t
        .call("GET", &format!("/api/v1/w/{other}"), &t.owner, None)
        .await;
    assert_eq!(status, 200, "while the owner sees it");

    // The outer token is for the app, not for the API; a tampered inner token is dead.
    let (status, _) = t.call("GET", &t.w(""), token, None).await;
    assert_eq!(status, 401, "the outer token is not a credential");
    let mut parts: Vec<String> = api_token.split('.').map(str::to_owned).collect();
    let ct = &mut parts[3];
    let mid = ct.len() / 2;
    let flipped = if &ct[mid..mid + 1] == "A" { "B" } else { "A" };
    ct.replace_range(mid..mid + 1, flipped);
    t.assert_dead(&parts.join("."), "a tampered token").await;
    t.assert_live(&api_token, "the real one still works").await;
    t.s.stop().await;
}

#[tokio::test]
async fn tokens_expire_after_five_minutes_of_server_time() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let minted = t.token(&app, &gid).await;
    t.s.clock.advance_secs(290);
    t.assert_live(&minted.api_token, "290 s in").await;
    t.s.clock.advance_secs(11);
    t.assert_dead(&minted.api_token, "301 s in").await;
    // The grant is still there: a new token works.
    let fresh = t.token(&app, &gid).await;
    assert!(fresh.payload["exp"].as_i64().unwrap() > minted.payload["exp"].as_i64().unwrap());
    t.assert_live(&fresh.api_token, "a token minted after the move")
        .await;
    t.s.stop().await;
}

#[tokio::test]
async fn revoking_a_grant_stops_its_tokens_at_once() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let minted = t.token(&app, &gid).await;
    t.assert_live(&minted.api_token, "before revocation").await;
    let (status, b) = t
        .call("DELETE", &t.w(&format!("/grants/{gid}")), &t.owner, None)
        .await;
    assert_eq!(status, 204, "{b}");
    t.assert_dead(&minted.api_token, "after revocation").await;
    let r = t.mint(&app, &gid).await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    assert_eq!(t.grants(&t.owner, "").await, Vec::<Value>::new());
    let r = t
        .call("DELETE", &t.w(&format!("/grants/{gid}")), &t.owner, None)
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "revoking twice: {}", r.1);
    // The member may grant the app again; the new grant is a new id.
    let again = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    assert_ne!(again, gid);
    t.assert_live(&t.token(&app, &again).await.api_token, "the new grant")
        .await;
    t.s.stop().await;
}

#[tokio::test]
async fn rotating_the_secret_kills_the_old_secret_and_its_tokens() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let old = t.token(&app, &gid).await;
    let (status, b) = t
        .call(
            "POST",
            &format!("/api/v1/apps/{}/secret", app.client_id),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["client_id"], app.client_id.as_str());
    let new_secret = b["client_secret"].as_str().unwrap().to_owned();
    assert!(is_secret(&new_secret), "{new_secret}");
    assert_ne!(new_secret, app.secret);

    t.assert_dead(&old.api_token, "a token made with the old secret")
        .await;
    let (status, b) = t.mint(&app, &gid).await;
    assert_eq!(
        (status, b["code"].as_str(), b["error"].as_str()),
        (
            401,
            Some("invalid_client"),
            Some("Invalid client credentials")
        ),
        "the old secret: {b}"
    );
    let rotated = App {
        client_id: app.client_id.clone(),
        secret: new_secret.clone(),
    };
    let (status, b) = t.mint(&rotated, &gid).await;
    assert_eq!(status, 200, "{b}");
    let jwe = b["token"].as_str().unwrap().split_once(':').unwrap().1;
    assert!(
        open_jwe(jwe, &app.key()).is_none(),
        "the old secret does not open new tokens"
    );
    let fresh = t.token(&rotated, &gid).await;
    t.assert_live(&fresh.api_token, "a token of the new secret")
        .await;
    let (_, got) = t
        .call(
            "GET",
            &format!("/api/v1/apps/{}", app.client_id),
            &t.owner,
            None,
        )
        .await;
    assert!(
        got.get("client_secret").is_none() && !got.to_string().contains(&new_secret),
        "{got}"
    );
    t.s.stop().await;
}

#[tokio::test]
async fn a_deactivated_app_gets_nothing_until_reactivated() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let minted = t.token(&app, &gid).await;
    let path = format!("/api/v1/apps/{}", app.client_id);
    let (status, b) = t
        .call("PATCH", &path, &t.owner, Some(json!({"active": false})))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["active"], false);

    t.assert_dead(&minted.api_token, "the app is inactive")
        .await;
    let (status, b) = t.mint(&app, &gid).await;
    assert_eq!(
        (status, b["code"].as_str(), b["error"].as_str()),
        (403, Some("app_inactive"), Some("App is inactive")),
        "{b}"
    );
    // A grant in a workspace where the owner holds none yet.
    let other = t.workspace(&t.owner, "Other").await;
    let (status, b) = t
        .grant(&t.owner, &other, &app.client_id, &["workspace:read"], false)
        .await;
    assert_eq!(
        (status, b["code"].as_str(), b["error"].as_str()),
        (403, Some("app_inactive"), Some("App is inactive")),
        "{b}"
    );

    let (status, b) = t
        .call("PATCH", &path, &t.owner, Some(json!({"active": true})))
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["active"], true);
    let fresh = t.token(&app, &gid).await;
    t.assert_live(&fresh.api_token, "reactivated").await;
    let (status, b) = t
        .grant(&t.owner, &other, &app.client_id, &["workspace:read"], false)
        .await;
    assert_eq!(status, 201, "{b}");
    t.s.stop().await;
}

#[tokio::test]
async fn deleting_an_app_deletes_its_grants_and_kills_its_tokens() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let keep = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let kept = t.grant_ok(&t.owner, &keep, &["workspace:read"]).await;
    let (_, dev) = t.member("dev@example.com", "developer").await;
    t.grant_ok(&dev, &app, &["workspace:read"]).await;
    let minted = t.token(&app, &gid).await;
    let kept_token = t.token(&keep, &kept).await;
    assert_eq!(t.grants(&t.owner, "").await.len(), 3);

    let (status, _) = t
        .call(
            "DELETE",
            &format!("/api/v1/apps/{}", app.client_id),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 204);
    t.assert_dead(&minted.api_token, "the app is deleted").await;
    let left = t.grants(&t.owner, "").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], kept.as_str());
    let r = t.mint(&app, &gid).await;
    assert_eq!(sc(&r), (401, "invalid_client"), "{}", r.1);
    let r = t
        .grant(&t.owner, &t.ws, &app.client_id, &["workspace:read"], false)
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    let r = t
        .call(
            "GET",
            &format!("/api/v1/apps/{}", app.client_id),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(sc(&r), (404, "not_found"));
    t.assert_live(&kept_token.api_token, "another app is untouched")
        .await;
    t.s.stop().await;
}

#[tokio::test]
async fn workspace_restrictions_bound_grants_and_tokens() {
    let t = T::new().await;
    let other = t.workspace(&t.owner, "Other").await;
    // Restricted from the start: no grant outside its workspaces.
    let elsewhere = t.app(&t.owner, json!([other])).await;
    let r = t
        .grant(
            &t.owner,
            &t.ws,
            &elsewhere.client_id,
            &["workspace:read"],
            false,
        )
        .await;
    assert_eq!(sc(&r), (403, "workspace_restricted"), "{}", r.1);
    let r = t
        .grant(
            &t.owner,
            &other,
            &elsewhere.client_id,
            &["workspace:read"],
            false,
        )
        .await;
    assert_eq!(r.0, 201, "inside its restriction: {}", r.1);

    // Restricted after the grant: the grant stays but yields nothing.
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let minted = t.token(&app, &gid).await;
    let path = format!("/api/v1/apps/{}", app.client_id);
    let (status, b) = t
        .call(
            "PATCH",
            &path,
            &t.owner,
            Some(json!({"workspace_restrictions": [other]})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["workspace_restrictions"], json!([other]));
    let r = t.mint(&app, &gid).await;
    assert_eq!(sc(&r), (403, "workspace_restricted"), "{}", r.1);
    t.assert_dead(&minted.api_token, "its workspace is no longer allowed")
        .await;

    let (status, b) = t
        .call(
            "PATCH",
            &path,
            &t.owner,
            Some(json!({"workspace_restrictions": [other, t.ws]})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let back = t.token(&app, &gid).await;
    t.assert_live(&back.api_token, "allowed again").await;
    let (status, b) = t
        .call(
            "PATCH",
            &path,
            &t.owner,
            Some(json!({"workspace_restrictions": null})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["workspace_restrictions"], Value::Null);
    t.assert_live(&t.token(&app, &gid).await.api_token, "unrestricted")
        .await;
    let (status, _) = t
        .call(
            "PATCH",
            &path,
            &t.owner,
            Some(json!({"workspace_restrictions": []})),
        )
        .await;
    assert_eq!(
        status, 400,
        "an empty list is refused (null means no restriction)"
    );
    t.s.stop().await;
}

#[tokio::test]
async fn shared_grants_need_manage_rights_and_are_one_per_workspace() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let (_, dev) = t.member("dev@example.com", "developer").await;
    let (_, mem) = t.member("mem@example.com", "member").await;
    let (admin_id, admin) = t.member("admin@example.com", "admin").await;

    let (status, b) = t
        .grant(&dev, &t.ws, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );
    assert_eq!(
        required(&b),
        ["workspace:write"],
        "a developer holds apps:write but not workspace:write"
    );
    let (status, b) = t
        .grant(&mem, &t.ws, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );
    let mut req = required(&b);
    req.sort();
    assert_eq!(req, ["apps:write", "workspace:write"]);

    let (status, shared) = t
        .grant(&t.owner, &t.ws, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(status, 201, "{shared}");
    assert_eq!(shared["shared"], true);
    let shared_id = shared["id"].as_str().unwrap().to_owned();
    let r = t
        .grant(&t.owner, &t.ws, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(sc(&r), (409, "grant_exists"), "{}", r.1);
    let r = t
        .grant(&admin, &t.ws, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(
        sc(&r),
        (409, "grant_exists"),
        "one shared grant per app per workspace, whoever asks: {}",
        r.1
    );
    // Personal grants: one per member per app.
    let dev_grant = t.grant_ok(&dev, &app, &["workspace:read"]).await;
    let r = t
        .grant(&dev, &t.ws, &app.client_id, &["workspace:read"], false)
        .await;
    assert_eq!(sc(&r), (409, "grant_exists"), "{}", r.1);
    let r = t
        .grant(&dev, &t.ws, &app.client_id, &["keys:read"], false)
        .await;
    assert_eq!(
        sc(&r),
        (409, "grant_exists"),
        "other scopes do not make another grant: {}",
        r.1
    );
    assert_ne!(dev_grant, shared_id);
    t.assert_live(
        &t.token(&app, &shared_id).await.api_token,
        "a shared grant's token",
    )
    .await;

    // Revoking a shared grant needs what making one needs; those who cannot see it get 404.
    let r = t
        .call("DELETE", &t.w(&format!("/grants/{shared_id}")), &dev, None)
        .await;
    assert_eq!(sc(&r), (403, "insufficient_scope"), "{}", r.1);
    assert_eq!(required(&r.1), ["workspace:write"]);
    let r = t
        .call("DELETE", &t.w(&format!("/grants/{shared_id}")), &mem, None)
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    let (status, _) = t
        .call(
            "DELETE",
            &t.w(&format!("/grants/{shared_id}")),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Removing a member removes their grants, shared ones included.
    let (status, by_admin) = t
        .grant(&admin, &t.ws, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(status, 201, "{by_admin}");
    let by_admin_id = by_admin["id"].as_str().unwrap().to_owned();
    let admin_token = t.token(&app, &by_admin_id).await;
    let (status, _) = t
        .call(
            "DELETE",
            &t.w(&format!("/members/{admin_id}")),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        t.grants(&t.owner, "")
            .await
            .iter()
            .all(|g| g["id"] != by_admin_id.as_str())
    );
    t.assert_dead(&admin_token.api_token, "the granting member left")
        .await;
    let r = t.mint(&app, &by_admin_id).await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    t.s.stop().await;
}

#[tokio::test]
async fn grants_are_capped_by_the_members_scopes_now_and_later() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let (_, mem) = t.member("mem@example.com", "member").await;
    let (dev_id, dev) = t.member("dev@example.com", "developer").await;

    let (status, b) = t
        .grant(&mem, &t.ws, &app.client_id, &["keys:read"], false)
        .await;
    assert_eq!(
        (status, b["code"].as_str(), b["error"].as_str()),
        (403, Some("insufficient_scope"), Some("Insufficient scope")),
        "{b}"
    );
    assert_eq!(required(&b), ["keys:read"]);
    for scopes in [vec!["chats:read"], vec![], vec!["not a scope"]] {
        let r = t
            .grant(&t.owner, &t.ws, &app.client_id, &scopes, false)
            .await;
        assert_eq!(sc(&r), (400, "invalid_request"), "{scopes:?}: {}", r.1);
    }
    let r = t
        .grant(&t.owner, &t.ws, &app.client_id, &["admin:superuser"], false)
        .await;
    assert!(
        r.0 == 400 || r.0 == 403,
        "nobody grants admin:superuser: {}",
        r.1
    );
    let r = t
        .call(
            "POST",
            &t.w("/grants"),
            &t.owner,
            Some(json!({"client_id": app.client_id, "scopes": ["workspace:read"], "extra": 1})),
        )
        .await;
    assert_eq!(r.0, 400, "unknown fields are refused: {}", r.1);
    let r = t
        .grant(
            &t.owner,
            &t.ws,
            "kr_app_000000000000000000000000",
            &["workspace:read"],
            false,
        )
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "an unknown app: {}", r.1);
    assert_eq!(t.grants(&t.owner, "").await, Vec::<Value>::new());

    let gid = t
        .grant_ok(&dev, &app, &["keys:read", "workspace:read"])
        .await;
    let minted = t.token(&app, &gid).await;
    let tok = minted.api_token.clone();
    let (status, b) = t.call("GET", &t.w("/keys"), &tok, None).await;
    assert_eq!(status, 200, "{b}");
    // Demoted: the token keeps only what the member still holds.
    let (status, b) = t
        .call(
            "PATCH",
            &t.w(&format!("/members/{dev_id}")),
            &t.owner,
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = t.call("GET", &t.w("/keys"), &tok, None).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );
    assert_eq!(required(&b), ["keys:read"]);
    t.assert_live(&tok, "workspace:read is in both").await;
    // Removed: the token is dead and the grant gone.
    let (status, _) = t
        .call(
            "DELETE",
            &t.w(&format!("/members/{dev_id}")),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 204);
    t.assert_dead(&tok, "the member was removed").await;
    assert_eq!(t.grants(&t.owner, "").await, Vec::<Value>::new());

    // Granted scopes are closed under implication: members:admin covers members:read.
    let gid = t.grant_ok(&t.owner, &app, &["members:admin"]).await;
    let tok = t.token(&app, &gid).await.api_token;
    let (status, b) = t.call("GET", &t.w("/members"), &tok, None).await;
    assert_eq!(status, 200, "{b}");
    let r = t.call("GET", &t.w(""), &tok, None).await;
    assert_eq!(sc(&r), (403, "insufficient_scope"), "{}", r.1);
    // A workspace's own scopes can be granted.
    let (status, b) = t
        .call(
            "POST",
            &t.w("/scopes"),
            &t.owner,
            Some(json!({"name": "chats:read", "description": "read chats"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let other_app = t.app(&t.owner, Value::Null).await;
    let (status, b) = t
        .grant(
            &t.owner,
            &t.ws,
            &other_app.client_id,
            &["chats:read"],
            false,
        )
        .await;
    assert_eq!(status, 201, "{b}");
    t.s.stop().await;
}

#[tokio::test]
async fn members_see_their_own_grants_and_managers_see_all() {
    let t = T::new().await;
    let a = t.app(&t.owner, Value::Null).await;
    let b = t.app(&t.owner, Value::Null).await;
    let (_, viewer) = t.member("viewer@example.com", "viewer").await;
    let (_, dev) = t.member("dev@example.com", "developer").await;
    let outsider = t.person("outsider@example.com").await;
    let owners = t.grant_ok(&t.owner, &a, &["workspace:read"]).await;
    let v1 = t.grant_ok(&viewer, &a, &["workspace:read"]).await;
    let v2 = t.grant_ok(&viewer, &b, &["workspace:read"]).await;

    assert_eq!(t.grants(&t.owner, "").await.len(), 3);
    assert_eq!(t.grants(&dev, "").await.len(), 3, "apps:read sees all");
    let mine: Vec<String> = t
        .grants(&viewer, "")
        .await
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine.contains(&v1) && mine.contains(&v2));
    let only_b = t
        .grants(&t.owner, &format!("?client_id={}", b.client_id))
        .await;
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0]["id"], v2.as_str());
    assert_eq!(
        t.grants(&viewer, &format!("?client_id={}", a.client_id))
            .await
            .len(),
        1
    );
    let r = t.call("GET", &t.w("/grants"), &outsider, None).await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);

    let r = t
        .call("DELETE", &t.w(&format!("/grants/{owners}")), &viewer, None)
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "not theirs to see: {}", r.1);
    let r = t
        .call("DELETE", &t.w(&format!("/grants/{v1}")), &outsider, None)
        .await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    let (status, _) = t
        .call("DELETE", &t.w(&format!("/grants/{v1}")), &viewer, None)
        .await;
    assert_eq!(status, 204, "a member may always revoke their own grant");
    let (status, _) = t
        .call("DELETE", &t.w(&format!("/grants/{v2}")), &dev, None)
        .await;
    assert_eq!(status, 204, "apps:write revokes others' personal grants");
    let left = t.grants(&t.owner, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], owners.as_str());
    t.s.stop().await;
}

#[tokio::test]
async fn forward_auth_with_an_app_token() {
    let t = T::new().await;
    let (status, b) = t
        .call(
            "POST",
            &t.w("/scopes"),
            &t.owner,
            Some(json!({"name": "chats:read", "description": "read chats"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t
        .grant_ok(&t.owner, &app, &["workspace:read", "chats:read"])
        .await;
    let tok = t.token(&app, &gid).await.api_token;
    let fa = |query: &'static str| {
        t.s.http
            .get(t.s.url(&format!("/api/v1/forward-auth{query}")))
            .bearer_auth(&tok)
            .send()
    };
    let resp = fa("?scopes=workspace:read").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-keyrail-principal"], gid.as_str());
    assert_eq!(resp.headers()["x-keyrail-workspace"], t.ws.as_str());
    let scopes: Vec<&str> = resp.headers()["x-keyrail-scopes"]
        .to_str()
        .unwrap()
        .split(',')
        .collect();
    assert!(
        scopes.contains(&"workspace:read") && scopes.contains(&"chats:read"),
        "{scopes:?}"
    );
    assert!(
        !scopes.contains(&"keys:read"),
        "only what the grant gives: {scopes:?}"
    );
    let resp = fa("?scopes=chats:read").await.unwrap();
    assert_eq!(resp.status(), 200, "the workspace's own scope");
    let (status, b) = json(fa("?scopes=keys:write").await.unwrap()).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{b}"
    );
    assert_eq!(required(&b), ["keys:write"]);

    let (status, _) = t
        .call("DELETE", &t.w(&format!("/grants/{gid}")), &t.owner, None)
        .await;
    assert_eq!(status, 204);
    let (status, b) = json(fa("?scopes=workspace:read").await.unwrap()).await;
    assert_eq!(
        (status, b["code"].as_str()),
        (401, Some("invalid_token")),
        "{b}"
    );
    t.s.stop().await;
}

#[tokio::test]
async fn grants_and_app_actions_are_audited() {
    let t = T::new().await;
    let root = t.superuser().await;
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t
        .grant_ok(&t.owner, &app, &["keys:write", "workspace:read"])
        .await;
    let tok = t.token(&app, &gid).await.api_token;
    let (status, key) = t
        .call(
            "POST",
            &t.w("/keys"),
            &tok,
            Some(json!({"name": "made by an app", "scopes": ["workspace:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["id"].as_str().unwrap().to_owned();
    let (status, _) = t
        .call("DELETE", &t.w(&format!("/grants/{gid}")), &t.owner, None)
        .await;
    assert_eq!(status, 204);

    let (status, log) = t.call("GET", &t.w("/audit"), &t.owner, None).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {log}"))
            .clone()
    };
    let created = find("grant.create");
    assert_eq!(created["target"], gid.as_str());
    assert_eq!(created["actor"]["type"], "user");
    assert_eq!(created["outcome"], "success");
    let revoked = find("grant.revoke");
    assert_eq!(revoked["target"], gid.as_str());
    assert_eq!(revoked["actor"]["type"], "user");
    let by_app = find("key.create");
    assert_eq!(
        by_app["actor"],
        json!({"type": "app", "id": app.client_id}),
        "{by_app}"
    );
    assert_eq!(by_app["target"], key_id.as_str());
    let (_, only) = t
        .call(
            "GET",
            &t.w(&format!("/audit?actor_id={}", app.client_id)),
            &t.owner,
            None,
        )
        .await;
    let actions: Vec<&str> = only["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.create"], "{only}");

    // App lifecycle actions belong to no workspace: the platform log has them.
    let path = format!("/api/v1/apps/{}", app.client_id);
    t.call("PATCH", &path, &t.owner, Some(json!({"name": "Renamed"})))
        .await;
    t.call("POST", &format!("{path}/secret"), &t.owner, None)
        .await;
    t.call("DELETE", &path, &t.owner, None).await;
    for action in [
        "app.create",
        "app.update",
        "app.secret_rotate",
        "app.delete",
    ] {
        let (status, log) = t
            .call(
                "GET",
                &format!("/api/v1/admin/audit?action={action}"),
                &root,
                None,
            )
            .await;
        assert_eq!(status, 200, "{log}");
        assert_eq!(log["data"].as_array().unwrap().len(), 1, "{action}: {log}");
    }
    let (_, ws_log) = t.call("GET", &t.w("/audit"), &t.owner, None).await;
    assert!(
        ws_log["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["action"].as_str().unwrap().starts_with("app.")),
        "app.* actions are not in a workspace's log: {ws_log}"
    );
    t.s.stop().await;
}

/// Grants and client-secret rotations go to the webhook outbox with their change: one
/// `app.secret_rotated` per workspace holding a grant to the app, never a secret.
#[tokio::test]
async fn grant_and_secret_events() {
    let t = T::new().await;
    let other = t.workspace(&t.owner, "Other").await;
    t.s.subscribe_all(&t.owner, &t.ws).await;
    t.s.subscribe_all(&t.owner, &other).await;
    let app = t.app(&t.owner, Value::Null).await;
    let me = t.owner_member_id().await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let (status, b) = t
        .grant(&t.owner, &other, &app.client_id, &["workspace:read"], true)
        .await;
    assert_eq!(status, 201, "{b}");
    let of = |events: &[(String, String, Value)], kind: &str| -> Vec<(String, Value)> {
        events
            .iter()
            .filter(|(_, k, _)| k == kind)
            .map(|(ws, _, body)| (ws.clone(), body["data"].clone()))
            .collect()
    };
    let events = t.s.outbox_events().await;
    let created = of(&events, "grant.created");
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[0].0, t.ws);
    assert_eq!(
        created[0].1,
        json!({"id": gid, "client_id": app.client_id, "member_id": me, "scopes": ["workspace:read"], "shared": false})
    );
    assert_eq!(created[1].0, other);
    assert_eq!(created[1].1["shared"], true);

    let (status, _) = t
        .call(
            "POST",
            &format!("/api/v1/apps/{}/secret", app.client_id),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let events = t.s.outbox_events().await;
    let rotated = of(&events, "app.secret_rotated");
    let mut wss: Vec<&str> = rotated.iter().map(|(ws, _)| ws.as_str()).collect();
    wss.sort();
    let mut want = vec![t.ws.as_str(), other.as_str()];
    want.sort();
    assert_eq!(wss, want, "one per workspace holding a grant: {rotated:?}");
    assert!(
        rotated
            .iter()
            .all(|(_, d)| d == &json!({"client_id": app.client_id}))
    );

    let (status, _) = t
        .call("DELETE", &t.w(&format!("/grants/{gid}")), &t.owner, None)
        .await;
    assert_eq!(status, 204);
    let events = t.s.outbox_events().await;
    let revoked = of(&events, "grant.revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].0, t.ws);
    assert_eq!(revoked[0].1["id"], gid.as_str());
    assert_eq!(revoked[0].1["client_id"], app.client_id.as_str());
    let all = format!("{events:?}");
    assert!(!all.contains(&app.secret), "events never hold a secret");

    // Members added and removed are events of their workspace too.
    t.s.user("m@example.com").await;
    let (status, m) = t
        .call(
            "POST",
            &t.w("/members"),
            &t.owner,
            Some(json!({"email": "m@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{m}");
    let mid = m["id"].as_str().unwrap().to_owned();
    let (status, _) = t
        .call("DELETE", &t.w(&format!("/members/{mid}")), &t.owner, None)
        .await;
    assert_eq!(status, 204);
    let events = t.s.outbox_events().await;
    let added = of(&events, "member.added");
    let removed = of(&events, "member.removed");
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(
        (&added[0].0, &added[0].1["member_id"]),
        (&t.ws, &json!(mid))
    );
    assert_eq!(added[0].1["role"], "viewer");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].1["member_id"], mid.as_str());
    t.s.stop().await;
}

#[tokio::test]
async fn the_tokens_endpoint_wants_the_apps_own_credentials() {
    let t = T::new().await;
    let app = t.app(&t.owner, Value::Null).await;
    let other = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let other_gid = t.grant_ok(&t.owner, &other, &["workspace:read"]).await;
    let url = t.s.url(&format!("/api/v1/apps/{}/tokens", app.client_id));
    let body = json!({"grant_id": gid});
    let expect_invalid_client = |(status, b): (u16, Value), why: &str| {
        assert_eq!(
            (status, b["code"].as_str(), b["error"].as_str()),
            (
                401,
                Some("invalid_client"),
                Some("Invalid client credentials")
            ),
            "{why}: {b}"
        );
    };

    let resp = t.s.http.post(&url).json(&body).send().await.unwrap();
    expect_invalid_client(json(resp).await, "no Authorization");
    let resp =
        t.s.http
            .post(&url)
            .bearer_auth(&t.owner)
            .json(&body)
            .send()
            .await
            .unwrap();
    expect_invalid_client(
        json(resp).await,
        "a person's token is not client credentials",
    );
    let resp =
        t.s.http
            .post(&url)
            .header("authorization", "Basic !!!not-base64!!!")
            .json(&body)
            .send()
            .await
            .unwrap();
    expect_invalid_client(json(resp).await, "garbage Basic");
    expect_invalid_client(
        t.mint_as(
            &app.client_id,
            &app.client_id,
            "AAAAAAAAAAAAAAAAAAAAAA",
            &gid,
        )
        .await,
        "a wrong secret",
    );
    expect_invalid_client(
        t.mint_as(&app.client_id, &app.client_id, &other.secret, &gid)
            .await,
        "another app's secret",
    );
    expect_invalid_client(
        t.mint_as(&app.client_id, &other.client_id, &other.secret, &gid)
            .await,
        "another app's valid credentials on this app's path",
    );
    expect_invalid_client(
        t.mint_as(
            "kr_app_000000000000000000000000",
            "kr_app_000000000000000000000000",
            &app.secret,
            &gid,
        )
        .await,
        "an unknown app",
    );

    let r = t.mint(&app, &other_gid).await;
    assert_eq!(sc(&r), (404, "not_found"), "another app's grant: {}", r.1);
    let r = t.mint(&other, &gid).await;
    assert_eq!(sc(&r), (404, "not_found"), "{}", r.1);
    let resp =
        t.s.http
            .post(&url)
            .basic_auth(&app.client_id, Some(&app.secret))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    let r = json(resp).await;
    assert_eq!(sc(&r), (400, "invalid_request"), "no grant_id: {}", r.1);
    let resp =
        t.s.http
            .post(&url)
            .basic_auth(&app.client_id, Some(&app.secret))
            .json(&json!({"grant_id": gid, "scopes": ["keys:read"]}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 400, "unknown fields are refused");
    // And with everything right, a token.
    t.assert_live(
        &t.token(&app, &gid).await.api_token,
        "the right credentials",
    )
    .await;
    t.s.stop().await;
}

#[tokio::test]
async fn a_suspended_workspace_stops_app_tokens() {
    let t = T::new().await;
    let root = t.superuser().await;
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let tok = t.token(&app, &gid).await.api_token;
    let (status, b) = t
        .call(
            "POST",
            &format!("/api/v1/admin/workspaces/{}/suspend", t.ws),
            &root,
            None,
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = t.call("GET", &t.w(""), &tok, None).await;
    assert_eq!(
        (status, b["code"].as_str(), b["error"].as_str()),
        (
            403,
            Some("tenant_suspended"),
            Some("Tenant suspended or inactive")
        ),
        "{b}"
    );
    let r = t.mint(&app, &gid).await;
    assert_eq!(sc(&r), (403, "tenant_suspended"), "{}", r.1);
    let (status, _) = t
        .call(
            "POST",
            &format!("/api/v1/admin/workspaces/{}/activate", t.ws),
            &root,
            None,
        )
        .await;
    assert_eq!(status, 200);
    t.assert_live(&tok, "active again").await;
    t.s.stop().await;
}

#[tokio::test]
async fn apps_on_postgres() {
    let Some(t) = T::on(Backend::Postgres).await else {
        return;
    };
    let app = t.app(&t.owner, Value::Null).await;
    let gid = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    let tok = t.token(&app, &gid).await.api_token;
    t.assert_live(&tok, "on PostgreSQL").await;
    let (status, _) = t
        .call(
            "POST",
            &format!("/api/v1/apps/{}/secret", app.client_id),
            &t.owner,
            None,
        )
        .await;
    assert_eq!(status, 200);
    t.assert_dead(&tok, "rotated on PostgreSQL").await;
    // A person's login is untouched by all this.
    assert_eq!(t.s.login_as("owner@example.com", PASSWORD).await.0, 200);
    t.s.stop().await;
}

/// An app or grant change and its audit entry commit together or not at all: when the entry
/// cannot be written nothing changes (500), and the old secret or grant keeps working.
#[tokio::test]
async fn an_app_change_whose_audit_entry_fails_is_not_made() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(t) = T::on(backend).await else {
            return;
        };
        app_changes_fail_with_their_audit(&t).await;
        t.s.stop().await;
    }
}

async fn app_changes_fail_with_their_audit(t: &T) {
    let refused_500 = async |action: &str, method: &str, path: &str, body: Option<Value>| {
        let trigger = t.s.refuse_audit(action).await;
        let (status, b) = t.call(method, path, &t.owner, body).await;
        assert_eq!(status, 500, "{action}: {b}");
        t.s.allow(&trigger).await;
    };
    let apps = async || -> Vec<Value> {
        let (status, list) = t.call("GET", "/api/v1/apps", &t.owner, None).await;
        assert_eq!(status, 200, "{list}");
        list["data"].as_array().unwrap().clone()
    };
    let profile = t.profile(&t.owner).await;
    refused_500(
        "app.create",
        "POST",
        "/api/v1/apps",
        Some(json!({"name": "Lost", "builder_profile_id": profile})),
    )
    .await;
    assert!(apps().await.is_empty());

    let app = t.app(&t.owner, Value::Null).await;
    let one = format!("/api/v1/apps/{}", app.client_id);
    refused_500(
        "app.update",
        "PATCH",
        &one,
        Some(json!({"name": "Renamed"})),
    )
    .await;
    assert_eq!(apps().await[0]["name"], "Acme Sync");
    refused_500("app.secret_rotate", "POST", &format!("{one}/secret"), None).await;
    refused_500(
        "grant.create",
        "POST",
        &t.w("/grants"),
        Some(json!({"client_id": app.client_id, "scopes": ["workspace:read"], "shared": false})),
    )
    .await;
    assert!(t.grants(&t.owner, "").await.is_empty());
    let grant = t.grant_ok(&t.owner, &app, &["workspace:read"]).await;
    // The secret did not change: it still mints tokens for the grant.
    let minted = t.token(&app, &grant).await;
    t.assert_live(&minted.api_token, "the old secret stands")
        .await;
    refused_500(
        "grant.revoke",
        "DELETE",
        &t.w(&format!("/grants/{grant}")),
        None,
    )
    .await;
    assert_eq!(t.grants(&t.owner, "").await.len(), 1);
    t.assert_live(&minted.api_token, "the grant stands").await;
    refused_500("app.delete", "DELETE", &one, None).await;
    assert_eq!(apps().await.len(), 1);
    t.assert_live(&minted.api_token, "the app stands").await;

    let (_, log) = t.call("GET", &t.w("/audit"), &t.owner, None).await;
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["grant.create"], "{log}");
}
