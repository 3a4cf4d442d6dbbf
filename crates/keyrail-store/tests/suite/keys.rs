//! API keys: inserting, looking up, importing and listing.

use std::time::{Duration, Instant};

use keyrail_core::id::{KeyId, WorkspaceId};
use keyrail_core::model::{ApiKey, KeyFilter, KeyRateLimit, KeyStatus, Page, Workspace};
use keyrail_core::{Store, StoreError, Timestamp};

use crate::fixtures::*;

fn key_ids(keys: &[ApiKey]) -> Vec<KeyId> {
    keys.iter().map(|k| k.id.clone()).collect()
}

/// Every key of `ws` matching `filter` at `now`, read page by page (`limit` per page).
pub(crate) async fn all_keys(
    store: &dyn Store,
    ws: &WorkspaceId,
    filter: &KeyFilter,
    now: Timestamp,
    limit: u32,
) -> Vec<ApiKey> {
    let mut out: Vec<ApiKey> = Vec::new();
    loop {
        let page = Page {
            limit,
            after: out.last().map(|k| k.id.to_string()),
        };
        let got = store.list_keys(ws, filter, now, &page).await.unwrap();
        assert!(got.len() <= limit as usize);
        let done = got.len() < limit as usize;
        out.extend(got);
        if done {
            return out;
        }
    }
}

pub(crate) fn status_filter(status: KeyStatus) -> KeyFilter {
    KeyFilter {
        status: Some(status),
        external_id: None,
    }
}

