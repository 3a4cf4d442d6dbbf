//! [`RequestLogStore`] for both backends: the API request log, appended in batches.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use keyrail_core::model::{ActorType, Page};
use keyrail_core::request_log::{
    LoggedPrincipal, RequestLogEntry, RequestLogFilter, RequestLogId, RequestLogRow,
};
use keyrail_core::store::{RequestLogStore, StoreError, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::AssertSqlSafe;

use super::{PgStore, SqliteStore};
use crate::error::map_err;

/// Columns written per row (the id is the table's own).
const COLUMNS: usize = 11;

/// The most rows of one `INSERT` (a power of two): 64 rows are 704 parameters, under the 999
/// that the oldest SQLite builds allow per statement.
const INSERT_MAX_ROWS: usize = 64;
const _: () = assert!(INSERT_MAX_ROWS * COLUMNS <= 999);

/// `INSERT INTO api_logs` of 1, 2, 4, ... [`INSERT_MAX_ROWS`] rows: few shapes, each prepared
/// once per connection.
static INSERT_SQL: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    (0..=INSERT_MAX_ROWS.trailing_zeros())
        .map(|shift| {
            let rows: Vec<String> = (0..1usize << shift)
                .map(|r| {
                    let cols: Vec<String> = (1..=COLUMNS)
                        .map(|c| format!("${}", r * COLUMNS + c))
                        .collect();
                    format!("({})", cols.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO api_logs (at, method, route, status, latency_us, principal_type,
                     principal_id, workspace_id, ip, user_agent, request_id)
                 VALUES {}",
                rows.join(", ")
            )
            .into()
        })
        .collect()
});

/// Splits `n` rows into runs of power-of-two lengths of at most [`INSERT_MAX_ROWS`], longest
/// first.
fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n > 0 {
        let rows = (1usize << n.ilog2()).min(INSERT_MAX_ROWS);
        out.push(rows);
        n -= rows;
    }
    out
}

#[derive(sqlx::FromRow)]
struct LogRow {
    id: i64,
    at: i64,
    method: String,
    route: String,
    status: i32,
    latency_us: i64,
    principal_type: Option<String>,
    principal_id: Option<String>,
    workspace_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: String,
}

impl TryFrom<LogRow> for RequestLogRow {
    type Error = StoreError;

    fn try_from(r: LogRow) -> Result<Self, StoreError> {
        let principal = match (r.principal_type, r.principal_id) {
            (Some(t), Some(id)) => Some(LoggedPrincipal {
                kind: ActorType::parse(&t).ok_or_else(|| {
                    StoreError::Other(format!(
                        "request log row {} has an unknown principal type {t:?}",
                        r.id
                    ))
                })?,
                id,
            }),
            _ => None,
        };
        Ok(RequestLogRow {
            id: RequestLogId(r.id),
            entry: RequestLogEntry {
                at: Timestamp::from_millis(r.at),
                method: r.method,
                route: r.route,
                status: u16::try_from(r.status).unwrap_or(0),
                latency_us: r.latency_us,
                principal,
                workspace_id: r.workspace_id,
                ip: r.ip,
                user_agent: r.user_agent,
                request_id: r.request_id,
            },
        })
    }
}

/// Implements [`RequestLogStore`] for `$store` (one body of SQL, the same on both backends).
macro_rules! request_log_store {
    ($store:ident) => {
        #[async_trait]
        impl RequestLogStore for $store {
            async fn insert_request_logs(&self, entries: &[RequestLogEntry]) -> StoreResult<()> {
                if entries.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let mut rest = entries;
                for rows in chunks(entries.len()) {
                    let (chunk, tail) = rest.split_at(rows);
                    rest = tail;
                    let sql = Arc::clone(&INSERT_SQL[rows.trailing_zeros() as usize]);
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for e in chunk {
                        query = query
                            .bind(e.at.millis())
                            .bind(e.method.as_str())
                            .bind(e.route.as_str())
                            .bind(i32::from(e.status))
                            .bind(e.latency_us)
                            .bind(e.principal.as_ref().map(|p| p.kind.as_str()))
                            .bind(e.principal.as_ref().map(|p| p.id.as_str()))
                            .bind(e.workspace_id.as_deref())
                            .bind(e.ip.as_deref())
                            .bind(e.user_agent.as_deref())
                            .bind(e.request_id.as_str());
                    }
                    query.execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            }

            async fn list_request_logs(
                &self,
                filter: &RequestLogFilter,
                page: &Page,
            ) -> StoreResult<Vec<RequestLogRow>> {
                // One statement for every combination of filters: an absent filter is a NULL
                // parameter whose predicate is true. `since` is inclusive, `until` exclusive.
                let before = page
                    .after
                    .as_deref()
                    .and_then(RequestLogId::parse)
                    .map(|id| id.0);
                let rows: Vec<LogRow> = sqlx::query_as(
                    "SELECT id, at, method, route, status, latency_us, principal_type,
                            principal_id, workspace_id, ip, user_agent, request_id
                     FROM api_logs
                     WHERE ($1 IS NULL OR workspace_id = $1)
                       AND ($2 IS NULL OR principal_id = $2)
                       AND ($3 IS NULL OR status >= $3)
                       AND ($4 IS NULL OR status <= $4)
                       AND ($5 IS NULL OR at >= $5)
                       AND ($6 IS NULL OR at < $6)
                       AND ($7 IS NULL OR id < $7)
                     ORDER BY id DESC
                     LIMIT $8",
                )
                .bind(filter.workspace_id.as_deref())
                .bind(filter.principal_id.as_deref())
                .bind(filter.status.map(|s| i32::from(s.min)))
                .bind(filter.status.map(|s| i32::from(s.max)))
                .bind(filter.since.map(Timestamp::millis))
                .bind(filter.until.map(Timestamp::millis))
                .bind(before)
                .bind(i64::from(page.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(RequestLogRow::try_from).collect()
            }

            async fn purge_request_logs(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
                // Oldest first, by api_logs_at_idx.
                self.delete_batch(
                    "DELETE FROM api_logs WHERE id IN (
                         SELECT id FROM api_logs WHERE at < $1 ORDER BY at LIMIT $2)",
                    before,
                    limit,
                )
                .await
            }
        }
    };
}

request_log_store!(SqliteStore);
request_log_store!(PgStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_come_in_few_shapes_under_the_parameter_limit() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(500), [64, 64, 64, 64, 64, 64, 64, 32, 16, 4]);
        assert_eq!(INSERT_SQL.len(), 7);
        assert!(INSERT_SQL[0].ends_with("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"));
        assert!(INSERT_SQL[6].ends_with("$704)"));
    }
}
