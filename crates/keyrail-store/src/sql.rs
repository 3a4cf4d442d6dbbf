//! The `Store` implementation, written once and expanded for each backend.
//!
//! Every statement below is shared text: `$n` placeholders, `RETURNING` and `ON CONFLICT` mean
//! the same on SQLite and PostgreSQL. The only backend-specific statement is the lock that
//! serialises writers of the change log on PostgreSQL (SQLite has a single writer anyway).

use std::fmt;

use async_trait::async_trait;
use keyrail_core::id::{MemberId, UserId, WorkspaceId};
use keyrail_core::model::{
    Change, KeyFormat, Member, MemberView, Page, User, Workspace, WorkspaceStatus,
};
use keyrail_core::secret::Secret;
use keyrail_core::store::{Store, StoreError, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::error::{map_err, map_migrate_error};

pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Taken inside a transaction right before it appends to `changes`, and held until it commits:
/// with concurrent writers, a `seq` is then only allocated after every smaller one is committed,
/// so a poller that has seen `seq = n` will never later find a new entry below `n`.
const PG_CHANGES_LOCK: &str = "SELECT pg_advisory_xact_lock(7250113001)";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    name: String,
    password_hash: String,
    mfa_enabled: bool,
    superuser: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: UserId::from_trusted(r.id),
            email: r.email,
            name: r.name,
            password_hash: Secret::new(r.password_hash),
            mfa_enabled: r.mfa_enabled,
            superuser: r.superuser,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    id: String,
    name: String,
    status: String,
    key_format: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<WorkspaceRow> for Workspace {
    type Error = StoreError;

    fn try_from(r: WorkspaceRow) -> Result<Self, StoreError> {
        let status = WorkspaceStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Other(format!(
                "workspace {} has an unknown status {:?}",
                r.id, r.status
            ))
        })?;
        let key_format: KeyFormat = serde_json::from_str(&r.key_format).map_err(|e| {
            StoreError::Other(format!(
                "workspace {} has an unreadable key_format: {e}",
                r.id
            ))
        })?;
        Ok(Workspace {
            id: WorkspaceId::from_trusted(r.id),
            name: r.name,
            status,
            key_format,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

fn workspaces(rows: Vec<WorkspaceRow>) -> StoreResult<Vec<Workspace>> {
    rows.into_iter().map(Workspace::try_from).collect()
}

fn key_format_json(f: &KeyFormat) -> StoreResult<String> {
    serde_json::to_string(f).map_err(|e| StoreError::Other(format!("encoding key_format: {e}")))
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    id: String,
    workspace_id: String,
    user_id: String,
    role: String,
    created_at: i64,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Member {
            id: MemberId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            user_id: UserId::from_trusted(r.user_id),
            role: r.role,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct MemberViewRow {
    #[sqlx(flatten)]
    member: MemberRow,
    email: String,
    name: String,
}

impl From<MemberViewRow> for MemberView {
    fn from(r: MemberViewRow) -> Self {
        MemberView {
            member: r.member.into(),
            email: r.email,
            name: r.name,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    seq: i64,
    at: i64,
    kind: String,
    subject: String,
}

impl From<ChangeRow> for Change {
    fn from(r: ChangeRow) -> Self {
        Change {
            seq: r.seq,
            at: Timestamp::from_millis(r.at),
            kind: r.kind,
            subject: r.subject,
        }
    }
}

/// Keyset pagination bounds: ids are never empty, so `id > ''` is "from the start".
fn page_bounds(page: &Page) -> (&str, i64) {
    (page.after.as_deref().unwrap_or(""), i64::from(page.limit))
}

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

/// Expands the one body of SQL for a backend: `$store` wraps a pool in field `pool`;
/// `$changes_lock` is an optional statement run before appending to `changes`.
macro_rules! sql_store {
    ($store:ident, $pool:ty, $backend:literal, $migrator:expr, $changes_lock:expr) => {
        impl $store {
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

            async fn insert_user(&self, user: &User) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users
                         (id, email, name, password_hash, mfa_enabled, superuser,
                          created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(user.id.as_str())
                .bind(user.email.as_str())
                .bind(user.name.as_str())
                .bind(user.password_hash.expose())
                .bind(user.mfa_enabled)
                .bind(user.superuser)
                .bind(user.created_at.millis())
                .bind(user.updated_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(User::from))
            }

            async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(User::from))
            }

            async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(User::from).collect())
            }

            async fn create_workspace(&self, ws: &Workspace, owner: &Member) -> StoreResult<()> {
                if owner.workspace_id != ws.id {
                    return Err(StoreError::Other(
                        "the owner member belongs to another workspace".into(),
                    ));
                }
                let key_format = key_format_json(&ws.key_format)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO workspaces (id, name, status, key_format, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(ws.id.as_str())
                .bind(ws.name.as_str())
                .bind(ws.status.as_str())
                .bind(key_format)
                .bind(ws.created_at.millis())
                .bind(ws.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO members (id, workspace_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(owner.id.as_str())
                .bind(owner.workspace_id.as_str())
                .bind(owner.user_id.as_str())
                .bind(owner.role.as_str())
                .bind(owner.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn workspace_by_id(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
                let row: Option<WorkspaceRow> = sqlx::query_as(
                    "SELECT id, name, status, key_format, created_at, updated_at
                     FROM workspaces WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(Workspace::try_from).transpose()
            }

            async fn workspaces_of_user(&self, user: &UserId) -> StoreResult<Vec<Workspace>> {
                let rows: Vec<WorkspaceRow> = sqlx::query_as(
                    "SELECT w.id, w.name, w.status, w.key_format, w.created_at, w.updated_at
                     FROM workspaces w JOIN members m ON m.workspace_id = w.id
                     WHERE m.user_id = $1
                     ORDER BY w.created_at, w.id",
                )
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                workspaces(rows)
            }

            async fn set_workspace_status(
                &self,
                id: &WorkspaceId,
                status: WorkspaceStatus,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated =
                    sqlx::query("UPDATE workspaces SET status = $1, updated_at = $2 WHERE id = $3")
                        .bind(status.as_str())
                        .bind(at.millis())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                if updated == 0 {
                    // Dropping the transaction rolls it back.
                    return Ok(false);
                }
                let lock: Option<&'static str> = $changes_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut *tx).await.map_err(map_err)?;
                }
                sqlx::query("INSERT INTO changes (at, kind, subject) VALUES ($1, $2, $3)")
                    .bind(at.millis())
                    .bind("workspace.status")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn insert_member(&self, member: &Member) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO members (id, workspace_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(member.id.as_str())
                .bind(member.workspace_id.as_str())
                .bind(member.user_id.as_str())
                .bind(member.role.as_str())
                .bind(member.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn member_by_id(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
            ) -> StoreResult<Option<Member>> {
                let row: Option<MemberRow> = sqlx::query_as(
                    "SELECT id, workspace_id, user_id, role, created_at
                     FROM members WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Member::from))
            }

            async fn member_of(
                &self,
                ws: &WorkspaceId,
                user: &UserId,
            ) -> StoreResult<Option<Member>> {
                let row: Option<MemberRow> = sqlx::query_as(
                    "SELECT id, workspace_id, user_id, role, created_at
                     FROM members WHERE workspace_id = $1 AND user_id = $2",
                )
                .bind(ws.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Member::from))
            }

            async fn list_members(
                &self,
                ws: &WorkspaceId,
                page: &Page,
            ) -> StoreResult<Vec<MemberView>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<MemberViewRow> = sqlx::query_as(
                    "SELECT m.id, m.workspace_id, m.user_id, m.role, m.created_at,
                            u.email, u.name
                     FROM members m JOIN users u ON u.id = m.user_id
                     WHERE m.workspace_id = $1 AND m.id > $2
                     ORDER BY m.id LIMIT $3",
                )
                .bind(ws.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(MemberView::from).collect())
            }

            async fn delete_member(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let deleted =
                    sqlx::query("DELETE FROM members WHERE id = $1 AND workspace_id = $2")
                        .bind(id.as_str())
                        .bind(ws.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                let lock: Option<&'static str> = $changes_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut *tx).await.map_err(map_err)?;
                }
                sqlx::query("INSERT INTO changes (at, kind, subject) VALUES ($1, $2, $3)")
                    .bind(at.millis())
                    .bind("member.removed")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Change>> {
                let rows: Vec<ChangeRow> = sqlx::query_as(
                    "SELECT seq, at, kind, subject FROM changes
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Change::from).collect())
            }

            async fn latest_change(&self) -> StoreResult<i64> {
                let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(seq)
            }
        }
    };
}

sql_store!(SqliteStore, SqlitePool, "sqlite", SQLITE_MIGRATOR, None);
sql_store!(
    PgStore,
    PgPool,
    "postgres",
    POSTGRES_MIGRATOR,
    Some(PG_CHANGES_LOCK)
);
