//! Property tests across the authz modules: no sequence of grants escalates, and the grant
//! rule agrees with closures.

use proptest::prelude::*;

use super::catalog::{Catalog, CustomScope, SUPERUSER, builtin};
use super::check::{GrantTarget, authorize_grant, can_grant, require};
use super::roles::{BuiltinRole, validate_role_scopes};
use super::scopeset::{ScopeSet, closure};
use crate::error::Error;

/// Custom scope names a workspace might define (some with `admin`).
const CUSTOM_POOL: [&str; 8] = [
    "chats:read",
    "chats:write",
    "chats:delete",
    "chats:admin",
    "docs:read",
    "docs:admin",
    "billing:admin",
    "billing:export",
];

/// Every name a request may mention: built-ins, custom ones and one never defined.
fn name_pool() -> Vec<String> {
    builtin()
        .iter()
        .map(|e| e.name.clone())
        .chain(CUSTOM_POOL.iter().map(|s| s.to_string()))
        .chain(["ghost:read".to_owned()])
        .collect()
}

fn arb_request() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(proptest::sample::select(name_pool()), 0..6)
}

fn arb_custom() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(proptest::sample::select(CUSTOM_POOL.to_vec()), 0..8)
}

fn catalog_of(custom: &[&str]) -> Catalog {
    let rows: Vec<CustomScope> = custom
        .iter()
        .map(|n| CustomScope::new(n, "", n.ends_with(":admin")).unwrap())
        .collect();
    Catalog::with_custom(&rows)
}

fn set(names: &[String]) -> ScopeSet {
    ScopeSet::parse(names, "scopes").unwrap()
}

