//! PostgreSQL going away under a running node (DESIGN.md "Many nodes", `store_outage_grace`),
//! with real processes: a PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port),
//! stopped with `pg_ctl stop -m immediate` and started again; node A reaches it through a TCP
//! relay the test can also cut (A alone loses the store while node B, on the same database,
//! goes on writing).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Load, Shot, TestServer, json};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MASTER: &str = "0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Skips (printing why) outside CI; fails under CI.
fn skip(why: &str) -> Option<Cluster> {
    assert!(!in_ci(), "CI is set, so the outage test must run: {why}");
    eprintln!("SKIPPED: store outage test: {why}");
    None
}

/// A PostgreSQL cluster of this test's own, removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run the binaries as `postgres` (PostgreSQL refuses to run as root).
    as_postgres: bool,
}

impl Cluster {
    fn create() -> Option<Self> {
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .max()
        else {
            return skip("no initdb/pg_ctl under /usr/lib/postgresql/*/bin");
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = tempfile::tempdir().unwrap();
        if root {
            let ok = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return skip("running as root and cannot hand a directory to user postgres");
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres: root,
        };
        let data = cluster.data();
        if let Err(e) = cluster.run(&format!("initdb -D {data} -A trust -U postgres --no-sync")) {
            return skip(&format!("initdb failed: {e}"));
        }
        if let Err(e) = cluster.start() {
            return skip(&format!("pg_ctl start failed: {e}"));
        }
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, cmd: &str) -> Result<(), String> {
        let line = format!("{}/{cmd}", self.bin.display());
        let out = if self.as_postgres {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new("sh").args(["-c", &line]).output()
        }
        .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn start(&self) -> Result<(), String> {
        let dir = self.dir.path().display();
        self.run(&format!(
            "pg_ctl -D {} -w -l {dir}/log -o \"-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off\" start",
            self.data(),
            self.port
        ))
    }

    fn stop(&self) {
        self.run(&format!("pg_ctl -D {} -w -m immediate stop", self.data()))
            .unwrap();
    }

    fn url(&self, port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&format!("pg_ctl -D {} -w -m immediate stop", self.data()));
    }
}

/// A TCP relay to `to`; `cut(true)` closes every connection through it and refuses new ones.
struct Relay {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: closed at once
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn store_up(node: &TestServer) -> Option<bool> {
    let text = node.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("keyrail_store_up "))
        .map(|v| v.trim() == "1")
}

async fn outage_hits(node: &TestServer) -> u64 {
    let text = node.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("keyrail_verify_outage_cache_hits_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn wait_store(node: &TestServer, up: bool) {
    let start = Instant::now();
    while store_up(node).await != Some(up) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "keyrail_store_up did not become {up} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Status, `Retry-After` and body of a verify.
async fn verify(node: &TestServer, key: &str) -> (u16, Option<String>, Value) {
    let resp = node
        .post_json("/api/v1/keys/verify", &json!({ "key": key }))
        .await;
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json(resp).await;
    (status, retry, body)
}

async fn code(node: &TestServer, key: &str) -> String {
    let (status, _, body) = verify(node, key).await;
    assert_eq!(status, 200, "{body}");
    body["code"].as_str().unwrap().to_owned()
}

fn assert_unavailable(what: &str, (status, retry, body): (u16, Option<String>, Value)) {
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(body["code"], "store_unavailable", "{what}: {body}");
    assert!(retry.is_some(), "{what}: no Retry-After");
}

async fn create_key(node: &TestServer, token: &str, ws: &str) -> (u16, Option<String>, Value) {
    let resp = node
        .post_with(
            &format!("/api/v1/w/{ws}/keys"),
            token,
            &json!({ "name": "k" }),
        )
        .await;
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json(resp).await;
    (status, retry, body)
}

async fn new_key(node: &TestServer, token: &str, ws: &str) -> (String, String) {
    let (status, _, key) = create_key(node, token, ws).await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    )
}

async fn node(url: String, grace: &str) -> TestServer {
    let grace = grace.parse().unwrap();
    TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.master_key = MASTER.into();
            c.database_url = url;
            c.store_outage_grace = grace;
        },
        None,
    )
    .await
    .unwrap()
}

