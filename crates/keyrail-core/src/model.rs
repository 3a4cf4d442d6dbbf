//! The records of the domain: users, workspaces, members, and the change log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::id::{AuditId, GrantId, KeyId, MemberId, RoleId, SessionId, UserId, WorkspaceId};
use crate::secret::Secret;
use crate::time::Timestamp;

/// A person's account. The password hash never leaves the store layer except for verification.
#[derive(Clone)]
pub struct User {
    pub id: UserId,
    /// Normalised: trimmed and lowercased.
    pub email: String,
    pub name: String,
    /// PHC string (Argon2id).
    pub password_hash: Secret,
    pub mfa_enabled: bool,
    pub superuser: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("superuser", &self.superuser)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceStatus {
    Active,
    Suspended,
}

impl WorkspaceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alphabet {
    Base62,
    Hex,
    Base36,
}

impl Alphabet {
    pub fn chars(self) -> &'static [u8] {
        match self {
            Self::Base62 => b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            Self::Hex => b"0123456789abcdef",
            Self::Base36 => b"0123456789abcdefghijklmnopqrstuvwxyz",
        }
    }

    /// Bits of randomness one character carries.
    pub fn bits_per_char(self) -> f64 {
        (self.chars().len() as f64).log2()
    }
}

/// The shape of a workspace's API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFormat {
    pub prefix: String,
    pub alphabet: Alphabet,
    pub length: u32,
    pub checksum: bool,
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self {
            prefix: "kr".into(),
            alphabet: Alphabet::Base62,
            length: 30,
            checksum: true,
        }
    }
}

impl KeyFormat {
    pub const MIN_BITS: f64 = 96.0;
    pub const MAX_LENGTH: u32 = 128;

    /// Bits of randomness in a key of this format.
    pub fn bits(&self) -> f64 {
        f64::from(self.length) * self.alphabet.bits_per_char()
    }

    pub fn validate(&self) -> Result<(), Error> {
        let p = self.prefix.as_bytes();
        let prefix_ok = (1..=16).contains(&p.len())
            && p[0].is_ascii_lowercase()
            && p.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !prefix_ok {
            return Err(Error::invalid(
                "key_format.prefix",
                "key_format.prefix must be 1 to 16 lowercase letters or digits, starting with a letter",
            ));
        }
        if self.length > Self::MAX_LENGTH {
            return Err(Error::invalid(
                "key_format.length",
                format!("key_format.length must be at most {}", Self::MAX_LENGTH),
            ));
        }
        if self.bits() < Self::MIN_BITS {
            return Err(Error::invalid(
                "key_format.length",
                format!(
                    "key_format gives {:.0} bits of randomness; at least 96 are required",
                    self.bits().floor()
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub status: WorkspaceStatus,
    pub key_format: KeyFormat,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: MemberId,
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    /// A built-in role name or a custom role's id.
    pub role: String,
    pub created_at: Timestamp,
}

/// A member joined with its user, as listed under `/members`.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member: Member,
    pub email: String,
    pub name: String,
}

/// One entry of the monotonic change log that every node polls to evict what it cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub at: Timestamp,
    /// What changed, e.g. `workspace.status`, `member.removed`.
    pub kind: String,
    /// The id of the thing that changed.
    pub subject: String,
}

/// Keyset pagination: at most `limit` rows with ids after `after`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: u32,
    pub after: Option<String>,
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }

    /// Where the next page starts: the id of the last item when this page came back full,
    /// `None` on the last page.
    pub fn next_cursor<T>(&self, items: &[T], id_of: impl Fn(&T) -> String) -> Option<String> {
        if items.len() as u32 >= self.limit {
            items.last().map(id_of)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_points_at_its_last_item_and_a_short_one_ends() {
        let page = Page::first(2);
        let id = |n: &u32| n.to_string();
        assert_eq!(page.next_cursor(&[1, 2], id), Some("2".into()));
        assert_eq!(page.next_cursor(&[1], id), None);
        assert_eq!(page.next_cursor::<u32>(&[], id), None);
    }

    #[test]
    fn contract_key_formats_are_expressible() {
        KeyFormat::default().validate().unwrap();
        let sgw = KeyFormat {
            prefix: "sgw".into(),
            alphabet: Alphabet::Hex,
            length: 32,
            checksum: false,
        };
        sgw.validate().unwrap();
        let gr = KeyFormat {
            prefix: "gr".into(),
            alphabet: Alphabet::Base36,
            length: 20,
            checksum: false,
        };
        gr.validate().unwrap();
    }

    #[test]
    fn weak_or_odd_formats_are_refused() {
        let weak = KeyFormat {
            prefix: "kr".into(),
            alphabet: Alphabet::Hex,
            length: 23,
            checksum: true,
        };
        assert!(
            matches!(weak.validate(), Err(Error::Invalid { field, .. }) if field == "key_format.length")
        );
        for prefix in ["", "Kr", "1kr", "k_r", "abcdefghijklmnopq"] {
            let f = KeyFormat {
                prefix: prefix.into(),
                ..KeyFormat::default()
            };
            assert!(f.validate().is_err(), "{prefix}");
        }
    }
}

/// A login session: one refresh-token chain, listed under `/profile/sessions`.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    /// When the refresh chain ends whatever happens (absolute lifetime).
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The token was live: it is now spent and the new one is stored.
    Rotated(Session),
    /// The token was already spent: the whole session has been revoked (reuse detection).
    Reused(SessionId),
    /// The session is revoked or expired.
    Dead,
    /// No such token.
    Unknown,
}

/// The MFA state of a user, secrets sealed under the master key.
#[derive(Clone, Default)]
pub struct MfaState {
    /// The enabled TOTP secret (sealed).
    pub secret: Option<String>,
    /// A secret set up but not yet confirmed (sealed).
    pub pending: Option<String>,
    /// The last accepted TOTP time step (RFC 6238 5.2: only later steps are accepted).
    pub last_step: Option<i64>,
}

impl fmt::Debug for MfaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaState")
            .field("enabled", &self.secret.is_some())
            .field("pending", &self.pending.is_some())
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// Failed logins counted for one email (existing or not), keyed by a hash of the email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    pub failures: u32,
    pub window_start: Timestamp,
    /// `Timestamp(0)` when not locked.
    pub locked_until: Timestamp,
}

/// What asking to check one more password of an email found
/// (`IdentityStore::reserve_login_attempt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted in the window (the state after, `failures` including this attempt): the password
    /// may be checked once.
    Reserved(LoginThrottle),
    /// Locked, or the window already holds as many attempts as it allows: nothing was counted
    /// and no password may be checked. The state as found.
    Refused(LoginThrottle),
}

