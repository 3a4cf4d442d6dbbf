//! The scope catalog: keyrail's built-in scopes (`API.md`, "Scopes") plus a workspace's own,
//! each with what it implies.
//!
//! Implication rules, applied the same way to built-in and custom scopes:
//! - `X:admin` implies `X:read`, `X:write` and `X:delete` of the same resource, those of them
//!   that exist in the catalog (built-in: `members:admin` implies `members:read` and
//!   `members:write`; there is no `members:delete`);
//! - `export:read-all` implies `export:read` (an export with sensitive data contains the export
//!   without it);
//! - `admin:superuser` implies every other scope of the catalog, built-in and custom.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

use super::scope::Scope;
use super::scopeset::ScopeSet;
use crate::error::Error;

/// The platform superuser's scope. No workspace role, key or grant may hold it.
pub const SUPERUSER: &str = "admin:superuser";

/// Resources reserved for keyrail's own API; a workspace's custom scopes may not use them.
pub const BUILTIN_RESOURCES: [&str; 8] = [
    "workspace",
    "members",
    "keys",
    "apps",
    "webhooks",
    "audit",
    "export",
    "admin",
];

/// The longest description of a custom scope, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// `(name, dangerous, description)` in the order of `API.md`'s table.
const BUILTIN: [(&str, bool, &str); 18] = [
    (
        "workspace:read",
        false,
        "Read the workspace, its settings and key format",
    ),
    (
        "workspace:write",
        false,
        "Change the workspace's settings, key format and custom scopes",
    ),
    (
        "workspace:delete",
        true,
        "Delete the workspace and everything in it",
    ),
    ("members:read", false, "List members and roles"),
    (
        "members:write",
        false,
        "Add and remove members and change their roles",
    ),
    (
        "members:admin",
        true,
        "Define custom roles; implies members:read and members:write",
    ),
    ("keys:read", false, "List API keys and read their metadata"),
    (
        "keys:write",
        false,
        "Create, update, rotate and import API keys",
    ),
    ("keys:delete", false, "Revoke and delete API keys"),
    (
        "keys:reveal",
        true,
        "Reveal the plaintext of recoverable API keys",
    ),
    (
        "apps:read",
        false,
        "List the grants of apps in this workspace",
    ),
    (
        "apps:write",
        false,
        "Create and revoke shared grants of apps in this workspace",
    ),
    (
        "webhooks:read",
        false,
        "List webhook endpoints and their deliveries",
    ),
    (
        "webhooks:write",
        false,
        "Manage webhook endpoints, the webhook secret and redeliveries",
    ),
    ("audit:read", false, "Read the workspace's audit log"),
    (
        "export:read",
        false,
        "Export the workspace without sensitive data",
    ),
    (
        "export:read-all",
        true,
        "Export the workspace with sensitive data; implies export:read",
    ),
    (
        "admin:superuser",
        true,
        "Platform administration; implies every scope",
    ),
];

/// One scope as listed by `GET /api/v1/scopes` (`builtin` is an extra field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    pub name: String,
    pub description: String,
    pub dangerous: bool,
    /// The scopes this one implies directly, in catalog order.
    pub implies: Vec<String>,
    pub builtin: bool,
}

/// A scope a workspace defined for its own API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomScope {
    pub name: Scope,
    pub description: String,
    pub dangerous: bool,
}

impl CustomScope {
    /// Checks a new custom scope: a valid name (field `name`) whose resource is not one of
    /// keyrail's, and a one-line description of at most 256 characters (may be empty).
    pub fn new(name: &str, description: &str, dangerous: bool) -> Result<CustomScope, Error> {
        let name = Scope::parse_field(name, "name")?;
        if is_builtin_resource(name.resource()) {
            return Err(Error::invalid(
                "name",
                format!(
                    "name: the resource \"{}\" is reserved for keyrail's built-in scopes",
                    name.resource()
                ),
            ));
        }
        if description.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(Error::invalid(
                "description",
                "description: at most 256 characters",
            ));
        }
        if description.chars().any(char::is_control) {
            return Err(Error::invalid(
                "description",
                "description: one line, without control characters",
            ));
        }
        Ok(CustomScope {
            name,
            description: description.to_owned(),
            dangerous,
        })
    }
}

