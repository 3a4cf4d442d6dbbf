//! Everything a person does to prove who they are: signup, login (with lockout and the MFA step),
//! refresh-token rotation with reuse detection, logout, password reset, profile, TOTP MFA and
//! sessions. The HTTP layer, the console and the CLI all call these use cases.

pub mod email;
pub mod hashers;
pub mod keyring;
pub mod revocations;

use std::sync::Arc;

use crate::audit::{self, RequestMeta};
use crate::clock::Clock;
use crate::crypto::jwt::AccessClaims;
use crate::crypto::{self, TotpSecret, seal, token};
use crate::error::Error;
use crate::id::{SessionId, UserId};
use crate::limits::{Rate, Span};
use crate::mail::{Mail, Mailer};
use crate::model::{ActorType, AuditEntry, LoginAttempt, RefreshOutcome, Session, User};
use crate::ratelimit::RateLimiter;
use crate::secret::{MasterKey, Secret};
use crate::store::Store;
use crate::time::Timestamp;

pub use hashers::Hashers;
pub use keyring::Keyring;
pub use revocations::SessionRevocations;

const TOTP_PURPOSE: &str = "totp-secret";
const RECOVERY_CODES: usize = 10;
/// How recent a password sign-in must be for sensitive profile changes (MFA setup).
const REAUTH_WITHIN_SECS: i64 = 10 * 60;

/// The numbers identity works with; from the configuration.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `iss` and `aud` of access tokens; the base of links in mails.
    pub public_url: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub mfa_challenge_ttl_secs: i64,
    pub reset_ttl_secs: i64,
    pub lock_after: u32,
    pub lock_for: Span,
    pub mfa_per_user: Rate,
}

impl IdentityConfig {
    pub fn new(public_url: &str, lock_after: u32, lock_for: Span, mfa_per_user: Rate) -> Self {
        Self {
            public_url: public_url.to_owned(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 86_400,
            mfa_challenge_ttl_secs: 5 * 60,
            reset_ttl_secs: 30 * 60,
            lock_after,
            lock_for,
            mfa_per_user,
        }
    }
}

/// A user authenticated by an access token (header or cookie).
#[derive(Debug, Clone)]
pub struct UserSession {
    pub user_id: UserId,
    pub session_id: String,
}

/// What a successful login or refresh hands out.
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_in: i64,
    pub user: User,
    pub session_id: SessionId,
}

pub enum LoginOutcome {
    Tokens(Box<Tokens>),
    MfaRequired { mfa_token: Secret },
}

pub struct MfaSetup {
    pub secret: Secret,
    pub otpauth_url: Secret,
}

pub struct Identity {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: Arc<MasterKey>,
    pub keyring: Keyring,
    pub revocations: SessionRevocations,
    pub limiter: Arc<dyn RateLimiter>,
    pub mailer: Arc<dyn Mailer>,
    pub config: IdentityConfig,
    /// Bounds the Argon2 work in flight (503 `server_busy` beyond it).
    pub hashers: Hashers,
}

/// An email as keyrail compares it (see [`email::normalize`]); `None` when it is refused.
pub fn normalize_email(raw: &str) -> Option<String> {
    email::normalize(raw).ok()
}

fn clean_name(raw: &str) -> Result<String, Error> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "name must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

/// The password policy; `user_inputs` (the account's email and name) count as guessable.
fn policy(password: &str, field: &str, user_inputs: &[&str]) -> Result<(), Error> {
    crypto::check_password_policy(password, user_inputs)
        .map_err(|e| Error::invalid(field, e.to_string()))
}

/// The key under which failed logins of an email are counted (a hash: unknown emails are not
/// stored in clear).
pub fn login_throttle_key(email: &str) -> String {
    throttle_key(email)
}

fn throttle_key(email: &str) -> String {
    token::sha256_hex(format!("login:{email}").as_bytes())
}

