//! The `Store` implementation, written once and expanded for each backend.
//!
//! One module per resource trait ([`identity`], [`workspaces`], [`keys`], [`apps`], [`audit`],
//! [`changes`], [`webhooks`]), each with its rows, its helpers and a small macro implementing its trait for
//! [`SqliteStore`] and [`PgStore`]. This module holds the two stores, what several resources
//! share (paging, appending to the change log, the locks), migrations, `ping` and `close`.
//!
//! Every statement in these modules is shared text: `$n` placeholders, `RETURNING`, `ON CONFLICT`,
//! CTEs and `UPDATE ... FROM` mean the same on SQLite and PostgreSQL. The only backend-specific
//! statements are three PostgreSQL locks, defined here: the one that serialises writers of the
//! change log, the workspace row lock that serialises changes counting a workspace's members, and
//! the key row locks that order batch updates of keys (SQLite has a single writer anyway). The one
//! other difference is following the change log's announcements (PostgreSQL `LISTEN/NOTIFY`, in
//! [`changes`]).

use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use keyrail_core::id::WorkspaceId;
use keyrail_core::model::{AuditEntry, Page};
use keyrail_core::store::{Store, StoreError, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::AssertSqlSafe;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::error::{map_err, map_migrate_error};

mod apps;
mod audit;
mod changes;
mod identity;
mod keys;
mod request_log;
mod webhooks;
mod workspaces;

pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Taken inside a transaction right before it appends to `changes`, and held until it commits:
/// with concurrent writers, a `seq` is then only allocated after every smaller one is committed,
/// so a poller that has seen `seq = n` will never later find a new entry below `n`. It also
/// queues the announcement on [`PG_CHANGES_CHANNEL`] that other nodes' listeners receive.
const PG_CHANGES_LOCK: &str =
    "SELECT pg_advisory_xact_lock(7250113001), pg_notify('keyrail_changes', '')";

/// The channel on which appends to `changes` are announced when they commit (PostgreSQL sends
/// a transaction's notifications at commit, and one per channel and payload).
const PG_CHANGES_CHANNEL: &str = "keyrail_changes";

/// Taken first by every transaction that writes a workspace's members or counts them (the
/// last-owner guard, a role's holders), and held until it commits: such transactions on one
/// workspace then run one after the other, each seeing what the previous one committed (under
/// READ COMMITTED every later statement takes a fresh snapshot, so it counts after the lock).
/// Without it, two owners demoting each other would each count two owners and both succeed.
const PG_WORKSPACE_LOCK: &str = "SELECT id FROM workspaces WHERE id = $1 FOR UPDATE";

/// Taken by a transaction that updates many keys in batch statements (`touch_keys`, and
/// `delete_scope` taking a name off a workspace's keys) before each batch: locks the keys' rows
/// (`$1`, a JSON array of ids) in id order, so that two such transactions over overlapping keys
/// (two nodes flushing at once) wait for each other instead of locking in the order their joins
/// happen to visit rows and deadlocking.
const PG_KEYS_LOCK: &str = "SELECT id FROM keys
     WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))
     ORDER BY id FOR UPDATE";

/// The SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

// The pools' own Debug output includes the connect options; say nothing about them.
impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgStore")
    }
}

/// The most rows of one insert into `changes` (a power of two; an import appends one entry per
/// key, up to 1000).
const CHANGES_INSERT_MAX_ROWS: usize = 128;

/// `INSERT INTO changes` of 1, 2, 4, ... [`CHANGES_INSERT_MAX_ROWS`] entries of one time (`$1`)
/// and kind (`$2`), the subjects from `$3` on: few shapes, each prepared once per connection.
static INSERT_CHANGES_SQL: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    (0..=CHANGES_INSERT_MAX_ROWS.trailing_zeros())
        .map(|shift| {
            let rows: Vec<String> = (0..1usize << shift)
                .map(|i| format!("($1, $2, ${})", i + 3))
                .collect();
            format!(
                "INSERT INTO changes (at, kind, subject) VALUES {}",
                rows.join(", ")
            )
            .into()
        })
        .collect()
});

/// Splits `n` entries into runs of power-of-two lengths of at most
/// [`CHANGES_INSERT_MAX_ROWS`], longest first.
fn changes_chunks(mut n: usize) -> Vec<usize> {
    let mut chunks = Vec::new();
    while n > 0 {
        let rows = (1usize << n.ilog2()).min(CHANGES_INSERT_MAX_ROWS);
        chunks.push(rows);
        n -= rows;
    }
    chunks
}

