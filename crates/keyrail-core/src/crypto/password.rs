//! Password hashing (Argon2id, PHC strings) and the password policy (length, breached list).

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use zeroize::Zeroizing;

use super::{CryptoError, fill_random};

/// OWASP's Argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
pub const OUTPUT_LEN: usize = 32;
pub const SALT_LEN: usize = 16;

/// Bounds on the parameters of a stored hash we agree to compute, so that a corrupted or
/// hostile PHC string cannot make one verification allocate gigabytes or loop for minutes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 128;

fn current_params() -> Params {
    match Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN)) {
        Ok(p) => p,
        Err(_) => unreachable!("the OWASP parameters are within Argon2's bounds"),
    }
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, current_params())
}

/// Hashes `password` with Argon2id (m=19456 KiB, t=2, p=1) and a random 16-byte salt,
/// as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)?;
    let hash = hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(hash.to_string())
}

/// The outcome of [`verify_password`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    /// The password matches the hash.
    pub valid: bool,
    /// The password matched but the hash uses other parameters or another algorithm than the
    /// current ones: store `hash_password(password)` in its place. Always false when `valid`
    /// is false.
    pub needs_rehash: bool,
}

impl PasswordCheck {
    const INVALID: Self = Self {
        valid: false,
        needs_rehash: false,
    };
}

/// Checks `password` against a PHC string made by [`hash_password`] (or an older Argon2 hash).
/// A malformed or unsupported PHC string gives `valid: false`; this never panics.
pub fn verify_password(password: &str, phc: &str) -> PasswordCheck {
    let Ok(hash) = PasswordHash::new(phc) else {
        return PasswordCheck::INVALID;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return PasswordCheck::INVALID;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return PasswordCheck::INVALID;
    };
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return PasswordCheck::INVALID;
    }
    // The verifier takes algorithm, version and parameters from the PHC string itself.
    if Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_err()
    {
        return PasswordCheck::INVALID;
    }
    let needs_rehash = algorithm != Algorithm::Argon2id
        || hash.version != Some(Version::V0x13.into())
        || params.m_cost() != M_COST_KIB
        || params.t_cost() != T_COST
        || params.p_cost() != P_COST
        || params.output_len() != Some(OUTPUT_LEN)
        || hash.salt.as_ref().is_none_or(|s| s.len() < SALT_LEN);
    PasswordCheck {
        valid: true,
        needs_rehash,
    }
}

/// A valid hash made with the current parameters, of a password nobody uses: verifying against
/// it costs the same as verifying a real user's password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ih7NbCBt71eaEB2QAVmByg$QBcrcc50QmPzS54ZSQXB6jYCzg2to82nVE9LfaukYGY";

/// Runs one real Argon2id verification against a fixed hash and throws the result away, so that
/// a login for an unknown email takes as long as one for a known email with a wrong password.
pub fn burn_equivalent_time(password: &str) {
    let check = verify_password(password, DUMMY_HASH);
    std::hint::black_box(check);
}

/// Why a new password was refused. The messages are meant for the API response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("password must be at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
    #[error("password is too common (found in a list of breached passwords)")]
    Breached,
    #[error(
        "password is too easy to guess (common words, names, keyboard patterns, dates or \
         repeats, or your own email or name): add more words or characters of your own"
    )]
    Guessable,
}

/// The least zxcvbn score (0 to 4) a new password needs: 3 is "safely unguessable", about
/// 10^8 to 10^10 guesses.
pub const MIN_STRENGTH_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// The policy for new passwords: 12 to 128 characters (Unicode scalar values, not bytes), not
/// in the list of the most common breached passwords (compared case-insensitively), and not
/// guessable by zxcvbn's estimate (dictionaries of common passwords, words and names, keyboard
/// walks, sequences, repeats, dates, l33t substitutions, and `user_inputs` such as the
/// account's email and name). The length rule alone lets `password1234` or `qwertyuiop123`
/// through; the estimate does not.
pub fn check_password_policy(password: &str, user_inputs: &[&str]) -> Result<(), PolicyError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PolicyError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PolicyError::TooLong);
    }
    let lowered = Zeroizing::new(password.to_lowercase());
    if breached_passwords().contains(lowered.as_str()) {
        return Err(PolicyError::Breached);
    }
    // Each word of an input counts on its own too ("Ada Lovelace" gives "ada" and "lovelace").
    let mut words: Vec<&str> = user_inputs.to_vec();
    for input in user_inputs {
        words.extend(
            input
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 3),
        );
    }
    if zxcvbn::zxcvbn(password, &words).score() < MIN_STRENGTH_SCORE {
        return Err(PolicyError::Guessable);
    }
    Ok(())
}

/// The 10,000 most common passwords (see the header of the file for its origin and license).
const BREACHED_LIST: &str = include_str!("breached_passwords.txt");

