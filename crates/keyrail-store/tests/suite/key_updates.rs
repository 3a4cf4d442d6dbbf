//! API keys after creation: updates, rotation, credits and last use.

use std::sync::Arc;

use keyrail_core::id::KeyId;
use keyrail_core::model::{ApiKey, KeyFilter, KeyRateLimit, KeyStatus, Page};
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
    k.rate_limit = Some(KeyRateLimit {
        limit: 10,
        window_seconds: 1,
    });
    k.remaining = Some(5);
    store.insert_key(&k).await.unwrap();
    let before = store.latest_change().await.unwrap();

    // Every saved field changes; the others are given changed too and must stay as stored.
    let mut edit = k.clone();
    edit.name = "renamed".into();
    edit.scopes = vec!["chats:read".into(), "chats:write".into()];
    edit.meta = Some(serde_json::json!({"tier": 2}));
    edit.rate_limit = Some(KeyRateLimit {
        limit: 1000,
        window_seconds: 3600,
    });
    edit.remaining = Some(77);
    edit.disabled = true;
    edit.updated_at = ts(32_010);
    edit.expires_at = Some(ts(99_000));
    edit.revoked_at = Some(ts(98_000));
    edit.replaced_by = Some(KeyId::new());
    edit.hash = digest("upd-other-hash");
    edit.prefix = "xx_0000".into();
    edit.created_at = ts(1);
    edit.created_by = None;
    edit.last_used_at = None;
    edit.external_id = None;
    edit.sealed_key = None;
    assert!(store.update_key(&edit).await.unwrap());
    let mut want = k.clone();
    want.name = edit.name.clone();
    want.scopes = edit.scopes.clone();
    want.meta = edit.meta.clone();
    want.rate_limit = edit.rate_limit;
    // Credits are not written by update_key (verifies spend them concurrently).
    want.disabled = true;
    want.updated_at = edit.updated_at;
    want.expires_at = edit.expires_at;
    want.revoked_at = edit.revoked_at;
    want.replaced_by = edit.replaced_by.clone();
    let got = store.key_by_id(&ws.id, &k.id).await.unwrap().unwrap();
    assert_eq!(got, want);
    assert_eq!(got.hash, k.hash);
    assert_eq!(got.external_id.as_deref(), Some("cust-upd"));
    assert_eq!(got.last_used_at, Some(ts(32_002)));
    assert!(store.key_by_hash(&edit.hash).await.unwrap().is_none());
    // Announced under the stored hash (what the verify caches are keyed by).
    assert_eq!(
        changes_since(store, before).await,
        [change("key.changed", &k.hash, ts(32_010))]
    );

    // Clearing the optional fields; a revocation and a replacement stay: a stale copy (an
    // edit racing a revoke) cannot bring a key back.
    let mut cleared = want.clone();
    cleared.meta = None;
    cleared.rate_limit = None;
    cleared.disabled = false;
    cleared.expires_at = None;
    cleared.revoked_at = None;
    cleared.replaced_by = None;
    cleared.updated_at = ts(32_020);
    assert!(store.update_key(&cleared).await.unwrap());
    cleared.revoked_at = want.revoked_at;
    cleared.replaced_by = want.replaced_by.clone();
    assert!(cleared.revoked_at.is_some() && cleared.replaced_by.is_some());
    assert_eq!(store.key_by_hash(&k.hash).await.unwrap().unwrap(), cleared);
    // A revocation moves earlier, never later.
    let saved_revocation = async |shift_secs: i64| {
        let mut copy = cleared.clone();
        copy.revoked_at = cleared.revoked_at.map(|t| t.plus_secs(shift_secs));
        assert!(store.update_key(&copy).await.unwrap());
        store
            .key_by_hash(&k.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
    };
    assert_eq!(saved_revocation(3600).await, cleared.revoked_at);
    let earlier = cleared.revoked_at.map(|t| t.plus_secs(-1));
    assert_eq!(saved_revocation(-1).await, earlier);
    cleared.revoked_at = earlier;

    // No such key, or the key under another workspace: false, nothing announced.
    let mut stranger = api_key(&ws, "upd-stranger", 32_030);
    stranger.updated_at = ts(32_031);
    assert!(!store.update_key(&stranger).await.unwrap());
    let mut elsewhere = cleared.clone();
    elsewhere.workspace_id = other_ws.id.clone();
    elsewhere.name = "hijacked".into();
    elsewhere.updated_at = ts(32_032);
    assert!(!store.update_key(&elsewhere).await.unwrap());
    assert_eq!(
        store.key_by_hash(&k.hash).await.unwrap().unwrap().name,
        "renamed"
    );
    assert_eq!(
        changes_since(store, before).await,
        [
            change("key.changed", &k.hash, ts(32_010)),
            change("key.changed", &k.hash, ts(32_020)),
            change("key.changed", &k.hash, ts(32_020)),
            change("key.changed", &k.hash, ts(32_020))
        ]
    );
}