/// The starting principal: a built-in role, or any set (a custom role, a superuser, ...).
fn arb_root() -> impl Strategy<Value = ScopeSet> {
    prop_oneof![
        proptest::sample::select(BuiltinRole::ALL.to_vec()).prop_map(|r| r.scopes().clone()),
        proptest::collection::vec(proptest::sample::select(name_pool()), 0..10)
            .prop_map(|v| set(&v)),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// Principal `by` creates an API key with these scopes.
    Key { by: usize, scopes: Vec<String> },
    /// Principal `by` grants an app these scopes (acting as itself).
    AppGrant { by: usize, scopes: Vec<String> },
    /// Principal `by` defines a custom role with these scopes.
    MakeRole { by: usize, scopes: Vec<String> },
    /// Principal `by` gives a (new) member role number `role` (built-ins first, then custom).
    Assign { by: usize, role: usize },
    /// The workspace adds a custom scope (the catalog only grows here).
    AddScope { name: &'static str },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), arb_request()).prop_map(|(by, scopes)| Op::Key { by, scopes }),
        (any::<usize>(), arb_request()).prop_map(|(by, scopes)| Op::AppGrant { by, scopes }),
        (any::<usize>(), arb_request()).prop_map(|(by, scopes)| Op::MakeRole { by, scopes }),
        (any::<usize>(), any::<usize>()).prop_map(|(by, role)| Op::Assign { by, role }),
        proptest::sample::select(CUSTOM_POOL.to_vec()).prop_map(|name| Op::AddScope { name }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// (a) Whatever sequence of key creations, app grants, role definitions and role
    /// assignments happens, starting from one principal, nobody ends up with a scope outside
    /// the closure of that principal's set, and nobody but the root holds `admin:superuser`.
    #[test]
    fn no_sequence_of_grants_escalates(
        custom in arb_custom(),
        root in arb_root(),
        ops in proptest::collection::vec(arb_op(), 1..40),
    ) {
        let mut custom: Vec<&str> = custom;
        let mut catalog = catalog_of(&custom);
        // Each principal as the scopes written on it (not closed).
        let mut principals: Vec<ScopeSet> = vec![root.clone()];
        let mut roles: Vec<ScopeSet> =
            BuiltinRole::ALL.iter().map(|r| r.scopes().clone()).collect();

        for op in ops {
            match op {
                Op::Key { by, scopes } => {
                    let granter = closure(&principals[by % principals.len()], &catalog);
                    let Ok(req) = catalog.validate(&scopes, "scopes") else { continue };
                    if authorize_grant(&granter, &req, &catalog, GrantTarget::Key).is_ok() {
                        prop_assert!(closure(&req, &catalog).is_subset(&granter));
                        principals.push(req);
                    }
                }
                Op::AppGrant { by, scopes } => {
                    let granter = closure(&principals[by % principals.len()], &catalog);
                    let Ok(req) = catalog.validate(&scopes, "scopes") else { continue };
                    if authorize_grant(&granter, &req, &catalog, GrantTarget::AppGrant).is_ok() {
                        prop_assert!(closure(&req, &catalog).is_subset(&granter));
                        principals.push(req);
                    }
                }
                Op::MakeRole { by, scopes } => {
                    let granter = closure(&principals[by % principals.len()], &catalog);
                    if let Ok(req) = validate_role_scopes(&granter, &scopes, &catalog) {
                        prop_assert!(closure(&req, &catalog).is_subset(&granter));
                        roles.push(req);
                    }
                }
                Op::Assign { by, role } => {
                    let granter = closure(&principals[by % principals.len()], &catalog);
                    let role = roles[role % roles.len()].clone();
                    if can_grant(&granter, &role, &catalog).is_ok() {
                        prop_assert!(closure(&role, &catalog).is_subset(&granter));
                        principals.push(role);
                    }
                }
                Op::AddScope { name } => {
                    if catalog.admit(name, "", false).is_ok() {
                        custom.push(name);
                        catalog = catalog_of(&custom);
                    }
                }
            }
            // The invariant holds after every step, against the catalog of the moment.
            let top = closure(&root, &catalog);
            for p in &principals[1..] {
                prop_assert!(closure(p, &catalog).is_subset(&top), "{:?} ⊄ {:?}", p, top);
                prop_assert!(!p.contains(SUPERUSER));
            }
        }
    }

    /// (c) `can_grant(S, T)` ⇒ closure(T) ⊆ closure(S); and it refuses exactly when something
    /// the grant would give is missing, listing only such scopes.
    #[test]
    fn can_grant_agrees_with_closures(
        custom in arb_custom(),
        s in arb_request(),
        t in arb_request(),
    ) {
        let c = catalog_of(&custom);
        let (s, t) = (set(&s), set(&t));
        let (cs, ct) = (closure(&s, &c), closure(&t, &c));
        match can_grant(&s, &t, &c) {
            Ok(()) => {
                prop_assert!(ct.is_subset(&cs));
                prop_assert!(s.is_superuser() || t.is_subset(&cs));
                // Granting is transitive-safe: the grantee can re-grant only within it too.
                prop_assert!(can_grant(&cs, &ct, &c).is_ok());
            }
            Err(Error::Forbidden { code: "insufficient_scope", required, .. }) => {
                prop_assert!(!s.is_superuser());
                prop_assert!(!required.is_empty());
                let given = ct.union(&t);
                for r in &required {
                    prop_assert!(given.contains(r) && !cs.contains(r), "{}", r);
                }
            }
            Err(e) => prop_assert!(false, "unexpected error {:?}", e),
        }
        // `require` on the effective set agrees with `covers`.
        let names = t.names();
        prop_assert_eq!(require(&cs, &names).is_ok(), cs.covers(&names));
    }

    /// (b) closure is idempotent, monotonic in the set, and monotonic in the catalog.
    #[test]
    fn closure_is_idempotent_and_monotonic(
        custom in arb_custom(),
        more in arb_custom(),
        a in arb_request(),
        b in arb_request(),
    ) {
        let small = catalog_of(&custom);
        let big = catalog_of(&[custom.clone(), more].concat());
        let (a, b) = (set(&a), set(&b));
        let ca = closure(&a, &small);
        prop_assert_eq!(closure(&ca, &small), ca.clone());
        prop_assert!(closure(&a.union(&b), &small).is_superset(&ca));
        prop_assert!(closure(&a, &big).is_superset(&ca));
    }
}
