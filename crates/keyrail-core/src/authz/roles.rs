//! Roles: the five built-in ones of `API.md` ("Roles and members") and a workspace's custom ones.
//!
//! - `owner`: every built-in scope except `admin:superuser` (which belongs to platform
//!   superusers only);
//! - `admin`: the same but `workspace:delete`;
//! - `developer`: every built-in scope whose action is exactly `read` (so `export:read` but not
//!   `export:read-all`, whose action is `read-all` and which carries sensitive data), plus
//!   `keys:write`, `keys:delete`, `apps:write`, `webhooks:write`;
//! - `member`: `workspace:read`, `members:read`;
//! - `viewer`: `workspace:read`.
//!
//! Each is a superset of the next, and each is closed under implication.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, SUPERUSER, builtin};
use super::check::{GrantTarget, authorize_grant};
use super::scope::Scope;
use super::scopeset::{ScopeSet, closure};
use crate::error::Error;

/// The longest custom role name, in characters.
pub const MAX_ROLE_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinRole {
    Owner,
    Admin,
    Developer,
    Member,
    Viewer,
}

impl BuiltinRole {
    /// Strongest first.
    pub const ALL: [BuiltinRole; 5] = [
        BuiltinRole::Owner,
        BuiltinRole::Admin,
        BuiltinRole::Developer,
        BuiltinRole::Member,
        BuiltinRole::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinRole::Owner => "owner",
            BuiltinRole::Admin => "admin",
            BuiltinRole::Developer => "developer",
            BuiltinRole::Member => "member",
            BuiltinRole::Viewer => "viewer",
        }
    }

    /// The built-in role of that exact name, if any.
    pub fn parse(s: &str) -> Option<BuiltinRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role's scopes (built once).
    pub fn scopes(self) -> &'static ScopeSet {
        static SETS: OnceLock<[ScopeSet; 5]> = OnceLock::new();
        let sets = SETS.get_or_init(|| Self::ALL.map(build));
        &sets[self as usize]
    }
}

fn build(role: BuiltinRole) -> ScopeSet {
    let names = builtin().iter().map(|e| e.name.as_str());
    let pick = |keep: &dyn Fn(&str) -> bool| -> ScopeSet {
        names
            .clone()
            .filter(|n| keep(n))
            .map(|n| Scope::parse(n).expect("built-in scope"))
            .collect()
    };
    match role {
        BuiltinRole::Owner => pick(&|n| n != SUPERUSER),
        BuiltinRole::Admin => pick(&|n| n != SUPERUSER && n != "workspace:delete"),
        BuiltinRole::Developer => pick(&|n| {
            n.ends_with(":read")
                || ["keys:write", "keys:delete", "apps:write", "webhooks:write"].contains(&n)
        }),
        BuiltinRole::Member => pick(&|n| n == "workspace:read" || n == "members:read"),
        BuiltinRole::Viewer => pick(&|n| n == "workspace:read"),
    }
}

impl std::fmt::Display for BuiltinRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role a member can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Builtin(BuiltinRole),
    /// `id` is opaque to this module; `scopes` are as given (validated), not closed.
    Custom {
        id: String,
        name: String,
        scopes: ScopeSet,
    },
}

impl Role {
    pub fn name(&self) -> &str {
        match self {
            Role::Builtin(r) => r.as_str(),
            Role::Custom { name, .. } => name,
        }
    }

    /// What a member record stores: the built-in role's name, or the custom role's id.
    pub fn reference(&self) -> &str {
        match self {
            Role::Builtin(r) => r.as_str(),
            Role::Custom { id, .. } => id,
        }
    }

    pub fn is_builtin(&self) -> bool {
        matches!(self, Role::Builtin(_))
    }

    /// The scopes as given.
    pub fn scopes(&self) -> &ScopeSet {
        match self {
            Role::Builtin(r) => r.scopes(),
            Role::Custom { scopes, .. } => scopes,
        }
    }

    /// The scopes a holder of this role effectively has in `catalog`. The built-in roles speak
    /// of "all workspace scopes" and "`*:read`": they cover the workspace's own scopes too
    /// (`owner` and `admin` all of them, `developer` those whose action is `read`).
    pub fn effective(&self, catalog: &Catalog) -> ScopeSet {
        let mut given = self.scopes().clone();
        if let Role::Builtin(role) = self {
            for entry in catalog.entries().iter().filter(|e| !e.builtin) {
                let include = match role {
                    BuiltinRole::Owner | BuiltinRole::Admin => true,
                    BuiltinRole::Developer => entry.name.ends_with(":read"),
                    BuiltinRole::Member | BuiltinRole::Viewer => false,
                };
                if include && let Ok(scope) = Scope::parse(&entry.name) {
                    given.insert(scope);
                }
            }
        }
        closure(&given, catalog)
    }
}

