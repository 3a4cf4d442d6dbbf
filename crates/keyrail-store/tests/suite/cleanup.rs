//! The background cleanup's deletes: what no one needs goes, in batches of at most `limit` rows;
//! what is live stays. Each check runs on a fresh database of its own: they count every row they
//! delete, and a purge takes whatever in its table qualifies.

use keyrail_core::Store;
use keyrail_core::model::{LoginAttempt, RefreshOutcome};
use keyrail_core::store::StoreResult;

use crate::fixtures::*;
use crate::sessions::session;

/// The batch size of these checks: small, so that every purge takes several batches.
const LIMIT: u32 = 2;
const DAY: i64 = 86_400_000;

/// Runs one purge batch after another until one comes back short, as the cleanup does; the
/// count of each batch.
async fn drain<F, Fut>(mut batch: F) -> Vec<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<u64>>,
{
    let mut counts = Vec::new();
    loop {
        let n = batch().await.unwrap();
        assert!(n <= u64::from(LIMIT), "a batch deleted {n} rows");
        counts.push(n);
        if n < u64::from(LIMIT) {
            return counts;
        }
    }
}

/// How many checks [`run_check`] has.
pub(crate) const CHECKS: usize = 5;

/// Runs check `i` (`0..CHECKS`) against a store with a fresh database.
pub(crate) async fn run_check(i: usize, store: &dyn Store) {
    match i {
        0 => change_log(store).await,
        1 => sessions_and_refresh_tokens(store).await,
        2 => login_throttle(store).await,
        3 => mfa_challenges(store).await,
        _ => password_resets(store).await,
    }
}

