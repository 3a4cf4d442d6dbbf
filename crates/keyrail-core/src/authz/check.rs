//! The permission check and the no-escalation rule. Every use case goes through these two
//! functions; no rule about scopes is written anywhere else.

use super::catalog::{Catalog, SUPERUSER};
use super::scopeset::{ScopeSet, closure};
use crate::error::Error;

/// 403 `insufficient_scope` with the scopes that were missing.
pub fn insufficient_scope(required: Vec<String>) -> Error {
    Error::Forbidden {
        code: "insufficient_scope",
        message: "Insufficient scope".to_owned(),
        required,
    }
}

/// May a principal whose *effective* (already closed) scopes are `effective` do something that
/// needs every scope of `required`? Else 403 `insufficient_scope` listing the missing ones in
/// the order given. A holder of `admin:superuser` passes everything.
pub fn require<S: AsRef<str>>(effective: &ScopeSet, required: &[S]) -> Result<(), Error> {
    let missing = effective.missing(required);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(insufficient_scope(missing))
    }
}

/// The no-escalation rule, for keys, app grants, custom roles and member role changes alike:
/// everything `requested` gives, with all it implies, must be within the granter's closure.
/// So granting an implying scope (`members:admin`) also needs what it implies. A name in
/// `requested` outside the catalog is only grantable by a superuser (the catalog's validation
/// refuses it with 400 first in practice). A granter holding `admin:superuser` passes.
///
/// Else 403 `insufficient_scope` whose `required` lists, sorted, every scope that the grant
/// would give and the granter lacks.
pub fn can_grant(
    granter_effective: &ScopeSet,
    requested: &ScopeSet,
    catalog: &Catalog,
) -> Result<(), Error> {
    if granter_effective.is_superuser() {
        return Ok(());
    }
    let held = closure(granter_effective, catalog);
    // Fast path: the granter's closure is closed, so holding `requested` means holding its
    // closure too.
    if held.is_superset(requested) {
        return Ok(());
    }
    let given = closure(requested, catalog).union(requested);
    Err(insufficient_scope(given.difference(&held).names()))
}

/// What a grant is being made to, for [`authorize_grant`]'s messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTarget {
    Key,
    AppGrant,
    Role,
}

impl GrantTarget {
    fn noun(self) -> &'static str {
        match self {
            GrantTarget::Key => "an API key",
            GrantTarget::AppGrant => "an app grant",
            GrantTarget::Role => "a workspace role",
        }
    }
}