/// Lets A apply the change-log entries of keys just created (each evicts its key's digest): a
/// key verified before its entry arrives would be evicted again right after.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn sql(url: &str, statement: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Nodes A and B on one PostgreSQL of the test's own, A through a relay the test can cut, B
/// directly; an owner's token and workspace.
struct Pair {
    pg: Cluster,
    relay: Relay,
    a: TestServer,
    b: TestServer,
    token: String,
    ws: String,
}

impl Pair {
    async fn start() -> Option<Self> {
        let pg = Cluster::create()?;
        let relay = Relay::start(pg.port).await;
        let a = node(pg.url(relay.port), "10m").await;
        let b = node(pg.url(pg.port), "10m").await;
        let (token, ws) = a.owner_with_workspace("owner@example.com").await;
        Some(Self {
            pg,
            relay,
            a,
            b,
            token,
            ws,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rides_out_a_postgres_outage_and_recovers_by_itself() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_test_writer()
        .try_init();
    let Some(p) = Pair::start().await else {
        return;
    };
    let Pair {
        pg,
        relay,
        a,
        b,
        token,
        ws,
    } = p;
    let (_, cached) = new_key(&a, &token, &ws).await;
    let (_, uncached) = new_key(&a, &token, &ws).await;
    settle().await;
    assert_eq!(code(&a, &cached).await, "VALID");
    assert_eq!(store_up(&a).await, Some(true));

    // PostgreSQL goes away.
    pg.stop();
    wait_store(&a, false).await;
    assert_eq!(a.get("/readyz").await.status(), 503);
    // Past the cache's usual 5 minute age, within the 10 minute grace.
    a.clock.advance_secs(6 * 60);
    assert_eq!(code(&a, &cached).await, "VALID");
    assert!(outage_hits(&a).await >= 1);
    assert_unavailable("an uncached key", verify(&a, &uncached).await);
    assert_unavailable("a write", create_key(&a, &token, &ws).await);
    // Past the grace even the cached key is not vouched for.
    a.clock.advance_secs(5 * 60);
    assert_unavailable("a cached key past the grace", verify(&a, &cached).await);

    // PostgreSQL comes back on the same port: A recovers without a restart.
    pg.start().unwrap();
    wait_store(&a, true).await;
    assert_eq!(a.get("/readyz").await.status(), 200);
    assert_eq!(code(&a, &cached).await, "VALID");
    assert_eq!(code(&a, &uncached).await, "VALID");
    let (revoked_id, revoked) = new_key(&a, &token, &ws).await;
    let (purged_id, purged) = new_key(&a, &token, &ws).await;
    settle().await;
    assert_eq!(code(&a, &revoked).await, "VALID");
    assert_eq!(code(&a, &purged).await, "VALID");

    // A alone is cut off; B revokes a key A has cached. A cannot know until it is back, and
    // once back it has applied the revocation before answering from its cache again.
    relay.cut(true);
    wait_store(&a, false).await;
    b.revoke_key(&token, &ws, &revoked_id).await;
    assert_eq!(code(&a, &revoked).await, "VALID");
    relay.cut(false);
    wait_store(&a, true).await;
    assert_eq!(code(&a, &revoked).await, "REVOKED");

    // Cut off again; B revokes a key A has cached, makes another change, and the change log is
    // purged down to its newest entry meanwhile: A cannot catch up, so it drops its cache.
    relay.cut(true);
    wait_store(&a, false).await;
    b.revoke_key(&token, &ws, &purged_id).await;
    new_key(&b, &token, &ws).await;
    sql(
        &pg.url(pg.port),
        "DELETE FROM changes WHERE seq < (SELECT max(seq) FROM changes)",
    )
    .await;
    relay.cut(false);
    wait_store(&a, true).await;
    assert_eq!(code(&a, &purged).await, "REVOKED");
    assert_eq!(code(&a, &cached).await, "VALID");
}

/// Requests sent this close to the stop or the start of PostgreSQL may see either side of it.
const EDGE: Duration = Duration::from_millis(500);

/// Issue #13: PostgreSQL stopped under load and started again, the node left running. 16 tasks
/// verify four keys the node has cached and 4 tasks create keys, without pause, throughout.
/// Every verify answers VALID, before, during and after the outage; a create answers 201 before,
/// 503 `store_unavailable` with `Retry-After` during (by when it was sent, leaving [`EDGE`] around
/// the stop and the start), 201 again once the node has noticed the store is back; no request is
/// left without an answer; and every key whose create answered 201 verifies VALID afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load() {
    let Some(pg) = Cluster::create() else {
        return;
    };
    let a = node(pg.url(pg.port), "10m").await;
    let (token, ws) = a.owner_with_workspace("owner@example.com").await;
    let mut cached = Vec::new();
    for _ in 0..4 {
        cached.push(new_key(&a, &token, &ws).await.1);
    }
    settle().await;
    for key in &cached {
        assert_eq!(code(&a, key).await, "VALID");
    }
    let (verify_url, create_url) = (
        a.url("/api/v1/keys/verify"),
        a.url(&format!("/api/v1/w/{ws}/keys")),
    );
    let writers = 4;
    let is_write = move |x: &Shot| x.task < writers;
    let load = Load::start(writers + 16, Duration::from_secs(10), move |http, task| {
        if task < writers {
            http.post(&create_url)
                .bearer_auth(&token)
                .json(&json!({"name": format!("made by {task}")}))
        } else {
            http.post(&verify_url)
                .json(&json!({"key": cached[task % cached.len()]}))
        }
    });
    let writes_after = |from: Duration, status: u16| {
        move |shots: &[Shot]| {
            shots
                .iter()
                .filter(|x| is_write(x) && x.sent > from && x.status == status)
                .count()
                >= 8
        }
    };
    load.wait_for(
        "keys made before the outage",
        Duration::from_secs(20),
        writes_after(Duration::ZERO, 201),
    )
    .await;

    let stopping = load.now();
    pg.stop();
    wait_store(&a, false).await;
    let known_down = load.now();
    load.wait_for(
        "writes refused during the outage",
        Duration::from_secs(20),
        writes_after(stopping + EDGE, 503),
    )
    .await;
    tokio::time::sleep(EDGE * 2).await;
    assert!(outage_hits(&a).await >= 1);

    let starting = load.now();
    pg.start().unwrap();
    wait_store(&a, true).await;
    let back = load.now();
    load.wait_for(
        "keys made after the outage",
        Duration::from_secs(20),
        writes_after(back + EDGE, 201),
    )
    .await;
    let shots = load.stop().await;

    let show = |x: &Shot| format!("{x:?}");
    let mut made = Vec::new();
    let mut refused_during = 0;
    for x in &shots {
        if !is_write(x) {
            assert_eq!(
                (x.status, x.code()),
                (200, "VALID"),
                "a cached key: {}",
                show(x)
            );
            continue;
        }
        // Sent and answered while the store was down (a write sent during the outage may wait
        // for a connection and be made once the store is back).
        let during = x.sent >= stopping + EDGE && x.sent + x.took + EDGE < starting;
        let after = x.sent >= back + EDGE;
        match x.status {
            201 => {
                assert!(
                    !during,
                    "a write acknowledged during the outage: {}",
                    show(x)
                );
                made.push(x.body["key"].as_str().unwrap().to_owned());
            }
            503 => {
                assert_eq!(x.code(), "store_unavailable", "{}", show(x));
                assert!(
                    x.retry_after.is_some(),
                    "503 without Retry-After: {}",
                    show(x)
                );
                assert!(
                    !after,
                    "a write refused after the store was back: {}",
                    show(x)
                );
                refused_during += usize::from(during);
                // Once the node knows the store is down, a write is refused at once rather
                // than after the store's connect timeout (5 s).
                if x.sent >= known_down + EDGE && x.sent + x.took + EDGE < starting {
                    assert!(
                        x.took < Duration::from_millis(500),
                        "a slow refusal while the store was known down: {}",
                        show(x)
                    );
                }
            }
            _ => panic!("a write: {}", show(x)),
        }
    }
    assert!(refused_during >= 8, "{refused_during}");
    // Nothing acknowledged was lost.
    for key in &made {
        assert_eq!(code(&a, key).await, "VALID", "a key made under load: {key}");
    }
    let slowest = |write: bool| {
        shots
            .iter()
            .filter(|x| is_write(x) == write)
            .map(|x| x.took)
            .max()
            .unwrap()
    };
    let quickest_refusal = shots
        .iter()
        .filter(|x| x.status == 503)
        .map(|x| x.took)
        .min()
        .unwrap();
    eprintln!(
        "{} requests, {} keys made, {refused_during} writes refused during the outage (the quickest in {quickest_refusal:?}); the node saw the store back {:?} after its start; slowest verify {:?}, slowest write {:?}",
        shots.len(),
        made.len(),
        back - starting,
        slowest(false),
        slowest(true),
    );
}

/// Issue #13: node A cut off from PostgreSQL under load while node B, still connected, revokes
/// a key A has cached. 16 tasks verify four cached keys on A throughout. A cannot know of the
/// revocation while it is cut off (its cache answers VALID), and once it reports the store back
/// it has applied it: every verify of that key sent after that is REVOKED; the other keys are
/// VALID throughout, and no verify fails or goes unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_made_during_an_outage_applies_when_the_store_is_back_under_load() {
    let Some(p) = Pair::start().await else {
        return;
    };
    let Pair {
        relay,
        a,
        b,
        token,
        ws,
        ..
    } = p;
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(new_key(&a, &token, &ws).await);
    }
    settle().await;
    for (_, key) in &keys {
        assert_eq!(code(&a, key).await, "VALID");
    }
    let revoked_id = keys[0].0.clone();
    // Each test node has a clock of its own, stopped when it started: B's is ahead of A's, and
    // A would take B's revocation for one scheduled later (as a rotation's grace makes them).
    // Within the cache's maximum age, so that the keys stay cached.
    a.clock.advance_secs(60);
    let secrets: Vec<String> = keys.into_iter().map(|(_, k)| k).collect();
    let url = a.url("/api/v1/keys/verify");
    let load = Load::start(16, Duration::from_secs(10), move |http, task| {
        http.post(&url)
            .json(&json!({"key": secrets[task % secrets.len()]}))
    });
    let is_revoked = |x: &Shot| x.task.is_multiple_of(4);
    load.wait_for(
        "verifies before the cut",
        Duration::from_secs(20),
        |shots| shots.len() >= 100,
    )
    .await;

