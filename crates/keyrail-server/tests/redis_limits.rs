//! Limits shared through Redis (`redis_url`), against real `redis-server` processes started here
//! (one per test, on a free port, no persistence): the Lua GCRA agrees with core's, two nodes
//! behind one address allow no more than the limit, and each `on_redis_error` mode does what it
//! says while Redis is down, and the node uses Redis again once it is back.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Load, RedisProc, Shot, TestServer, fixture, json};
use keyrail_core::Timestamp;
use keyrail_core::limits::{Rate, Span};
use keyrail_core::ratelimit::RateLimiter;
use keyrail_server::limiter::MemoryLimiter;
use keyrail_server::redis_limits::RedisLimiter;
use serde_json::{Value, json};

const MASTER: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

fn rate(count: u32, secs: u64) -> Rate {
    Rate {
        count,
        window: Span::from_secs(secs),
    }
}

/// The Lua script and core's `gcra()` (the in-process limiter) give the same decisions, field
/// for field, over long pseudo-random sequences: bursts, pauses, looks (cost 0), costs above the
/// limit, and a rate lowered and raised while state is stored.
#[tokio::test]
async fn lua_gcra_agrees_with_core() {
    let Some(redis) = RedisProc::start() else {
        return;
    };
    let shared = RedisLimiter::new(&redis.url(), "".as_ref()).unwrap();
    let local = MemoryLimiter::new();
    let rates = [
        rate(10, 60),
        rate(3, 1),
        rate(7, 3600),
        rate(1, 900),
        rate(100, 1),
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let t0 = 1_795_449_020_000i64;
    let (mut checked, mut passed, mut refused) = (0, 0, 0);
    for seq in 0..20 {
        let key = format!("agree:{seq}");
        let mut now = t0;
        let mut r = rates[seq % rates.len()];
        for step in 0..150 {
            now += match next(10) {
                0..=4 => 0,
                5..=7 => i64::try_from(next(2_000)).unwrap(),
                8 => i64::try_from(next(120_000)).unwrap(),
                _ => 1,
            };
            if step % 50 == 49 {
                // The rate changes while state is stored.
                r = rates[usize::try_from(next(5)).unwrap()];
            }
            let cost = match next(12) {
                0 => 0,
                1 => r.count + 1,
                2 => 2,
                _ => 1,
            };
            let at = Timestamp::from_millis(now);
            let want = local.check_sync(&key, r, cost, at);
            let got = shared.check(&key, r, cost, at).await.unwrap();
            assert_eq!(
                got, want,
                "sequence {seq} step {step}: rate {r:?}, cost {cost}"
            );
            checked += 1;
            if got.allowed {
                passed += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert_eq!(checked, 3000);
    assert!(
        passed > 500 && refused > 500,
        "{passed} passed, {refused} refused"
    );
}

/// The failure script and core's `FailureWindow` (the in-process tracker) block the same
/// sources at the same instants for the same time, over pseudo-random failure sequences.
#[tokio::test]
async fn failure_script_agrees_with_core() {
    use keyrail_core::ratelimit::FailurePolicy;
    use keyrail_server::limiter::FailureTracker;
    use keyrail_server::redis_limits::{OnRedisError, SharedFailures, SharedLimiter};
    use std::sync::Arc;

    let Some(redis) = RedisProc::start() else {
        return;
    };
    let policy = FailurePolicy {
        failures: rate(3, 60),
        block: Span::from_secs(120),
    };
    let limits = Arc::new(SharedLimiter::new(
        RedisLimiter::new(&redis.url(), "".as_ref()).unwrap(),
        Arc::new(MemoryLimiter::new()),
        OnRedisError::Deny,
    ));
    let shared = SharedFailures::new(limits, Arc::new(FailureTracker::new(policy)));
    let local = FailureTracker::new(policy);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut now = 1_795_449_020_000i64;
    let mut blocks = 0;
    for step in 0..600 {
        now += i64::try_from(next(40_000)).unwrap();
        let src = format!("198.51.100.{}", next(3));
        let at = Timestamp::from_millis(now);
        if next(2) == 0 {
            let already = local.is_blocked(&src, at).is_some();
            let want = local.record_failure(&src, at);
            let got = shared.record_failure(&src, at).await.unwrap();
            assert_eq!(
                got.map(|b| (b.retry_after, b.already)),
                want.map(|secs| (secs, already)),
                "step {step}: failure from {src}"
            );
            blocks += usize::from(want.is_some());
        } else {
            let want = local.is_blocked(&src, at);
            let got = shared.is_blocked(&src, at).await.unwrap();
            assert_eq!(got, want, "step {step}: is {src} blocked");
        }
    }
    assert!(blocks > 10, "{blocks}");
}

/// The per-principal limit checked with the block in one script: a blocked source is refused
/// with the block's time left and spends nothing; the limit is the same GCRA otherwise; the
/// block heard of is then known without asking (a node that learns it refuses at once).
#[tokio::test]
async fn a_gated_limit_spends_nothing_for_a_blocked_source() {
    use keyrail_core::ratelimit::FailurePolicy;
    use keyrail_server::limiter::FailureTracker;
    use keyrail_server::redis_limits::{Gated, OnRedisError, SharedFailures, SharedLimiter};
    use std::sync::Arc;

    let Some(redis) = RedisProc::start() else {
        return;
    };
    let policy = FailurePolicy {
        failures: rate(2, 60),
        block: Span::from_secs(120),
    };
    let node = || {
        let limits = Arc::new(SharedLimiter::new(
            RedisLimiter::new(&redis.url(), "".as_ref()).unwrap(),
            Arc::new(MemoryLimiter::new()),
            OnRedisError::Deny,
        ));
        SharedFailures::new(limits, Arc::new(FailureTracker::new(policy)))
    };
    let (a, b) = (node(), node());
    let t0 = 1_795_449_020_000i64;
    let at = |ms: i64| Timestamp::from_millis(t0 + ms);
    let limit = rate(3, 60);
    let decided = |g: Gated| match g {
        Gated::Decided(d) => d,
        Gated::Blocked(s) => panic!("blocked for {s} s"),
    };
    let d = decided(b.check_gated("src", "p", limit, 1, at(0)).await.unwrap());
    assert!(d.allowed && d.remaining == 2, "{d:?}");
    // Two failures on node A block the source; node B has heard nothing of it.
    assert_eq!(a.record_failure("src", at(1)).await.unwrap(), None);
    let started = a.record_failure("src", at(2)).await.unwrap().unwrap();
    assert_eq!((started.retry_after, started.already), (120, false));
    assert_eq!(b.is_blocked_here("src", at(3)), None);
    // B's next limited request finds the block in the same round trip, and spends nothing.
    for ms in [3, 1_003] {
        let g = b.check_gated("src", "p", limit, 1, at(ms)).await.unwrap();
        assert_eq!(g, Gated::Blocked(if ms == 3 { 120 } else { 119 }));
    }
    assert_eq!(b.is_blocked_here("src", at(2_000)), Some(119));
    // A failure on B now reports the block as the other node's.
    let again = b.record_failure("src", at(2_500)).await.unwrap().unwrap();
    assert!(again.already, "{again:?}");
    // Another source is not gated, and the limit was not spent by the refused requests.
    let d = decided(
        b.check_gated("other", "p", limit, 1, at(3_000))
            .await
            .unwrap(),
    );
    assert_eq!(d.remaining, 1, "{d:?}");
    // Once the block is over, the source passes again.
    let d = decided(
        b.check_gated("src", "p", limit, 1, at(122_002))
            .await
            .unwrap(),
    );
    assert!(d.allowed, "{d:?}");
}

/// Node A on a fresh PostgreSQL database and node B on the same, both on `redis`.
async fn two_nodes(
    redis: &RedisProc,
    tweak: impl Fn(&mut keyrail_server::Config) + Clone,
) -> Option<(TestServer, TestServer)> {
    let url = redis.url();
    let t = tweak.clone();
    let a = TestServer::start_with(
        Backend::Postgres,
        |c| {
            c.master_key = MASTER.into();
            c.redis_url = url.clone();
            t(c);
        },
        None,
    )
    .await?;
    let db = a.pg.as_ref().unwrap().url.clone();
    // One clock for both, as NTP gives real nodes.
    let clock = a.clock.clone();
    let b = TestServer::start_options(
        Backend::Sqlite,
        |c| {
            c.master_key = MASTER.into();
            c.database_url = db;
            c.redis_url = url.clone();
            tweak(c);
        },
        |o| o.clock = clock,
    )
    .await
    .unwrap();
    Some((a, b))
}

async fn new_limited_key(s: &TestServer, limit: u32) -> String {
    let (token, ws) = s.owner_with_workspace("owner@example.com").await;
    new_key(s, &token, &ws, Some(limit)).await
}

/// A new key in `ws`, limited to `limit` per hour when given; its secret.
async fn new_key(s: &TestServer, token: &str, ws: &str, limit: Option<u32>) -> String {
    let body = match limit {
        Some(limit) => {
            json!({"name": "limited", "rate_limit": {"limit": limit, "window_seconds": 3600}})
        }
        None => json!({"name": "unlimited"}),
    };
    let (status, key) = json(
        s.post_with(&format!("/api/v1/w/{ws}/keys"), token, &body)
            .await,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().unwrap().to_owned()
}

/// `n` concurrent verifies of `key`, alternating between the nodes; the codes answered.
async fn verify_spread(nodes: [&TestServer; 2], key: &str, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = nodes[i % 2];
        let http = s.http.clone();
        let url = s.url("/api/v1/keys/verify");
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .json(&json!({"key": key}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            if status == 200 {
                v["code"].as_str().unwrap().to_owned()
            } else {
                format!("{status} {}", v["code"].as_str().unwrap_or(""))
            }
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes
}

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

/// Issue #13: two nodes behind one address let 16 verifies through for a key limited to 10.
/// With one Redis, exactly 10 pass in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_allow_exactly_the_key_limit() {
    let Some(redis) = RedisProc::start() else {
        return;
    };
    let Some((a, b)) = two_nodes(&redis, |_| {}).await else {
        return;
    };
    let key = new_limited_key(&a, 10).await;
    let codes = verify_spread([&a, &b], &key, 64).await;
    assert_eq!(count(&codes, "VALID"), 10, "{codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 54, "{codes:?}");
    // The RateLimit figures come from the shared state: the other node sees it spent too.
    let resp = b
        .http
        .post(b.url("/api/v1/keys/verify"))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "RATE_LIMITED");
    assert_eq!(v["rate_limit"]["remaining"], 0);
    let (_, ready) = json(a.get("/readyz").await).await;
    assert_eq!(ready, json!({"status": "ready", "redis": "up"}));
    a.stop().await;
    b.stop().await;
}

/// `login_per_ip` holds across nodes: 5 per window from one address, whichever node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_login_limit() {
    let Some(redis) = RedisProc::start() else {
        return;
    };
    let Some((a, b)) = two_nodes(&redis, |c| {
        c.limits.login_per_ip = "5/15m".parse().unwrap();
    })
    .await
    else {
        return;
    };
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { &a } else { &b };
        let http = s.http.clone();
        let url = s.url("/api/v1/auth/login");
        tasks.push(tokio::spawn(async move {
            http.post(url)
                // A different address each time: the account lock (5 failures for one email,
                // kept in the store) must not be what answers 429.
                .json(&json!({"email": format!("nobody{i}@example.com"), "password": "wrong password 123"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut limited = 0;
    for t in tasks {
        if t.await.unwrap() == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 11);
    a.stop().await;
    b.stop().await;
}

/// The failed-authentication IP block holds across nodes: 10 failed credentials from one
/// address, spread over both nodes, block it on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_failed_auth_block() {
    let Some(redis) = RedisProc::start() else {
        return;
    };
    let Some((a, b)) = two_nodes(&redis, |_| {}).await else {
        return;
    };
    let status = |s: &TestServer| {
        let req = s
            .http
            .get(s.url("/api/v1/workspaces"))
            .bearer_auth("kr_not_a_key_at_all");
        async move {
            let resp = req.send().await.unwrap();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), retry)
        }
    };
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(status(node).await.0, 401, "failure {i}");
    }
    for node in [&a, &b] {
        let (code, retry) = status(node).await;
        assert_eq!(code, 429);
        // 15 minutes from the last failure (the two nodes share one clock).
        assert_eq!(retry.as_deref(), Some("900"));
    }
    a.stop().await;
    b.stop().await;
}

/// The block under concurrency: 64 failed credentials at once from one address, spread over
/// both nodes. Each failure is counted in one script, so exactly 10 are answered as failures
/// (401) and the 54 that come once the source is blocked get the block's 429, on either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_on_two_nodes_block_after_exactly_ten() {
    let Some(redis) = RedisProc::start() else {
        return;
    };
    let Some((a, b)) = two_nodes(&redis, |_| {}).await else {
        return;
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = if i % 2 == 0 { &a } else { &b };
        let req = s
            .http
            .get(s.url("/api/v1/workspaces"))
            .bearer_auth(format!("kr_not_a_key_{i}"));
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let retry = resp.headers().contains_key("retry-after");
            (resp.status().as_u16(), retry)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let n = |want: (u16, bool)| answers.iter().filter(|&&a| a == want).count();
    assert_eq!(n((401, false)), 10, "{answers:?}");
    assert_eq!(n((429, true)), 54, "{answers:?}");
    a.stop().await;
    b.stop().await;
}

async fn verify(s: &TestServer, key: &str) -> (u16, Value, Option<String>) {
    let resp = s
        .http
        .post(s.url("/api/v1/keys/verify"))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap(), retry)
}

async fn metric(s: &TestServer, name: &str) -> u64 {
    let text = s.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// A Redis of the test's own and one node (on SQLite) using it with `on_redis_error = mode`.
async fn node_with_redis(mode: &'static str) -> Option<(RedisProc, TestServer)> {
    let redis = RedisProc::start()?;
    let url = redis.url();
    let s = TestServer::start_with(
        Backend::Sqlite,
        |c| {
            c.redis_url = url;
            c.limits.on_redis_error = serde_json::from_value(json!(mode)).unwrap();
        },
        None,
    )
    .await
    .unwrap();
    Some((redis, s))
}

/// One node per mode, Redis killed under it and started again on the same port.
async fn outage(mode: &'static str) {
    let Some((mut redis, s)) = node_with_redis(mode).await else {
        return;
    };
    let key = new_limited_key(&s, 3).await;
    assert_eq!(verify(&s, &key).await.1["code"], "VALID");
    assert_eq!(metric(&s, "keyrail_redis_up").await, 1);

    redis.kill();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (status, v, retry) = verify(&s, &key).await;
        seen.push((status, v["code"].as_str().unwrap_or("").to_owned(), retry));
    }
    let codes: Vec<&str> = seen.iter().map(|(_, c, _)| c.as_str()).collect();
    match mode {
        // The local limiter has seen none of this key's requests: 3 pass, then it limits.
        "local" => assert_eq!(
            codes,
            [
                "VALID",
                "VALID",
                "VALID",
                "RATE_LIMITED",
                "RATE_LIMITED",
                "RATE_LIMITED"
            ]
        ),
        "allow" => assert_eq!(codes, ["VALID"; 6]),
        "deny" => {
            for (status, code, retry) in &seen {
                assert_eq!((*status, code.as_str()), (503, "store_unavailable"));
                assert_eq!(retry.as_deref(), Some("1"));
            }
        }
        _ => unreachable!(),
    }
    assert_eq!(metric(&s, "keyrail_redis_up").await, 0);
    // Counted per call that tried Redis: while it is down, one call per 200 ms tries it.
    assert!(metric(&s, "keyrail_redis_errors_total").await >= 1);
    let (status, ready) = json(s.get("/readyz").await).await;
    assert_eq!(
        (status, ready),
        (200, json!({"status": "ready", "redis": "degraded"}))
    );

    // Back on the same port (empty: no persistence): used again without a restart.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v, _) = verify(&s, &key).await;
        if status == 200 && metric(&s, "keyrail_redis_up").await == 1 {
            // The fresh Redis has no state for the key: a full bucket, counted in Redis.
            assert_eq!(v["code"], "VALID");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis not used again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, ready) = json(s.get("/readyz").await).await;
    assert_eq!(ready["redis"], "up");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_local_falls_back_to_this_node() {
    outage("local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_deny_refuses() {
    outage("deny").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_allow_lets_through() {
    outage("allow").await;
}

/// A Redis that hangs (stopped, its socket still open) never hangs requests: each Redis call
/// gives up after 250 ms, and while it is down only one call per 200 ms tries it, so a burst of
/// requests costs little; when it answers again it is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_does_not_hang_requests() {
    let Some(redis) = RedisProc::start() else {
        return;
    };
    let url = redis.url();
    let s = TestServer::start_with(Backend::Sqlite, |c| c.redis_url = url, None)
        .await
        .unwrap();
    let key = new_limited_key(&s, 1000).await;
    assert_eq!(verify(&s, &key).await.1["code"], "VALID");
    redis.signal("STOP");
    let started = Instant::now();
    for _ in 0..20 {
        let (status, v, _) = verify(&s, &key).await;
        assert_eq!((status, v["code"].as_str()), (200, Some("VALID")));
    }
    let took = started.elapsed();
    // 20 calls of 250 ms each would be 5 s.
    assert!(took < Duration::from_millis(2_500), "{took:?}");
    assert_eq!(metric(&s, "keyrail_redis_up").await, 0);
    redis.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s, "keyrail_redis_up").await == 0 {
        assert!(
            Instant::now() < deadline,
            "redis not used again within 10 s"
        );
        verify(&s, &key).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

/// `rediss://`: with `redis_ca_file` naming the Redis's certificate authority, two nodes share
/// the limit over TLS as over plain TCP; a node that does not trust the certificate never sends
/// a command (the handshake fails) and treats Redis as down (`on_redis_error`, `/readyz`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_are_shared_over_tls_with_the_configured_authority() {
    let Some(redis) = RedisProc::start_tls() else {
        return;
    };
    let ca = std::path::PathBuf::from(fixture("cert.pem"));
    let Some((a, b)) = two_nodes(&redis, move |c| c.redis_ca_file = ca.clone()).await else {
        return;
    };
    let key = new_limited_key(&a, 10).await;
    let codes = verify_spread([&a, &b], &key, 64).await;
    assert_eq!(count(&codes, "VALID"), 10, "{codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 54, "{codes:?}");
    assert_eq!(metric(&a, "keyrail_redis_up").await, 1);
    a.stop().await;
    b.stop().await;

    // The system's roots do not include the test authority.
    let url = redis.url();
    let s = TestServer::start_with(Backend::Sqlite, |c| c.redis_url = url, None)
        .await
        .unwrap();
    let key = new_limited_key(&s, 2).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            verify(&s, &key).await.1["code"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // `local` (the default): limited by this node alone.
    assert_eq!(got, ["VALID", "VALID", "RATE_LIMITED"]);
    assert_eq!(metric(&s, "keyrail_redis_up").await, 0);
    let (status, ready) = json(s.get("/readyz").await).await;
    assert_eq!(
        (status, ready["redis"].as_str()),
        (200, Some("degraded")),
        "{ready}"
    );
    s.stop().await;
}

/// Requests answered within this many seconds count as not hanging; each load request gives up
/// after it (and is then recorded as unanswered).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests sent this close to a kill or a restart may see either side of it.
const EDGE: Duration = Duration::from_millis(500);

/// The limit of the limited key in the load tests (per hour; the test clock does not move, so
/// nothing refills).
const LOAD_LIMIT: usize = 20;

/// Issue #13: Redis killed under load and started again on the same port, one node per mode.
/// 24 tasks verify two keys without pause (even tasks one limited to 20 per hour, odd tasks one
/// without a limit) throughout: Redis up, then SIGKILLed, then a new (empty) process on the same
/// port. Checked per phase, by when each request was sent (leaving [`EDGE`] around the kill and
/// the restart): what `on_redis_error` documents while Redis is down, the key without a limit
/// never touched by the outage, the gauge and `/readyz`, the shared limit in force again after the
/// restart without restarting the node, and no request ever left without an answer.
async fn outage_under_load(mode: &'static str) {
    let Some((mut redis, s)) = node_with_redis(mode).await else {
        return;
    };
    let (token, ws) = s.owner_with_workspace("owner@example.com").await;
    let limited = new_key(&s, &token, &ws, Some(u32::try_from(LOAD_LIMIT).unwrap())).await;
    let unlimited = new_key(&s, &token, &ws, None).await;
    let url = s.url("/api/v1/keys/verify");
    let load = Load::start(24, CLIENT_TIMEOUT, move |http, task| {
        let key = if task.is_multiple_of(2) {
            &limited
        } else {
            &unlimited
        };
        http.post(&url).json(&json!({"key": key}))
    });
    let is_limited = |shot: &Shot| shot.task.is_multiple_of(2);
    let refused_after = |from: Duration| {
        move |shots: &[Shot]| {
            shots
                .iter()
                .any(|x| x.task.is_multiple_of(2) && x.sent > from && x.code() == "RATE_LIMITED")
        }
    };

    // Up: the shared limit is spent.
    load.wait_for(
        "the limit spent in Redis",
        Duration::from_secs(20),
        refused_after(Duration::ZERO),
    )
    .await;
    assert_eq!(metric(&s, "keyrail_redis_up").await, 1);
    let killed = load.now();
    redis.kill();

    // Down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s, "keyrail_redis_up").await != 0 {
        assert!(
            Instant::now() < deadline,
            "keyrail_redis_up still 1 10 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metric(&s, "keyrail_redis_errors_total").await >= 1);
    let (status, ready) = json(s.get("/readyz").await).await;
    assert_eq!(
        (status, ready),
        (200, json!({"status": "ready", "redis": "degraded"}))
    );
    // Long enough for every task to send requests well inside the outage; under `local`, until
    // this node's own limiter has spent the limit too.
    tokio::time::sleep(EDGE * 3).await;
    if mode == "local" {
        load.wait_for(
            "the local limiter refusing",
            Duration::from_secs(20),
            refused_after(killed + EDGE),
        )
        .await;
    }
    let restarting = load.now();
    redis.restart();
    let restarted = load.now();

    // Back: used again without restarting the node, and the limit holds again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s, "keyrail_redis_up").await != 1 {
        assert!(
            Instant::now() < deadline,
            "Redis not used again within 10 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = load.now();
    load.wait_for(
        "the limit spent in the new Redis",
        Duration::from_secs(20),
        refused_after(back + EDGE),
    )
    .await;
    let (_, ready) = json(s.get("/readyz").await).await;
    assert_eq!(ready["redis"], "up");
    let shots = load.stop().await;
    s.stop().await;

    let show = |x: &Shot| format!("{x:?}");
    for x in &shots {
        assert_ne!(
            x.status,
            0,
            "no answer within {CLIENT_TIMEOUT:?}: {}",
            show(x)
        );
        let answer = (x.status, x.code());
        if !is_limited(x) {
            assert_eq!(
                answer,
                (200, "VALID"),
                "the key without a limit: {}",
                show(x)
            );
            continue;
        }
        match answer {
            (200, "VALID" | "RATE_LIMITED") => {}
            (503, "store_unavailable") if mode == "deny" => {
                assert!(
                    x.retry_after.is_some(),
                    "503 without Retry-After: {}",
                    show(x)
                );
            }
            _ => panic!("{mode}: {}", show(x)),
        }
    }
    let limited: Vec<&Shot> = shots.iter().filter(|x| is_limited(x)).collect();
    let valid = |from: Duration, to: Duration| {
        limited
            .iter()
            .filter(|x| x.sent >= from && x.sent < to && x.code() == "VALID")
            .count()
    };
    let down: Vec<&&Shot> = limited
        .iter()
        .filter(|x| x.sent >= killed + EDGE && x.sent + EDGE < restarting)
        .collect();
    assert!(
        down.len() >= 24,
        "{} requests during the outage",
        down.len()
    );
    let all = Duration::MAX;
    match mode {
        // Per node while Redis is down: this node's limiter lets 20 through, then refuses; after
        // the restart Redis (empty) does the same again. So 3 times the limit in all, exactly.
        "local" => {
            assert!(valid(killed + EDGE, restarting) <= LOAD_LIMIT);
            assert!(down.iter().any(|x| x.code() == "RATE_LIMITED"));
            assert_eq!(valid(Duration::ZERO, all), 3 * LOAD_LIMIT);
        }
        // Limited work is refused at once while Redis is down; twice the limit in all.
        "deny" => {
            for x in &down {
                assert_eq!(
                    (x.status, x.code()),
                    (503, "store_unavailable"),
                    "{}",
                    show(x)
                );
                assert!(x.took < Duration::from_secs(1), "{}", show(x));
            }
            assert_eq!(valid(Duration::ZERO, all), 2 * LOAD_LIMIT);
        }
        "allow" => {
            for x in &down {
                assert_eq!(x.code(), "VALID", "{}", show(x));
            }
        }
        _ => unreachable!(),
    }
    // After the restart the limit holds again (the new Redis starts empty: a full bucket).
    assert!(valid(back + EDGE, all) <= LOAD_LIMIT);
    let slowest = shots.iter().map(|x| x.took).max().unwrap();
    eprintln!(
        "{mode}: {} requests, {} during the outage; restart took {:?}, Redis used again {:?} after it; slowest answer {slowest:?}",
        shots.len(),
        down.len(),
        restarted - restarting,
        back - restarted,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_with_local() {
    outage_under_load("local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_with_deny() {
    outage_under_load("deny").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_with_allow() {
    outage_under_load("allow").await;
}
