//! The JWT signing keys: generated on first start, stored sealed under the master key, the
//! newest one signs, and every key young enough to have signed a live token stays published.

use std::sync::{Arc, RwLock};

use crate::crypto::jwt::{self, AccessClaims, JwtError, SigningKey, VerifyingKey};
use crate::crypto::seal;
use crate::error::Error;
use crate::model::StoredSigningKey;
use crate::secret::MasterKey;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

pub const SEAL_PURPOSE: &str = "jwt-signing-key";
/// A new signing key is made when the newest is older than this.
pub const ROTATE_AFTER_SECS: i64 = 30 * 86_400;

pub struct Keyring {
    keys: RwLock<Arc<Vec<SigningKey>>>,
    /// Keys older than this many seconds past their successor's creation are dropped from JWKS.
    access_ttl_secs: i64,
}

impl Keyring {
    pub fn empty(access_ttl_secs: i64) -> Self {
        Self {
            keys: RwLock::new(Arc::new(Vec::new())),
            access_ttl_secs,
        }
    }

    /// Loads the stored keys; makes (and stores) a new one when none is younger than
    /// [`ROTATE_AFTER_SECS`]. Safe with several nodes starting at once: all end up signing with
    /// the newest stored key.
    pub async fn refresh(
        &self,
        store: &dyn Store,
        master: &MasterKey,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut stored = store.signing_keys().await?;
        let newest = stored.iter().map(|k| k.created_at).max();
        if newest.is_none_or(|t| now.millis() - t.millis() > ROTATE_AFTER_SECS * 1000) {
            let key = SigningKey::generate(now).map_err(|e| Error::Internal(e.to_string()))?;
            let record = StoredSigningKey {
                kid: key.kid().to_owned(),
                sealed_private: seal::seal(master, SEAL_PURPOSE, key.pkcs8()),
                created_at: now,
            };
            match store.insert_signing_key(&record).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            stored = store.signing_keys().await?;
        }
        let mut keys = Vec::with_capacity(stored.len());
        for record in &stored {
            let pkcs8 = seal::open(master, SEAL_PURPOSE, &record.sealed_private).map_err(|_| {
                Error::Internal(format!(
                    "signing key {} cannot be opened with this master key",
                    record.kid
                ))
            })?;
            keys.push(
                SigningKey::from_pkcs8(&pkcs8, record.created_at)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            );
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at()));
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<SigningKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, Error> {
        let keys = self.snapshot();
        let key = keys
            .first()
            .ok_or_else(|| Error::Internal("no signing key loaded".into()))?;
        Ok(jwt::sign(key, claims))
    }

    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        now: Timestamp,
    ) -> Result<AccessClaims, JwtError> {
        let keys = self.snapshot();
        jwt::verify(
            token,
            |kid| {
                keys.iter()
                    .find(|k| k.kid() == kid)
                    .map(SigningKey::verifying_key)
            },
            issuer,
            issuer,
            now,
        )
    }

    /// The published keys: the newest, and each older one until every token it could have
    /// signed has expired (its successor's creation + the access-token lifetime).
    pub fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let keys = self.snapshot();
        let mut out: Vec<serde_json::Value> = Vec::new();
        let mut successor: Option<Timestamp> = None;
        for key in keys.iter() {
            let live = successor
                .is_none_or(|s| now.millis() < s.millis() + self.access_ttl_secs * 1000 + 60_000);
            if live {
                out.push(key.public_jwk());
            }
            successor = Some(key.created_at());
        }
        serde_json::json!({ "keys": out })
    }

    pub fn verifying_keys(&self) -> Vec<VerifyingKey> {
        self.snapshot()
            .iter()
            .map(SigningKey::verifying_key)
            .collect()
    }
}
