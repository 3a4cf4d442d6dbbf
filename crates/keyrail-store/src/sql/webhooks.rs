//! [`WebhookStore`] for both backends, and `write_event`: the outbox write that `write_audit`
//! (and `mark_key_expiring`) make inside the caller's transaction.
//!
//! Subscriptions are matched with `events LIKE '%"<type>"%'` on the endpoint's JSON array of
//! types: the types are a fixed list of names with no quote in them, so the match is exact.

use async_trait::async_trait;
use keyrail_core::events::{Audience, OutboxEvent};
use keyrail_core::id::{DeliveryId, KeyId, MessageId, WebhookId, WorkspaceId};
use keyrail_core::model::{AuditEntry, Page};
use keyrail_core::store::{StoreError, StoreResult, WebhookStore};
use keyrail_core::time::Timestamp;
use keyrail_core::webhooks::{
    ClaimedJob, DeliveryAttempt, ExpiringKey, JobOutcome, StoredWebhookSecret, WebhookEndpoint,
};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::{PgStore, SqliteStore, page_bounds};
use crate::error::map_err;

/// Added to the claim's subquery on PostgreSQL: concurrent claimers skip each other's rows.
const PG_CLAIM_LOCK: &str = "FOR UPDATE SKIP LOCKED";

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    workspace_id: String,
    url: String,
    events: String,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = StoreError;

    fn try_from(r: EndpointRow) -> Result<Self, StoreError> {
        Ok(WebhookEndpoint {
            id: WebhookId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            url: r.url,
            events: serde_json::from_str(&r.events)
                .map_err(|e| StoreError::Other(format!("webhook events: {e}")))?,
            created_at: Timestamp::from_millis(r.created_at),
            disabled_at: r.disabled_at.map(Timestamp::from_millis),
        })
    }
}

const ENDPOINT_SELECT: &str =
    "SELECT id, workspace_id, url, events, created_at, disabled_at FROM webhook_endpoints";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    endpoint_id: String,
    event_id: String,
    event_type: String,
    attempt: i32,
    status_code: Option<i32>,
    ok: bool,
    error: Option<String>,
    next_attempt_at: Option<i64>,
    at: i64,
}

