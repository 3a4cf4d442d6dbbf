//! One store test suite, run against SQLite (file and in-memory) and PostgreSQL.
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test makes its own database and drops it. Without PostgreSQL those tests print
//! `SKIPPED: ...` and pass, unless `CI` is set, where they fail.
//!
//! The checks are grouped by resource, one module each; [`run_suite`] runs them all, in one
//! order, against each backend.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyrail_core::id::WorkspaceId;
use keyrail_core::model::{KeyFormat, WorkspaceStatus};
use keyrail_core::{Store, StoreError};
use keyrail_store::testing::TempPostgres;

use fixtures::{assert_same_user, entry, member, ts, user, workspace};

mod apps;
mod audit;
mod audited;
mod changes;
mod cleanup;
mod fixtures;
mod identity;
mod key_updates;
mod keys;
mod members;
mod request_log;
mod roles;
mod sessions;
mod webhooks;
mod workspaces;

// ---------------------------------------------------------------------------------------------
// the suite

/// Runs every check against a store with a freshly migrated, empty database.
async fn run_suite(store: &dyn Store) {
    store.ping().await.unwrap();
    // First: it lists the whole audit log, which the changes below add entries to.
    audit::audit_log(store).await;
    changes::empty_change_log(store).await;
    identity::users(store).await;
    identity::list_users_pages(store).await;
    workspaces::workspaces_and_members(store).await;
    changes::concurrent_changes_are_ordered(store).await;
    // The identity checks come last: the ones above count users and changes from zero.
    identity::user_updates(store).await;
    identity::mfa(store).await;
    identity::concurrent_totp_uses_pass_once(store).await;
    identity::login_throttling(store).await;
    identity::concurrent_login_reservations_hold_the_limit(store).await;
    sessions::sessions_and_refresh_tokens(store).await;
    audit::identity_changes_and_their_audit_are_one(store).await;
    audit::a_session_needs_the_password_it_was_checked_against(store).await;
    sessions::concurrent_rotations_of_one_token(store).await;
    sessions::mfa_challenges(store).await;
    sessions::password_resets(store).await;
    sessions::password_changes_spend_tokens(store).await;
    sessions::signing_keys(store).await;
    sessions::concurrent_signing_key_rotations_insert_one(store).await;
    // Workspace administration: counts changes from the latest seq, not from zero.
    workspaces::workspace_updates_and_listing(store).await;
    roles::custom_scopes(store).await;
    roles::deleted_scope_leaves_no_trace(store).await;
    roles::custom_roles(store).await;
    members::guarded_member_changes(store).await;
    members::owner_guard_under_concurrency(store).await;
    workspaces::delete_workspace_removes_everything(store).await;
    // API keys: each check makes its own workspaces and counts changes from the latest seq.
    keys::keys_insert_and_lookup(store).await;
    keys::keys_import(store).await;
    keys::keys_listing(store).await;
    key_updates::keys_update(store).await;
    key_updates::concurrent_changes_of_one_key(store).await;
    key_updates::keys_rotate(store).await;
    key_updates::concurrent_rotations_of_one_key(store).await;
    workspaces::key_format_history(store).await;
    key_updates::keys_credits(store).await;
    key_updates::keys_touch(store).await;
    apps::apps_and_grants(store).await;
    apps::oauth_codes_and_refresh_tokens(store).await;
    // A change and its audit entry, together or not at all.
    audited::workspace_changes_and_their_audit_entries(store).await;
    audited::app_changes_and_their_audit_entries(store).await;
    // Webhooks: the outbox, claims with leases, attempts.
    webhooks::outbox_is_written_with_the_change(store).await;
    webhooks::concurrent_claims_are_disjoint(store).await;
    webhooks::expiring_keys_are_marked_once(store).await;
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
    assert_eq!(keyrail_store::migrate("", dir.path()).await.unwrap(), 10);
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
        a.set_workspace_status(
            &ws.id,
            WorkspaceStatus::Suspended,
            ts(1),
            &entry("workspace.suspend")
        )
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
    members::owner_guard_across_stores(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_credits_are_exact_across_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open("", dir.path()).await.unwrap());
    }
    key_updates::credits_race_across_stores(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_login_reservations_hold_across_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open("", dir.path()).await.unwrap());
    }
    identity::login_reservations_across_stores(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_signing_key_rotations_across_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open("", dir.path()).await.unwrap());
    }
    sessions::signing_key_rotations_across_stores(stores).await;
}

#[tokio::test]
async fn sqlite_request_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = keyrail_store::open("sqlite::memory:", dir.path())
        .await
        .unwrap();
    request_log::request_log(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_cleanup() {
    for check in 0..cleanup::CHECKS {
        let dir = tempfile::tempdir().unwrap();
        let store = keyrail_store::open("sqlite::memory:", dir.path())
            .await
            .unwrap();
        cleanup::run_check(check, store.as_ref()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn postgres_request_log() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
    request_log::request_log(store.as_ref()).await;
    drop(store);
    pg.drop_db().await;
}

#[tokio::test]
async fn postgres_cleanup() {
    for check in 0..cleanup::CHECKS {
        let Some(pg) = TempPostgres::create().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let store = keyrail_store::open(&pg.url, dir.path()).await.unwrap();
        cleanup::run_check(check, store.as_ref()).await;
        drop(store);
        pg.drop_db().await;
    }
}

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
        10
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
                s.set_workspace_status(
                    &id,
                    WorkspaceStatus::Suspended,
                    ts(i),
                    &entry("workspace.suspend"),
                )
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
    members::owner_guard_across_stores(a.clone(), b.clone()).await;
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
    key_updates::credits_race_across_stores(stores.clone()).await;
    drop(stores);
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_login_reservations_hold_across_stores() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open(&pg.url, dir.path()).await.unwrap());
    }
    identity::login_reservations_across_stores(stores.clone()).await;
    drop(stores);
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_signing_key_rotations_across_stores() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(keyrail_store::open(&pg.url, dir.path()).await.unwrap());
    }
    sessions::signing_key_rotations_across_stores(stores.clone()).await;
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
