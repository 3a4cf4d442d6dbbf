//! What the domain needs from persistence. `keyrail-store` implements it for SQLite and
//! PostgreSQL from one body of SQL.
//!
//! [`Store`] is the sum of one small trait per resource ([`IdentityStore`], [`SessionStore`],
//! [`WorkspaceStore`], [`KeyStore`], [`AppStore`], [`AuditStore`], [`ChangeStore`],
//! [`RequestLogStore`]). A
//! `dyn Store` answers all of their methods with only `Store` in scope; on a concrete store (or a
//! generic `S: Store`) they are called with the traits in scope:
//! `use keyrail_core::store::prelude::*;`.

use async_trait::async_trait;

mod apps;
mod audit;
mod changes;
mod identity;
mod keys;
mod request_log;
mod sessions;
mod webhooks;
mod workspaces;

pub use apps::AppStore;
pub use audit::AuditStore;
pub use changes::ChangeStore;
pub use identity::IdentityStore;
pub use keys::KeyStore;
pub use request_log::RequestLogStore;
pub use sessions::SessionStore;
pub use webhooks::WebhookStore;
pub use workspaces::WorkspaceStore;

/// [`Store`] and every resource trait, for calling their methods on a concrete store.
pub mod prelude {
    pub use super::{
        AppStore, AuditStore, ChangeStore, IdentityStore, KeyStore, RequestLogStore, SessionStore,
        Store, WebhookStore, WorkspaceStore,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; names what collided (e.g. "user email").
    #[error("{0} already exists")]
    Conflict(String),
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store:
    IdentityStore
    + SessionStore
    + WorkspaceStore
    + KeyStore
    + AppStore
    + AuditStore
    + ChangeStore
    + RequestLogStore
    + WebhookStore
    + Send
    + Sync
    + 'static
{
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Answers when the database answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the pool, letting connections finish cleanly (SQLite checkpoints its log).
    async fn close(&self);
}
