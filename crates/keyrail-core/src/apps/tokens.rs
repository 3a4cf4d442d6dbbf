//! The two layers of an app token, and the server keys of the inner one.
//!
//! - The inner `api_token` is a compact JWE (`dir`, `A256GCM`, with a `kid`) under a key only the
//!   server holds. Its payload names the grant, the app, the workspace, the member, the app's
//!   secret generation and the expiry; the server checks them all against the store on every use.
//! - The outer token is a compact JWE (`dir`, `A128GCM`) under the app's 16-byte client secret,
//!   carrying `{api_token, grant_id, workspace_id, member_id, scopes, exp}` for the app to read.
//!
//! Server keys are random 32-byte keys sealed under the master key in the store. A new one is
//! made when the newest is older than [`ROTATE_AFTER_SECS`]; older keys stay loaded so tokens made
//! just before a rotation keep working until they expire.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::jwe::{self, Enc};
use crate::crypto::{b64url_encode, fill_random_or_panic, seal};
use crate::error::Error;
use crate::model::StoredTokenKey;
use crate::secret::MasterKey;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

const SEAL_PURPOSE: &str = "app-token-key";
/// A new server key every 30 days.
pub const ROTATE_AFTER_SECS: i64 = 30 * 86_400;

/// What the inner token carries (short field names: it travels on every request).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InnerClaims {
    /// Grant id.
    pub gid: String,
    /// The app's client id.
    pub cid: String,
    /// Workspace id.
    pub ws: String,
    /// Member id.
    pub mid: String,
    /// The app's secret generation when the token was made.
    pub sgen: i64,
    pub iat: i64,
    /// Unix seconds.
    pub exp: i64,
    /// The resource the token is for (RFC 8707): absent for tokens of the API (made by
    /// `POST /apps/token`), `<public_url>/mcp` for tokens made by the OAuth server. A token is
    /// accepted only where its audience is the one asked for, so neither kind works in the
    /// other's place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What the app decrypts from the outer layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OuterClaims {
    pub api_token: String,
    pub grant_id: String,
    pub workspace_id: String,
    pub member_id: String,
    pub scopes: Vec<String>,
    pub exp: i64,
}

struct LoadedKey {
    kid: String,
    key: Zeroizing<Vec<u8>>,
    created_at: Timestamp,
}

/// The server's inner-token keys, loaded from the store.
#[derive(Default)]
pub struct TokenKeys {
    keys: RwLock<Arc<Vec<LoadedKey>>>,
}

