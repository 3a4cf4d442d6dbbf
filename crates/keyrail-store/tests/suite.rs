//! One store test suite, run against SQLite (file and in-memory) and PostgreSQL.
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test makes its own database and drops it. Without PostgreSQL those tests print
//! `SKIPPED: ...` and pass, unless `CI` is set, where they fail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyrail_core::id::{
    AuditId, BuilderProfileId, GrantId, KeyId, MemberId, RoleId, SessionId, UserId, WorkspaceId,
};
use keyrail_core::model::{
    ActorType, Alphabet, ApiKey, App, AuditEntry, AuditFilter, BuilderProfile, Change, CustomRole,
    Grant, GrantFilter, KeyFilter, KeyFormat, KeyRateLimit, KeyStatus, LoginThrottle, Member,
    MfaState, OwnerGuarded, Page, RefreshOutcome, Session, StoredScope, StoredSigningKey,
    StoredTokenKey, User, Workspace, WorkspaceStatus,
};
use keyrail_core::secret::Secret;
use keyrail_core::{Store, StoreError, Timestamp};
use keyrail_store::testing::TempPostgres;

// ---------------------------------------------------------------------------------------------
// fixtures

/// An arbitrary instant with a non-zero millisecond part, so truncation would show.
const T0: i64 = 1_795_449_020_123;

fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn user(email: &str, name: &str, at: i64) -> User {
    User {
        id: UserId::new(),
        email: email.to_owned(),
        name: name.to_owned(),
        password_hash: Secret::new(format!(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${}",
            email.len()
        )),
        mfa_enabled: false,
        superuser: false,
        created_at: ts(at),
        updated_at: ts(at),
    }
}

fn workspace(name: &str, at: i64, key_format: KeyFormat) -> Workspace {
    Workspace {
        id: WorkspaceId::new(),
        name: name.to_owned(),
        status: WorkspaceStatus::Active,
        key_format,
        created_at: ts(at),
        updated_at: ts(at),
    }
}

fn member(ws: &Workspace, user: &User, role: &str, at: i64) -> Member {
    Member {
        id: MemberId::new(),
        workspace_id: ws.id.clone(),
        user_id: user.id.clone(),
        role: role.to_owned(),
        created_at: ts(at),
    }
}

fn assert_same_user(a: &User, b: &User) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.email, b.email);
    assert_eq!(a.name, b.name);
    assert_eq!(a.password_hash.expose(), b.password_hash.expose());
    assert_eq!(a.mfa_enabled, b.mfa_enabled);
    assert_eq!(a.superuser, b.superuser);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

fn assert_same_workspace(a: &Workspace, b: &Workspace) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.name, b.name);
    assert_eq!(a.status, b.status);
    assert_eq!(a.key_format, b.key_format);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.updated_at, b.updated_at);
}

fn assert_same_member(a: &Member, b: &Member) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.workspace_id, b.workspace_id);
    assert_eq!(a.user_id, b.user_id);
    assert_eq!(a.role, b.role);
    assert_eq!(a.created_at, b.created_at);
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(w)) => assert_eq!(w, what),
        other => panic!("expected Conflict({what}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// the suite

/// Runs every check against a store with a freshly migrated, empty database.
async fn run_suite(store: &dyn Store) {
    store.ping().await.unwrap();
    empty_change_log(store).await;
    users(store).await;
    list_users_pages(store).await;
    workspaces_and_members(store).await;
    concurrent_changes_are_ordered(store).await;
    // The identity checks come last: the ones above count users and changes from zero.
    user_updates(store).await;
    mfa(store).await;
    concurrent_totp_uses_pass_once(store).await;
    login_throttling(store).await;
    concurrent_login_failures_are_all_counted(store).await;
    sessions_and_refresh_tokens(store).await;
    concurrent_rotations_of_one_token(store).await;
    mfa_challenges(store).await;
    password_resets(store).await;
    signing_keys(store).await;
    audit_log(store).await;
    // Workspace administration: counts changes from the latest seq, not from zero.
    workspace_updates_and_listing(store).await;
    custom_scopes(store).await;
    custom_roles(store).await;
    guarded_member_changes(store).await;
    owner_guard_under_concurrency(store).await;
    delete_workspace_removes_everything(store).await;
    // API keys: each check makes its own workspaces and counts changes from the latest seq.
    keys_insert_and_lookup(store).await;
    keys_import(store).await;
    keys_listing(store).await;
    keys_update(store).await;
    keys_rotate(store).await;
    concurrent_rotations_of_one_key(store).await;
    key_format_history(store).await;
    keys_credits(store).await;
    keys_touch(store).await;
    apps_and_grants(store).await;
}

async fn empty_change_log(store: &dyn Store) {
    assert_eq!(store.latest_change().await.unwrap(), 0);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());
}

