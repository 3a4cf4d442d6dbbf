//! API-key management: create, list, get, update (incl. disable/enable), revoke, rotate,
//! reveal and import. Every change evicts the key from this node's verify cache before it
//! returns, and is announced through the change log for the other nodes.

use std::sync::Arc;

use serde_json::json;

use crate::audit::{self, RequestMeta};
use crate::authz::{self, GrantTarget};
use crate::clock::Clock;
use crate::crypto::{seal, token};
use crate::error::Error;
use crate::events::OutboxEvent;
use crate::id::KeyId;
use crate::keys::format;
use crate::keys::verify::KeyVerifier;
use crate::model::{ApiKey, AuditEntry, KeyChanges, KeyFilter, KeyRateLimit, Page};
use crate::secret::{MasterKey, Secret};
use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use crate::workspaces::Access;

const SEAL_PURPOSE: &str = "api-key";
pub const MAX_META_BYTES: usize = 16 * 1024;
pub const MAX_IMPORT: usize = 1000;

/// What `POST W/keys` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_in_days: Option<u32>,
    pub rate_limit: Option<KeyRateLimit>,
    pub remaining: Option<i64>,
    pub meta: Option<serde_json::Value>,
    pub external_id: Option<String>,
    pub recoverable: bool,
}

/// What `PATCH W/keys/{id}` changes (absent = unchanged; `Some(None)` clears).
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Option<serde_json::Value>>,
    pub rate_limit: Option<Option<KeyRateLimit>>,
    pub remaining: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

/// One key of an import: the plaintext or its SHA-256.
#[derive(Debug, Clone, Default)]
pub struct ImportedKey {
    pub key: Option<Secret>,
    pub sha256: Option<String>,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub meta: Option<serde_json::Value>,
    pub external_id: Option<String>,
    pub rate_limit: Option<KeyRateLimit>,
    pub remaining: Option<i64>,
}

pub struct Keys {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: Arc<MasterKey>,
    pub verifier: Arc<KeyVerifier>,
}

/// A key is rotated once: its replacement is what gets rotated next.
fn already_rotated() -> Error {
    Error::conflict(
        "key_rotated",
        "This key was rotated already; rotate its replacement",
    )
}

fn not_found() -> Error {
    Error::NotFound { what: "key" }
}

fn revoked_key() -> Error {
    Error::conflict("key_revoked", "A revoked key cannot be rotated")
}

fn check_name(name: &str, field: &str) -> Result<String, Error> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 255 || n.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("{field} must be 1 to 255 characters"),
        ));
    }
    Ok(n.to_owned())
}

fn check_meta(meta: &Option<serde_json::Value>, field: &str) -> Result<(), Error> {
    if let Some(m) = meta {
        if !m.is_object() {
            return Err(Error::invalid(
                field,
                format!("{field} must be a JSON object or null"),
            ));
        }
        if m.to_string().len() > MAX_META_BYTES {
            return Err(Error::invalid(
                field,
                format!("{field} is larger than 16 KiB"),
            ));
        }
    }
    Ok(())
}

fn check_rate(rate: &Option<KeyRateLimit>, field: &str) -> Result<(), Error> {
    if let Some(r) = rate
        && (r.limit == 0 || r.window_seconds == 0 || r.window_seconds > 86_400 * 30)
    {
        return Err(Error::invalid(
            field,
            format!("{field}: limit must be at least 1 and window_seconds 1 to 2592000"),
        ));
    }
    Ok(())
}

fn check_remaining(remaining: &Option<i64>, field: &str) -> Result<(), Error> {
    if remaining.is_some_and(|r| r < 0) {
        return Err(Error::invalid(field, format!("{field} must be 0 or more")));
    }
    Ok(())
}

fn check_external_id(id: &Option<String>, field: &str) -> Result<(), Error> {
    if let Some(e) = id
        && (e.is_empty() || e.chars().count() > 255 || e.chars().any(char::is_control))
    {
        return Err(Error::invalid(
            field,
            format!("{field} must be 1 to 255 characters"),
        ));
    }
    Ok(())
}

