//! Events of the domain (`key.created`, `key.revoked`, ...), emitted by the use cases through
//! this trait. The webhook worker will implement it; until then the server logs them.

use async_trait::async_trait;

use crate::id::WorkspaceId;

/// One event. `data` never holds a secret.
#[derive(Debug, Clone)]
pub struct Event {
    pub workspace_id: WorkspaceId,
    /// `key.created`, `key.revoked`, `key.rotated`, ...
    pub kind: &'static str,
    pub data: serde_json::Value,
}

#[async_trait]
pub trait Events: Send + Sync + 'static {
    async fn emit(&self, event: Event);
}
