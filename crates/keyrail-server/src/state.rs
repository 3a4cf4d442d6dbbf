//! What every handler can reach.

use std::sync::Arc;

use axum::body::Bytes;
use keyrail_core::secret::MasterKey;
use keyrail_core::{Clock, Store};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master_key: MasterKey,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document, serialised once at start.
    pub openapi_json: Bytes,
    /// The `/docs` page, rendered once at start.
    pub docs_html: Bytes,
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