fn invalid_login() -> Error {
    Error::unauthenticated("invalid_login", "Invalid email or password")
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

impl Identity {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// An audit entry of identity; a change hands it to the store, which writes it in the
    /// change's own transaction.
    fn audit_entry(
        &self,
        meta: &RequestMeta,
        actor: Option<&UserId>,
        action: &str,
        target: Option<String>,
        success: bool,
    ) -> AuditEntry {
        let actor = match actor {
            Some(id) => (ActorType::User, Some(id.to_string())),
            None => (ActorType::Anonymous, None),
        };
        audit::entry(self.now(), meta, None, actor, action, target, success)
    }

    /// Records an event that changes nothing (a failed login).
    async fn audit(
        &self,
        meta: &RequestMeta,
        actor: Option<&UserId>,
        action: &str,
        target: Option<String>,
        success: bool,
    ) -> Result<(), Error> {
        let entry = self.audit_entry(meta, actor, action, target, success);
        self.store.insert_audit(&entry).await?;
        Ok(())
    }

    /// Argon2 takes tens of milliseconds of CPU and 19 MiB: it runs on the blocking pool, never
    /// on the threads that serve requests, and only as many at once as [`Hashers`] allows.
    async fn hash(&self, password: &str) -> Result<String, Error> {
        let password = Secret::new(password.to_owned());
        self.hashers
            .run(move || crypto::hash_password(password.expose()))
            .await?
            .map_err(internal)
    }

    /// Verifies against `phc`, or, when there is no account, burns the same time against a
    /// dummy hash.
    async fn verify(
        &self,
        password: &Secret,
        phc: Option<&Secret>,
    ) -> Result<crypto::PasswordCheck, Error> {
        let password = password.clone();
        let phc = phc.cloned();
        self.hashers
            .run(move || match phc {
                Some(phc) => crypto::verify_password(password.expose(), phc.expose()),
                None => {
                    crypto::burn_equivalent_time(password.expose());
                    crypto::PasswordCheck {
                        valid: false,
                        needs_rehash: false,
                    }
                }
            })
            .await
    }

    pub async fn signup(&self, email: &str, password: &Secret, name: &str) -> Result<User, Error> {
        let email = email::normalize(email).map_err(|e| Error::invalid("email", e.message()))?;
        let name = clean_name(name)?;
        policy(password.expose(), "password", &[&email, &name])?;
        let hash = self.hash(password.expose()).await?;
        let now = self.now();
        let user = User {
            id: UserId::new(),
            email,
            name,
            password_hash: Secret::new(hash),
            mfa_enabled: false,
            superuser: false,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_user(&user).await {
            Ok(()) => Ok(user),
            Err(crate::StoreError::Conflict(_)) => Err(Error::conflict(
                "email_taken",
                "An account with this email already exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Password check with the per-email lockout. The attempt is reserved in the throttle
    /// before the password is checked (one atomic store statement), so that however many
    /// attempts arrive at once, on however many nodes, at most `lock_after` passwords are
    /// checked per window; the others are refused as locked without hashing. Known and unknown
    /// emails take the same path: one reservation, then one Argon2 verification.
    pub async fn login(
        &self,
        meta: &RequestMeta,
        email: &str,
        password: &Secret,
    ) -> Result<LoginOutcome, Error> {
        let email = normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase());
        let key = throttle_key(&email);
        let now = self.now();
        let lock_for_ms = self.config.lock_for.secs() as i64 * 1000;
        let window_start_after = Timestamp::from_millis(now.millis() - lock_for_ms);
        let reserved = match self
            .store
            .reserve_login_attempt(&key, now, window_start_after, self.config.lock_after)
            .await?
        {
            LoginAttempt::Reserved(t) => t,
            LoginAttempt::Refused(t) => {
                // Locked, or every attempt of the window is taken (by failures, or by checks
                // still running, whose failures will lock it): until the later of the two ends.
                let until = t
                    .locked_until
                    .millis()
                    .max(t.window_start.millis() + lock_for_ms);
                let secs = (until - now.millis() + 999) / 1000;
                return Err(Error::rate_limited(
                    "account_locked",
                    "Account locked",
                    u64::try_from(secs).unwrap_or(1),
                ));
            }
        };
        let user = self.store.user_by_email(&email).await?;
        let target = user.as_ref().map(|u| u.id.to_string());
        let check = self
            .verify(password, user.as_ref().map(|u| &u.password_hash))
            .await?;
        let Some(user) = user.filter(|_| check.valid) else {
            // The reserved attempt stays counted: it was a failure.
            self.audit(meta, None, "user.login_failed", target.clone(), false)
                .await?;
            if reserved.failures >= self.config.lock_after {
                let until = now.plus_secs(self.config.lock_for.secs() as i64);
                let entry = self.audit_entry(meta, None, "user.locked", target, true);
                self.store
                    .lock_login(&key, reserved.window_start, until, &entry)
                    .await?;
            }
            return Err(invalid_login());
        };
        // A correct password forgets the failures (its own reservation included).
        self.store.clear_login_throttle(&key).await?;
        // The hash the password was checked against: a change of password made meanwhile
        // (which must spend whatever this login would hand out) is detected against it.
        let mut checked = user.password_hash.clone();
        if check.needs_rehash {
            let hash = Secret::new(self.hash(password.expose()).await?);
            if !self
                .store
                .upgrade_password_hash(&user.id, checked.expose(), hash.expose(), now)
                .await?
            {
                return Err(invalid_login());
            }
            checked = hash;
        }
        if user.mfa_enabled {
            let mfa_token = token::random_token(32);
            let expires = now.plus_secs(self.config.mfa_challenge_ttl_secs);
            if !self
                .store
                .insert_mfa_challenge(
                    &token::sha256_hex(mfa_token.expose().as_bytes()),
                    &user.id,
                    checked.expose(),
                    expires,
                )
                .await?
            {
                return Err(invalid_login());
            }
            return Ok(LoginOutcome::MfaRequired { mfa_token });
        }
        let tokens = self.open_session(meta, user, &checked).await?;
        Ok(LoginOutcome::Tokens(Box::new(tokens)))
    }

    /// The second step of a login with MFA: a TOTP code (once per time step) or a recovery
    /// code (once each).
    pub async fn login_mfa(
        &self,
        meta: &RequestMeta,
        mfa_token: &Secret,
        code: &Secret,
    ) -> Result<Tokens, Error> {
        let now = self.now();
        let hash = token::sha256_hex(mfa_token.expose().as_bytes());
        let bad_challenge =
            || Error::unauthenticated("invalid_mfa_token", "Invalid or expired MFA token");
        let user_id = self
            .store
            .mfa_challenge_user(&hash, now)
            .await?
            .ok_or_else(bad_challenge)?;
        self.limit_mfa(&user_id).await?;
        if !self.check_second_factor(&user_id, code.expose()).await? {
            self.audit(
                meta,
                None,
                "user.login_failed",
                Some(user_id.to_string()),
                false,
            )
            .await?;
            return Err(Error::unauthenticated(
                "invalid_mfa_code",
                "Invalid MFA code",
            ));
        }
        if !self.store.consume_mfa_challenge(&hash, now).await? {
            return Err(bad_challenge());
        }
        let user = self
            .store
            .user_by_id(&user_id)
            .await?
            .ok_or_else(bad_challenge)?;
        let checked = user.password_hash.clone();
        self.open_session(meta, user, &checked).await
    }

    async fn limit_mfa(&self, user: &UserId) -> Result<(), Error> {
        self.limit(&format!("mfa:{user}"), self.config.mfa_per_user)
            .await
    }

    /// Spends one request of `rate` under `key`; 429 `too_many_requests` when none is left.
    async fn limit(&self, key: &str, rate: Rate) -> Result<(), Error> {
        let decision = self
            .limiter
            .check(key, rate, 1, self.now())
            .await
            .map_err(|_| Error::Unavailable)?;
        if decision.allowed {
            Ok(())
        } else {
            Err(Error::rate_limited(
                "too_many_requests",
                "Too many requests",
                decision.retry_after_secs,
            ))
        }
    }

    /// Accepts a TOTP code of the enabled secret (a later step than the last accepted one) or an
    /// unused recovery code.
    async fn check_second_factor(&self, user: &UserId, code: &str) -> Result<bool, Error> {
        let code = code.trim();
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let state = self.store.mfa_state(user).await?;
            let Some(sealed) = state.secret else {
                return Ok(false);
            };
            let secret = self.open_totp(&sealed)?;
            let last = state.last_step.and_then(|s| u64::try_from(s).ok());
            let Some(step) = secret.verify(code, self.now(), last) else {
                return Ok(false);
            };
            return Ok(self.store.advance_totp_step(user, step as i64).await?);
        }
        let normalized = token::normalize_recovery_code(code);
        if normalized.is_empty() {
            return Ok(false);
        }
        let hash = token::sha256_hex(normalized.as_bytes());
        Ok(self
            .store
            .use_recovery_code(user, &hash, self.now())
            .await?)
    }

    fn open_totp(&self, sealed: &str) -> Result<TotpSecret, Error> {
        let bytes = seal::open(&self.master, TOTP_PURPOSE, sealed).map_err(internal)?;
        TotpSecret::from_bytes(&bytes).map_err(internal)
    }

    /// An access token of the session; it never outlives the session itself.
    fn access_token(
        &self,
        user: &UserId,
        session: &Session,
        now: Timestamp,
    ) -> Result<Secret, Error> {
        let iat = now.millis().div_euclid(1000);
        let exp =
            (iat + self.config.access_ttl_secs).min(session.expires_at.millis().div_euclid(1000));
        let claims = AccessClaims {
            iss: self.config.public_url.clone(),
            aud: self.config.public_url.clone(),
            sub: user.to_string(),
            sid: session.id.to_string(),
            iat,
            exp,
            jti: token::random_token(16).expose().to_owned(),
        };
        Ok(Secret::new(self.keyring.sign(&claims)?))
    }

    /// A session for `user`, whose password was checked against `checked`: refused (as a wrong
    /// password) when the password changed meanwhile, since that change ended every session.
    async fn open_session(
        &self,
        meta: &RequestMeta,
        user: User,
        checked: &Secret,
    ) -> Result<Tokens, Error> {
        let now = self.now();
        let session = Session {
            id: SessionId::new(),
            user_id: user.id.clone(),
            created_at: now,
            last_used_at: now,
            expires_at: now.plus_secs(self.config.refresh_ttl_secs),
            revoked_at: None,
            ip: meta.ip.clone(),
            user_agent: meta
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(512).collect()),
        };
        let refresh = token::random_token(32);
        let access = self.access_token(&user.id, &session, now)?;
        let entry = self.audit_entry(
            meta,
            Some(&user.id),
            "user.login",
            Some(user.id.to_string()),
            true,
        );
        if !self
            .store
            .insert_session(
                &session,
                &token::sha256_hex(refresh.expose().as_bytes()),
                Some(checked.expose()),
                &entry,
            )
            .await?
        {
            return Err(invalid_login());
        }
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.config.access_ttl_secs,
            user,
            session_id: session.id,
        })
    }

    /// Spends the refresh token for a new pair. A spent token revokes its whole session.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens, Error> {
        let now = self.now();
        let old = token::sha256_hex(refresh_token.expose().as_bytes());
        let new = token::random_token(32);
        let outcome = self
            .store
            .rotate_refresh(&old, &token::sha256_hex(new.expose().as_bytes()), now)
            .await?;
        match outcome {
            RefreshOutcome::Rotated(session) => {
                let user = self
                    .store
                    .user_by_id(&session.user_id)
                    .await?
                    .ok_or_else(Error::invalid_token)?;
                let access = self.access_token(&user.id, &session, now)?;
                Ok(Tokens {
                    access_token: access,
                    refresh_token: new,
                    expires_in: self.config.access_ttl_secs,
                    user,
                    session_id: session.id,
                })
            }
            RefreshOutcome::Reused(session_id) => {
                self.revocations.insert(session_id.as_str(), now);
                Err(Error::invalid_token())
            }
            RefreshOutcome::Dead | RefreshOutcome::Unknown => Err(Error::invalid_token()),
        }
    }

    /// Checks an access token: signature, claims, and that its session is not revoked (in
    /// memory: no store query, unless the token names a signing key this node has not loaded
    /// yet, see [`Keyring::verify_or_reload`]).
    pub async fn authenticate(&self, access_token: &str) -> Result<UserSession, Error> {
        let claims = self
            .keyring
            .verify_or_reload(
                access_token,
                &self.config.public_url,
                self.now(),
                self.store.as_ref(),
                &self.master,
            )
            .await?;
        if self.revocations.contains(&claims.sid) {
            return Err(Error::invalid_token());
        }
        let user_id = UserId::parse(&claims.sub).ok_or_else(Error::invalid_token)?;
        Ok(UserSession {
            user_id,
            session_id: claims.sid,
        })
    }

    pub async fn logout(&self, who: &UserSession) -> Result<(), Error> {
        let now = self.now();
        if let Some(id) = SessionId::parse(&who.session_id) {
            self.store.revoke_session(&who.user_id, &id, now).await?;
        }
        self.revocations.insert(&who.session_id, now);
        Ok(())
    }

    pub async fn sessions(&self, who: &UserSession) -> Result<Vec<Session>, Error> {
        Ok(self.store.active_sessions(&who.user_id, self.now()).await?)
    }

    pub async fn revoke_session(&self, who: &UserSession, id: &str) -> Result<(), Error> {
        let now = self.now();
        let id = SessionId::parse(id).ok_or(Error::NotFound { what: "session" })?;
        if !self.store.revoke_session(&who.user_id, &id, now).await? {
            return Err(Error::NotFound { what: "session" });
        }
        self.revocations.insert(id.as_str(), now);
        Ok(())
    }

    /// Always succeeds from the caller's view; a mail goes out only when the account exists.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), Error> {
        let Some(email) = normalize_email(email) else {
            return Ok(());
        };
        let Some(user) = self.store.user_by_email(&email).await? else {
            return Ok(());
        };
        let reset = token::random_token(32);
        let expires = self.now().plus_secs(self.config.reset_ttl_secs);
        self.store
            .insert_password_reset(
                &token::sha256_hex(reset.expose().as_bytes()),
                &user.id,
                expires,
            )
            .await?;
        let link = format!(
            "{}/reset-password?token={}",
            self.config.public_url,
            reset.expose()
        );
        self.mailer
            .send(Mail {
                to: user.email.clone(),
                subject: "Reset your keyrail password".into(),
                body: format!(
                    "Someone asked to reset the password of your keyrail account.\r\n\r\n\
                     To choose a new password, open this link within 30 minutes:\r\n{link}\r\n\r\n\
                     Or send this token to POST /api/v1/auth/password/reset:\r\n{}\r\n\r\n\
                     If it was not you, ignore this mail: your password stays as it is.\r\n",
                    reset.expose()
                ),
            })
            .await;
        Ok(())
    }

    /// Sets a new password with a reset token; unlocks the account and ends every session. The
    /// token is spent with the password write, in one transaction that also spends every other
    /// reset token and pending MFA login of the user.
    pub async fn reset_password(
        &self,
        meta: &RequestMeta,
        reset_token: &Secret,
        password: &Secret,
    ) -> Result<(), Error> {
        policy(password.expose(), "password", &[])?;
        let now = self.now();
        let digest = token::sha256_hex(reset_token.expose().as_bytes());
        let bad_token = || Error::invalid("token", "The reset token is invalid or expired");
        // Checked before hashing, so that a made-up token costs no Argon2 run.
        let user_id = self
            .store
            .password_reset_user(&digest, now)
            .await?
            .ok_or_else(bad_token)?;
        let user = self
            .store
            .user_by_id(&user_id)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        let hash = self.hash(password.expose()).await?;
        let entry = self.audit_entry(
            meta,
            Some(&user.id),
            "user.password_reset",
            Some(user.id.to_string()),
            true,
        );
        // `None`: the token was spent meanwhile (by a concurrent reset, or a password change).
        self.store
            .consume_password_reset(&digest, &hash, now, &entry)
            .await?
            .ok_or_else(bad_token)?;
        self.end_all_sessions(&user.id, now).await?;
        self.store
            .clear_login_throttle(&throttle_key(&user.email))
            .await?;
        Ok(())
    }

    async fn end_all_sessions(&self, user: &UserId, now: Timestamp) -> Result<(), Error> {
        for id in self.store.revoke_user_sessions(user, now).await? {
            self.revocations.insert(id.as_str(), now);
        }
        Ok(())
    }

    pub async fn user(&self, who: &UserSession) -> Result<User, Error> {
        self.store
            .user_by_id(&who.user_id)
            .await?
            .ok_or_else(Error::invalid_token)
    }

    pub async fn rename(&self, who: &UserSession, name: &str) -> Result<User, Error> {
        let name = clean_name(name)?;
        self.store
            .set_user_name(&who.user_id, &name, self.now())
            .await?;
        self.user(who).await
    }

    /// Changes the password. Every session of the user ends, this one included: whoever knew
    /// the old password is logged out everywhere, and the caller logs in again. Reset tokens and
    /// pending MFA logins of the user are spent with the password write.
    pub async fn change_password(
        &self,
        who: &UserSession,
        current: &Secret,
        new: &Secret,
    ) -> Result<(), Error> {
        let user = self.user(who).await?;
        // Every attempt counts, reserved before the check (so parallel guesses cannot all pass
        // a count taken first): as many per window as a login gets before its lockout.
        let rate = Rate {
            count: self.config.lock_after,
            window: self.config.lock_for,
        };
        self.limit(&format!("password-change:{}", user.id), rate)
            .await?;
        if !self.verify(current, Some(&user.password_hash)).await?.valid {
            return Err(Error::invalid(
                "current_password",
                "current_password is wrong",
            ));
        }
        policy(new.expose(), "new_password", &[&user.email, &user.name])?;
        let now = self.now();
        let hash = self.hash(new.expose()).await?;
        self.store.set_password_hash(&user.id, &hash, now).await?;
        self.end_all_sessions(&user.id, now).await?;
        self.revocations.insert(&who.session_id, now);
        Ok(())
    }

    /// Binding an authenticator needs a recent sign-in: a stolen refresh token or cookie must
    /// not be enough to put the attacker's authenticator on the account and lock its owner out.
    async fn require_recent_sign_in(&self, who: &UserSession) -> Result<(), Error> {
        let now = self.now();
        let signed_in = match SessionId::parse(&who.session_id) {
            Some(id) => self.store.session_by_id(&id).await?,
            None => None,
        }
        .filter(|s| s.user_id == who.user_id && s.revoked_at.is_none())
        .map(|s| s.created_at);
        match signed_in {
            Some(at) if now.millis() - at.millis() <= REAUTH_WITHIN_SECS * 1000 => Ok(()),
            _ => Err(Error::forbidden(
                "reauthentication_required",
                "Sign in again with your password to set up MFA",
            )),
        }
    }

    pub async fn mfa_setup(&self, who: &UserSession) -> Result<MfaSetup, Error> {
        self.require_recent_sign_in(who).await?;
        let user = self.user(who).await?;
        if user.mfa_enabled {
            return Err(Error::conflict(
                "mfa_already_enabled",
                "MFA is already enabled",
            ));
        }
        let secret = TotpSecret::generate().map_err(internal)?;
        let sealed = seal::seal(&self.master, TOTP_PURPOSE, secret.expose());
        self.store.set_mfa_pending(&user.id, Some(&sealed)).await?;
        Ok(MfaSetup {
            secret: Secret::new(secret.base32()),
            otpauth_url: Secret::new(crypto::otpauth_url(&secret, "keyrail", &user.email)),
        })
    }

    /// Confirms the pending secret with a code; MFA is on and the recovery codes are returned.
    pub async fn mfa_enable(
        &self,
        meta: &RequestMeta,
        who: &UserSession,
        code: &Secret,
    ) -> Result<Vec<Secret>, Error> {
        self.limit_mfa(&who.user_id).await?;
        let state = self.store.mfa_state(&who.user_id).await?;
        if state.secret.is_some() {
            return Err(Error::conflict(
                "mfa_already_enabled",
                "MFA is already enabled",
            ));
        }
        let Some(sealed) = state.pending else {
            return Err(Error::conflict(
                "mfa_not_set_up",
                "Call /profile/mfa/setup first",
            ));
        };
        let secret = self.open_totp(&sealed)?;
        let step = secret
            .verify(code.expose().trim(), self.now(), None)
            .ok_or_else(|| Error::invalid("code", "Invalid MFA code"))?;
        let codes = token::recovery_codes(RECOVERY_CODES);
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| token::sha256_hex(token::normalize_recovery_code(c.expose()).as_bytes()))
            .collect();
        let entry = self.audit_entry(
            meta,
            Some(&who.user_id),
            "user.mfa_enabled",
            Some(who.user_id.to_string()),
            true,
        );
        self.store
            .enable_mfa(
                &who.user_id,
                &sealed,
                step as i64,
                &hashes,
                self.now(),
                &entry,
            )
            .await?;
        Ok(codes)
    }

    pub async fn mfa_disable(&self, who: &UserSession, code: &Secret) -> Result<(), Error> {
        self.limit_mfa(&who.user_id).await?;
        let user = self.user(who).await?;
        if !user.mfa_enabled {
            return Err(Error::conflict("mfa_not_enabled", "MFA is not enabled"));
        }
        if !self.check_second_factor(&user.id, code.expose()).await? {
            return Err(Error::invalid("code", "Invalid MFA code"));
        }
        self.store.disable_mfa(&user.id, self.now()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  Ada ").unwrap(), "Ada");
        assert!(clean_name("   ").is_err());
        assert!(clean_name(&"x".repeat(101)).is_err());
        assert!(clean_name("a\u{0}b").is_err());
    }

    #[test]
    fn the_throttle_key_hides_the_email() {
        let k = throttle_key("ada@example.com");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("ada"));
    }
}
