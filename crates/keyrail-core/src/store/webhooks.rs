//! Webhooks: the workspace secret, endpoints, the outbox's delivery jobs and their attempts.
//!
//! Events enter the outbox through [`crate::model::AuditEntry::event`], written by every
//! audited write with its audit entry (one event row per workspace that hears it, and one job per
//! active endpoint of that workspace subscribed to its type, only when there is such an
//! endpoint), or through [`WebhookStore::mark_key_expiring`].

use async_trait::async_trait;

use super::StoreResult;
use crate::events::OutboxEvent;
use crate::id::{KeyId, WebhookId, WorkspaceId};
use crate::model::{AuditEntry, Page};
use crate::time::Timestamp;
use crate::webhooks::{
    ClaimedJob, DeliveryAttempt, ExpiringKey, JobOutcome, StoredWebhookSecret, WebhookEndpoint,
};

#[async_trait]
pub trait WebhookStore: Send + Sync {
    // the workspace secret (sealed under the master key)
    async fn webhook_secret(&self, ws: &WorkspaceId) -> StoreResult<Option<StoredWebhookSecret>>;
    /// Stores `sealed` as the workspace's secret unless it has one already.
    async fn init_webhook_secret(
        &self,
        ws: &WorkspaceId,
        sealed: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Makes `sealed` the secret; the one it replaces stays valid for signing until
    /// `previous_until`. Writes `audit`.
    async fn rotate_webhook_secret(
        &self,
        ws: &WorkspaceId,
        sealed: &str,
        previous_until: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()>;

    // endpoints
    /// Inserts the endpoint and writes `audit` unless its workspace has `max` endpoints
    /// already (`false`, nothing written).
    async fn insert_webhook(
        &self,
        endpoint: &WebhookEndpoint,
        max: u32,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// The workspace's endpoints by id.
    async fn list_webhooks(
        &self,
        ws: &WorkspaceId,
        page: &Page,
    ) -> StoreResult<Vec<WebhookEndpoint>>;
    async fn webhook_by_id(
        &self,
        ws: &WorkspaceId,
        id: &WebhookId,
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Deletes the endpoint with its pending jobs and attempts; writes `audit`; `false` when
    /// there was no such endpoint in `ws`.
    async fn delete_webhook(
        &self,
        ws: &WorkspaceId,
        id: &WebhookId,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    /// The endpoint's delivery attempts by id (oldest first).
    async fn list_webhook_deliveries(
        &self,
        endpoint: &WebhookId,
        page: &Page,
    ) -> StoreResult<Vec<DeliveryAttempt>>;

    // delivery
    /// Claims up to `limit` jobs due at `now` for one delivery attempt each: a claimed job is
    /// due again only at `lease_until` (so a node that dies mid-delivery delays it, never loses
    /// it), and its attempt count goes up by one. Concurrent claimers never get the same job
    /// (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite has one writer).
    async fn claim_webhook_jobs(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        claim: &str,
    ) -> StoreResult<Vec<ClaimedJob>>;
    /// Records an attempt at a claimed job and its outcome: `Delivered` and `GiveUp` remove the
    /// job, `Retry` makes it due at the given time, `Gone` disables the endpoint and removes all
    /// of its jobs. The job changes only while the claim is still this one's.
    async fn finish_webhook_job(
        &self,
        job: &ClaimedJob,
        attempt: &DeliveryAttempt,
        outcome: JobOutcome,
    ) -> StoreResult<()>;

    // key.expiring
    /// Unrevoked keys expiring in `(now, before]` whose expiring stage is below `stage`.
    async fn keys_expiring(
        &self,
        now: Timestamp,
        before: Timestamp,
        stage: i32,
        limit: u32,
    ) -> StoreResult<Vec<ExpiringKey>>;
    /// Raises the key's expiring stage to `stage` and writes `event`, in one transaction;
    /// `false` (nothing written) when its stage was `stage` or more already (another node
    /// was first).
    async fn mark_key_expiring(
        &self,
        key: &KeyId,
        stage: i32,
        event: &OutboxEvent,
        at: Timestamp,
    ) -> StoreResult<bool>;

    // cleanup
    /// Deletes up to `limit` delivery attempts made before `before`.
    async fn purge_webhook_deliveries(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` events written before `before` (with any job left of them).
    async fn purge_webhook_events(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
}
