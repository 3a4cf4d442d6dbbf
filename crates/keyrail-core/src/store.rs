//! What the domain needs from persistence. `keyrail-store` implements it for SQLite and
//! PostgreSQL from one body of SQL.

use async_trait::async_trait;

use crate::id::{
    BuilderProfileId, GrantId, KeyId, MemberId, RoleId, SessionId, UserId, WorkspaceId,
};
use crate::model::{
    ApiKey, App, AuditEntry, AuditFilter, BuilderProfile, Change, CustomRole, Grant, GrantFilter,
    GrantView, KeyFilter, KeyFormat, LoginThrottle, Member, MemberView, MfaState, OwnerGuarded,
    Page, RefreshOutcome, Session, StoredScope, StoredSigningKey, StoredTokenKey, User, Workspace,
    WorkspaceStatus,
};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; names what collided (e.g. "user email").
    #[error("{0} already exists")]
    Conflict(String),
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Answers when the database answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the pool, letting connections finish cleanly (SQLite checkpoints its log).
    async fn close(&self);

    // users
    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// `email` must already be normalised.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>>;

    /// Sets a new password hash (PHC string).
    async fn set_password_hash(&self, id: &UserId, hash: &str, at: Timestamp) -> StoreResult<bool>;
    async fn set_user_name(&self, id: &UserId, name: &str, at: Timestamp) -> StoreResult<bool>;
    /// Grants or removes platform superuser rights.
    async fn set_superuser(&self, id: &UserId, superuser: bool, at: Timestamp)
    -> StoreResult<bool>;

    // MFA
    async fn mfa_state(&self, user: &UserId) -> StoreResult<MfaState>;
    /// Stores (or clears) a TOTP secret awaiting confirmation.
    async fn set_mfa_pending(&self, user: &UserId, sealed: Option<&str>) -> StoreResult<()>;
    /// Turns MFA on: the secret becomes the enabled one, `mfa_enabled` is set, the pending secret
    /// is cleared, `last_step` is recorded and the recovery codes are replaced, atomically.
    async fn enable_mfa(
        &self,
        user: &UserId,
        sealed_secret: &str,
        last_step: i64,
        recovery_code_hashes: &[String],
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Turns MFA off and deletes the secret and the recovery codes.
    async fn disable_mfa(&self, user: &UserId, at: Timestamp) -> StoreResult<()>;
    /// Records `step` as the last accepted TOTP step if it is later than the stored one; `false`
    /// when it is not (a replay). Atomic: two concurrent uses of one code cannot both pass.
    async fn advance_totp_step(&self, user: &UserId, step: i64) -> StoreResult<bool>;
    /// Marks an unused recovery code used; `false` when no such unused code exists.
    async fn use_recovery_code(
        &self,
        user: &UserId,
        code_hash: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    async fn unused_recovery_codes(&self, user: &UserId) -> StoreResult<u32>;

    // login throttling per email (keyed by a hash of the normalised email)
    async fn login_throttle(&self, key: &str) -> StoreResult<Option<LoginThrottle>>;
    /// Counts one failure atomically: a failure older than `window_start_after` starts a new
    /// window at `now` with 1 failure, else the count grows. Returns the state after.
    async fn record_login_failure(
        &self,
        key: &str,
        now: Timestamp,
        window_start_after: Timestamp,
    ) -> StoreResult<LoginThrottle>;
    /// Locks the key until `until` and resets its failure count.
    async fn lock_login(&self, key: &str, until: Timestamp) -> StoreResult<()>;
    async fn clear_login_throttle(&self, key: &str) -> StoreResult<()>;

    // sessions and refresh tokens (stored as SHA-256 hex digests)
    /// Creates a session with its first refresh token.
    async fn insert_session(&self, session: &Session, refresh_hash: &str) -> StoreResult<()>;
    async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>>;
    /// The user's sessions that are neither revoked nor expired at `now`, newest first.
    async fn active_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>>;
    /// Spends `old_hash` and stores `new_hash` in the same session, atomically. A spent token
    /// revokes its session (and appends `session.revoked` to the change log).
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
    ) -> StoreResult<RefreshOutcome>;
    /// Revokes one session of `user` (+ `session.revoked` change); `false` when there is no such
    /// live session of that user.
    async fn revoke_session(
        &self,
        user: &UserId,
        id: &SessionId,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Revokes every live session of the user (+ one change each); returns their ids.
    async fn revoke_user_sessions(
        &self,
        user: &UserId,
        at: Timestamp,
    ) -> StoreResult<Vec<SessionId>>;
    /// Sessions revoked at or after `since` (to rebuild the in-memory revocation set at start).
    async fn sessions_revoked_since(&self, since: Timestamp) -> StoreResult<Vec<SessionId>>;

    // single-use tokens: MFA challenges and password resets (SHA-256 hex digests)
    async fn insert_mfa_challenge(
        &self,
        hash: &str,
        user: &UserId,
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// The user of a live (unexpired, unused) challenge.
    async fn mfa_challenge_user(&self, hash: &str, now: Timestamp) -> StoreResult<Option<UserId>>;
    /// Spends the challenge; `false` if it was already spent or expired.
    async fn consume_mfa_challenge(&self, hash: &str, now: Timestamp) -> StoreResult<bool>;
    async fn insert_password_reset(
        &self,
        hash: &str,
        user: &UserId,
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// Spends a live reset token and returns its user; `None` when unknown, used or expired.
    async fn consume_password_reset(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UserId>>;

    // JWT signing keys
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Inserts a key; a duplicate kid is a `Conflict`.
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;

    // audit log (append-only)
    async fn insert_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Newest first; `page.after` is the last id of the previous page (ids sort by time).
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditEntry>>;

    // workspaces
    /// Creates the workspace and its first member (the owner) in one transaction.
    async fn create_workspace(&self, ws: &Workspace, owner: &Member) -> StoreResult<()>;
    async fn workspace_by_id(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    /// The workspaces the user is a member of, oldest first.
    async fn workspaces_of_user(&self, user: &UserId) -> StoreResult<Vec<Workspace>>;
    /// Sets the status and appends `workspace.status` to the change log, atomically. `false`
    /// when no such workspace exists.
    async fn set_workspace_status(
        &self,
        id: &WorkspaceId,
        status: WorkspaceStatus,
        at: Timestamp,
    ) -> StoreResult<bool>;

    /// Saves `name`, `key_format` and `updated_at`; `false` when no such workspace.
    async fn update_workspace(&self, ws: &Workspace) -> StoreResult<bool>;
    /// Every key format a workspace has had, current or earlier (recorded by
    /// [`Store::create_workspace`] and [`Store::update_workspace`]).
    async fn key_formats(&self) -> StoreResult<Vec<KeyFormat>>;
    /// Deletes the workspace and everything under it (members, roles, scopes; later keys, apps
    /// grants, webhooks) and appends `workspace.deleted`, atomically. Audit entries stay.
    async fn delete_workspace(&self, id: &WorkspaceId, at: Timestamp) -> StoreResult<bool>;
    /// Every workspace, by id (platform administration).
    async fn list_workspaces(&self, page: &Page) -> StoreResult<Vec<Workspace>>;
    /// The user's memberships with their workspaces, oldest workspace first.
    async fn memberships_of_user(&self, user: &UserId) -> StoreResult<Vec<(Workspace, Member)>>;

    // custom scopes of a workspace
    /// A duplicate name in the workspace is a `Conflict`.
    async fn insert_scope(&self, ws: &WorkspaceId, scope: &StoredScope) -> StoreResult<()>;
    /// By name.
    async fn scopes_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<StoredScope>>;
    /// Appends `scope.deleted` (subject `ws_id:name`), atomically; `false` when no such scope.
    async fn delete_scope(&self, ws: &WorkspaceId, name: &str, at: Timestamp) -> StoreResult<bool>;

    // custom roles
    /// A duplicate name in the workspace is a `Conflict`.
    async fn insert_role(&self, role: &CustomRole) -> StoreResult<()>;
    /// By name.
    async fn roles_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<CustomRole>>;
    async fn role_by_id(&self, ws: &WorkspaceId, id: &RoleId) -> StoreResult<Option<CustomRole>>;
    /// Saves name, scopes and updated_at and appends `role.updated` (subject the role id);
    /// `false` when no such role. A name taken by another role is a `Conflict`.
    async fn update_role(&self, role: &CustomRole) -> StoreResult<bool>;
    /// Deletes the role unless a member holds it; appends `role.deleted`. `Ok(None)` when no
    /// such role, `Ok(Some(n))` with `n` members holding it (then nothing was deleted, n > 0),
    /// `Ok(Some(0))` when deleted.
    async fn delete_role(
        &self,
        ws: &WorkspaceId,
        id: &RoleId,
        at: Timestamp,
    ) -> StoreResult<Option<u32>>;

    // members
    /// Changes a member's role (+ `member.updated`, subject the member id). Refuses to demote
    /// the last `owner`; atomic against concurrent demotions and removals, so a workspace never
    /// ends up without an owner.
    async fn set_member_role(
        &self,
        ws: &WorkspaceId,
        id: &MemberId,
        role: &str,
        at: Timestamp,
    ) -> StoreResult<OwnerGuarded>;
    /// Removes a member (+ `member.removed`), refusing to remove the last `owner`, with the
    /// same atomicity.
    async fn remove_member(
        &self,
        ws: &WorkspaceId,
        id: &MemberId,
        at: Timestamp,
    ) -> StoreResult<OwnerGuarded>;
    async fn insert_member(&self, member: &Member) -> StoreResult<()>;
    async fn member_by_id(&self, ws: &WorkspaceId, id: &MemberId) -> StoreResult<Option<Member>>;
    async fn member_of(&self, ws: &WorkspaceId, user: &UserId) -> StoreResult<Option<Member>>;
    async fn list_members(&self, ws: &WorkspaceId, page: &Page) -> StoreResult<Vec<MemberView>>;
    /// Removes the member and appends `member.removed` to the change log, atomically.
    async fn delete_member(
        &self,
        ws: &WorkspaceId,
        id: &MemberId,
        at: Timestamp,
    ) -> StoreResult<bool>;

    // API keys
    /// A key whose hash exists already is a `Conflict`.
    async fn insert_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// All or nothing; any hash that exists already (or repeats in the batch) is a `Conflict`.
    async fn insert_keys(&self, keys: &[ApiKey]) -> StoreResult<()>;
    async fn key_by_id(&self, ws: &WorkspaceId, id: &KeyId) -> StoreResult<Option<ApiKey>>;
    /// The verify path's lookup (one indexed query).
    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Which of these hashes exist already (for naming the duplicates of an import).
    async fn existing_key_hashes(&self, hashes: &[String]) -> StoreResult<Vec<String>>;
    /// By id (creation order). `status` is evaluated at `now`; `external_id` matches exactly.
    async fn list_keys(
        &self,
        ws: &WorkspaceId,
        filter: &KeyFilter,
        now: Timestamp,
        page: &Page,
    ) -> StoreResult<Vec<ApiKey>>;
    /// Saves name, scopes, meta, rate_limit, disabled, updated_at, expires_at, revoked_at,
    /// replaced_by and appends `key.changed` (subject: the key's hash) in the same transaction.
    /// Revocation is irreversible: a stored `revoked_at` is only ever moved earlier, and a
    /// stored `replaced_by` is kept.
    /// `false` when no such key. Credits are not written here (concurrent verifies spend them):
    /// see [`Store::set_key_remaining`].
    async fn update_key(&self, key: &ApiKey) -> StoreResult<bool>;
    /// Sets the credits left (`None` = unlimited) and appends `key.changed`.
    async fn set_key_remaining(
        &self,
        ws: &WorkspaceId,
        id: &KeyId,
        remaining: Option<i64>,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Inserts `new` and saves `old` (its `revoked_at` / `replaced_by` set by the caller),
    /// appending `key.changed` for the old key's hash, atomically. `false` (nothing written)
    /// when `old` is gone or was replaced already, also by a concurrent rotation: a key is
    /// rotated at most once.
    async fn rotate_key(&self, old: &ApiKey, new: &ApiKey) -> StoreResult<bool>;
    /// Spends `cost` credits if at least that many remain; the credits left after, or `None`
    /// when there were not enough (nothing spent). Exact under concurrency, across nodes.
    /// Keys with unlimited credits (`remaining` NULL) answer `Some(i64::MAX)`.
    async fn consume_credits(&self, id: &KeyId, cost: i64) -> StoreResult<Option<i64>>;
    /// Sets `last_used_at` of many keys in one statement or transaction (never earlier than
    /// what is stored).
    async fn touch_keys(&self, used: &[(KeyId, Timestamp)]) -> StoreResult<()>;

    // change log
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Change>>;
    /// The highest `seq` written so far (0 when empty).
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Follows change-log appends as they commit, on every node (PostgreSQL `LISTEN/NOTIFY`):
    /// calls `wake.notify_one()` once listening (appends made before may have been missed), for
    /// every announcement, and after the connection was lost and remade. Runs until it cannot
    /// go on (an `Err`); `Ok(false)` at once from a backend with nothing to announce (SQLite:
    /// one process owns the database). Announcements only hurry the poll of
    /// [`Store::changes_after`], which stays the source of truth.
    async fn follow_changes(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> StoreResult<bool> {
        let _ = wake;
        Ok(false)
    }

    // builder profiles
    async fn insert_builder_profile(&self, profile: &BuilderProfile) -> StoreResult<()>;
    /// The user's profiles by id.
    async fn builder_profiles_of(
        &self,
        user: &UserId,
        page: &Page,
    ) -> StoreResult<Vec<BuilderProfile>>;
    async fn builder_profile_by_id(
        &self,
        id: &BuilderProfileId,
    ) -> StoreResult<Option<BuilderProfile>>;

    // apps
    /// A client id that exists already is a `Conflict`.
    async fn insert_app(&self, app: &App) -> StoreResult<()>;
    async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<App>>;
    /// By client id; `owner` `None` lists every app (platform administration).
    async fn list_apps(&self, owner: Option<&UserId>, page: &Page) -> StoreResult<Vec<App>>;
    /// Saves name, description, workspace_restrictions, active and updated_at; `false` when no
    /// such app. The secret is changed only by [`Store::set_app_secret`].
    async fn update_app(&self, app: &App) -> StoreResult<bool>;
    /// Stores a new sealed secret and adds one to the generation, atomically; the new
    /// generation, or `None` when no such app.
    async fn set_app_secret(
        &self,
        client_id: &str,
        sealed_secret: &str,
        at: Timestamp,
    ) -> StoreResult<Option<i64>>;
    /// Deletes the app and its grants; `false` when no such app.
    async fn delete_app(&self, client_id: &str) -> StoreResult<bool>;
    /// The workspaces holding at least one grant of the app.
    async fn workspaces_granting(&self, client_id: &str) -> StoreResult<Vec<WorkspaceId>>;

    // grants
    /// A second shared grant of an app in a workspace, or a second personal grant of an app by
    /// one member, is a `Conflict`.
    async fn insert_grant(&self, grant: &Grant) -> StoreResult<()>;
    async fn grant_by_id(&self, id: &GrantId) -> StoreResult<Option<GrantView>>;
    /// A workspace's grants by id.
    async fn list_grants(
        &self,
        ws: &WorkspaceId,
        filter: &GrantFilter,
        page: &Page,
    ) -> StoreResult<Vec<GrantView>>;
    /// `false` when no such grant in the workspace.
    async fn delete_grant(&self, ws: &WorkspaceId, id: &GrantId) -> StoreResult<bool>;

    // server keys of the inner app tokens
    async fn token_keys(&self) -> StoreResult<Vec<StoredTokenKey>>;
    /// A duplicate kid is a `Conflict`.
    async fn insert_token_key(&self, key: &StoredTokenKey) -> StoreResult<()>;
}