/// [`can_grant`], then the rule that `admin:superuser` belongs to platform superusers only and
/// is never put on a key, an app grant or a workspace role: a granter lacking it gets the 403 of
/// `can_grant`; a superuser gets 400 on `scopes`, "admin:superuser cannot be given to ...".
/// Use this when scopes are written onto a key, grant or role; use [`can_grant`] alone when an
/// existing role is assigned to a member.
pub fn authorize_grant(
    granter_effective: &ScopeSet,
    requested: &ScopeSet,
    catalog: &Catalog,
    target: GrantTarget,
) -> Result<(), Error> {
    can_grant(granter_effective, requested, catalog)?;
    if requested.contains(SUPERUSER) {
        return Err(Error::invalid(
            "scopes",
            format!("{SUPERUSER} cannot be given to {}", target.noun()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::catalog::{CustomScope, builtin_catalog};
    use crate::authz::roles::BuiltinRole;

    fn set(names: &[&str]) -> ScopeSet {
        ScopeSet::parse(names, "scopes").unwrap()
    }

    fn forbidden(r: Result<(), Error>) -> Vec<String> {
        match r {
            Err(Error::Forbidden {
                code,
                message,
                required,
            }) => {
                assert_eq!(
                    (code, message.as_str()),
                    ("insufficient_scope", "Insufficient scope")
                );
                required
            }
            other => panic!("expected 403, got {other:?}"),
        }
    }

    #[test]
    fn require_lists_what_is_missing_in_order() {
        let c = builtin_catalog();
        let eff = closure(BuiltinRole::Developer.scopes(), c);
        assert!(require(&eff, &["keys:read", "keys:write"]).is_ok());
        assert!(require::<&str>(&eff, &[]).is_ok());
        assert_eq!(
            forbidden(require(
                &eff,
                &["members:write", "keys:read", "keys:reveal"]
            )),
            ["members:write", "keys:reveal"]
        );
        let admin_of_members = closure(&set(&["members:admin"]), c);
        assert!(require(&admin_of_members, &["members:read", "members:write"]).is_ok());
        let su = closure(&set(&[SUPERUSER]), c);
        assert!(require(&su, &["workspace:delete", "anything:else"]).is_ok());
    }

    #[test]
    fn can_grant_caps_by_the_granter() {
        let c = builtin_catalog();
        let dev = closure(BuiltinRole::Developer.scopes(), c);
        assert!(can_grant(&dev, &set(&["keys:read", "keys:write"]), c).is_ok());
        assert!(can_grant(&dev, &ScopeSet::new(), c).is_ok());
        assert_eq!(
            forbidden(can_grant(&dev, &set(&["keys:reveal", "keys:read"]), c)),
            ["keys:reveal"]
        );
        // An implying scope needs everything it implies.
        let reader = closure(&set(&["members:read"]), c);
        assert_eq!(
            forbidden(can_grant(&reader, &set(&["members:admin"]), c)),
            ["members:admin", "members:write"]
        );
        // The granter's set is closed here even if the caller forgot.
        assert!(can_grant(&set(&["export:read-all"]), &set(&["export:read"]), c).is_ok());
        // Unknown names are not grantable by others.
        assert_eq!(
            forbidden(can_grant(&dev, &set(&["ghost:read"]), c)),
            ["ghost:read"]
        );
    }

    #[test]
    fn can_grant_with_custom_admin_scopes() {
        let c = Catalog::with_custom(&[
            CustomScope::new("chats:read", "", false).unwrap(),
            CustomScope::new("chats:write", "", false).unwrap(),
            CustomScope::new("chats:admin", "", true).unwrap(),
        ]);
        let chat_admin = closure(&set(&["chats:admin"]), &c);
        assert!(can_grant(&chat_admin, &set(&["chats:read", "chats:write"]), &c).is_ok());
        let writer = closure(&set(&["chats:write"]), &c);
        assert_eq!(
            forbidden(can_grant(&writer, &set(&["chats:admin"]), &c)),
            ["chats:admin", "chats:read"]
        );
        // The owner role does not hold custom scopes; a superuser holds everything.
        let owner = closure(BuiltinRole::Owner.scopes(), &c);
        assert!(can_grant(&owner, &set(&["chats:read"]), &c).is_err());
        let su = closure(&set(&[SUPERUSER]), &c);
        assert!(can_grant(&su, &set(&["chats:admin", "workspace:delete"]), &c).is_ok());
    }

    #[test]
    fn member_role_changes_use_the_same_rule() {
        let c = builtin_catalog();
        let admin = closure(BuiltinRole::Admin.scopes(), c);
        for r in &BuiltinRole::ALL[1..] {
            assert!(
                can_grant(&admin, r.scopes(), c).is_ok(),
                "admin may assign {r}"
            );
        }
        assert_eq!(
            forbidden(can_grant(&admin, BuiltinRole::Owner.scopes(), c)),
            ["workspace:delete"]
        );
        let owner = closure(BuiltinRole::Owner.scopes(), c);
        for r in BuiltinRole::ALL {
            assert!(can_grant(&owner, r.scopes(), c).is_ok());
        }
    }

    #[test]
    fn superuser_is_never_written_onto_keys_grants_or_roles() {
        let c = builtin_catalog();
        let su = closure(&set(&[SUPERUSER]), c);
        for (target, noun) in [
            (GrantTarget::Key, "an API key"),
            (GrantTarget::AppGrant, "an app grant"),
            (GrantTarget::Role, "a workspace role"),
        ] {
            match authorize_grant(&su, &set(&[SUPERUSER]), c, target) {
                Err(Error::Invalid { field, message }) => {
                    assert_eq!(field, "scopes");
                    assert_eq!(
                        message,
                        format!("admin:superuser cannot be given to {noun}")
                    );
                }
                other => panic!("{other:?}"),
            }
            assert!(authorize_grant(&su, &set(&["workspace:delete"]), c, target).is_ok());
        }
        let owner = closure(BuiltinRole::Owner.scopes(), c);
        assert_eq!(
            forbidden(authorize_grant(
                &owner,
                &set(&[SUPERUSER]),
                c,
                GrantTarget::Key
            )),
            [SUPERUSER]
        );
    }
}