/// The shortest plaintext key an import takes: anything shorter can be guessed.
pub const MIN_IMPORTED_KEY_LEN: usize = 16;
pub const MAX_IMPORTED_KEY_LEN: usize = 512;

/// A plaintext key an import takes: the shape verify can accept (printable ASCII, no spaces)
/// and long enough not to be guessed.
pub fn importable_key(key: &str) -> bool {
    (MIN_IMPORTED_KEY_LEN..=MAX_IMPORTED_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The key's scopes that its workspace's catalog still has (a deleted scope gives nothing).
fn live_scopes(access: &Access, key: &ApiKey) -> authz::ScopeSet {
    let live: Vec<&String> = key
        .scopes
        .iter()
        .filter(|s| access.catalog.contains(s))
        .collect();
    authz::ScopeSet::parse(&live, "scopes").unwrap_or_default()
}

impl Keys {
    /// The audit entry of an action on a key, for the store to write with the change.
    fn audit_entry(
        &self,
        access: &Access,
        meta: &RequestMeta,
        action: &str,
        target: Option<String>,
        at: Timestamp,
    ) -> AuditEntry {
        audit::entry(
            at,
            meta,
            Some(access.workspace.id.clone()),
            access.actor.audit_actor(),
            action,
            target,
            true,
        )
    }

    /// The webhook event of a change, for the store to write with it.
    fn event(access: &Access, kind: &'static str, data: serde_json::Value) -> OutboxEvent {
        OutboxEvent::new(kind, data, access.workspace.id.clone())
    }

    fn validate_scopes(
        &self,
        access: &Access,
        scopes: &[String],
        field: &str,
    ) -> Result<Vec<String>, Error> {
        let set = access.catalog.validate(scopes, field)?;
        authz::authorize_grant(&access.effective, &set, &access.catalog, GrantTarget::Key)?;
        Ok(set.names())
    }

    /// Nobody acts on a key that could do more than they could grant: revealing it would hand
    /// its scopes over, and changing, disabling, rotating or revoking it would let a weaker
    /// member interfere with a stronger one's credential. Scopes the catalog no longer has give
    /// nothing and are left out.
    fn require_holds(&self, access: &Access, key: &ApiKey) -> Result<(), Error> {
        authz::can_grant(
            &access.effective,
            &live_scopes(access, key),
            &access.catalog,
        )
    }

    /// Creates a key; the secret is returned this once.
    pub async fn create(
        &self,
        access: &Access,
        meta: &RequestMeta,
        input: NewKey,
    ) -> Result<(ApiKey, Secret), Error> {
        access.require(&["keys:write"])?;
        let name = check_name(&input.name, "name")?;
        let scopes = self.validate_scopes(access, &input.scopes, "scopes")?;
        if let Some(days) = input.expires_in_days
            && !(1..=365).contains(&days)
        {
            return Err(Error::invalid(
                "expires_in_days",
                "expires_in_days must be 1 to 365, or null for never",
            ));
        }
        check_rate(&input.rate_limit, "rate_limit")?;
        check_remaining(&input.remaining, "remaining")?;
        check_meta(&input.meta, "meta")?;
        check_external_id(&input.external_id, "external_id")?;
        let now = self.clock.now();
        let secret = format::generate(&access.workspace.key_format);
        let key = ApiKey {
            id: KeyId::new(),
            workspace_id: access.workspace.id.clone(),
            name,
            prefix: format::display_prefix(secret.expose()),
            hash: token::sha256_hex(secret.expose().as_bytes()),
            scopes,
            created_at: now,
            created_by: Some(access.actor.reference()),
            updated_at: now,
            expires_at: input
                .expires_in_days
                .map(|d| now.plus_secs(i64::from(d) * 86_400)),
            revoked_at: None,
            disabled: false,
            last_used_at: None,
            rate_limit: input.rate_limit,
            remaining: input.remaining,
            meta: input.meta,
            external_id: input.external_id,
            sealed_key: input
                .recoverable
                .then(|| seal::seal(&self.master, SEAL_PURPOSE, secret.expose().as_bytes())),
            replaced_by: None,
        };
        let entry = self
            .audit_entry(access, meta, "key.create", Some(key.id.to_string()), now)
            .with_event(Self::event(
                access,
                "key.created",
                json!({"key_id": key.id, "name": key.name, "prefix": key.prefix}),
            ));
        self.store.insert_key(&key, Some(&entry)).await?;
        self.verifier.evict_hex(&key.hash);
        Ok((key, secret))
    }

    pub async fn list(
        &self,
        access: &Access,
        filter: &KeyFilter,
        page: &Page,
    ) -> Result<Vec<ApiKey>, Error> {
        access.require(&["keys:read"])?;
        Ok(self
            .store
            .list_keys(&access.workspace.id, filter, self.clock.now(), page)
            .await?)
    }

    async fn find(&self, access: &Access, id: &str) -> Result<ApiKey, Error> {
        let id = KeyId::parse(id).ok_or_else(not_found)?;
        self.store
            .key_by_id(&access.workspace.id, &id)
            .await?
            .ok_or_else(not_found)
    }

    pub async fn get(&self, access: &Access, id: &str) -> Result<ApiKey, Error> {
        access.require(&["keys:read"])?;
        self.find(access, id).await
    }

    pub async fn update(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
        patch: KeyPatch,
    ) -> Result<ApiKey, Error> {
        access.require(&["keys:write"])?;
        let key = self.find(access, id).await?;
        self.require_holds(access, &key)?;
        // Only what the request names is written: a concurrent change of another field (a
        // disable, a scope reduction, credits spent by verifies) stays.
        let mut changes = KeyChanges::default();
        if let Some(name) = &patch.name {
            changes.name = Some(check_name(name, "name")?);
        }
        if let Some(scopes) = &patch.scopes {
            changes.scopes = Some(self.validate_scopes(access, scopes, "scopes")?);
        }
        if let Some(m) = patch.meta {
            check_meta(&m, "meta")?;
            changes.meta = Some(m);
        }
        if let Some(r) = patch.rate_limit {
            check_rate(&r, "rate_limit")?;
            changes.rate_limit = Some(r);
        }
        if let Some(r) = patch.remaining {
            check_remaining(&r, "remaining")?;
            changes.remaining = Some(r);
        }
        if let Some(enabled) = patch.enabled {
            changes.disabled = Some(!enabled);
        }
        let now = self.clock.now();
        let entry = self.audit_entry(access, meta, "key.update", Some(key.id.to_string()), now);
        let saved = self
            .store
            .patch_key(&key.workspace_id, &key.id, &changes, now, &entry)
            .await;
        // Evict whatever happened: the cache must not outlive a change, even a failed one.
        self.verifier.evict_hex(&key.hash);
        saved?.ok_or_else(not_found)
    }

    /// Irreversible and immediate.
    pub async fn revoke(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
    ) -> Result<ApiKey, Error> {
        access.require(&["keys:delete"])?;
        let key = self.find(access, id).await?;
        self.require_holds(access, &key)?;
        let now = self.clock.now();
        if key.revoked_at.is_some_and(|t| t <= now) {
            return Ok(key);
        }
        let entry = self
            .audit_entry(access, meta, "key.revoke", Some(key.id.to_string()), now)
            .with_event(Self::event(
                access,
                "key.revoked",
                json!({"key_id": key.id, "name": key.name, "prefix": key.prefix}),
            ));
        let revoked = self
            .store
            .revoke_key(&key.workspace_id, &key.id, now, &entry)
            .await;
        self.verifier.evict_hex(&key.hash);
        let Some(key) = revoked? else {
            // Revoked meanwhile (by a concurrent request, which announced it), or gone.
            return self.find(access, id).await;
        };
        Ok(key)
    }

    /// A new key with the same settings; the old one stops now or after `grace_seconds`.
    pub async fn rotate(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
        grace_seconds: u32,
    ) -> Result<(ApiKey, Secret), Error> {
        access.require(&["keys:write"])?;
        if grace_seconds > 86_400 {
            return Err(Error::invalid(
                "grace_seconds",
                "grace_seconds must be 0 to 86400",
            ));
        }
        let old = self.find(access, id).await?;
        let now = self.clock.now();
        if old.revoked_at.is_some_and(|t| t <= now) {
            return Err(revoked_key());
        }
        if old.replaced_by.is_some() {
            return Err(already_rotated());
        }
        // The new key carries the old one's scopes: the caller must be able to grant them.
        authz::authorize_grant(
            &access.effective,
            &live_scopes(access, &old),
            &access.catalog,
            GrantTarget::Key,
        )?;
        let secret = format::generate(&access.workspace.key_format);
        let new = ApiKey {
            id: KeyId::new(),
            prefix: format::display_prefix(secret.expose()),
            hash: token::sha256_hex(secret.expose().as_bytes()),
            created_at: now,
            created_by: Some(access.actor.reference()),
            updated_at: now,
            last_used_at: None,
            revoked_at: None,
            replaced_by: None,
            sealed_key: old
                .sealed_key
                .as_ref()
                .map(|_| seal::seal(&self.master, SEAL_PURPOSE, secret.expose().as_bytes())),
            ..old.clone()
        };
        let entry = self
            .audit_entry(access, meta, "key.rotate", Some(old.id.to_string()), now)
            .with_event(Self::event(
                access,
                "key.rotated",
                json!({"key_id": old.id, "new_key_id": new.id, "prefix": new.prefix,
                       "grace_seconds": grace_seconds}),
            ));
        let until = now.plus_secs(i64::from(grace_seconds));
        let rotated = self.store.rotate_key(&old.id, &new, until, &entry).await;
        self.verifier.evict_hex(&old.hash);
        // The new key as stored: it holds the credits the old one had left at that moment.
        let Some(new) = rotated? else {
            // Deleted or revoked meanwhile, or a concurrent rotation won.
            return Err(match self.find(access, id).await {
                Ok(k) if k.replaced_by.is_none() => revoked_key(),
                Ok(_) => already_rotated(),
                Err(e) => e,
            });
        };
        Ok((new, secret))
    }

    /// The plaintext of a recoverable key.
    pub async fn reveal(
        &self,
        access: &Access,
        meta: &RequestMeta,
        id: &str,
    ) -> Result<Secret, Error> {
        access.require(&["keys:reveal"])?;
        let key = self.find(access, id).await?;
        self.require_holds(access, &key)?;
        let Some(sealed) = &key.sealed_key else {
            return Err(Error::conflict(
                "not_recoverable",
                "This key was not created recoverable",
            ));
        };
        let plain = seal::open(&self.master, SEAL_PURPOSE, sealed)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| Error::Internal("sealed key is not UTF-8".into()))?;
        // A reveal changes nothing but is recorded before the secret is handed out.
        let entry = self.audit_entry(
            access,
            meta,
            "key.reveal",
            Some(key.id.to_string()),
            self.clock.now(),
        );
        self.store.insert_audit(&entry).await?;
        Ok(Secret::new(text))
    }

    /// Brings existing keys in without reissuing them: all or nothing.
    pub async fn import(
        &self,
        access: &Access,
        meta: &RequestMeta,
        keys: Vec<ImportedKey>,
    ) -> Result<Vec<KeyId>, Error> {
        access.require(&["keys:write"])?;
        if keys.is_empty() || keys.len() > MAX_IMPORT {
            return Err(Error::invalid("keys", "keys must hold 1 to 1000 entries"));
        }
        let now = self.clock.now();
        let mut records = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashMap::new();
        for (i, k) in keys.into_iter().enumerate() {
            let field = |f: &str| format!("keys[{i}].{f}");
            let (hash, prefix) = match (&k.key, &k.sha256) {
                (Some(plain), None) => {
                    let p = plain.expose();
                    if !importable_key(p) {
                        return Err(Error::invalid(
                            field("key"),
                            format!(
                                "{} must be {MIN_IMPORTED_KEY_LEN} to {MAX_IMPORTED_KEY_LEN} \
                                 printable ASCII characters without spaces",
                                field("key")
                            ),
                        ));
                    }
                    (token::sha256_hex(p.as_bytes()), format::display_prefix(p))
                }
                (None, Some(h)) => {
                    let h = h.to_ascii_lowercase();
                    if crate::keys::verify::digest_of_hex(&h).is_none() {
                        return Err(Error::invalid(
                            field("sha256"),
                            format!("{} must be 64 hex characters", field("sha256")),
                        ));
                    }
                    (h, String::new())
                }
                _ => {
                    return Err(Error::invalid(
                        format!("keys[{i}]"),
                        format!("keys[{i}]: give exactly one of key or sha256"),
                    ));
                }
            };
            if let Some(first) = seen.insert(hash.clone(), i) {
                return Err(Error::conflict(
                    "duplicate_key",
                    format!("keys[{i}] repeats keys[{first}]"),
                ));
            }
            let name = check_name(&k.name, &field("name"))?;
            let scopes = self.validate_scopes(access, &k.scopes, &field("scopes"))?;
            check_meta(&k.meta, &field("meta"))?;
            check_rate(&k.rate_limit, &field("rate_limit"))?;
            check_remaining(&k.remaining, &field("remaining"))?;
            check_external_id(&k.external_id, &field("external_id"))?;
            records.push(ApiKey {
                id: KeyId::new(),
                workspace_id: access.workspace.id.clone(),
                name,
                prefix,
                hash,
                scopes,
                created_at: now,
                created_by: Some(access.actor.reference()),
                updated_at: now,
                expires_at: k.expires_at,
                revoked_at: None,
                disabled: false,
                last_used_at: None,
                rate_limit: k.rate_limit,
                remaining: k.remaining,
                meta: k.meta,
                external_id: k.external_id,
                sealed_key: None,
                replaced_by: None,
            });
        }
        let entry = self.audit_entry(
            access,
            meta,
            "key.import",
            Some(format!("{} keys", records.len())),
            now,
        );
        match self.store.insert_keys(&records, &entry).await {
            Ok(()) => {}
            Err(StoreError::Conflict(what)) if what == "key hash" => {
                let hashes: Vec<String> = records.iter().map(|r| r.hash.clone()).collect();
                let existing = self.store.existing_key_hashes(&hashes).await?;
                let index = records.iter().position(|r| existing.contains(&r.hash));
                return Err(Error::conflict(
                    "duplicate_key",
                    match index {
                        Some(i) => format!("keys[{i}] already exists"),
                        None => "a key of this import already exists".to_owned(),
                    },
                ));
            }
            Err(e) => return Err(e.into()),
        }
        // This node forgets its unknown digests now; the others when they read the
        // `key.changed` entries the import appended.
        self.verifier.forget_unknown();
        Ok(records.into_iter().map(|r| r.id).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_take_only_keys_verify_can_accept() {
        assert!(importable_key("sk_live_0123456789abcdef"));
        assert!(importable_key(&"x".repeat(512)));
        for bad in [
            "a",
            "short_key_15chr",
            "has space in the middle",
            "tab\there_and_more_chars",
            "ключ_ключ_ключ_ключ",
            "fullwidth_ｋｅｙ_0123456789",
            "trailing_newline_0123\n",
        ] {
            assert!(!importable_key(bad), "{bad:?}");
        }
        assert!(!importable_key(&"x".repeat(513)));
    }

    proptest::proptest! {
        /// Whatever an import accepts is pure printable ASCII of a length verify handles.
        #[test]
        fn accepted_imports_are_printable_ascii(key in ".{0,600}") {
            if importable_key(&key) {
                proptest::prop_assert!(key.len() >= 16 && key.len() <= 512);
                proptest::prop_assert!(key.chars().all(|c| c.is_ascii_graphic()));
            }
        }
    }
}
