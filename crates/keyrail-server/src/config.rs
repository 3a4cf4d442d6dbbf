//! The configuration of API.md "Command line and configuration". The binary loads it (embedded
//! defaults, then a TOML file, then `KEYRAIL_*` environment variables) and hands it here; every
//! value is typed so that a bad one stops the server with a message naming its key.

use std::net::SocketAddr;
use std::path::PathBuf;

use keyrail_core::limits::{Rate, Span};
use serde::{Deserialize, Serialize};

/// The defaults, as API.md lists them. The binary embeds this text as the first layer.
pub const DEFAULTS_TOML: &str = r#"
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
data_dir = "./keyrail-data"
database_url = ""
redis_url = ""
redis_ca_file = ""
dev = false
smtp_url = ""
mail_from = "keyrail@localhost"
api_logs = true
api_logs_days = 30
tls_cert = ""
tls_key = ""
webhooks_allow_private = false
allow_signup = true
trusted_proxies = []
master_key = ""
master_key_file = ""
store_outage_grace = "5m"
log_level = "info"
log_format = "json"
shutdown_grace = "30s"
request_timeout = "30s"
header_read_timeout = "10s"
max_connections = 10000
max_connections_per_ip = 1000

[limits]
global_per_principal = "6000/1m"
login_per_ip = "30/15m"
mfa_per_user = "5/5m"
signup_per_ip = "10/1h"
password_reset_per_ip = "5/1h"
oauth_register_per_ip = "20/1h"
failed_auth_per_ip = "10/5m"
failed_auth_block = "15m"
account_lock_after = 5
account_lock_for = "30m"
verify_per_ip = ""
on_redis_error = "local"
"#;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: PublicUrl,
    pub data_dir: PathBuf,
    /// `""` = SQLite in `data_dir`; or `postgres://...`.
    #[serde(skip_serializing)]
    pub database_url: String,
    #[serde(skip_serializing)]
    pub redis_url: String,
    /// PEM file of the certificate authority a `rediss://` Redis is checked against (`""`: the
    /// system's roots).
    pub redis_ca_file: PathBuf,
    pub dev: bool,
    #[serde(skip_serializing)]
    pub smtp_url: String,
    pub mail_from: String,
    /// Record every API request in the request log (API.md "Audit, logs, export").
    pub api_logs: bool,
    /// Days the request log keeps a request (1..3650).
    pub api_logs_days: u32,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub webhooks_allow_private: bool,
    /// false: `POST /api/v1/auth/signup` answers 403 `signup_disabled` (superusers make users).
    pub allow_signup: bool,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// 64 hex characters; `""` = the file `data_dir/master.key` (created on first start).
    #[serde(skip_serializing)]
    pub master_key: String,
    /// Or read the key from this file (64 hex characters; a secret store's mounted file). It is
    /// never created: a missing file stops the start. Exclusive with `master_key`.
    pub master_key_file: PathBuf,
    /// How long cached verifies go on while the store is unreachable, from when the outage
    /// began; `"0"` = not at all (every verify answers 503 until the store is back).
    #[serde(with = "span_or_zero")]
    pub store_outage_grace: Span,
    /// A tracing filter (`info`, `keyrail=debug,info`, ...).
    pub log_level: String,
    pub log_format: LogFormat,
    /// How long a SIGTERM waits for requests in flight.
    pub shutdown_grace: Span,
    /// Requests running longer are answered 408.
    pub request_timeout: Span,
    /// How long a client has to send a complete request head: the first one on a connection
    /// (TLS handshake included) and each later one on a kept-alive connection, so it is also
    /// how long an idle keep-alive connection stays open. Past it the connection is closed.
    pub header_read_timeout: Span,
    /// Open connections at most (lowered to fit the process's file-descriptor limit).
    pub max_connections: usize,
    /// Open connections from one client address at most (an IPv6 /64 counts as one address;
    /// `trusted_proxies` are exempt). At either cap, the oldest connection that has not yet
    /// sent a complete request is closed to make room; if there is none, the new one is.
    pub max_connections_per_ip: usize,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub global_per_principal: Rate,
    pub login_per_ip: Rate,
    pub mfa_per_user: Rate,
    pub signup_per_ip: Rate,
    pub password_reset_per_ip: Rate,
    /// RFC 7591 registrations (`POST /oauth/register`) per client IP.
    pub oauth_register_per_ip: Rate,
    pub failed_auth_per_ip: Rate,
    pub failed_auth_block: Span,
    pub account_lock_after: u32,
    pub account_lock_for: Span,
    /// A per-client-IP limit on `POST /api/v1/keys/verify`; `""` (the default) = none, since
    /// its caller is usually one backend verifying for all of its clients.
    #[serde(with = "optional_rate")]
    pub verify_per_ip: Option<Rate>,
    /// What a limit does while Redis (`redis_url`) does not answer.
    pub on_redis_error: crate::redis_limits::OnRedisError,
}