/// A JWT signing key as stored: the private half sealed under the master key.
#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub sealed_private: String,
    pub created_at: Timestamp,
}

impl fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    User,
    Key,
    App,
    /// Not authenticated (a failed login) or the system itself.
    Anonymous,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Key => "key",
            Self::App => "app",
            Self::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "key" => Some(Self::Key),
            "app" => Some(Self::App),
            "anonymous" => Some(Self::Anonymous),
            _ => None,
        }
    }
}

/// One append-only audit record. Never holds a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: Timestamp,
    /// `None` for platform-level entries (logins, admin actions).
    pub workspace_id: Option<WorkspaceId>,
    pub actor_type: ActorType,
    pub actor_id: Option<String>,
    /// `<resource>.<verb>`, e.g. `user.login`.
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// The webhook event of the change, written to the outbox with this entry (never read
    /// back from the audit log).
    pub event: Option<crate::events::OutboxEvent>,
}

impl AuditEntry {
    /// This entry, carrying `event` into the outbox with the change.
    pub fn with_event(mut self, event: crate::events::OutboxEvent) -> Self {
        self.event = Some(event);
        self
    }
}

/// Filters of an audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `None` = platform-wide (superuser).
    pub workspace_id: Option<WorkspaceId>,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A scope a workspace defined for its own API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScope {
    pub name: String,
    pub description: String,
    pub dangerous: bool,
    pub created_at: Timestamp,
}

/// A role a workspace defined: a named set of scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    pub id: RoleId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The result of a change that must never leave a workspace without an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerGuarded {
    Done,
    NotFound,
    /// Refused: the member is the last owner.
    LastOwner,
}

/// A per-key rate limit: at most `limit` requests per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
    Disabled,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "expired" => Some(Self::Expired),
            "revoked" => Some(Self::Revoked),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// An API key as stored: the SHA-256 of the key, never the key (unless recoverable, then
/// sealed under the master key).
#[derive(Clone, PartialEq)]
pub struct ApiKey {
    pub id: KeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// The workspace prefix, `_`, and the first 4 characters of the body (`sgw_6f45`).
    pub prefix: String,
    /// SHA-256 of the full key, lowercase hex.
    pub hash: String,
    /// As given (validated against the catalog), not closed under implication.
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    /// `user:<id>`, `key:<id>` or `app:<id>`: who created it.
    pub created_by: Option<String>,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// In force from this time on; a rotation with grace sets it in the future.
    pub revoked_at: Option<Timestamp>,
    pub disabled: bool,
    pub last_used_at: Option<Timestamp>,
    pub rate_limit: Option<KeyRateLimit>,
    /// Usage credits left; `None` = unlimited.
    pub remaining: Option<i64>,
    pub meta: Option<serde_json::Value>,
    pub external_id: Option<String>,
    /// The key sealed under the master key, for `recoverable` keys.
    pub sealed_key: Option<String>,
    /// The key that replaced this one by rotation.
    pub replaced_by: Option<KeyId>,
}