    relay.cut(true);
    wait_store(&a, false).await;
    b.revoke_key(&token, &ws, &revoked_id).await;
    let revoked = load.now();
    tokio::time::sleep(EDGE * 2).await;
    let uncut = load.now();
    relay.cut(false);
    wait_store(&a, true).await;
    let back = load.now();
    load.wait_for(
        "verifies after the store is back",
        Duration::from_secs(20),
        |shots| {
            shots
                .iter()
                .filter(|x| x.sent > back && is_revoked(x))
                .count()
                >= 50
        },
    )
    .await;
    let shots = load.stop().await;

    let show = |x: &Shot| format!("{x:?} (revoked at {revoked:?}, A back at {back:?})");
    let (mut during, mut edge_refusals) = (0, 0);
    for x in &shots {
        let answer = (x.status, x.code());
        if !is_revoked(x) {
            assert_eq!(answer, (200, "VALID"), "{}", show(x));
        } else if x.sent > back {
            // Sent after A said the store is back: the revocation is applied.
            assert_eq!(answer, (200, "REVOKED"), "{}", show(x));
        } else if x.sent + x.took < uncut {
            // Answered while A was cut off: it could not know.
            assert_eq!(answer, (200, "VALID"), "{}", show(x));
            during += usize::from(x.sent > revoked);
        } else {
            // While A applies the change log: from its cache, or applied; or, evicted and not
            // yet read again while A still counts itself cut off, 503 as for any cache miss.
            match answer {
                (200, "VALID" | "REVOKED") => {}
                (503, "store_unavailable") => edge_refusals += 1,
                _ => panic!("{}", show(x)),
            }
        }
    }
    assert!(
        during >= 1,
        "no verify of the revoked key while A was cut off"
    );
    eprintln!(
        "{} verifies, {during} of the revoked key answered VALID from the cache while A was cut off, {edge_refusals} answered 503 as A came back",
        shots.len()
    );
}