pub(crate) async fn keys_rotate(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "rotate", 33_000).await;
    let (other_ws, _) = new_workspace(store, "rotate-other", 33_000).await;
    let old = api_key(&ws, "rot-old", 33_001);
    store.insert_key(&old).await.unwrap();
    let before = store.latest_change().await.unwrap();

    // With a grace period of a minute.
    let mut new = api_key(&ws, "rot-new", 33_010);
    new.scopes = old.scopes.clone();
    let mut retired = old.clone();
    retired.revoked_at = Some(ts(33_010 + 60_000));
    retired.replaced_by = Some(new.id.clone());
    retired.updated_at = ts(33_010);
    assert!(store.rotate_key(&retired, &new).await.unwrap());
    assert_eq!(
        store.key_by_id(&ws.id, &old.id).await.unwrap(),
        Some(retired.clone())
    );
    assert_eq!(
        store.key_by_hash(&new.hash).await.unwrap(),
        Some(new.clone())
    );
    assert_eq!(
        changes_since(store, before).await,
        [change("key.changed", &old.hash, ts(33_010))]
    );
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
    let mut retired_again = retired.clone();
    retired_again.revoked_at = Some(ts(33_015));
    retired_again.replaced_by = Some(again.id.clone());
    assert!(!store.rotate_key(&retired_again, &again).await.unwrap());
    assert_eq!(
        store.key_by_id(&ws.id, &old.id).await.unwrap(),
        Some(retired.clone())
    );
    assert!(store.key_by_hash(&again.hash).await.unwrap().is_none());

    // The replacement collides with an existing key: nothing is written, the old key stays as
    // it was, nothing is announced.
    let second = api_key(&ws, "rot-second", 33_019);
    store.insert_key(&second).await.unwrap();
    let before_clash = store.latest_change().await.unwrap();
    let mut clash = api_key(&ws, "rot-clash", 33_020);
    clash.hash = new.hash.clone();
    let mut retire_again = second.clone();
    retire_again.revoked_at = Some(ts(33_020));
    retire_again.replaced_by = Some(clash.id.clone());
    retire_again.updated_at = ts(33_020);
    assert_conflict(store.rotate_key(&retire_again, &clash).await, "key hash");
    assert_eq!(
        store.key_by_id(&ws.id, &second.id).await.unwrap(),
        Some(second.clone())
    );
    assert!(store.key_by_id(&ws.id, &clash.id).await.unwrap().is_none());
    // The same with an id that is taken.
    let mut clash_id = api_key(&ws, "rot-clash-id", 33_021);
    clash_id.id = new.id.clone();
    retire_again.replaced_by = Some(clash_id.id.clone());
    assert_conflict(store.rotate_key(&retire_again, &clash_id).await, "key id");
    assert_eq!(
        store.key_by_id(&ws.id, &second.id).await.unwrap(),
        Some(second.clone())
    );
    assert!(store.key_by_hash(&clash_id.hash).await.unwrap().is_none());
    assert!(changes_since(store, before_clash).await.is_empty());

    // The old key is gone (or never was): false, the new key is not inserted.
    let ghost = api_key(&ws, "rot-ghost", 33_030);
    let orphan = api_key(&ws, "rot-orphan", 33_030);
    assert!(!store.rotate_key(&ghost, &orphan).await.unwrap());
    assert!(store.key_by_hash(&orphan.hash).await.unwrap().is_none());
    // The old key under another workspace counts as gone.
    let mut elsewhere = retired.clone();
    elsewhere.workspace_id = other_ws.id.clone();
    let orphan2 = api_key(&other_ws, "rot-orphan-2", 33_031);
    assert!(!store.rotate_key(&elsewhere, &orphan2).await.unwrap());
    assert!(store.key_by_hash(&orphan2.hash).await.unwrap().is_none());
    // A replacement in another workspace is refused.
    let foreign = api_key(&other_ws, "rot-foreign", 33_032);
    let err = store.rotate_key(&retire_again, &foreign).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.key_by_hash(&foreign.hash).await.unwrap().is_none());
    assert_eq!(changes_since(store, before).await.len(), 1);

    // Immediately, without grace.
    let newer = api_key(&ws, "rot-newer", 33_040);
    let mut retire_new = new.clone();
    retire_new.revoked_at = Some(ts(33_040));
    retire_new.replaced_by = Some(newer.id.clone());
    retire_new.updated_at = ts(33_040);
    assert!(store.rotate_key(&retire_new, &newer).await.unwrap());
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
            change("key.changed", &new.hash, ts(33_040))
        ]
    );
}

