//! [`WorkspaceStore`] for both backends: workspaces and their key formats, custom scopes and
//! roles, and members (with the last-owner guard).
//!
//! Every audited write takes its audit entry and writes it (`write_audit`) in its own
//! transaction, after the change and before the change-log append: the change, its
//! announcement and its audit entry commit together or not at all.
//!
//! Where the backends differ: every transaction that writes or counts a workspace's members
//! first takes the workspace lock (`lock_workspace`, PostgreSQL only; SQLite's first write takes
//! the database's write lock), deleting a scope locks the keys it changes in id order
//! (`lock_keys`, PostgreSQL only), and appending to the change log (`append_changes`) takes the
//! change-log lock on PostgreSQL.

use async_trait::async_trait;
use keyrail_core::id::{MemberId, RoleId, UserId, WorkspaceId};
use keyrail_core::model::{
    AuditEntry, CustomRole, KeyFormat, Member, MemberView, OwnerGuarded, Page, StoredScope,
    Workspace, WorkspaceStatus,
};
use keyrail_core::store::{StoreError, StoreResult, WorkspaceStore};
use keyrail_core::time::Timestamp;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::{PgStore, SqliteStore, page_bounds, scopes_json};
use crate::error::map_err;

mod rows;

use rows::{
    MemberRow, MemberViewRow, MembershipRow, RoleRow, ScopeRow, WorkspaceRow, key_format_json,
    owner_role, scope_patterns, without_scope, workspaces,
};

