//! Sessions and refresh tokens, MFA challenges, password resets and signing keys.

use std::sync::Arc;

use keyrail_core::id::{SessionId, UserId};
use keyrail_core::model::{RefreshOutcome, Session, StoredSigningKey, User};
use keyrail_core::{Store, StoreError, Timestamp};

use crate::fixtures::*;

fn assert_same_session(a: &Session, b: &Session) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.user_id, b.user_id);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.last_used_at, b.last_used_at);
    assert_eq!(a.expires_at, b.expires_at);
    assert_eq!(a.revoked_at, b.revoked_at);
    assert_eq!(a.ip, b.ip);
    assert_eq!(a.user_agent, b.user_agent);
}

fn ids(sessions: &[Session]) -> Vec<SessionId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

pub(crate) fn session(user: &User, created: i64, lifetime: i64) -> Session {
    Session {
        id: SessionId::new(),
        user_id: user.id.clone(),
        created_at: ts(created),
        last_used_at: ts(created),
        expires_at: ts(created + lifetime),
        revoked_at: None,
        ip: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Ä".into()),
    }
}

pub(crate) async fn sessions_and_refresh_tokens(store: &dyn Store) {
    let alice = new_user(store, "sessions-alice@example.com", 4000).await;
    let bob = new_user(store, "sessions-bob@example.com", 4000).await;
    let changes_before = store.latest_change().await.unwrap();
    let day = 86_400_000;

    // Creation and lookup.
    let s1 = session(&alice, 4100, day);
    let mut s2 = session(&alice, 4200, day);
    s2.ip = None;
    s2.user_agent = None;
    let s_old = session(&alice, 4000, 50); // expires at 4050
    let s_bob = session(&bob, 4300, day);
    store
        .insert_session(&s1, &digest("s1-r0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    store
        .insert_session(&s2, &digest("s2-r0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    store
        .insert_session(&s_old, &digest("old-r0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    store
        .insert_session(&s_bob, &digest("bob-r0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    assert_same_session(&store.session_by_id(&s1.id).await.unwrap().unwrap(), &s1);
    assert_same_session(&store.session_by_id(&s2.id).await.unwrap().unwrap(), &s2);
    assert!(
        store
            .session_by_id(&SessionId::new())
            .await
            .unwrap()
            .is_none()
    );

    // Refusals leave nothing behind.
    let mut dup_id = session(&alice, 4400, day);
    dup_id.id = s1.id.clone();
    assert_conflict(
        store
            .insert_session(&dup_id, &digest("dup-id"), None, &audit_of("user.login"))
            .await,
        "session id",
    );
    let dup_token = session(&alice, 4400, day);
    assert_conflict(
        store
            .insert_session(&dup_token, &digest("s1-r0"), None, &audit_of("user.login"))
            .await,
        "refresh token",
    );
    assert!(store.session_by_id(&dup_token.id).await.unwrap().is_none());
    let ghost = user("ghost-session@example.com", "Ghost", 0);
    let orphan = session(&ghost, 4400, day);
    // A user that does not exist gets no session (nothing is written).
    let opened = store
        .insert_session(&orphan, &digest("orphan"), None, &audit_of("user.login"))
        .await
        .unwrap();
    assert!(!opened);
    assert!(store.session_by_id(&orphan.id).await.unwrap().is_none());

    // Active sessions: the user's own, live ones, newest first.
    let now = 5000;
    assert_eq!(
        ids(&store.active_sessions(&alice.id, ts(now)).await.unwrap()),
        [s2.id.clone(), s1.id.clone()]
    );
    // At its exact expiry a session is no longer active.
    assert_eq!(
        ids(&store.active_sessions(&alice.id, ts(4049)).await.unwrap()),
        [s2.id.clone(), s1.id.clone(), s_old.id.clone()]
    );
    assert_eq!(
        store
            .active_sessions(&alice.id, ts(4050))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ids(&store.active_sessions(&bob.id, ts(now)).await.unwrap()),
        std::slice::from_ref(&s_bob.id)
    );
    assert!(
        store
            .active_sessions(&UserId::new(), ts(now))
            .await
            .unwrap()
            .is_empty()
    );

    // Rotation.
    assert!(matches!(
        store
            .rotate_refresh(&digest("unknown"), &digest("x"), ts(now))
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    ));
    let RefreshOutcome::Rotated(got) = store
        .rotate_refresh(&digest("s1-r0"), &digest("s1-r1"), ts(now))
        .await
        .unwrap()
    else {
        panic!("expected Rotated")
    };
    let mut expected = s1.clone();
    expected.last_used_at = ts(now);
    assert_same_session(&got, &expected);
    assert_same_session(
        &store.session_by_id(&s1.id).await.unwrap().unwrap(),
        &expected,
    );
    let RefreshOutcome::Rotated(got) = store
        .rotate_refresh(&digest("s1-r1"), &digest("s1-r2"), ts(now + 1))
        .await
        .unwrap()
    else {
        panic!("expected Rotated")
    };
    assert_eq!(got.id, s1.id);
    assert_eq!(got.last_used_at, ts(now + 1));
    // A new token that already exists fails the rotation and spends nothing.
    assert_conflict(
        store
            .rotate_refresh(&digest("s1-r2"), &digest("s2-r0"), ts(now + 2))
            .await,
        "refresh token",
    );
    assert_eq!(
        store.latest_change().await.unwrap(),
        changes_before,
        "no change logged yet"
    );

    // Reuse of a spent token revokes the session and logs it; its live token then dies too.
    let RefreshOutcome::Reused(reused) = store
        .rotate_refresh(&digest("s1-r0"), &digest("s1-evil"), ts(now + 3))
        .await
        .unwrap()
    else {
        panic!("expected Reused")
    };
    assert_eq!(reused, s1.id);
    let revoked = store.session_by_id(&s1.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(ts(now + 3)));
    assert_eq!(revoked.last_used_at, ts(now + 1));
    let log = store.changes_after(changes_before, 100).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].kind, "session.revoked");
    assert_eq!(log[0].subject, s1.id.to_string());
    assert_eq!(log[0].at, ts(now + 3));
    for token in ["s1-r2", "s1-r1", "s1-r0"] {
        assert!(
            matches!(
                store
                    .rotate_refresh(&digest(token), &digest("s1-late"), ts(now + 4))
                    .await
                    .unwrap(),
                RefreshOutcome::Dead
            ),
            "{token}"
        );
    }
    // The refused rotations stored nothing.
    assert!(matches!(
        store
            .rotate_refresh(&digest("s1-evil"), &digest("y"), ts(now + 4))
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    ));
    assert_eq!(store.changes_after(changes_before, 100).await.unwrap(), log);

    // An expired session is dead, from its exact expiry on, and is not revoked by it.
    assert!(matches!(
        store
            .rotate_refresh(&digest("old-r0"), &digest("old-r1"), ts(4050))
            .await
            .unwrap(),
        RefreshOutcome::Dead
    ));
    assert!(matches!(
        store
            .rotate_refresh(&digest("old-r1"), &digest("z"), ts(4050))
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    ));
    assert_eq!(
        store
            .session_by_id(&s_old.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    assert!(matches!(
        store
            .rotate_refresh(&digest("old-r0"), &digest("old-r1"), ts(4049))
            .await
            .unwrap(),
        RefreshOutcome::Rotated(_)
    ));

    // revoke_session: only the owner's, only once.
    assert!(
        !store
            .revoke_session(&bob.id, &s2.id, ts(now + 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &s_bob.id, ts(now + 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &SessionId::new(), ts(now + 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &s1.id, ts(now + 10))
            .await
            .unwrap(),
        "already revoked"
    );
    assert_eq!(store.changes_after(changes_before, 100).await.unwrap(), log);
    assert!(
        store
            .revoke_session(&alice.id, &s2.id, ts(now + 11))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &s2.id, ts(now + 12))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .session_by_id(&s2.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(ts(now + 11))
    );
    assert!(matches!(
        store
            .rotate_refresh(&digest("s2-r0"), &digest("s2-r1"), ts(now + 12))
            .await
            .unwrap(),
        RefreshOutcome::Dead
    ));
    let log = store.changes_after(changes_before, 100).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[1].kind.as_str(), log[1].subject.as_str(), log[1].at),
        ("session.revoked", s2.id.as_str(), ts(now + 11))
    );
    assert!(
        store
            .active_sessions(&alice.id, ts(now))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.active_sessions(&bob.id, ts(now)).await.unwrap().len(),
        1
    );

    // revoke_user_sessions: every session not yet revoked, expired ones included (their last
    // access tokens may still be valid), one change each; bob's are untouched.
    let s3 = session(&alice, 5100, day);
    let s4 = session(&alice, 5200, day);
    store
        .insert_session(&s3, &digest("s3-r0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    store
        .insert_session(&s4, &digest("s4-r0"), None, &audit_of("user.login"))
        .await
        .unwrap();
    let mut ended = store
        .revoke_user_sessions(&alice.id, ts(now + 300))
        .await
        .unwrap();
    ended.sort();
    let mut want = vec![s_old.id.clone(), s3.id.clone(), s4.id.clone()];
    want.sort();
    assert_eq!(ended, want);
    let log = store.changes_after(changes_before, 100).await.unwrap();
    assert_eq!(log.len(), 5);
    let mut subjects: Vec<&str> = log[2..].iter().map(|c| c.subject.as_str()).collect();
    subjects.sort_unstable();
    let want_subjects: Vec<&str> = want.iter().map(SessionId::as_str).collect();
    assert_eq!(subjects, want_subjects);
    assert!(
        log[2..]
            .iter()
            .all(|c| c.kind == "session.revoked" && c.at == ts(now + 300))
    );
    assert!(
        store
            .revoke_user_sessions(&alice.id, ts(now + 400))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .revoke_user_sessions(&UserId::new(), ts(now + 400))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest_change().await.unwrap(), log[4].seq);
    assert!(matches!(
        store
            .rotate_refresh(&digest("s3-r0"), &digest("s3-r1"), ts(now + 400))
            .await
            .unwrap(),
        RefreshOutcome::Dead
    ));
    assert_eq!(
        ids(&store.active_sessions(&bob.id, ts(now)).await.unwrap()),
        std::slice::from_ref(&s_bob.id)
    );

    // sessions_revoked_since: at or after the instant.
    let since = |at: i64| async move {
        let mut got = store.sessions_revoked_since(ts(at)).await.unwrap();
        got.sort();
        got
    };
    let mut all = vec![
        s1.id.clone(),
        s2.id.clone(),
        s_old.id.clone(),
        s3.id.clone(),
        s4.id.clone(),
    ];
    all.sort();
    assert_eq!(since(now + 3).await, all);
    let mut later = vec![
        s2.id.clone(),
        s_old.id.clone(),
        s3.id.clone(),
        s4.id.clone(),
    ];
    later.sort();
    assert_eq!(since(now + 4).await, later);
    assert_eq!(since(now + 11).await, later);
    assert_eq!(since(now + 12).await, want);
    assert!(since(now + 301).await.is_empty());
}

/// Two rotations of one token at once: one wins; the other presents a spent token, which is
/// reuse, and the session ends (the contract draws no line between a client's double send and
/// an attacker racing the client).
pub(crate) async fn concurrent_rotations_of_one_token(store: &dyn Store) {
    let u = new_user(store, "rotation-race@example.com", 6000).await;
    for round in 0..5 {
        let s = session(&u, 6000 + round, 86_400_000);
        let old = digest(&format!("race-{round}"));
        store
            .insert_session(&s, &old, None, &audit_of("user.login"))
            .await
            .unwrap();
        let new_a = digest(&format!("race-{round}-a"));
        let new_b = digest(&format!("race-{round}-b"));
        let outcomes = join_all([
            store.rotate_refresh(&old, &new_a, ts(6100)),
            store.rotate_refresh(&old, &new_b, ts(6100)),
        ])
        .await;
        let outcomes: Vec<RefreshOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
        let rotated = outcomes
            .iter()
            .filter(|o| matches!(o, RefreshOutcome::Rotated(_)))
            .count();
        let reused = outcomes
            .iter()
            .filter(|o| matches!(o, RefreshOutcome::Reused(id) if *id == s.id))
            .count();
        assert_eq!((rotated, reused), (1, 1), "round {round}: {outcomes:?}");
        let got = store.session_by_id(&s.id).await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(ts(6100)));
        // The winner's new token is dead with its session; the loser's was never stored.
        let (winner, loser) = if matches!(outcomes[0], RefreshOutcome::Rotated(_)) {
            (&new_a, &new_b)
        } else {
            (&new_b, &new_a)
        };
        assert!(matches!(
            store
                .rotate_refresh(winner, &digest("after"), ts(6101))
                .await
                .unwrap(),
            RefreshOutcome::Dead
        ));
        assert!(matches!(
            store
                .rotate_refresh(loser, &digest("after"), ts(6101))
                .await
                .unwrap(),
            RefreshOutcome::Unknown
        ));
    }
}

pub(crate) async fn mfa_challenges(store: &dyn Store) {
    let u = new_user(store, "challenge@example.com", 7000).await;
    let pw = u.password_hash.expose();
    let (c1, c2) = (digest("challenge-1"), digest("challenge-2"));
    assert!(
        store
            .insert_mfa_challenge(&c1, &u.id, pw, ts(7300))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_mfa_challenge(&c2, &u.id, pw, ts(7300))
            .await
            .unwrap()
    );
    assert_conflict(
        store.insert_mfa_challenge(&c1, &u.id, pw, ts(9000)).await,
        "mfa challenge",
    );
    // No challenge for a user that does not exist, nor for a password that is no longer the
    // user's (a login that raced a password change).
    assert!(
        !store
            .insert_mfa_challenge(&digest("ghost-challenge"), &UserId::new(), pw, ts(9000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_mfa_challenge(&digest("stale"), &u.id, "$argon2id$old", ts(9000))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .mfa_challenge_user(&digest("stale"), ts(7000))
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        store.mfa_challenge_user(&c1, ts(7299)).await.unwrap(),
        Some(u.id.clone())
    );
    assert_eq!(store.mfa_challenge_user(&c1, ts(7300)).await.unwrap(), None);
    assert_eq!(
        store
            .mfa_challenge_user(&digest("unknown"), ts(7000))
            .await
            .unwrap(),
        None
    );
    // Expired: cannot be spent.
    assert!(!store.consume_mfa_challenge(&c1, ts(7300)).await.unwrap());
    assert!(
        !store
            .consume_mfa_challenge(&digest("unknown"), ts(7000))
            .await
            .unwrap()
    );
    // Live: spent once.
    assert!(store.consume_mfa_challenge(&c2, ts(7100)).await.unwrap());
    assert!(!store.consume_mfa_challenge(&c2, ts(7101)).await.unwrap());
    assert_eq!(store.mfa_challenge_user(&c2, ts(7102)).await.unwrap(), None);
    // Concurrent spends of one challenge: one wins.
    let c3 = digest("challenge-3");
    assert!(
        store
            .insert_mfa_challenge(&c3, &u.id, pw, ts(7300))
            .await
            .unwrap()
    );
    let spent = join_all((0..5).map(|_| store.consume_mfa_challenge(&c3, ts(7200)))).await;
    assert_eq!(
        spent.into_iter().filter(|r| *r.as_ref().unwrap()).count(),
        1
    );
}

pub(crate) async fn password_resets(store: &dyn Store) {
    let u = new_user(store, "reset@example.com", 8000).await;
    let other = new_user(store, "reset-other@example.com", 8000).await;
    let (r1, r2, r3) = (digest("reset-1"), digest("reset-2"), digest("reset-3"));
    store
        .insert_password_reset(&r1, &u.id, ts(8300))
        .await
        .unwrap();
    store
        .insert_password_reset(&r2, &u.id, ts(8300))
        .await
        .unwrap();
    store
        .insert_password_reset(&r3, &other.id, ts(8300))
        .await
        .unwrap();
    assert_conflict(
        store.insert_password_reset(&r1, &other.id, ts(9000)).await,
        "password reset",
    );
    assert!(matches!(
        store
            .insert_password_reset(&digest("ghost-reset"), &UserId::new(), ts(9000))
            .await,
        Err(StoreError::Other(_))
    ));

    // Looking a token up spends nothing.
    assert_eq!(
        store.password_reset_user(&r1, ts(8100)).await.unwrap(),
        Some(u.id.clone())
    );
    assert_eq!(
        store.password_reset_user(&r1, ts(8300)).await.unwrap(),
        None,
        "expired at its expiry"
    );
    assert_eq!(
        store
            .password_reset_user(&digest("unknown"), ts(8100))
            .await
            .unwrap(),
        None
    );

    // An expired or unknown token writes nothing.
    assert_eq!(
        store
            .consume_password_reset(
                &r2,
                "$argon2id$expired",
                ts(8300),
                &audit_of("user.password_reset")
            )
            .await
            .unwrap(),
        None,
    );
    assert_eq!(
        store
            .consume_password_reset(
                &digest("unknown"),
                "$argon2id$unknown",
                ts(8100),
                &audit_of("user.password_reset")
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .user_by_id(&u.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .expose(),
        u.password_hash.expose()
    );

    // A live one sets the password and spends itself and every other token of its user only.
    assert_eq!(
        store
            .consume_password_reset(
                &r1,
                "$argon2id$reset",
                ts(8100),
                &audit_of("user.password_reset")
            )
            .await
            .unwrap(),
        Some(u.id.clone())
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(
        (got.password_hash.expose(), got.updated_at),
        ("$argon2id$reset", ts(8100))
    );
    for r in [&r1, &r2] {
        assert_eq!(store.password_reset_user(r, ts(8101)).await.unwrap(), None);
        assert_eq!(
            store
                .consume_password_reset(
                    r,
                    "$argon2id$again",
                    ts(8101),
                    &audit_of("user.password_reset")
                )
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .user_by_id(&u.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .expose(),
        "$argon2id$reset"
    );
    assert_eq!(
        store
            .consume_password_reset(
                &r3,
                "$argon2id$other",
                ts(8299),
                &audit_of("user.password_reset")
            )
            .await
            .unwrap(),
        Some(other.id.clone())
    );

    // Two tokens of one user used at once: one reset wins, the other finds its token spent.
    let (r4, r5) = (digest("reset-4"), digest("reset-5"));
    for r in [&r4, &r5] {
        store
            .insert_password_reset(r, &u.id, ts(8500))
            .await
            .unwrap();
    }
    let results = join_all([
        store.consume_password_reset(
            &r4,
            "$argon2id$four",
            ts(8400),
            &audit_of("user.password_reset"),
        ),
        store.consume_password_reset(
            &r5,
            "$argon2id$five",
            ts(8400),
            &audit_of("user.password_reset"),
        ),
    ])
    .await;
    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().unwrap().is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    let winner = ["$argon2id$four", "$argon2id$five"][won[0]];
    assert_eq!(
        store
            .user_by_id(&u.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .expose(),
        winner
    );
}

/// A change of password spends what was issued under the old one: reset tokens and pending MFA
/// challenges of that user (not another's); an upgrade of the hash spends nothing and only
/// replaces the hash it names.
pub(crate) async fn password_changes_spend_tokens(store: &dyn Store) {
    let u = new_user(store, "spend@example.com", 8600).await;
    let other = new_user(store, "spend-other@example.com", 8600).await;
    let (reset, challenge) = (digest("spend-reset"), digest("spend-challenge"));
    let (other_reset, other_challenge) = (digest("spend-reset-o"), digest("spend-challenge-o"));
    let issue = |user: User, reset: String, challenge: String| async move {
        store
            .insert_password_reset(&reset, &user.id, ts(9600))
            .await
            .unwrap();
        let pw = store
            .user_by_id(&user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        assert!(
            store
                .insert_mfa_challenge(&challenge, &user.id, pw.expose(), ts(9600))
                .await
                .unwrap()
        );
    };
    issue(u.clone(), reset.clone(), challenge.clone()).await;
    issue(other.clone(), other_reset.clone(), other_challenge.clone()).await;

    // An upgrade names the hash it replaces; it spends nothing.
    assert!(
        !store
            .upgrade_password_hash(&u.id, "$argon2id$not-it", "$argon2id$up", ts(8700))
            .await
            .unwrap()
    );
    assert!(
        store
            .upgrade_password_hash(&u.id, u.password_hash.expose(), "$argon2id$up", ts(8700))
            .await
            .unwrap()
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(
        (got.password_hash.expose(), got.updated_at),
        ("$argon2id$up", ts(8700))
    );
    assert_eq!(
        store.password_reset_user(&reset, ts(8701)).await.unwrap(),
        Some(u.id.clone())
    );
    assert_eq!(
        store
            .mfa_challenge_user(&challenge, ts(8701))
            .await
            .unwrap(),
        Some(u.id.clone())
    );
    assert!(
        !store
            .upgrade_password_hash(&UserId::new(), "$argon2id$up", "$argon2id$x", ts(8700))
            .await
            .unwrap()
    );

    // A change spends both, for this user only.
    assert!(
        store
            .set_password_hash(&u.id, "$argon2id$changed", ts(8800))
            .await
            .unwrap()
    );
    assert_eq!(
        store.password_reset_user(&reset, ts(8801)).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .mfa_challenge_user(&challenge, ts(8801))
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .consume_mfa_challenge(&challenge, ts(8801))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .password_reset_user(&other_reset, ts(8801))
            .await
            .unwrap(),
        Some(other.id.clone())
    );
    assert_eq!(
        store
            .mfa_challenge_user(&other_challenge, ts(8801))
            .await
            .unwrap(),
        Some(other.id.clone())
    );
    // A challenge checked against the old hash is not stored any more.
    assert!(
        !store
            .insert_mfa_challenge(&digest("late"), &u.id, "$argon2id$up", ts(9600))
            .await
            .unwrap()
    );
}

pub(crate) async fn signing_keys(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    let key = |kid: &str, at: i64| StoredSigningKey {
        kid: kid.to_owned(),
        sealed_private: format!("sealed-{kid}"),
        created_at: ts(at),
    };
    store.insert_signing_key(&key("kid-b", 20)).await.unwrap();
    store.insert_signing_key(&key("kid-a", 10)).await.unwrap();
    store.insert_signing_key(&key("kid-c", 20)).await.unwrap();
    assert_conflict(
        store.insert_signing_key(&key("kid-a", 30)).await,
        "signing key",
    );
    let got = store.signing_keys().await.unwrap();
    let got: Vec<(&str, &str, Timestamp)> = got
        .iter()
        .map(|k| (k.kid.as_str(), k.sealed_private.as_str(), k.created_at))
        .collect();
    assert_eq!(
        got,
        [
            ("kid-a", "sealed-kid-a", ts(10)),
            ("kid-b", "sealed-kid-b", ts(20)),
            ("kid-c", "sealed-kid-c", ts(20)),
        ]
    );
}

/// Nodes that find the newest signing key stale at the same moment each try to rotate: the
/// store keeps exactly one new key per round, and none while a fresh one is stored.
pub(crate) async fn concurrent_signing_key_rotations_insert_one(store: &dyn Store) {
    let key = |kid: String, at: i64| StoredSigningKey {
        kid,
        sealed_private: "sealed".into(),
        created_at: ts(at),
    };
    let mut count = store.signing_keys().await.unwrap().len();
    for round in 0..10_i64 {
        let cutoff = ts(1000 + round * 100);
        let keys: Vec<StoredSigningKey> = (1..=4)
            .map(|n| key(format!("rot-{round}-{n}"), 1000 + round * 100 + n))
            .collect();
        let results = join_all(keys.iter().map(|k| store.rotate_signing_key(k, cutoff))).await;
        let inserted = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(inserted, 1, "round {round}: one rotation wins");
        count += 1;
        assert_eq!(store.signing_keys().await.unwrap().len(), count);
        // The key just made is fresh: a later rotation with the same cutoff keeps nothing.
        let late = key(format!("rot-{round}-late"), 1000 + round * 100 + 50);
        assert!(!store.rotate_signing_key(&late, cutoff).await.unwrap());
    }
    assert_eq!(store.signing_keys().await.unwrap().len(), count);
}

/// Several nodes (stores on one database) rotating at once, on threads of their own: one key.
pub(crate) async fn signing_key_rotations_across_stores(stores: Vec<Arc<dyn Store>>) {
    for round in 0..10_i64 {
        let cutoff = ts(round * 100);
        let tasks: Vec<_> = (0..6_i64)
            .map(|n| {
                let store = stores[n as usize % stores.len()].clone();
                tokio::spawn(async move {
                    let key = StoredSigningKey {
                        kid: format!("node-{round}-{n}"),
                        sealed_private: "sealed".into(),
                        created_at: ts(round * 100 + 1 + n),
                    };
                    store.rotate_signing_key(&key, cutoff).await.unwrap()
                })
            })
            .collect();
        let mut inserted = 0;
        for t in tasks {
            inserted += usize::from(t.await.unwrap());
        }
        assert_eq!(inserted, 1, "round {round}: one node's rotation wins");
    }
    assert_eq!(stores[0].signing_keys().await.unwrap().len(), 10);
}
