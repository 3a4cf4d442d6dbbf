//! When the store stops answering (DESIGN.md "Many nodes"): the change-log poll notices, and
//! from then on verify answers from the cache alone for `store_outage_grace` (see
//! [`keyrail_core::keys::verify::KeyVerifier::store_down`]); cache misses and writes answer 503
//! `store_unavailable`. When the store answers again, the node first applies the change log from
//! where it stood (or drops its whole cache when the log no longer reaches back that far) and
//! only then trusts its cache as usual. One log line when an outage begins, one when it ends.

use std::fmt::Write;

use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use keyrail_core::StoreError;
use utoipa_axum::router::OpenApiRouter;

use crate::background::catch_up;
use crate::error::ApiError;
use crate::state::AppState;

/// `router`'s routes need the store: while it is known to be down they answer 503
/// `store_unavailable` (`Retry-After`) at once, instead of each waiting for a connection until
/// the store's connect timeout. Not for verify, forward-auth and the system routes, which answer
/// without the store (from the cache, from memory). The change-log poll notices the store is
/// back within a second and lifts this.
pub fn needs_store(router: OpenApiRouter<AppState>, state: &AppState) -> OpenApiRouter<AppState> {
    router.route_layer(from_fn_with_state(state.clone(), refuse_while_down))
}

async fn refuse_while_down(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.verifier.down_since().is_some() {
        return ApiError::from(keyrail_core::Error::Unavailable).into_response();
    }
    next.run(req).await
}

/// One read of the change log from `seq`, with the outage bookkeeping; the position reached.
pub async fn follow(state: &AppState, seq: i64) -> i64 {
    let down = state.verifier.down_since();
    let mut dropped_cache = false;
    if down.is_some() {
        match covers(state, seq).await {
            Ok(true) => {}
            Ok(false) => {
                // Entries this node never read were purged: nothing cached can be trusted.
                state.verifier.forget_all();
                dropped_cache = true;
            }
            Err(_) => return seq,
        }
    }
    let (reached, result) = catch_up(state, seq).await;
    match result {
        Ok(()) => {
            if down.is_some()
                && let Some(since) = state.verifier.store_up()
            {
                let lasted_ms = state.clock.now().millis() - since.millis();
                tracing::info!(
                    began = %since,
                    lasted_ms,
                    dropped_cache,
                    "the store answers again: outage over, change log applied"
                );
            }
        }
        Err(StoreError::Unavailable(e)) => {
            if state.verifier.store_down(state.clock.now()) {
                tracing::warn!(
                    error = %e,
                    grace_secs = state.config.store_outage_grace.secs(),
                    "the store is unreachable: outage began; cached keys answer for the grace"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the change log"),
    }
    reached
}

/// Whether the change log still holds every entry after `seq` (the last one this node applied):
/// entries are purged oldest first, so it does when entry `seq` itself is still there.
async fn covers(state: &AppState, seq: i64) -> Result<bool, StoreError> {
    let first = state.store.changes_after(seq - 1, 1).await?;
    Ok(match first.first() {
        // The newest entry is never purged: an empty log is one nothing was ever written to.
        None => seq == 0,
        Some(c) if c.seq == seq => true,
        // Nothing was logged before this node started: the log began at 1.
        Some(c) => seq == 0 && c.seq == 1,
    })
}

/// `keyrail_store_up` and the verifications answered from the cache during outages.
pub fn render(state: &AppState, out: &mut String) {
    let up = u8::from(state.verifier.down_since().is_none());
    let served = state.verifier.served_during_outage();
    let _ = writeln!(
        out,
        "# HELP keyrail_store_up 1 while the store answers, 0 during an outage\n\
         # TYPE keyrail_store_up gauge\n\
         keyrail_store_up {up}\n\
         # HELP keyrail_verify_outage_cache_hits_total Key lookups answered from the cache while the store was unreachable\n\
         # TYPE keyrail_verify_outage_cache_hits_total counter\n\
         keyrail_verify_outage_cache_hits_total {served}"
    );
}