async fn users(store: &dyn Store) {
    let mut alice = user("alice@example.com", "Alice Ä. Example", 0);
    alice.mfa_enabled = true;
    alice.updated_at = ts(7);
    let mut root = user("root@example.com", "Root", 1);
    root.superuser = true;
    store.insert_user(&alice).await.unwrap();
    store.insert_user(&root).await.unwrap();

    let by_id = store
        .user_by_id(&alice.id)
        .await
        .unwrap()
        .expect("alice by id");
    assert_same_user(&by_id, &alice);
    let by_email = store
        .user_by_email("alice@example.com")
        .await
        .unwrap()
        .expect("alice by email");
    assert_same_user(&by_email, &alice);
    assert_same_user(&store.user_by_id(&root.id).await.unwrap().unwrap(), &root);

    assert!(store.user_by_id(&UserId::new()).await.unwrap().is_none());
    assert!(
        store
            .user_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );

    // Same email, new id.
    let dup = user("alice@example.com", "Other Alice", 2);
    assert_conflict(store.insert_user(&dup).await, "user email");
    // Same id, new email.
    let mut same_id = user("alice2@example.com", "Alice 2", 2);
    same_id.id = alice.id.clone();
    assert_conflict(store.insert_user(&same_id).await, "user id");
    // Neither write left anything behind.
    assert!(
        store
            .user_by_email("alice2@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.user_by_id(&alice.id).await.unwrap().unwrap().name,
        "Alice Ä. Example"
    );
}

async fn list_users_pages(store: &dyn Store) {
    for i in 0..5 {
        store
            .insert_user(&user(&format!("page{i}@example.com"), "Pager", 10 + i))
            .await
            .unwrap();
    }
    let all = store.list_users(&Page::first(100)).await.unwrap();
    assert_eq!(all.len(), 7);
    let ids: Vec<String> = all.iter().map(|u| u.id.to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "users are listed in id order");

    let mut seen = Vec::new();
    let mut page = Page::first(3);
    let mut sizes = Vec::new();
    loop {
        let got = store.list_users(&page).await.unwrap();
        sizes.push(got.len());
        let Some(last) = got.last() else { break };
        page.after = Some(last.id.to_string());
        seen.extend(got.iter().map(|u| u.id.to_string()));
    }
    assert_eq!(sizes, [3, 3, 1, 0]);
    assert_eq!(seen, ids);

    assert!(store.list_users(&Page::first(0)).await.unwrap().is_empty());
    let after_last = Page {
        limit: 10,
        after: Some(ids.last().unwrap().clone()),
    };
    assert!(store.list_users(&after_last).await.unwrap().is_empty());
}

async fn workspaces_and_members(store: &dyn Store) {
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
    store.insert_member(&owner_in_ws2).await.unwrap();
    assert_conflict(
        store
            .insert_member(&member(&ws1, &owner, "admin", 311))
            .await,
        "member",
    );
    let fk = store
        .insert_member(&member(&ws1, &ghost, "member", 312))
        .await;
    assert!(matches!(fk, Err(StoreError::Other(_))), "{fk:?}");
    let no_ws = workspace("Nowhere", 0, KeyFormat::default());
    let fk = store
        .insert_member(&member(&no_ws, &carol, "member", 313))
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
    store.insert_member(&carol_m).await.unwrap();
    store.insert_member(&dave_m).await.unwrap();
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
            .set_workspace_status(&WorkspaceId::new(), WorkspaceStatus::Suspended, ts(500))
            .await
            .unwrap()
    );
    assert_eq!(store.latest_change().await.unwrap(), 0);
    assert!(
        store
            .set_workspace_status(&ws1.id, WorkspaceStatus::Suspended, ts(501))
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

    // delete_member: scoped to its workspace, logged, idempotent.
    assert!(
        !store
            .delete_member(&ws1.id, &owner_in_ws2.id, ts(600))
            .await
            .unwrap()
    );
    assert_eq!(store.latest_change().await.unwrap(), c1.seq);
    assert!(
        store
            .delete_member(&ws1.id, &carol_m.id, ts(601))
            .await
            .unwrap()
    );
    assert!(
        store
            .member_by_id(&ws1.id, &carol_m.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.member_of(&ws1.id, &carol.id).await.unwrap().is_none());
    assert!(
        !store
            .delete_member(&ws1.id, &carol_m.id, ts(602))
            .await
            .unwrap()
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
            .set_workspace_status(&ws1.id, WorkspaceStatus::Active, ts(700))
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

/// Many writers at once: every change lands, with strictly increasing seq.
async fn concurrent_changes_are_ordered(store: &dyn Store) {
    let u = user("conc@example.com", "Conc", 900);
    store.insert_user(&u).await.unwrap();
    let ws = workspace("Conc", 900, KeyFormat::default());
    store
        .create_workspace(&ws, &member(&ws, &u, "owner", 900))
        .await
        .unwrap();
    let before = store.latest_change().await.unwrap();

    let tasks = (0..6).map(|i| {
        let ws = ws.id.clone();
        async move {
            for j in 0..5 {
                let status = if (i + j) % 2 == 0 {
                    WorkspaceStatus::Suspended
                } else {
                    WorkspaceStatus::Active
                };
                assert!(
                    store
                        .set_workspace_status(&ws, status, ts(1000 + j))
                        .await
                        .unwrap()
                );
            }
        }
    });
    join_all(tasks).await;

    let changes = store.changes_after(before, 1000).await.unwrap();
    assert_eq!(changes.len(), 30);
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.latest_change().await.unwrap(), changes[29].seq);
}

// ---------------------------------------------------------------------------------------------
// identity

async fn new_user(store: &dyn Store, email: &str, at: i64) -> User {
    let u = user(email, "Identity", at);
    store.insert_user(&u).await.unwrap();
    u
}

fn assert_same_session(a: &Session, b: &Session) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.user_id, b.user_id);
    assert_eq!(a.created_at, b.created_at);
    assert_eq!(a.last_used_at, b.last_used_at);
    assert_eq!(a.expires_at, b.expires_at);
    assert_eq!(a.revoked_at, b.revoked_at);
    assert_eq!(a.ip, b.ip);
    assert_eq!(a.user_agent, b.user_agent);
}

fn ids(sessions: &[Session]) -> Vec<SessionId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

/// A SHA-256-hex-like digest, distinct per label.
fn digest(label: &str) -> String {
    let mut out = String::with_capacity(64);
    for (i, b) in label.bytes().cycle().take(32).enumerate() {
        out.push_str(&format!("{:02x}", b ^ (i as u8)));
    }
    out.push_str(&format!("{:02x}", label.len()));
    out
}

async fn user_updates(store: &dyn Store) {
    let u = new_user(store, "updates@example.com", 2000).await;
    assert!(
        store
            .set_password_hash(&u.id, "$argon2id$v=19$new", ts(2001))
            .await
            .unwrap()
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash.expose(), "$argon2id$v=19$new");
    assert_eq!(got.updated_at, ts(2001));
    assert_eq!(got.created_at, u.created_at);
    assert_eq!(got.name, u.name);

    assert!(
        store
            .set_user_name(&u.id, "Renamed Ü", ts(2002))
            .await
            .unwrap()
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert_eq!(got.name, "Renamed Ü");
    assert_eq!(got.updated_at, ts(2002));
    assert_eq!(got.password_hash.expose(), "$argon2id$v=19$new");

    assert!(store.set_superuser(&u.id, true, ts(2004)).await.unwrap());
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(got.superuser);
    assert_eq!(got.updated_at, ts(2004));
    assert!(store.set_superuser(&u.id, false, ts(2005)).await.unwrap());
    assert!(!store.user_by_id(&u.id).await.unwrap().unwrap().superuser);

    let nobody = UserId::new();
    assert!(
        !store
            .set_password_hash(&nobody, "$argon2id$x", ts(2003))
            .await
            .unwrap()
    );
    assert!(!store.set_superuser(&nobody, true, ts(2003)).await.unwrap());
    assert!(!store.set_user_name(&nobody, "X", ts(2003)).await.unwrap());
}

fn assert_mfa(state: &MfaState, secret: Option<&str>, pending: Option<&str>, step: Option<i64>) {
    assert_eq!(state.secret.as_deref(), secret);
    assert_eq!(state.pending.as_deref(), pending);
    assert_eq!(state.last_step, step);
}

async fn mfa(store: &dyn Store) {
    let u = new_user(store, "mfa@example.com", 3000).await;
    let other = new_user(store, "mfa-other@example.com", 3000).await;
    let nobody = UserId::new();
    assert_mfa(&store.mfa_state(&u.id).await.unwrap(), None, None, None);
    // A user that does not exist has no MFA; writes to it fail.
    assert_mfa(&store.mfa_state(&nobody).await.unwrap(), None, None, None);
    assert!(matches!(
        store.set_mfa_pending(&nobody, Some("sealed")).await,
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        store
            .enable_mfa(&nobody, "s", 1, &[digest("n1")], ts(3001))
            .await,
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        store.disable_mfa(&nobody, ts(3001)).await,
        Err(StoreError::Other(_))
    ));
    assert!(!store.advance_totp_step(&nobody, 1).await.unwrap());
    assert_eq!(store.unused_recovery_codes(&nobody).await.unwrap(), 0);

    // Pending secret: set, replace, clear; MFA stays off meanwhile.
    store
        .set_mfa_pending(&u.id, Some("sealed-pending-1"))
        .await
        .unwrap();
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        None,
        Some("sealed-pending-1"),
        None,
    );
    store.set_mfa_pending(&u.id, None).await.unwrap();
    assert_mfa(&store.mfa_state(&u.id).await.unwrap(), None, None, None);
    store
        .set_mfa_pending(&u.id, Some("sealed-pending-2"))
        .await
        .unwrap();
    assert!(!store.user_by_id(&u.id).await.unwrap().unwrap().mfa_enabled);

    // Enable: secret set, pending cleared, last step recorded, codes stored.
    let codes: Vec<String> = (0..3).map(|i| digest(&format!("code{i}"))).collect();
    store
        .enable_mfa(&u.id, "sealed-secret-1", 1000, &codes, ts(3002))
        .await
        .unwrap();
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        Some("sealed-secret-1"),
        None,
        Some(1000),
    );
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(got.mfa_enabled);
    assert_eq!(got.updated_at, ts(3002));
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 3);
    assert_eq!(store.unused_recovery_codes(&other.id).await.unwrap(), 0);

    // TOTP steps: only a later step passes; a replay (same or earlier step) does not.
    assert!(!store.advance_totp_step(&u.id, 1000).await.unwrap());
    assert!(!store.advance_totp_step(&u.id, 999).await.unwrap());
    assert!(store.advance_totp_step(&u.id, 1001).await.unwrap());
    assert!(!store.advance_totp_step(&u.id, 1001).await.unwrap());
    assert!(store.advance_totp_step(&u.id, 1005).await.unwrap());
    assert_eq!(store.mfa_state(&u.id).await.unwrap().last_step, Some(1005));
    // With no step stored yet, any step passes once.
    assert!(store.advance_totp_step(&other.id, 7).await.unwrap());
    assert!(!store.advance_totp_step(&other.id, 7).await.unwrap());

    // Recovery codes: each works once, only for its own user.
    assert!(
        !store
            .use_recovery_code(&other.id, &codes[0], ts(3003))
            .await
            .unwrap()
    );
    assert!(
        store
            .use_recovery_code(&u.id, &codes[0], ts(3003))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&u.id, &codes[0], ts(3004))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&u.id, &digest("not a code"), ts(3004))
            .await
            .unwrap()
    );
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 2);

    // Enabling again replaces the codes and the step.
    let new_codes = vec![digest("fresh0"), digest("fresh1")];
    store
        .enable_mfa(&u.id, "sealed-secret-2", 2000, &new_codes, ts(3005))
        .await
        .unwrap();
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        Some("sealed-secret-2"),
        None,
        Some(2000),
    );
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 2);
    assert!(
        !store
            .use_recovery_code(&u.id, &codes[1], ts(3006))
            .await
            .unwrap()
    );
    // The same code may serve two users.
    store
        .enable_mfa(&other.id, "sealed-other", 8, &new_codes, ts(3006))
        .await
        .unwrap();
    assert_eq!(store.unused_recovery_codes(&other.id).await.unwrap(), 2);

    // A duplicate code hash fails the whole enable: nothing changes.
    store
        .set_mfa_pending(&u.id, Some("sealed-pending-3"))
        .await
        .unwrap();
    let dup = vec![digest("dup"), digest("dup")];
    assert_conflict(
        store
            .enable_mfa(&u.id, "sealed-secret-3", 3000, &dup, ts(3007))
            .await,
        "recovery code",
    );
    assert_mfa(
        &store.mfa_state(&u.id).await.unwrap(),
        Some("sealed-secret-2"),
        Some("sealed-pending-3"),
        Some(2000),
    );
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 2);
    assert_eq!(
        store.user_by_id(&u.id).await.unwrap().unwrap().updated_at,
        ts(3005)
    );

    // Disable: everything goes, the codes too; the other user keeps theirs.
    store.disable_mfa(&u.id, ts(3008)).await.unwrap();
    assert_mfa(&store.mfa_state(&u.id).await.unwrap(), None, None, None);
    let got = store.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(!got.mfa_enabled);
    assert_eq!(got.updated_at, ts(3008));
    assert_eq!(store.unused_recovery_codes(&u.id).await.unwrap(), 0);
    assert!(
        !store
            .use_recovery_code(&u.id, &new_codes[0], ts(3009))
            .await
            .unwrap()
    );
    assert_eq!(store.unused_recovery_codes(&other.id).await.unwrap(), 2);
    assert!(
        store
            .user_by_id(&other.id)
            .await
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
    // Disabling again is harmless.
    store.disable_mfa(&u.id, ts(3010)).await.unwrap();
}

