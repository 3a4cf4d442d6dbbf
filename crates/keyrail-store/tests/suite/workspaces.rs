//! Workspaces, their settings and key formats, their members, and deleting them.

use keyrail_core::id::{AuditId, MemberId, UserId, WorkspaceId};
use keyrail_core::model::{
    ActorType, Alphabet, AuditEntry, AuditFilter, Change, KeyFormat, OwnerGuarded, Page,
    WorkspaceStatus,
};
use keyrail_core::{Store, StoreError};

use crate::fixtures::*;

pub(crate) async fn workspaces_and_members(store: &dyn Store) {
    let owner = user("owner@example.com", "Owner", 100);
    let bob = user("bob@example.com", "Bob", 101);
    let carol = user("carol@example.com", "Carol", 102);
    let dave = user("dave@example.com", "Dave", 103);
    for u in [&owner, &bob, &carol, &dave] {
        store.insert_user(u).await.unwrap();
    }

    // create_workspace makes the owner member; the key format round-trips exactly.
    let sgw = KeyFormat {
        prefix: "sgw".into(),
        alphabet: Alphabet::Hex,
        length: 32,
        checksum: false,
    };
    let mut ws1 = workspace("Acme", 200, sgw);
    ws1.updated_at = ts(250);
    let owner_m = member(&ws1, &owner, "owner", 200);
    store.create_workspace(&ws1, &owner_m).await.unwrap();
    assert_same_workspace(
        &store.workspace_by_id(&ws1.id).await.unwrap().unwrap(),
        &ws1,
    );
    let m = store.member_of(&ws1.id, &owner.id).await.unwrap().unwrap();
    assert_same_member(&m, &owner_m);
    assert!(
        store
            .workspace_by_id(&WorkspaceId::new())
            .await
            .unwrap()
            .is_none()
    );

    let ws2 = workspace("Beta", 300, KeyFormat::default());
    let bob_owner = member(&ws2, &bob, "owner", 300);
    store.create_workspace(&ws2, &bob_owner).await.unwrap();
    assert_same_workspace(
        &store.workspace_by_id(&ws2.id).await.unwrap().unwrap(),
        &ws2,
    );

    // A workspace whose owner does not exist is not created at all (one transaction).
    let ghost = user("ghost@example.com", "Ghost", 0);
    let ws_bad = workspace("Orphan", 400, KeyFormat::default());
    let err = store
        .create_workspace(&ws_bad, &member(&ws_bad, &ghost, "owner", 400))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.workspace_by_id(&ws_bad.id).await.unwrap().is_none());
    // A workspace id that already exists is a conflict, and the owner row is not added.
    let mut ws_dup = workspace("Dup", 401, KeyFormat::default());
    ws_dup.id = ws1.id.clone();
    assert_conflict(
        store
            .create_workspace(&ws_dup, &member(&ws_dup, &dave, "owner", 401))
            .await,
        "workspace id",
    );
    assert!(store.member_of(&ws1.id, &dave.id).await.unwrap().is_none());

    // Members.
    let owner_in_ws2 = member(&ws2, &owner, "member", 310);
    store
        .insert_member(&owner_in_ws2, &entry("member.add"))
        .await
        .unwrap();
    assert_conflict(
        store
            .insert_member(&member(&ws1, &owner, "admin", 311), &entry("member.add"))
            .await,
        "member",
    );
    let fk = store
        .insert_member(&member(&ws1, &ghost, "member", 312), &entry("member.add"))
        .await;
    assert!(matches!(fk, Err(StoreError::Other(_))), "{fk:?}");
    let no_ws = workspace("Nowhere", 0, KeyFormat::default());
    let fk = store
        .insert_member(&member(&no_ws, &carol, "member", 313), &entry("member.add"))
        .await;
    assert!(matches!(fk, Err(StoreError::Other(_))), "{fk:?}");

    // workspaces_of_user: oldest first.
    let of_owner = store.workspaces_of_user(&owner.id).await.unwrap();
    let names: Vec<&str> = of_owner.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["Acme", "Beta"]);
    assert_same_workspace(&of_owner[0], &ws1);
    assert_eq!(store.workspaces_of_user(&bob.id).await.unwrap().len(), 1);
    assert!(
        store
            .workspaces_of_user(&carol.id)
            .await
            .unwrap()
            .is_empty()
    );

    // member_by_id is scoped to its workspace.
    assert_same_member(
        &store
            .member_by_id(&ws2.id, &owner_in_ws2.id)
            .await
            .unwrap()
            .unwrap(),
        &owner_in_ws2,
    );
    assert!(
        store
            .member_by_id(&ws1.id, &owner_in_ws2.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .member_by_id(&ws1.id, &MemberId::new())
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.member_of(&ws1.id, &bob.id).await.unwrap().is_none());

    // list_members joins email and name, pages by member id.
    let carol_m = member(&ws1, &carol, "member", 320);
    let dave_m = member(&ws1, &dave, "viewer", 321);
    store
        .insert_member(&carol_m, &entry("member.add"))
        .await
        .unwrap();
    store
        .insert_member(&dave_m, &entry("member.add"))
        .await
        .unwrap();
    let mut expected = vec![
        (
            owner_m.id.to_string(),
            "owner@example.com",
            "Owner",
            "owner",
        ),
        (
            carol_m.id.to_string(),
            "carol@example.com",
            "Carol",
            "member",
        ),
        (dave_m.id.to_string(), "dave@example.com", "Dave", "viewer"),
    ];
    expected.sort();
    let first = store.list_members(&ws1.id, &Page::first(2)).await.unwrap();
    assert_eq!(first.len(), 2);
    let second = store
        .list_members(
            &ws1.id,
            &Page {
                limit: 2,
                after: Some(first[1].member.id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let got: Vec<_> = first
        .iter()
        .chain(&second)
        .map(|v| {
            assert_eq!(v.member.workspace_id, ws1.id);
            (
                v.member.id.to_string(),
                v.email.as_str(),
                v.name.as_str(),
                v.member.role.as_str(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_same_member(
        &first
            .iter()
            .chain(&second)
            .find(|v| v.member.id == carol_m.id)
            .unwrap()
            .member,
        &carol_m,
    );
    assert!(
        store
            .list_members(&no_ws.id, &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );

    // set_workspace_status: unknown => false and no change; known => updated and logged.
    assert!(
        !store
            .set_workspace_status(
                &WorkspaceId::new(),
                WorkspaceStatus::Suspended,
                ts(500),
                &entry("workspace.suspend")
            )
            .await
            .unwrap()
    );
    assert_eq!(store.latest_change().await.unwrap(), 0);
    assert!(
        store
            .set_workspace_status(
                &ws1.id,
                WorkspaceStatus::Suspended,
                ts(501),
                &entry("workspace.suspend")
            )
            .await
            .unwrap()
    );
    let w = store.workspace_by_id(&ws1.id).await.unwrap().unwrap();
    assert_eq!(w.status, WorkspaceStatus::Suspended);
    assert_eq!(w.updated_at, ts(501));
    assert_eq!(w.created_at, ws1.created_at);
    assert_eq!(w.key_format, ws1.key_format);
    let changes = store.changes_after(0, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    let c1 = changes[0].clone();
    assert!(c1.seq > 0);
    assert_eq!(
        c1,
        Change {
            seq: c1.seq,
            at: ts(501),
            kind: "workspace.status".into(),
            subject: ws1.id.to_string(),
        }
    );
    assert_eq!(store.latest_change().await.unwrap(), c1.seq);

    // remove_member: scoped to its workspace, logged, idempotent.
    assert_eq!(
        store
            .remove_member(&ws1.id, &owner_in_ws2.id, ts(600), &entry("member.remove"))
            .await
            .unwrap(),
        OwnerGuarded::NotFound
    );
    assert_eq!(store.latest_change().await.unwrap(), c1.seq);
    assert_eq!(
        store
            .remove_member(&ws1.id, &carol_m.id, ts(601), &entry("member.remove"))
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    assert!(
        store
            .member_by_id(&ws1.id, &carol_m.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.member_of(&ws1.id, &carol.id).await.unwrap().is_none());
    assert_eq!(
        store
            .remove_member(&ws1.id, &carol_m.id, ts(602), &entry("member.remove"))
            .await
            .unwrap(),
        OwnerGuarded::NotFound
    );
    assert_eq!(
        store
            .list_members(&ws1.id, &Page::first(10))
            .await
            .unwrap()
            .len(),
        2
    );
    // The user itself is untouched.
    assert!(store.user_by_id(&carol.id).await.unwrap().is_some());

    assert!(
        store
            .set_workspace_status(
                &ws1.id,
                WorkspaceStatus::Active,
                ts(700),
                &entry("workspace.suspend")
            )
            .await
            .unwrap()
    );
    let all = store.changes_after(0, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], c1);
    assert_eq!(all[1].kind, "member.removed");
    assert_eq!(all[1].subject, carol_m.id.to_string());
    assert_eq!(all[1].at, ts(601));
    assert_eq!(all[2].kind, "workspace.status");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.latest_change().await.unwrap(), all[2].seq);
    assert_eq!(store.changes_after(c1.seq, 10).await.unwrap(), all[1..]);
    assert_eq!(store.changes_after(c1.seq, 1).await.unwrap(), all[1..2]);
    assert!(
        store
            .changes_after(all[2].seq, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .workspace_by_id(&ws1.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        WorkspaceStatus::Active
    );
}

pub(crate) async fn workspace_updates_and_listing(store: &dyn Store) {
    let u = new_user(store, "ws-admin@example.com", 20_000).await;
    let other = new_user(store, "ws-other@example.com", 20_001).await;
    let loner = new_user(store, "ws-loner@example.com", 20_002).await;
    // Created in this order, but "Older" is older by created_at: memberships sort by that.
    let newer = workspace("Newer", 20_200, KeyFormat::default());
    let newer_owner = member(&newer, &u, "owner", 20_200);
    store.create_workspace(&newer, &newer_owner).await.unwrap();
    let older = workspace("Older", 20_100, KeyFormat::default());
    let older_owner = member(&older, &other, "owner", 20_100);
    store.create_workspace(&older, &older_owner).await.unwrap();
    let u_in_older = member(&older, &u, "developer", 20_300);
    store
        .insert_member(&u_in_older, &entry("member.add"))
        .await
        .unwrap();

    // memberships_of_user: oldest workspace first, each with the user's own membership.
    let ms = store.memberships_of_user(&u.id).await.unwrap();
    assert_eq!(ms.len(), 2);
    assert_same_workspace(&ms[0].0, &older);
    assert_same_member(&ms[0].1, &u_in_older);
    assert_same_workspace(&ms[1].0, &newer);
    assert_same_member(&ms[1].1, &newer_owner);
    let ms = store.memberships_of_user(&other.id).await.unwrap();
    assert_eq!(ms.len(), 1);
    assert_same_workspace(&ms[0].0, &older);
    assert_same_member(&ms[0].1, &older_owner);
    assert!(
        store
            .memberships_of_user(&loner.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .memberships_of_user(&UserId::new())
            .await
            .unwrap()
            .is_empty()
    );

    // update_workspace saves name, key_format and updated_at, nothing else.
    let before = store.latest_change().await.unwrap();
    let gr = KeyFormat {
        prefix: "gr".into(),
        alphabet: Alphabet::Base36,
        length: 20,
        checksum: false,
    };
    let mut changed = older.clone();
    changed.name = "Older, renamed".into();
    changed.key_format = gr.clone();
    changed.updated_at = ts(20_400);
    changed.status = WorkspaceStatus::Suspended;
    changed.created_at = ts(1);
    assert!(
        store
            .update_workspace(&changed, &entry("workspace.update"))
            .await
            .unwrap()
    );
    let got = store.workspace_by_id(&older.id).await.unwrap().unwrap();
    assert_eq!(got.name, "Older, renamed");
    assert_eq!(got.key_format, gr);
    assert_eq!(got.updated_at, ts(20_400));
    assert_eq!(got.status, WorkspaceStatus::Active);
    assert_eq!(got.created_at, older.created_at);
    // The other workspace is untouched; memberships show the new settings.
    assert_same_workspace(
        &store.workspace_by_id(&newer.id).await.unwrap().unwrap(),
        &newer,
    );
    assert_same_workspace(&store.memberships_of_user(&u.id).await.unwrap()[0].0, &got);
    // An unknown workspace: false, and nothing is created.
    let ghost = workspace("Ghost", 20_500, KeyFormat::default());
    assert!(
        !store
            .update_workspace(&ghost, &entry("workspace.update"))
            .await
            .unwrap()
    );
    assert!(store.workspace_by_id(&ghost.id).await.unwrap().is_none());
    // Settings are not in the change log.
    assert_eq!(store.latest_change().await.unwrap(), before);

    // list_workspaces: every workspace, by id, in keyset pages.
    let all = store.list_workspaces(&Page::first(200)).await.unwrap();
    let ids: Vec<String> = all.iter().map(|w| w.id.to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "workspaces are listed in id order");
    assert!(all.len() >= 5, "{}", all.len());
    assert_same_workspace(all.iter().find(|w| w.id == older.id).unwrap(), &got);
    assert_same_workspace(all.iter().find(|w| w.id == newer.id).unwrap(), &newer);
    let mut seen = Vec::new();
    let mut page = Page::first(2);
    loop {
        let got = store.list_workspaces(&page).await.unwrap();
        assert!(got.len() <= 2);
        let Some(last) = got.last() else { break };
        page.after = Some(last.id.to_string());
        seen.extend(got.iter().map(|w| w.id.to_string()));
    }
    assert_eq!(seen, ids);
    assert!(
        store
            .list_workspaces(&Page::first(0))
            .await
            .unwrap()
            .is_empty()
    );
    let after_last = Page {
        limit: 10,
        after: Some(ids.last().unwrap().clone()),
    };
    assert!(store.list_workspaces(&after_last).await.unwrap().is_empty());
}

pub(crate) async fn delete_workspace_removes_everything(store: &dyn Store) {
    let (doomed, owner) = new_workspace(store, "doomed", 26_000).await;
    let dev_role = role(&doomed, "dev", &["keys:read"], 26_001);
    store
        .insert_role(&dev_role, &entry("role.create"))
        .await
        .unwrap();
    let dev = new_member(
        store,
        &doomed,
        "doomed-dev@example.com",
        dev_role.id.as_str(),
        26_002,
    )
    .await;
    store
        .insert_scope(
            &doomed.id,
            &scope("chats:read", "Read chats", false, 26_003),
            &entry("scope.create"),
        )
        .await
        .unwrap();
    // The owner is also in a workspace that stays, with a scope and a role of the same names.
    let kept = workspace("kept", 26_010, KeyFormat::default());
    let owner_user = store.user_by_id(&owner.user_id).await.unwrap().unwrap();
    let kept_owner = member(&kept, &owner_user, "owner", 26_010);
    store.create_workspace(&kept, &kept_owner).await.unwrap();
    let kept_scope = scope("chats:read", "Read chats", false, 26_011);
    store
        .insert_scope(&kept.id, &kept_scope, &entry("scope.create"))
        .await
        .unwrap();
    let kept_role = role(&kept, "dev", &["keys:read"], 26_012);
    store
        .insert_role(&kept_role, &entry("role.create"))
        .await
        .unwrap();
    let audit = AuditEntry {
        id: AuditId::new(),
        at: ts(26_020),
        workspace_id: Some(doomed.id.clone()),
        actor_type: ActorType::User,
        actor_id: Some(owner.user_id.to_string()),
        action: "role.create".into(),
        target: Some(dev_role.id.to_string()),
        ip: None,
        user_agent: None,
        outcome: "success".into(),
        event: None,
    };
    store.insert_audit(&audit).await.unwrap();
    let doomed_key = api_key(&doomed, "doomed-key", 26_030);
    store.insert_key(&doomed_key, None).await.unwrap();
    let kept_key = api_key(&kept, "kept-key", 26_031);
    store.insert_key(&kept_key, None).await.unwrap();

    let before = store.latest_change().await.unwrap();
    assert!(
        store
            .delete_workspace(&doomed.id, ts(26_100), &entry("workspace.delete"))
            .await
            .unwrap()
    );
    assert_eq!(
        changes_since(store, before).await,
        [change("workspace.deleted", &doomed.id, ts(26_100))]
    );
    // The workspace and everything under it are gone.
    assert!(store.workspace_by_id(&doomed.id).await.unwrap().is_none());
    for m in [&owner, &dev] {
        assert!(
            store
                .member_by_id(&doomed.id, &m.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .member_of(&doomed.id, &m.user_id)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert!(
        store
            .list_members(&doomed.id, &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.roles_of(&doomed.id).await.unwrap().is_empty());
    assert!(
        store
            .role_by_id(&doomed.id, &dev_role.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.scopes_of(&doomed.id).await.unwrap().is_empty());
    assert!(store.key_by_hash(&doomed_key.hash).await.unwrap().is_none());
    assert!(
        store
            .key_by_id(&doomed.id, &doomed_key.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .existing_key_hashes(std::slice::from_ref(&doomed_key.hash))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_workspaces(&Page::first(200))
            .await
            .unwrap()
            .iter()
            .all(|w| w.id != doomed.id)
    );
    assert!(
        store
            .memberships_of_user(&dev.user_id)
            .await
            .unwrap()
            .is_empty()
    );
    let left = store.memberships_of_user(&owner.user_id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_same_workspace(&left[0].0, &kept);
    assert_same_member(&left[0].1, &kept_owner);
    let of_owner = store.workspaces_of_user(&owner.user_id).await.unwrap();
    assert_eq!(of_owner.len(), 1);
    assert_eq!(of_owner[0].id, kept.id);
    // What belongs to other workspaces, the users and the audit log stay.
    assert_eq!(store.scopes_of(&kept.id).await.unwrap(), [kept_scope]);
    assert_eq!(store.roles_of(&kept.id).await.unwrap(), [kept_role]);
    assert_eq!(
        store.key_by_hash(&kept_key.hash).await.unwrap(),
        Some(kept_key)
    );
    assert!(store.user_by_id(&dev.user_id).await.unwrap().is_some());
    let filter = AuditFilter {
        workspace_id: Some(doomed.id.clone()),
        ..AuditFilter::default()
    };
    let entries = store.list_audit(&filter, &Page::first(10)).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_same_audit(&entries[0], &audit);
    // Nothing can be added under it any more.
    let err = store
        .insert_scope(
            &doomed.id,
            &scope("x:read", "", false, 26_200),
            &entry("scope.create"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .insert_role(&role(&doomed, "late", &[], 26_200), &entry("role.create"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .insert_member(
            &member(&doomed, &owner_user, "owner", 26_200),
            &entry("member.add"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .insert_key(&api_key(&doomed, "doomed-late", 26_200), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    // Deleting it again, or an unknown workspace: false, nothing logged.
    assert!(
        !store
            .delete_workspace(&doomed.id, ts(26_300), &entry("workspace.delete"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_workspace(&WorkspaceId::new(), ts(26_300), &entry("workspace.delete"))
            .await
            .unwrap()
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
}

/// Every format a workspace has had stays known (a node starting up must know the shape of keys
/// made before a format change); each is listed once.
pub(crate) async fn key_format_history(store: &dyn Store) {
    let first = KeyFormat {
        prefix: "hist".into(),
        alphabet: Alphabet::Base62,
        length: 36,
        checksum: false,
    };
    let second = KeyFormat {
        prefix: "hist".into(),
        alphabet: Alphabet::Base62,
        length: 30,
        checksum: true,
    };
    let u = new_user(store, "formats@example.com", 35_000).await;
    let mut ws = workspace("formats", 35_000, first.clone());
    store
        .create_workspace(&ws, &member(&ws, &u, "owner", 35_000))
        .await
        .unwrap();
    assert!(store.key_formats().await.unwrap().contains(&first));
    ws.key_format = second.clone();
    ws.updated_at = ts(35_010);
    assert!(
        store
            .update_workspace(&ws, &entry("workspace.update"))
            .await
            .unwrap()
    );
    // Renaming keeps the format: nothing new.
    ws.name = "formats renamed".into();
    assert!(
        store
            .update_workspace(&ws, &entry("workspace.update"))
            .await
            .unwrap()
    );
    let known = store.key_formats().await.unwrap();
    assert!(
        known.contains(&first) && known.contains(&second),
        "{known:?}"
    );
    assert_eq!(known.iter().filter(|f| **f == second).count(), 1);
    // No such workspace: nothing recorded.
    let mut ghost = workspace(
        "ghost",
        35_020,
        KeyFormat {
            prefix: "ghost".into(),
            ..second.clone()
        },
    );
    ghost.updated_at = ts(35_020);
    assert!(
        !store
            .update_workspace(&ghost, &entry("workspace.update"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .key_formats()
            .await
            .unwrap()
            .contains(&ghost.key_format)
    );
}
