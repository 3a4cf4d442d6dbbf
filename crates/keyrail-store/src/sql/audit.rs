//! [`AuditStore`] for both backends: the append-only audit log.

use async_trait::async_trait;
use keyrail_core::id::{AuditId, WorkspaceId};
use keyrail_core::model::{ActorType, AuditEntry, AuditFilter, Page};
use keyrail_core::store::{AuditStore, StoreError, StoreResult};
use keyrail_core::time::Timestamp;

use super::{PgStore, SqliteStore};
use crate::error::map_err;

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    at: i64,
    workspace_id: Option<String>,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    outcome: String,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        let actor_type = ActorType::parse(&r.actor_type).ok_or_else(|| {
            StoreError::Other(format!(
                "audit entry {} has an unknown actor type {:?}",
                r.id, r.actor_type
            ))
        })?;
        Ok(AuditEntry {
            id: AuditId::from_trusted(r.id),
            at: Timestamp::from_millis(r.at),
            workspace_id: r.workspace_id.map(WorkspaceId::from_trusted),
            actor_type,
            actor_id: r.actor_id,
            action: r.action,
            target: r.target,
            ip: r.ip,
            user_agent: r.user_agent,
            outcome: r.outcome,
            event: None,
        })
    }
}

/// Implements [`AuditStore`] for `$store` (one body of SQL, the same on both backends).
macro_rules! audit_store {
    ($store:ident) => {
        #[async_trait]
        impl AuditStore for $store {
            async fn insert_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
                let mut conn = self.pool.acquire().await.map_err(map_err)?;
                Self::write_audit(&mut conn, entry).await
            }

            async fn list_audit(
                &self,
                filter: &AuditFilter,
                page: &Page,
            ) -> StoreResult<Vec<AuditEntry>> {
                // One statement for every combination of filters: an absent filter is a NULL
                // parameter whose predicate is true. `since` is inclusive, `until` exclusive.
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "SELECT id, at, workspace_id, actor_type, actor_id, action, target, ip,
                            user_agent, outcome
                     FROM audit_log
                     WHERE ($1 IS NULL OR workspace_id = $1)
                       AND ($2 IS NULL OR action = $2)
                       AND ($3 IS NULL OR actor_id = $3)
                       AND ($4 IS NULL OR at >= $4)
                       AND ($5 IS NULL OR at < $5)
                       AND ($6 IS NULL OR id < $6)
                     ORDER BY id DESC
                     LIMIT $7",
                )
                .bind(filter.workspace_id.as_ref().map(WorkspaceId::as_str))
                .bind(filter.action.as_deref())
                .bind(filter.actor_id.as_deref())
                .bind(filter.since.map(Timestamp::millis))
                .bind(filter.until.map(Timestamp::millis))
                .bind(page.after.as_deref())
                .bind(i64::from(page.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(AuditEntry::try_from).collect()
            }
        }
    };
}

audit_store!(SqliteStore);
audit_store!(PgStore);