impl ApiKey {
    pub fn status(&self, now: Timestamp) -> KeyStatus {
        key_status(self.revoked_at, self.disabled, self.expires_at, now)
    }
}

/// A key's status at `now`: revoked (once `revoked_at` has come), then disabled, then
/// expired, else active.
pub fn key_status(
    revoked_at: Option<Timestamp>,
    disabled: bool,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> KeyStatus {
    if revoked_at.is_some_and(|t| t <= now) {
        KeyStatus::Revoked
    } else if disabled {
        KeyStatus::Disabled
    } else if expires_at.is_some_and(|t| t <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What a change of a key writes (`PATCH W/keys/{id}`): only the fields that are `Some`
/// (`Some(None)` clears an optional one); everything else stays as stored, whatever a
/// concurrent change wrote meanwhile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Option<serde_json::Value>>,
    pub rate_limit: Option<Option<KeyRateLimit>>,
    pub remaining: Option<Option<i64>>,
    pub disabled: Option<bool>,
}

/// Filters of a key listing.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub status: Option<KeyStatus>,
    pub external_id: Option<String>,
}

/// A developer's public identity as an app publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderProfile {
    pub id: crate::id::BuilderProfileId,
    pub user_id: UserId,
    pub name: String,
    pub website: Option<String>,
    pub created_at: Timestamp,
}

/// A third-party integration. Its client secret is kept sealed under the master key (the server
/// encrypts the outer layer of every token with it); `secret_generation` grows with each new
/// secret and is carried in the inner token, so a new secret ends every older token.
#[derive(Clone)]
pub struct App {
    pub client_id: String,
    /// The developer who made it; `None` for a public client (dynamically registered).
    pub owner_id: Option<UserId>,
    pub builder_profile_id: Option<crate::id::BuilderProfileId>,
    pub kind: AppKind,
    /// The redirect URIs of a public client (exact match; a loopback one on any port). Empty
    /// for a confidential app, which gets tokens with its credentials, not by redirect.
    pub redirect_uris: Vec<String>,
    pub name: String,
    pub description: String,
    /// `None`: any workspace; else only these.
    pub workspace_restrictions: Option<Vec<WorkspaceId>>,
    pub active: bool,
    pub sealed_secret: String,
    pub secret_generation: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How an app gets its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// Made by a developer; tokens for its client id and secret (`POST /apps/token`).
    Confidential,
    /// Registered by RFC 7591 (an MCP client): no secret; tokens by the authorization code
    /// flow with PKCE, for the resource `/mcp` only.
    Public,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Confidential => "confidential",
            AppKind::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(AppKind::Confidential),
            "public" => Some(AppKind::Public),
            _ => None,
        }
    }
}

/// A single-use authorization code (RFC 6749 4.1), stored by its hash.
#[derive(Debug, Clone)]
pub struct OAuthCode {
    pub code_hash: String,
    pub client_id: String,
    pub grant_id: GrantId,
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)) (PKCE S256).
    pub code_challenge: String,
    pub resource: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An OAuth refresh token, stored by its hash; rotated on every use.
#[derive(Debug, Clone)]
pub struct OAuthRefresh {
    pub token_hash: String,
    pub client_id: String,
    pub grant_id: GrantId,
    pub resource: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What taking a code or a refresh token found.
#[derive(Debug, Clone)]
pub enum Spent<T> {
    /// Unused until now: it is used from now on.
    First(T),
    /// Used before: a replay.
    Again(T),
    /// No such code or token.
    Unknown,
}

impl App {
    /// Whether the app may act in `ws`.
    pub fn allows(&self, ws: &WorkspaceId) -> bool {
        self.workspace_restrictions
            .as_ref()
            .is_none_or(|list| list.contains(ws))
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field("owner_id", &self.owner_id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("active", &self.active)
            .field("secret_generation", &self.secret_generation)
            .finish_non_exhaustive()
    }
}

/// A member's grant of scopes to an app in one workspace. A shared grant is made by someone who
/// manages the workspace, for everyone's use; a personal one by any member, for their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: crate::id::GrantId,
    pub client_id: String,
    pub workspace_id: WorkspaceId,
    pub member_id: MemberId,
    pub scopes: Vec<String>,
    pub shared: bool,
    pub created_at: Timestamp,
}

/// A grant with its app's name (for listings).
#[derive(Debug, Clone)]
pub struct GrantView {
    pub grant: Grant,
    pub app_name: String,
}

/// A server key for the inner app tokens, sealed under the master key.
#[derive(Clone)]
pub struct StoredTokenKey {
    pub kid: String,
    pub sealed_key: String,
    pub created_at: Timestamp,
}

impl fmt::Debug for StoredTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokenKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Which grants of a workspace to list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    /// Only this member's.
    pub member_id: Option<MemberId>,
    /// Only this app's.
    pub client_id: Option<String>,
}
