//! One module per resource, each exporting its routes.

pub mod admin;
pub mod apps;
pub mod auth;
pub mod common;
pub mod export;
pub mod keys;
pub mod logs;
pub mod profile;
pub mod system;
pub mod webhooks;
pub mod workspaces;
