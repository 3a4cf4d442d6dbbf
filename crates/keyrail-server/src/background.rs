//! The server's background work: following the change log (so revocations made on other nodes
//! take effect here within a second), purging expired limiter state, refreshing signing keys.

use std::time::Duration;

use keyrail_core::Timestamp;
use tokio::task::JoinHandle;

use crate::state::AppState;

const POLL_EVERY: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(60);
const KEYS_EVERY: Duration = Duration::from_secs(3600);

/// Applies one change-log entry to this node's in-memory state.
fn apply(state: &AppState, kind: &str, subject: &str, now: Timestamp) {
    if kind == "session.revoked" {
        state.identity.revocations.insert(subject, now);
    }
}

/// Loads what must be in memory before serving: sessions revoked recently. Returns the change
/// log position to follow from.
pub async fn warm_up(state: &AppState) -> Result<i64, keyrail_core::StoreError> {
    let seq = state.store.latest_change().await?;
    let now = state.clock.now();
    let since = now.plus_secs(-(state.identity.config.access_ttl_secs + 60));
    for id in state.store.sessions_revoked_since(since).await? {
        state.identity.revocations.insert(id.as_str(), now);
    }
    Ok(seq)
}

pub fn spawn(state: AppState, mut seq: i64) -> Vec<JoinHandle<()>> {
    let follow = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match state.store.changes_after(seq, 1000).await {
                    Ok(changes) => {
                        let now = state.clock.now();
                        for c in changes {
                            apply(&state, &c.kind, &c.subject, now);
                            seq = c.seq;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
                }
            }
        })
    };
    let purge = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                let now = state.clock.now();
                state.memory_limiter.purge(now);
                state.failures.purge(now);
                state
                    .identity
                    .revocations
                    .purge(now.plus_secs(-(state.identity.config.access_ttl_secs + 120)));
            }
        })
    };
    let keys = tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEYS_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = state
                .identity
                .keyring
                .refresh(state.store.as_ref(), &state.master_key, state.clock.now())
                .await
            {
                tracing::warn!(error = %e, "cannot refresh the signing keys");
            }
        }
    });
    vec![follow, purge, keys]
}