pub(crate) async fn keys_insert_and_lookup(store: &dyn Store) {
    let (ws, owner) = new_workspace(store, "keys", 30_000).await;
    let (other_ws, _) = new_workspace(store, "keys-other", 30_000).await;
    let before = store.latest_change().await.unwrap();

    // Every optional field set, with values at the edges of their types.
    let mut full = api_key(&ws, "full", 30_001);
    full.scopes = vec![
        "keys:read".into(),
        "chats:write".into(),
        "ünïcode:read".into(),
    ];
    full.created_by = Some(format!("user:{}", owner.user_id));
    full.updated_at = ts(30_002);
    full.expires_at = Some(ts(40_000));
    full.revoked_at = Some(ts(50_000));
    full.disabled = true;
    full.last_used_at = Some(ts(30_003));
    full.rate_limit = Some(KeyRateLimit {
        limit: u32::MAX,
        window_seconds: 86_400,
    });
    full.remaining = Some(i64::MAX - 1);
    full.meta = Some(serde_json::json!({
        "plan": "pro",
        "seats": 12,
        "ratio": 2.5,
        "tags": ["a", null, true],
        "nested": {"ü": "✓", "empty": {}},
    }));
    full.external_id = Some("cust-42".into());
    full.sealed_key = Some("v1.sealed.AAAA".into());
    full.replaced_by = Some(KeyId::new());
    store.insert_key(&full, None).await.unwrap();

    // Nothing optional set, no scopes.
    let mut bare = api_key(&ws, "bare", 30_004);
    bare.scopes = Vec::new();
    store.insert_key(&bare, None).await.unwrap();
    // A JSON null as meta is kept apart from no meta.
    let mut null_meta = api_key(&ws, "null-meta", 30_005);
    null_meta.meta = Some(serde_json::Value::Null);
    null_meta.remaining = Some(0);
    store.insert_key(&null_meta, None).await.unwrap();

    for k in [&full, &bare, &null_meta] {
        assert_eq!(
            store.key_by_id(&ws.id, &k.id).await.unwrap().as_ref(),
            Some(k)
        );
        assert_eq!(store.key_by_hash(&k.hash).await.unwrap().as_ref(), Some(k));
    }
    let got = store.key_by_hash(&full.hash).await.unwrap().unwrap();
    assert_eq!(got.meta, full.meta);
    assert_eq!(got.rate_limit, full.rate_limit);
    assert_eq!(got.remaining, Some(i64::MAX - 1));
    assert_eq!(got.replaced_by, full.replaced_by);
    let got = store.key_by_hash(&null_meta.hash).await.unwrap().unwrap();
    assert_eq!(got.meta, Some(serde_json::Value::Null));

    // Another workspace, an unknown id or hash: nothing.
    assert!(
        store
            .key_by_id(&other_ws.id, &full.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .key_by_id(&ws.id, &KeyId::new())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .key_by_hash(&digest("unknown"))
            .await
            .unwrap()
            .is_none()
    );
    // Hashes match exactly (lowercase hex as stored).
    assert!(
        store
            .key_by_hash(&full.hash.to_uppercase())
            .await
            .unwrap()
            .is_none()
    );

    // A second key with the same hash, even in another workspace: Conflict, nothing written.
    let mut dup_hash = api_key(&other_ws, "full", 30_010);
    dup_hash.name = "dup".into();
    assert_conflict(store.insert_key(&dup_hash, None).await, "key hash");
    assert_eq!(
        store.key_by_hash(&full.hash).await.unwrap().unwrap().id,
        full.id
    );
    assert!(
        store
            .key_by_id(&other_ws.id, &dup_hash.id)
            .await
            .unwrap()
            .is_none()
    );
    let mut dup_id = api_key(&ws, "dup-id", 30_010);
    dup_id.id = full.id.clone();
    assert_conflict(store.insert_key(&dup_id, None).await, "key id");
    assert!(store.key_by_hash(&dup_id.hash).await.unwrap().is_none());
    // A key of a workspace that does not exist.
    let ghost = Workspace {
        id: WorkspaceId::new(),
        ..ws.clone()
    };
    let err = store
        .insert_key(&api_key(&ghost, "ghost", 30_011), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.key_by_hash(&digest("ghost")).await.unwrap().is_none());

    // Each new key is announced under its hash (a node that remembers it as unknown forgets
    // that); refused ones are not.
    assert_eq!(
        changes_since(store, before).await,
        [
            change("key.changed", &full.hash, full.created_at),
            change("key.changed", &bare.hash, bare.created_at),
            change("key.changed", &null_meta.hash, null_meta.created_at),
        ]
    );

    // The key and its audit entry are written together, or neither: an entry whose id is taken
    // fails the insert as a Conflict on the audit entry, and leaves no key and no change.
    let audited_key = api_key(&ws, "audited", 30_020);
    let e = entry("key.create");
    store.insert_key(&audited_key, Some(&e)).await.unwrap();
    assert!(audited(store, &e).await);
    let before_taken = store.latest_change().await.unwrap();
    let lost = api_key(&ws, "lost", 30_021);
    let taken = taken_entry(store, "key.create").await;
    assert_conflict(store.insert_key(&lost, Some(&taken)).await, "audit entry");
    assert!(store.key_by_hash(&lost.hash).await.unwrap().is_none());
    assert!(store.key_by_id(&ws.id, &lost.id).await.unwrap().is_none());
    assert!(!audited(store, &taken).await);
    assert!(changes_since(store, before_taken).await.is_empty());
}

pub(crate) async fn keys_import(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "import", 30_100).await;
    let (other_ws, _) = new_workspace(store, "import-other", 30_100).await;
    let before = store.latest_change().await.unwrap();
    let existing = api_key(&ws, "imp-existing", 30_101);
    store.insert_key(&existing, None).await.unwrap();

    // 1000 keys in one call, in one transaction, with a mix of optional fields.
    let batch: Vec<ApiKey> = (0..1000)
        .map(|i| {
            let mut k = api_key(&ws, &format!("imp-{i}"), 30_102);
            if i % 3 == 0 {
                k.external_id = Some(format!("ext-{}", i % 7));
                k.meta = Some(serde_json::json!({ "i": i }));
            }
            if i % 5 == 0 {
                k.rate_limit = Some(KeyRateLimit {
                    limit: i,
                    window_seconds: 60,
                });
                k.remaining = Some(i64::from(i));
                k.expires_at = Some(ts(90_000));
            }
            k
        })
        .collect();
    let started = Instant::now();
    let import_entry = entry("key.import");
    store.insert_keys(&batch, &import_entry).await.unwrap();
    let took = started.elapsed();
    assert!(audited(store, &import_entry).await);
    eprintln!("{}: 1000 keys imported in {took:?}", store.backend());
    assert!(took < Duration::from_secs(5), "{took:?}");

    let mut expected = batch.clone();
    expected.push(existing.clone());
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    let listed = all_keys(store, &ws.id, &KeyFilter::default(), ts(30_200), 200).await;
    assert_eq!(listed.len(), 1001);
    assert!(
        listed == expected,
        "the imported keys read back differently"
    );
    for k in batch.iter().step_by(97) {
        assert_eq!(store.key_by_hash(&k.hash).await.unwrap().as_ref(), Some(k));
    }

    // Which hashes exist: each once, in the order asked.
    let asked = vec![
        digest("imp-new-a"),
        existing.hash.clone(),
        batch[5].hash.clone(),
        digest("imp-new-b"),
        existing.hash.clone(),
    ];
    assert_eq!(
        store.existing_key_hashes(&asked).await.unwrap(),
        [existing.hash.clone(), batch[5].hash.clone()]
    );
    assert!(store.existing_key_hashes(&[]).await.unwrap().is_empty());
    // Many at once (more than one statement's worth).
    let mut many: Vec<String> = (0..700).map(|i| digest(&format!("imp-none-{i}"))).collect();
    many.extend(expected.iter().map(|k| k.hash.clone()));
    let found = store.existing_key_hashes(&many).await.unwrap();
    assert_eq!(found, many[700..]);

    // All or nothing: one key whose hash exists fails the whole call, wherever it falls among
    // the statements of the import (first, middle, last in hash order), whichever workspace
    // holds the existing key.
    let fresh = |tag: &str, n: usize| -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = (0..n)
            .map(|i| api_key(&ws, &format!("{tag}-{i}"), 30_301))
            .collect();
        keys.sort_by(|a, b| a.hash.cmp(&b.hash));
        keys
    };
    let hashes_of = |keys: &[ApiKey]| keys.iter().map(|k| k.hash.clone()).collect::<Vec<_>>();
    for (tag, pos, owner) in [
        ("imp-a", 0, &ws),
        ("imp-b", 125, &other_ws),
        ("imp-c", 249, &other_ws),
        ("imp-d", 249, &ws),
    ] {
        let mut bad = fresh(tag, 250);
        let mut holder = api_key(owner, &format!("{tag}-holder"), 30_300);
        holder.hash = bad[pos].hash.clone();
        store.insert_key(&holder, None).await.unwrap();
        // Given in reverse: the order of the call does not matter either.
        bad.reverse();
        assert_conflict(
            store.insert_keys(&bad, &entry("key.import")).await,
            "key hash",
        );
        let left = store.existing_key_hashes(&hashes_of(&bad)).await.unwrap();
        assert_eq!(left, [holder.hash.clone()], "{tag}");
        assert_eq!(
            store.key_by_hash(&holder.hash).await.unwrap().unwrap().id,
            holder.id
        );
        if owner.id == ws.id {
            expected.push(holder);
        }
    }
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    // A hash repeated within the batch (the last two in hash order).
    let mut twice = fresh("imp-twice", 250);
    twice[249].hash = twice[248].hash.clone();
    assert_conflict(
        store.insert_keys(&twice, &entry("key.import")).await,
        "key hash",
    );
    assert!(
        store
            .existing_key_hashes(&hashes_of(&twice))
            .await
            .unwrap()
            .is_empty()
    );
    // An id repeated within the batch.
    let mut same_id = fresh("imp-same-id", 250);
    same_id[249].id = same_id[0].id.clone();
    assert_conflict(
        store.insert_keys(&same_id, &entry("key.import")).await,
        "key id",
    );
    assert!(
        store
            .existing_key_hashes(&hashes_of(&same_id))
            .await
            .unwrap()
            .is_empty()
    );
    // A key of a workspace that does not exist.
    let mut orphan = fresh("imp-orphan", 250);
    orphan[249].workspace_id = WorkspaceId::new();
    let err = store
        .insert_keys(&orphan, &entry("key.import"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(
        store
            .existing_key_hashes(&hashes_of(&orphan))
            .await
            .unwrap()
            .is_empty()
    );
    // Still exactly what the good import left.
    let listed = all_keys(store, &ws.id, &KeyFilter::default(), ts(30_400), 200).await;
    assert_eq!(key_ids(&listed), key_ids(&expected));

    // An empty import does nothing; a small one works like a big one.
    store.insert_keys(&[], &entry("key.import")).await.unwrap();
    let small = fresh("imp-small", 2);
    store
        .insert_keys(&small, &entry("key.import"))
        .await
        .unwrap();
    for k in &small {
        assert_eq!(
            store.key_by_id(&ws.id, &k.id).await.unwrap().as_ref(),
            Some(k)
        );
    }

    // An import and its audit entry are written together, or neither.
    let unaudited = fresh("imp-unaudited", 300);
    let taken = taken_entry(store, "key.import").await;
    assert_conflict(store.insert_keys(&unaudited, &taken).await, "audit entry");
    assert!(
        store
            .existing_key_hashes(&hashes_of(&unaudited))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!audited(store, &taken).await);

    // Every key that went in was announced under its hash, once; the failed imports announced
    // nothing.
    let announced = changes_since(store, before).await;
    assert!(announced.iter().all(|(kind, _, _)| kind == "key.changed"));
    let mut subjects: Vec<String> = announced.into_iter().map(|(_, s, _)| s).collect();
    let mut hashes: Vec<String> = expected
        .iter()
        .chain(small.iter())
        .map(|k| k.hash.clone())
        .collect();
    // The holders of the other workspace went in too.
    hashes.extend(
        all_keys(store, &other_ws.id, &KeyFilter::default(), ts(30_400), 200)
            .await
            .into_iter()
            .map(|k| k.hash),
    );
    subjects.sort();
    hashes.sort();
    assert_eq!(subjects.len(), 1000 + 1 + 4 + 2);
    assert!(
        subjects == hashes,
        "announced hashes differ from the keys inserted"
    );
}

/// (label, revoked_at, disabled, expires_at, status at the listing's `now`)
type ListCase = (
    &'static str,
    Option<Timestamp>,
    bool,
    Option<Timestamp>,
    KeyStatus,
);

pub(crate) async fn keys_listing(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "listing", 31_000).await;
    let (other_ws, _) = new_workspace(store, "listing-other", 31_000).await;
    let now = ts(31_500);
    let at = |d: i64| Some(Timestamp::from_millis(now.millis() + d));
    let cases: [ListCase; 13] = [
        ("plain", None, false, None, KeyStatus::Active),
        ("expires-later", None, false, at(1), KeyStatus::Active),
        // A rotation with grace: revoked from a time still to come.
        ("revoked-later", at(1), false, None, KeyStatus::Active),
        (
            "revoked-later-expires-later",
            at(5),
            false,
            at(5),
            KeyStatus::Active,
        ),
        ("disabled", None, true, None, KeyStatus::Disabled),
        ("disabled-expired", None, true, at(-1), KeyStatus::Disabled),
        (
            "disabled-revoked-later",
            at(1),
            true,
            None,
            KeyStatus::Disabled,
        ),
        ("expired", None, false, at(-1), KeyStatus::Expired),
        ("expires-now", None, false, at(0), KeyStatus::Expired),
        (
            "expired-revoked-later",
            at(1),
            false,
            at(-1),
            KeyStatus::Expired,
        ),
        ("revoked", at(-1), false, None, KeyStatus::Revoked),
        ("revoked-now", at(0), false, None, KeyStatus::Revoked),
        (
            "revoked-disabled-expired",
            at(-1),
            true,
            at(-2),
            KeyStatus::Revoked,
        ),
    ];
    let mut keys = Vec::new();
    for (i, (label, revoked_at, disabled, expires_at, status)) in cases.iter().enumerate() {
        let mut k = api_key(&ws, &format!("list-{label}"), 31_001);
        k.revoked_at = *revoked_at;
        k.disabled = *disabled;
        k.expires_at = *expires_at;
        k.external_id = Some(format!("cust-{}", i % 3));
        assert_eq!(k.status(now), *status, "{label}");
        store.insert_key(&k, None).await.unwrap();
        keys.push(k);
    }
    // Keys of another workspace, same external ids, never show.
    for i in 0..3 {
        let mut k = api_key(&other_ws, &format!("list-other-{i}"), 31_001);
        k.external_id = Some(format!("cust-{i}"));
        store.insert_key(&k, None).await.unwrap();
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    let label_of = |id: &KeyId| {
        keys.iter()
            .find(|k| &k.id == id)
            .map(|k| k.name.clone())
            .unwrap()
    };

    // Every status, evaluated by the store at several instants, as ApiKey::status says.
    let instants = [
        ts(0),
        now.plus_secs(-1),
        at(-1).unwrap(),
        now,
        at(1).unwrap(),
        at(5).unwrap(),
    ];
    for t in instants {
        for status in [
            KeyStatus::Active,
            KeyStatus::Disabled,
            KeyStatus::Expired,
            KeyStatus::Revoked,
        ] {
            let want: Vec<KeyId> = keys
                .iter()
                .filter(|k| k.status(t) == status)
                .map(|k| k.id.clone())
                .collect();
            let got = store
                .list_keys(&ws.id, &status_filter(status), t, &Page::first(200))
                .await
                .unwrap();
            assert_eq!(
                key_ids(&got),
                want,
                "{status:?} at {t:?}: got {:?}",
                got.iter().map(|k| label_of(&k.id)).collect::<Vec<_>>()
            );
        }
    }
    // The same at `now`, spelled out.
    let ws_id = &ws.id;
    let names_at = |status: KeyStatus, t: Timestamp| {
        let filter = status_filter(status);
        async move {
            let mut names: Vec<String> = store
                .list_keys(ws_id, &filter, t, &Page::first(200))
                .await
                .unwrap()
                .into_iter()
                .map(|k| k.name.trim_start_matches("list-").to_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        names_at(KeyStatus::Active, now).await,
        [
            "expires-later",
            "plain",
            "revoked-later",
            "revoked-later-expires-later"
        ]
    );
    assert_eq!(
        names_at(KeyStatus::Disabled, now).await,
        ["disabled", "disabled-expired", "disabled-revoked-later"]
    );
    assert_eq!(
        names_at(KeyStatus::Expired, now).await,
        ["expired", "expired-revoked-later", "expires-now"]
    );
    assert_eq!(
        names_at(KeyStatus::Revoked, now).await,
        ["revoked", "revoked-disabled-expired", "revoked-now"]
    );
    // A millisecond later, the grace periods of one millisecond are over.
    assert_eq!(
        names_at(KeyStatus::Revoked, at(1).unwrap()).await,
        [
            "disabled-revoked-later",
            "expired-revoked-later",
            "revoked",
            "revoked-disabled-expired",
            "revoked-later",
            "revoked-now"
        ]
    );

    // No filter: every key of the workspace, by id.
    let all = store
        .list_keys(&ws.id, &KeyFilter::default(), now, &Page::first(200))
        .await
        .unwrap();
    assert!(all == keys, "the listed keys read back differently");

    // By external id, alone and with a status.
    for ext in ["cust-0", "cust-1", "cust-2"] {
        let filter = KeyFilter {
            status: None,
            external_id: Some(ext.into()),
        };
        let want: Vec<KeyId> = keys
            .iter()
            .filter(|k| k.external_id.as_deref() == Some(ext))
            .map(|k| k.id.clone())
            .collect();
        assert!(!want.is_empty());
        let got = store
            .list_keys(&ws.id, &filter, now, &Page::first(200))
            .await
            .unwrap();
        assert_eq!(key_ids(&got), want, "{ext}");
        for status in [KeyStatus::Active, KeyStatus::Revoked] {
            let filter = KeyFilter {
                status: Some(status),
                external_id: Some(ext.into()),
            };
            let want: Vec<KeyId> = keys
                .iter()
                .filter(|k| k.external_id.as_deref() == Some(ext) && k.status(now) == status)
                .map(|k| k.id.clone())
                .collect();
            let got = store
                .list_keys(&ws.id, &filter, now, &Page::first(200))
                .await
                .unwrap();
            assert_eq!(key_ids(&got), want, "{ext} {status:?}");
        }
    }
    for ext in ["cust-9", "CUST-0", "cust-"] {
        let filter = KeyFilter {
            status: None,
            external_id: Some(ext.into()),
        };
        assert!(
            store
                .list_keys(&ws.id, &filter, now, &Page::first(200))
                .await
                .unwrap()
                .is_empty(),
            "{ext}"
        );
    }

    // Pages: 5 + 5 + 3, then nothing after the last.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let page = Page {
            limit: 5,
            after: after.clone(),
        };
        let got = store
            .list_keys(&ws.id, &KeyFilter::default(), now, &page)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        sizes.push(got.len());
        after = got.last().map(|k| k.id.to_string());
        paged.extend(got);
    }
    assert_eq!(sizes, [5, 5, 3]);
    assert_eq!(key_ids(&paged), key_ids(&keys));
    // Pages of a filtered listing.
    let active = all_keys(store, &ws.id, &status_filter(KeyStatus::Active), now, 1).await;
    assert_eq!(active.len(), 4);
    assert!(active.windows(2).all(|w| w[0].id < w[1].id));
    // An unknown workspace has no keys.
    assert!(
        store
            .list_keys(
                &WorkspaceId::new(),
                &KeyFilter::default(),
                now,
                &Page::first(10)
            )
            .await
            .unwrap()
            .is_empty()
    );
}
