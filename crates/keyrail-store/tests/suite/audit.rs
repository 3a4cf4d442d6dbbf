//! The audit log.

use keyrail_core::Store;
use keyrail_core::id::{AuditId, WorkspaceId};
use keyrail_core::model::{ActorType, AuditEntry, AuditFilter, Page};

use crate::fixtures::*;

pub(crate) async fn audit_log(store: &dyn Store) {
    let (w1, w2) = (WorkspaceId::new(), WorkspaceId::new());
    // Ids in increasing order, so that entry i is the i-th oldest whatever the id generator
    // does within one millisecond.
    let mut audit_ids: Vec<AuditId> = (0..8).map(|_| AuditId::new()).collect();
    audit_ids.sort();
    let specs: [(Option<&WorkspaceId>, ActorType, Option<&str>, &str); 8] = [
        (None, ActorType::Anonymous, None, "user.login_failed"),
        (None, ActorType::User, Some("usr_a"), "user.login"),
        (Some(&w1), ActorType::User, Some("usr_a"), "key.create"),
        (Some(&w1), ActorType::Key, Some("key_1"), "key.revoke"),
        (Some(&w2), ActorType::App, Some("app_1"), "key.create"),
        (Some(&w1), ActorType::User, Some("usr_b"), "member.add"),
        (Some(&w1), ActorType::User, Some("usr_a"), "key.create"),
        (None, ActorType::User, Some("usr_a"), "user.login"),
    ];
    let entries: Vec<AuditEntry> = specs
        .iter()
        .zip(audit_ids)
        .enumerate()
        .map(|(i, ((ws, actor_type, actor, action), id))| AuditEntry {
            id,
            at: ts(9000 + 10 * i as i64),
            workspace_id: ws.cloned(),
            actor_type: *actor_type,
            actor_id: actor.map(str::to_owned),
            action: (*action).to_owned(),
            target: (i % 2 == 0).then(|| format!("target-{i}")),
            ip: (i % 3 != 0).then(|| "198.51.100.4".to_owned()),
            user_agent: (i == 2).then(|| "curl/8.5".to_owned()),
            outcome: if i == 0 { "failure" } else { "success" }.to_owned(),
            event: None,
        })
        .collect();
    // Inserted out of order: listing orders by id, not by insertion.
    for i in [3, 0, 7, 1, 5, 2, 6, 4] {
        store.insert_audit(&entries[i]).await.unwrap();
    }
    assert_conflict(store.insert_audit(&entries[0]).await, "audit entry");

    let entries = &entries;
    let list = |filter: AuditFilter, page: Page| async move {
        store
            .list_audit(&filter, &page)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let i = entries.iter().position(|x| x.id == e.id).expect("known id");
                assert_same_audit(&e, &entries[i]);
                i
            })
            .collect::<Vec<usize>>()
    };
    let all = || Page::first(100);

    // No filter: everything, platform entries too, newest first.
    assert_eq!(
        list(AuditFilter::default(), all()).await,
        [7, 6, 5, 4, 3, 2, 1, 0]
    );
    let ws = |w: &WorkspaceId| AuditFilter {
        workspace_id: Some(w.clone()),
        ..AuditFilter::default()
    };
    assert_eq!(list(ws(&w1), all()).await, [6, 5, 3, 2]);
    assert_eq!(list(ws(&w2), all()).await, [4]);
    assert!(list(ws(&WorkspaceId::new()), all()).await.is_empty());

    let action = |a: &str| AuditFilter {
        action: Some(a.to_owned()),
        ..AuditFilter::default()
    };
    assert_eq!(list(action("key.create"), all()).await, [6, 4, 2]);
    assert_eq!(list(action("user.login"), all()).await, [7, 1]);
    assert!(list(action("key"), all()).await.is_empty());

    let actor = AuditFilter {
        actor_id: Some("usr_a".into()),
        ..AuditFilter::default()
    };
    assert_eq!(list(actor, all()).await, [7, 6, 2, 1]);

    // since is inclusive, until exclusive.
    let window = AuditFilter {
        since: Some(ts(9020)),
        until: Some(ts(9060)),
        ..AuditFilter::default()
    };
    assert_eq!(list(window, all()).await, [5, 4, 3, 2]);
    let since = AuditFilter {
        since: Some(ts(9061)),
        ..AuditFilter::default()
    };
    assert_eq!(list(since, all()).await, [7]);
    let until = AuditFilter {
        until: Some(ts(9010)),
        ..AuditFilter::default()
    };
    assert_eq!(list(until, all()).await, [0]);

    // Everything at once.
    let combined = AuditFilter {
        workspace_id: Some(w1.clone()),
        action: Some("key.create".into()),
        actor_id: Some("usr_a".into()),
        since: Some(ts(9000)),
        until: Some(ts(9070)),
    };
    assert_eq!(list(combined.clone(), all()).await, [6, 2]);
    let narrower = AuditFilter {
        until: Some(ts(9060)),
        ..combined
    };
    assert_eq!(list(narrower, all()).await, [2]);

    // Keyset pages, newest first, with and without a filter.
    let mut seen = Vec::new();
    let mut page = Page::first(3);
    let mut sizes = Vec::new();
    loop {
        let got = list(AuditFilter::default(), page.clone()).await;
        sizes.push(got.len());
        let Some(&last) = got.last() else { break };
        page.after = Some(entries[last].id.to_string());
        seen.extend(got);
    }
    assert_eq!(sizes, [3, 3, 2, 0]);
    assert_eq!(seen, [7, 6, 5, 4, 3, 2, 1, 0]);
    let after_6 = Page {
        limit: 2,
        after: Some(entries[6].id.to_string()),
    };
    assert_eq!(list(ws(&w1), after_6.clone()).await, [5, 3]);
    assert_eq!(list(action("user.login"), after_6).await, [1]);
    let after_oldest = Page {
        limit: 10,
        after: Some(entries[0].id.to_string()),
    };
    assert!(list(AuditFilter::default(), after_oldest).await.is_empty());
    assert!(
        list(AuditFilter::default(), Page::first(0))
            .await
            .is_empty()
    );
}

