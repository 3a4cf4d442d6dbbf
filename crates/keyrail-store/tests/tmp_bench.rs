use keyrail_core::Timestamp;
use keyrail_core::id::{KeyId, MemberId, UserId, WorkspaceId};
use keyrail_core::model::*;
use keyrail_core::secret::Secret;
use keyrail_store::testing::TempPostgres;
use std::time::Instant;

#[tokio::test]
async fn bench_import() {
    let pg = TempPostgres::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for url in [pg.url.clone(), String::new()] {
        let store = keyrail_store::open(&url, dir.path()).await.unwrap();
        let t = Timestamp::from_millis(1);
        let u = User {
            id: UserId::new(),
            email: format!("a{}@b", url.len()),
            name: "a".into(),
            password_hash: Secret::new("x".into()),
            mfa_enabled: false,
            superuser: false,
            created_at: t,
            updated_at: t,
        };
        store.insert_user(&u).await.unwrap();
        let ws = Workspace {
            id: WorkspaceId::new(),
            name: "w".into(),
            status: WorkspaceStatus::Active,
            key_format: KeyFormat::default(),
            created_at: t,
            updated_at: t,
        };
        store
            .create_workspace(
                &ws,
                &Member {
                    id: MemberId::new(),
                    workspace_id: ws.id.clone(),
                    user_id: u.id.clone(),
                    role: "owner".into(),
                    created_at: t,
                },
            )
            .await
            .unwrap();
        for round in 0..4 {
            let keys: Vec<ApiKey> = (0..1000)
                .map(|i| ApiKey {
                    id: KeyId::new(),
                    workspace_id: ws.id.clone(),
                    name: "n".into(),
                    prefix: "kr_x".into(),
                    hash: format!("{round:04}{i:060}"),
                    scopes: vec!["a:b".into()],
                    created_at: t,
                    created_by: None,
                    updated_at: t,
                    expires_at: None,
                    revoked_at: None,
                    disabled: false,
                    last_used_at: None,
                    rate_limit: None,
                    remaining: None,
                    meta: None,
                    external_id: None,
                    sealed_key: None,
                    replaced_by: None,
                })
                .collect();
            let s = Instant::now();
            store.insert_keys(&keys).await.unwrap();
            let a = s.elapsed();
            let s = Instant::now();
            let used: Vec<_> = keys
                .iter()
                .map(|k| (k.id.clone(), Timestamp::from_millis(5)))
                .collect();
            store.touch_keys(&used).await.unwrap();
            let b = s.elapsed();
            let s = Instant::now();
            let hs: Vec<String> = keys.iter().map(|k| k.hash.clone()).collect();
            store.existing_key_hashes(&hs).await.unwrap();
            eprintln!(
                "{} round {round}: insert {a:?} touch {b:?} existing {:?}",
                store.backend(),
                s.elapsed()
            );
        }
    }
    pg.drop_db().await;
}
