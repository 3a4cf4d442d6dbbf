//! Users, MFA and login throttling.

use keyrail_core::id::UserId;
use std::sync::Arc;

use keyrail_core::model::{LoginAttempt, LoginThrottle, MfaState, Page};
use keyrail_core::{Store, StoreError, Timestamp};

use crate::fixtures::*;

pub(crate) async fn users(store: &dyn Store) {
    let mut alice = user("alice@example.com", "Alice Ä. Example", 0);
    alice.mfa_enabled = true;
    alice.updated_at = ts(7);
    let mut root = user("root@example.com", "Root", 1);
    root.superuser = true;
    store.insert_user(&alice).await.unwrap();
    store.insert_user(&root).await.unwrap();

    let by_id = store
        .user_by_id(&alice.id)
        .await
        .unwrap()
        .expect("alice by id");
    assert_same_user(&by_id, &alice);
    let by_email = store
        .user_by_email("alice@example.com")
        .await
        .unwrap()
        .expect("alice by email");
    assert_same_user(&by_email, &alice);
    assert_same_user(&store.user_by_id(&root.id).await.unwrap().unwrap(), &root);

    assert!(store.user_by_id(&UserId::new()).await.unwrap().is_none());
    assert!(
        store
            .user_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );

    // Same email, new id.
    let dup = user("alice@example.com", "Other Alice", 2);
    assert_conflict(store.insert_user(&dup).await, "user email");
    // Same id, new email.
    let mut same_id = user("alice2@example.com", "Alice 2", 2);
    same_id.id = alice.id.clone();
    assert_conflict(store.insert_user(&same_id).await, "user id");
    // Neither write left anything behind.
    assert!(
        store
            .user_by_email("alice2@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.user_by_id(&alice.id).await.unwrap().unwrap().name,
        "Alice Ä. Example"
    );
}

pub(crate) async fn list_users_pages(store: &dyn Store) {
    for i in 0..5 {
        store
            .insert_user(&user(&format!("page{i}@example.com"), "Pager", 10 + i))
            .await
            .unwrap();
    }
    let all = store.list_users(&Page::first(100)).await.unwrap();
    assert_eq!(all.len(), 7);
    let ids: Vec<String> = all.iter().map(|u| u.id.to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "users are listed in id order");

    let mut seen = Vec::new();
    let mut page = Page::first(3);
    let mut sizes = Vec::new();
    loop {
        let got = store.list_users(&page).await.unwrap();
        sizes.push(got.len());
        let Some(last) = got.last() else { break };
        page.after = Some(last.id.to_string());
        seen.extend(got.iter().map(|u| u.id.to_string()));
    }
    assert_eq!(sizes, [3, 3, 1, 0]);
    assert_eq!(seen, ids);

    assert!(store.list_users(&Page::first(0)).await.unwrap().is_empty());
    let after_last = Page {
        limit: 10,
        after: Some(ids.last().unwrap().clone()),
    };
    assert!(store.list_users(&after_last).await.unwrap().is_empty());
}

pub(crate) async fn user_updates(store: &dyn Store) {
    let u = new_user(store, "updates@example.com", 2000).await;
    assert!(
        store
            .set_password_hash(&u.id, "$argon2id$v=19$new", ts(2001))
            .await
            .unwrap()
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash.expose(), "$argon2id$v=19$new");
    assert_eq!(got.updated_at, ts(2001));
    assert_eq!(got.created_at, u.created_at);
    assert_eq!(got.name, u.name);

    assert!(
        store
            .set_user_name(&u.id, "Renamed Ü", ts(2002))
            .await
            .unwrap()
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.name, "Renamed Ü");
    assert_eq!(got.updated_at, ts(2002));
    assert_eq!(got.password_hash.expose(), "$argon2id$v=19$new");

    assert!(store.set_superuser(&u.id, true, ts(2004)).await.unwrap());
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(got.superuser);
    assert_eq!(got.updated_at, ts(2004));
    assert!(store.set_superuser(&u.id, false, ts(2005)).await.unwrap());
    assert!(!store.user_by_id(&u.id).await.unwrap().unwrap().superuser);

    let nobody = UserId::new();
    assert!(
        !store
            .set_password_hash(&nobody, "$argon2id$x", ts(2003))
            .await
            .unwrap()
    );
    assert!(!store.set_superuser(&nobody, true, ts(2003)).await.unwrap());
    assert!(!store.set_user_name(&nobody, "X", ts(2003)).await.unwrap());
}

fn assert_mfa(state: &MfaState, secret: Option<&str>, pending: Option<&str>, step: Option<i64>) {
    assert_eq!(state.secret.as_deref(), secret);
    assert_eq!(state.pending.as_deref(), pending);
    assert_eq!(state.last_step, step);
}

pub(crate) async fn mfa(store: &dyn Store) {
    let u = new_user(store, "mfa@example.com", 3000).await;
    let other = new_user(store, "mfa-other@example.com", 3000).await;
    let nobody = UserId::new();
    assert_mfa(&store.mfa_state(&u.id).await.unwrap(), None, None, None);
    // A user that does not exist has no MFA; writes to it fail.
    assert_mfa(&store.mfa_state(&nobody).await.unwrap(), None, None, None);
    assert!(matches!(
        store.set_mfa_pending(&nobody, Some("sealed")).await,
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        store
            .enable_mfa(
                &nobody,
                "s",
                1,
                &[digest("n1")],
                ts(3001),
                &audit_of("user.mfa_enabled")
            )
            .await,
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        store.disable_mfa(&nobody, ts(3001)).await,
        Err(StoreError::Other(_))
    ));
    assert!(!store.advance_totp_step(&nobody, 1).await.unwrap());
    assert_eq!(store.unused_recovery_codes(&nobody).await.unwrap(), 0);

    // Pending secret: set, replace, clear; MFA stays off meanwhile.
    store
        .set_mfa_pending(&u.id, Some("sealed-pending-1"))
        .await
        .unwrap();
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        None,
        Some("sealed-pending-1"),
        None,
    );
    store.set_mfa_pending(&u.id, None).await.unwrap();
    assert_mfa(&store.mfa_state(&u.id).await.unwrap(), None, None, None);
    store
        .set_mfa_pending(&u.id, Some("sealed-pending-2"))
        .await
        .unwrap();
    assert!(!store.user_by_id(&u.id).await.unwrap().unwrap().mfa_enabled);

    // Enable: secret set, pending cleared, last step recorded, codes stored.
    let codes: Vec<String> = (0..3).map(|i| digest(&format!("code{i}"))).collect();
    store
        .enable_mfa(
            &u.id,
            "sealed-secret-1",
            1000,
            &codes,
            ts(3002),
            &audit_of("user.mfa_enabled"),
        )
        .await
        .unwrap();
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        Some("sealed-secret-1"),
        None,
        Some(1000),
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(got.mfa_enabled);
    assert_eq!(got.updated_at, ts(3002));
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 3);
    assert_eq!(store.unused_recovery_codes(&other.id).await.unwrap(), 0);

    // TOTP steps: only a later step passes; a replay (same or earlier step) does not.
    assert!(!store.advance_totp_step(&u.id, 1000).await.unwrap());
    assert!(!store.advance_totp_step(&u.id, 999).await.unwrap());
    assert!(store.advance_totp_step(&u.id, 1001).await.unwrap());
    assert!(!store.advance_totp_step(&u.id, 1001).await.unwrap());
    assert!(store.advance_totp_step(&u.id, 1005).await.unwrap());
    assert_eq!(store.mfa_state(&u.id).await.unwrap().last_step, Some(1005));
    // With no step stored yet, any step passes once.
    assert!(store.advance_totp_step(&other.id, 7).await.unwrap());
    assert!(!store.advance_totp_step(&other.id, 7).await.unwrap());

    // Recovery codes: each works once, only for its own user.
    assert!(
        !store
            .use_recovery_code(&other.id, &codes[0], ts(3003))
            .await
            .unwrap()
    );
    assert!(
        store
            .use_recovery_code(&u.id, &codes[0], ts(3003))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&u.id, &codes[0], ts(3004))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&u.id, &digest("not a code"), ts(3004))
            .await
            .unwrap()
    );
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 2);

    // Enabling again replaces the codes and the step.
    let new_codes = vec![digest("fresh0"), digest("fresh1")];
    store
        .enable_mfa(
            &u.id,
            "sealed-secret-2",
            2000,
            &new_codes,
            ts(3005),
            &audit_of("user.mfa_enabled"),
        )
        .await
        .unwrap();
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        Some("sealed-secret-2"),
        None,
        Some(2000),
    );
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 2);
    assert!(
        !store
            .use_recovery_code(&u.id, &codes[1], ts(3006))
            .await
            .unwrap()
    );
    // The same code may serve two users.
    store
        .enable_mfa(
            &other.id,
            "sealed-other",
            8,
            &new_codes,
            ts(3006),
            &audit_of("user.mfa_enabled"),
        )
        .await
        .unwrap();
    assert_eq!(store.unused_recovery_codes(&other.id).await.unwrap(), 2);

    // A duplicate code hash fails the whole enable: nothing changes.
    store
        .set_mfa_pending(&u.id, Some("sealed-pending-3"))
        .await
        .unwrap();
    let dup = vec![digest("dup"), digest("dup")];
    assert_conflict(
        store
            .enable_mfa(
                &u.id,
                "sealed-secret-3",
                3000,
                &dup,
                ts(3007),
                &audit_of("user.mfa_enabled"),
            )
            .await,
        "recovery code",
    );
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        Some("sealed-secret-2"),
        Some("sealed-pending-3"),
        Some(2000),
    );
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 2);
    assert_eq!(
        store.user_by_id(&u.id).await.unwrap().unwrap().updated_at,
        ts(3005)
    );

    // Disable: everything goes, the codes too; the other user keeps theirs.
    store.disable_mfa(&u.id, ts(3008)).await.unwrap();
    assert_mfa(&store.mfa_state(&u.id).await.unwrap(), None, None, None);
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(!got.mfa_enabled);
    assert_eq!(got.updated_at, ts(3008));
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 0);
    assert!(
        !store
            .use_recovery_code(&u.id, &new_codes[0], ts(3009))
            .await
            .unwrap()
    );
    assert_eq!(store.unused_recovery_codes(&other.id).await.unwrap(), 2);
    assert!(
        store
            .user_by_id(&other.id)
            .await
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
    // Disabling again is harmless.
    store.disable_mfa(&u.id, ts(3010)).await.unwrap();
}