pub(crate) async fn keys_credits(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "credits", 34_000).await;
    let mut k = api_key(&ws, "cred", 34_001);
    k.remaining = Some(10);
    let unlimited = api_key(&ws, "cred-unlimited", 34_001);
    store.insert_key(&k).await.unwrap();
    store.insert_key(&unlimited).await.unwrap();
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
    assert!(
        store
            .set_key_remaining(&ws.id, &k.id, Some(2), ts(34_010))
            .await
            .unwrap()
    );
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
    store.insert_key(&racy).await.unwrap();
    let results = join_all((0..80).map(|_| {
        let id = racy.id.clone();
        async move { store.consume_credits(&id, 1).await.unwrap() }
    }))
    .await;
    check_credit_race(results, 50);
    assert_eq!(remaining(racy.id.clone()).await, Some(0));
    // Spending announces nothing (the update above did).
    assert_eq!(changes_since(store, before).await.len(), 1);
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
    first.insert_key(&k).await.unwrap();
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
        store.insert_key(k).await.unwrap();
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
    store.insert_keys(&many).await.unwrap();
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
        store.insert_key(&old).await.unwrap();
        let news: Vec<ApiKey> = (0..4)
            .map(|i| api_key(&ws, &format!("race-{round}-{i}"), 34_010))
            .collect();
        let retired: Vec<ApiKey> = news
            .iter()
            .map(|n| {
                let mut r = old.clone();
                r.revoked_at = Some(ts(34_010));
                r.replaced_by = Some(n.id.clone());
                r.updated_at = ts(34_010);
                r
            })
            .collect();
        let outcomes: Vec<bool> = join_all(
            retired
                .iter()
                .zip(&news)
                .map(|(r, n)| store.rotate_key(r, n)),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            outcomes.iter().filter(|w| **w).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        let winner = outcomes.iter().position(|w| *w).unwrap();
        let stored = store.key_by_id(&ws.id, &old.id).await.unwrap().unwrap();
        assert_eq!(stored.replaced_by.as_ref(), Some(&news[winner].id));
        for (i, n) in news.iter().enumerate() {
            assert_eq!(
                store.key_by_hash(&n.hash).await.unwrap().is_some(),
                i == winner,
                "round {round}, replacement {i}"
            );
        }
    }
}
