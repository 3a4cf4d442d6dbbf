//! One store test suite, run against SQLite (file and in-memory) and PostgreSQL.
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test makes its own database and drops it. Without PostgreSQL those tests print
//! `SKIPPED: ...` and pass, unless `CI` is set, where they fail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyrail_core::id::{MemberId, UserId, WorkspaceId};
use keyrail_core::model::{
    Alphabet, Change, KeyFormat, Member, Page, User, Workspace, WorkspaceStatus,
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

/// Polls the futures together on this task (the store is borrowed, so no spawning).
async fn join_all<F: std::future::Future<Output = ()>>(futs: impl IntoIterator<Item = F>) {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
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
    assert_eq!(keyrail_store::migrate("", dir.path()).await.unwrap(), 1);
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
        1
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