fn breached_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        BREACHED_LIST
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher as _;

    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let ok = verify_password("correct horse battery staple", &phc);
        assert_eq!(
            ok,
            PasswordCheck {
                valid: true,
                needs_rehash: false
            }
        );
        assert_eq!(
            verify_password("correct horse battery stapler", &phc),
            PasswordCheck::INVALID
        );
        assert_ne!(
            hash_password("correct horse battery staple").unwrap(),
            phc,
            "salted"
        );
    }

    #[test]
    fn old_parameters_or_algorithm_need_rehash() {
        let salt = [7u8; 16];
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, Some(32)).unwrap(),
        );
        let phc = weak
            .hash_password_with_salt(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            verify_password("pw", &phc),
            PasswordCheck {
                valid: true,
                needs_rehash: true
            }
        );
        assert_eq!(verify_password("px", &phc), PasswordCheck::INVALID);

        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, current_params());
        let phc = argon2i
            .hash_password_with_salt(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(phc.starts_with("$argon2i$"));
        assert_eq!(
            verify_password("pw", &phc),
            PasswordCheck {
                valid: true,
                needs_rehash: true
            }
        );
    }

    #[test]
    fn malformed_hashes_are_invalid() {
        for phc in [
            "",
            "$",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
            "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=19456,t=4294967295,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            assert_eq!(verify_password("pw", phc), PasswordCheck::INVALID, "{phc}");
        }
    }

    #[test]
    fn dummy_hash_costs_like_a_real_one() {
        let hash = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(hash.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&hash).unwrap();
        assert_eq!(
            (
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                params.output_len()
            ),
            (M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN))
        );
        assert_eq!(hash.salt.unwrap().len(), SALT_LEN);
        assert_eq!(
            verify_password("keyrail-dummy-password-for-timing", DUMMY_HASH),
            PasswordCheck {
                valid: true,
                needs_rehash: false
            }
        );
        burn_equivalent_time("anything");
    }

    /// `n` characters that are not a pattern zxcvbn knows (a fixed pseudo-random walk).
    fn unpatterned(n: usize) -> String {
        let alphabet: Vec<char> = "aZ3$kQ9!mX7#pW2@tL5%vB8&".chars().collect();
        let mut x: u64 = 0x9e37_79b9;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[(x >> 33) as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn policy_lengths_count_characters() {
        assert_eq!(
            check_password_policy("short", &[]),
            Err(PolicyError::TooShort)
        );
        assert_eq!(
            check_password_policy(&"ab1-".repeat(2), &[]),
            Err(PolicyError::TooShort)
        );
        // 11 characters of 2 bytes each: 22 bytes but still too short.
        assert_eq!(
            check_password_policy("ñüßøжé£ΩÆçå", &[]),
            Err(PolicyError::TooShort)
        );
        assert_eq!(check_password_policy("ñüßøжé£ΩÆçåÐ", &[]), Ok(()));
        assert_eq!(check_password_policy(&unpatterned(128), &[]), Ok(()));
        assert_eq!(
            check_password_policy(&unpatterned(129), &[]),
            Err(PolicyError::TooLong)
        );
        assert_eq!(
            PolicyError::TooShort.to_string(),
            "password must be at least 12 characters"
        );
        assert_eq!(
            PolicyError::TooLong.to_string(),
            "password must be at most 128 characters"
        );
    }

    #[test]
    fn guessable_long_passwords_are_refused() {
        // Of the 12+ character passwords people pick, the breached list knows few; these pass
        // the length rule and are guessed in seconds.
        for weak in [
            "password1234",
            "qwertyuiop123",
            "Password12345!",
            "aaaaaaaaaaaaaaaa",
            "123456789012",
            "abcdefghijklmnop",
            "P@ssw0rd2024",
            "letmeinletmein",
        ] {
            assert_eq!(
                check_password_policy(weak, &[]),
                Err(PolicyError::Guessable),
                "{weak}"
            );
        }
        // The account's own email or name makes a weak password.
        let mine = ["ada.lovelace@example.com", "Ada Lovelace"];
        for own in ["lovelaceada99", "ada.lovelace@example.com1"] {
            assert_eq!(
                check_password_policy(own, &mine),
                Err(PolicyError::Guessable),
                "{own}"
            );
            // Strong enough for anyone else.
            assert_eq!(check_password_policy(own, &[]), Ok(()), "{own}");
        }
        assert!(
            PolicyError::Guessable
                .to_string()
                .contains("too easy to guess")
        );
        for strong in [
            "correct horse battery staple 42",
            "another long passphrase 7",
            "vT9#qLm2@xR8!pWz4$kN",
            "yet another passphrase 11",
            "a brand new passphrase 9",
            "a long root passphrase 42",
        ] {
            assert_eq!(check_password_policy(strong, &mine), Ok(()), "{strong}");
        }
    }

    #[test]
    fn breached_list_is_complete_and_clean() {
        let set = breached_passwords();
        assert!(set.len() >= 10_000, "{}", set.len());
        assert!(set.contains("123456") && set.contains("password"));
        assert!(!set.iter().any(|p| p.starts_with('#')));
        assert!(set.iter().all(|p| p.to_lowercase() == *p));
        let lines = BREACHED_LIST
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        assert_eq!(lines, set.len(), "no duplicates in the file");
    }
}