impl TokenKeys {
    /// Loads the stored keys, making (and storing) a new one when none is younger than
    /// [`ROTATE_AFTER_SECS`]. Several nodes starting at once all end up with the same newest key.
    pub async fn refresh(
        &self,
        store: &dyn Store,
        master: &MasterKey,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut stored = store.token_keys().await?;
        let newest = stored.iter().map(|k| k.created_at).max();
        if newest.is_none_or(|t| now.millis() - t.millis() > ROTATE_AFTER_SECS * 1000) {
            let mut key = Zeroizing::new([0u8; 32]);
            fill_random_or_panic(key.as_mut());
            let mut kid = [0u8; 12];
            fill_random_or_panic(&mut kid);
            let record = StoredTokenKey {
                kid: b64url_encode(&kid),
                sealed_key: seal::seal(master, SEAL_PURPOSE, key.as_ref()),
                created_at: now,
            };
            match store.insert_token_key(&record).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            stored = store.token_keys().await?;
        }
        let mut keys = Vec::with_capacity(stored.len());
        for record in stored {
            let key = seal::open(master, SEAL_PURPOSE, &record.sealed_key).map_err(|_| {
                Error::Internal(format!(
                    "app token key {} cannot be opened with this master key",
                    record.kid
                ))
            })?;
            if key.len() != Enc::A256Gcm.key_len() {
                return Err(Error::Internal(format!(
                    "app token key {} has the wrong length",
                    record.kid
                )));
            }
            keys.push(LoadedKey {
                kid: record.kid,
                key,
                created_at: record.created_at,
            });
        }
        keys.sort_by_key(|k| k.created_at);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<LoadedKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Encrypts inner claims under the newest key.
    pub fn seal_inner(&self, claims: &InnerClaims) -> Result<String, Error> {
        let keys = self.snapshot();
        let newest = keys
            .last()
            .ok_or_else(|| Error::Internal("no app token key is loaded".into()))?;
        let json = serde_json::to_vec(claims).map_err(|e| Error::Internal(e.to_string()))?;
        jwe::encrypt(Enc::A256Gcm, &newest.key, Some(&newest.kid), &json)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Decrypts an inner token. `Ok(None)` when its `kid` is not loaded (made by another node
    /// after a rotation this node has not loaded yet); `Err` when it is not a valid token.
    pub fn open_inner(&self, token: &str) -> Result<Option<InnerClaims>, Error> {
        let parsed = jwe::parse(token).map_err(|_| Error::invalid_token())?;
        let kid = parsed.kid.clone().ok_or_else(Error::invalid_token)?;
        let keys = self.snapshot();
        let Some(key) = keys.iter().find(|k| k.kid == kid) else {
            return Ok(None);
        };
        let plain = parsed
            .decrypt(Enc::A256Gcm, &key.key)
            .map_err(|_| Error::invalid_token())?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| Error::invalid_token())
    }
}

/// Encrypts the outer layer under the app's 16-byte secret.
pub fn seal_outer(secret: &[u8], claims: &OuterClaims) -> Result<String, Error> {
    let json = serde_json::to_vec(claims).map_err(|e| Error::Internal(e.to_string()))?;
    jwe::encrypt(Enc::A128Gcm, secret, None, &json).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> InnerClaims {
        InnerClaims {
            gid: "grt_x".into(),
            cid: "kr_app_y".into(),
            ws: "ws_z".into(),
            mid: "mem_w".into(),
            sgen: 3,
            iat: 100,
            exp: 400,
            aud: None,
        }
    }

    fn loaded(kid: &str, byte: u8) -> LoadedKey {
        LoadedKey {
            kid: kid.into(),
            key: Zeroizing::new(vec![byte; 32]),
            created_at: Timestamp::from_millis(i64::from(byte)),
        }
    }

    #[test]
    fn inner_tokens_open_with_any_loaded_key_and_seal_with_the_newest() {
        let keys = TokenKeys::default();
        *keys.keys.write().unwrap() = Arc::new(vec![loaded("old", 1)]);
        let old_token = keys.seal_inner(&claims()).unwrap();
        *keys.keys.write().unwrap() = Arc::new(vec![loaded("old", 1), loaded("new", 2)]);
        let new_token = keys.seal_inner(&claims()).unwrap();
        assert_eq!(
            jwe::parse(&new_token).unwrap().kid.as_deref(),
            Some("new"),
            "new tokens use the newest key"
        );
        assert_eq!(keys.open_inner(&old_token).unwrap(), Some(claims()));
        assert_eq!(keys.open_inner(&new_token).unwrap(), Some(claims()));
        *keys.keys.write().unwrap() = Arc::new(vec![loaded("new", 2)]);
        assert_eq!(keys.open_inner(&old_token).unwrap(), None, "unknown kid");
        // Same kid, other key: the tag fails.
        *keys.keys.write().unwrap() = Arc::new(vec![loaded("new", 9)]);
        assert!(keys.open_inner(&new_token).is_err());
        assert!(keys.open_inner("eyJhbGciOiJkaXIifQ..a.b.c").is_err());
    }

    #[test]
    fn outer_layer_opens_with_the_client_secret() {
        let secret = [5u8; 16];
        let outer = OuterClaims {
            api_token: "inner".into(),
            grant_id: "grt_x".into(),
            workspace_id: "ws_z".into(),
            member_id: "mem_w".into(),
            scopes: vec!["workspace:read".into()],
            exp: 400,
        };
        let token = seal_outer(&secret, &outer).unwrap();
        let header = jwe::parse(&token).unwrap();
        assert_eq!((header.enc, header.kid.clone()), (Enc::A128Gcm, None));
        let plain = header.decrypt(Enc::A128Gcm, &secret).unwrap();
        let back: OuterClaims = serde_json::from_slice(&plain).unwrap();
        assert_eq!(back.api_token, "inner");
        assert_eq!(back.scopes, ["workspace:read"]);
    }
}
