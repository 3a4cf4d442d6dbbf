//! Credits are spent by verifies while keys are changed and rotated: a change writes only what
//! it names (a rename never puts spent credits back), and a rotation moves the credits to the
//! new key, whose counter the old key spends from during its grace period.

use keyrail_core::Store;
use keyrail_core::Timestamp;
use keyrail_core::id::{AuditId, KeyId, MemberId, UserId, WorkspaceId};
use keyrail_core::model::{
    ActorType, ApiKey, AuditEntry, KeyChanges, KeyFormat, Member, User, Workspace, WorkspaceStatus,
};
use keyrail_core::secret::Secret;
use keyrail_store::testing::TempPostgres;

async fn check(store: &dyn Store) {
    let now = Timestamp::from_millis(1_000);
    let user = User {
        id: UserId::new(),
        email: format!("{}@example.com", UserId::new()),
        name: "u".into(),
        password_hash: Secret::new("x".into()),
        mfa_enabled: false,
        superuser: false,
        created_at: now,
        updated_at: now,
    };
    store.insert_user(&user).await.unwrap();
    let ws = Workspace {
        id: WorkspaceId::new(),
        name: "w".into(),
        status: WorkspaceStatus::Active,
        key_format: KeyFormat::default(),
        created_at: now,
        updated_at: now,
    };
    let owner = Member {
        id: MemberId::new(),
        workspace_id: ws.id.clone(),
        user_id: user.id.clone(),
        role: "owner".into(),
        created_at: now,
    };
    store.create_workspace(&ws, &owner).await.unwrap();
    let key = ApiKey {
        id: KeyId::new(),
        workspace_id: ws.id.clone(),
        name: "k".into(),
        prefix: "kr_abcd".into(),
        hash: keyrail_core::crypto::token::sha256_hex(KeyId::new().as_str().as_bytes()),
        scopes: vec![],
        created_at: now,
        created_by: None,
        updated_at: now,
        expires_at: None,
        revoked_at: None,
        disabled: false,
        last_used_at: None,
        rate_limit: None,
        remaining: Some(10),
        meta: None,
        external_id: None,
        sealed_key: None,
        replaced_by: None,
    };
    store.insert_key(&key, None).await.unwrap();
    // A verify spends 3 while someone renames the key: the rename writes the name only.
    assert_eq!(store.consume_credits(&key.id, 3).await.unwrap(), Some(7));
    let rename = KeyChanges {
        name: Some("renamed".into()),
        ..KeyChanges::default()
    };
    let got = store
        .patch_key(&ws.id, &key.id, &rename, now, &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.name.as_str(), got.remaining),
        ("renamed", Some(7)),
        "spent credits stay spent"
    );

    // Setting the credits is a change like any other: written, announced.
    let before = store.latest_change().await.unwrap();
    let set = |remaining: Option<i64>| KeyChanges {
        remaining: Some(remaining),
        ..KeyChanges::default()
    };
    let at = Timestamp::from_millis(2_000);
    let got = store
        .patch_key(&ws.id, &key.id, &set(Some(77)), at, &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.name.as_str(), got.remaining), ("renamed", Some(77)));
    let changes = store.changes_after(before, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].kind.as_str(), changes[0].subject.as_str()),
        ("key.changed", key.hash.as_str())
    );
    let got = store
        .patch_key(&ws.id, &key.id, &set(None), at, &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.remaining, None);
    for (ws_id, id) in [(&ws.id, &KeyId::new()), (&WorkspaceId::new(), &key.id)] {
        assert!(
            store
                .patch_key(ws_id, id, &set(Some(1)), at, &entry("key.update"))
                .await
                .unwrap()
                .is_none()
        );
    }

    rotation_moves_credits(store, &ws, &key).await;
}

