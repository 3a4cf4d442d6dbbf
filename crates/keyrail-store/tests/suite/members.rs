//! Guarded member changes: the last owner stays, also under concurrency.

use std::sync::Arc;

use keyrail_core::id::{MemberId, WorkspaceId};
use keyrail_core::model::{Member, OwnerGuarded, Page, Workspace};
use keyrail_core::{Store, Timestamp};

use crate::fixtures::*;

async fn role_of(store: &dyn Store, ws: &WorkspaceId, id: &MemberId) -> Option<String> {
    store.member_by_id(ws, id).await.unwrap().map(|m| m.role)
}

async fn owners(store: &dyn Store, ws: &WorkspaceId) -> Vec<MemberId> {
    store
        .list_members(ws, &Page::first(200))
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.member.role == "owner")
        .map(|v| v.member.id)
        .collect()
}

pub(crate) async fn guarded_member_changes(store: &dyn Store) {
    let (ws, alice) = new_workspace(store, "guard", 23_000).await;
    let bob = new_member(store, &ws, "guard-bob@example.com", "member", 23_001).await;
    let (other_ws, carol) = new_workspace(store, "guard-other", 23_002).await;
    let before = store.latest_change().await.unwrap();
    let set = |id: MemberId, role: &'static str, at: i64| {
        let ws = ws.id.clone();
        async move {
            store
                .set_member_role(&ws, &id, role, ts(at), &entry("member.update"))
                .await
                .unwrap()
        }
    };
    let remove = |id: MemberId, at: i64| {
        let ws = ws.id.clone();
        async move {
            store
                .remove_member(&ws, &id, ts(at), &entry("member.remove"))
                .await
                .unwrap()
        }
    };

    // A member who is not an owner changes freely.
    assert_eq!(
        set(bob.id.clone(), "developer", 23_100).await,
        OwnerGuarded::Done
    );
    assert_eq!(
        role_of(store, &ws.id, &bob.id).await.as_deref(),
        Some("developer")
    );
    // The last owner cannot be demoted; staying owner is no demotion.
    assert_eq!(
        set(alice.id.clone(), "admin", 23_101).await,
        OwnerGuarded::LastOwner
    );
    assert_eq!(
        role_of(store, &ws.id, &alice.id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        set(alice.id.clone(), "owner", 23_102).await,
        OwnerGuarded::Done
    );
    // The last owner cannot be removed.
    assert_eq!(
        remove(alice.id.clone(), 23_103).await,
        OwnerGuarded::LastOwner
    );
    assert_eq!(
        role_of(store, &ws.id, &alice.id).await.as_deref(),
        Some("owner")
    );
    // Unknown members, members of another workspace, unknown workspaces: NotFound.
    assert_eq!(
        set(MemberId::new(), "viewer", 23_104).await,
        OwnerGuarded::NotFound
    );
    assert_eq!(
        set(carol.id.clone(), "viewer", 23_104).await,
        OwnerGuarded::NotFound
    );
    assert_eq!(
        remove(MemberId::new(), 23_104).await,
        OwnerGuarded::NotFound
    );
    assert_eq!(
        remove(carol.id.clone(), 23_104).await,
        OwnerGuarded::NotFound
    );
    assert_eq!(
        store
            .set_member_role(
                &WorkspaceId::new(),
                &bob.id,
                "viewer",
                ts(23_104),
                &entry("member.update")
            )
            .await
            .unwrap(),
        OwnerGuarded::NotFound
    );
    assert_eq!(
        store
            .remove_member(
                &WorkspaceId::new(),
                &bob.id,
                ts(23_104),
                &entry("member.remove")
            )
            .await
            .unwrap(),
        OwnerGuarded::NotFound
    );
    assert_eq!(
        role_of(store, &other_ws.id, &carol.id).await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        role_of(store, &ws.id, &bob.id).await.as_deref(),
        Some("developer")
    );
    // The refusals logged nothing.
    assert_eq!(
        changes_since(store, before).await,
        [
            change("member.updated", &bob.id, ts(23_100)),
            change("member.updated", &alice.id, ts(23_102)),
        ]
    );

    // With a second owner, either one may go.
    let before = store.latest_change().await.unwrap();
    assert_eq!(
        set(bob.id.clone(), "owner", 23_200).await,
        OwnerGuarded::Done
    );
    assert_eq!(
        set(alice.id.clone(), "viewer", 23_201).await,
        OwnerGuarded::Done
    );
    assert_eq!(owners(store, &ws.id).await, std::slice::from_ref(&bob.id));
    // Now bob is the last one.
    assert_eq!(
        set(bob.id.clone(), "member", 23_202).await,
        OwnerGuarded::LastOwner
    );
    assert_eq!(
        remove(bob.id.clone(), 23_202).await,
        OwnerGuarded::LastOwner
    );
    assert_eq!(remove(alice.id.clone(), 23_203).await, OwnerGuarded::Done);
    assert!(
        store
            .member_by_id(&ws.id, &alice.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        remove(alice.id.clone(), 23_204).await,
        OwnerGuarded::NotFound
    );
    assert_eq!(
        set(alice.id.clone(), "owner", 23_204).await,
        OwnerGuarded::NotFound
    );
    let dave = new_member(store, &ws, "guard-dave@example.com", "owner", 23_205).await;
    assert_eq!(remove(bob.id.clone(), 23_206).await, OwnerGuarded::Done);
    assert_eq!(owners(store, &ws.id).await, std::slice::from_ref(&dave.id));
    // A custom role is held by its id; the guard counts only the built-in `owner`.
    let custom = role(&ws, "owner-ish", &["members:read"], 23_207);
    store
        .insert_role(&custom, &entry("role.create"))
        .await
        .unwrap();
    let erin = new_member(store, &ws, "guard-erin@example.com", "viewer", 23_208).await;
    assert_eq!(
        store
            .set_member_role(
                &ws.id,
                &erin.id,
                custom.id.as_str(),
                ts(23_209),
                &entry("member.update")
            )
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    assert_eq!(
        role_of(store, &ws.id, &erin.id).await.as_deref(),
        Some(custom.id.as_str())
    );
    assert_eq!(
        store
            .set_member_role(
                &ws.id,
                &dave.id,
                custom.id.as_str(),
                ts(23_210),
                &entry("member.update")
            )
            .await
            .unwrap(),
        OwnerGuarded::LastOwner
    );
    assert_eq!(
        changes_since(store, before).await,
        [
            change("member.updated", &bob.id, ts(23_200)),
            change("member.updated", &alice.id, ts(23_201)),
            change("member.removed", &alice.id, ts(23_203)),
            change("member.removed", &bob.id, ts(23_206)),
            change("member.updated", &erin.id, ts(23_209)),
        ]
    );
}

#[derive(Debug, Clone, Copy)]
enum OwnerRace {
    /// Both owners demote each other at once.
    Demote,
    /// Both owners are removed at once.
    Remove,
    /// One is demoted while the other is removed.
    Mixed,
}

/// A workspace with two owners; returns it and the two owner memberships.
async fn two_owners(store: &dyn Store, tag: &str, at: i64) -> (Workspace, Member, Member) {
    let (ws, first) = new_workspace(store, tag, at).await;
    let second = new_member(
        store,
        &ws,
        &format!("{tag}-second@example.com"),
        "owner",
        at,
    )
    .await;
    (ws, first, second)
}

/// Checks the outcome of one race between `a` (first result) and `b` on a two-owner workspace:
/// exactly one change went through, the other was refused as the last owner, which it is now.
async fn check_owner_race(
    store: &dyn Store,
    race: OwnerRace,
    ws: &WorkspaceId,
    (a, b): (&MemberId, &MemberId),
    results: [OwnerGuarded; 2],
    before: i64,
    at: Timestamp,
) {
    let (winner, loser) = match results {
        [OwnerGuarded::Done, OwnerGuarded::LastOwner] => (a, b),
        [OwnerGuarded::LastOwner, OwnerGuarded::Done] => (b, a),
        other => panic!("{race:?}: expected one Done and one LastOwner, got {other:?}"),
    };
    assert_eq!(
        owners(store, ws).await,
        std::slice::from_ref(loser),
        "{race:?}"
    );
    let removed = match race {
        OwnerRace::Demote => false,
        OwnerRace::Remove => true,
        OwnerRace::Mixed => winner == b,
    };
    let kind = if removed {
        assert!(store.member_by_id(ws, winner).await.unwrap().is_none());
        "member.removed"
    } else {
        assert_eq!(
            role_of(store, ws, winner).await.as_deref(),
            Some("admin"),
            "{race:?}"
        );
        "member.updated"
    };
    assert_eq!(
        changes_since(store, before).await,
        [change(kind, winner, at)],
        "{race:?}"
    );
}

/// Two owners changed at once: exactly one change goes through, the other gets `LastOwner`, and
/// one owner remains. On PostgreSQL the two run on two connections of the pool.
pub(crate) async fn owner_guard_under_concurrency(store: &dyn Store) {
    let change_owner = |ws: WorkspaceId, id: MemberId, remove: bool, at: Timestamp| async move {
        if remove {
            store
                .remove_member(&ws, &id, at, &entry("member.remove"))
                .await
                .unwrap()
        } else {
            store
                .set_member_role(&ws, &id, "admin", at, &entry("member.update"))
                .await
                .unwrap()
        }
    };
    for round in 0..5 {
        for race in [OwnerRace::Demote, OwnerRace::Remove, OwnerRace::Mixed] {
            let at = 24_000 + round;
            let (ws, a, b) = two_owners(store, &format!("race-{round}-{race:?}"), at).await;
            let (remove_a, remove_b) = match race {
                OwnerRace::Demote => (false, false),
                OwnerRace::Remove => (true, true),
                OwnerRace::Mixed => (false, true),
            };
            let before = store.latest_change().await.unwrap();
            let results = join_all([
                change_owner(ws.id.clone(), a.id.clone(), remove_a, ts(at)),
                change_owner(ws.id.clone(), b.id.clone(), remove_b, ts(at)),
            ])
            .await;
            check_owner_race(
                store,
                race,
                &ws.id,
                (&a.id, &b.id),
                [results[0], results[1]],
                before,
                ts(at),
            )
            .await;
        }
    }
}

/// As [`owner_guard_under_concurrency`], with the two changes made through two stores (two
/// nodes) on one database, on separate tasks.
pub(crate) async fn owner_guard_across_stores(x: Arc<dyn Store>, y: Arc<dyn Store>) {
    for round in 0..5 {
        for race in [OwnerRace::Demote, OwnerRace::Remove, OwnerRace::Mixed] {
            let at = 25_000 + round;
            let (ws, a, b) = two_owners(x.as_ref(), &format!("nodes-{round}-{race:?}"), at).await;
            let (remove_a, remove_b) = match race {
                OwnerRace::Demote => (false, false),
                OwnerRace::Remove => (true, true),
                OwnerRace::Mixed => (false, true),
            };
            let spawn = |s: Arc<dyn Store>, id: MemberId, remove: bool| {
                let ws = ws.id.clone();
                tokio::spawn(async move {
                    if remove {
                        s.remove_member(&ws, &id, ts(at), &entry("member.remove"))
                            .await
                            .unwrap()
                    } else {
                        s.set_member_role(&ws, &id, "admin", ts(at), &entry("member.update"))
                            .await
                            .unwrap()
                    }
                })
            };
            let before = x.latest_change().await.unwrap();
            let ta = spawn(x.clone(), a.id.clone(), remove_a);
            let tb = spawn(y.clone(), b.id.clone(), remove_b);
            let results = [ta.await.unwrap(), tb.await.unwrap()];
            check_owner_race(
                y.as_ref(),
                race,
                &ws.id,
                (&a.id, &b.id),
                results,
                before,
                ts(at),
            )
            .await;
        }
    }
}
