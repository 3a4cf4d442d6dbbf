//! The audit log.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{AuditEntry, AuditFilter, Page};

/// The audit log: appended to, listed, never changed.
#[async_trait]
pub trait AuditStore: Send + Sync {
    // audit log (append-only)
    /// Appends one entry on its own: for what changes nothing else (a reveal, a login). The
    /// entry of a change is written by the change's own store method, in its transaction.
    async fn insert_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first; `page.after` is the last id of the previous page (ids sort by time).
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEntry>>;
}
