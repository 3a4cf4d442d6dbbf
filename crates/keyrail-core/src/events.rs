//! Events of the domain (`key.created`, `key.revoked`, ...) for webhooks. A use case attaches
//! its event to the audit entry of the change ([`crate::model::AuditEntry::event`]); the store
//! writes it to the webhook outbox in the same transaction as the change and its audit entry, so
//! an event exists exactly when its change committed. Event data never holds a secret.

use serde_json::json;

use crate::id::WorkspaceId;
use crate::time::Timestamp;

/// Every event type a webhook endpoint may subscribe to (API.md, "Webhooks").
pub const EVENT_TYPES: [&str; 9] = [
    "key.created",
    "key.revoked",
    "key.rotated",
    "key.expiring",
    "grant.created",
    "grant.revoked",
    "member.added",
    "member.removed",
    "app.secret_rotated",
];

/// Which workspaces hear an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The workspace where the change happened.
    Workspace(WorkspaceId),
    /// Every workspace holding a grant to this app (by client id) when the change commits:
    /// `app.secret_rotated` concerns the workspaces whose grants the app acts through.
    GrantsOf(String),
}

/// One event, as the store writes it to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// One of [`EVENT_TYPES`].
    pub kind: &'static str,
    pub data: serde_json::Value,
    pub audience: Audience,
}

impl OutboxEvent {
    pub fn new(kind: &'static str, data: serde_json::Value, ws: WorkspaceId) -> Self {
        debug_assert!(EVENT_TYPES.contains(&kind), "{kind}");
        Self {
            kind,
            data,
            audience: Audience::Workspace(ws),
        }
    }

    /// The webhook body (Standard Webhooks): `{type, timestamp, data}`, written once, so every
    /// retry sends the same bytes.
    pub fn body(&self, at: Timestamp) -> String {
        json!({"type": self.kind, "timestamp": at.to_string(), "data": self.data}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_type_timestamp_and_data() {
        let ev = OutboxEvent::new(
            "key.created",
            json!({"key_id": "key_x"}),
            WorkspaceId::new(),
        );
        let body: serde_json::Value =
            serde_json::from_str(&ev.body(Timestamp::from_millis(1_614_265_330_000))).unwrap();
        assert_eq!(body["type"], "key.created");
        assert_eq!(body["timestamp"], "2021-02-25T15:02:10Z");
        assert_eq!(body["data"]["key_id"], "key_x");
    }
}
