//! Until webhooks deliver them, domain events go to the log.

use async_trait::async_trait;
use keyrail_core::events::{Event, Events};

pub struct LogEvents;

#[async_trait]
impl Events for LogEvents {
    async fn emit(&self, event: Event) {
        tracing::info!(
            workspace_id = %event.workspace_id,
            event = event.kind,
            data = %event.data,
            "event"
        );
    }
}
