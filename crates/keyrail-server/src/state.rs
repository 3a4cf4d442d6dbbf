//! What every handler can reach.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use keyrail_core::apps::Apps;
use keyrail_core::identity::Identity;
use keyrail_core::keys::manage::Keys;
use keyrail_core::keys::verify::KeyVerifier;
use keyrail_core::platform::Admin;
use keyrail_core::ratelimit::RateLimiter;
use keyrail_core::secret::MasterKey;
use keyrail_core::webhooks::Webhooks;
use keyrail_core::workspaces::Workspaces;
use keyrail_core::{Clock, Store};

use crate::config::Config;
use crate::limiter::{FailureTracker, MemoryLimiter};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master_key: Arc<MasterKey>,
    /// Accounts, sessions, MFA.
    pub identity: Arc<Identity>,
    /// Workspaces, members, roles, scopes, audit.
    pub workspaces: Workspaces,
    /// Platform administration.
    pub admin: Admin,
    /// The verify hot path and its cache.
    pub verifier: Arc<KeyVerifier>,
    /// API-key management.
    pub keys: Keys,
    /// Apps, grants and app tokens.
    pub apps: Apps,
    /// Webhook secrets and endpoints (the delivery worker is `webhooks_worker`).
    pub webhooks: Webhooks,
    /// The rate limiter every limit goes through.
    pub limiter: Arc<dyn RateLimiter>,
    /// The in-process limiter behind `limiter`, for purging.
    pub memory_limiter: Arc<MemoryLimiter>,
    /// With `redis_url`: the Redis limiter behind `limiter` (its health, for `/readyz` and
    /// the metrics).
    pub shared_limiter: Option<Arc<crate::redis_limits::SharedLimiter>>,
    /// The failed-authentication IP block.
    pub failures: Arc<FailureTracker>,
    /// With `redis_url`: the same block, shared through Redis (`failures` is its fallback).
    pub shared_failures: Option<Arc<crate::redis_limits::SharedFailures>>,
    /// The API request log's queue (the writer task drains it).
    pub request_log: Arc<crate::request_log::RequestLog>,
    /// The OpenAPI document, made once the routes are built.
    pub docs: OnceLock<Docs>,
    /// The change-log position this node has applied up to (its follower's; 0 before it
    /// starts). Tests of a cluster wait on it instead of sleeping.
    pub changes_applied: AtomicI64,
}

pub struct Docs {
    pub openapi_json: Bytes,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
