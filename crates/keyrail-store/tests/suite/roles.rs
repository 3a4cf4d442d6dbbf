//! Custom scopes and roles of a workspace.

use keyrail_core::id::{RoleId, WorkspaceId};
use keyrail_core::model::{KeyFormat, OwnerGuarded};
use keyrail_core::{Store, StoreError};

use crate::fixtures::*;

pub(crate) async fn custom_scopes(store: &dyn Store) {
    let (a, _) = new_workspace(store, "scopes-a", 21_000).await;
    let (b, _) = new_workspace(store, "scopes-b", 21_001).await;
    let read = scope("chats:read", "Read chats", false, 21_100);
    let purge = scope("chats:purge", "Delete every chat, for good", true, 21_101);
    let billing = scope("billing:read", "", false, 21_102);
    // Inserted out of order: listed by name.
    for s in [&read, &purge, &billing] {
        store
            .insert_scope(&a.id, s, &entry("scope.create"))
            .await
            .unwrap();
    }
    assert_eq!(
        store.scopes_of(&a.id).await.unwrap(),
        [billing.clone(), purge.clone(), read.clone()]
    );
    // The same name in another workspace is another scope.
    let read_b = scope("chats:read", "Read B's chats", true, 21_103);
    store
        .insert_scope(&b.id, &read_b, &entry("scope.create"))
        .await
        .unwrap();
    let only_b = scope("only-b:read", "Only in B", false, 21_104);
    store
        .insert_scope(&b.id, &only_b, &entry("scope.create"))
        .await
        .unwrap();
    assert_eq!(
        store.scopes_of(&b.id).await.unwrap(),
        [read_b.clone(), only_b.clone()]
    );
    // A duplicate name in one workspace is a conflict, and changes nothing.
    assert_conflict(
        store
            .insert_scope(
                &a.id,
                &scope("chats:read", "Other", true, 21_105),
                &entry("scope.create"),
            )
            .await,
        "scope",
    );
    assert_eq!(store.scopes_of(&a.id).await.unwrap()[2], read);
    // A workspace that does not exist has no scopes and takes none.
    let nowhere = WorkspaceId::new();
    let err = store
        .insert_scope(&nowhere, &read, &entry("scope.create"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.scopes_of(&nowhere).await.unwrap().is_empty());

    // delete_scope: unknown, or of another workspace => false, nothing logged.
    let before = store.latest_change().await.unwrap();
    assert!(
        !store
            .delete_scope(&a.id, "nope:read", ts(21_200), &entry("scope.delete"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_scope(&a.id, "only-b:read", ts(21_200), &entry("scope.delete"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_scope(&nowhere, "chats:read", ts(21_200), &entry("scope.delete"))
            .await
            .unwrap()
    );
    assert_eq!(store.latest_change().await.unwrap(), before);
    assert!(
        store
            .delete_scope(&a.id, "chats:read", ts(21_201), &entry("scope.delete"))
            .await
            .unwrap()
    );
    assert_eq!(
        changes_since(store, before).await,
        [change(
            "scope.deleted",
            format!("{}:chats:read", a.id),
            ts(21_201)
        )]
    );
    assert_eq!(
        store.scopes_of(&a.id).await.unwrap(),
        [billing.clone(), purge.clone()]
    );
    assert_eq!(store.scopes_of(&b.id).await.unwrap(), [read_b, only_b]);
    assert!(
        !store
            .delete_scope(&a.id, "chats:read", ts(21_202), &entry("scope.delete"))
            .await
            .unwrap()
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
    // A deleted name can be defined again.
    store
        .insert_scope(&a.id, &read, &entry("scope.create"))
        .await
        .unwrap();
    assert_eq!(
        store.scopes_of(&a.id).await.unwrap(),
        [billing, purge, read]
    );
}

pub(crate) async fn custom_roles(store: &dyn Store) {
    let (a, _) = new_workspace(store, "roles-a", 22_000).await;
    let (b, _) = new_workspace(store, "roles-b", 22_001).await;
    let support = role(&a, "support", &["keys:read", "members:read"], 22_100);
    let auditor = role(&a, "auditor", &[], 22_101);
    store
        .insert_role(&support, &entry("role.create"))
        .await
        .unwrap();
    store
        .insert_role(&auditor, &entry("role.create"))
        .await
        .unwrap();
    assert_eq!(
        store.roles_of(&a.id).await.unwrap(),
        [auditor.clone(), support.clone()]
    );
    assert_eq!(
        store.role_by_id(&a.id, &support.id).await.unwrap(),
        Some(support.clone())
    );
    assert_eq!(
        store.role_by_id(&a.id, &auditor.id).await.unwrap(),
        Some(auditor.clone())
    );
    // role_by_id is scoped to its workspace.
    assert!(
        store
            .role_by_id(&b.id, &support.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .role_by_id(&a.id, &RoleId::new())
            .await
            .unwrap()
            .is_none()
    );
    // The same name in another workspace is another role.
    let support_b = role(&b, "support", &["chats:read"], 22_102);
    store
        .insert_role(&support_b, &entry("role.create"))
        .await
        .unwrap();
    assert_eq!(
        store.roles_of(&b.id).await.unwrap(),
        std::slice::from_ref(&support_b)
    );
    // Duplicates: the name within a workspace, the id anywhere.
    assert_conflict(
        store
            .insert_role(&role(&a, "support", &[], 22_103), &entry("role.create"))
            .await,
        "role name",
    );
    let mut same_id = role(&b, "other", &[], 22_104);
    same_id.id = support.id.clone();
    assert_conflict(
        store.insert_role(&same_id, &entry("role.create")).await,
        "role id",
    );
    assert_eq!(store.roles_of(&a.id).await.unwrap().len(), 2);
    assert_eq!(store.roles_of(&b.id).await.unwrap().len(), 1);
    // A workspace that does not exist.
    let no_ws = workspace("No roles", 0, KeyFormat::default());
    let err = store
        .insert_role(&role(&no_ws, "ghost", &[], 22_105), &entry("role.create"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.roles_of(&no_ws.id).await.unwrap().is_empty());

    // update_role saves name, scopes and updated_at, and logs `role.updated`.
    let before = store.latest_change().await.unwrap();
    let mut helpdesk = support.clone();
    helpdesk.name = "helpdesk".into();
    helpdesk.scopes = vec!["keys:read".into()];
    helpdesk.updated_at = ts(22_200);
    helpdesk.created_at = ts(1);
    assert!(
        store
            .update_role(&helpdesk, &entry("role.update"))
            .await
            .unwrap()
    );
    helpdesk.created_at = support.created_at;
    assert_eq!(
        store.role_by_id(&a.id, &support.id).await.unwrap(),
        Some(helpdesk.clone())
    );
    assert_eq!(
        changes_since(store, before).await,
        [change("role.updated", &support.id, ts(22_200))]
    );
    // A name taken by another role of the workspace: conflict, nothing saved or logged.
    let mut clash = helpdesk.clone();
    clash.name = "auditor".into();
    clash.scopes = vec![];
    clash.updated_at = ts(22_201);
    assert_conflict(
        store.update_role(&clash, &entry("role.update")).await,
        "role name",
    );
    assert_eq!(
        store.role_by_id(&a.id, &support.id).await.unwrap(),
        Some(helpdesk.clone())
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
    // Keeping its own name, or taking one used only in another workspace, is fine.
    let mut same = helpdesk.clone();
    same.updated_at = ts(22_202);
    assert!(
        store
            .update_role(&same, &entry("role.update"))
            .await
            .unwrap()
    );
    let mut auditor2 = auditor.clone();
    auditor2.name = "support".into();
    auditor2.updated_at = ts(22_203);
    assert!(
        store
            .update_role(&auditor2, &entry("role.update"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.roles_of(&a.id).await.unwrap(),
        [same.clone(), auditor2.clone()]
    );
    // Unknown, or presented as another workspace's: false, nothing logged.
    let seen = store.latest_change().await.unwrap();
    assert!(
        !store
            .update_role(&role(&a, "nope", &[], 22_204), &entry("role.update"))
            .await
            .unwrap()
    );
    let mut elsewhere = same.clone();
    elsewhere.workspace_id = b.id.clone();
    elsewhere.name = "moved".into();
    assert!(
        !store
            .update_role(&elsewhere, &entry("role.update"))
            .await
            .unwrap()
    );
    assert_eq!(store.latest_change().await.unwrap(), seen);
    assert_eq!(
        store.role_by_id(&a.id, &support.id).await.unwrap(),
        Some(same.clone())
    );

    // delete_role refuses while members hold the role (by its id).
    let m1 = new_member(
        store,
        &a,
        "role-holder-1@example.com",
        support.id.as_str(),
        22_300,
    )
    .await;
    let m2 = new_member(
        store,
        &a,
        "role-holder-2@example.com",
        support.id.as_str(),
        22_301,
    )
    .await;
    // A member whose role string is the role's name does not hold it (roles are held by id).
    new_member(store, &a, "role-namesake@example.com", "support", 22_302).await;
    // A member of another workspace carrying the id does not count either.
    new_member(
        store,
        &b,
        "role-foreign@example.com",
        support.id.as_str(),
        22_303,
    )
    .await;
    let before = store.latest_change().await.unwrap();
    assert_eq!(
        store
            .delete_role(&a.id, &support.id, ts(22_400), &entry("role.delete"))
            .await
            .unwrap(),
        Some(2)
    );
    assert!(
        store
            .role_by_id(&a.id, &support.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.latest_change().await.unwrap(), before);
    assert_eq!(
        store
            .set_member_role(&a.id, &m1.id, "viewer", ts(22_401), &entry("member.update"))
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    assert_eq!(
        store
            .delete_role(&a.id, &support.id, ts(22_402), &entry("role.delete"))
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .remove_member(&a.id, &m2.id, ts(22_403), &entry("member.remove"))
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    let before = store.latest_change().await.unwrap();
    assert_eq!(
        store
            .delete_role(&a.id, &support.id, ts(22_404), &entry("role.delete"))
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        changes_since(store, before).await,
        [change("role.deleted", &support.id, ts(22_404))]
    );
    assert!(
        store
            .role_by_id(&a.id, &support.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.roles_of(&a.id).await.unwrap(), [auditor2.clone()]);
    // Gone, unknown, or another workspace's: None, nothing logged.
    assert_eq!(
        store
            .delete_role(&a.id, &support.id, ts(22_405), &entry("role.delete"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_role(&a.id, &RoleId::new(), ts(22_405), &entry("role.delete"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_role(&b.id, &auditor.id, ts(22_405), &entry("role.delete"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_role(
                &WorkspaceId::new(),
                &auditor.id,
                ts(22_405),
                &entry("role.delete")
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
    assert_eq!(store.roles_of(&a.id).await.unwrap(), [auditor2]);
    assert_eq!(store.roles_of(&b.id).await.unwrap(), [support_b]);
    // A deleted name can be used again.
    let again = role(&a, "helpdesk", &["keys:read"], 22_500);
    store
        .insert_role(&again, &entry("role.create"))
        .await
        .unwrap();
    assert_eq!(
        store.role_by_id(&a.id, &again.id).await.unwrap(),
        Some(again)
    );
}

/// Deleting a scope takes its name off every key, grant and custom role of the workspace, in
/// the transaction of the deletion, wherever it stands in their lists; other names, and the
/// same name in other workspaces, stay. A scope made again under the name gives them nothing.
pub(crate) async fn deleted_scope_leaves_no_trace(store: &dyn Store) {
    let (a, owner_a) = new_workspace(store, "scope-trace-a", 21_500).await;
    let (b, owner_b) = new_workspace(store, "scope-trace-b", 21_500).await;
    let app = crate::apps::new_app(store, "scope_trace", 21_500).await;
    for ws in [&a, &b] {
        for name in ["chats:read", "chats:reader"] {
            store
                .insert_scope(
                    &ws.id,
                    &scope(name, "", false, 21_501),
                    &entry("scope.create"),
                )
                .await
                .unwrap();
        }
    }
    let lists: [&[&str]; 5] = [
        &["chats:read"],
        &["chats:read", "keys:read"],
        &["keys:read", "chats:read"],
        &["chats:reader", "chats:read", "keys:read"],
        &["chats:reader", "keys:read"],
    ];
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let without = |l: &[&str]| {
        strings(l)
            .into_iter()
            .filter(|s| s != "chats:read")
            .collect::<Vec<_>>()
    };
    let mut keys = Vec::new();
    let mut roles = Vec::new();
    for ws in [&a, &b] {
        for (i, l) in lists.iter().enumerate() {
            let mut k = api_key(ws, &format!("trace-{}-{i}", ws.name), 21_502);
            k.scopes = strings(l);
            store.insert_key(&k, None).await.unwrap();
            keys.push(k);
            let r = role(ws, &format!("trace-{i}"), l, 21_502);
            store.insert_role(&r, &entry("role.create")).await.unwrap();
            roles.push(r);
        }
    }
    // One shared grant per app and workspace: one grant each, plus personal ones of members.
    let mut grants = Vec::new();
    for (ws, owner) in [(&a, &owner_a), (&b, &owner_b)] {
        for (i, l) in lists.iter().enumerate() {
            let m = if i == 0 {
                owner.clone()
            } else {
                new_member(
                    store,
                    ws,
                    &format!("trace-{}-{i}@example.com", ws.name),
                    "viewer",
                    21_503,
                )
                .await
            };
            let g = crate::apps::grant(&app, &m, l, i == 0, 21_503);
            store
                .insert_grant(&g, &entry("grant.create"))
                .await
                .unwrap();
            grants.push(g);
        }
    }
    let before = store.latest_change().await.unwrap();
    assert!(
        store
            .delete_scope(&a.id, "chats:read", ts(21_510), &entry("scope.delete"))
            .await
            .unwrap()
    );
    // Announced once, for the workspace (every node drops the workspace's cached keys).
    assert_eq!(
        changes_since(store, before).await,
        [change(
            "scope.deleted",
            format!("{}:chats:read", a.id),
            ts(21_510)
        )]
    );
    store
        .insert_scope(
            &a.id,
            &scope("chats:read", "again", false, 21_511),
            &entry("scope.create"),
        )
        .await
        .unwrap();
    for (n, k) in keys.iter().enumerate() {
        let got = store
            .key_by_id(&k.workspace_id, &k.id)
            .await
            .unwrap()
            .unwrap();
        let (want, updated) = if k.workspace_id == a.id {
            (without(lists[n % 5]), lists[n % 5].contains(&"chats:read"))
        } else {
            (k.scopes.clone(), false)
        };
        assert_eq!(got.scopes, want, "key {n}");
        assert_eq!(
            got.updated_at,
            if updated { ts(21_510) } else { k.updated_at },
            "key {n}"
        );
    }
    for (n, r) in roles.iter().enumerate() {
        let got = store
            .role_by_id(&r.workspace_id, &r.id)
            .await
            .unwrap()
            .unwrap();
        let want = if r.workspace_id == a.id {
            without(lists[n % 5])
        } else {
            r.scopes.clone()
        };
        assert_eq!(got.scopes, want, "role {n}");
    }
    for (n, g) in grants.iter().enumerate() {
        let got = store.grant_by_id(&g.id).await.unwrap().unwrap().grant;
        let want = if g.workspace_id == a.id {
            without(lists[n % 5])
        } else {
            g.scopes.clone()
        };
        assert_eq!(got.scopes, want, "grant {n}");
    }
}
