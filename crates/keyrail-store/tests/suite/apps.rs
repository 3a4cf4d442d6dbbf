//! Builder profiles, apps, grants and the inner-token keys.

use keyrail_core::Store;
use keyrail_core::id::{BuilderProfileId, GrantId, WorkspaceId};
use keyrail_core::model::{
    App, AppKind, BuilderProfile, Grant, GrantFilter, Member, OAuthCode, OAuthRefresh,
    OwnerGuarded, Page, Spent, StoredTokenKey, User,
};

use crate::fixtures::*;

pub(crate) fn app(owner: &User, profile: &BuilderProfile, tag: &str, at: i64) -> App {
    App {
        client_id: format!("kr_app_{tag}"),
        owner_id: Some(owner.id.clone()),
        builder_profile_id: Some(profile.id.clone()),
        kind: AppKind::Confidential,
        redirect_uris: Vec::new(),
        name: format!("app {tag}"),
        description: String::new(),
        workspace_restrictions: None,
        active: true,
        sealed_secret: format!("v1.sealed-{tag}"),
        secret_generation: 1,
        created_at: ts(at),
        updated_at: ts(at),
    }
}

pub(crate) fn grant(app: &App, m: &Member, scopes: &[&str], shared: bool, at: i64) -> Grant {
    Grant {
        id: GrantId::new(),
        client_id: app.client_id.clone(),
        workspace_id: m.workspace_id.clone(),
        member_id: m.id.clone(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        shared,
        created_at: ts(at),
    }
}

/// A builder profile of a new user and an app under it.
pub(crate) async fn new_app(store: &dyn Store, tag: &str, at: i64) -> App {
    let dev = new_user(store, &format!("{tag}-dev@example.com"), at).await;
    let profile = BuilderProfile {
        id: BuilderProfileId::new(),
        user_id: dev.id.clone(),
        name: tag.to_owned(),
        website: None,
        created_at: ts(at),
    };
    store.insert_builder_profile(&profile).await.unwrap();
    let a = app(&dev, &profile, tag, at);
    store.insert_app(&a, &entry("app.create")).await.unwrap();
    a
}

async fn grant_ids(store: &dyn Store, ws: &WorkspaceId, filter: &GrantFilter) -> Vec<GrantId> {
    store
        .list_grants(ws, filter, &Page::first(200))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.grant.id)
        .collect()
}

