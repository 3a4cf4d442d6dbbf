//! Workspaces, their key formats, custom scopes and roles, and their members.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::{MemberId, RoleId, UserId, WorkspaceId};
use crate::model::{
    AuditEntry, CustomRole, KeyFormat, Member, MemberView, OwnerGuarded, Page, StoredScope,
    Workspace, WorkspaceStatus,
};
use crate::time::Timestamp;

/// Workspaces and what is defined inside one: key formats, scopes, roles, members.
///
/// Every audited write takes its audit entry and writes it in the transaction of the change:
/// the two commit together or not at all (a refused audit entry is a refused change). A refused
/// write writes no entry either.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    // workspaces
    /// Creates the workspace and its first member (the owner) in one transaction.
    async fn create_workspace(&self, ws: &Workspace, owner: &Member) -> StoreResult<()>;
    async fn workspace_by_id(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// The workspaces the user is a member of, oldest first.
    async fn workspaces_of_user(&self, user: &UserId) -> StoreResult<Vec<Workspace>>;
    /// Sets the status, appends `workspace.status` to the change log and writes `audit`,
    /// atomically. `false` when no such workspace exists.
    async fn set_workspace_status(
        &self,
        id: &WorkspaceId,
        status: WorkspaceStatus,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    /// Saves `name`, `key_format` and `updated_at` and writes `audit`; `false` when no such
    /// workspace.
    async fn update_workspace(&self, ws: &Workspace, audit: &AuditEntry) -> StoreResult<bool>;
    /// Every key format a workspace has had, current or earlier (recorded by
    /// [`WorkspaceStore::create_workspace`] and [`WorkspaceStore::update_workspace`]).
    async fn key_formats(&self) -> StoreResult<Vec<KeyFormat>>;
    /// Deletes the workspace and everything under it (members, roles, scopes, keys, grants)
    /// appends `workspace.deleted` and writes `audit`, atomically. Audit entries stay, this one
    /// too.
    async fn delete_workspace(
        &self,
        id: &WorkspaceId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// Every workspace, by id (platform administration).
    async fn list_workspaces(&self, page: &Page) -> StoreResult<Vec<Workspace>>;
    /// The user's memberships with their workspaces, oldest workspace first.
    async fn memberships_of_user(&self, user: &UserId) -> StoreResult<Vec<(Workspace, Member)>>;

    // custom scopes of a workspace
    /// A duplicate name in the workspace is a `Conflict`. Writes `audit`.
    async fn insert_scope(
        &self,
        ws: &WorkspaceId,
        scope: &StoredScope,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// By name.
    async fn scopes_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<StoredScope>>;
    /// Deletes the scope and takes its name off every key, grant and custom role of the
    /// workspace (a scope made again under that name gives them nothing), appends
    /// `scope.deleted` (subject `ws_id:name`) and writes `audit`, atomically; `false` when no
    /// such scope.
    async fn delete_scope(
        &self,
        ws: &WorkspaceId,
        name: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    // custom roles
    /// A duplicate name in the workspace is a `Conflict`. Writes `audit`.
    async fn insert_role(&self, role: &CustomRole, audit: &AuditEntry) -> StoreResult<()>;
    /// By name.
    async fn roles_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<CustomRole>>;
    async fn role_by_id(&self, ws: &WorkspaceId, id: &RoleId) -> StoreResult<Option<CustomRole>>;
    /// Saves name, scopes and updated_at, appends `role.updated` (subject the role id) and
    /// writes `audit`; `false` when no such role. A name taken by another role is a
    /// `Conflict`.
    async fn update_role(&self, role: &CustomRole, audit: &AuditEntry) -> StoreResult<bool>;
    /// Deletes the role unless a member holds it; appends `role.deleted` and writes `audit`.
    /// `Ok(None)` when no such role, `Ok(Some(n))` with `n` members holding it (then nothing
    /// was written, n > 0), `Ok(Some(0))` when deleted.
    async fn delete_role(
        &self,
        ws: &WorkspaceId,
        id: &RoleId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<Option<u32>>;

    // members
    /// Changes a member's role (+ `member.updated`, subject the member id, and `audit`).
    /// Refuses to demote the last `owner`; atomic against concurrent demotions and removals,
    /// so a workspace never ends up without an owner.
    async fn set_member_role(
        &self,
        ws: &WorkspaceId,
        id: &MemberId,
        role: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<OwnerGuarded>;
    /// Removes a member (+ `member.removed` and `audit`), refusing to remove the last
    /// `owner`, with the same atomicity.
    async fn remove_member(
        &self,
        ws: &WorkspaceId,
        id: &MemberId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<OwnerGuarded>;
    /// A user who is a member already is a `Conflict` ("member"). Writes `audit`.
    async fn insert_member(&self, member: &Member, audit: &AuditEntry) -> StoreResult<()>;
    async fn member_by_id(&self, ws: &WorkspaceId, id: &MemberId) -> StoreResult<Option<Member>>;
    async fn member_of(&self, ws: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>>;
    async fn list_members(&self, ws: &WorkspaceId, page: &Page) -> StoreResult<Vec<MemberView>>;
}