/// Entries written before the cut go, oldest first, except the newest entry of all: the log
/// keeps telling where it stands, and seq numbers are never reused.
async fn change_log(store: &dyn Store) {
    assert_eq!(store.purge_changes(ts(100 * DAY), LIMIT).await.unwrap(), 0);
    let u = new_user(store, "cleanup-changes@example.com", 0).await;
    let mut sessions = Vec::new();
    for (i, revoked_at) in [DAY, DAY, DAY + 1, 2 * DAY, 9 * DAY]
        .into_iter()
        .enumerate()
    {
        let s = session(&u, i as i64, 30 * DAY);
        store
            .insert_session(
                &s,
                &digest(&format!("changes-{i}")),
                None,
                &audit_of("user.login"),
            )
            .await
            .unwrap();
        assert!(
            store
                .revoke_session(&u.id, &s.id, ts(revoked_at))
                .await
                .unwrap()
        );
        sessions.push(s);
    }
    let all = store.changes_after(0, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    let latest = store.latest_change().await.unwrap();

    assert_eq!(
        drain(|| store.purge_changes(ts(3 * DAY), LIMIT)).await,
        [2, 2, 0]
    );
    assert_eq!(store.changes_after(0, 100).await.unwrap(), all[4..]);
    // The newest entry stays, however old.
    assert_eq!(
        drain(|| store.purge_changes(ts(100 * DAY), LIMIT)).await,
        [0]
    );
    assert_eq!(store.latest_change().await.unwrap(), latest);
    assert_eq!(store.changes_after(0, 100).await.unwrap(), all[4..]);

    // A new entry comes after every deleted one; then the older one can go.
    let s = session(&u, 10, 30 * DAY);
    store
        .insert_session(&s, &digest("changes-new"), None, &audit_of("user.login"))
        .await
        .unwrap();
    store
        .revoke_session(&u.id, &s.id, ts(10 * DAY))
        .await
        .unwrap();
    let newest = store.latest_change().await.unwrap();
    assert!(newest > latest);
    assert_eq!(
        drain(|| store.purge_changes(ts(100 * DAY), LIMIT)).await,
        [1]
    );
    let left = store.changes_after(0, 100).await.unwrap();
    assert_eq!(
        (left.len(), left[0].seq, left[0].subject.as_str()),
        (1, newest, s.id.as_str())
    );
}

/// Refresh tokens go as soon as their session is dead (revoked or expired); a live session keeps
/// all of its tokens, spent ones included, for reuse detection. Dead sessions go once they have
/// been dead since before the cut.
async fn sessions_and_refresh_tokens(store: &dyn Store) {
    let u = new_user(store, "cleanup-sessions@example.com", 0).await;
    let now = 10 * DAY;
    let cut = 3 * DAY;
    let month = 30 * DAY;
    // Live, rotated once: a spent token and a live one.
    let live = session(&u, 0, month);
    store
        .insert_session(&live, &digest("live-0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh(&digest("live-0"), &digest("live-1"), ts(100))
            .await
            .unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    // Revoked before the cut, after two rotations: three tokens.
    let revoked_old = session(&u, 1, month);
    store
        .insert_session(
            &revoked_old,
            &digest("rev-old-0"),
            None,
            &audit_of("user.login"),
        )
        .await
        .unwrap();
    for (old, new) in [("rev-old-0", "rev-old-1"), ("rev-old-1", "rev-old-2")] {
        store
            .rotate_refresh(&digest(old), &digest(new), ts(200))
            .await
            .unwrap();
    }
    store
        .revoke_session(&u.id, &revoked_old.id, ts(DAY))
        .await
        .unwrap();
    // Revoked at the cut exactly, and after it: kept, without tokens.
    let revoked_at_cut = session(&u, 2, month);
    let revoked_new = session(&u, 3, month);
    for (s, at, token) in [
        (&revoked_at_cut, cut, "rev-cut-0"),
        (&revoked_new, 9 * DAY, "rev-new-0"),
    ] {
        store
            .insert_session(s, &digest(token), None, &audit_of("user.login"))
            .await
            .unwrap();
        store.revoke_session(&u.id, &s.id, ts(at)).await.unwrap();
    }
    // Expired before the cut; expired after it (kept, without tokens).
    let expired_old = session(&u, 4, DAY);
    let expired_new = session(&u, 5 * DAY, 4 * DAY);
    store
        .insert_session(
            &expired_old,
            &digest("exp-old-0"),
            None,
            &audit_of("user.login"),
        )
        .await
        .unwrap();
    store
        .insert_session(
            &expired_new,
            &digest("exp-new-0"),
            None,
            &audit_of("user.login"),
        )
        .await
        .unwrap();

    // Seven dead tokens: rev-old (3), rev-cut, rev-new, exp-old, exp-new.
    assert_eq!(
        drain(|| store.purge_refresh_tokens(ts(now), LIMIT)).await,
        [2, 2, 2, 1]
    );
    for token in [
        "rev-old-2",
        "rev-cut-0",
        "rev-new-0",
        "exp-old-0",
        "exp-new-0",
    ] {
        assert!(
            matches!(
                store
                    .rotate_refresh(&digest(token), &digest("x"), ts(now))
                    .await
                    .unwrap(),
                RefreshOutcome::Unknown
            ),
            "{token}"
        );
    }
    assert_eq!(drain(|| store.purge_sessions(ts(cut), LIMIT)).await, [2, 0]);
    for gone in [&revoked_old, &expired_old] {
        assert!(store.session_by_id(&gone.id).await.unwrap().is_none());
    }
    for kept in [&live, &revoked_at_cut, &revoked_new, &expired_new] {
        assert!(store.session_by_id(&kept.id).await.unwrap().is_some());
    }

    // The live session rotates on, and its spent token still reveals a reuse.
    assert!(matches!(
        store
            .rotate_refresh(&digest("live-1"), &digest("live-2"), ts(now))
            .await
            .unwrap(),
        RefreshOutcome::Rotated(_)
    ));
    assert_eq!(
        drain(|| store.purge_refresh_tokens(ts(now), LIMIT)).await,
        [0]
    );
    assert!(matches!(
        store
            .rotate_refresh(&digest("live-0"), &digest("evil"), ts(now))
            .await
            .unwrap(),
        RefreshOutcome::Reused(id) if id == live.id
    ));
    // Now dead, its three tokens go; the session itself stays for the retention.
    assert_eq!(
        drain(|| store.purge_refresh_tokens(ts(now), LIMIT)).await,
        [2, 1]
    );
    assert_eq!(drain(|| store.purge_sessions(ts(cut), LIMIT)).await, [0]);
    assert_eq!(
        drain(|| store.purge_sessions(ts(now + 1), LIMIT)).await,
        [2, 2, 0]
    );
}

/// A throttle row goes once its window is over and it is not locked: the next attempt would
/// start afresh anyway.
async fn login_throttle(store: &dyn Store) {
    let (window, now) = (1000, 10_000);
    let reserve = |key: &'static str, at: i64| async move {
        let got = store
            .reserve_login_attempt(&digest(key), ts(at), ts(at - window), 5)
            .await
            .unwrap();
        assert!(matches!(got, LoginAttempt::Reserved(_)), "{key}: {got:?}");
    };
    for key in ["old-1", "old-2", "old-3", "locked", "lock-over"] {
        reserve(key, 0).await;
    }
    store
        .lock_login(
            &digest("locked"),
            ts(0),
            ts(now + 1),
            &audit_of("user.locked"),
        )
        .await
        .unwrap();
    store
        .lock_login(
            &digest("lock-over"),
            ts(0),
            ts(now),
            &audit_of("user.locked"),
        )
        .await
        .unwrap();
    // A window starting exactly at the cut still counts (as for reserve_login_attempt).
    reserve("edge", now - window).await;
    reserve("live", now - 10).await;

    assert_eq!(
        drain(|| store.purge_login_throttle(ts(now - window), ts(now), LIMIT)).await,
        [2, 2, 0]
    );
    for gone in ["old-1", "old-2", "old-3", "lock-over"] {
        assert_eq!(store.login_throttle(&digest(gone)).await.unwrap(), None);
    }
    for kept in ["locked", "edge", "live"] {
        assert!(store.login_throttle(&digest(kept)).await.unwrap().is_some());
    }
}

/// Used or expired challenges go; live ones stay.
async fn mfa_challenges(store: &dyn Store) {
    let u = new_user(store, "cleanup-mfa@example.com", 0).await;
    let pw = u.password_hash.expose();
    let now = 5000;
    for (label, expires) in [
        ("expired", 100),
        ("at-now", now),
        ("used", 9000),
        ("live", 9000),
    ] {
        assert!(
            store
                .insert_mfa_challenge(&digest(label), &u.id, pw, ts(expires))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .consume_mfa_challenge(&digest("used"), ts(200))
            .await
            .unwrap()
    );
    assert_eq!(
        drain(|| store.purge_mfa_challenges(ts(now), LIMIT)).await,
        [2, 1]
    );
    assert_eq!(
        store
            .mfa_challenge_user(&digest("live"), ts(now))
            .await
            .unwrap(),
        Some(u.id.clone())
    );
    assert_eq!(
        drain(|| store.purge_mfa_challenges(ts(now), LIMIT)).await,
        [0]
    );
    assert_eq!(
        drain(|| store.purge_mfa_challenges(ts(9000), LIMIT)).await,
        [1]
    );
}

/// Used or expired reset tokens go; live ones stay.
async fn password_resets(store: &dyn Store) {
    let used_by = new_user(store, "cleanup-reset@example.com", 0).await;
    let other = new_user(store, "cleanup-reset-other@example.com", 0).await;
    let now = 5000;
    for (label, user, expires) in [
        ("r-expired", &used_by, 100),
        ("r-at-now", &other, now),
        ("r-used", &used_by, 9000),
        ("r-live", &other, 9000),
    ] {
        store
            .insert_password_reset(&digest(label), &user.id, ts(expires))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .consume_password_reset(
                &digest("r-used"),
                "$argon2id$reset",
                ts(200),
                &audit_of("user.password_reset")
            )
            .await
            .unwrap(),
        Some(used_by.id.clone())
    );
    assert_eq!(
        drain(|| store.purge_password_resets(ts(now), LIMIT)).await,
        [2, 1]
    );
    assert_eq!(
        store
            .password_reset_user(&digest("r-live"), ts(now))
            .await
            .unwrap(),
        Some(other.id.clone())
    );
    assert_eq!(
        drain(|| store.purge_password_resets(ts(9000), LIMIT)).await,
        [1]
    );
}
