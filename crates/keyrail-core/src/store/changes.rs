//! The change log, which tells every node what to evict.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::Change;
use crate::time::Timestamp;

/// The monotonic change log and its announcements.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    // change log
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Change>>;
    /// The highest `seq` written so far (0 when empty).
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Deletes at most `limit` of the oldest entries written before `before`, never the newest
    /// entry (so [`ChangeStore::latest_change`] keeps telling where the log stands; a `seq` is
    /// never reused). Says how many went. A node starts following from `latest_change`, so only
    /// one that fell behind by more than the retention would miss what is deleted.
    async fn purge_changes(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Follows change-log appends as they commit, on every node (PostgreSQL `LISTEN/NOTIFY`):
    /// calls `wake.notify_one()` once listening (appends made before may have been missed), for
    /// every announcement, and after the connection was lost and remade. Runs until it cannot
    /// go on (an `Err`); `Ok(false)` at once from a backend with nothing to announce (SQLite:
    /// one process owns the database). Announcements only hurry the poll of
    /// [`ChangeStore::changes_after`], which stays the source of truth.
    async fn follow_changes(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> StoreResult<bool> {
        let _ = wake;
        Ok(false)
    }
}
