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

/// A JSON array of scope names as stored (keys, grants and roles store `serde_json`'s compact
/// form of a set of distinct names) with one name taken out, in SQL on `scopes`, the same on
/// both backends: `$2`, `$3` and `$4` are [`scope_patterns`] of the name. The closing quote is
/// part of every pattern, so `"chats:read"` never matches inside `"chats:reader"`.
macro_rules! without_scope {
    () => {
        "replace(replace(replace(scopes, $2, '[]'), $3, '['), $4, '')"
    };
}
pub(super) use without_scope;

/// What [`without_scope!`] replaces: the name as the only element (`["n"]`), as the first of
/// several (`["n",`) and as a later one (`,"n"`).
pub(super) fn scope_patterns(name: &str) -> StoreResult<[String; 3]> {
    let quoted = serde_json::to_string(name)
        .map_err(|e| StoreError::Other(format!("encoding a scope name: {e}")))?;
    Ok([
        format!("[{quoted}]"),
        format!("[{quoted},"),
        format!(",{quoted}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the SQL of [`without_scope!`] does, in Rust (`str::replacen` with one match per
    /// name, as the arrays hold each name once).
    fn without(stored: &str, name: &str) -> String {
        let [only, first, later] = scope_patterns(name).unwrap();
        stored
            .replace(&only, "[]")
            .replace(&first, "[")
            .replace(&later, "")
    }

    #[test]
    fn a_scope_comes_off_any_position_and_nothing_else_does() {
        let json = |names: &[&str]| serde_json::to_string(names).unwrap();
        let n = "chats:read";
        for (before, after) in [
            (vec![n], vec![]),
            (vec![n, "keys:read"], vec!["keys:read"]),
            (vec!["keys:read", n], vec!["keys:read"]),
            (vec!["a:b", n, "c:d"], vec!["a:b", "c:d"]),
            (
                vec!["chats:reader", "x:chats:read"],
                vec!["chats:reader", "x:chats:read"],
            ),
            (vec![], vec![]),
        ] {
            assert_eq!(without(&json(&before), n), json(&after), "{before:?}");
        }
    }
}
