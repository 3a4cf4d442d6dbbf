//! Access tokens: compact JWS signed with Ed25519 (`alg` `EdDSA`, `typ` `at+jwt`, RFC 9068).
//!
//! Verification is strict and allow-lists one algorithm: anything whose header is not
//! `EdDSA` is refused before a key is even looked up, so `none`, `HS256` (with the public key
//! as HMAC secret) and friends cannot be smuggled in.

use std::fmt;

use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::{CryptoError, b64url_decode, b64url_encode};
use crate::time::Timestamp;

/// Longest token accepted by [`verify`].
pub const MAX_TOKEN_LEN: usize = 4096;
/// How far in the future `iat` may be (clock skew between instances).
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

const ALG: &str = "EdDSA";
const TYP: &str = "at+jwt";

/// An Ed25519 public key (32 bytes), as published in the JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey([u8; 32]);

impl VerifyingKey {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url) of this key.
    pub fn kid(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            b64url_encode(&self.0)
        );
        b64url_encode(&super::token::sha256(canonical.as_bytes()))
    }

    /// The public JWK: `{"kty":"OKP","crv":"Ed25519","x","kid","alg":"EdDSA","use":"sig"}`.
    pub fn jwk(&self) -> serde_json::Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url_encode(&self.0),
            "kid": self.kid(),
            "alg": ALG,
            "use": "sig",
        })
    }
}

/// An Ed25519 signing key: its PKCS#8 document (zeroed on drop), its key id and its creation
/// time. `Debug` shows the kid and the time only.
pub struct SigningKey {
    kid: String,
    pkcs8: Zeroizing<Vec<u8>>,
    public: VerifyingKey,
    created_at: Timestamp,
}

impl SigningKey {
    /// A fresh key pair. `created_at` comes from the caller's clock.
    pub fn generate(created_at: Timestamp) -> Result<Self, CryptoError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::Rng)?;
        Self::from_pkcs8(doc.as_ref(), created_at)
    }

    /// Loads a key from its PKCS#8 (v2, as made by [`SigningKey::generate`]) document, e.g.
    /// after opening the sealed copy stored in the database.
    pub fn from_pkcs8(pkcs8: &[u8], created_at: Timestamp) -> Result<Self, CryptoError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
        let public = VerifyingKey::from_slice(pair.public_key().as_ref())?;
        Ok(Self {
            kid: public.kid(),
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            public,
            created_at,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The private key document, to seal it for storage. Handle with care.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    /// The public JWK for `/.well-known/jwks.json`.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.public.jwk()
    }

    fn key_pair(&self) -> Ed25519KeyPair {
        match Ed25519KeyPair::from_pkcs8(&self.pkcs8) {
            Ok(pair) => pair,
            Err(_) => unreachable!("the PKCS#8 document was validated when the key was built"),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The claims of an access token. `iat` and `exp` are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a token was refused. All of these are a 401 `invalid_token` for the client; the variants
/// are for logs and tests and hold no part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    #[error("wrong token type")]
    WrongType,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("wrong token issuer")]
    WrongIssuer,
    #[error("wrong token audience")]
    WrongAudience,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    match serde_json::to_vec(value) {
        Ok(v) => v,
        Err(_) => unreachable!("strings and integers always serialize"),
    }
}

/// Parses a JSON object into `T`. serde would also read a struct from a JSON array, which JOSE
/// does not allow; duplicate members are refused by the derived deserializers.
fn json_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, JwtError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| JwtError::Malformed)
}

/// Signs `claims` as a compact JWS whose header is exactly
/// `{"alg":"EdDSA","typ":"at+jwt","kid":"<kid>"}`.
pub fn sign(key: &SigningKey, claims: &AccessClaims) -> String {
    let header = to_json(&HeaderOut {
        alg: ALG,
        typ: TYP,
        kid: &key.kid,
    });
    let mut token = b64url_encode(&header);
    token.push('.');
    token.push_str(&b64url_encode(&to_json(claims)));
    let sig = key.key_pair().sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64url_encode(sig.as_ref()));
    token
}

