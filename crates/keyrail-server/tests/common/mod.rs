//! Starting a real server on 127.0.0.1:0 for black-box tests.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use keyrail_core::{ManualClock, Timestamp};
use keyrail_server::{AppState, Config, RunningServer, StartOptions};
use keyrail_store::testing::TempPostgres;

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub pg: Option<TempPostgres>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn config_in(dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.join("data");
    config.dev = true;
    // Tests sign up and log in far more often than people do; tests of these limits set them.
    config.limits.signup_per_ip = "10000/1h".parse().unwrap();
    config.limits.login_per_ip = "10000/15m".parse().unwrap();
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Backend::Sqlite, |_| {}, None)
            .await
            .expect("sqlite always runs")
    }

    /// `None` when the backend is PostgreSQL and it is not reachable outside CI.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        extra: Option<Router<AppState>>,
    ) -> Option<Self> {
        Self::start_full(backend, tweak, extra).await
    }

    pub async fn start_full(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        extra: Option<Router<AppState>>,
    ) -> Option<Self> {
        Self::start_options(backend, tweak, |o| o.extra_routes = extra).await
    }

    /// With `options` (a manual clock already set) adjusted by `adjust`.
    pub async fn start_options(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        adjust: impl FnOnce(&mut StartOptions),
    ) -> Option<Self> {
        // reqwest's rustls has no provider of its own here (the server builds its webhook
        // client with ring explicitly): the tests' clients use ring too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let pg = TempPostgres::create().await?;
                config.database_url = pg.url.clone();
                Some(pg)
            }
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let mut options = StartOptions {
            clock: clock.clone(),
            ..StartOptions::default()
        };
        adjust(&mut options);
        let server = keyrail_server::start(config, options)
            .await
            .expect("server starts");
        let base = server.base_url();
        Some(Self {
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            clock,
            dir,
            pg,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// Status and JSON body.
pub async fn json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

pub const PASSWORD: &str = "correct horse battery staple 42";

impl TestServer {
    pub async fn signup(&self, email: &str) -> Value {
        let (status, body) = json(
            self.post_json(
                "/api/v1/auth/signup",
                &serde_json::json!({"email": email, "password": PASSWORD, "name": "Test User"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["user"].clone()
    }

    pub async fn login_as(&self, email: &str, password: &str) -> (u16, Value) {
        json(
            self.post_json(
                "/api/v1/auth/login",
                &serde_json::json!({"email": email, "password": password}),
            )
            .await,
        )
        .await
    }

    /// Signs up and logs in; the login body (access_token, refresh_token, user).
    /// The `code` that `POST /api/v1/keys/verify` answers for `key`.
    pub async fn verify_code(&self, key: &str) -> String {
        let (status, body) = json(
            self.post_json("/api/v1/keys/verify", &serde_json::json!({ "key": key }))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// A new user's access token and a workspace they own.
    pub async fn owner_with_workspace(&self, email: &str) -> (String, String) {
        let token = self.user(email).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, ws) = json(
            self.post_with(
                "/api/v1/workspaces",
                &token,
                &serde_json::json!({"name": "Acme"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{ws}");
        (token, ws["id"].as_str().unwrap().to_owned())
    }

    /// Logs in with [`PASSWORD`]; the answer's `Set-Cookie` values.
    pub async fn login_set_cookies(&self, email: &str) -> Vec<String> {
        let resp = self
            .post_json(
                "/api/v1/auth/login",
                &serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub async fn user(&self, email: &str) -> Value {
        self.signup(email).await;
        let (status, body) = self.login_as(email, PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn get_with(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Any method with a bearer token and an optional JSON body; status and JSON (or null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self.http.request(method, self.url(path)).bearer_auth(token);
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post_with(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// failing writes on purpose

impl TestServer {
    /// Runs one statement on the server's database, beside the server (a second connection).
    pub async fn exec_sql(&self, sql: &str) {
        use sqlx::Connection as _;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.pg {
            Some(pg) => {
                let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            None => {
                let file = self
                    .dir
                    .path()
                    .join("data")
                    .join(keyrail_store::SQLITE_FILE_NAME);
                let url = format!("sqlite://{}", file.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// The first column (text) of every row `sql` gives, read beside the server.
    pub async fn query_strings(&self, sql: &str) -> Vec<String> {
        use sqlx::Connection as _;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.pg {
            Some(pg) => {
                let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                rows
            }
            None => {
                let file = self
                    .dir
                    .path()
                    .join("data")
                    .join(keyrail_store::SQLITE_FILE_NAME);
                let url = format!("sqlite://{}", file.display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                rows
            }
        }
    }

    /// Subscribes an endpoint to every event (the server must allow private addresses; the
    /// URL refuses connections) and returns its id: what the outbox holds is then
    /// [`Self::outbox`].
    pub async fn subscribe_all(&self, token: &str, ws: &str) -> String {
        let (status, b) = json(
            self.post_with(
                &format!("/api/v1/w/{ws}/webhooks"),
                token,
                &serde_json::json!({
                    "url": "http://127.0.0.1:9/nothing-listens",
                    "events": keyrail_core::events::EVENT_TYPES,
                }),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    /// The outbox's events, oldest first, as `"<type> <body>"`.
    pub async fn outbox(&self) -> Vec<String> {
        self.query_strings("SELECT event_type || ' ' || body FROM webhook_events ORDER BY id")
            .await
    }

    /// The outbox's events, oldest first, as (workspace id, type, body).
    pub async fn outbox_events(&self) -> Vec<(String, String, Value)> {
        self.query_strings(
            "SELECT workspace_id || ' ' || event_type || ' ' || body FROM webhook_events ORDER BY id",
        )
        .await
        .into_iter()
        .map(|row| {
            let mut parts = row.splitn(3, ' ');
            let ws = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap().to_owned();
            (ws, kind, serde_json::from_str(parts.next().unwrap()).unwrap())
        })
        .collect()
    }

    /// From now on the database refuses `op` (`INSERT`, `UPDATE` or `DELETE`) on rows of
    /// `table` for which `when` holds (SQL over `NEW` / `OLD`), as a full disk or a lost
    /// connection would at the worst moment. Returns the trigger's name, for [`Self::allow`].
    pub async fn refuse(&self, table: &str, op: &str, when: &str) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "test_refuse_{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if self.pg.is_some() {
            self.exec_sql(
                "CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            )
            .await;
            self.exec_sql(&format!(
                "CREATE TRIGGER {name} BEFORE {op} ON {table} FOR EACH ROW WHEN ({when})
                 EXECUTE FUNCTION test_refuse()"
            ))
            .await;
        } else {
            self.exec_sql(&format!(
                "CREATE TRIGGER {name} BEFORE {op} ON {table} FOR EACH ROW WHEN ({when})
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ))
            .await;
        }
        name
    }

    /// From now on the database refuses audit entries of `action`.
    pub async fn refuse_audit(&self, action: &str) -> String {
        self.refuse("audit_log", "INSERT", &format!("NEW.action = '{action}'"))
            .await
    }

    /// Drops a trigger made by [`Self::refuse`].
    pub async fn allow(&self, trigger: &str) {
        if self.pg.is_some() {
            // The table is part of the name of a PostgreSQL trigger; every one made here is
            // on a table named in the statement that made it, so look it up.
            self.exec_sql(&format!(
                "DO $$ DECLARE t text; BEGIN
                     SELECT event_object_table INTO t FROM information_schema.triggers
                      WHERE trigger_name = '{trigger}' LIMIT 1;
                     EXECUTE format('DROP TRIGGER {trigger} ON %I', t);
                 END $$"
            ))
            .await;
        } else {
            self.exec_sql(&format!("DROP TRIGGER {trigger}")).await;
        }
    }
}

/// A minimal SMTP server on loopback that keeps every message it receives.
pub struct FakeSmtp {
    pub port: u16,
    pub messages: Arc<tokio::sync::Mutex<Vec<String>>>,
}

impl FakeSmtp {
    pub async fn start() -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages: Arc<tokio::sync::Mutex<Vec<String>>> = Arc::default();
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                    let mut in_data = false;
                    let mut data = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                store.lock().await.push(std::mem::take(&mut data));
                                w.write_all(b"250 OK queued\r\n").await.unwrap();
                            } else {
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                data.push('\n');
                            }
                            continue;
                        }
                        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 fake\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"250 OK\r\n",
                        };
                        w.write_all(reply).await.unwrap();
                    }
                });
            }
        });
        Self { port, messages }
    }

    /// Waits (bounded) for the n-th message.
    pub async fn message(&self, n: usize) -> String {
        for _ in 0..200 {
            if let Some(m) = self.messages.lock().await.get(n) {
                return m.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no mail #{n} arrived");
    }
}

/// The reset token in a mail body (the line after "POST /api/v1/auth/password/reset:").
pub fn reset_token_in(mail: &str) -> String {
    let unfolded = mail.replace("=\n", "");
    let mut lines = unfolded.lines();
    while let Some(l) = lines.next() {
        if l.contains("/api/v1/auth/password/reset:") {
            return lines.next().unwrap().trim().to_owned();
        }
    }
    panic!("no token in mail:\n{mail}");
}

/// The current TOTP code of a base32 secret at the server's clock.
pub fn totp_now(secret_b32: &str, clock: &ManualClock) -> String {
    use keyrail_core::Clock;
    let secret = keyrail_core::crypto::TotpSecret::from_base32(secret_b32).unwrap();
    let step = keyrail_core::crypto::totp::step_at(clock.now()).unwrap();
    format!("{:06}", secret.code_at(step))
}

/// A server running on its own thread and runtime, for tests whose cases each build a runtime.
pub struct Remote {
    pub base: String,
}

impl Remote {
    pub fn spawn() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let s = TestServer::start_with(
                    Backend::Sqlite,
                    |c| c.limits.failed_auth_per_ip = "1000000/1m".parse().unwrap(),
                    None,
                )
                .await
                .unwrap();
                tx.send(s.base.clone()).unwrap();
                // Keep the server (and its temp dir) alive for the life of the process.
                std::future::pending::<()>().await;
                drop(s);
            });
        });
        let base = rx.recv().unwrap();
        Self { base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

// ---------------------------------------------------------------------------------------------
// app tokens

pub fn b64(part: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWE part {part:?} is not base64url without padding: {e}"))
}

/// Opens a compact JWE made with `alg: dir`, `enc: A128GCM` under `key` (RFC 7516: five parts,
/// an empty encrypted key, a 96-bit IV, AAD = the ASCII of the protected header as sent):
/// `None` when it does not authenticate under that key.
pub fn open_jwe(compact: &str, key: &[u8]) -> Option<(Value, Value)> {
    use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let parts: Vec<&str> = compact.split('.').collect();
    assert_eq!(parts.len(), 5, "a compact JWE has five parts: {compact}");
    assert_eq!(parts[1], "", "alg dir: the encrypted key is empty");
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let iv = b64(parts[2]);
    assert_eq!(iv.len(), 12, "A128GCM uses a 96-bit IV");
    let tag = b64(parts[4]);
    assert_eq!(tag.len(), 16, "A128GCM has a 128-bit tag");
    let mut data = b64(parts[3]);
    data.extend_from_slice(&tag);
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).unwrap());
    let nonce = Nonce::try_assume_unique_for_key(&iv).unwrap();
    let plain = key
        .open_in_place(nonce, Aad::from(parts[0].as_bytes()), &mut data)
        .ok()?;
    let payload = serde_json::from_slice(plain).expect("the plaintext is JSON");
    Some((header, payload))
}

/// The value of cookie `name` among `Set-Cookie` values.
pub fn set_cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

// ---------------------------------------------------------------------------------------------
// load for fault tests

/// One request sent under [`Load`]: by which task, when (since the load began), how long its
/// answer took, and the answer (`status` 0: none within the client's timeout, or no connection).
#[derive(Debug, Clone)]
pub struct Shot {
    pub task: usize,
    pub sent: std::time::Duration,
    pub took: std::time::Duration,
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Shot {
    /// The body's `code` ("VALID", "store_unavailable", ...), or "" when it has none.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// Tasks that each send a request over and over, as fast as the server answers, until stopped,
/// recording every answer as a [`Shot`].
pub struct Load {
    t0: std::time::Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
    shots: Arc<std::sync::Mutex<Vec<Shot>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `n` tasks; task `t` sends what `make(client, t)` builds, each under `timeout` (a request
    /// that hangs is recorded with status 0 when it runs out).
    pub fn start(
        n: usize,
        timeout: std::time::Duration,
        make: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
    ) -> Self {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let make = Arc::new(make);
        let t0 = std::time::Instant::now();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shots = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..n)
            .map(|task| {
                let (client, make, stop, shots) =
                    (client.clone(), make.clone(), stop.clone(), shots.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let sent = t0.elapsed();
                        let (status, retry_after, body) = match make(&client, task).send().await {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                let retry = resp
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                match resp.text().await {
                                    Ok(text) => (
                                        status,
                                        retry,
                                        serde_json::from_str(&text).unwrap_or(Value::Null),
                                    ),
                                    Err(_) => (0, None, Value::Null),
                                }
                            }
                            Err(_) => (0, None, Value::Null),
                        };
                        let took = t0.elapsed() - sent;
                        shots.lock().unwrap().push(Shot {
                            task,
                            sent,
                            took,
                            status,
                            retry_after,
                            body,
                        });
                    }
                })
            })
            .collect();
        Self {
            t0,
            stop,
            shots,
            tasks,
        }
    }

    /// Time since the load began, on the clock of [`Shot::sent`].
    pub fn now(&self) -> std::time::Duration {
        self.t0.elapsed()
    }

    /// Waits (polling, at most `limit`) until `done` holds for the shots so far.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: std::time::Duration,
        done: impl Fn(&[Shot]) -> bool,
    ) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if done(&self.shots.lock().unwrap()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "under load: {what} within {limit:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the tasks (each finishes the request it is on) and returns every shot.
    pub async fn stop(self) -> Vec<Shot> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let mut shots = std::mem::take(&mut *self.shots.lock().unwrap());
        shots.sort_by_key(|s| s.sent);
        shots
    }
}
