//! Credits are spent by verifies while keys are changed: a change writes only what it names (a
//! rename never puts spent credits back).

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
    }
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