/// True for the resources of keyrail's own API (`keys`, `members`, ...).
pub fn is_builtin_resource(resource: &str) -> bool {
    BUILTIN_RESOURCES.contains(&resource)
}

/// The built-in scopes with their implications, in `API.md`'s order (built once).
pub fn builtin() -> &'static [CatalogEntry] {
    static BUILT: OnceLock<Vec<CatalogEntry>> = OnceLock::new();
    BUILT.get_or_init(|| Catalog::new().entries)
}

/// The catalog of built-in scopes only, shared (built once).
pub fn builtin_catalog() -> &'static Catalog {
    static BUILT: OnceLock<Catalog> = OnceLock::new();
    BUILT.get_or_init(Catalog::new)
}

/// Built-in scopes plus one workspace's own, with implications resolved.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Built-ins in table order, then custom scopes by name.
    entries: Vec<CatalogEntry>,
    /// The same names as scopes, by entry index.
    scopes: Vec<Scope>,
    /// Name -> entry index.
    index: HashMap<String, usize>,
    /// Direct implications by entry index.
    implies: Vec<Vec<usize>>,
    /// Entry indices in name order, to emit sorted sets without sorting.
    by_name: Vec<usize>,
    superuser: usize,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    /// The built-in scopes alone.
    pub fn new() -> Self {
        Self::with_custom(&[])
    }

    /// The built-in scopes and `custom`. Rows that could not have been admitted (a built-in
    /// resource, a repeated name) are skipped rather than trusted: the first of a name wins.
    pub fn with_custom(custom: &[CustomScope]) -> Self {
        let mut rows: Vec<(Scope, String, bool, bool)> = BUILTIN
            .iter()
            .map(|&(n, d, desc)| {
                (
                    Scope::parse(n).expect("built-in scope"),
                    desc.to_owned(),
                    d,
                    true,
                )
            })
            .collect();
        let mut own: Vec<&CustomScope> = custom
            .iter()
            .filter(|c| !is_builtin_resource(c.name.resource()))
            .collect();
        own.sort_by(|a, b| a.name.cmp(&b.name));
        own.dedup_by(|b, a| a.name == b.name);
        rows.extend(
            own.into_iter()
                .map(|c| (c.name.clone(), c.description.clone(), c.dangerous, false)),
        );

        let index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.0.as_str().to_owned(), i))
            .collect();
        let superuser = index[SUPERUSER];
        let implies: Vec<Vec<usize>> = rows
            .iter()
            .enumerate()
            .map(|(i, (scope, ..))| {
                if i == superuser {
                    return (0..rows.len()).filter(|&j| j != i).collect();
                }
                let mut out = Vec::new();
                if scope.action() == "admin" {
                    for action in ["read", "write", "delete"] {
                        if let Some(&j) = index.get(&format!("{}:{action}", scope.resource())) {
                            out.push(j);
                        }
                    }
                }
                if scope.as_str() == "export:read-all" {
                    out.push(index["export:read"]);
                }
                out
            })
            .collect();
        let mut by_name: Vec<usize> = (0..rows.len()).collect();
        by_name.sort_by(|&a, &b| rows[a].0.cmp(&rows[b].0));

        let entries = rows
            .iter()
            .zip(&implies)
            .map(
                |((scope, description, dangerous, builtin), imp)| CatalogEntry {
                    name: scope.as_str().to_owned(),
                    description: description.clone(),
                    dangerous: *dangerous,
                    implies: imp.iter().map(|&j| rows[j].0.as_str().to_owned()).collect(),
                    builtin: *builtin,
                },
            )
            .collect();
        Catalog {
            entries,
            scopes: rows.into_iter().map(|r| r.0).collect(),
            index,
            implies,
            by_name,
            superuser,
        }
    }

    /// Built-ins first (in `API.md`'s order), then custom scopes by name.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Checks scopes given to a key, grant or role: each must be a valid name (400) and exist
    /// in this catalog (400 naming the unknown scope and `field`). Duplicates collapse.
    pub fn validate<S: AsRef<str>>(&self, scopes: &[S], field: &str) -> Result<ScopeSet, Error> {
        let set = ScopeSet::parse(scopes, field)?;
        // Report the first unknown one in the order given.
        if let Some(unknown) = scopes.iter().map(AsRef::as_ref).find(|s| !self.contains(s)) {
            return Err(Error::invalid(
                field,
                format!("{field}: unknown scope \"{unknown}\" (not in this workspace's catalog)"),
            ));
        }
        Ok(set)
    }

    /// Checks a scope a workspace wants to add: [`CustomScope::new`]'s rules, then 409
    /// `scope_exists` when the name is already in the catalog.
    pub fn admit(
        &self,
        name: &str,
        description: &str,
        dangerous: bool,
    ) -> Result<CustomScope, Error> {
        let custom = CustomScope::new(name, description, dangerous)?;
        if self.contains(custom.name.as_str()) {
            return Err(Error::conflict(
                "scope_exists",
                format!("scope {} already exists", custom.name),
            ));
        }
        Ok(custom)
    }

    /// Checks that `name` is a custom scope the workspace may delete: 400 for a built-in one,
    /// 404 `scope` when there is no such scope.
    pub fn check_deletable(&self, name: &str) -> Result<(), Error> {
        match self.get(name) {
            Some(e) if e.builtin => Err(Error::invalid(
                "name",
                format!("name: {name} is a built-in scope and cannot be deleted"),
            )),
            Some(_) => Ok(()),
            None => Err(Error::NotFound { what: "scope" }),
        }
    }

    /// See [`super::scopeset::closure`].
    pub(crate) fn close(&self, set: &ScopeSet) -> ScopeSet {
        let n = self.entries.len();
        let mut seen = vec![false; n];
        let mut stack: Vec<usize> = Vec::with_capacity(n);
        for s in set {
            if let Some(&i) = self.index.get(s.as_str())
                && !seen[i]
            {
                seen[i] = true;
                stack.push(i);
            }
        }
        if seen[self.superuser] {
            seen.iter_mut().for_each(|b| *b = true);
        } else {
            while let Some(i) = stack.pop() {
                for &j in &self.implies[i] {
                    if !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        ScopeSet::from_sorted(
            self.by_name
                .iter()
                .filter(|&&i| seen[i])
                .map(|&i| self.scopes[i].clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(name: &str) -> CustomScope {
        CustomScope::new(name, "d", false).unwrap()
    }

    fn invalid(e: Error) -> (String, String) {
        match e {
            Error::Invalid { field, message } => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn builtin_table_is_api_md() {
        let got: Vec<(&str, bool)> = builtin()
            .iter()
            .map(|e| (e.name.as_str(), e.dangerous))
            .collect();
        assert_eq!(
            got,
            [
                ("workspace:read", false),
                ("workspace:write", false),
                ("workspace:delete", true),
                ("members:read", false),
                ("members:write", false),
                ("members:admin", true),
                ("keys:read", false),
                ("keys:write", false),
                ("keys:delete", false),
                ("keys:reveal", true),
                ("apps:read", false),
                ("apps:write", false),
                ("webhooks:read", false),
                ("webhooks:write", false),
                ("audit:read", false),
                ("export:read", false),
                ("export:read-all", true),
                ("admin:superuser", true),
            ]
        );
        for e in builtin() {
            assert!(e.builtin);
            assert!(!e.description.is_empty() && !e.description.contains('\n'));
            assert!(Scope::is_valid(&e.name));
        }
        assert!(std::ptr::eq(builtin(), builtin()), "built once");
    }

    #[test]
    fn builtin_implications() {
        let imp = |n: &str| {
            builtin()
                .iter()
                .find(|e| e.name == n)
                .unwrap()
                .implies
                .clone()
        };
        assert_eq!(imp("members:admin"), ["members:read", "members:write"]);
        assert_eq!(imp("export:read-all"), ["export:read"]);
        let su = imp("admin:superuser");
        assert_eq!(su.len(), builtin().len() - 1);
        assert!(!su.contains(&SUPERUSER.to_owned()));
        for e in builtin() {
            if e.name != "members:admin" && e.name != "export:read-all" && e.name != SUPERUSER {
                assert!(e.implies.is_empty(), "{} implies {:?}", e.name, e.implies);
            }
        }
    }

    #[test]
    fn custom_scopes_follow_builtins_by_name_with_admin_implications() {
        let c = Catalog::with_custom(&[
            custom("chats:write"),
            custom("chats:admin"),
            custom("chats:read"),
            custom("billing:admin"),
            custom("chats:export"),
        ]);
        let names: Vec<&str> = c.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            &names[..18],
            builtin()
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            &names[18..],
            [
                "billing:admin",
                "chats:admin",
                "chats:export",
                "chats:read",
                "chats:write"
            ]
        );
        assert_eq!(
            c.get("chats:admin").unwrap().implies,
            ["chats:read", "chats:write"]
        );
        assert!(c.get("billing:admin").unwrap().implies.is_empty());
        assert!(!c.get("chats:read").unwrap().builtin);
        let su = &c.get(SUPERUSER).unwrap().implies;
        assert_eq!(su.len(), names.len() - 1);
        assert!(su.contains(&"chats:export".to_owned()));
        assert!(c.contains("chats:read") && !c.contains("chats:delete"));
    }

    #[test]
    fn with_custom_skips_rows_it_could_not_have_admitted() {
        let sneaky = CustomScope {
            name: Scope::parse("keys:steal").unwrap(),
            description: String::new(),
            dangerous: false,
        };
        let c = Catalog::with_custom(&[sneaky, custom("a:b"), custom("a:b")]);
        assert!(!c.contains("keys:steal"));
        assert_eq!(c.entries().len(), builtin().len() + 1);
    }

    #[test]
    fn custom_scope_rules() {
        for r in BUILTIN_RESOURCES {
            let (field, msg) =
                invalid(CustomScope::new(&format!("{r}:custom"), "", false).unwrap_err());
            assert_eq!(field, "name");
            assert!(msg.contains("reserved"), "{msg}");
        }
        let (field, _) = invalid(CustomScope::new("Chats:read", "", false).unwrap_err());
        assert_eq!(field, "name");
        let (field, _) =
            invalid(CustomScope::new("chats:read", &"x".repeat(257), false).unwrap_err());
        assert_eq!(field, "description");
        let (field, _) = invalid(CustomScope::new("chats:read", "two\nlines", false).unwrap_err());
        assert_eq!(field, "description");
        assert!(CustomScope::new("chats:read", &"é".repeat(256), true).is_ok());
    }

    #[test]
    fn admit_and_delete() {
        let c = Catalog::with_custom(&[custom("chats:read")]);
        assert!(matches!(
            c.admit("chats:read", "", false),
            Err(Error::Conflict {
                code: "scope_exists",
                ..
            })
        ));
        assert!(c.admit("chats:write", "Send chats", false).is_ok());
        assert!(c.check_deletable("chats:read").is_ok());
        assert!(matches!(
            c.check_deletable("keys:read"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            c.check_deletable("chats:nope"),
            Err(Error::NotFound { what: "scope" })
        ));
    }

    #[test]
    fn validate_collapses_and_names_unknown_scopes() {
        let c = Catalog::with_custom(&[custom("chats:read")]);
        let s = c
            .validate(&["keys:read", "chats:read", "keys:read"], "scopes")
            .unwrap();
        assert_eq!(s.names(), ["chats:read", "keys:read"]);
        let (field, msg) = invalid(
            c.validate(&["keys:read", "chats:write"], "scopes")
                .unwrap_err(),
        );
        assert_eq!(field, "scopes");
        assert!(
            msg.contains("\"chats:write\"") && msg.contains("scopes"),
            "{msg}"
        );
        let (field, msg) = invalid(c.validate(&["bad scope"], "grant.scopes").unwrap_err());
        assert_eq!(field, "grant.scopes");
        assert!(msg.contains("\"bad scope\""), "{msg}");
        assert!(c.validate::<&str>(&[], "scopes").unwrap().is_empty());
    }

    #[test]
    fn entries_serialize_for_the_scopes_endpoint() {
        let v = serde_json::to_value(builtin_catalog().get("export:read-all").unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "name": "export:read-all",
                "description": "Export the workspace with sensitive data; implies export:read",
                "dangerous": true,
                "implies": ["export:read"],
                "builtin": true,
            })
        );
    }
}
