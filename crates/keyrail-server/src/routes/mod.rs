//! One module per resource, each exporting its routes.

pub mod auth;
pub mod profile;
pub mod system;