/// Many uses of one TOTP step at once: exactly one passes.
async fn concurrent_totp_uses_pass_once(store: &dyn Store) {
    let u = new_user(store, "totp-race@example.com", 3100).await;
    store
        .enable_mfa(&u.id, "sealed", 10, &[], ts(3100))
        .await
        .unwrap();
    let results = join_all((0..10).map(|_| store.advance_totp_step(&u.id, 11))).await;
    let passed = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(passed, 1);
    assert_eq!(store.mfa_state(&u.id).await.unwrap().last_step, Some(11));
}

async fn login_throttling(store: &dyn Store) {
    let key = digest("throttle@example.com");
    let other = digest("throttle-other@example.com");
    assert_eq!(store.login_throttle(&key).await.unwrap(), None);

    let window = 1000;
    let fail = |at: i64| store.record_login_failure(&key, ts(at), ts(at - window));
    let t = fail(0).await.unwrap();
    assert_eq!(
        t,
        LoginThrottle {
            failures: 1,
            window_start: ts(0),
            locked_until: Timestamp::from_millis(0),
        }
    );
    assert_eq!(fail(10).await.unwrap().failures, 2);
    // Exactly at the window's edge the window still counts.
    let t = fail(window).await.unwrap();
    assert_eq!((t.failures, t.window_start), (3, ts(0)));
    assert_eq!(store.login_throttle(&key).await.unwrap(), Some(t));
    // Past it, a new window starts with this failure.
    let t = fail(window + 1).await.unwrap();
    assert_eq!((t.failures, t.window_start), (1, ts(window + 1)));
    assert_eq!(fail(window + 2).await.unwrap().failures, 2);

    // Other keys are counted apart.
    let o = store
        .record_login_failure(&other, ts(5), ts(-995))
        .await
        .unwrap();
    assert_eq!(o.failures, 1);
    assert_eq!(
        store.login_throttle(&key).await.unwrap().unwrap().failures,
        2
    );

    // Locking resets the count and keeps the window.
    store.lock_login(&key, ts(9000)).await.unwrap();
    let t = store.login_throttle(&key).await.unwrap().unwrap();
    assert_eq!(
        t,
        LoginThrottle {
            failures: 0,
            window_start: ts(window + 1),
            locked_until: ts(9000),
        }
    );
    // Failures while locked count again from zero; the lock stays.
    let t = fail(window + 3).await.unwrap();
    assert_eq!((t.failures, t.locked_until), (1, ts(9000)));

    // A key locked with no failures counted.
    let fresh = digest("locked-first@example.com");
    store.lock_login(&fresh, ts(500)).await.unwrap();
    assert_eq!(
        store.login_throttle(&fresh).await.unwrap(),
        Some(LoginThrottle {
            failures: 0,
            window_start: Timestamp::from_millis(0),
            locked_until: ts(500),
        })
    );
    let t = store
        .record_login_failure(&fresh, ts(600), ts(-400))
        .await
        .unwrap();
    assert_eq!((t.failures, t.window_start), (1, ts(600)));

    // Clearing forgets everything about the key, and only that key.
    store.clear_login_throttle(&key).await.unwrap();
    assert_eq!(store.login_throttle(&key).await.unwrap(), None);
    store.clear_login_throttle(&key).await.unwrap();
    assert_eq!(
        store
            .login_throttle(&other)
            .await
            .unwrap()
            .unwrap()
            .failures,
        1
    );
    assert_eq!(fail(window + 4).await.unwrap().failures, 1);
}

/// Concurrent failures for one key are each counted: none is lost to a race.
async fn concurrent_login_failures_are_all_counted(store: &dyn Store) {
    let key = digest("concurrent-throttle@example.com");
    let results =
        join_all((0..20).map(|i| store.record_login_failure(&key, ts(100 + i), ts(-1_000_000))))
            .await;
    let mut counts: Vec<u32> = results.into_iter().map(|r| r.unwrap().failures).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=20).collect::<Vec<u32>>());
    assert_eq!(
        store.login_throttle(&key).await.unwrap().unwrap().failures,
        20
    );
}

fn session(user: &User, created: i64, lifetime: i64) -> Session {
    Session {
        id: SessionId::new(),
        user_id: user.id.clone(),
        created_at: ts(created),
        last_used_at: ts(created),
        expires_at: ts(created + lifetime),
        revoked_at: None,
        ip: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Ä".into()),
    }
}

