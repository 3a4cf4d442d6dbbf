//! Signing per Standard Webhooks: the secret is `whsec_` + base64 of random bytes; a signature is
//! `v1,` + base64 of HMAC-SHA256, keyed with the decoded secret, over `{id}.{timestamp}.{body}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::crypto::fill_random_or_panic;
use crate::secret::Secret;

pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes of a new secret (the spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A new workspace secret, `whsec_<base64>`.
pub fn new_secret() -> Secret {
    let mut raw = Zeroizing::new([0u8; SECRET_BYTES]);
    fill_random_or_panic(raw.as_mut());
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(raw.as_ref())))
}

/// The HMAC key of a `whsec_` secret; `None` when it is not one.
pub fn secret_key(secret: &str) -> Option<Zeroizing<Vec<u8>>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(b64).ok().map(Zeroizing::new)
}

/// `v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The `webhook-signature` header: one signature per key, space-separated, in the order given
/// (the current secret first, then the previous one during the 24 h after a rotation).
pub fn signature_header(keys: &[&[u8]], msg_id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|k| sign(k, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its reference libraries.
    #[test]
    fn standard_webhooks_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let good = sign(&key, "msg_a", 1, "{}");
        assert_ne!(good, sign(&key, "msg_b", 1, "{}"));
        assert_ne!(good, sign(&key, "msg_a", 2, "{}"));
        assert_ne!(good, sign(&key, "msg_a", 1, "{ }"));
        assert_ne!(good, sign(b"other", "msg_a", 1, "{}"));
    }

    #[test]
    fn new_secrets_are_whsec_and_32_bytes() {
        let a = new_secret();
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(secret_key(a.expose()).unwrap().len(), SECRET_BYTES);
        assert_ne!(a.expose(), new_secret().expose());
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
        assert!(secret_key("whsec_!!").is_none());
    }

    #[test]
    fn two_keys_give_two_signatures_current_first() {
        let h = signature_header(&[b"new", b"old"], "msg_a", 5, "x");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(
            parts,
            [sign(b"new", "msg_a", 5, "x"), sign(b"old", "msg_a", 5, "x")]
        );
    }
}
