//! Starting a real server on 127.0.0.1:0 for black-box tests.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use keyrail_core::{ManualClock, Timestamp};
use keyrail_server::{AppState, Config, RunningServer, StartOptions};
use keyrail_store::testing::TempPostgres;

pub mod console;
pub mod oauth;

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub pg: Option<TempPostgres>,
    /// In cluster mode: node B, the balancer in front of both nodes, their Redis.
    pub cluster: Option<Cluster>,
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

/// The configuration of a test server in `dir` (see [`config_in`]) changed by `base` then by
/// the test's `tweak`, and start options with a new manual clock, adjusted by `adjust`.
fn prepare(
    dir: &std::path::Path,
    base: impl FnOnce(&mut Config),
    tweak: impl FnOnce(&mut Config),
    adjust: impl FnOnce(&mut StartOptions),
) -> (Config, StartOptions, Arc<ManualClock>) {
    let mut config = config_in(dir);
    base(&mut config);
    tweak(&mut config);
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let mut options = StartOptions {
        clock: clock.clone(),
        ..StartOptions::default()
    };
    adjust(&mut options);
    (config, options, clock)
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

    /// With `options` (a manual clock already set) adjusted by `adjust`. In cluster mode
    /// ([`cluster_mode`]) a two-node cluster on PostgreSQL ([`Self::start_cluster`]) for
    /// [`Backend::Sqlite`], and `None` for [`Backend::Postgres`] (the run the suites make for
    /// PostgreSQL after the SQLite one would repeat it); without PostgreSQL or `redis-server`
    /// there (outside CI) one node as asked, after `SKIPPED:`.
    pub async fn start_options(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        adjust: impl FnOnce(&mut StartOptions),
    ) -> Option<Self> {
        if cluster_mode() && backend == Backend::Postgres {
            eprintln!("SKIPPED in cluster mode: the PostgreSQL run; every cluster runs on it");
            return None;
        }
        if cluster_mode() {
            match cluster_services().await {
                Some((pg, redis)) => {
                    let url = pg.url.clone();
                    return Some(Self::start_cluster(Some(pg), url, redis, tweak, adjust).await);
                }
                None => eprintln!("SKIPPED: no cluster for this test; it runs on one node"),
            }
        }
        Self::start_node(backend, tweak, adjust).await
    }

    /// One node, whatever the mode.
    pub async fn start_node(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        adjust: impl FnOnce(&mut StartOptions),
    ) -> Option<Self> {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TempPostgres::create().await?),
        };
        let on_pg = |c: &mut Config| {
            if let Some(pg) = &pg {
                c.database_url = pg.url.clone();
            }
        };
        let (config, options, clock) = prepare(dir.path(), on_pg, tweak, adjust);
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
            cluster: None,
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
        if let Some(mut cluster) = self.cluster.take() {
            if let Some(balancer) = cluster.balancer.take() {
                balancer.stop().await;
            }
            for node in cluster.others.drain(..) {
                node.shutdown().await.unwrap();
            }
        }
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
                // One node even in cluster mode: a cluster's Redis would outlive the process.
                let s = TestServer::start_node(
                    Backend::Sqlite,
                    |c| c.limits.failed_auth_per_ip = "1000000/1m".parse().unwrap(),
                    |_| {},
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

// ---------------------------------------------------------------------------------------------
// Redis

/// `CI` set to anything but empty, `0` or `false`: missing services fail tests instead of
/// skipping them.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

/// A `redis-server` of this test's own; killed when dropped.
pub struct RedisProc {
    pub port: u16,
    child: Option<Child>,
    /// Listening with TLS only (the test certificate of `tests/fixtures`).
    tls: bool,
}

/// A file of `tests/fixtures` (the test certificate is for `localhost` and `127.0.0.1`).
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

impl RedisProc {
    /// `None` (after `SKIPPED:`) when `redis-server` cannot run here outside CI.
    pub fn start() -> Option<Self> {
        Self::start_as(false)
    }

    /// A Redis that speaks TLS only (`rediss://`), with the test certificate.
    pub fn start_tls() -> Option<Self> {
        Self::start_as(true)
    }

    /// A port taken by someone else between choosing it and the server's bind is tried again
    /// with another.
    fn start_as(tls: bool) -> Option<Self> {
        let mut attempt = 0;
        let result = loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut r = Self {
                port,
                child: None,
                tls,
            };
            attempt += 1;
            match r.spawn() {
                Ok(()) => break Ok(r),
                Err(e) if e.starts_with("redis-server exited") && attempt < 3 => continue,
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(r) => Some(r),
            Err(e) if !in_ci() => {
                eprintln!("SKIPPED: redis-server cannot run here ({e}); Redis tests skipped");
                None
            }
            Err(e) => panic!("redis-server cannot run in CI: {e}"),
        }
    }

    pub fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        if self.tls {
            command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &fixture("cert.pem")])
                .args(["--tls-key-file", &fixture("key.pem")])
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &self.port.to_string()]);
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("redis-server exited at start ({status})"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("redis-server did not listen within 10 s".into())
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Kills the process (SIGKILL: an outage, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`: a Redis that hangs, accepting but never answering; `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// A new, empty process on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap();
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// cluster mode

/// Whether this copy of `common` is part of the `cluster_suites` test binary, which includes
/// the keys, identity and apps suites: there every [`TestServer`] is two nodes on one fresh
/// PostgreSQL database and one Redis, sharing the master key and the manual clock, behind a
/// round-robin balancer, so consecutive requests of a test reach different nodes.
pub fn cluster_mode() -> bool {
    module_path!().split("::").next() == Some("cluster_suites")
}

/// In cluster mode, says why the calling test does not apply to a cluster and returns true
/// (the test then returns at once); false on one node.
pub fn skip_in_cluster(why: &str) -> bool {
    if cluster_mode() {
        eprintln!("SKIPPED in cluster mode: {why}");
    }
    cluster_mode()
}

/// The master key the nodes of a test cluster share.
pub const CLUSTER_MASTER_KEY: &str =
    "c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5c1a5";

/// How long the balancer waits, before each request, for every node to have applied the
/// change log up to the store's newest entry (milliseconds as a rule: LISTEN/NOTIFY).
pub const SETTLE_WITHIN: Duration = Duration::from_secs(2);

/// What a test cluster has besides node A ([`TestServer::server`]).
pub struct Cluster {
    /// Node B.
    pub others: Vec<RunningServer>,
    balancer: Option<Balancer>,
    /// Killed when the cluster is dropped.
    pub redis: RedisProc,
}

fn install_crypto_provider() {
    // reqwest's rustls has no provider of its own here (the server builds its webhook
    // client with ring explicitly): the tests' clients use ring too.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A `redis-server` of the test's own and a fresh PostgreSQL database; `None` (after
/// `SKIPPED:`) when either is missing outside CI; under CI a missing one fails the test.
async fn cluster_services() -> Option<(TempPostgres, RedisProc)> {
    let redis = RedisProc::start()?;
    let pg = TempPostgres::create().await?;
    Some((pg, redis))
}

impl TestServer {
    /// Two nodes on the PostgreSQL database `database_url` (dropped at [`Self::stop`] when
    /// `pg` is given) and on `redis`, configured alike (`tweak` runs once, on node A's
    /// configuration; node B gets a copy with a data directory of its own), behind a
    /// [`Balancer`] whose address is [`Self::base`].
    pub async fn start_cluster(
        pg: Option<TempPostgres>,
        database_url: String,
        redis: RedisProc,
        tweak: impl FnOnce(&mut Config),
        adjust: impl FnOnce(&mut StartOptions),
    ) -> Self {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let shared = |c: &mut Config| {
            c.database_url = database_url;
            c.redis_url = redis.url();
            c.master_key = CLUSTER_MASTER_KEY.into();
        };
        let (config, options, clock) = prepare(dir.path(), shared, tweak, adjust);
        let mut config_b = config.clone();
        config_b.data_dir = dir.path().join("data-b");
        let options_b = StartOptions {
            clock: clock.clone(),
            extra_routes: options.extra_routes.clone(),
            change_poll: options.change_poll,
            keys_refresh: options.keys_refresh,
        };
        // Both at once, as a cluster boots: the migrations and the first signing key are made
        // once (the store decides).
        let (a, b) = tokio::join!(
            keyrail_server::start(config, options),
            keyrail_server::start(config_b, options_b)
        );
        let (a, b) = (a.expect("node A starts"), b.expect("node B starts"));
        let balancer = Balancer::start(&[&a, &b]).await;
        Self {
            base: balancer.base.clone(),
            server: Some(a),
            http: reqwest::Client::new(),
            clock,
            dir,
            pg,
            cluster: Some(Cluster {
                others: vec![b],
                balancer: Some(balancer),
                redis,
            }),
        }
    }

    /// Every node: node A, then the others of a cluster.
    pub fn nodes(&self) -> Vec<&RunningServer> {
        let others = self.cluster.iter().flat_map(|c| c.others.iter());
        self.server.iter().chain(others).collect()
    }

    /// Writes the key uses every node has gathered (what its background task does every
    /// minute).
    pub async fn flush_last_used(&self) {
        for node in self.nodes() {
            keyrail_server::background::flush_last_used(&node.state).await;
        }
    }

    /// Another server on this one's store, started now, which knows only what the store says:
    /// one node on the same SQLite file; in cluster mode two new nodes on the same PostgreSQL
    /// database (and a Redis of their own).
    pub async fn another_on_the_same_store(&self) -> TestServer {
        match (&self.cluster, &self.pg) {
            (Some(_), Some(pg)) => {
                let redis = RedisProc::start().expect("redis-server ran for this cluster");
                Self::start_cluster(None, pg.url.clone(), redis, |_| {}, |_| {}).await
            }
            _ => {
                let dir = self.dir.path().join("data");
                Self::start_node(Backend::Sqlite, |c| c.data_dir = dir, |_| {})
                    .await
                    .unwrap()
            }
        }
    }
}

/// A load balancer in front of a cluster's nodes, like nginx in `examples/cluster`: each
/// request goes to the next node in turn, as it came (method, path, query, headers including
/// `Host`, body; no `X-Forwarded-For`: the nodes trust no proxy unless a test says so, and
/// the client is 127.0.0.1 either way), and the answer comes back as the node gave it.
///
/// Before forwarding, it waits until every node has applied the change log up to the store's
/// newest entry ([`SETTLE_WITHIN`] at most, else it answers 502 and says which node lags):
/// what one node wrote is then in force on the next, as it is milliseconds later in a real
/// cluster (how fast is measured by `two_nodes` and `bench/revocation`, not here). Anything
/// a node learns other than through the change log is not waited for.
struct Balancer {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct Route {
    nodes: Vec<(String, AppState)>,
    next: std::sync::atomic::AtomicUsize,
    client: reqwest::Client,
}

impl Balancer {
    async fn start(nodes: &[&RunningServer]) -> Self {
        let route = Arc::new(Route {
            nodes: nodes
                .iter()
                .map(|n| (n.base_url(), n.state.clone()))
                .collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let app = Router::new().fallback(forward).with_state(route);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { base, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Hop-by-hop headers, which a proxy does not pass on.
fn hop_by_hop(name: &axum::http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

async fn forward(
    axum::extract::State(route): axum::extract::State<Arc<Route>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let bad_gateway = |why: String| {
        eprintln!("balancer: {why}");
        (axum::http::StatusCode::BAD_GATEWAY, why).into_response()
    };
    if let Err(why) = settle(&route.nodes).await {
        return bad_gateway(why);
    }
    let n = route
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        % route.nodes.len();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = route
        .client
        .request(parts.method, format!("{}{path}", route.nodes[n].0));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) && name != axum::http::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    if !body.is_empty()
        || parts
            .headers
            .contains_key(axum::http::header::CONTENT_LENGTH)
    {
        out = out.body(body);
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => return bad_gateway(format!("node {n} did not answer: {e}")),
    };
    let (status, headers) = (answer.status(), answer.headers().clone());
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => return bad_gateway(format!("node {n} broke off its answer: {e}")),
    };
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// Waits until every node has applied the change log up to the store's newest entry.
async fn settle(nodes: &[(String, AppState)]) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    let latest = nodes[0]
        .1
        .store
        .latest_change()
        .await
        .map_err(|e| format!("cannot read the change log: {e}"))?;
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let behind: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, (_, state))| {
                let applied = state.changes_applied.load(Ordering::Acquire);
                (applied < latest).then(|| format!("node {i} at {applied}"))
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the change log reaches {latest}, but after {SETTLE_WITHIN:?} {}",
                behind.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `check` every 20 ms until it holds (3 s at most, else fails naming `what`); how long
/// that took.
pub async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 3 s");
}

impl TestServer {
    /// Revokes key `id` of workspace `ws` (200 expected).
    pub async fn revoke_key(&self, token: &str, ws: &str, id: &str) {
        let resp = self
            .post_with(
                &format!("/api/v1/w/{ws}/keys/{id}/revoke"),
                token,
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
}

/// `POST /apps/{client_id}/tokens` with the client credentials: status and body.
pub async fn mint(s: &TestServer, client_id: &str, secret: &str, grant_id: &str) -> (u16, Value) {
    json(
        s.http
            .post(s.url(&format!("/api/v1/apps/{client_id}/tokens")))
            .basic_auth(client_id, Some(secret))
            .json(&serde_json::json!({"grant_id": grant_id}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The app's api token for a grant, opened with the secret as an app does.
pub async fn api_token(s: &TestServer, client_id: &str, secret: &str, grant_id: &str) -> String {
    use base64::Engine as _;
    let (status, b) = mint(s, client_id, secret, grant_id).await;
    assert_eq!(status, 200, "{b}");
    let token = b["token"].as_str().unwrap();
    let jwe = token.split_once(':').unwrap().1;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret)
        .unwrap();
    let (_, payload) = open_jwe(jwe, &key).expect("opens with the secret from the page");
    payload["api_token"].as_str().unwrap().to_owned()
}
