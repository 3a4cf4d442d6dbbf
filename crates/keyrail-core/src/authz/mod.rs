//! Authorization, pure: scope names, the catalog and its implications, scope sets, roles, the
//! permission check and the no-escalation rule. No store, no HTTP.
//!
//! The flow for a request: a principal's scopes (its key's, grant's or role's) are closed once
//! with [`closure`] against the workspace's [`Catalog`]; [`require`] checks an endpoint's scopes
//! against that effective set; [`can_grant`] / [`authorize_grant`] check anything that gives
//! scopes away (keys, app grants, roles, member role changes).

pub mod catalog;
pub mod check;
pub mod roles;
pub mod scope;
pub mod scopeset;

#[cfg(test)]
mod props;

pub use catalog::{Catalog, CatalogEntry, CustomScope, SUPERUSER, builtin, builtin_catalog};
pub use check::{GrantTarget, authorize_grant, can_grant, insufficient_scope, require};
pub use roles::{
    BuiltinRole, Role, validate_custom_role, validate_role_name, validate_role_scopes,
};
pub use scope::Scope;
pub use scopeset::{ScopeSet, closure};
