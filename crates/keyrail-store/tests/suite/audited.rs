//! A change and its audit entry are written in one transaction: when the entry cannot be
//! written (here: its id is taken already) the change fails with it and leaves nothing, not
//! even a change-log entry; when the change is refused, no entry is written. Keys are checked
//! in their own modules.

use keyrail_core::Store;
use keyrail_core::model::{AuditFilter, OwnerGuarded, Page, WorkspaceStatus};

use crate::apps::{grant, new_app};
use crate::fixtures::*;

/// The audit entry with this id, if any (also after its workspace was deleted).
async fn stored_entry(
    store: &dyn Store,
    e: &keyrail_core::model::AuditEntry,
) -> Option<keyrail_core::model::AuditEntry> {
    store
        .list_audit(&AuditFilter::default(), &Page::first(1000))
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == e.id && x.target == e.target)
}

pub(crate) async fn workspace_changes_and_their_audit_entries(store: &dyn Store) {
    let (ws, owner) = new_workspace(store, "audited", 40_000).await;
    let before = store.latest_change().await.unwrap();
    let unchanged = async || {
        let got = store.workspace_by_id(&ws.id).await.unwrap().unwrap();
        assert_same_workspace(&got, &ws);
    };

    // The workspace itself.
    let mut renamed = ws.clone();
    renamed.name = "renamed".into();
    renamed.key_format.prefix = "aud".into();
    renamed.updated_at = ts(40_001);
    let taken = taken_entry(store, "workspace.update").await;
    assert_conflict(
        store.update_workspace(&renamed, &taken).await,
        "audit entry",
    );
    unchanged().await;
    assert!(
        !store
            .key_formats()
            .await
            .unwrap()
            .iter()
            .any(|f| f.prefix == "aud"),
        "the format it would have had is not remembered either"
    );
    let taken = taken_entry(store, "workspace.suspend").await;
    assert_conflict(
        store
            .set_workspace_status(&ws.id, WorkspaceStatus::Suspended, ts(40_002), &taken)
            .await,
        "audit entry",
    );
    unchanged().await;

    // Members.
    let pat = new_user(store, "audited-pat@example.com", 40_003).await;
    let pat_m = member(&ws, &pat, "viewer", 40_003);
    let taken = taken_entry(store, "member.add").await;
    assert_conflict(store.insert_member(&pat_m, &taken).await, "audit entry");
    assert!(
        store
            .member_by_id(&ws.id, &pat_m.id)
            .await
            .unwrap()
            .is_none()
    );
    let e = entry("member.add");
    store.insert_member(&pat_m, &e).await.unwrap();
    assert!(audited(store, &e).await);
    // Refused (a member already): no entry.
    let e = entry("member.add");
    let again = member(&ws, &pat, "admin", 40_004);
    assert_conflict(store.insert_member(&again, &e).await, "member");
    assert!(!audited(store, &e).await);
    let taken = taken_entry(store, "member.update").await;
    assert_conflict(
        store
            .set_member_role(&ws.id, &pat_m.id, "admin", ts(40_005), &taken)
            .await,
        "audit entry",
    );
    let taken = taken_entry(store, "member.remove").await;
    assert_conflict(
        store
            .remove_member(&ws.id, &pat_m.id, ts(40_006), &taken)
            .await,
        "audit entry",
    );
    let got = store
        .member_by_id(&ws.id, &pat_m.id)
        .await
        .unwrap()
        .unwrap();
    assert_same_member(&got, &pat_m);
    // Refused by the last-owner guard: no entry.
    let e = entry("member.remove");
    assert_eq!(
        store
            .remove_member(&ws.id, &owner.id, ts(40_007), &e)
            .await
            .unwrap(),
        OwnerGuarded::LastOwner
    );
    assert!(!audited(store, &e).await);
    let e = entry("member.update");
    assert_eq!(
        store
            .set_member_role(&ws.id, &owner.id, "admin", ts(40_007), &e)
            .await
            .unwrap(),
        OwnerGuarded::LastOwner
    );
    assert!(!audited(store, &e).await);

    // Roles.
    let r = role(&ws, "auditors", &["audit:read"], 40_010);
    let taken = taken_entry(store, "role.create").await;
    assert_conflict(store.insert_role(&r, &taken).await, "audit entry");
    assert!(store.role_by_id(&ws.id, &r.id).await.unwrap().is_none());
    let e = entry("role.create");
    store.insert_role(&r, &e).await.unwrap();
    assert!(audited(store, &e).await);
    let mut renamed_role = r.clone();
    renamed_role.name = "renamed".into();
    renamed_role.scopes = Vec::new();
    let taken = taken_entry(store, "role.update").await;
    assert_conflict(
        store.update_role(&renamed_role, &taken).await,
        "audit entry",
    );
    let taken = taken_entry(store, "role.delete").await;
    assert_conflict(
        store.delete_role(&ws.id, &r.id, ts(40_011), &taken).await,
        "audit entry",
    );
    assert_eq!(
        store.role_by_id(&ws.id, &r.id).await.unwrap(),
        Some(r.clone())
    );
    // Refused (held by a member): no entry.
    let e = entry("member.update");
    assert_eq!(
        store
            .set_member_role(&ws.id, &pat_m.id, r.id.as_str(), ts(40_012), &e)
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    assert!(audited(store, &e).await);
    let e = entry("role.delete");
    assert_eq!(
        store
            .delete_role(&ws.id, &r.id, ts(40_013), &e)
            .await
            .unwrap(),
        Some(1)
    );
    assert!(!audited(store, &e).await);

    // Scopes: a refused deletion leaves the scope on the keys that hold it too.
    let s = scope("chats:read", "", false, 40_020);
    let taken = taken_entry(store, "scope.create").await;
    assert_conflict(store.insert_scope(&ws.id, &s, &taken).await, "audit entry");
    assert!(store.scopes_of(&ws.id).await.unwrap().is_empty());
    let e = entry("scope.create");
    store.insert_scope(&ws.id, &s, &e).await.unwrap();
    assert!(audited(store, &e).await);
    let mut k = api_key(&ws, "audited-key", 40_021);
    k.scopes = vec!["chats:read".into()];
    store.insert_key(&k, None).await.unwrap();
    let before_scope = store.latest_change().await.unwrap();
    let taken = taken_entry(store, "scope.delete").await;
    assert_conflict(
        store
            .delete_scope(&ws.id, "chats:read", ts(40_022), &taken)
            .await,
        "audit entry",
    );
    assert_eq!(store.scopes_of(&ws.id).await.unwrap(), [s]);
    assert_eq!(
        store.key_by_id(&ws.id, &k.id).await.unwrap(),
        Some(k.clone())
    );
    assert!(changes_since(store, before_scope).await.is_empty());

    // Deletion: refused with its entry; done with it, and the entry outlives the workspace.
    let taken = taken_entry(store, "workspace.delete").await;
    assert_conflict(
        store.delete_workspace(&ws.id, ts(40_030), &taken).await,
        "audit entry",
    );
    unchanged().await;
    assert!(store.key_by_id(&ws.id, &k.id).await.unwrap().is_some());
    let mut e = entry("workspace.delete");
    e.workspace_id = Some(ws.id.clone());
    assert!(
        store
            .delete_workspace(&ws.id, ts(40_031), &e)
            .await
            .unwrap()
    );
    assert!(store.workspace_by_id(&ws.id).await.unwrap().is_none());
    let kept = stored_entry(store, &e).await.expect("the entry stays");
    assert_same_audit(&kept, &e);
    // Nothing left to delete: no entry.
    let e = entry("workspace.delete");
    assert!(
        !store
            .delete_workspace(&ws.id, ts(40_032), &e)
            .await
            .unwrap()
    );
    assert!(!audited(store, &e).await);
    let e = entry("workspace.suspend");
    assert!(
        !store
            .set_workspace_status(&ws.id, WorkspaceStatus::Suspended, ts(40_032), &e)
            .await
            .unwrap()
    );
    assert!(!audited(store, &e).await);

    // Of all the above, only the writes that happened were announced.
    let kinds: Vec<String> = changes_since(store, before)
        .await
        .into_iter()
        .map(|(kind, _, _)| kind)
        .collect();
    assert_eq!(
        kinds,
        ["member.updated", "key.changed", "workspace.deleted"]
    );
}

pub(crate) async fn app_changes_and_their_audit_entries(store: &dyn Store) {
    let (ws, owner) = new_workspace(store, "audited-apps", 41_000).await;
    let a = new_app(store, "audited", 41_001).await;
    let b = {
        // Its profile and owner come from `new_app`; only the app is refused here.
        let mut b = a.clone();
        b.client_id = "kr_app_audited_b".into();
        b
    };
    let taken = taken_entry(store, "app.create").await;
    assert_conflict(store.insert_app(&b, &taken).await, "audit entry");
    assert!(
        store
            .app_by_client_id(&b.client_id)
            .await
            .unwrap()
            .is_none()
    );

    let mut changed = a.clone();
    changed.name = "changed".into();
    changed.active = false;
    let taken = taken_entry(store, "app.update").await;
    assert_conflict(store.update_app(&changed, &taken).await, "audit entry");
    let taken = taken_entry(store, "app.secret_rotate").await;
    assert_conflict(
        store
            .set_app_secret(&a.client_id, "v1.other", ts(41_002), &taken)
            .await,
        "audit entry",
    );
    let got = store.app_by_client_id(&a.client_id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.name,
            got.active,
            got.sealed_secret,
            got.secret_generation
        ),
        (a.name.clone(), true, a.sealed_secret.clone(), 1),
        "unchanged"
    );
    let e = entry("app.secret_rotate");
    assert_eq!(
        store
            .set_app_secret(&a.client_id, "v1.other", ts(41_003), &e)
            .await
            .unwrap(),
        Some(2)
    );
    assert!(audited(store, &e).await);
    let e = entry("app.update");
    assert!(!store.update_app(&b, &e).await.unwrap(), "no such app");
    assert!(!audited(store, &e).await);
    let e = entry("app.secret_rotate");
    assert_eq!(
        store
            .set_app_secret(&b.client_id, "v1.x", ts(41_003), &e)
            .await
            .unwrap(),
        None
    );
    assert!(!audited(store, &e).await);

    let g = grant(&a, &owner, &["workspace:read"], true, 41_010);
    let taken = taken_entry(store, "grant.create").await;
    assert_conflict(store.insert_grant(&g, &taken).await, "audit entry");
    assert!(store.grant_by_id(&g.id).await.unwrap().is_none());
    let e = entry("grant.create");
    store.insert_grant(&g, &e).await.unwrap();
    assert!(audited(store, &e).await);
    let taken = taken_entry(store, "grant.revoke").await;
    assert_conflict(
        store.delete_grant(&ws.id, &g.id, &taken).await,
        "audit entry",
    );
    assert!(store.grant_by_id(&g.id).await.unwrap().is_some());
    let taken = taken_entry(store, "app.delete").await;
    assert_conflict(store.delete_app(&a.client_id, &taken).await, "audit entry");
    assert!(
        store
            .app_by_client_id(&a.client_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.grant_by_id(&g.id).await.unwrap().is_some());

    let e = entry("grant.revoke");
    assert!(store.delete_grant(&ws.id, &g.id, &e).await.unwrap());
    assert!(audited(store, &e).await);
    let e = entry("grant.revoke");
    assert!(!store.delete_grant(&ws.id, &g.id, &e).await.unwrap());
    assert!(!audited(store, &e).await);
    let e = entry("app.delete");
    assert!(store.delete_app(&a.client_id, &e).await.unwrap());
    assert!(audited(store, &e).await);
    let e = entry("app.delete");
    assert!(!store.delete_app(&a.client_id, &e).await.unwrap());
    assert!(!audited(store, &e).await);
}
