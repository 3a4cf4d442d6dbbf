//! The rows of the workspace tables, and the JSON they hold.

use keyrail_core::authz::BuiltinRole;
use keyrail_core::id::{MemberId, RoleId, UserId, WorkspaceId};
use keyrail_core::model::{
    CustomRole, KeyFormat, Member, MemberView, StoredScope, Workspace, WorkspaceStatus,
};
use keyrail_core::store::{StoreError, StoreResult};
use keyrail_core::time::Timestamp;

#[derive(sqlx::FromRow)]
pub(super) struct WorkspaceRow {
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

pub(super) fn workspaces(rows: Vec<WorkspaceRow>) -> StoreResult<Vec<Workspace>> {
    rows.into_iter().map(Workspace::try_from).collect()
}

pub(super) fn key_format_json(f: &KeyFormat) -> StoreResult<String> {
    serde_json::to_string(f).map_err(|e| StoreError::Other(format!("encoding key_format: {e}")))
}

#[derive(sqlx::FromRow)]
pub(super) struct MemberRow {
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
pub(super) struct MemberViewRow {
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

/// A membership joined with its workspace (the workspace's columns keep their names).
#[derive(sqlx::FromRow)]
pub(super) struct MembershipRow {
    #[sqlx(flatten)]
    workspace: WorkspaceRow,
    member_id: String,
    member_user_id: String,
    member_role: String,
    member_created_at: i64,
}

impl TryFrom<MembershipRow> for (Workspace, Member) {
    type Error = StoreError;

    fn try_from(r: MembershipRow) -> Result<Self, StoreError> {
        let ws = Workspace::try_from(r.workspace)?;
        let member = Member {
            id: MemberId::from_trusted(r.member_id),
            workspace_id: ws.id.clone(),
            user_id: UserId::from_trusted(r.member_user_id),
            role: r.member_role,
            created_at: Timestamp::from_millis(r.member_created_at),
        };
        Ok((ws, member))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ScopeRow {
    name: String,
    description: String,
    dangerous: bool,
    created_at: i64,
}

impl From<ScopeRow> for StoredScope {
    fn from(r: ScopeRow) -> Self {
        StoredScope {
            name: r.name,
            description: r.description,
            dangerous: r.dangerous,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RoleRow {
    id: String,
    workspace_id: String,
    name: String,
    /// A JSON array of scope names.
    scopes: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RoleRow> for CustomRole {
    type Error = StoreError;

    fn try_from(r: RoleRow) -> Result<Self, StoreError> {
        let scopes: Vec<String> = serde_json::from_str(&r.scopes)
            .map_err(|e| StoreError::Other(format!("role {} has unreadable scopes: {e}", r.id)))?;
        Ok(CustomRole {
            id: RoleId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            name: r.name,
            scopes,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

/// The role the last-owner guard protects.
pub(super) fn owner_role() -> &'static str {
    BuiltinRole::Owner.as_str()
}
