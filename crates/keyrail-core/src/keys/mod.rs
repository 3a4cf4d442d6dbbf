//! API keys: the format, management, and the verify hot path.

pub mod format;
pub mod manage;
pub mod verify;