/// A custom role's name: 1 to 64 characters of `a-z`, `0-9`, `_`, `-`, and not the name of a
/// built-in role. 400 on field `name`.
pub fn validate_role_name(name: &str) -> Result<(), Error> {
    let ok_chars = name
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_ROLE_NAME_LEN || !ok_chars {
        return Err(Error::invalid(
            "name",
            "name: a role name is 1 to 64 characters of a-z, 0-9, '_' and '-'",
        ));
    }
    if BuiltinRole::parse(name).is_some() {
        return Err(Error::invalid(
            "name",
            format!("name: \"{name}\" is the name of a built-in role"),
        ));
    }
    Ok(())
}

/// The scopes of a custom role being created or changed by a caller whose effective scopes are
/// `creator_effective`: every scope must exist (400 on `scopes`), the caller must hold all of
/// them and what they imply (403 `insufficient_scope`), and `admin:superuser` is refused even
/// to a superuser (400). Returns the validated set, as given (not closed).
pub fn validate_role_scopes<S: AsRef<str>>(
    creator_effective: &ScopeSet,
    scopes: &[S],
    catalog: &Catalog,
) -> Result<ScopeSet, Error> {
    let set = catalog.validate(scopes, "scopes")?;
    authorize_grant(creator_effective, &set, catalog, GrantTarget::Role)?;
    Ok(set)
}