/// A rate that may be off: written `""` when it is.
mod optional_rate {
    use keyrail_core::limits::Rate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(rate: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
        match rate {
            Some(r) => s.collect_str(r),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|e: String| serde::de::Error::custom(format!("{e}, or \"\" for no limit")))
    }
}

/// A duration that may be zero: written `"0"` when it is.
mod span_or_zero {
    use keyrail_core::limits::Span;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(span: &Span, s: S) -> Result<S::Ok, S::Error> {
        match span.secs() {
            0 => s.serialize_str("0"),
            _ => s.collect_str(span),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim();
        if text == "0" || text == "0s" {
            return Ok(Span::from_secs(0));
        }
        text.parse()
            .map_err(|e: String| serde::de::Error::custom(format!("{e}, or \"0\" for none")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// `http://` or `https://` + host, no trailing slash kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .ok_or_else(|| serde::de::Error::custom("must start with http:// or https://"))?;
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['?', '#']) {
            return Err(serde::de::Error::custom(
                "must be an absolute URL like https://auth.example.com",
            ));
        }
        Ok(Self(s.trim_end_matches('/').to_owned()))
    }
}

/// Debug output is the serialised form, which leaves out `master_key`, `database_url`,
/// `redis_url` and `smtp_url` (they may hold secrets or passwords).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(text) => write!(f, "Config {text}"),
            Err(_) => f.write_str("Config { .. }"),
        }
    }
}