/// Implements [`WorkspaceStore`] for `$store`, whose connections are `$conn` (one body of SQL;
/// the workspace lock it takes is PostgreSQL's only).
macro_rules! workspace_store {
    ($store:ident, $conn:ty) => {
        impl $store {
            /// Adds a key format (its JSON) to those ever used, inside the caller's transaction.
            async fn remember_format(conn: &mut $conn, format_json: &str) -> StoreResult<()> {
                sqlx::query("INSERT INTO key_formats (format) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(format_json)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            /// Why a guarded member write matched nothing, inside its transaction: the member
            /// is not there, or it is the last owner (the only other condition of the write).
            async fn refused(
                conn: &mut $conn,
                ws: &WorkspaceId,
                id: &MemberId,
            ) -> StoreResult<OwnerGuarded> {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM members WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)?;
                Ok(match found {
                    Some(_) => OwnerGuarded::LastOwner,
                    None => OwnerGuarded::NotFound,
                })
            }
        }

        #[async_trait]
        impl WorkspaceStore for $store {
            // workspaces
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
                .bind(key_format.as_str())
                .bind(ws.created_at.millis())
                .bind(ws.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::remember_format(&mut tx, &key_format).await?;
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
                audit: &AuditEntry,
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
                Self::write_audit(&mut tx, audit).await?;
                Self::append_changes(&mut tx, at, "workspace.status", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn update_workspace(
                &self,
                ws: &Workspace,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let key_format = key_format_json(&ws.key_format)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE workspaces SET name = $1, key_format = $2, updated_at = $3
                     WHERE id = $4",
                )
                .bind(ws.name.as_str())
                .bind(key_format.as_str())
                .bind(ws.updated_at.millis())
                .bind(ws.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::remember_format(&mut tx, &key_format).await?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn key_formats(&self) -> StoreResult<Vec<KeyFormat>> {
                let rows: Vec<String> =
                    sqlx::query_scalar("SELECT format FROM key_formats ORDER BY format")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_err)?;
                rows.iter()
                    .map(|f| {
                        serde_json::from_str(f).map_err(|e| {
                            StoreError::Other(format!("unreadable key format {f:?}: {e}"))
                        })
                    })
                    .collect()
            }

            async fn delete_workspace(
                &self,
                id: &WorkspaceId,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Members, roles and scopes go with it: every table under a workspace references
                // it ON DELETE CASCADE (see the migrations). The audit log has no foreign key.
                let deleted = sqlx::query("DELETE FROM workspaces WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                // Written with the deletion, and kept after it (no foreign key).
                Self::write_audit(&mut tx, audit).await?;
                Self::append_changes(&mut tx, at, "workspace.deleted", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn list_workspaces(&self, page: &Page) -> StoreResult<Vec<Workspace>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<WorkspaceRow> = sqlx::query_as(
                    "SELECT id, name, status, key_format, created_at, updated_at
                     FROM workspaces WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                workspaces(rows)
            }

            async fn memberships_of_user(
                &self,
                user: &UserId,
            ) -> StoreResult<Vec<(Workspace, Member)>> {
                let rows: Vec<MembershipRow> = sqlx::query_as(
                    "SELECT w.id, w.name, w.status, w.key_format, w.created_at, w.updated_at,
                            m.id AS member_id, m.user_id AS member_user_id,
                            m.role AS member_role, m.created_at AS member_created_at
                     FROM members m JOIN workspaces w ON w.id = m.workspace_id
                     WHERE m.user_id = $1
                     ORDER BY w.created_at, w.id",
                )
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter()
                    .map(<(Workspace, Member)>::try_from)
                    .collect()
            }

            // custom scopes of a workspace
            async fn insert_scope(
                &self,
                ws: &WorkspaceId,
                scope: &StoredScope,
                audit: &AuditEntry,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO scopes (workspace_id, name, description, dangerous, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ws.as_str())
                .bind(scope.name.as_str())
                .bind(scope.description.as_str())
                .bind(scope.dangerous)
                .bind(scope.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn scopes_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<StoredScope>> {
                let rows: Vec<ScopeRow> = sqlx::query_as(
                    "SELECT name, description, dangerous, created_at FROM scopes
                     WHERE workspace_id = $1 ORDER BY name",
                )
                .bind(ws.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredScope::from).collect())
            }

            async fn delete_scope(
                &self,
                ws: &WorkspaceId,
                name: &str,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let deleted =
                    sqlx::query("DELETE FROM scopes WHERE workspace_id = $1 AND name = $2")
                        .bind(ws.as_str())
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                // The name goes from every key, grant and custom role of the workspace in the
                // same transaction. Only rows that held it are written (the others compare
                // equal to themselves with the name taken out).
                let [only, first, later] = scope_patterns(name)?;
                // The keys to change are locked in id order first (PostgreSQL), the order in
                // which `touch_keys` locks keys too, so the two never wait for each other in a
                // circle.
                let held: Vec<String> = sqlx::query_scalar(concat!(
                    "SELECT id FROM keys WHERE workspace_id = $1 AND scopes <> ",
                    without_scope!(),
                    " ORDER BY id"
                ))
                .bind(ws.as_str())
                .bind(only.as_str())
                .bind(first.as_str())
                .bind(later.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                if !held.is_empty() {
                    let held: Vec<&str> = held.iter().map(String::as_str).collect();
                    Self::lock_keys(&mut tx, &held).await?;
                }
                for sql in [
                    concat!(
                        "UPDATE keys SET scopes = ",
                        without_scope!(),
                        ", updated_at = $5 WHERE workspace_id = $1 AND scopes <> ",
                        without_scope!()
                    ),
                    concat!(
                        "UPDATE roles SET scopes = ",
                        without_scope!(),
                        ", updated_at = $5 WHERE workspace_id = $1 AND scopes <> ",
                        without_scope!()
                    ),
                ] {
                    sqlx::query(sql)
                        .bind(ws.as_str())
                        .bind(only.as_str())
                        .bind(first.as_str())
                        .bind(later.as_str())
                        .bind(at.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                // Grants have no `updated_at`.
                sqlx::query(concat!(
                    "UPDATE grants SET scopes = ",
                    without_scope!(),
                    " WHERE workspace_id = $1 AND scopes <> ",
                    without_scope!()
                ))
                .bind(ws.as_str())
                .bind(only.as_str())
                .bind(first.as_str())
                .bind(later.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                // Every node drops the workspace's cached keys on this entry.
                let subject = format!("{}:{name}", ws.as_str());
                Self::append_changes(&mut tx, at, "scope.deleted", &[&subject]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            // custom roles
            async fn insert_role(&self, role: &CustomRole, audit: &AuditEntry) -> StoreResult<()> {
                let scopes = scopes_json(&role.scopes)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO roles (id, workspace_id, name, scopes, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(role.id.as_str())
                .bind(role.workspace_id.as_str())
                .bind(role.name.as_str())
                .bind(scopes)
                .bind(role.created_at.millis())
                .bind(role.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn roles_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<CustomRole>> {
                let rows: Vec<RoleRow> = sqlx::query_as(
                    "SELECT id, workspace_id, name, scopes, created_at, updated_at FROM roles
                     WHERE workspace_id = $1 ORDER BY name",
                )
                .bind(ws.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(CustomRole::try_from).collect()
            }

            async fn role_by_id(
                &self,
                ws: &WorkspaceId,
                id: &RoleId,
            ) -> StoreResult<Option<CustomRole>> {
                let row: Option<RoleRow> = sqlx::query_as(
                    "SELECT id, workspace_id, name, scopes, created_at, updated_at FROM roles
                     WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(CustomRole::try_from).transpose()
            }

            async fn update_role(
                &self,
                role: &CustomRole,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let scopes = scopes_json(&role.scopes)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // A name taken by another role of the workspace fails here as a Conflict, and
                // the transaction is rolled back as it is dropped.
                let updated = sqlx::query(
                    "UPDATE roles SET name = $1, scopes = $2, updated_at = $3
                     WHERE id = $4 AND workspace_id = $5",
                )
                .bind(role.name.as_str())
                .bind(scopes)
                .bind(role.updated_at.millis())
                .bind(role.id.as_str())
                .bind(role.workspace_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::write_audit(&mut tx, audit).await?;
                Self::append_changes(
                    &mut tx,
                    role.updated_at,
                    "role.updated",
                    &[role.id.as_str()],
                )
                .await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn delete_role(
                &self,
                ws: &WorkspaceId,
                id: &RoleId,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<Option<u32>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Every member write takes the workspace lock (PostgreSQL) or the write lock
                // (SQLite), so no member takes or leaves the role between the check and the
                // delete, nor between the delete and the count below.
                Self::lock_workspace(&mut tx, ws).await?;
                let deleted = sqlx::query(
                    "DELETE FROM roles
                     WHERE id = $1 AND workspace_id = $2
                       AND NOT EXISTS (SELECT 1 FROM members
                                       WHERE workspace_id = $2 AND role = $1)",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if deleted > 0 {
                    Self::write_audit(&mut tx, audit).await?;
                    Self::append_changes(&mut tx, at, "role.deleted", &[id.as_str()]).await?;
                    tx.commit().await.map_err(map_err)?;
                    return Ok(Some(0));
                }
                // Nothing deleted: no such role, or members hold it. Nothing was written.
                let holders: Option<i64> = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM members WHERE workspace_id = $2 AND role = $1)
                     FROM roles WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                match holders {
                    None => Ok(None),
                    Some(n) if n > 0 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
                    // Every member write locks the workspace first, so the holders seen by the
                    // delete are still there.
                    Some(_) => Err(StoreError::Other(format!(
                        "role {id} was held when deleting it, and then by nobody"
                    ))),
                }
            }

            // members
            async fn set_member_role(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
                role: &str,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<OwnerGuarded> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_workspace(&mut tx, ws).await?;
                // One conditional write: an owner keeps the role unless it stays an owner or
                // another owner remains. Counted under the workspace lock (PostgreSQL) or the
                // write lock (SQLite), so two concurrent demotions cannot both pass.
                let updated = sqlx::query(
                    "UPDATE members SET role = $1
                     WHERE id = $2 AND workspace_id = $3
                       AND (role <> $4 OR $1 = $4
                            OR (SELECT COUNT(*) FROM members o
                                WHERE o.workspace_id = $3 AND o.role = $4) > 1)",
                )
                .bind(role)
                .bind(id.as_str())
                .bind(ws.as_str())
                .bind(owner_role())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Self::refused(&mut tx, ws, id).await;
                }
                Self::write_audit(&mut tx, audit).await?;
                Self::append_changes(&mut tx, at, "member.updated", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(OwnerGuarded::Done)
            }

            async fn remove_member(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<OwnerGuarded> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_workspace(&mut tx, ws).await?;
                let deleted = sqlx::query(
                    "DELETE FROM members
                     WHERE id = $1 AND workspace_id = $2
                       AND (role <> $3
                            OR (SELECT COUNT(*) FROM members o
                                WHERE o.workspace_id = $2 AND o.role = $3) > 1)",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .bind(owner_role())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if deleted == 0 {
                    return Self::refused(&mut tx, ws, id).await;
                }
                Self::write_audit(&mut tx, audit).await?;
                Self::append_changes(&mut tx, at, "member.removed", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(OwnerGuarded::Done)
            }

            async fn insert_member(&self, member: &Member, audit: &AuditEntry) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Ordered with delete_role, which counts the holders of a role.
                Self::lock_workspace(&mut tx, &member.workspace_id).await?;
                sqlx::query(
                    "INSERT INTO members (id, workspace_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(member.id.as_str())
                .bind(member.workspace_id.as_str())
                .bind(member.user_id.as_str())
                .bind(member.role.as_str())
                .bind(member.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
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
        }
    };
}

workspace_store!(SqliteStore, SqliteConnection);
workspace_store!(PgStore, PgConnection);
