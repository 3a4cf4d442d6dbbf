//! [`ChangeStore`] for both backends: reading the change log, and following its announcements
//! (PostgreSQL `LISTEN/NOTIFY`; SQLite has none). Appending is [`super`]'s `append_changes`,
//! inside the transaction of each write.

use std::sync::Arc;
use tokio::sync::Notify;

use async_trait::async_trait;
use keyrail_core::model::Change;
use keyrail_core::store::{ChangeStore, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::postgres::PgListener;

use super::{PG_CHANGES_CHANNEL, PgStore, SqliteStore};
use crate::error::map_err;

#[derive(sqlx::FromRow)]
struct ChangeRow {
    seq: i64,
    at: i64,
    kind: String,
    subject: String,
}

impl From<ChangeRow> for Change {
    fn from(r: ChangeRow) -> Self {
        Change {
            seq: r.seq,
            at: Timestamp::from_millis(r.at),
            kind: r.kind,
            subject: r.subject,
        }
    }
}

// Where the backends differ: following announcements (`follow_changes`).

impl SqliteStore {
    /// One process owns a SQLite database: its own writes evict as they happen.
    async fn follow_announcements(&self, _wake: Arc<Notify>) -> StoreResult<bool> {
        Ok(false)
    }
}

impl PgStore {
    /// Holds one connection of the pool, listening on [`PG_CHANGES_CHANNEL`].
    async fn follow_announcements(&self, wake: Arc<Notify>) -> StoreResult<bool> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(map_err)?;
        listener.listen(PG_CHANGES_CHANNEL).await.map_err(map_err)?;
        // Appends committed before the LISTEN took effect were not announced here.
        wake.notify_one();
        loop {
            // `None`: the connection was lost (and is remade, with its LISTEN, on the next
            // call); what was announced meanwhile is lost, so wake the poller either way.
            listener.try_recv().await.map_err(map_err)?;
            wake.notify_one();
        }
    }
}

/// Implements [`ChangeStore`] for `$store`: one body of SQL; `follow_changes` calls the
/// backend's own `follow_announcements` above.
macro_rules! change_store {
    ($store:ident) => {
        #[async_trait]
        impl ChangeStore for $store {
            async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Change>> {
                let rows: Vec<ChangeRow> = sqlx::query_as(
                    "SELECT seq, at, kind, subject FROM changes
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Change::from).collect())
            }

            async fn latest_change(&self) -> StoreResult<i64> {
                let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(seq)
            }

            async fn purge_changes(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
                // Oldest first, by changes_at_idx; the newest entry stays whatever its age.
                // Needs no change-log lock: appends only ever add above every kept `seq`.
                self.delete_batch(
                    "DELETE FROM changes WHERE seq IN (
                         SELECT seq FROM changes
                         WHERE at < $1 AND seq < (SELECT MAX(seq) FROM changes)
                         ORDER BY seq LIMIT $2)",
                    before,
                    limit,
                )
                .await
            }

            async fn follow_changes(&self, wake: Arc<Notify>) -> StoreResult<bool> {
                self.follow_announcements(wake).await
            }
        }
    };
}

change_store!(SqliteStore);
change_store!(PgStore);