async fn sessions_and_refresh_tokens(store: &dyn Store) {
    let alice = new_user(store, "sessions-alice@example.com", 4000).await;
    let bob = new_user(store, "sessions-bob@example.com", 4000).await;
    let changes_before = store.latest_change().await.unwrap();
    let day = 86_400_000;

    // Creation and lookup.
    let s1 = session(&alice, 4100, day);
    let mut s2 = session(&alice, 4200, day);
    s2.ip = None;
    s2.user_agent = None;
    let s_old = session(&alice, 4000, 50); // expires at 4050
    let s_bob = session(&bob, 4300, day);
    store.insert_session(&s1, &digest("s1-r0")).await.unwrap();
    store.insert_session(&s2, &digest("s2-r0")).await.unwrap();
    store
        .insert_session(&s_old, &digest("old-r0"))
        .await
        .unwrap();
    store
        .insert_session(&s_bob, &digest("bob-r0"))
        .await
        .unwrap();
    assert_same_session(&store.session_by_id(&s1.id).await.unwrap().unwrap(), &s1);
    assert_same_session(&store.session_by_id(&s2.id).await.unwrap().unwrap(), &s2);
    assert!(
        store
            .session_by_id(&SessionId::new())
            .await
            .unwrap()
            .is_none()
    );

    // Refusals leave nothing behind.
    let mut dup_id = session(&alice, 4400, day);
    dup_id.id = s1.id.clone();
    assert_conflict(
        store.insert_session(&dup_id, &digest("dup-id")).await,
        "session id",
    );
    let dup_token = session(&alice, 4400, day);
    assert_conflict(
        store.insert_session(&dup_token, &digest("s1-r0")).await,
        "refresh token",
    );
    assert!(store.session_by_id(&dup_token.id).await.unwrap().is_none());
    let ghost = user("ghost-session@example.com", "Ghost", 0);
    let orphan = session(&ghost, 4400, day);
    let err = store
        .insert_session(&orphan, &digest("orphan"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");

    // Active sessions: the user's own, live ones, newest first.
    let now = 5000;
    assert_eq!(
        ids(&store.active_sessions(&alice.id, ts(now)).await.unwrap()),
        [s2.id.clone(), s1.id.clone()]
    );
    // At its exact expiry a session is no longer active.
    assert_eq!(
        ids(&store.active_sessions(&alice.id, ts(4049)).await.unwrap()),
        [s2.id.clone(), s1.id.clone(), s_old.id.clone()]
    );
    assert_eq!(
        store
            .active_sessions(&alice.id, ts(4050))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ids(&store.active_sessions(&bob.id, ts(now)).await.unwrap()),
        std::slice::from_ref(&s_bob.id)
    );
    assert!(
        store
            .active_sessions(&UserId::new(), ts(now))
            .await
            .unwrap()
            .is_empty()
    );

    // Rotation.
    assert!(matches!(
        store
            .rotate_refresh(&digest("unknown"), &digest("x"), ts(now))
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    ));
    let RefreshOutcome::Rotated(got) = store
        .rotate_refresh(&digest("s1-r0"), &digest("s1-r1"), ts(now))
        .await
        .unwrap()
    else {
        panic!("expected Rotated")
    };
    let mut expected = s1.clone();
    expected.last_used_at = ts(now);
    assert_same_session(&got, &expected);
    assert_same_session(
        &store.session_by_id(&s1.id).await.unwrap().unwrap(),
        &expected,
    );
    let RefreshOutcome::Rotated(got) = store
        .rotate_refresh(&digest("s1-r1"), &digest("s1-r2"), ts(now + 1))
        .await
        .unwrap()
    else {
        panic!("expected Rotated")
    };
    assert_eq!(got.id, s1.id);
    assert_eq!(got.last_used_at, ts(now + 1));
    // A new token that already exists fails the rotation and spends nothing.
    assert_conflict(
        store
            .rotate_refresh(&digest("s1-r2"), &digest("s2-r0"), ts(now + 2))
            .await,
        "refresh token",
    );
    assert_eq!(
        store.latest_change().await.unwrap(),
        changes_before,
        "no change logged yet"
    );

    // Reuse of a spent token revokes the session and logs it; its live token then dies too.
    let RefreshOutcome::Reused(reused) = store
        .rotate_refresh(&digest("s1-r0"), &digest("s1-evil"), ts(now + 3))
        .await
        .unwrap()
    else {
        panic!("expected Reused")
    };
    assert_eq!(reused, s1.id);
    let revoked = store.session_by_id(&s1.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(ts(now + 3)));
    assert_eq!(revoked.last_used_at, ts(now + 1));
    let log = store.changes_after(changes_before, 100).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].kind, "session.revoked");
    assert_eq!(log[0].subject, s1.id.to_string());
    assert_eq!(log[0].at, ts(now + 3));
    for token in ["s1-r2", "s1-r1", "s1-r0"] {
        assert!(
            matches!(
                store
                    .rotate_refresh(&digest(token), &digest("s1-late"), ts(now + 4))
                    .await
                    .unwrap(),
                RefreshOutcome::Dead
            ),
            "{token}"
        );
    }
    // The refused rotations stored nothing.
    assert!(matches!(
        store
            .rotate_refresh(&digest("s1-evil"), &digest("y"), ts(now + 4))
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    ));
    assert_eq!(store.changes_after(changes_before, 100).await.unwrap(), log);

    // An expired session is dead, from its exact expiry on, and is not revoked by it.
    assert!(matches!(
        store
            .rotate_refresh(&digest("old-r0"), &digest("old-r1"), ts(4050))
            .await
            .unwrap(),
        RefreshOutcome::Dead
    ));
    assert!(matches!(
        store
            .rotate_refresh(&digest("old-r1"), &digest("z"), ts(4050))
            .await
            .unwrap(),
        RefreshOutcome::Unknown
    ));
    assert_eq!(
        store
            .session_by_id(&s_old.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    assert!(matches!(
        store
            .rotate_refresh(&digest("old-r0"), &digest("old-r1"), ts(4049))
            .await
            .unwrap(),
        RefreshOutcome::Rotated(_)
    ));

    // revoke_session: only the owner's, only once.
    assert!(
        !store
            .revoke_session(&bob.id, &s2.id, ts(now + 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &s_bob.id, ts(now + 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &SessionId::new(), ts(now + 10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &s1.id, ts(now + 10))
            .await
            .unwrap(),
        "already revoked"
    );
    assert_eq!(store.changes_after(changes_before, 100).await.unwrap(), log);
    assert!(
        store
            .revoke_session(&alice.id, &s2.id, ts(now + 11))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&alice.id, &s2.id, ts(now + 12))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .session_by_id(&s2.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(ts(now + 11))
    );
    assert!(matches!(
        store
            .rotate_refresh(&digest("s2-r0"), &digest("s2-r1"), ts(now + 12))
            .await
            .unwrap(),
        RefreshOutcome::Dead
    ));
    let log = store.changes_after(changes_before, 100).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[1].kind.as_str(), log[1].subject.as_str(), log[1].at),
        ("session.revoked", s2.id.as_str(), ts(now + 11))
    );
    assert!(
        store
            .active_sessions(&alice.id, ts(now))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.active_sessions(&bob.id, ts(now)).await.unwrap().len(),
        1
    );

    // revoke_user_sessions: every session not yet revoked, expired ones included (their last
    // access tokens may still be valid), one change each; bob's are untouched.
    let s3 = session(&alice, 5100, day);
    let s4 = session(&alice, 5200, day);
    store.insert_session(&s3, &digest("s3-r0")).await.unwrap();
    store.insert_session(&s4, &digest("s4-r0")).await.unwrap();
    let mut ended = store
        .revoke_user_sessions(&alice.id, ts(now + 300))
        .await
        .unwrap();
    ended.sort();
    let mut want = vec![s_old.id.clone(), s3.id.clone(), s4.id.clone()];
    want.sort();
    assert_eq!(ended, want);
    let log = store.changes_after(changes_before, 100).await.unwrap();
    assert_eq!(log.len(), 5);
    let mut subjects: Vec<&str> = log[2..].iter().map(|c| c.subject.as_str()).collect();
    subjects.sort_unstable();
    let want_subjects: Vec<&str> = want.iter().map(SessionId::as_str).collect();
    assert_eq!(subjects, want_subjects);
    assert!(
        log[2..]
            .iter()
            .all(|c| c.kind == "session.revoked" && c.at == ts(now + 300))
    );
    assert!(
        store
            .revoke_user_sessions(&alice.id, ts(now + 400))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .revoke_user_sessions(&UserId::new(), ts(now + 400))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest_change().await.unwrap(), log[4].seq);
    assert!(matches!(
        store
            .rotate_refresh(&digest("s3-r0"), &digest("s3-r1"), ts(now + 400))
            .await
            .unwrap(),
        RefreshOutcome::Dead
    ));
    assert_eq!(
        ids(&store.active_sessions(&bob.id, ts(now)).await.unwrap()),
        std::slice::from_ref(&s_bob.id)
    );

    // sessions_revoked_since: at or after the instant.
    let since = |at: i64| async move {
        let mut got = store.sessions_revoked_since(ts(at)).await.unwrap();
        got.sort();
        got
    };
    let mut all = vec![
        s1.id.clone(),
        s2.id.clone(),
        s_old.id.clone(),
        s3.id.clone(),
        s4.id.clone(),
    ];
    all.sort();
    assert_eq!(since(now + 3).await, all);
    let mut later = vec![
        s2.id.clone(),
        s_old.id.clone(),
        s3.id.clone(),
        s4.id.clone(),
    ];
    later.sort();
    assert_eq!(since(now + 4).await, later);
    assert_eq!(since(now + 11).await, later);
    assert_eq!(since(now + 12).await, want);
    assert!(since(now + 301).await.is_empty());
}

/// Two rotations of one token at once: one wins; the other presents a spent token, which is
/// reuse, and the session ends (the contract draws no line between a client's double send and
/// an attacker racing the client).
async fn concurrent_rotations_of_one_token(store: &dyn Store) {
    let u = new_user(store, "rotation-race@example.com", 6000).await;
    for round in 0..5 {
        let s = session(&u, 6000 + round, 86_400_000);
        let old = digest(&format!("race-{round}"));
        store.insert_session(&s, &old).await.unwrap();
        let new_a = digest(&format!("race-{round}-a"));
        let new_b = digest(&format!("race-{round}-b"));
        let outcomes = join_all([
            store.rotate_refresh(&old, &new_a, ts(6100)),
            store.rotate_refresh(&old, &new_b, ts(6100)),
        ])
        .await;
        let outcomes: Vec<RefreshOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
        let rotated = outcomes
            .iter()
            .filter(|o| matches!(o, RefreshOutcome::Rotated(_)))
            .count();
        let reused = outcomes
            .iter()
            .filter(|o| matches!(o, RefreshOutcome::Reused(id) if *id == s.id))
            .count();
        assert_eq!((rotated, reused), (1, 1), "round {round}: {outcomes:?}");
        let got = store.session_by_id(&s.id).await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(ts(6100)));
        // The winner's new token is dead with its session; the loser's was never stored.
        let (winner, loser) = if matches!(outcomes[0], RefreshOutcome::Rotated(_)) {
            (&new_a, &new_b)
        } else {
            (&new_b, &new_a)
        };
        assert!(matches!(
            store
                .rotate_refresh(winner, &digest("after"), ts(6101))
                .await
                .unwrap(),
            RefreshOutcome::Dead
        ));
        assert!(matches!(
            store
                .rotate_refresh(loser, &digest("after"), ts(6101))
                .await
                .unwrap(),
            RefreshOutcome::Unknown
        ));
    }
}

async fn mfa_challenges(store: &dyn Store) {
    let u = new_user(store, "challenge@example.com", 7000).await;
    let (c1, c2) = (digest("challenge-1"), digest("challenge-2"));
    store
        .insert_mfa_challenge(&c1, &u.id, ts(7300))
        .await
        .unwrap();
    store
        .insert_mfa_challenge(&c2, &u.id, ts(7300))
        .await
        .unwrap();
    assert_conflict(
        store.insert_mfa_challenge(&c1, &u.id, ts(9000)).await,
        "mfa challenge",
    );
    let ghost = UserId::new();
    assert!(matches!(
        store
            .insert_mfa_challenge(&digest("ghost-challenge"), &ghost, ts(9000))
            .await,
        Err(StoreError::Other(_))
    ));

    assert_eq!(
        store.mfa_challenge_user(&c1, ts(7299)).await.unwrap(),
        Some(u.id.clone())
    );
    assert_eq!(store.mfa_challenge_user(&c1, ts(7300)).await.unwrap(), None);
    assert_eq!(
        store
            .mfa_challenge_user(&digest("unknown"), ts(7000))
            .await
            .unwrap(),
        None
    );
    // Expired: cannot be spent.
    assert!(!store.consume_mfa_challenge(&c1, ts(7300)).await.unwrap());
    assert!(
        !store
            .consume_mfa_challenge(&digest("unknown"), ts(7000))
            .await
            .unwrap()
    );
    // Live: spent once.
    assert!(store.consume_mfa_challenge(&c2, ts(7100)).await.unwrap());
    assert!(!store.consume_mfa_challenge(&c2, ts(7101)).await.unwrap());
    assert_eq!(store.mfa_challenge_user(&c2, ts(7102)).await.unwrap(), None);
    // Concurrent spends of one challenge: one wins.
    let c3 = digest("challenge-3");
    store
        .insert_mfa_challenge(&c3, &u.id, ts(7300))
        .await
        .unwrap();
    let spent = join_all((0..5).map(|_| store.consume_mfa_challenge(&c3, ts(7200)))).await;
    assert_eq!(
        spent.into_iter().filter(|r| *r.as_ref().unwrap()).count(),
        1
    );
}

async fn password_resets(store: &dyn Store) {
    let u = new_user(store, "reset@example.com", 8000).await;
    let other = new_user(store, "reset-other@example.com", 8000).await;
    let (r1, r2, r3) = (digest("reset-1"), digest("reset-2"), digest("reset-3"));
    store
        .insert_password_reset(&r1, &u.id, ts(8300))
        .await
        .unwrap();
    store
        .insert_password_reset(&r2, &u.id, ts(8300))
        .await
        .unwrap();
    store
        .insert_password_reset(&r3, &other.id, ts(8300))
        .await
        .unwrap();
    assert_conflict(
        store.insert_password_reset(&r1, &other.id, ts(9000)).await,
        "password reset",
    );
    assert!(matches!(
        store
            .insert_password_reset(&digest("ghost-reset"), &UserId::new(), ts(9000))
            .await,
        Err(StoreError::Other(_))
    ));

    assert_eq!(
        store.consume_password_reset(&r1, ts(8100)).await.unwrap(),
        Some(u.id.clone())
    );
    assert_eq!(
        store.consume_password_reset(&r1, ts(8101)).await.unwrap(),
        None
    );
    assert_eq!(
        store.consume_password_reset(&r2, ts(8300)).await.unwrap(),
        None,
        "expired at its expiry"
    );
    assert_eq!(
        store
            .consume_password_reset(&digest("unknown"), ts(8100))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.consume_password_reset(&r3, ts(8299)).await.unwrap(),
        Some(other.id.clone())
    );
}

async fn signing_keys(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    let key = |kid: &str, at: i64| StoredSigningKey {
        kid: kid.to_owned(),
        sealed_private: format!("sealed-{kid}"),
        created_at: ts(at),
    };
    store.insert_signing_key(&key("kid-b", 20)).await.unwrap();
    store.insert_signing_key(&key("kid-a", 10)).await.unwrap();
    store.insert_signing_key(&key("kid-c", 20)).await.unwrap();
    assert_conflict(
        store.insert_signing_key(&key("kid-a", 30)).await,
        "signing key",
    );
    let got = store.signing_keys().await.unwrap();
    let got: Vec<(&str, &str, Timestamp)> = got
        .iter()
        .map(|k| (k.kid.as_str(), k.sealed_private.as_str(), k.created_at))
        .collect();
    assert_eq!(
        got,
        [
            ("kid-a", "sealed-kid-a", ts(10)),
            ("kid-b", "sealed-kid-b", ts(20)),
            ("kid-c", "sealed-kid-c", ts(20)),
        ]
    );
}

fn assert_same_audit(a: &AuditEntry, b: &AuditEntry) {
    assert_eq!(a.id, b.id);
    assert_eq!(a.at, b.at);
    assert_eq!(a.workspace_id, b.workspace_id);
    assert_eq!(a.actor_type, b.actor_type);
    assert_eq!(a.actor_id, b.actor_id);
    assert_eq!(a.action, b.action);
    assert_eq!(a.target, b.target);
    assert_eq!(a.ip, b.ip);
    assert_eq!(a.user_agent, b.user_agent);
    assert_eq!(a.outcome, b.outcome);
}

async fn audit_log(store: &dyn Store) {
    let (w1, w2) = (WorkspaceId::new(), WorkspaceId::new());
    // Ids in increasing order, so that entry i is the i-th oldest whatever the id generator
    // does within one millisecond.
    let mut audit_ids: Vec<AuditId> = (0..8).map(|_| AuditId::new()).collect();
    audit_ids.sort();
    let specs: [(Option<&WorkspaceId>, ActorType, Option<&str>, &str); 8] = [
        (None, ActorType::Anonymous, None, "user.login_failed"),
        (None, ActorType::User, Some("usr_a"), "user.login"),
        (Some(&w1), ActorType::User, Some("usr_a"), "key.create"),
        (Some(&w1), ActorType::Key, Some("key_1"), "key.revoke"),
        (Some(&w2), ActorType::App, Some("app_1"), "key.create"),
        (Some(&w1), ActorType::User, Some("usr_b"), "member.add"),
        (Some(&w1), ActorType::User, Some("usr_a"), "key.create"),
        (None, ActorType::User, Some("usr_a"), "user.login"),
    ];
    let entries: Vec<AuditEntry> = specs
        .iter()
        .zip(audit_ids)
        .enumerate()
        .map(|(i, ((ws, actor_type, actor, action), id))| AuditEntry {
            id,
            at: ts(9000 + 10 * i as i64),
            workspace_id: ws.cloned(),
            actor_type: *actor_type,
            actor_id: actor.map(str::to_owned),
            action: (*action).to_owned(),
            target: (i % 2 == 0).then(|| format!("target-{i}")),
            ip: (i % 3 != 0).then(|| "198.51.100.4".to_owned()),
            user_agent: (i == 2).then(|| "curl/8.5".to_owned()),
            outcome: if i == 0 { "failure" } else { "success" }.to_owned(),
        })
        .collect();
    // Inserted out of order: listing orders by id, not by insertion.
    for i in [3, 0, 7, 1, 5, 2, 6, 4] {
        store.insert_audit(&entries[i]).await.unwrap();
    }
    assert_conflict(store.insert_audit(&entries[0]).await, "audit entry");

    let entries = &entries;
    let list = |filter: AuditFilter, page: Page| async move {
        store
            .list_audit(&filter, &page)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let i = entries.iter().position(|x| x.id == e.id).expect("known id");
                assert_same_audit(&e, &entries[i]);
                i
            })
            .collect::<Vec<usize>>()
    };
    let all = || Page::first(100);

    // No filter: everything, platform entries too, newest first.
    assert_eq!(
        list(AuditFilter::default(), all()).await,
        [7, 6, 5, 4, 3, 2, 1, 0]
    );
    let ws = |w: &WorkspaceId| AuditFilter {
        workspace_id: Some(w.clone()),
        ..AuditFilter::default()
    };
    assert_eq!(list(ws(&w1), all()).await, [6, 5, 3, 2]);
    assert_eq!(list(ws(&w2), all()).await, [4]);
    assert!(list(ws(&WorkspaceId::new()), all()).await.is_empty());

    let action = |a: &str| AuditFilter {
        action: Some(a.to_owned()),
        ..AuditFilter::default()
    };
    assert_eq!(list(action("key.create"), all()).await, [6, 4, 2]);
    assert_eq!(list(action("user.login"), all()).await, [7, 1]);
    assert!(list(action("key"), all()).await.is_empty());

    let actor = AuditFilter {
        actor_id: Some("usr_a".into()),
        ..AuditFilter::default()
    };
    assert_eq!(list(actor, all()).await, [7, 6, 2, 1]);

    // since is inclusive, until exclusive.
    let window = AuditFilter {
        since: Some(ts(9020)),
        until: Some(ts(9060)),
        ..AuditFilter::default()
    };
    assert_eq!(list(window, all()).await, [5, 4, 3, 2]);
    let since = AuditFilter {
        since: Some(ts(9061)),
        ..AuditFilter::default()
    };
    assert_eq!(list(since, all()).await, [7]);
    let until = AuditFilter {
        until: Some(ts(9010)),
        ..AuditFilter::default()
    };
    assert_eq!(list(until, all()).await, [0]);

    // Everything at once.
    let combined = AuditFilter {
        workspace_id: Some(w1.clone()),
        action: Some("key.create".into()),
        actor_id: Some("usr_a".into()),
        since: Some(ts(9000)),
        until: Some(ts(9070)),
    };
    assert_eq!(list(combined.clone(), all()).await, [6, 2]);
    let narrower = AuditFilter {
        until: Some(ts(9060)),
        ..combined
    };
    assert_eq!(list(narrower, all()).await, [2]);

    // Keyset pages, newest first, with and without a filter.
    let mut seen = Vec::new();
    let mut page = Page::first(3);
    let mut sizes = Vec::new();
    loop {
        let got = list(AuditFilter::default(), page.clone()).await;
        sizes.push(got.len());
        let Some(&last) = got.last() else { break };
        page.after = Some(entries[last].id.to_string());
        seen.extend(got);
    }
    assert_eq!(sizes, [3, 3, 2, 0]);
    assert_eq!(seen, [7, 6, 5, 4, 3, 2, 1, 0]);
    let after_6 = Page {
        limit: 2,
        after: Some(entries[6].id.to_string()),
    };
    assert_eq!(list(ws(&w1), after_6.clone()).await, [5, 3]);
    assert_eq!(list(action("user.login"), after_6).await, [1]);
    let after_oldest = Page {
        limit: 10,
        after: Some(entries[0].id.to_string()),
    };
    assert!(list(AuditFilter::default(), after_oldest).await.is_empty());
    assert!(
        list(AuditFilter::default(), Page::first(0))
            .await
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// workspace administration: settings, custom scopes and roles, guarded member changes

/// The change log entries after `before`, as (kind, subject, at).
async fn changes_since(store: &dyn Store, before: i64) -> Vec<(String, String, Timestamp)> {
    store
        .changes_after(before, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.subject, c.at))
        .collect()
}

fn change(kind: &str, subject: impl ToString, at: Timestamp) -> (String, String, Timestamp) {
    (kind.to_owned(), subject.to_string(), at)
}

/// Creates a workspace owned by a new user; returns it with the owner's membership.
async fn new_workspace(store: &dyn Store, tag: &str, at: i64) -> (Workspace, Member) {
    let owner = new_user(store, &format!("{tag}-owner@example.com"), at).await;
    let ws = workspace(tag, at, KeyFormat::default());
    let m = member(&ws, &owner, "owner", at);
    store.create_workspace(&ws, &m).await.unwrap();
    (ws, m)
}

/// Adds a new user to `ws` with `role`.
async fn new_member(store: &dyn Store, ws: &Workspace, email: &str, role: &str, at: i64) -> Member {
    let u = new_user(store, email, at).await;
    let m = member(ws, &u, role, at);
    store.insert_member(&m).await.unwrap();
    m
}

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

fn scope(name: &str, description: &str, dangerous: bool, at: i64) -> StoredScope {
    StoredScope {
        name: name.to_owned(),
        description: description.to_owned(),
        dangerous,
        created_at: ts(at),
    }
}

fn role(ws: &Workspace, name: &str, scopes: &[&str], at: i64) -> CustomRole {
    CustomRole {
        id: RoleId::new(),
        workspace_id: ws.id.clone(),
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created_at: ts(at),
        updated_at: ts(at),
    }
}

async fn workspace_updates_and_listing(store: &dyn Store) {
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
    store.insert_member(&u_in_older).await.unwrap();

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
    assert!(store.update_workspace(&changed).await.unwrap());
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
    assert!(!store.update_workspace(&ghost).await.unwrap());
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

async fn custom_scopes(store: &dyn Store) {
    let (a, _) = new_workspace(store, "scopes-a", 21_000).await;
    let (b, _) = new_workspace(store, "scopes-b", 21_001).await;
    let read = scope("chats:read", "Read chats", false, 21_100);
    let purge = scope("chats:purge", "Delete every chat, for good", true, 21_101);
    let billing = scope("billing:read", "", false, 21_102);
    // Inserted out of order: listed by name.
    for s in [&read, &purge, &billing] {
        store.insert_scope(&a.id, s).await.unwrap();
    }
    assert_eq!(
        store.scopes_of(&a.id).await.unwrap(),
        [billing.clone(), purge.clone(), read.clone()]
    );
    // The same name in another workspace is another scope.
    let read_b = scope("chats:read", "Read B's chats", true, 21_103);
    store.insert_scope(&b.id, &read_b).await.unwrap();
    let only_b = scope("only-b:read", "Only in B", false, 21_104);
    store.insert_scope(&b.id, &only_b).await.unwrap();
    assert_eq!(
        store.scopes_of(&b.id).await.unwrap(),
        [read_b.clone(), only_b.clone()]
    );
    // A duplicate name in one workspace is a conflict, and changes nothing.
    assert_conflict(
        store
            .insert_scope(&a.id, &scope("chats:read", "Other", true, 21_105))
            .await,
        "scope",
    );
    assert_eq!(store.scopes_of(&a.id).await.unwrap()[2], read);
    // A workspace that does not exist has no scopes and takes none.
    let nowhere = WorkspaceId::new();
    let err = store.insert_scope(&nowhere, &read).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.scopes_of(&nowhere).await.unwrap().is_empty());

    // delete_scope: unknown, or of another workspace => false, nothing logged.
    let before = store.latest_change().await.unwrap();
    assert!(
        !store
            .delete_scope(&a.id, "nope:read", ts(21_200))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_scope(&a.id, "only-b:read", ts(21_200))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_scope(&nowhere, "chats:read", ts(21_200))
            .await
            .unwrap()
    );
    assert_eq!(store.latest_change().await.unwrap(), before);
    assert!(
        store
            .delete_scope(&a.id, "chats:read", ts(21_201))
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
            .delete_scope(&a.id, "chats:read", ts(21_202))
            .await
            .unwrap()
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
    // A deleted name can be defined again.
    store.insert_scope(&a.id, &read).await.unwrap();
    assert_eq!(
        store.scopes_of(&a.id).await.unwrap(),
        [billing, purge, read]
    );
}

async fn custom_roles(store: &dyn Store) {
    let (a, _) = new_workspace(store, "roles-a", 22_000).await;
    let (b, _) = new_workspace(store, "roles-b", 22_001).await;
    let support = role(&a, "support", &["keys:read", "members:read"], 22_100);
    let auditor = role(&a, "auditor", &[], 22_101);
    store.insert_role(&support).await.unwrap();
    store.insert_role(&auditor).await.unwrap();
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
    store.insert_role(&support_b).await.unwrap();
    assert_eq!(
        store.roles_of(&b.id).await.unwrap(),
        std::slice::from_ref(&support_b)
    );
    // Duplicates: the name within a workspace, the id anywhere.
    assert_conflict(
        store.insert_role(&role(&a, "support", &[], 22_103)).await,
        "role name",
    );
    let mut same_id = role(&b, "other", &[], 22_104);
    same_id.id = support.id.clone();
    assert_conflict(store.insert_role(&same_id).await, "role id");
    assert_eq!(store.roles_of(&a.id).await.unwrap().len(), 2);
    assert_eq!(store.roles_of(&b.id).await.unwrap().len(), 1);
    // A workspace that does not exist.
    let no_ws = workspace("No roles", 0, KeyFormat::default());
    let err = store
        .insert_role(&role(&no_ws, "ghost", &[], 22_105))
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
    assert!(store.update_role(&helpdesk).await.unwrap());
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
    assert_conflict(store.update_role(&clash).await, "role name");
    assert_eq!(
        store.role_by_id(&a.id, &support.id).await.unwrap(),
        Some(helpdesk.clone())
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
    // Keeping its own name, or taking one used only in another workspace, is fine.
    let mut same = helpdesk.clone();
    same.updated_at = ts(22_202);
    assert!(store.update_role(&same).await.unwrap());
    let mut auditor2 = auditor.clone();
    auditor2.name = "support".into();
    auditor2.updated_at = ts(22_203);
    assert!(store.update_role(&auditor2).await.unwrap());
    assert_eq!(
        store.roles_of(&a.id).await.unwrap(),
        [same.clone(), auditor2.clone()]
    );
    // Unknown, or presented as another workspace's: false, nothing logged.
    let seen = store.latest_change().await.unwrap();
    assert!(
        !store
            .update_role(&role(&a, "nope", &[], 22_204))
            .await
            .unwrap()
    );
    let mut elsewhere = same.clone();
    elsewhere.workspace_id = b.id.clone();
    elsewhere.name = "moved".into();
    assert!(!store.update_role(&elsewhere).await.unwrap());
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
            .delete_role(&a.id, &support.id, ts(22_400))
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
            .set_member_role(&a.id, &m1.id, "viewer", ts(22_401))
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    assert_eq!(
        store
            .delete_role(&a.id, &support.id, ts(22_402))
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .remove_member(&a.id, &m2.id, ts(22_403))
            .await
            .unwrap(),
        OwnerGuarded::Done
    );
    let before = store.latest_change().await.unwrap();
    assert_eq!(
        store
            .delete_role(&a.id, &support.id, ts(22_404))
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
            .delete_role(&a.id, &support.id, ts(22_405))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_role(&a.id, &RoleId::new(), ts(22_405))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_role(&b.id, &auditor.id, ts(22_405))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_role(&WorkspaceId::new(), &auditor.id, ts(22_405))
            .await
            .unwrap(),
        None
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
    assert_eq!(store.roles_of(&a.id).await.unwrap(), [auditor2]);
    assert_eq!(store.roles_of(&b.id).await.unwrap(), [support_b]);
    // A deleted name can be used again.
    let again = role(&a, "helpdesk", &["keys:read"], 22_500);
    store.insert_role(&again).await.unwrap();
    assert_eq!(
        store.role_by_id(&a.id, &again.id).await.unwrap(),
        Some(again)
    );
}

async fn guarded_member_changes(store: &dyn Store) {
    let (ws, alice) = new_workspace(store, "guard", 23_000).await;
    let bob = new_member(store, &ws, "guard-bob@example.com", "member", 23_001).await;
    let (other_ws, carol) = new_workspace(store, "guard-other", 23_002).await;
    let before = store.latest_change().await.unwrap();
    let set = |id: MemberId, role: &'static str, at: i64| {
        let ws = ws.id.clone();
        async move { store.set_member_role(&ws, &id, role, ts(at)).await.unwrap() }
    };
    let remove = |id: MemberId, at: i64| {
        let ws = ws.id.clone();
        async move { store.remove_member(&ws, &id, ts(at)).await.unwrap() }
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
            .set_member_role(&WorkspaceId::new(), &bob.id, "viewer", ts(23_104))
            .await
            .unwrap(),
        OwnerGuarded::NotFound
    );
    assert_eq!(
        store
            .remove_member(&WorkspaceId::new(), &bob.id, ts(23_104))
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
    store.insert_role(&custom).await.unwrap();
    let erin = new_member(store, &ws, "guard-erin@example.com", "viewer", 23_208).await;
    assert_eq!(
        store
            .set_member_role(&ws.id, &erin.id, custom.id.as_str(), ts(23_209))
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
            .set_member_role(&ws.id, &dave.id, custom.id.as_str(), ts(23_210))
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
async fn owner_guard_under_concurrency(store: &dyn Store) {
    let change_owner = |ws: WorkspaceId, id: MemberId, remove: bool, at: Timestamp| async move {
        if remove {
            store.remove_member(&ws, &id, at).await.unwrap()
        } else {
            store.set_member_role(&ws, &id, "admin", at).await.unwrap()
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
async fn owner_guard_across_stores(x: Arc<dyn Store>, y: Arc<dyn Store>) {
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
                        s.remove_member(&ws, &id, ts(at)).await.unwrap()
                    } else {
                        s.set_member_role(&ws, &id, "admin", ts(at)).await.unwrap()
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

async fn delete_workspace_removes_everything(store: &dyn Store) {
    let (doomed, owner) = new_workspace(store, "doomed", 26_000).await;
    let dev_role = role(&doomed, "dev", &["keys:read"], 26_001);
    store.insert_role(&dev_role).await.unwrap();
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
        )
        .await
        .unwrap();
    // The owner is also in a workspace that stays, with a scope and a role of the same names.
    let kept = workspace("kept", 26_010, KeyFormat::default());
    let owner_user = store.user_by_id(&owner.user_id).await.unwrap().unwrap();
    let kept_owner = member(&kept, &owner_user, "owner", 26_010);
    store.create_workspace(&kept, &kept_owner).await.unwrap();
    let kept_scope = scope("chats:read", "Read chats", false, 26_011);
    store.insert_scope(&kept.id, &kept_scope).await.unwrap();
    let kept_role = role(&kept, "dev", &["keys:read"], 26_012);
    store.insert_role(&kept_role).await.unwrap();
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
    };
    store.insert_audit(&audit).await.unwrap();
    let doomed_key = api_key(&doomed, "doomed-key", 26_030);
    store.insert_key(&doomed_key).await.unwrap();
    let kept_key = api_key(&kept, "kept-key", 26_031);
    store.insert_key(&kept_key).await.unwrap();

    let before = store.latest_change().await.unwrap();
    assert!(
        store
            .delete_workspace(&doomed.id, ts(26_100))
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
        .insert_scope(&doomed.id, &scope("x:read", "", false, 26_200))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .insert_role(&role(&doomed, "late", &[], 26_200))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .insert_member(&member(&doomed, &owner_user, "owner", 26_200))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .insert_key(&api_key(&doomed, "doomed-late", 26_200))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    // Deleting it again, or an unknown workspace: false, nothing logged.
    assert!(
        !store
            .delete_workspace(&doomed.id, ts(26_300))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_workspace(&WorkspaceId::new(), ts(26_300))
            .await
            .unwrap()
    );
    assert_eq!(changes_since(store, before).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// API keys

/// A key of `ws` with only the required fields set; its hash is `digest(label)`.
fn api_key(ws: &Workspace, label: &str, at: i64) -> ApiKey {
    let hash = digest(label);
    ApiKey {
        id: KeyId::new(),
        workspace_id: ws.id.clone(),
        name: label.to_owned(),
        prefix: format!("kr_{}", &hash[..4]),
        hash,
        scopes: vec!["keys:read".to_owned()],
        created_at: ts(at),
        created_by: None,
        updated_at: ts(at),
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
    }
}

fn key_ids(keys: &[ApiKey]) -> Vec<KeyId> {
    keys.iter().map(|k| k.id.clone()).collect()
}

/// Every key of `ws` matching `filter` at `now`, read page by page (`limit` per page).
async fn all_keys(
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

fn status_filter(status: KeyStatus) -> KeyFilter {
    KeyFilter {
        status: Some(status),
        external_id: None,
    }
}

async fn keys_insert_and_lookup(store: &dyn Store) {
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
    store.insert_key(&full).await.unwrap();

    // Nothing optional set, no scopes.
    let mut bare = api_key(&ws, "bare", 30_004);
    bare.scopes = Vec::new();
    store.insert_key(&bare).await.unwrap();
    // A JSON null as meta is kept apart from no meta.
    let mut null_meta = api_key(&ws, "null-meta", 30_005);
    null_meta.meta = Some(serde_json::Value::Null);
    null_meta.remaining = Some(0);
    store.insert_key(&null_meta).await.unwrap();

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
    assert_conflict(store.insert_key(&dup_hash).await, "key hash");
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
    assert_conflict(store.insert_key(&dup_id).await, "key id");
    assert!(store.key_by_hash(&dup_id.hash).await.unwrap().is_none());
    // A key of a workspace that does not exist.
    let ghost = Workspace {
        id: WorkspaceId::new(),
        ..ws.clone()
    };
    let err = store
        .insert_key(&api_key(&ghost, "ghost", 30_011))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(store.key_by_hash(&digest("ghost")).await.unwrap().is_none());

    // Creating keys announces nothing.
    assert!(changes_since(store, before).await.is_empty());
}

async fn keys_import(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "import", 30_100).await;
    let (other_ws, _) = new_workspace(store, "import-other", 30_100).await;
    let before = store.latest_change().await.unwrap();
    let existing = api_key(&ws, "imp-existing", 30_101);
    store.insert_key(&existing).await.unwrap();

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
    store.insert_keys(&batch).await.unwrap();
    let took = started.elapsed();
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
        store.insert_key(&holder).await.unwrap();
        // Given in reverse: the order of the call does not matter either.
        bad.reverse();
        assert_conflict(store.insert_keys(&bad).await, "key hash");
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
    assert_conflict(store.insert_keys(&twice).await, "key hash");
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
    assert_conflict(store.insert_keys(&same_id).await, "key id");
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
    let err = store.insert_keys(&orphan).await.unwrap_err();
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
    store.insert_keys(&[]).await.unwrap();
    let small = fresh("imp-small", 2);
    store.insert_keys(&small).await.unwrap();
    for k in &small {
        assert_eq!(
            store.key_by_id(&ws.id, &k.id).await.unwrap().as_ref(),
            Some(k)
        );
    }
    assert!(changes_since(store, before).await.is_empty());
}

/// (label, revoked_at, disabled, expires_at, status at the listing's `now`)
type ListCase = (
    &'static str,
    Option<Timestamp>,
    bool,
    Option<Timestamp>,
    KeyStatus,
);

async fn keys_listing(store: &dyn Store) {
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
        store.insert_key(&k).await.unwrap();
        keys.push(k);
    }
    // Keys of another workspace, same external ids, never show.
    for i in 0..3 {
        let mut k = api_key(&other_ws, &format!("list-other-{i}"), 31_001);
        k.external_id = Some(format!("cust-{i}"));
        store.insert_key(&k).await.unwrap();
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

async fn keys_update(store: &dyn Store) {
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

async fn keys_rotate(store: &dyn Store) {
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

async fn keys_credits(store: &dyn Store) {
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
async fn credits_race_across_stores(stores: Vec<Arc<dyn Store>>) {
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

async fn keys_touch(store: &dyn Store) {
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

/// Polls the futures together on this task (the store is borrowed, so no spawning); returns
/// their outputs in the order given.
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
    outputs
        .into_iter()
        .map(|o| o.expect("polled to completion"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SQLite

#[tokio::test]
async fn sqlite_file_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyrail_store::open("", dir.path()).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(dir.path().join("keyrail.db").exists());
    run_suite(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_memory_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyrail_store::open("sqlite::memory:", dir.path())
        .await
        .unwrap();
    assert_eq!(store.backend(), "sqlite");
    run_suite(store.as_ref()).await;
    // Nothing was written to the data directory.
    assert!(!dir.path().join("keyrail.db").exists());
}

#[tokio::test]
async fn sqlite_url_with_path_and_missing_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.db");
    let url = format!("sqlite:{}", file.display());
    let store = keyrail_store::open(&url, &dir.path().join("unused"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(file.exists());

    // The default location creates the data directory when missing.
    let nested = dir.path().join("a").join("b");
    let store = keyrail_store::open("", &nested).await.unwrap();
    store.ping().await.unwrap();
    assert!(nested.join("keyrail.db").exists());
}

#[tokio::test]
async fn sqlite_migrations_are_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(keyrail_store::migrate("", dir.path()).await.unwrap(), 6);
    assert_eq!(keyrail_store::migrate("", dir.path()).await.unwrap(), 0);

    // Open the same file twice (as a server and `keyrail migrate` beside it would).
    let (first, applied) = keyrail_store::open_and_migrate("", dir.path())
        .await
        .unwrap();
    assert_eq!(applied, 0);
    let u = user("persist@example.com", "Persist", 0);
    first.insert_user(&u).await.unwrap();
    let (second, applied) = keyrail_store::open_and_migrate("", dir.path())
        .await
        .unwrap();
    assert_eq!(applied, 0);
    assert_same_user(&second.user_by_id(&u.id).await.unwrap().unwrap(), &u);
    drop(first);
    drop(second);

    let again = keyrail_store::open("", dir.path()).await.unwrap();
    assert_same_user(
        &again
            .user_by_email("persist@example.com")
            .await
            .unwrap()
            .unwrap(),
        &u,
    );
}

#[tokio::test]
async fn sqlite_two_stores_on_one_file_see_each_others_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = keyrail_store::open("", dir.path()).await.unwrap();
    let b = keyrail_store::open("", dir.path()).await.unwrap();
    let u = user("shared@example.com", "Shared", 0);
    a.insert_user(&u).await.unwrap();
    let ws = workspace("Shared", 0, KeyFormat::default());
    b.create_workspace(&ws, &member(&ws, &u, "owner", 0))
        .await
        .unwrap();
    assert!(
        a.set_workspace_status(&ws.id, WorkspaceStatus::Suspended, ts(1))
            .await
            .unwrap()
    );
    assert_eq!(b.changes_after(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_owner_guard_holds_across_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = keyrail_store::open("", dir.path()).await.unwrap();
    let b = keyrail_store::open("", dir.path()).await.unwrap();
    owner_guard_across_stores(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_credits_are_exact_across_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open("", dir.path()).await.unwrap());
    }
    credits_race_across_stores(stores).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn postgres_suite() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    run_suite(store.as_ref()).await;
    // Nothing was written to the data directory.
    assert!(!dir.path().join("keyrail.db").exists());
    drop(store);
    pg.drop_db().await;
}

#[tokio::test]
async fn postgres_migrations_are_applied_once() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        keyrail_store::migrate(&pg.url, dir.path()).await.unwrap(),
        6
    );
    assert_eq!(
        keyrail_store::migrate(&pg.url, dir.path()).await.unwrap(),
        0
    );
    let (a, applied) = keyrail_store::open_and_migrate(&pg.url, dir.path())
        .await
        .unwrap();
    assert_eq!(applied, 0);
    let (b, applied) = keyrail_store::open_and_migrate(&pg.url, dir.path())
        .await
        .unwrap();
    assert_eq!(applied, 0);
    let u = user("pg@example.com", "Pg", 0);
    a.insert_user(&u).await.unwrap();
    assert_same_user(&b.user_by_id(&u.id).await.unwrap().unwrap(), &u);
    drop((a, b));
    pg.drop_db().await;
}

#[tokio::test]
async fn postgres_stores_share_one_ordered_change_log() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
    let b = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
    let u = user("two@example.com", "Two", 0);
    a.insert_user(&u).await.unwrap();
    let ws = workspace("Two", 0, KeyFormat::default());
    a.create_workspace(&ws, &member(&ws, &u, "owner", 0))
        .await
        .unwrap();
    let writer = |s: Arc<dyn Store>, id: WorkspaceId| {
        tokio::spawn(async move {
            for i in 0..10 {
                s.set_workspace_status(&id, WorkspaceStatus::Suspended, ts(i))
                    .await
                    .unwrap();
            }
        })
    };
    let (x, y) = (
        writer(a.clone(), ws.id.clone()),
        writer(b.clone(), ws.id.clone()),
    );
    x.await.unwrap();
    y.await.unwrap();
    let changes = b.changes_after(0, 100).await.unwrap();
    assert_eq!(changes.len(), 20);
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    drop((a, b));
    pg.drop_db().await;
}

#[tokio::test]
async fn postgres_owner_guard_holds_across_stores() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
    let b = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
    owner_guard_across_stores(a.clone(), b.clone()).await;
    drop((a, b));
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_credits_are_exact_across_stores() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open(&pg.url, dir.path()).await.unwrap());
    }
    credits_race_across_stores(stores.clone()).await;
    drop(stores);
    pg.drop_db().await;
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_quickly_and_hides_the_password() {
    let password = "pw-Sup3rSecretValue";
    let url = format!("postgres://postgres:{password}@127.0.0.1:1/x");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = keyrail_store::open(&url, dir.path())
        .await
        .err()
        .expect("must fail");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let StoreError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    for text in [msg.clone(), err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(password), "{text}");
        assert!(!text.contains(&url), "{text}");
    }
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    eprintln!("unreachable PostgreSQL reported as: {err}");

    // `migrate` reports the same way.
    let err = keyrail_store::migrate(&url, dir.path())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if !m.contains(password)),
        "{err:?}"
    );
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "mysql://root:hunter2hunter2@db/x",
        "redis://x",
        "/var/lib/keyrail.db",
    ] {
        let err = keyrail_store::open(url, dir.path()).await.err().unwrap();
        let StoreError::Other(msg) = &err else {
            panic!("{url}: {err:?}")
        };
        assert!(msg.contains("unsupported database_url"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    assert!(
        keyrail_store::describe("mysql://root:hunter2@db/x", Path::new("."))
            .contains("unsupported")
    );
}

// ---------------------------------------------------------------------------------------------
// apps and grants

fn app(owner: &User, profile: &BuilderProfile, tag: &str, at: i64) -> App {
    App {
        client_id: format!("kr_app_{tag}"),
        owner_id: owner.id.clone(),
        builder_profile_id: profile.id.clone(),
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

fn grant(app: &App, m: &Member, scopes: &[&str], shared: bool, at: i64) -> Grant {
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

async fn grant_ids(store: &dyn Store, ws: &WorkspaceId, filter: &GrantFilter) -> Vec<GrantId> {
    store
        .list_grants(ws, filter, &Page::first(200))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.grant.id)
        .collect()
}

async fn apps_and_grants(store: &dyn Store) {
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
    store.insert_app(&a).await.unwrap();
    store.insert_app(&b).await.unwrap();
    assert_conflict(store.insert_app(&a).await, "app client id");
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
    assert!(store.update_app(&changed).await.unwrap());
    let got = store.app_by_client_id(&a.client_id).await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.active), ("renamed", false));
    assert_eq!(got.workspace_restrictions, None);
    assert_eq!(got.sealed_secret, "v1.sealed-aaaa");
    assert_eq!(
        store
            .set_app_secret(&a.client_id, "v1.new", ts(9_011))
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .set_app_secret("kr_app_none", "v1.x", ts(9_011))
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
        store.insert_grant(g).await.unwrap();
    }
    assert_conflict(
        store
            .insert_grant(&grant(&a, &m2, &["workspace:read"], true, 9_025))
            .await,
        "shared grant",
    );
    assert_conflict(
        store
            .insert_grant(&grant(&a, &m2, &["members:read"], false, 9_025))
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
    assert!(!store.delete_grant(&other_ws.id, &shared.id).await.unwrap());
    assert!(store.delete_grant(&ws.id, &shared.id).await.unwrap());
    assert!(!store.delete_grant(&ws.id, &shared.id).await.unwrap());
    assert!(store.grant_by_id(&shared.id).await.unwrap().is_none());
    assert!(
        store
            .delete_member(&ws.id, &m2.id, ts(9_030))
            .await
            .unwrap()
    );
    assert_eq!(grant_ids(store, &ws.id, &all).await, [personal.id]);
    assert!(store.delete_app(&a.client_id).await.unwrap());
    assert!(!store.delete_app(&a.client_id).await.unwrap());
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

/// Of concurrent rotations of one key, exactly one writes: one replacement exists, the old key
/// names it, and the others' replacements were never stored.
async fn concurrent_rotations_of_one_key(store: &dyn Store) {
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

/// Every format a workspace has had stays known (a node starting up must know the shape of keys
/// made before a format change); each is listed once.
async fn key_format_history(store: &dyn Store) {
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
    assert!(store.update_workspace(&ws).await.unwrap());
    // Renaming keeps the format: nothing new.
    ws.name = "formats renamed".into();
    assert!(store.update_workspace(&ws).await.unwrap());
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
    assert!(!store.update_workspace(&ghost).await.unwrap());
    assert!(
        !store
            .key_formats()
            .await
            .unwrap()
            .contains(&ghost.key_format)
    );
}
