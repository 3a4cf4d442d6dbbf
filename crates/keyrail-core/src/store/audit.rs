//! The audit log.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{AuditEntry, AuditFilter, Page};

/// The audit log: appended to, listed, never changed.
#[async_trait]
pub trait AuditStore: Send + Sync {
    // audit log (append-only)
    async fn insert_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first; `page.after` is the last id of the previous page (ids sort by time).
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEntry>>;
}