/// A change and its audit entry commit together: when the entry cannot be written (here its
/// id exists already), the change is not made either.
pub(crate) async fn identity_changes_and_their_audit_are_one(store: &dyn Store) {
    let user = new_user(store, "atomic@example.com", 40_000).await;
    let taken = audit_of("user.login");
    store.insert_audit(&taken).await.unwrap();

    let s = crate::sessions::session(&user, 40_001, 60_000);
    assert!(
        store
            .insert_session(&s, &"aa".repeat(32), None, &taken)
            .await
            .is_err()
    );
    assert!(store.session_by_id(&s.id).await.unwrap().is_none());
    store
        .insert_session(&s, &"aa".repeat(32), None, &audit_of("user.login"))
        .await
        .unwrap();
    assert!(store.session_by_id(&s.id).await.unwrap().is_some());

    assert!(
        store
            .enable_mfa(
                &user.id,
                "v1.sealed",
                1,
                &["bb".repeat(32)],
                ts(40_002),
                &taken
            )
            .await
            .is_err()
    );
    let state = store.mfa_state(&user.id).await.unwrap();
    assert!(state.secret.is_none(), "MFA stays off");
    assert_eq!(store.unused_recovery_codes(&user.id).await.unwrap(), 0);
}

/// A login that checked the password against a hash the user no longer has (the password
/// changed meanwhile, ending every session) opens no session.
pub(crate) async fn a_session_needs_the_password_it_was_checked_against(store: &dyn Store) {
    let user = new_user(store, "stale-login@example.com", 41_000).await;
    let current = user.password_hash.expose().to_owned();
    let stale = format!("{current}-before-the-change");
    let s = crate::sessions::session(&user, 41_001, 60_000);
    let opened = store
        .insert_session(&s, &"cc".repeat(32), Some(&stale), &audit_of("user.login"))
        .await
        .unwrap();
    assert!(!opened);
    assert!(store.session_by_id(&s.id).await.unwrap().is_none());
    let opened = store
        .insert_session(
            &s,
            &"cc".repeat(32),
            Some(&current),
            &audit_of("user.login"),
        )
        .await
        .unwrap();
    assert!(opened);
    assert!(store.session_by_id(&s.id).await.unwrap().is_some());
}
