//! One module per resource, each exporting its routes.

pub mod system;