/// Rotating a key with credits moves them to the new key; during the grace period the old
/// key spends from the new key's counter, exactly, while both are used at once; a second
/// rotation moves them on again, and the first key follows.
async fn rotation_moves_credits(store: &dyn Store, ws: &Workspace, template: &ApiKey) {
    let fresh = |remaining: Option<i64>| ApiKey {
        id: KeyId::new(),
        hash: keyrail_core::crypto::token::sha256_hex(KeyId::new().as_str().as_bytes()),
        remaining,
        ..template.clone()
    };
    let old = fresh(Some(10));
    store.insert_key(&old, None).await.unwrap();
    assert_eq!(store.consume_credits(&old.id, 1).await.unwrap(), Some(9));
    // The caller's copy says 10: the store moves what is left.
    let new = fresh(Some(10));
    let grace = Timestamp::from_millis(1_000 + 3_600_000);
    let stored = store
        .rotate_key(&old.id, &new, grace, &entry("key.rotate"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.remaining, Some(9));
    let remaining = async |id: &KeyId| {
        store
            .key_by_id(&ws.id, id)
            .await
            .unwrap()
            .unwrap()
            .remaining
    };
    assert_eq!(remaining(&new.id).await, Some(9));
    assert_eq!(remaining(&old.id).await, Some(0), "nothing of its own");
    // 12 spenders, 6 on each key, 9 credits: exactly 9 succeed.
    let results = join_all((0..12).map(|i| {
        let id = if i % 2 == 0 { &old.id } else { &new.id };
        async move { store.consume_credits(id, 1).await.unwrap() }
    }))
    .await;
    let mut left: Vec<i64> = results.iter().filter_map(|r| *r).collect();
    left.sort_unstable();
    assert_eq!(left, (0..9).collect::<Vec<_>>(), "{results:?}");
    assert_eq!(remaining(&new.id).await, Some(0));
    assert_eq!(remaining(&old.id).await, Some(0));

    // Topped up on the new key, rotated again: the first key now spends from the third.
    let top_up = KeyChanges {
        remaining: Some(Some(5)),
        ..KeyChanges::default()
    };
    store
        .patch_key(&ws.id, &new.id, &top_up, grace, &entry("key.update"))
        .await
        .unwrap()
        .unwrap();
    let third = fresh(None);
    let stored = store
        .rotate_key(&new.id, &third, grace, &entry("key.rotate"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.remaining, Some(5));
    assert_eq!(store.consume_credits(&old.id, 2).await.unwrap(), Some(3));
    assert_eq!(store.consume_credits(&new.id, 2).await.unwrap(), Some(1));
    assert_eq!(store.consume_credits(&third.id, 2).await.unwrap(), None);
    assert_eq!(store.consume_credits(&third.id, 1).await.unwrap(), Some(0));
    // A look at the spent counter through the first key.
    assert_eq!(store.consume_credits(&old.id, 0).await.unwrap(), Some(0));

    // Unlimited keys stay unlimited on both sides.
    let free = fresh(None);
    store.insert_key(&free, None).await.unwrap();
    let free_new = fresh(Some(3));
    let stored = store
        .rotate_key(&free.id, &free_new, grace, &entry("key.rotate"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.remaining, None);
    assert_eq!(remaining(&free.id).await, None);
    assert_eq!(
        store.consume_credits(&free.id, 100).await.unwrap(),
        Some(i64::MAX)
    );
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        at: Timestamp::from_millis(1_000),
        workspace_id: None,
        actor_type: ActorType::User,
        actor_id: None,
        action: action.to_owned(),
        target: None,
        ip: None,
        user_agent: None,
        outcome: "success".to_owned(),
        event: None,
    }
}

/// Polls the futures together on this task; their outputs in the order given.
async fn join_all<T, F: std::future::Future<Output = T>>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<T> {
    let mut futs: Vec<_> = futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in futs.iter_mut().zip(outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("polled")).collect()
}

#[tokio::test]
async fn credits_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyrail_store::open("", dir.path()).await.unwrap();
    check(store.as_ref()).await;
}

#[tokio::test]
async fn credits_on_postgres() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let store = keyrail_store::open(&pg.url, std::path::Path::new("."))
        .await
        .unwrap();
    check(store.as_ref()).await;
    store.close().await;
    pg.drop_db().await;
}
