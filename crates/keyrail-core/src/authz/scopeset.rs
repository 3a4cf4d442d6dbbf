//! A set of scopes: sorted, without duplicates, cheap to test against. Held by keys, grants and
//! roles as given, and as an *effective* set once closed under implication with [`closure`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::catalog::{Catalog, SUPERUSER};
use super::scope::Scope;
use crate::error::Error;

/// A sorted, deduplicated set of scope names. Serialized as a JSON array of strings.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    pub const fn new() -> Self {
        ScopeSet(Vec::new())
    }

    /// Parses every name (syntax only: existence is [`Catalog::validate`]'s job); duplicates
    /// collapse. A 400 naming `field` and the first bad scope.
    pub fn parse<S: AsRef<str>>(names: &[S], field: &str) -> Result<Self, Error> {
        names
            .iter()
            .map(|n| Scope::parse_field(n.as_ref(), field))
            .collect()
    }

    /// Builds a set from a sorted, deduplicated vector (checked in debug builds).
    pub(crate) fn from_sorted(v: Vec<Scope>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0] < w[1]));
        ScopeSet(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Binary search: O(log n), no allocation.
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(name)).is_ok()
    }

    /// Adds a scope; false when it was already there.
    pub fn insert(&mut self, scope: Scope) -> bool {
        match self.0.binary_search(&scope) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, scope);
                true
            }
        }
    }

    /// Removes a scope; false when it was not there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.0.binary_search_by(|s| s.as_str().cmp(name)) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// The names, in order (for storage and JSON bodies).
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// Every scope of `other` is in `self` (one merge walk, no allocation).
    pub fn is_superset(&self, other: &ScopeSet) -> bool {
        let mut mine = self.0.iter();
        'outer: for want in &other.0 {
            for have in mine.by_ref() {
                match have.cmp(want) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => continue 'outer,
                    std::cmp::Ordering::Greater => return false,
                }
            }
            return false;
        }
        true
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        other.is_superset(self)
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        let mut v: Vec<Scope> = self.0.iter().chain(&other.0).cloned().collect();
        v.sort_unstable();
        v.dedup();
        ScopeSet(v)
    }

    /// The scopes in both, in order.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(
            self.0
                .iter()
                .filter(|s| other.contains(s.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// The scopes of `self` that are not in `other`, in order.
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(
            self.0
                .iter()
                .filter(|s| !other.contains(s.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// Holds `admin:superuser`, which passes every check.
    pub fn is_superuser(&self) -> bool {
        self.contains(SUPERUSER)
    }

    /// On an *effective* (closed) set: every required scope is held. A set holding
    /// `admin:superuser` covers everything, even names outside the catalog.
    pub fn covers<S: AsRef<str>>(&self, required: &[S]) -> bool {
        self.is_superuser() || required.iter().all(|r| self.contains(r.as_ref()))
    }

    /// On an *effective* (closed) set: the required scopes not held, in the order given
    /// (a name repeated in `required` is listed once). Empty for a superuser.
    pub fn missing<S: AsRef<str>>(&self, required: &[S]) -> Vec<String> {
        if self.is_superuser() {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for r in required {
            let r = r.as_ref();
            if !self.contains(r) && !out.iter().any(|o| o == r) {
                out.push(r.to_owned());
            }
        }
        out
    }
}

/// The set with everything it implies, transitively, in `catalog`: `X:admin` brings the
/// `X:read|write|delete` that exist, `export:read-all` brings `export:read`, `admin:superuser`
/// brings every scope of the catalog.
///
/// A name that is not in the catalog (a custom scope deleted since it was given) grants
/// nothing and is dropped, so deleting a scope takes it away from every key, grant and role at
/// once. Idempotent and monotonic (see the property tests).
pub fn closure(set: &ScopeSet, catalog: &Catalog) -> ScopeSet {
    catalog.close(set)
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.iter().map(|s| s.as_str()))
            .finish()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut v: Vec<Scope> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        ScopeSet(v)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ScopeSet {
    type Item = Scope;
    type IntoIter = std::vec::IntoIter<Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Scope>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::catalog::CustomScope;
    use proptest::prelude::*;

    fn set(names: &[&str]) -> ScopeSet {
        ScopeSet::parse(names, "scopes").unwrap()
    }

    #[test]
    fn sorted_and_deduplicated() {
        let s = set(&["keys:write", "apps:read", "keys:write"]);
        assert_eq!(s.names(), ["apps:read", "keys:write"]);
        assert!(s.contains("apps:read") && !s.contains("apps:write"));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn parse_refuses_bad_syntax_naming_the_field() {
        match ScopeSet::parse(&["keys:read", "Bad"], "scopes").unwrap_err() {
            Error::Invalid { field, message } => {
                assert_eq!(field, "scopes");
                assert!(message.contains("\"Bad\""), "{message}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn superset_subset_union_difference() {
        let big = set(&["a:a", "b:b", "c:c"]);
        let small = set(&["a:a", "c:c"]);
        assert!(big.is_superset(&small) && small.is_subset(&big));
        assert!(!small.is_superset(&big));
        assert!(big.is_superset(&ScopeSet::new()));
        assert!(!ScopeSet::new().is_superset(&small));
        assert!(!small.is_superset(&set(&["d:d"])));
        assert_eq!(
            small.union(&set(&["b:b", "d:d"])).names(),
            ["a:a", "b:b", "c:c", "d:d"]
        );
        assert_eq!(big.difference(&small).names(), ["b:b"]);
    }

    #[test]
    fn insert_and_remove() {
        let mut s = ScopeSet::new();
        assert!(s.insert(Scope::parse("b:b").unwrap()));
        assert!(s.insert(Scope::parse("a:a").unwrap()));
        assert!(!s.insert(Scope::parse("a:a").unwrap()));
        assert_eq!(s.names(), ["a:a", "b:b"]);
        assert!(s.remove("a:a") && !s.remove("a:a"));
        assert_eq!(s.names(), ["b:b"]);
    }

    #[test]
    fn covers_and_missing_keep_the_order_given() {
        let s = set(&["keys:read", "workspace:read"]);
        assert!(s.covers(&["keys:read"]));
        assert!(s.covers::<&str>(&[]));
        assert!(!s.covers(&["keys:read", "keys:write"]));
        assert_eq!(
            s.missing(&["members:read", "keys:read", "apps:read", "members:read"]),
            ["members:read", "apps:read"]
        );
        let su = set(&["admin:superuser"]);
        assert!(su.covers(&["anything:at-all"]));
        assert!(su.missing(&["x:y"]).is_empty());
    }

    #[test]
    fn serde_is_an_array_of_strings() {
        let s = set(&["keys:write", "apps:read"]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["apps:read","keys:write"]"#
        );
        let back: ScopeSet =
            serde_json::from_str(r#"["keys:write","apps:read","apps:read"]"#).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<ScopeSet>(r#"["nope"]"#).is_err());
    }

    #[test]
    fn closure_follows_the_catalog() {
        let c = Catalog::new();
        assert_eq!(
            closure(&set(&["members:admin"]), &c).names(),
            ["members:admin", "members:read", "members:write"]
        );
        assert_eq!(
            closure(&set(&["export:read-all"]), &c).names(),
            ["export:read", "export:read-all"]
        );
        // Unknown names grant nothing.
        assert_eq!(
            closure(&set(&["chats:read", "keys:read"]), &c).names(),
            ["keys:read"]
        );
        let custom = Catalog::with_custom(&[
            CustomScope::new("chats:read", "", false).unwrap(),
            CustomScope::new("chats:admin", "", true).unwrap(),
        ]);
        assert_eq!(
            closure(&set(&["chats:admin"]), &custom).names(),
            ["chats:admin", "chats:read"]
        );
        let all = closure(&set(&["admin:superuser"]), &custom);
        assert_eq!(all.len(), custom.entries().len());
        assert!(all.contains("chats:read") && all.contains("workspace:delete"));
    }

    fn arb_names() -> impl Strategy<Value = Vec<String>> {
        let pool: Vec<String> = {
            let mut p: Vec<String> = crate::authz::catalog::builtin()
                .iter()
                .map(|e| e.name.clone())
                .collect();
            for n in [
                "chats:read",
                "chats:write",
                "chats:admin",
                "chats:delete",
                "docs:admin",
                "docs:read",
                "ghost:read",
            ] {
                p.push(n.to_owned());
            }
            p
        };
        proptest::collection::vec(proptest::sample::select(pool), 0..8)
    }

    fn arb_catalog() -> impl Strategy<Value = Catalog> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                "chats:read",
                "chats:write",
                "chats:admin",
                "chats:delete",
                "docs:admin",
                "docs:read",
                "docs:export",
            ]),
            0..7,
        )
        .prop_map(|names| {
            let custom: Vec<CustomScope> = names
                .iter()
                .map(|n| CustomScope::new(n, "", false).unwrap())
                .collect();
            Catalog::with_custom(&custom)
        })
    }

    proptest! {
        #[test]
        fn closure_is_idempotent_extensive_on_known_and_monotonic(
            c in arb_catalog(), a in arb_names(), b in arb_names(),
        ) {
            let a = ScopeSet::parse(&a, "scopes").unwrap();
            let b = ScopeSet::parse(&b, "scopes").unwrap();
            let ca = closure(&a, &c);
            prop_assert_eq!(closure(&ca, &c), ca.clone());
            for s in &a {
                prop_assert_eq!(ca.contains(s.as_str()), c.contains(s.as_str()));
            }
            let ab = a.union(&b);
            prop_assert!(closure(&ab, &c).is_superset(&ca));
            prop_assert_eq!(closure(&ab, &c), ca.union(&closure(&b, &c)));
            for s in &ca {
                prop_assert!(c.contains(s.as_str()));
            }
        }

        #[test]
        fn superset_agrees_with_contains(a in arb_names(), b in arb_names()) {
            let a = ScopeSet::parse(&a, "scopes").unwrap();
            let b = ScopeSet::parse(&b, "scopes").unwrap();
            prop_assert_eq!(a.is_superset(&b), b.iter().all(|s| a.contains(s.as_str())));
            prop_assert_eq!(a.covers(&b.names()), a.is_superuser() || a.is_superset(&b));
        }
    }
}
