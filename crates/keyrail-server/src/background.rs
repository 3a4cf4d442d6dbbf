//! The server's background work: following the change log (so revocations made on other nodes
//! take effect here within a second), purging expired limiter state, refreshing signing keys,
//! and deleting from the store what no one needs any more ([`cleanup`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keyrail_core::Timestamp;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often the change log is read when no announcement came first.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
const LISTEN_RETRY: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often each node reloads the signing keys (and rotates them when due; the store decides
/// once for every node): a long-running node picks up the cluster's new key within a minute.
pub const KEYS_EVERY: Duration = Duration::from_secs(60);
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
const FORMATS_EVERY: Duration = Duration::from_secs(30);
/// How often [`cleanup`] runs (first a minute after start).
const CLEANUP_EVERY: Duration = Duration::from_secs(600);
const CLEANUP_FIRST_AFTER: Duration = Duration::from_secs(60);

/// Rows [`cleanup`] deletes per statement: each delete is a short transaction that holds its
/// locks briefly, however much there is to delete.
pub const CLEANUP_BATCH: u32 = 500;

/// How long a session is kept once it has ended (revoked, or expired), before [`cleanup`]
/// deletes it: 7 days. Nothing needs it that long (its refresh tokens go as soon as it ends;
/// a node starting up reloads only revocations of the last access-token lifetime, see
/// [`warm_up`]; its access tokens outlive it by at most 15 minutes); the week keeps recent
/// sign-ins at hand for whoever investigates one.
pub const SESSION_RETENTION_SECS: i64 = 7 * 86_400;

/// How long change-log entries are kept before [`cleanup`] deletes them: 24 hours, far longer
/// than any node needs them. A running node reads the log every second; a node that starts
/// follows from the newest entry ([`warm_up`]), never from older ones; and what an entry tells
/// expires much sooner anyway (cached keys are looked up again after 5 minutes, access tokens of
/// a revoked session expire within 15). The newest entry is always kept.
pub const CHANGE_LOG_RETENTION_SECS: i64 = 86_400;

/// How long webhook delivery attempts (`GET W/webhooks/{id}/deliveries`) and outbox events are
/// kept: 7 days, well past the 24 hours a delivery is retried.
pub const WEBHOOK_RETENTION_SECS: i64 = 7 * 86_400;

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
        let before = seq;
        let mut new_signing_key = false;
        for c in changes {
            new_signing_key |= c.kind == "signing_key.created";
            apply(state, &c.kind, &c.subject, now);
            seq = c.seq;
        }
        // Another node rotated the signing key: publish it (JWKS) before moving past the news.
        if new_signing_key {
            let keyring = &state.identity.keyring;
            match keyring
                .refresh(state.store.as_ref(), &state.master_key, now)
                .await
            {
                Ok(()) => {}
                Err(keyrail_core::Error::Unavailable) => {
                    let e = keyrail_core::StoreError::Unavailable("reloading signing keys".into());
                    return (before, Err(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload the signing keys; will retry");
                }
            }
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

/// Rows deleted by one [`cleanup`], per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    pub changes: u64,
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub login_throttle: u64,
    pub mfa_challenges: u64,
    pub password_resets: u64,
    pub request_logs: u64,
    pub webhook_deliveries: u64,
    pub webhook_events: u64,
    /// Expired OAuth codes and refresh tokens, and public clients nobody granted.
    pub oauth: u64,
}

/// Runs one delete of at most [`CLEANUP_BATCH`] rows after another until one deletes fewer;
/// the rows deleted in all.
async fn drain<F, Fut>(mut batch: F) -> Result<u64, keyrail_core::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, keyrail_core::StoreError>>,
{
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < u64::from(CLEANUP_BATCH) {
            return Ok(total);
        }
        // Let requests waiting for the database go first.
        tokio::task::yield_now().await;
    }
}

/// Deletes, in batches of [`CLEANUP_BATCH`] rows, what the tables would otherwise keep
/// forever: spent or expired MFA challenges and reset tokens, refresh tokens of dead sessions
/// (those of live sessions stay, spent ones too: reuse detection needs them), sessions dead for
/// [`SESSION_RETENTION_SECS`], login throttle rows whose window and lock are over, and
/// change-log entries older than [`CHANGE_LOG_RETENTION_SECS`], webhook attempts and events
/// older than [`WEBHOOK_RETENTION_SECS`], and API request log rows older than `api_logs_days`
/// (even with `api_logs = false`: what was logged before still expires), expired OAuth codes and
/// refresh tokens, and public OAuth clients nobody granted within a day. Every node runs it every 10
/// minutes; two at once only find less to do. Stops at the first error.
pub async fn cleanup(state: &AppState) -> Result<Cleaned, keyrail_core::StoreError> {
    let store = state.store.as_ref();
    let now = state.clock.now();
    let lock_for = state.identity.config.lock_for.secs() as i64;
    let (batch, mut done) = (CLEANUP_BATCH, Cleaned::default());
    done.mfa_challenges = drain(|| store.purge_mfa_challenges(now, batch)).await?;
    done.password_resets = drain(|| store.purge_password_resets(now, batch)).await?;
    // Tokens before their sessions: deleting a session then cascades to nothing.
    done.refresh_tokens = drain(|| store.purge_refresh_tokens(now, batch)).await?;
    let ended_before = now.plus_secs(-SESSION_RETENTION_SECS);
    done.sessions = drain(|| store.purge_sessions(ended_before, batch)).await?;
    let window_start_before = now.plus_secs(-lock_for);
    done.login_throttle =
        drain(|| store.purge_login_throttle(window_start_before, now, batch)).await?;
    let changes_before = now.plus_secs(-CHANGE_LOG_RETENTION_SECS);
    done.changes = drain(|| store.purge_changes(changes_before, batch)).await?;
    let logs_before = now.plus_secs(-i64::from(state.config.api_logs_days) * 86_400);
    done.request_logs = drain(|| store.purge_request_logs(logs_before, batch)).await?;
    let webhooks_before = now.plus_secs(-WEBHOOK_RETENTION_SECS);
    done.webhook_deliveries =
        drain(|| store.purge_webhook_deliveries(webhooks_before, batch)).await?;
    done.webhook_events = drain(|| store.purge_webhook_events(webhooks_before, batch)).await?;
    let unused_before = now.plus_secs(-keyrail_core::apps::oauth::UNUSED_CLIENT_TTL_SECS);
    done.oauth = store.delete_stale_oauth(now, unused_before).await?;
    Ok(done)
}

/// Loads what must be in memory before serving: sessions revoked recently. Returns the change
/// log position to follow from: the newest entry, read first (so nothing appended while the
/// revocations load is missed), never an older one, so [`cleanup`]'s pruning of old entries
/// cannot leave a starting node a gap.
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
pub fn spawn(
    state: AppState,
    mut seq: i64,
    poll_every: Duration,
    keys_every: Duration,
) -> Vec<JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    let listen = {
        let state = state.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            loop {
                match state.store.follow_changes(wake.clone()).await {
                    Ok(_) => return,
                    // During an outage the poll logs its beginning and end, once each.
                    Err(e) if state.verifier.down_since().is_some() => {
                        tracing::debug!(error = %e, "cannot listen for changes during the outage");
                        tokio::time::sleep(LISTEN_RETRY).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for changes; polling meanwhile");
                        tokio::time::sleep(LISTEN_RETRY).await;
                    }
                }
            }
        })
    };
    state.changes_applied.store(seq, Ordering::Release);
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
                seq = crate::outage::follow(&state, seq).await;
                state.changes_applied.store(seq, Ordering::Release);
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
    let cleaning = {
        let state = state.clone();
        tokio::spawn(async move {
            let first = tokio::time::Instant::now() + CLEANUP_FIRST_AFTER;
            let mut tick = tokio::time::interval_at(first, CLEANUP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match cleanup(&state).await {
                    Ok(done) if done != Cleaned::default() => {
                        tracing::info!(?done, "deleted what no one needs any more");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cleanup stopped; will retry"),
                }
            }
        })
    };
    let keys = tokio::spawn(async move {
        let mut tick = tokio::time::interval(keys_every);
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
    vec![listen, follow, purge, keys, last_used, formats, cleaning]
}
