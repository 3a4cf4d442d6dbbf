//! The server's background work: following the change log (so revocations made on other nodes
//! take effect here within a second), purging expired limiter state, refreshing signing keys.

use std::sync::Arc;
use std::time::Duration;

use keyrail_core::Timestamp;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often the change log is read when no announcement came first.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
const LISTEN_RETRY: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(60);
const KEYS_EVERY: Duration = Duration::from_secs(3600);
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
const FORMATS_EVERY: Duration = Duration::from_secs(30);

/// Applies one change-log entry to this node's in-memory state.
fn apply(state: &AppState, kind: &str, subject: &str, now: Timestamp) {
    match kind {
        "session.revoked" => state.identity.revocations.insert(subject, now),
        "key.changed" => state.verifier.evict_hex(subject),
        "workspace.status" | "workspace.deleted" | "scope.deleted" => {
            let ws = subject.split(':').next().unwrap_or(subject);
            if let Some(id) = keyrail_core::id::WorkspaceId::parse(ws) {
                state.verifier.evict_workspace(&id);
            }
        }
        _ => {}
    }
}

/// Rows of the change log read per query.
const CHANGES_BATCH: u32 = 1000;

/// Applies every change-log entry after `seq`, however many there are (a burst of revocations
/// is drained in one go, not one batch per tick). Returns the position reached, and the error
/// that stopped it early, if any.
pub async fn catch_up(
    state: &AppState,
    mut seq: i64,
) -> (i64, Result<(), keyrail_core::StoreError>) {
    loop {
        let changes = match state.store.changes_after(seq, CHANGES_BATCH).await {
            Ok(c) => c,
            Err(e) => return (seq, Err(e)),
        };
        let now = state.clock.now();
        let full = changes.len() >= CHANGES_BATCH as usize;
        for c in changes {
            apply(state, &c.kind, &c.subject, now);
            seq = c.seq;
        }
        if !full {
            return (seq, Ok(()));
        }
    }
}

/// Writes the keys used since the last flush in one batch (never a write per request).
pub async fn flush_last_used(state: &AppState) {
    let used = state.verifier.take_used();
    if used.is_empty() {
        return;
    }
    if let Err(e) = state.store.touch_keys(&used).await {
        tracing::warn!(error = %e, keys = used.len(), "cannot record last_used_at; will retry");
        // Put them back so the next flush tries again.
        for (id, at) in used {
            state.verifier.mark_used(id, at);
        }
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

/// Follows the change log from `seq`: polls it every `poll_every`, and at once when the store
/// announces an append (PostgreSQL `LISTEN/NOTIFY`), so a revocation made on another node is
/// typically in force here within milliseconds, and within `poll_every` when an announcement
/// is lost.
pub fn spawn(state: AppState, mut seq: i64, poll_every: Duration) -> Vec<JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    let listen = {
        let state = state.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            loop {
                match state.store.follow_changes(wake.clone()).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for changes; polling meanwhile");
                        tokio::time::sleep(LISTEN_RETRY).await;
                    }
                }
            }
        })
    };
    let follow = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = wake.notified() => {}
                }
                let (reached, result) = catch_up(&state, seq).await;
                seq = reached;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot read the change log");
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
    let last_used = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LAST_USED_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                flush_last_used(&state).await;
            }
        })
    };
    let formats = {
        let state = state.clone();
        tokio::spawn(async move {
            // Other nodes' format changes reach this one through this reload.
            let mut tick = tokio::time::interval(FORMATS_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = state.verifier.reload_formats().await {
                    tracing::warn!(error = %e, "cannot reload key formats");
                }
                state.verifier.purge();
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
            if let Err(e) = state.apps.refresh_keys().await {
                tracing::warn!(error = %e, "cannot refresh the app token keys");
            }
        }
    });
    vec![listen, follow, purge, keys, last_used, formats]
}