impl Config {
    /// Checks what types alone cannot: pairs of settings and value ranges.
    pub fn validate(&self) -> Result<(), String> {
        let cert = !self.tls_cert.as_os_str().is_empty();
        let key = !self.tls_key.as_os_str().is_empty();
        if cert != key {
            return Err("tls_cert and tls_key must be set together".into());
        }
        crate::proxies::TrustedProxies::parse(&self.trusted_proxies)?;
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_connections_per_ip == 0 {
            return Err("max_connections_per_ip must be at least 1".into());
        }
        if !(1..=3650).contains(&self.api_logs_days) {
            return Err("api_logs_days must be from 1 to 3650".into());
        }
        if self.limits.account_lock_after == 0 {
            return Err("limits.account_lock_after must be at least 1".into());
        }
        if !self.master_key.is_empty()
            && keyrail_core::secret::MasterKey::from_hex(&self.master_key).is_none()
        {
            return Err("master_key must be 64 hex characters (32 bytes)".into());
        }
        if !self.master_key.is_empty() && !self.master_key_file.as_os_str().is_empty() {
            return Err("master_key and master_key_file are exclusive: set one".into());
        }
        if !self.database_url.is_empty()
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| self.database_url.starts_with(p))
        {
            return Err("database_url must be empty, sqlite:..., or postgres://...".into());
        }
        if !self.redis_url.is_empty()
            && !self.redis_url.starts_with("redis://")
            && !self.redis_url.starts_with("rediss://")
        {
            return Err("redis_url must be empty, redis://... or rediss://...".into());
        }
        if !self.redis_ca_file.as_os_str().is_empty() && !self.redis_url.starts_with("rediss://") {
            return Err("redis_ca_file is for a rediss:// (TLS) redis_url".into());
        }
        Ok(())
    }

    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }

    /// The defaults alone (the embedded TOML), for tests and embedders.
    pub fn defaults() -> Self {
        toml::from_str(DEFAULTS_TOML).expect("the embedded defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_the_documented_ones() {
        let c = Config::defaults();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080");
        assert_eq!(c.limits.login_per_ip.to_string(), "30/15m");
        assert_eq!(c.limits.failed_auth_block.secs(), 900);
        assert_eq!(c.limits.account_lock_after, 5);
        assert!(c.api_logs && !c.dev && !c.tls_enabled());
        assert_eq!(c.api_logs_days, 30);
        assert_eq!(c.store_outage_grace.secs(), 300);
        assert_eq!(c.header_read_timeout.secs(), 10);
        assert!(c.limits.verify_per_ip.is_none());
        assert!(c.allow_signup);
        assert_eq!(
            (c.max_connections, c.max_connections_per_ip),
            (10_000, 1_000)
        );
    }

    #[test]
    fn store_outage_grace_may_be_zero() {
        let parse = |s: &str| {
            toml::from_str::<Config>(&DEFAULTS_TOML.replace(
                "store_outage_grace = \"5m\"",
                &format!("store_outage_grace = {s:?}"),
            ))
            .map(|c| c.store_outage_grace.secs())
        };
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("90s").unwrap(), 90);
        let err = parse("soon").unwrap_err().to_string();
        assert!(err.contains("\"0\" for none"), "{err}");
    }

    #[test]
    fn public_url_must_be_absolute() {
        let parse = |s: &str| toml::from_str::<Wrap>(&format!("u = {s:?}")).map(|w| w.u);
        #[derive(Deserialize)]
        struct Wrap {
            u: PublicUrl,
        }
        assert_eq!(
            parse("https://auth.example.com/").unwrap().as_str(),
            "https://auth.example.com"
        );
        assert!(parse("https://auth.example.com").unwrap().is_https());
        for bad in [
            "auth.example.com",
            "http://",
            "ftp://x",
            "http://a b",
            "http://x?y",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let mut c = Config::defaults();
        c.master_key = "ab".repeat(32);
        c.database_url = "postgres://keyrail:hunter2secret@db/keyrail".into();
        c.smtp_url = "smtp://mailer:smtpsecret@mail:587".into();
        c.redis_url = "redis://:redissecret@cache:6379".into();
        let text = format!("{c:?}");
        assert!(text.contains("login_per_ip"), "{text}");
        for secret in ["abababab", "hunter2secret", "smtpsecret", "redissecret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn on_redis_error_defaults_to_local_and_takes_the_three_modes() {
        use crate::redis_limits::OnRedisError;
        assert_eq!(
            Config::defaults().limits.on_redis_error,
            OnRedisError::Local
        );
        for (text, mode) in [
            ("deny", OnRedisError::Deny),
            ("allow", OnRedisError::Allow),
            ("local", OnRedisError::Local),
        ] {
            let toml = DEFAULTS_TOML.replace(
                "on_redis_error = \"local\"",
                &format!("on_redis_error = \"{text}\""),
            );
            let c: Config = toml::from_str(&toml).unwrap();
            assert_eq!(c.limits.on_redis_error, mode);
        }
        let toml = DEFAULTS_TOML.replace("on_redis_error = \"local\"", "on_redis_error = \"x\"");
        assert!(toml::from_str::<Config>(&toml).is_err());
    }

    #[test]
    fn pairs_and_ranges_are_checked() {
        let mut c = Config::defaults();
        c.tls_cert = "cert.pem".into();
        assert!(c.validate().unwrap_err().contains("tls_key"));
        let mut c = Config::defaults();
        c.master_key = "short".into();
        assert!(c.validate().unwrap_err().contains("master_key"));
        let mut c = Config::defaults();
        c.database_url = "mysql://x".into();
        assert!(c.validate().unwrap_err().contains("database_url"));
        let mut c = Config::defaults();
        c.api_logs_days = 0;
        assert!(c.validate().unwrap_err().contains("api_logs_days"));
    }
}
