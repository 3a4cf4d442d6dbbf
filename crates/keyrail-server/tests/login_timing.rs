//! Its own test binary, so that no other test competes for the CPU while it measures: a login
//! for an unknown email must take as long as one for a known email (both run Argon2).

mod common;

use std::time::{Duration, Instant};

use common::TestServer;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn unknown_emails_take_as_long_as_known_ones() {
    let s = TestServer::start().await;
    s.signup("ada@example.com").await;
    s.signup("bob@example.com").await;
    // Warm up both paths, then alternate so that noise spreads evenly.
    s.login_as("bob@example.com", "wrong password here").await;
    s.login_as("ghost@example.com", "wrong password here").await;
    // Each known attempt is paired with the unknown one right after it and their ratio taken:
    // whatever else the machine (or the just-started server's background tasks) does shifts
    // both alike, where medians of each side could straddle such a shift.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..4 {
        // Two known accounts, two failures each: below the lockout.
        let who = if i % 2 == 0 {
            "ada@example.com"
        } else {
            "bob@example.com"
        };
        let t = Instant::now();
        assert_eq!(s.login_as(who, "wrong password here").await.0, 401);
        known.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(
            s.login_as(&format!("ghost{i}@example.com"), "wrong password here")
                .await
                .0,
            401
        );
        unknown.push(t.elapsed());
    }
    let mut ratios: Vec<f64> = known
        .iter()
        .zip(&unknown)
        .map(|(k, u)| u.as_secs_f64() / k.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = (ratios[1] + ratios[2]) / 2.0;
    assert!(
        (0.7..1.4).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}: ratios {ratios:?}"
    );
    let u = median(unknown);
    // Both really ran Argon2: milliseconds, not microseconds.
    assert!(u > Duration::from_millis(5), "{u:?}");
    s.stop().await;
}
