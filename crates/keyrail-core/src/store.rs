//! What the domain needs from persistence. `keyrail-store` implements it for SQLite and
//! PostgreSQL from one body of SQL.

use async_trait::async_trait;

use crate::id::{MemberId, UserId, WorkspaceId};
use crate::model::{Change, Member, MemberView, Page, User, Workspace, WorkspaceStatus};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; names what collided (e.g. "user email").
    #[error("{0} already exists")]
    Conflict(String),
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Answers when the database answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the pool, letting connections finish cleanly (SQLite checkpoints its log).
    async fn close(&self);

    // users
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// `email` must already be normalised.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>>;

    // workspaces
    /// Creates the workspace and its first member (the owner) in one transaction.
    async fn create_workspace(&self, ws: &Workspace, owner: &Member) -> StoreResult<()>;
    async fn workspace_by_id(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// The workspaces the user is a member of, oldest first.
    async fn workspaces_of_user(&self, user: &UserId) -> StoreResult<Vec<Workspace>>;
    /// Sets the status and appends `workspace.status` to the change log, atomically. `false`
    /// when no such workspace exists.
    async fn set_workspace_status(
        &self,
        id: &WorkspaceId,
        status: WorkspaceStatus,
        at: Timestamp,
    ) -> StoreResult<bool>;

    // members
    async fn insert_member(&self, member: &Member) -> StoreResult<()>;
    async fn member_by_id(&self, ws: &WorkspaceId, id: &MemberId) -> StoreResult<Option<Member>>;
    async fn member_of(&self, ws: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>>;
    async fn list_members(&self, ws: &WorkspaceId, page: &Page) -> StoreResult<Vec<MemberView>>;
    /// Removes the member and appends `member.removed` to the change log, atomically.
    async fn delete_member(
        &self,
        ws: &WorkspaceId,
        id: &MemberId,
        at: Timestamp,
    ) -> StoreResult<bool>;

    // change log
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Change>>;
    /// The highest `seq` written so far (0 when empty).
    async fn latest_change(&self) -> StoreResult<i64>;
}