/// Checks `POST W/roles {name, scopes}`: [`validate_role_name`] then [`validate_role_scopes`].
/// Whether another custom role of the workspace has the same name is the store's check.
pub fn validate_custom_role<S: AsRef<str>>(
    creator_effective: &ScopeSet,
    name: &str,
    scopes: &[S],
    catalog: &Catalog,
) -> Result<ScopeSet, Error> {
    validate_role_name(name)?;
    validate_role_scopes(creator_effective, scopes, catalog)
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_roles_cover_the_workspaces_own_scopes() {
        use crate::authz::catalog::CustomScope;
        let catalog = Catalog::with_custom(&[
            CustomScope::new("chats:read", "", false).unwrap(),
            CustomScope::new("chats:write", "", false).unwrap(),
        ]);
        let has = |r: BuiltinRole, s: &str| Role::Builtin(r).effective(&catalog).contains(s);
        assert!(has(BuiltinRole::Owner, "chats:write") && has(BuiltinRole::Admin, "chats:write"));
        assert!(
            has(BuiltinRole::Developer, "chats:read")
                && !has(BuiltinRole::Developer, "chats:write")
        );
        assert!(!has(BuiltinRole::Member, "chats:read") && !has(BuiltinRole::Viewer, "chats:read"));
    }

    use super::*;
    use crate::authz::catalog::builtin_catalog;

    fn names(r: BuiltinRole) -> Vec<String> {
        r.scopes().names()
    }

    fn sorted(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn builtin_roles_have_exactly_api_md_scopes() {
        let owner = [
            "workspace:read",
            "workspace:write",
            "workspace:delete",
            "members:read",
            "members:write",
            "members:admin",
            "keys:read",
            "keys:write",
            "keys:delete",
            "keys:reveal",
            "apps:read",
            "apps:write",
            "webhooks:read",
            "webhooks:write",
            "audit:read",
            "export:read",
            "export:read-all",
        ];
        assert_eq!(names(BuiltinRole::Owner), sorted(&owner));
        let admin: Vec<&str> = owner
            .iter()
            .copied()
            .filter(|s| *s != "workspace:delete")
            .collect();
        assert_eq!(names(BuiltinRole::Admin), sorted(&admin));
        assert_eq!(
            names(BuiltinRole::Developer),
            sorted(&[
                "workspace:read",
                "members:read",
                "keys:read",
                "apps:read",
                "webhooks:read",
                "audit:read",
                "export:read",
                "keys:write",
                "keys:delete",
                "apps:write",
                "webhooks:write",
            ])
        );
        assert_eq!(
            names(BuiltinRole::Member),
            sorted(&["workspace:read", "members:read"])
        );
        assert_eq!(names(BuiltinRole::Viewer), sorted(&["workspace:read"]));
    }

    #[test]
    fn builtin_roles_are_ordered_strongest_first_closed_and_never_superuser() {
        let c = builtin_catalog();
        for w in BuiltinRole::ALL.windows(2) {
            let (stronger, weaker) = (w[0].scopes(), w[1].scopes());
            assert!(stronger.is_superset(weaker), "{} ⊉ {}", w[0], w[1]);
            assert!(
                stronger.len() > weaker.len(),
                "{} is not stronger than {}",
                w[0],
                w[1]
            );
        }
        assert!(
            BuiltinRole::ALL.windows(2).all(|w| w[0] < w[1]),
            "enum order is strength order"
        );
        for r in BuiltinRole::ALL {
            assert!(!r.scopes().contains(SUPERUSER));
            assert_eq!(&closure(r.scopes(), c), r.scopes(), "{r} is closed");
            assert!(c.validate(&r.scopes().names(), "scopes").is_ok());
        }
    }

    #[test]
    fn builtin_role_names() {
        for r in BuiltinRole::ALL {
            assert_eq!(BuiltinRole::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
            assert_eq!(Role::Builtin(r).reference(), r.as_str());
        }
        assert_eq!(BuiltinRole::parse("Owner"), None);
        assert_eq!(BuiltinRole::parse("rol_123"), None);
    }

    #[test]
    fn custom_role_accessors() {
        let r = Role::Custom {
            id: "rol_1".into(),
            name: "support".into(),
            scopes: ScopeSet::parse(&["members:admin"], "scopes").unwrap(),
        };
        assert_eq!(
            (r.name(), r.reference(), r.is_builtin()),
            ("support", "rol_1", false)
        );
        assert_eq!(
            r.effective(builtin_catalog()).names(),
            ["members:admin", "members:read", "members:write"]
        );
    }

    #[test]
    fn role_names() {
        for ok in ["support", "a", "on-call_2", &"x".repeat(64)] {
            assert!(validate_role_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Support", "on call", "rôle", &"x".repeat(65)] {
            assert!(
                matches!(validate_role_name(bad), Err(Error::Invalid { .. })),
                "{bad}"
            );
        }
        for r in BuiltinRole::ALL {
            match validate_role_name(r.as_str()).unwrap_err() {
                Error::Invalid { field, message } => {
                    assert_eq!(field, "name");
                    assert!(message.contains("built-in role"), "{message}");
                }
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn custom_role_scopes_are_capped_by_the_creator() {
        let c = builtin_catalog();
        let admin = closure(BuiltinRole::Admin.scopes(), c);
        let s = validate_custom_role(&admin, "support", &["members:read", "keys:read"], c).unwrap();
        assert_eq!(s.names(), ["keys:read", "members:read"]);
        // Unknown scope: 400 before anything else.
        assert!(matches!(
            validate_custom_role(&admin, "support", &["chats:read"], c),
            Err(Error::Invalid { .. })
        ));
        // More than the creator holds: 403 listing what is missing.
        match validate_custom_role(&admin, "support", &["workspace:delete", "keys:read"], c) {
            Err(Error::Forbidden {
                code: "insufficient_scope",
                required,
                ..
            }) => {
                assert_eq!(required, ["workspace:delete"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn superuser_cannot_be_given_to_a_role() {
        let c = builtin_catalog();
        // A creator without it: 403.
        let owner = closure(BuiltinRole::Owner.scopes(), c);
        match validate_custom_role(&owner, "root", &[SUPERUSER], c) {
            Err(Error::Forbidden {
                code: "insufficient_scope",
                required,
                ..
            }) => {
                assert_eq!(required, [SUPERUSER])
            }
            other => panic!("{other:?}"),
        }
        // A superuser: 400, it is not a workspace scope.
        let su = closure(&ScopeSet::parse(&[SUPERUSER], "s").unwrap(), c);
        match validate_custom_role(&su, "root", &[SUPERUSER, "keys:read"], c) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "scopes");
                assert_eq!(
                    message,
                    "admin:superuser cannot be given to a workspace role"
                );
            }
            other => panic!("{other:?}"),
        }
        // But a superuser may make a role of anything else.
        let all_but: Vec<String> = owner.names();
        assert!(validate_custom_role(&su, "root", &all_but, c).is_ok());
    }
}
