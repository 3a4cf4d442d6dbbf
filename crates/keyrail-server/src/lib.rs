//! keyrail's HTTP surface: it maps HTTP to the domain's use cases and back.

pub mod app;
pub mod auth;
pub mod background;
pub mod bootstrap;
pub mod config;
pub mod conn;
pub mod console;
pub mod docs;
pub mod error;
pub mod iplimit;
pub mod json;
pub mod keyauth;
pub mod limiter;
pub mod mailer;
pub mod mcp;
pub mod metrics;
pub mod oauth;
pub mod observe;
pub mod openapi;
pub mod outage;
pub mod proxies;
pub mod redis_limits;
pub mod request_log;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod webhooks_worker;

pub use config::Config;
pub use error::{ApiError, ApiResult};
pub use server::{RunningServer, StartError, StartOptions, build_state, start};
pub use state::AppState;
