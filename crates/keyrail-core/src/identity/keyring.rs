//! The JWT signing keys: generated on first start, stored sealed under the master key, the
//! newest one signs, and every key young enough to have signed a live token stays published.

use std::sync::{Arc, RwLock};

use crate::crypto::jwt::{self, AccessClaims, JwtError, SigningKey, VerifyingKey};
use crate::crypto::seal;
use crate::error::Error;
use crate::model::StoredSigningKey;
use crate::reload_gate::ReloadGate;
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
    /// Throttles the reloads for a token whose `kid` this node does not hold.
    reloads: ReloadGate,
}

impl Keyring {
    pub fn empty(access_ttl_secs: i64) -> Self {
        Self {
            keys: RwLock::new(Arc::new(Vec::new())),
            access_ttl_secs,
            reloads: ReloadGate::default(),
        }
    }

    /// Loads the stored keys; when none is younger than [`ROTATE_AFTER_SECS`], makes a new one,
    /// which the store keeps only if no other node's rotation got there first (the decision is
    /// the store's, once for every node). Either way this node then signs with the newest
    /// stored key: it never signs with a key the others cannot find by its `kid`.
    pub async fn refresh(
        &self,
        store: &dyn Store,
        master: &MasterKey,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut stored = store.signing_keys().await?;
        let newest = stored.iter().map(|k| k.created_at).max();
        let fresh_after = Timestamp::from_millis(now.millis() - ROTATE_AFTER_SECS * 1000);
        if newest.is_none_or(|t| t.millis() < fresh_after.millis()) {
            let key = SigningKey::generate(now).map_err(|e| Error::Internal(e.to_string()))?;
            let record = StoredSigningKey {
                kid: key.kid().to_owned(),
                sealed_private: seal::seal(master, SEAL_PURPOSE, key.pkcs8()),
                created_at: now,
            };
            match store.rotate_signing_key(&record, fresh_after).await {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            stored = store.signing_keys().await?;
        }
        self.install(open_all(master, &stored)?);
        Ok(())
    }

    fn install(&self, mut keys: Vec<SigningKey>) {
        keys.sort_by(|a, b| {
            b.created_at()
                .cmp(&a.created_at())
                .then_with(|| a.kid().cmp(b.kid()))
        });
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
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

    /// Checks an access token; one signed with a key this node does not hold (another node may
    /// have just made it) reloads the keys from the store first, at most once a second per node
    /// (see [`ReloadGate`]). A `kid` still unknown after that is `invalid_token`.
    pub async fn verify_or_reload(
        &self,
        token: &str,
        issuer: &str,
        now: Timestamp,
        store: &dyn Store,
        master: &MasterKey,
    ) -> Result<AccessClaims, Error> {
        self.verify_reloading(token, issuer, now, async || {
            open_all(master, &store.signing_keys().await?)
        })
        .await
    }

    async fn verify_reloading(
        &self,
        token: &str,
        issuer: &str,
        now: Timestamp,
        load: impl AsyncFnOnce() -> Result<Vec<SigningKey>, Error>,
    ) -> Result<AccessClaims, Error> {
        match self.verify(token, issuer, now) {
            Err(JwtError::UnknownKey) => {
                self.reloads
                    .reload(now, async || {
                        self.install(load().await?);
                        Ok::<(), Error>(())
                    })
                    .await?;
                self.verify(token, issuer, now)
                    .map_err(|_| Error::invalid_token())
            }
            other => other.map_err(|_| Error::invalid_token()),
        }
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

/// Opens the stored keys with the master key.
fn open_all(master: &MasterKey, stored: &[StoredSigningKey]) -> Result<Vec<SigningKey>, Error> {
    let mut keys = Vec::with_capacity(stored.len());
    for record in stored {
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
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::crypto::b64url_encode;

    const ISS: &str = "https://keyrail.example";

    fn claims(now: Timestamp) -> AccessClaims {
        let iat = now.millis() / 1000;
        AccessClaims {
            iss: ISS.into(),
            aud: ISS.into(),
            sub: "usr_x".into(),
            sid: "ses_x".into(),
            iat,
            exp: iat + 900,
            jti: "j".into(),
        }
    }

    /// `token` with its header naming `kid` instead (the signature no longer matches).
    fn with_kid(token: &str, kid: &str) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let rest = token.split_once('.').unwrap().1;
        format!("{}.{rest}", b64url_encode(header.to_string().as_bytes()))
    }

    fn copy(key: &SigningKey) -> SigningKey {
        SigningKey::from_pkcs8(key.pkcs8(), key.created_at()).unwrap()
    }

    /// A token signed with a key made elsewhere reloads the keys once; forged `kid`s after it
    /// reload nothing within the second, and one a second at most after that.
    #[tokio::test]
    async fn unknown_kids_reload_at_most_once_a_second() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let here = SigningKey::generate(now).unwrap();
        let elsewhere = SigningKey::generate(now.plus_secs(1)).unwrap();
        let ring = Keyring::empty(900);
        ring.install(vec![copy(&here)]);
        let loads = AtomicU32::new(0);
        let check = async |token: &str, at: Timestamp| {
            ring.verify_reloading(token, ISS, at, async || {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(vec![copy(&here), copy(&elsewhere)])
            })
            .await
        };

        let theirs = jwt::sign(&elsewhere, &claims(now));
        assert!(ring.verify(&theirs, ISS, now).is_err(), "not loaded yet");
        assert_eq!(check(&theirs, now).await.unwrap().sub, "usr_x");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(
            jwt::verify(
                &ring.sign(&claims(now)).unwrap(),
                |_| Some(elsewhere.verifying_key()),
                ISS,
                ISS,
                now
            )
            .is_ok(),
            "the newest key signs"
        );

        let forged: Vec<String> = (0..100)
            .map(|i| with_kid(&theirs, &format!("kid-{i}")))
            .collect();
        for t in &forged {
            assert!(matches!(
                check(t, now).await,
                Err(Error::Unauthenticated {
                    code: "invalid_token",
                    ..
                })
            ));
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "no reload within the second"
        );

        let later = Timestamp::from_millis(now.millis() + 1000);
        for t in &forged {
            assert!(check(t, later).await.is_err());
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2, "one reload a second later");
        // Known keys need no reload at all.
        assert!(check(&theirs, later).await.is_ok());
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