/// Verifies an access token: size, shape, header (`alg` must be `EdDSA`, `typ` `at+jwt`, no
/// `crit`), the key named by `kid` (looked up with `keys`), the signature, then the claims:
/// `iss` and `aud` equal the expected values, `exp` later than `now`, `iat` at most
/// [`MAX_CLOCK_SKEW_SECS`] ahead of `now`. Never panics, whatever the input.
pub fn verify<F>(
    token: &str,
    keys: F,
    expected_iss: &str,
    expected_aud: &str,
    now: Timestamp,
) -> Result<AccessClaims, JwtError>
where
    F: Fn(&str) -> Option<VerifyingKey>,
{
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };

    let header_bytes = b64url_decode(h64).ok_or(JwtError::Malformed)?;
    let header: HeaderIn = json_object(&header_bytes)?;
    if header.alg != ALG {
        return Err(JwtError::UnsupportedAlgorithm);
    }
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(JwtError::WrongType);
    }
    if header.crit.is_some() {
        return Err(JwtError::Malformed);
    }
    let kid = header.kid.ok_or(JwtError::UnknownKey)?;
    let key = keys(&kid).ok_or(JwtError::UnknownKey)?;

    let sig = b64url_decode(s64).ok_or(JwtError::Malformed)?;
    if sig.len() != 64 {
        return Err(JwtError::BadSignature);
    }
    let signed = &token[..h64.len() + 1 + p64.len()];
    signature::UnparsedPublicKey::new(&signature::ED25519, key.as_bytes())
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;

    let payload = b64url_decode(p64).ok_or(JwtError::Malformed)?;
    let claims: AccessClaims = json_object(&payload)?;
    if claims.iss != expected_iss {
        return Err(JwtError::WrongIssuer);
    }
    if claims.aud != expected_aud {
        return Err(JwtError::WrongAudience);
    }
    let now_secs = now.millis().div_euclid(1000);
    if claims.exp <= now_secs {
        return Err(JwtError::Expired);
    }
    if claims.iat > now_secs.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ISS: &str = "https://keyrail.example";
    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        Timestamp::from_millis(NOW * 1000)
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            aud: ISS.into(),
            sub: "usr_1".into(),
            sid: "ses_1".into(),
            iat: NOW,
            exp: NOW + 900,
            jti: "jti-1".into(),
        }
    }

    fn key() -> SigningKey {
        SigningKey::generate(now()).unwrap()
    }

    fn lookup(k: &SigningKey) -> impl Fn(&str) -> Option<VerifyingKey> + '_ {
        move |kid| (kid == k.kid()).then(|| k.verifying_key())
    }

    fn forge(header: &str, payload: &AccessClaims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(&serde_json::to_vec(payload).unwrap()),
            b64url_encode(sig)
        )
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let k = key();
        let token = sign(&k, &claims());
        assert_eq!(verify(&token, lookup(&k), ISS, ISS, now()), Ok(claims()));
        // Accepted just before exp, and with iat up to 60 s ahead.
        let late = Timestamp::from_millis((NOW + 899) * 1000 + 999);
        assert!(verify(&token, lookup(&k), ISS, ISS, late).is_ok());
        let early = Timestamp::from_millis((NOW - 60) * 1000);
        assert!(verify(&token, lookup(&k), ISS, ISS, early).is_ok());
        assert!(token.len() < 600, "{}", token.len());
    }

    #[test]
    fn header_is_exact() {
        let k = key();
        let token = sign(&k, &claims());
        let header = b64url_decode(token.split('.').next().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#, k.kid())
        );
    }

    #[test]
    fn jwk_shape_and_rfc8037_thumbprint() {
        let k = key();
        let jwk = k.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], k.kid());
        let x = b64url_decode(jwk["x"].as_str().unwrap()).unwrap();
        assert_eq!(x.as_slice(), k.verifying_key().as_bytes());
        assert_eq!(jwk.as_object().unwrap().len(), 6);

        // RFC 8037 appendix A.3.
        let x = b64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        assert_eq!(
            VerifyingKey::from_slice(&x).unwrap().kid(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn keys_reload_from_pkcs8_and_hide_secrets() {
        let k = key();
        let again = SigningKey::from_pkcs8(k.pkcs8(), k.created_at()).unwrap();
        assert_eq!(again.kid(), k.kid());
        let token = sign(&again, &claims());
        assert!(verify(&token, lookup(&k), ISS, ISS, now()).is_ok());
        assert!(SigningKey::from_pkcs8(b"garbage", now()).is_err());
        let dbg = format!("{k:?}");
        assert!(dbg.contains(k.kid()) && !dbg.contains("pkcs8"), "{dbg}");
    }

    #[test]
    fn alg_none_and_hs256_with_public_key_are_rejected() {
        let k = key();
        let kid = k.kid().to_owned();

        let none = forge(r#"{"alg":"none","typ":"at+jwt"}"#, &claims(), b"");
        assert_eq!(
            verify(&none, lookup(&k), ISS, ISS, now()),
            Err(JwtError::UnsupportedAlgorithm)
        );
        let none_kid = forge(
            &format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            &claims(),
            b"",
        );
        assert_eq!(
            verify(&none_kid, lookup(&k), ISS, ISS, now()),
            Err(JwtError::UnsupportedAlgorithm)
        );

        // HS256 keyed with the public key bytes (the classic algorithm-confusion attack).
        let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#);
        let unsigned = format!(
            "{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(&serde_json::to_vec(&claims()).unwrap())
        );
        for secret in [
            k.verifying_key().as_bytes().to_vec(),
            b64url_encode(k.verifying_key().as_bytes()).into_bytes(),
        ] {
            let mac = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
                unsigned.as_bytes(),
            );
            let hs = format!("{unsigned}.{}", b64url_encode(mac.as_ref()));
            assert_eq!(
                verify(&hs, lookup(&k), ISS, ISS, now()),
                Err(JwtError::UnsupportedAlgorithm)
            );
        }

        for alg in ["RS256", "ES256", "eddsa", "EdDSA ", "ED25519", ""] {
            let t = forge(
                &format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#),
                &claims(),
                &[0; 64],
            );
            assert_eq!(
                verify(&t, lookup(&k), ISS, ISS, now()),
                Err(JwtError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn header_checks() {
        let k = key();
        let kid = k.kid();
        let sig = [0u8; 64];
        let cases = [
            (
                format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#),
                JwtError::WrongType,
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
                JwtError::WrongType,
            ),
            (
                r#"{"alg":"EdDSA","typ":"at+jwt"}"#.to_owned(),
                JwtError::UnknownKey,
            ),
            (
                r#"{"alg":"EdDSA","typ":"at+jwt","kid":"other"}"#.to_owned(),
                JwtError::UnknownKey,
            ),
            (
                format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","crit":["exp"]}}"#),
                JwtError::Malformed,
            ),
            (
                format!(r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
                JwtError::Malformed,
            ),
            (r#"["EdDSA"]"#.to_owned(), JwtError::Malformed),
            (r#"{"alg":1}"#.to_owned(), JwtError::Malformed),
            (
                format!(r#"["EdDSA","at+jwt","{kid}"]"#),
                JwtError::Malformed,
            ),
            (
                format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#),
                JwtError::BadSignature,
            ),
        ];
        for (header, want) in cases {
            let t = forge(&header, &claims(), &sig);
            assert_eq!(
                verify(&t, lookup(&k), ISS, ISS, now()),
                Err(want),
                "{header}"
            );
        }
        // typ in its media-type form is fine.
        let header =
            to_json(&serde_json::json!({"alg":"EdDSA","typ":"application/at+jwt","kid":kid}));
        let unsigned = format!(
            "{}.{}",
            b64url_encode(&header),
            b64url_encode(&to_json(&claims()))
        );
        let sig = k.key_pair().sign(unsigned.as_bytes());
        let t = format!("{unsigned}.{}", b64url_encode(sig.as_ref()));
        assert!(verify(&t, lookup(&k), ISS, ISS, now()).is_ok());
    }

    #[test]
    fn signature_and_key_checks() {
        let k = key();
        let other = key();
        let token = sign(&k, &claims());
        // Same kid served by another key: the signature fails.
        let wrong = |_: &str| Some(other.verifying_key());
        assert_eq!(
            verify(&token, wrong, ISS, ISS, now()),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            verify(&token, |_: &str| None, ISS, ISS, now()),
            Err(JwtError::UnknownKey)
        );

        // Tampered payload (a different sub) with the original signature.
        let mut c = claims();
        c.sub = "usr_admin".into();
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64url_encode(&to_json(&c)), parts[2]);
        assert_eq!(
            verify(&tampered, lookup(&k), ISS, ISS, now()),
            Err(JwtError::BadSignature)
        );

        // Every single-character change to the signature is caught.
        let mut sig = b64url_decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let t = format!("{}.{}.{}", parts[0], parts[1], b64url_encode(&sig));
        assert_eq!(
            verify(&t, lookup(&k), ISS, ISS, now()),
            Err(JwtError::BadSignature)
        );
        let short = format!("{}.{}.{}", parts[0], parts[1], b64url_encode(&sig[..63]));
        assert_eq!(
            verify(&short, lookup(&k), ISS, ISS, now()),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn claim_checks() {
        let k = key();
        let token = sign(&k, &claims());
        assert_eq!(
            verify(&token, lookup(&k), "https://evil", ISS, now()),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            verify(&token, lookup(&k), ISS, "https://evil", now()),
            Err(JwtError::WrongAudience)
        );
        let at_exp = Timestamp::from_millis((NOW + 900) * 1000);
        assert_eq!(
            verify(&token, lookup(&k), ISS, ISS, at_exp),
            Err(JwtError::Expired)
        );
        let too_early = Timestamp::from_millis((NOW - 61) * 1000);
        assert_eq!(
            verify(&token, lookup(&k), ISS, ISS, too_early),
            Err(JwtError::IssuedInFuture)
        );

        // Missing claims or a non-JSON payload.
        let header = to_json(&HeaderOut {
            alg: ALG,
            typ: TYP,
            kid: k.kid(),
        });
        for payload in [
            &br#"{"iss":"x"}"#[..],
            b"not json",
            br#"["a","a","s","s",1,2,"j"]"#,
            br#"{"iss":"a","aud":["a"],"sub":"s","sid":"s","iat":1,"exp":2,"jti":"j"}"#,
        ] {
            let unsigned = format!("{}.{}", b64url_encode(&header), b64url_encode(payload));
            let sig = k.key_pair().sign(unsigned.as_bytes());
            let t = format!("{unsigned}.{}", b64url_encode(sig.as_ref()));
            assert_eq!(
                verify(&t, lookup(&k), ISS, ISS, now()),
                Err(JwtError::Malformed)
            );
        }
    }

    #[test]
    fn shape_and_size_checks() {
        let k = key();
        let token = sign(&k, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.{}", parts[2]),
            format!("{token}."),
            format!("{}={}", &token[..1], &token[1..]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            token.replace('.', ". "),
        ] {
            assert!(verify(&bad, lookup(&k), ISS, ISS, now()).is_err(), "{bad}");
        }
        let huge = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            verify(&huge, lookup(&k), ISS, ISS, now()),
            Err(JwtError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn verify_never_panics_on_arbitrary_strings(s in "\\PC{0,300}") {
            let k = SigningKey::from_pkcs8(&KEY_DOC.with(|d| d.clone()), now()).unwrap();
            let _ = verify(&s, lookup(&k), ISS, ISS, now());
        }

        #[test]
        fn verify_never_panics_on_token_shaped_input(
            h in proptest::collection::vec(any::<u8>(), 0..120),
            p in proptest::collection::vec(any::<u8>(), 0..200),
            s in proptest::collection::vec(any::<u8>(), 0..80),
            ms in any::<i64>(),
        ) {
            let k = SigningKey::from_pkcs8(&KEY_DOC.with(|d| d.clone()), now()).unwrap();
            let t = format!("{}.{}.{}", b64url_encode(&h), b64url_encode(&p), b64url_encode(&s));
            let _ = verify(&t, lookup(&k), ISS, ISS, Timestamp::from_millis(ms));
            let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#, k.kid());
            let t = format!("{}.{}.{}", b64url_encode(header.as_bytes()), b64url_encode(&p), b64url_encode(&s));
            let _ = verify(&t, lookup(&k), ISS, ISS, Timestamp::from_millis(ms));
        }

        #[test]
        fn any_claims_round_trip(sub in "\\PC{0,40}", iat in -1_000_000i64..1_000_000, life in 1i64..10_000) {
            let k = SigningKey::from_pkcs8(&KEY_DOC.with(|d| d.clone()), now()).unwrap();
            let c = AccessClaims { sub, iat: NOW + iat, exp: NOW + iat.max(0) + life, ..claims() };
            let t = sign(&k, &c);
            let at = Timestamp::from_millis((NOW + iat.max(0)) * 1000);
            prop_assert_eq!(verify(&t, lookup(&k), ISS, ISS, at), Ok(c));
        }
    }

    thread_local! {
        static KEY_DOC: Vec<u8> = key().pkcs8().to_vec();
    }
}