/// Many uses of one TOTP step at once: exactly one passes.
pub(crate) async fn concurrent_totp_uses_pass_once(store: &dyn Store) {
    let u = new_user(store, "totp-race@example.com", 3100).await;
    store
        .enable_mfa(
            &u.id,
            "sealed",
            10,
            &[],
            ts(3100),
            &audit_of("user.mfa_enabled"),
        )
        .await
        .unwrap();
    let results = join_all((0..10).map(|_| store.advance_totp_step(&u.id, 11))).await;
    let passed = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(passed, 1);
    assert_eq!(store.mfa_state(&u.id).await.unwrap().last_step, Some(11));
}

/// A throttle state; `locked_until` `None` is "never locked" (stored as 0).
fn throttle(failures: u32, window_start: i64, locked_until: Option<i64>) -> LoginThrottle {
    LoginThrottle {
        failures,
        window_start: ts(window_start),
        locked_until: locked_until.map_or(Timestamp::from_millis(0), ts),
    }
}

pub(crate) async fn login_throttling(store: &dyn Store) {
    let key = digest("throttle@example.com");
    let other = digest("throttle-other@example.com");
    assert_eq!(store.login_throttle(&key).await.unwrap(), None);

    let (window, limit) = (1000, 3);
    let reserve = |key: String, at: i64| async move {
        store
            .reserve_login_attempt(&key, ts(at), ts(at - window), limit)
            .await
            .unwrap()
    };
    use LoginAttempt::{Refused, Reserved};
    assert_eq!(
        reserve(key.clone(), 0).await,
        Reserved(throttle(1, 0, None))
    );
    assert_eq!(
        reserve(key.clone(), 10).await,
        Reserved(throttle(2, 0, None))
    );
    // Exactly at the window's edge the window still counts; then it is full, and a refusal
    // counts nothing.
    assert_eq!(
        reserve(key.clone(), window).await,
        Reserved(throttle(3, 0, None))
    );
    assert_eq!(
        reserve(key.clone(), window).await,
        Refused(throttle(3, 0, None))
    );
    assert_eq!(
        store.login_throttle(&key).await.unwrap(),
        Some(throttle(3, 0, None))
    );
    // Past it, a new window starts with this attempt.
    assert_eq!(
        reserve(key.clone(), window + 1).await,
        Reserved(throttle(1, window + 1, None))
    );
    assert_eq!(
        reserve(key.clone(), window + 2).await,
        Reserved(throttle(2, window + 1, None))
    );

    // Other keys are counted apart.
    assert_eq!(
        reserve(other.clone(), 5).await,
        Reserved(throttle(1, 5, None))
    );
    assert_eq!(
        store.login_throttle(&key).await.unwrap().unwrap().failures,
        2
    );

    // Locking takes the window it names only; it resets the count and keeps the window.
    assert!(
        !store
            .lock_login(&key, ts(0), ts(9000), &audit_of("user.locked"))
            .await
            .unwrap(),
        "a past window"
    );
    let unseen = digest("never-tried@example.com");
    assert!(
        !store
            .lock_login(&unseen, ts(0), ts(9000), &audit_of("user.locked"))
            .await
            .unwrap()
    );
    assert_eq!(store.login_throttle(&unseen).await.unwrap(), None);
    assert!(
        store
            .lock_login(&key, ts(window + 1), ts(9000), &audit_of("user.locked"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.login_throttle(&key).await.unwrap(),
        Some(throttle(0, window + 1, Some(9000)))
    );
    // While locked, every attempt is refused, in a later window too; from the lock's end a new
    // window starts.
    assert_eq!(
        reserve(key.clone(), window + 3).await,
        Refused(throttle(0, window + 1, Some(9000)))
    );
    assert_eq!(
        reserve(key.clone(), 8999).await,
        Refused(throttle(0, window + 1, Some(9000)))
    );
    assert_eq!(
        reserve(key.clone(), 9000).await,
        Reserved(throttle(1, 9000, Some(9000)))
    );

    // Clearing forgets everything about the key, and only that key.
    store.clear_login_throttle(&key).await.unwrap();
    assert_eq!(store.login_throttle(&key).await.unwrap(), None);
    store.clear_login_throttle(&key).await.unwrap();
    assert_eq!(
        store
            .login_throttle(&other)
            .await
            .unwrap()
            .unwrap()
            .failures,
        1
    );
    assert_eq!(
        reserve(key.clone(), 9001).await,
        Reserved(throttle(1, 9001, None))
    );
    // A window cleared by a correct password is not locked by a late failure of it.
    assert!(
        !store
            .lock_login(&key, ts(9000), ts(20_000), &audit_of("user.locked"))
            .await
            .unwrap()
    );
}

/// Many attempts for one key at once: exactly `limit` are reserved, numbered 1 to `limit`; all
/// the others are refused, and counted nowhere.
pub(crate) async fn concurrent_login_reservations_hold_the_limit(store: &dyn Store) {
    let key = digest("concurrent-throttle@example.com");
    let results = join_all(
        (0..50).map(|i| store.reserve_login_attempt(&key, ts(100 + i), ts(-1_000_000), 5)),
    )
    .await;
    check_reservations(results.into_iter().map(Result::unwrap).collect(), 5);
    assert_eq!(
        store.login_throttle(&key).await.unwrap().unwrap().failures,
        5
    );
}

/// Attempts for one key from several stores (nodes) on one database: the limit holds across
/// them.
pub(crate) async fn login_reservations_across_stores(stores: Vec<Arc<dyn Store>>) {
    let key = digest("nodes-throttle@example.com");
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let key = key.clone();
            tokio::spawn(async move {
                store
                    .reserve_login_attempt(&key, ts(200), ts(-1_000_000), 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    check_reservations(results, 5);
}

fn check_reservations(results: Vec<LoginAttempt>, limit: u32) {
    let mut reserved: Vec<u32> = Vec::new();
    let mut refused = 0;
    for r in &results {
        match r {
            LoginAttempt::Reserved(t) => reserved.push(t.failures),
            LoginAttempt::Refused(t) => {
                assert_eq!(t.failures, limit, "{r:?}");
                refused += 1;
            }
        }
    }
    reserved.sort_unstable();
    assert_eq!(reserved, (1..=limit).collect::<Vec<u32>>(), "{results:?}");
    assert_eq!(refused, results.len() - limit as usize);
}
