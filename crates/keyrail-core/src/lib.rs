//! keyrail's domain: typed ids, time, configuration values, the domain error and the traits the
//! rest of the system implements (`Store`, `Clock`). No HTTP, no SQL.

pub mod apps;
pub mod audit;
pub mod authz;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod events;
pub mod export;
pub mod id;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod mail;
pub mod model;
pub mod platform;
pub mod ratelimit;
pub mod reload_gate;
pub mod request_log;
pub mod secret;
pub mod store;
pub mod time;
pub mod webhooks;
pub mod workspaces;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use store::{Store, StoreError};
pub use time::Timestamp;