pub(crate) async fn apps_and_grants(store: &dyn Store) {
    let (ws, owner) = new_workspace(store, "apps-ws", 9_000).await;
    let (other_ws, _) = new_workspace(store, "apps-other", 9_000).await;
    let dev = new_user(store, "apps-dev@example.com", 9_000).await;

    // Builder profiles: the user's own, by id; looked up by id.
    let profile = BuilderProfile {
        id: BuilderProfileId::new(),
        user_id: dev.id.clone(),
        name: "Acme".into(),
        website: Some("https://acme.example".into()),
        created_at: ts(9_001),
    };
    store.insert_builder_profile(&profile).await.unwrap();
    assert_eq!(
        store
            .builder_profiles_of(&dev.id, &Page::first(10))
            .await
            .unwrap(),
        vec![profile.clone()]
    );
    assert!(
        store
            .builder_profiles_of(&owner.user_id, &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.builder_profile_by_id(&profile.id).await.unwrap(),
        Some(profile.clone())
    );

    // Apps: round trip, listing by owner, a duplicate client id.
    let mut a = app(&dev, &profile, "aaaa", 9_002);
    a.workspace_restrictions = Some(vec![ws.id.clone()]);
    let b = app(&dev, &profile, "bbbb", 9_003);
    store.insert_app(&a, &entry("app.create")).await.unwrap();
    store.insert_app(&b, &entry("app.create")).await.unwrap();
    assert_conflict(
        store.insert_app(&a, &entry("app.create")).await,
        "app client id",
    );
    let got = store.app_by_client_id(&a.client_id).await.unwrap().unwrap();
    assert_eq!(got.workspace_restrictions, Some(vec![ws.id.clone()]));
    assert_eq!(
        (
            got.sealed_secret.as_str(),
            got.secret_generation,
            got.active
        ),
        ("v1.sealed-aaaa", 1, true)
    );
    let mine: Vec<String> = store
        .list_apps(Some(&dev.id), &Page::first(10))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.client_id)
        .collect();
    assert_eq!(mine, [a.client_id.clone(), b.client_id.clone()]);
    assert!(
        store
            .list_apps(Some(&owner.user_id), &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );

    // Update keeps the secret; a new secret bumps the generation atomically.
    let mut changed = got.clone();
    changed.name = "renamed".into();
    changed.active = false;
    changed.workspace_restrictions = None;
    changed.updated_at = ts(9_010);
    assert!(
        store
            .update_app(&changed, &entry("app.update"))
            .await
            .unwrap()
    );
    let got = store.app_by_client_id(&a.client_id).await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.active), ("renamed", false));
    assert_eq!(got.workspace_restrictions, None);
    assert_eq!(got.sealed_secret, "v1.sealed-aaaa");
    assert_eq!(
        store
            .set_app_secret(
                &a.client_id,
                "v1.new",
                ts(9_011),
                &entry("app.secret_rotate")
            )
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .set_app_secret(
                "kr_app_none",
                "v1.x",
                ts(9_011),
                &entry("app.secret_rotate")
            )
            .await
            .unwrap(),
        None
    );
    let got = store.app_by_client_id(&a.client_id).await.unwrap().unwrap();
    assert_eq!(
        (got.sealed_secret.as_str(), got.secret_generation),
        ("v1.new", 2)
    );

    // Grants: one shared per app and workspace, one personal per app and member.
    let m2 = new_member(store, &ws, "apps-m2@example.com", "member", 9_020).await;
    let shared = grant(&a, &owner, &["workspace:read"], true, 9_021);
    let personal = grant(&a, &owner, &["workspace:read", "keys:read"], false, 9_022);
    let by_m2 = grant(&a, &m2, &["workspace:read"], false, 9_023);
    let b_by_m2 = grant(&b, &m2, &["workspace:read"], false, 9_024);
    for g in [&shared, &personal, &by_m2, &b_by_m2] {
        store.insert_grant(g, &entry("grant.create")).await.unwrap();
    }
    assert_conflict(
        store
            .insert_grant(
                &grant(&a, &m2, &["workspace:read"], true, 9_025),
                &entry("grant.create"),
            )
            .await,
        "shared grant",
    );
    assert_conflict(
        store
            .insert_grant(
                &grant(&a, &m2, &["members:read"], false, 9_025),
                &entry("grant.create"),
            )
            .await,
        "personal grant",
    );
    let view = store.grant_by_id(&personal.id).await.unwrap().unwrap();
    assert_eq!(view.grant, personal);
    assert_eq!(view.app_name, "renamed");
    let all = GrantFilter::default();
    assert_eq!(
        grant_ids(store, &ws.id, &all).await,
        [
            shared.id.clone(),
            personal.id.clone(),
            by_m2.id.clone(),
            b_by_m2.id.clone()
        ]
    );
    let of_m2 = GrantFilter {
        member_id: Some(m2.id.clone()),
        client_id: None,
    };
    assert_eq!(
        grant_ids(store, &ws.id, &of_m2).await,
        [by_m2.id.clone(), b_by_m2.id.clone()]
    );
    let of_b = GrantFilter {
        member_id: None,
        client_id: Some(b.client_id.clone()),
    };
    assert_eq!(grant_ids(store, &ws.id, &of_b).await, [b_by_m2.id]);
    assert!(grant_ids(store, &other_ws.id, &all).await.is_empty());
    assert_eq!(
        store.workspaces_granting(&a.client_id).await.unwrap(),
        std::slice::from_ref(&ws.id)
    );

    // Deleting: only inside its workspace; a removed member takes their grants along; a
    // deleted app takes all of its grants.
    assert!(
        !store
            .delete_grant(&other_ws.id, &shared.id, &entry("grant.revoke"))
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_grant(&ws.id, &shared.id, &entry("grant.revoke"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_grant(&ws.id, &shared.id, &entry("grant.revoke"))
            .await
            .unwrap()
    );
    assert!(store.grant_by_id(&shared.id).await.unwrap().is_none());
    assert_eq!(
        store
            .remove_member(&ws.id, &m2.id, ts(9_030), &entry("member.remove"))
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    assert_eq!(grant_ids(store, &ws.id, &all).await, [personal.id]);
    assert!(
        store
            .delete_app(&a.client_id, &entry("app.delete"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_app(&a.client_id, &entry("app.delete"))
            .await
            .unwrap()
    );
    assert!(grant_ids(store, &ws.id, &all).await.is_empty());
    assert!(
        store
            .app_by_client_id(&a.client_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .workspaces_granting(&a.client_id)
            .await
            .unwrap()
            .is_empty()
    );

    // Inner-token keys: a duplicate kid is a conflict; listed oldest first.
    let k1 = StoredTokenKey {
        kid: "kid-apps-1".into(),
        sealed_key: "v1.k1".into(),
        created_at: ts(9_040),
    };
    let k2 = StoredTokenKey {
        kid: "kid-apps-2".into(),
        sealed_key: "v1.k2".into(),
        created_at: ts(9_041),
    };
    store.insert_token_key(&k2).await.unwrap();
    store.insert_token_key(&k1).await.unwrap();
    assert_conflict(store.insert_token_key(&k1).await, "token key");
    let kids: Vec<String> = store
        .token_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["kid-apps-1", "kid-apps-2"]);
}

/// OAuth codes and refresh tokens: a code is taken once (a second take is `Again`, an unknown
/// hash `Unknown`); of concurrent rotations of one refresh token exactly one succeeds and
/// stores its successor; deleting the grant takes its codes and tokens with it; and the cleanup
/// deletes what expired and the public clients nobody granted.
pub(crate) async fn oauth_codes_and_refresh_tokens(store: &dyn Store) {
    let (_, owner) = new_workspace(store, "oauth-ws", 9_500).await;
    let public = App {
        client_id: "kr_app_oauthpublic".into(),
        owner_id: None,
        builder_profile_id: None,
        kind: AppKind::Public,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        ..new_app(store, "oauthtmpl", 9_500).await
    };
    store
        .insert_app(&public, &entry("app.register"))
        .await
        .unwrap();
    let got = store
        .app_by_client_id(&public.client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.kind, got.owner_id, got.redirect_uris),
        (AppKind::Public, None, public.redirect_uris.clone())
    );
    let g = grant(&public, &owner, &["keys:read"], false, 9_501);
    store
        .insert_grant(&g, &entry("grant.create"))
        .await
        .unwrap();

    let code = OAuthCode {
        code_hash: "code-hash-1".into(),
        client_id: public.client_id.clone(),
        grant_id: g.id.clone(),
        redirect_uri: "http://127.0.0.1:5000/cb".into(),
        code_challenge: "c".repeat(43),
        resource: "http://x/mcp".into(),
        created_at: ts(9_502),
        expires_at: ts(69_502),
    };
    store.insert_oauth_code(&code).await.unwrap();
    let takes = join_all((0..4).map(|_| store.take_oauth_code("code-hash-1"))).await;
    let first = takes
        .iter()
        .filter(|t| matches!(t, Ok(Spent::First(_))))
        .count();
    let again = takes
        .iter()
        .filter(|t| matches!(t, Ok(Spent::Again(_))))
        .count();
    assert_eq!((first, again), (1, 3), "one take of a code wins");
    match store.take_oauth_code("code-hash-1").await.unwrap() {
        Spent::Again(c) => assert_eq!(
            (c.grant_id, c.redirect_uri),
            (g.id.clone(), code.redirect_uri.clone())
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.take_oauth_code("nope").await.unwrap(),
        Spent::Unknown
    ));

    let refresh = |hash: &str, at: i64| OAuthRefresh {
        token_hash: hash.into(),
        client_id: public.client_id.clone(),
        grant_id: g.id.clone(),
        resource: "http://x/mcp".into(),
        created_at: ts(at),
        expires_at: ts(at + 1_000_000),
    };
    store
        .insert_oauth_refresh(&refresh("r0", 9_510))
        .await
        .unwrap();
    let nexts: Vec<OAuthRefresh> = (1..=4)
        .map(|i| refresh(&format!("r1-{i}"), 9_511))
        .collect();
    let spins = join_all(nexts.iter().map(|n| store.rotate_oauth_refresh("r0", n))).await;
    let won: Vec<usize> = spins
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Ok(Spent::First(_))))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "one rotation wins: {spins:?}");
    for (i, n) in nexts.iter().enumerate() {
        let stored = store.oauth_refresh_by_hash(&n.token_hash).await.unwrap();
        assert_eq!(
            stored.is_some(),
            won.contains(&i),
            "only the winner's successor is stored"
        );
    }
    assert!(matches!(
        store
            .rotate_oauth_refresh("r0", &refresh("r2", 9_512))
            .await
            .unwrap(),
        Spent::Again(_)
    ));
    assert!(store.oauth_refresh_by_hash("r2").await.unwrap().is_none());

    // The grant goes: its codes and refresh tokens go with it.
    store
        .delete_grant(&g.workspace_id, &g.id, &entry("grant.revoke"))
        .await
        .unwrap();
    assert!(matches!(
        store.take_oauth_code("code-hash-1").await.unwrap(),
        Spent::Unknown
    ));
    assert!(store.oauth_refresh_by_hash("r0").await.unwrap().is_none());

    // Cleanup: an ungranted public client older than the cut is deleted; expired rows too.
    let g2 = grant(&public, &owner, &["keys:read"], false, 9_520);
    store
        .insert_grant(&g2, &entry("grant.create"))
        .await
        .unwrap();
    let mut expired = refresh("r-old", 9_521);
    expired.grant_id = g2.id.clone();
    expired.expires_at = ts(9_522);
    store.insert_oauth_refresh(&expired).await.unwrap();
    let lonely = App {
        client_id: "kr_app_oauthlonely".into(),
        ..public.clone()
    };
    store
        .insert_app(&lonely, &entry("app.register"))
        .await
        .unwrap();
    let n = store
        .delete_stale_oauth(ts(10_000), ts(10_000))
        .await
        .unwrap();
    assert_eq!(n, 2, "the expired token and the ungranted client");
    assert!(
        store
            .app_by_client_id(&lonely.client_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .app_by_client_id(&public.client_id)
            .await
            .unwrap()
            .is_some()
    );
}
