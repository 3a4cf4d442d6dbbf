//! The API request log.

use async_trait::async_trait;

use super::StoreResult;
use crate::Timestamp;
use crate::model::Page;
use crate::request_log::{RequestLogEntry, RequestLogFilter, RequestLogRow};

/// The API request log: appended to in batches, listed, deleted after its retention.
#[async_trait]
pub trait RequestLogStore: Send + Sync {
    /// Appends the entries in one transaction (a few multi-row statements); their ids follow
    /// the order given.
    async fn insert_request_logs(&self, entries: &[RequestLogEntry]) -> StoreResult<()>;
    /// Newest first; `page.after` is the last id (`log_<n>`) of the previous page.
    async fn list_request_logs(
        &self,
        filter: &RequestLogFilter,
        page: &Page,
    ) -> StoreResult<Vec<RequestLogRow>>;
    /// Deletes at most `limit` rows older than `before`, oldest first; says how many went.
    async fn purge_request_logs(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
}