/// Keyset pagination bounds: ids are never empty, so `id > ''` is "from the start".
fn page_bounds(page: &Page) -> (&str, i64) {
    (page.after.as_deref().unwrap_or(""), i64::from(page.limit))
}

/// Scope names as the JSON array that roles and grants store.
fn scopes_json(scopes: &[String]) -> StoreResult<String> {
    serde_json::to_string(scopes)
        .map_err(|e| StoreError::Other(format!("encoding role scopes: {e}")))
}

/// Expands, for a backend, what the resource modules share (the locks, appending to the change
/// log), the pool's accessors, `migrate`, and [`Store`] itself: `$store` wraps a pool in field
/// `pool`, whose connections are `$conn`; `$changes_lock` is an optional statement run before
/// appending to `changes`; `$workspace_lock` an optional statement (`$1` = the workspace id) run
/// first by a transaction that writes or counts a workspace's members; `$keys_lock` an optional
/// statement (`$1` = a JSON array of key ids) run before each batch update of keys.
///
/// Every transaction that writes starts with a write statement (after the optional locks, which
/// SQLite does not have): SQLite then waits (busy timeout) for the write lock, where a
/// transaction that read first would fail outright once another connection had written in
/// between. Holding the write lock, it also sees every earlier commit, which is what makes its
/// counting guards atomic.
macro_rules! sql_common {
    (
        $store:ident,
        $pool:ty,
        $conn:ty,
        $backend:literal,
        $migrator:expr,
        $changes_lock:expr,
        $workspace_lock:expr,
        $keys_lock:expr
    ) => {
        impl $store {
            /// Locks the workspace until the caller's transaction ends (PostgreSQL; a no-op on
            /// SQLite, whose first write takes the database's write lock). A missing workspace
            /// locks nothing; the statements that follow then find nothing either.
            async fn lock_workspace(conn: &mut $conn, ws: &WorkspaceId) -> StoreResult<()> {
                let lock: Option<&'static str> = $workspace_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock)
                        .bind(ws.as_str())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                Ok(())
            }

            /// Appends one `kind` entry per subject to the change log, in order, inside the
            /// caller's transaction (on PostgreSQL after taking the change-log lock, held until
            /// commit; so the caller appends last, right before it commits). Many subjects
            /// take a few multi-row statements.
            async fn append_changes(
                conn: &mut $conn,
                at: Timestamp,
                kind: &str,
                subjects: &[&str],
            ) -> StoreResult<()> {
                if subjects.is_empty() {
                    return Ok(());
                }
                let lock: Option<&'static str> = $changes_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                let mut rest = subjects;
                for rows in changes_chunks(subjects.len()) {
                    let (chunk, tail) = rest.split_at(rows);
                    rest = tail;
                    // A power of two: its statement is the log2-th.
                    let sql = Arc::clone(&INSERT_CHANGES_SQL[rows.trailing_zeros() as usize]);
                    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(at.millis()).bind(kind);
                    for subject in chunk {
                        query = query.bind(*subject);
                    }
                    query.execute(&mut *conn).await.map_err(map_err)?;
                }
                Ok(())
            }

            /// Appends an audit entry inside the caller's transaction: a change and its audit
            /// entry commit together or not at all.
            async fn write_audit(conn: &mut $conn, entry: &AuditEntry) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_log
                         (id, at, workspace_id, actor_type, actor_id, action, target, ip,
                          user_agent, outcome)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(entry.id.as_str())
                .bind(entry.at.millis())
                .bind(entry.workspace_id.as_ref().map(WorkspaceId::as_str))
                .bind(entry.actor_type.as_str())
                .bind(entry.actor_id.as_deref())
                .bind(entry.action.as_str())
                .bind(entry.target.as_deref())
                .bind(entry.ip.as_deref())
                .bind(entry.user_agent.as_deref())
                .bind(entry.outcome.as_str())
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
                // The change's webhook event goes to the outbox in the same transaction.
                if let Some(event) = &entry.event {
                    Self::write_event(conn, event, entry.at).await?;
                }
                Ok(())
            }

            /// Runs a batched cleanup `DELETE` whose `$1` is a time (ms) and `$2` the most rows
            /// to delete; says how many went.
            async fn delete_batch(
                &self,
                sql: &'static str,
                at: Timestamp,
                limit: u32,
            ) -> StoreResult<u64> {
                Ok(sqlx::query(sql)
                    .bind(at.millis())
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected())
            }

            /// Locks the rows of these keys in id order until the caller's transaction ends
            /// (PostgreSQL; a no-op on SQLite, whose first write takes the write lock).
            async fn lock_keys(conn: &mut $conn, ids: &[&str]) -> StoreResult<()> {
                let lock: Option<&'static str> = $keys_lock;
                if let Some(lock) = lock {
                    let ids = serde_json::to_string(ids)
                        .map_err(|e| StoreError::Other(format!("encoding key ids: {e}")))?;
                    sqlx::query(lock)
                        .bind(ids)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                Ok(())
            }

            /// Wraps a pool; the schema must already be migrated (see [`Self::migrate`]).
            pub fn from_pool(pool: $pool) -> Self {
                Self { pool }
            }

            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// Applies the embedded migrations that this database has not seen; returns how
            /// many were applied (0 when it was up to date).
            pub async fn migrate(&self) -> StoreResult<usize> {
                let migrator: &Migrator = &$migrator;
                let mut conn = self.pool.acquire().await.map_err(map_err)?;
                // Before the first run the bookkeeping table does not exist: nothing applied.
                let before = conn
                    .list_applied_migrations(&migrator.table_name)
                    .await
                    .map_or(0, |applied| applied.len());
                migrator.run(&mut *conn).await.map_err(map_migrate_error)?;
                let after = conn
                    .list_applied_migrations(&migrator.table_name)
                    .await
                    .map_err(map_migrate_error)?
                    .len();
                Ok(after.saturating_sub(before))
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

// Where the backends differ: SQLite takes none of the three locks, PostgreSQL takes them all.
sql_common!(
    SqliteStore,
    SqlitePool,
    SqliteConnection,
    "sqlite",
    SQLITE_MIGRATOR,
    None,
    None,
    None
);
sql_common!(
    PgStore,
    PgPool,
    PgConnection,
    "postgres",
    POSTGRES_MIGRATOR,
    Some(PG_CHANGES_LOCK),
    Some(PG_WORKSPACE_LOCK),
    Some(PG_KEYS_LOCK)
);

#[cfg(test)]
mod tests {
    use keyrail_core::store::WorkspaceStore;

    use super::*;

    #[test]
    fn change_log_inserts_come_in_few_shapes() {
        assert!(changes_chunks(0).is_empty());
        assert_eq!(changes_chunks(1), [1]);
        assert_eq!(changes_chunks(7), [4, 2, 1]);
        assert_eq!(
            changes_chunks(1000),
            [128, 128, 128, 128, 128, 128, 128, 64, 32, 8]
        );
        assert_eq!(INSERT_CHANGES_SQL.len(), 8);
        assert_eq!(
            &*INSERT_CHANGES_SQL[1],
            "INSERT INTO changes (at, kind, subject) VALUES ($1, $2, $3), ($1, $2, $4)"
        );
        assert!(INSERT_CHANGES_SQL[7].ends_with("($1, $2, $130)"));
    }

    /// An existing deployment upgraded to migration 0006 knows the formats its workspaces use.
    #[tokio::test]
    async fn key_formats_are_backfilled_on_upgrade() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        let before_0006 = Migrator {
            migrations: std::borrow::Cow::Owned(
                SQLITE_MIGRATOR
                    .migrations
                    .iter()
                    .filter(|m| m.version < 6)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        before_0006.run(&pool).await.unwrap();
        let format = r#"{"prefix":"old","alphabet":"hex","length":32,"checksum":false}"#;
        sqlx::query(
            "INSERT INTO workspaces (id, name, status, key_format, created_at, updated_at)
             VALUES ('ws_x', 'x', 'active', $1, 1, 1)",
        )
        .bind(format)
        .execute(&pool)
        .await
        .unwrap();
        SQLITE_MIGRATOR.run(&pool).await.unwrap();
        let store = SqliteStore { pool };
        let known = store.key_formats().await.unwrap();
        assert_eq!(known.len(), 1, "{known:?}");
        assert_eq!(known[0].prefix, "old");
    }
}