impl From<DeliveryRow> for DeliveryAttempt {
    fn from(r: DeliveryRow) -> Self {
        DeliveryAttempt {
            id: DeliveryId::from_trusted(r.id),
            endpoint_id: WebhookId::from_trusted(r.endpoint_id),
            event_id: MessageId::from_trusted(r.event_id),
            event_type: r.event_type,
            attempt: u32::try_from(r.attempt).unwrap_or(0),
            status_code: r.status_code.and_then(|s| u16::try_from(s).ok()),
            ok: r.ok,
            error: r.error,
            next_attempt_at: r.next_attempt_at.map(Timestamp::from_millis),
            at: Timestamp::from_millis(r.at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    event_id: String,
    endpoint_id: String,
    attempts: i32,
    workspace_id: String,
    event_type: String,
    body: String,
    at: i64,
    url: String,
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    sealed: String,
    previous_sealed: Option<String>,
    previous_until: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ExpiringRow {
    id: String,
    workspace_id: String,
    name: String,
    prefix: String,
    expires_at: i64,
}

/// `events LIKE` pattern matching endpoints subscribed to `kind`.
fn subscribed(kind: &str) -> String {
    format!("%\"{kind}\"%")
}

macro_rules! webhook_store {
    ($store:ident, $conn:ty, $claim_lock:expr) => {
        impl $store {
            /// Writes `event` to the outbox inside the caller's transaction: for each workspace
            /// that hears it and has an active endpoint subscribed to its type, one event row
            /// (a new `msg_` id) and one job per such endpoint, due at once. Nothing when no
            /// endpoint listens.
            pub(super) async fn write_event(
                conn: &mut $conn,
                event: &OutboxEvent,
                at: Timestamp,
            ) -> StoreResult<()> {
                let workspaces: Vec<String> = match &event.audience {
                    Audience::Workspace(ws) => vec![ws.as_str().to_owned()],
                    Audience::GrantsOf(client_id) => sqlx::query_scalar(
                        "SELECT DISTINCT workspace_id FROM grants WHERE client_id = $1
                         ORDER BY workspace_id",
                    )
                    .bind(client_id.as_str())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_err)?,
                };
                let pattern = subscribed(event.kind);
                let body = event.body(at);
                for ws in workspaces {
                    let id = MessageId::new();
                    let written = sqlx::query(
                        "INSERT INTO webhook_events (id, workspace_id, event_type, body, at)
                         SELECT $1, $2, $3, $4, $5
                         WHERE EXISTS (SELECT 1 FROM webhook_endpoints
                                       WHERE workspace_id = $2 AND disabled_at IS NULL
                                         AND events LIKE $6)",
                    )
                    .bind(id.as_str())
                    .bind(ws.as_str())
                    .bind(event.kind)
                    .bind(body.as_str())
                    .bind(at.millis())
                    .bind(pattern.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_err)?;
                    if written.rows_affected() == 0 {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO webhook_jobs (event_id, endpoint_id, attempts, due_at)
                         SELECT $1, id, 0, $3 FROM webhook_endpoints
                         WHERE workspace_id = $2 AND disabled_at IS NULL AND events LIKE $4",
                    )
                    .bind(id.as_str())
                    .bind(ws.as_str())
                    .bind(at.millis())
                    .bind(pattern.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_err)?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl WebhookStore for $store {
            async fn webhook_secret(
                &self,
                ws: &WorkspaceId,
            ) -> StoreResult<Option<StoredWebhookSecret>> {
                let row: Option<SecretRow> = sqlx::query_as(
                    "SELECT sealed, previous_sealed, previous_until FROM webhook_secrets
                     WHERE workspace_id = $1",
                )
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(|r| StoredWebhookSecret {
                    sealed: r.sealed,
                    previous_sealed: r.previous_sealed,
                    previous_until: r.previous_until.map(Timestamp::from_millis),
                }))
            }

            async fn init_webhook_secret(
                &self,
                ws: &WorkspaceId,
                sealed: &str,
                at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO webhook_secrets (workspace_id, sealed, updated_at)
                     VALUES ($1, $2, $3) ON CONFLICT (workspace_id) DO NOTHING",
                )
                .bind(ws.as_str())
                .bind(sealed)
                .bind(at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn rotate_webhook_secret(
                &self,
                ws: &WorkspaceId,
                sealed: &str,
                previous_until: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO webhook_secrets (workspace_id, sealed, updated_at)
                     VALUES ($1, $2, $4)
                     ON CONFLICT (workspace_id) DO UPDATE SET
                         previous_sealed = webhook_secrets.sealed, previous_until = $3,
                         sealed = excluded.sealed, updated_at = excluded.updated_at",
                )
                .bind(ws.as_str())
                .bind(sealed)
                .bind(previous_until.millis())
                .bind(audit.at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn insert_webhook(
                &self,
                e: &WebhookEndpoint,
                max: u32,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let events = serde_json::to_string(&e.events)
                    .map_err(|err| StoreError::Other(format!("webhook events: {err}")))?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Serialises concurrent creations in one workspace, so the count holds.
                Self::lock_workspace(&mut tx, &e.workspace_id).await?;
                let done = sqlx::query(
                    "INSERT INTO webhook_endpoints
                         (id, workspace_id, url, events, created_at, disabled_at)
                     SELECT $1, $2, $3, $4, $5, NULL
                     WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE workspace_id = $2) < $6",
                )
                .bind(e.id.as_str())
                .bind(e.workspace_id.as_str())
                .bind(e.url.as_str())
                .bind(events)
                .bind(e.created_at.millis())
                .bind(i64::from(max))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(false);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn list_webhooks(
                &self,
                ws: &WorkspaceId,
                page: &Page,
            ) -> StoreResult<Vec<WebhookEndpoint>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<EndpointRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "{ENDPOINT_SELECT} WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                )))
                .bind(ws.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(WebhookEndpoint::try_from).collect()
            }

            async fn webhook_by_id(
                &self,
                ws: &WorkspaceId,
                id: &WebhookId,
            ) -> StoreResult<Option<WebhookEndpoint>> {
                let row: Option<EndpointRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "{ENDPOINT_SELECT} WHERE id = $1 AND workspace_id = $2"
                )))
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(WebhookEndpoint::try_from).transpose()
            }

            async fn delete_webhook(
                &self,
                ws: &WorkspaceId,
                id: &WebhookId,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Its jobs and attempts go with it (ON DELETE CASCADE).
                let done =
                    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND workspace_id = $2")
                        .bind(id.as_str())
                        .bind(ws.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(false);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn list_webhook_deliveries(
                &self,
                endpoint: &WebhookId,
                page: &Page,
            ) -> StoreResult<Vec<DeliveryAttempt>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<DeliveryRow> = sqlx::query_as(
                    "SELECT id, endpoint_id, event_id, event_type, attempt, status_code, ok,
                            error, next_attempt_at, at
                     FROM webhook_deliveries WHERE endpoint_id = $1 AND id > $2
                     ORDER BY id LIMIT $3",
                )
                .bind(endpoint.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(DeliveryAttempt::from).collect())
            }

            async fn claim_webhook_jobs(
                &self,
                now: Timestamp,
                lease_until: Timestamp,
                limit: u32,
                claim: &str,
            ) -> StoreResult<Vec<ClaimedJob>> {
                // A read first: an idle queue (the usual case, polled twice a second by every
                // node) costs no write lock.
                let due: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM webhook_jobs WHERE due_at <= $1 LIMIT 1")
                        .bind(now.millis())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_err)?;
                if due.is_none() {
                    return Ok(Vec::new());
                }
                let lock: &str = $claim_lock;
                // One statement: the jobs due now become this claim's until the lease ends.
                let claimed = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE webhook_jobs SET due_at = $2, claim = $3, attempts = attempts + 1
                     WHERE (event_id, endpoint_id) IN (
                         SELECT event_id, endpoint_id FROM webhook_jobs
                         WHERE due_at <= $1 ORDER BY due_at LIMIT $4 {lock})"
                )))
                .bind(now.millis())
                .bind(lease_until.millis())
                .bind(claim)
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                if claimed.rows_affected() == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<JobRow> = sqlx::query_as(
                    "SELECT j.event_id, j.endpoint_id, j.attempts, e.workspace_id, e.event_type,
                            e.body, e.at, w.url
                     FROM webhook_jobs j
                     JOIN webhook_events e ON e.id = j.event_id
                     JOIN webhook_endpoints w ON w.id = j.endpoint_id
                     WHERE j.claim = $1",
                )
                .bind(claim)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| ClaimedJob {
                        event_id: MessageId::from_trusted(r.event_id),
                        endpoint_id: WebhookId::from_trusted(r.endpoint_id),
                        workspace_id: WorkspaceId::from_trusted(r.workspace_id),
                        event_type: r.event_type,
                        body: r.body,
                        event_at: Timestamp::from_millis(r.at),
                        url: r.url,
                        attempt: u32::try_from(r.attempts).unwrap_or(0),
                        claim: claim.to_owned(),
                    })
                    .collect())
            }

            async fn finish_webhook_job(
                &self,
                job: &ClaimedJob,
                a: &DeliveryAttempt,
                outcome: JobOutcome,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // The attempt is recorded unless its endpoint was deleted meanwhile.
                sqlx::query(
                    "INSERT INTO webhook_deliveries
                         (id, endpoint_id, event_id, event_type, attempt, status_code, ok, error,
                          next_attempt_at, at)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
                     WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $2)",
                )
                .bind(a.id.as_str())
                .bind(a.endpoint_id.as_str())
                .bind(a.event_id.as_str())
                .bind(a.event_type.as_str())
                .bind(i32::try_from(a.attempt).unwrap_or(i32::MAX))
                .bind(a.status_code.map(i32::from))
                .bind(a.ok)
                .bind(a.error.as_deref())
                .bind(a.next_attempt_at.map(Timestamp::millis))
                .bind(a.at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                match outcome {
                    JobOutcome::Delivered | JobOutcome::GiveUp => {
                        sqlx::query(
                            "DELETE FROM webhook_jobs
                             WHERE event_id = $1 AND endpoint_id = $2 AND claim = $3",
                        )
                        .bind(job.event_id.as_str())
                        .bind(job.endpoint_id.as_str())
                        .bind(job.claim.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    JobOutcome::Retry(next) => {
                        sqlx::query(
                            "UPDATE webhook_jobs SET due_at = $4, claim = NULL
                             WHERE event_id = $1 AND endpoint_id = $2 AND claim = $3",
                        )
                        .bind(job.event_id.as_str())
                        .bind(job.endpoint_id.as_str())
                        .bind(job.claim.as_str())
                        .bind(next.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    JobOutcome::Gone => {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET disabled_at = $2
                             WHERE id = $1 AND disabled_at IS NULL",
                        )
                        .bind(job.endpoint_id.as_str())
                        .bind(a.at.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                        sqlx::query("DELETE FROM webhook_jobs WHERE endpoint_id = $1")
                            .bind(job.endpoint_id.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(map_err)?;
                    }
                }
                tx.commit().await.map_err(map_err)
            }

            async fn keys_expiring(
                &self,
                now: Timestamp,
                before: Timestamp,
                stage: i32,
                limit: u32,
            ) -> StoreResult<Vec<ExpiringKey>> {
                let rows: Vec<ExpiringRow> = sqlx::query_as(
                    "SELECT id, workspace_id, name, prefix, expires_at FROM keys
                     WHERE expires_at IS NOT NULL AND revoked_at IS NULL
                       AND expires_at > $1 AND expires_at <= $2 AND expiring_stage < $3
                     ORDER BY expires_at LIMIT $4",
                )
                .bind(now.millis())
                .bind(before.millis())
                .bind(stage)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| ExpiringKey {
                        id: KeyId::from_trusted(r.id),
                        workspace_id: WorkspaceId::from_trusted(r.workspace_id),
                        name: r.name,
                        prefix: r.prefix,
                        expires_at: Timestamp::from_millis(r.expires_at),
                    })
                    .collect())
            }

            async fn mark_key_expiring(
                &self,
                key: &KeyId,
                stage: i32,
                event: &OutboxEvent,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query(
                    "UPDATE keys SET expiring_stage = $2
                     WHERE id = $1 AND expiring_stage < $2 AND revoked_at IS NULL",
                )
                .bind(key.as_str())
                .bind(stage)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(false);
                }
                Self::write_event(&mut tx, event, at).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn purge_webhook_deliveries(
                &self,
                before: Timestamp,
                limit: u32,
            ) -> StoreResult<u64> {
                self.delete_batch(
                    "DELETE FROM webhook_deliveries WHERE id IN
                         (SELECT id FROM webhook_deliveries WHERE at < $1 LIMIT $2)",
                    before,
                    limit,
                )
                .await
            }

            async fn purge_webhook_events(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
                self.delete_batch(
                    "DELETE FROM webhook_events WHERE id IN
                         (SELECT id FROM webhook_events WHERE at < $1 LIMIT $2)",
                    before,
                    limit,
                )
                .await
            }
        }
    };
}

webhook_store!(SqliteStore, SqliteConnection, "");
webhook_store!(PgStore, PgConnection, PG_CLAIM_LOCK);
