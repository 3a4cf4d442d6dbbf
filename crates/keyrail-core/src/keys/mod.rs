//! API keys: the format, management, and the verify hot path.

pub mod cache;
pub mod format;
pub mod manage;
pub mod verify;
