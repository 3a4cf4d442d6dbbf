//! Building audit entries: who did what to which thing, from where, with what outcome.

use crate::id::{AuditId, WorkspaceId};
use crate::model::{ActorType, AuditEntry};
use crate::time::Timestamp;

/// Where a request came from, for audit entries and per-IP limits.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub fn entry(
    at: Timestamp,
    meta: &RequestMeta,
    workspace_id: Option<WorkspaceId>,
    actor: (ActorType, Option<String>),
    action: &str,
    target: Option<String>,
    success: bool,
) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        at,
        workspace_id,
        actor_type: actor.0,
        actor_id: actor.1,
        action: action.to_owned(),
        target,
        ip: meta.ip.clone(),
        user_agent: meta
            .user_agent
            .as_ref()
            .map(|ua| ua.chars().take(512).collect()),
        outcome: if success { "success" } else { "failure" }.to_owned(),
        event: None,
    }
}
