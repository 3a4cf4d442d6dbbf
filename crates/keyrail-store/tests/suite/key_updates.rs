//! API keys after creation: updates, rotation, credits and last use.

use std::sync::Arc;

use keyrail_core::id::KeyId;
use keyrail_core::model::{
    ApiKey, AuditEntry, KeyChanges, KeyFilter, KeyRateLimit, KeyStatus, Page,
};
use keyrail_core::{Store, StoreError, Timestamp};

use crate::fixtures::*;
use crate::keys::{all_keys, status_filter};

pub(crate) async fn keys_update(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "kupdate", 32_000).await;
    let (other_ws, _) = new_workspace(store, "kupdate-other", 32_000).await;
    let mut k = api_key(&ws, "upd", 32_001);
    k.created_by = Some("user:usr_x".into());
    k.external_id = Some("cust-upd".into());
    k.sealed_key = Some("sealed-upd".into());
    k.last_used_at = Some(ts(32_002));
    k.expires_at = Some(ts(99_000));
    k.rate_limit = Some(KeyRateLimit {
        limit: 10,
        window_seconds: 1,
    });
    k.remaining = Some(5);
    store.insert_key(&k, None).await.unwrap();
    let before = store.latest_change().await.unwrap();
    let stored = async || store.key_by_id(&ws.id, &k.id).await.unwrap().unwrap();

    // Every field a change can write; the others stay as stored.
    let all = KeyChanges {
        name: Some("renamed".into()),
        scopes: Some(vec!["chats:read".into(), "chats:write".into()]),
        meta: Some(Some(serde_json::json!({"tier": 2}))),
        rate_limit: Some(Some(KeyRateLimit {
            limit: 1000,
            window_seconds: 3600,
        })),
        remaining: Some(Some(77)),
        disabled: Some(true),
    };
    let e = entry("key.update");
    let got = store
        .patch_key(&ws.id, &k.id, &all, ts(32_010), &e)
        .await
        .unwrap()
        .unwrap();
    let mut want = k.clone();
    want.name = "renamed".into();
    want.scopes = vec!["chats:read".into(), "chats:write".into()];
    want.meta = Some(serde_json::json!({"tier": 2}));
    want.rate_limit = Some(KeyRateLimit {
        limit: 1000,
        window_seconds: 3600,
    });
    want.remaining = Some(77);
    want.disabled = true;
    want.updated_at = ts(32_010);
    assert_eq!(got, want);
    assert_eq!(stored().await, want);
    assert!(
        audited(store, &e).await,
        "the audit entry is written with it"
    );
    // Announced under the key's hash (what the verify caches are keyed by).
    assert_eq!(
        changes_since(store, before).await,
        [change("key.changed", &k.hash, ts(32_010))]
    );

    // A change names one field: the others keep what is stored now, not what the caller
    // read (a rename racing a disable cannot re-enable the key).
    let rename = KeyChanges {
        name: Some("again".into()),
        ..KeyChanges::default()
    };
    let got = store
        .patch_key(&ws.id, &k.id, &rename, ts(32_011), &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    want.name = "again".into();
    want.updated_at = ts(32_011);
    assert_eq!(got, want);
    // Nothing named: only the time.
    let got = store
        .patch_key(
            &ws.id,
            &k.id,
            &KeyChanges::default(),
            ts(32_012),
            &entry("key.update"),
        )
        .await
        .unwrap()
        .unwrap();
    want.updated_at = ts(32_012);
    assert_eq!(got, want);

    // Clearing the optional fields; a JSON null as meta is not a cleared meta.
    let clear = KeyChanges {
        meta: Some(None),
        rate_limit: Some(None),
        remaining: Some(None),
        disabled: Some(false),
        scopes: Some(Vec::new()),
        ..KeyChanges::default()
    };
    let got = store
        .patch_key(&ws.id, &k.id, &clear, ts(32_020), &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    want.meta = None;
    want.rate_limit = None;
    want.remaining = None;
    want.disabled = false;
    want.scopes = Vec::new();
    want.updated_at = ts(32_020);
    assert_eq!(got, want);
    let null_meta = KeyChanges {
        meta: Some(Some(serde_json::Value::Null)),
        ..KeyChanges::default()
    };
    let got = store
        .patch_key(&ws.id, &k.id, &null_meta, ts(32_021), &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.meta, Some(serde_json::Value::Null));
    want.meta = Some(serde_json::Value::Null);
    want.updated_at = ts(32_021);

    // No such key, or the key under another workspace: nothing written, announced or audited.
    let before_misses = store.latest_change().await.unwrap();
    for (ws_id, id) in [(&ws.id, &KeyId::new()), (&other_ws.id, &k.id)] {
        let e = entry("key.update");
        assert!(
            store
                .patch_key(ws_id, id, &rename, ts(32_030), &e)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!audited(store, &e).await);
    }
    // An audit entry that cannot be written (its id is taken) fails the change with it.
    let taken = taken_entry(store, "key.update").await;
    let hijack = KeyChanges {
        name: Some("hijacked".into()),
        disabled: Some(true),
        ..KeyChanges::default()
    };
    assert_conflict(
        store
            .patch_key(&ws.id, &k.id, &hijack, ts(32_031), &taken)
            .await,
        "audit entry",
    );
    assert!(!audited(store, &taken).await);
    assert_eq!(stored().await, want);
    assert!(changes_since(store, before_misses).await.is_empty());

    // Revocation: from the given time on, irreversible, announced and audited.
    let e = entry("key.revoke");
    let got = store
        .revoke_key(&ws.id, &k.id, ts(32_040), &e)
        .await
        .unwrap()
        .unwrap();
    want.revoked_at = Some(ts(32_040));
    want.updated_at = ts(32_040);
    assert_eq!(got, want);
    assert_eq!(stored().await, want);
    assert!(audited(store, &e).await);
    // Revoked already: nothing written, announced or audited, however late the call.
    let before_again = store.latest_change().await.unwrap();
    for at in [32_040, 32_041] {
        let e = entry("key.revoke");
        assert!(
            store
                .revoke_key(&ws.id, &k.id, ts(at), &e)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!audited(store, &e).await);
    }
    // A change cannot un-revoke it.
    let revive = KeyChanges {
        disabled: Some(false),
        name: Some("revived".into()),
        ..KeyChanges::default()
    };
    let got = store
        .patch_key(&ws.id, &k.id, &revive, ts(32_050), &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.revoked_at, got.status(ts(32_050))),
        (Some(ts(32_040)), KeyStatus::Revoked)
    );
    assert_eq!(
        changes_since(store, before_again).await,
        [change("key.changed", &k.hash, ts(32_050))]
    );

    // A revocation set for later (a rotation's grace period) is brought forward; one for
    // another workspace's key or an unknown key is nothing; a refused audit entry undoes it.
    let mut later = api_key(&ws, "upd-later", 32_060);
    later.revoked_at = Some(ts(99_000));
    store.insert_key(&later, None).await.unwrap();
    let taken = taken_entry(store, "key.revoke").await;
    assert_conflict(
        store
            .revoke_key(&ws.id, &later.id, ts(32_061), &taken)
            .await,
        "audit entry",
    );
    assert_eq!(
        store.key_by_hash(&later.hash).await.unwrap().unwrap(),
        later
    );
    assert!(
        store
            .revoke_key(&other_ws.id, &later.id, ts(32_062), &entry("key.revoke"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .revoke_key(&ws.id, &KeyId::new(), ts(32_062), &entry("key.revoke"))
            .await
            .unwrap()
            .is_none()
    );
    let got = store
        .revoke_key(&ws.id, &later.id, ts(32_063), &entry("key.revoke"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.revoked_at, Some(ts(32_063)));
}

/// PATCHes of different fields of one key, at the same time, all land: the key ends with every
/// one of them, whatever order they ran in (the store writes only what each names).
pub(crate) async fn concurrent_changes_of_one_key(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "kpatch-race", 32_500).await;
    let mut k = api_key(&ws, "race", 32_501);
    k.scopes = vec!["keys:read".into(), "members:read".into()];
    k.remaining = Some(100);
    store.insert_key(&k, None).await.unwrap();
    for round in 0..10 {
        let reset = KeyChanges {
            disabled: Some(false),
            scopes: Some(vec!["keys:read".into(), "members:read".into()]),
            ..KeyChanges::default()
        };
        store
            .patch_key(&ws.id, &k.id, &reset, ts(32_502), &entry("key.update"))
            .await
            .unwrap()
            .unwrap();
        let rename = |n: usize| KeyChanges {
            name: Some(format!("r{round}-{n}")),
            ..KeyChanges::default()
        };
        let changes = [
            rename(0),
            KeyChanges {
                disabled: Some(true),
                ..KeyChanges::default()
            },
            rename(1),
            KeyChanges {
                scopes: Some(vec!["keys:read".into()]),
                ..KeyChanges::default()
            },
            rename(2),
        ];
        let entries: Vec<_> = changes.iter().map(|_| entry("key.update")).collect();
        let patches = changes.iter().zip(&entries).map(|(c, e)| {
            let (ws, id) = (&ws.id, &k.id);
            async move { store.patch_key(ws, id, c, ts(32_503), e).await }
        });
        let spends = (0..3).map(|_| store.consume_credits(&k.id, 1));
        let (patched, spent) = tokio::join!(join_all(patches), join_all(spends));
        assert!(patched.into_iter().all(|p| p.unwrap().is_some()));
        assert!(spent.into_iter().all(|s| s.unwrap().is_some()));
        let got = store.key_by_id(&ws.id, &k.id).await.unwrap().unwrap();
        assert!(got.disabled, "round {round}");
        assert_eq!(got.scopes, ["keys:read"], "round {round}");
        assert!(got.name.starts_with(&format!("r{round}-")), "{}", got.name);
        assert_eq!(got.remaining, Some(100 - 3 * (round + 1)), "round {round}");
    }
}

pub(crate) async fn keys_rotate(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "rotate", 33_000).await;
    let (other_ws, _) = new_workspace(store, "rotate-other", 33_000).await;
    let mut old = api_key(&ws, "rot-old", 33_001);
    old.remaining = Some(40);
    old.meta = Some(serde_json::json!({"a": 1}));
    store.insert_key(&old, None).await.unwrap();
    assert_eq!(store.consume_credits(&old.id, 4).await.unwrap(), Some(36));
    let before = store.latest_change().await.unwrap();

    // With a grace period of a minute. The caller's copy of the credits is stale: the store
    // moves what the old key has left.
    let mut new = api_key(&ws, "rot-new", 33_010);
    new.scopes = old.scopes.clone();
    new.remaining = Some(40);
    let e = entry("key.rotate");
    let stored = store
        .rotate_key(&old.id, &new, ts(33_010 + 60_000), &e)
        .await
        .unwrap()
        .unwrap();
    let new = ApiKey {
        remaining: Some(36),
        ..new
    };
    assert_eq!(stored, new);
    assert_eq!(
        store.key_by_hash(&new.hash).await.unwrap(),
        Some(new.clone())
    );
    // The old key: replaced, revoked after the grace period, no credits of its own; nothing
    // else of it changes.
    let retired = ApiKey {
        revoked_at: Some(ts(33_010 + 60_000)),
        replaced_by: Some(new.id.clone()),
        updated_at: ts(33_010),
        remaining: Some(0),
        ..old.clone()
    };
    assert_eq!(
        store.key_by_id(&ws.id, &old.id).await.unwrap(),
        Some(retired.clone())
    );
    assert!(audited(store, &e).await);
    assert_eq!(
        changes_since(store, before).await,
        [change("key.changed", &old.hash, ts(33_010))]
    );
    // The old key spends from the new key's counter.
    assert_eq!(store.consume_credits(&old.id, 6).await.unwrap(), Some(30));
    assert_eq!(store.consume_credits(&new.id, 0).await.unwrap(), Some(30));
    let new = ApiKey {
        remaining: Some(30),
        ..new
    };
    // Both work during the grace period; then only the new one.
    let ws_id = &ws.id;
    let active = |t: i64| async move {
        store
            .list_keys(
                ws_id,
                &status_filter(KeyStatus::Active),
                ts(t),
                &Page::first(10),
            )
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(active(33_011).await, ["rot-old", "rot-new"]);
    assert_eq!(active(33_010 + 60_000).await, ["rot-new"]);

    // A key is rotated once: rotating it again writes nothing.
    let again = api_key(&ws, "rot-again", 33_015);
    let e = entry("key.rotate");
    assert!(
        store
            .rotate_key(&old.id, &again, ts(33_015), &e)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!audited(store, &e).await);
    assert_eq!(
        store.key_by_id(&ws.id, &old.id).await.unwrap(),
        Some(retired.clone())
    );
    assert!(store.key_by_hash(&again.hash).await.unwrap().is_none());

    // The replacement collides with an existing key, or the audit entry cannot be written:
    // nothing is written, the old key stays as it was, nothing is announced.
    let second = api_key(&ws, "rot-second", 33_019);
    store.insert_key(&second, None).await.unwrap();
    let before_clash = store.latest_change().await.unwrap();
    let mut clash = api_key(&ws, "rot-clash", 33_020);
    clash.hash = new.hash.clone();
    assert_conflict(
        store
            .rotate_key(&second.id, &clash, ts(33_020), &entry("key.rotate"))
            .await,
        "key hash",
    );
    assert!(store.key_by_id(&ws.id, &clash.id).await.unwrap().is_none());
    let mut clash_id = api_key(&ws, "rot-clash-id", 33_021);
    clash_id.id = new.id.clone();
    assert_conflict(
        store
            .rotate_key(&second.id, &clash_id, ts(33_021), &entry("key.rotate"))
            .await,
        "key id",
    );
    assert!(store.key_by_hash(&clash_id.hash).await.unwrap().is_none());
    let unaudited = api_key(&ws, "rot-unaudited", 33_022);
    let taken = taken_entry(store, "key.rotate").await;
    assert_conflict(
        store
            .rotate_key(&second.id, &unaudited, ts(33_022), &taken)
            .await,
        "audit entry",
    );
    assert!(store.key_by_hash(&unaudited.hash).await.unwrap().is_none());
    assert_eq!(
        store.key_by_id(&ws.id, &second.id).await.unwrap(),
        Some(second.clone())
    );
    assert!(changes_since(store, before_clash).await.is_empty());

    // The old key is gone (or never was), or belongs to another workspace than the new one,
    // or is revoked: None, the new key is not inserted.
    let orphan = api_key(&ws, "rot-orphan", 33_030);
    assert!(
        store
            .rotate_key(&KeyId::new(), &orphan, ts(33_030), &entry("key.rotate"))
            .await
            .unwrap()
            .is_none()
    );
    let foreign = api_key(&other_ws, "rot-foreign", 33_032);
    assert!(
        store
            .rotate_key(&second.id, &foreign, ts(33_032), &entry("key.rotate"))
            .await
            .unwrap()
            .is_none()
    );
    store
        .revoke_key(&ws.id, &second.id, ts(33_033), &entry("key.revoke"))
        .await
        .unwrap()
        .unwrap();
    let too_late = api_key(&ws, "rot-too-late", 33_034);
    assert!(
        store
            .rotate_key(&second.id, &too_late, ts(33_034), &entry("key.rotate"))
            .await
            .unwrap()
            .is_none()
    );
    for k in [&orphan, &foreign, &too_late] {
        assert!(store.key_by_hash(&k.hash).await.unwrap().is_none());
    }
    assert_eq!(
        changes_since(store, before).await.len(),
        3,
        "the rotation, and the second key's creation and revocation"
    );

    // Immediately, without grace; the credits move on again.
    let newer = api_key(&ws, "rot-newer", 33_040);
    let stored = store
        .rotate_key(&new.id, &newer, ts(33_040), &entry("key.rotate"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.remaining, Some(30));
    assert_eq!(
        store
            .key_by_hash(&new.hash)
            .await
            .unwrap()
            .unwrap()
            .status(ts(33_040)),
        KeyStatus::Revoked
    );
    assert_eq!(
        changes_since(store, before).await,
        [
            change("key.changed", &old.hash, ts(33_010)),
            change("key.changed", &second.hash, ts(33_019)),
            change("key.changed", &second.hash, ts(33_033)),
            change("key.changed", &new.hash, ts(33_040))
        ]
    );
}

pub(crate) async fn keys_credits(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "credits", 34_000).await;
    let mut k = api_key(&ws, "cred", 34_001);
    k.remaining = Some(10);
    let unlimited = api_key(&ws, "cred-unlimited", 34_001);
    store.insert_key(&k, None).await.unwrap();
    store.insert_key(&unlimited, None).await.unwrap();
    let before = store.latest_change().await.unwrap();
    let ws_id = &ws.id;
    let remaining = |id: KeyId| async move {
        store
            .key_by_id(ws_id, &id)
            .await
            .unwrap()
            .unwrap()
            .remaining
    };

    assert_eq!(store.consume_credits(&k.id, 3).await.unwrap(), Some(7));
    // Not enough: nothing is spent.
    assert_eq!(store.consume_credits(&k.id, 8).await.unwrap(), None);
    assert_eq!(remaining(k.id.clone()).await, Some(7));
    assert_eq!(store.consume_credits(&k.id, 7).await.unwrap(), Some(0));
    assert_eq!(store.consume_credits(&k.id, 1).await.unwrap(), None);
    assert_eq!(store.consume_credits(&k.id, 0).await.unwrap(), Some(0));
    assert_eq!(remaining(k.id.clone()).await, Some(0));
    // Credits set again are spendable.
    let top_up = KeyChanges {
        remaining: Some(Some(2)),
        ..KeyChanges::default()
    };
    store
        .patch_key(&ws.id, &k.id, &top_up, ts(34_010), &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.consume_credits(&k.id, 2).await.unwrap(), Some(0));

    // Unlimited: always enough, and stays unlimited.
    for cost in [1, 1_000_000, i64::MAX] {
        assert_eq!(
            store.consume_credits(&unlimited.id, cost).await.unwrap(),
            Some(i64::MAX)
        );
    }
    assert_eq!(remaining(unlimited.id.clone()).await, None);
    // No such key: nothing to spend.
    assert_eq!(store.consume_credits(&KeyId::new(), 1).await.unwrap(), None);
    // A negative cost would mint credits.
    let err = store.consume_credits(&k.id, -1).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert_eq!(remaining(k.id.clone()).await, Some(0));

    // 80 concurrent spenders of 50 credits (on PostgreSQL over several pool connections).
    let mut racy = api_key(&ws, "cred-racy", 34_020);
    racy.remaining = Some(50);
    store.insert_key(&racy, None).await.unwrap();
    let results = join_all((0..80).map(|_| {
        let id = racy.id.clone();
        async move { store.consume_credits(&id, 1).await.unwrap() }
    }))
    .await;
    check_credit_race(results, 50);
    assert_eq!(remaining(racy.id.clone()).await, Some(0));
    // Spending announces nothing (the update and the new key above did).
    assert_eq!(changes_since(store, before).await.len(), 2);
}

/// Exactly `credits` spenders of one credit each succeeded, each seeing a different count
/// left; the rest were refused.
fn check_credit_race(results: Vec<Option<i64>>, credits: i64) {
    let mut left: Vec<i64> = results.iter().filter_map(|r| *r).collect();
    let refused = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(left.len() as i64, credits, "{results:?}");
    assert_eq!(
        refused as i64,
        results.len() as i64 - credits,
        "{results:?}"
    );
    left.sort_unstable();
    assert_eq!(left, (0..credits).collect::<Vec<_>>());
}

/// 80 spenders of one key with 50 credits, spread over the given stores (nodes) and spawned on
/// the runtime's threads: exactly 50 succeed and none is left.
pub(crate) async fn credits_race_across_stores(stores: Vec<Arc<dyn Store>>) {
    let first = stores[0].as_ref();
    let (ws, _) = new_workspace(first, "credits-nodes", 35_000).await;
    let mut k = api_key(&ws, "cred-nodes", 35_001);
    k.remaining = Some(50);
    first.insert_key(&k, None).await.unwrap();
    let tasks: Vec<_> = (0..80)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let id = k.id.clone();
            tokio::spawn(async move { store.consume_credits(&id, 1).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    check_credit_race(results, 50);
    for s in &stores {
        let got = s.key_by_id(&ws.id, &k.id).await.unwrap().unwrap();
        assert_eq!(got.remaining, Some(0));
    }
}

pub(crate) async fn keys_touch(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "touch", 36_000).await;
    let a = api_key(&ws, "touch-a", 36_001);
    let mut b = api_key(&ws, "touch-b", 36_001);
    b.last_used_at = Some(ts(36_100));
    let c = api_key(&ws, "touch-c", 36_001);
    for k in [&a, &b, &c] {
        store.insert_key(k, None).await.unwrap();
    }
    let before = store.latest_change().await.unwrap();
    let ws_id = &ws.id;
    let last_used = |id: KeyId| async move {
        store
            .key_by_id(ws_id, &id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };

    store.touch_keys(&[]).await.unwrap();
    store
        .touch_keys(&[
            (a.id.clone(), ts(36_050)),
            // Earlier than what is stored: kept.
            (b.id.clone(), ts(36_050)),
            // Twice in one batch, the later first: the later wins.
            (c.id.clone(), ts(36_070)),
            (c.id.clone(), ts(36_060)),
            // Unknown keys are passed over.
            (KeyId::new(), ts(36_050)),
        ])
        .await
        .unwrap();
    assert_eq!(last_used(a.id.clone()).await, Some(ts(36_050)));
    assert_eq!(last_used(b.id.clone()).await, Some(ts(36_100)));
    assert_eq!(last_used(c.id.clone()).await, Some(ts(36_070)));
    // Forward only, batch after batch.
    store
        .touch_keys(&[(a.id.clone(), ts(36_040))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id.clone()).await, Some(ts(36_050)));
    store
        .touch_keys(&[(a.id.clone(), ts(36_050))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id.clone()).await, Some(ts(36_050)));
    store
        .touch_keys(&[(a.id.clone(), ts(36_051)), (b.id.clone(), ts(36_101))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id.clone()).await, Some(ts(36_051)));
    assert_eq!(last_used(b.id.clone()).await, Some(ts(36_101)));
    // Nothing else of the key changes, and nothing is announced.
    let got = store.key_by_id(&ws.id, &a.id).await.unwrap().unwrap();
    assert_eq!(
        got,
        ApiKey {
            last_used_at: Some(ts(36_051)),
            ..a.clone()
        }
    );
    assert!(changes_since(store, before).await.is_empty());

    // Many keys in one call (several statements).
    let many: Vec<ApiKey> = (0..1200)
        .map(|i| api_key(&ws, &format!("touch-many-{i}"), 36_200))
        .collect();
    store
        .insert_keys(&many, &entry("key.import"))
        .await
        .unwrap();
    // (The import announced its keys; touching them announces nothing.)
    let before = store.latest_change().await.unwrap();
    let used: Vec<(KeyId, Timestamp)> = many
        .iter()
        .enumerate()
        .map(|(i, k)| (k.id.clone(), ts(36_300 + (i % 10) as i64)))
        .collect();
    store.touch_keys(&used).await.unwrap();
    // Earlier times for all of them change nothing.
    let earlier: Vec<(KeyId, Timestamp)> =
        many.iter().map(|k| (k.id.clone(), ts(36_250))).collect();
    store.touch_keys(&earlier).await.unwrap();
    let listed = all_keys(store, &ws.id, &KeyFilter::default(), ts(36_400), 200).await;
    let by_id: std::collections::HashMap<KeyId, Option<Timestamp>> =
        listed.into_iter().map(|k| (k.id, k.last_used_at)).collect();
    for (id, at) in &used {
        assert_eq!(by_id[id], Some(*at));
    }

    // Concurrent flushes over overlapping keys, in different orders (two nodes at once): all
    // finish, and every key ends at the latest time any of them gave.
    let shared = &many[..300];
    let flushes = (0..6).map(|f| {
        let mut batch: Vec<(KeyId, Timestamp)> = shared
            .iter()
            .enumerate()
            .map(|(i, k)| (k.id.clone(), ts(37_000 + ((i + f * 37) % 50) as i64)))
            .collect();
        if f % 2 == 1 {
            batch.reverse();
        }
        async move { store.touch_keys(&batch).await.unwrap() }
    });
    join_all(flushes).await;
    for (i, k) in shared.iter().enumerate() {
        let latest = (0..6)
            .map(|f| 37_000 + ((i + f * 37) % 50) as i64)
            .max()
            .unwrap();
        assert_eq!(last_used(k.id.clone()).await, Some(ts(latest)), "{i}");
    }
    assert!(changes_since(store, before).await.is_empty());
}

/// Of concurrent rotations of one key, exactly one writes: one replacement exists, the old key
/// names it, and the others' replacements were never stored.
pub(crate) async fn concurrent_rotations_of_one_key(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "rotate-race", 34_000).await;
    for round in 0..5 {
        let old = api_key(&ws, &format!("race-{round}"), 34_001);
        store.insert_key(&old, None).await.unwrap();
        let news: Vec<ApiKey> = (0..4)
            .map(|i| api_key(&ws, &format!("race-{round}-{i}"), 34_010))
            .collect();
        let entries: Vec<AuditEntry> = news.iter().map(|_| entry("key.rotate")).collect();
        let outcomes: Vec<bool> = join_all(
            news.iter()
                .zip(&entries)
                .map(|(n, e)| store.rotate_key(&old.id, n, ts(34_010), e)),
        )
        .await
        .into_iter()
        .map(|r| r.unwrap().is_some())
        .collect();
        assert_eq!(
            outcomes.iter().filter(|w| **w).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        let winner = outcomes.iter().position(|w| *w).unwrap();
        let stored = store.key_by_id(&ws.id, &old.id).await.unwrap().unwrap();
        assert_eq!(stored.replaced_by.as_ref(), Some(&news[winner].id));
        for (i, (n, e)) in news.iter().zip(&entries).enumerate() {
            assert_eq!(
                store.key_by_hash(&n.hash).await.unwrap().is_some(),
                i == winner,
                "round {round}, replacement {i}"
            );
            assert_eq!(
                audited(store, e).await,
                i == winner,
                "round {round}, entry {i}"
            );
        }
    }
}
