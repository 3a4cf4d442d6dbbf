//! The `Store` implementation, written once and expanded for each backend.
//!
//! Every statement below is shared text: `$n` placeholders, `RETURNING`, `ON CONFLICT`, CTEs and
//! `UPDATE ... FROM` mean the same on SQLite and PostgreSQL. The only backend-specific statements
//! are three PostgreSQL locks: the one that serialises writers of the change log, the workspace
//! row lock that serialises changes counting a workspace's members, and the key row locks that
//! order batch updates of keys (SQLite has a single writer anyway).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, LazyLock};
use tokio::sync::Notify;

use async_trait::async_trait;
use keyrail_core::authz::BuiltinRole;
use keyrail_core::id::{
    AuditId, BuilderProfileId, GrantId, KeyId, MemberId, RoleId, SessionId, UserId, WorkspaceId,
};
use keyrail_core::model::{
    ActorType, ApiKey, App, AuditEntry, AuditFilter, BuilderProfile, Change, CustomRole, Grant,
    GrantFilter, GrantView, KeyFilter, KeyFormat, KeyRateLimit, LoginThrottle, Member, MemberView,
    MfaState, OwnerGuarded, Page, RefreshOutcome, Session, StoredScope, StoredSigningKey,
    StoredTokenKey, User, Workspace, WorkspaceStatus,
};
use keyrail_core::secret::Secret;
use keyrail_core::store::{
    AppStore, AuditStore, ChangeStore, IdentityStore, KeyStore, Store, StoreError, StoreResult,
    WorkspaceStore,
};
use keyrail_core::time::Timestamp;
use sqlx::AssertSqlSafe;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnection, PgListener, PgPool};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::error::{map_err, map_migrate_error};

pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Taken inside a transaction right before it appends to `changes`, and held until it commits:
/// with concurrent writers, a `seq` is then only allocated after every smaller one is committed,
/// so a poller that has seen `seq = n` will never later find a new entry below `n`. It also
/// queues the announcement on [`PG_CHANGES_CHANNEL`] that other nodes' listeners receive.
const PG_CHANGES_LOCK: &str =
    "SELECT pg_advisory_xact_lock(7250113001), pg_notify('keyrail_changes', '')";

/// The channel on which appends to `changes` are announced when they commit (PostgreSQL sends
/// a transaction's notifications at commit, and one per channel and payload).
const PG_CHANGES_CHANNEL: &str = "keyrail_changes";

/// Taken first by every transaction that writes a workspace's members or counts them (the
/// last-owner guard, a role's holders), and held until it commits: such transactions on one
/// workspace then run one after the other, each seeing what the previous one committed (under
/// READ COMMITTED every later statement takes a fresh snapshot, so it counts after the lock).
/// Without it, two owners demoting each other would each count two owners and both succeed.
const PG_WORKSPACE_LOCK: &str = "SELECT id FROM workspaces WHERE id = $1 FOR UPDATE";

/// Taken by a transaction that updates many keys in batch statements (`touch_keys`) before each
/// batch: locks the keys' rows (`$1`, a JSON array of ids) in id order, so that two such
/// transactions over overlapping keys (two nodes flushing at once) wait for each other instead of
/// locking in the order their joins happen to visit rows and deadlocking.
const PG_KEYS_LOCK: &str = "SELECT id FROM keys
     WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))
     ORDER BY id FOR UPDATE";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    name: String,
    password_hash: String,
    mfa_enabled: bool,
    superuser: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: UserId::from_trusted(r.id),
            email: r.email,
            name: r.name,
            password_hash: Secret::new(r.password_hash),
            mfa_enabled: r.mfa_enabled,
            superuser: r.superuser,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct WorkspaceRow {
    id: String,
    name: String,
    status: String,
    key_format: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<WorkspaceRow> for Workspace {
    type Error = StoreError;

    fn try_from(r: WorkspaceRow) -> Result<Self, StoreError> {
        let status = WorkspaceStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Other(format!(
                "workspace {} has an unknown status {:?}",
                r.id, r.status
            ))
        })?;
        let key_format: KeyFormat = serde_json::from_str(&r.key_format).map_err(|e| {
            StoreError::Other(format!(
                "workspace {} has an unreadable key_format: {e}",
                r.id
            ))
        })?;
        Ok(Workspace {
            id: WorkspaceId::from_trusted(r.id),
            name: r.name,
            status,
            key_format,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

fn workspaces(rows: Vec<WorkspaceRow>) -> StoreResult<Vec<Workspace>> {
    rows.into_iter().map(Workspace::try_from).collect()
}

fn key_format_json(f: &KeyFormat) -> StoreResult<String> {
    serde_json::to_string(f).map_err(|e| StoreError::Other(format!("encoding key_format: {e}")))
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    id: String,
    workspace_id: String,
    user_id: String,
    role: String,
    created_at: i64,
}

impl From<MemberRow> for Member {
    fn from(r: MemberRow) -> Self {
        Member {
            id: MemberId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            user_id: UserId::from_trusted(r.user_id),
            role: r.role,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct MemberViewRow {
    #[sqlx(flatten)]
    member: MemberRow,
    email: String,
    name: String,
}

impl From<MemberViewRow> for MemberView {
    fn from(r: MemberViewRow) -> Self {
        MemberView {
            member: r.member.into(),
            email: r.email,
            name: r.name,
        }
    }
}

/// A membership joined with its workspace (the workspace's columns keep their names).
#[derive(sqlx::FromRow)]
struct MembershipRow {
    #[sqlx(flatten)]
    workspace: WorkspaceRow,
    member_id: String,
    member_user_id: String,
    member_role: String,
    member_created_at: i64,
}

impl TryFrom<MembershipRow> for (Workspace, Member) {
    type Error = StoreError;

    fn try_from(r: MembershipRow) -> Result<Self, StoreError> {
        let ws = Workspace::try_from(r.workspace)?;
        let member = Member {
            id: MemberId::from_trusted(r.member_id),
            workspace_id: ws.id.clone(),
            user_id: UserId::from_trusted(r.member_user_id),
            role: r.member_role,
            created_at: Timestamp::from_millis(r.member_created_at),
        };
        Ok((ws, member))
    }
}

#[derive(sqlx::FromRow)]
struct ScopeRow {
    name: String,
    description: String,
    dangerous: bool,
    created_at: i64,
}

impl From<ScopeRow> for StoredScope {
    fn from(r: ScopeRow) -> Self {
        StoredScope {
            name: r.name,
            description: r.description,
            dangerous: r.dangerous,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct RoleRow {
    id: String,
    workspace_id: String,
    name: String,
    /// A JSON array of scope names.
    scopes: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<RoleRow> for CustomRole {
    type Error = StoreError;

    fn try_from(r: RoleRow) -> Result<Self, StoreError> {
        let scopes: Vec<String> = serde_json::from_str(&r.scopes)
            .map_err(|e| StoreError::Other(format!("role {} has unreadable scopes: {e}", r.id)))?;
        Ok(CustomRole {
            id: RoleId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            name: r.name,
            scopes,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

fn scopes_json(scopes: &[String]) -> StoreResult<String> {
    serde_json::to_string(scopes)
        .map_err(|e| StoreError::Other(format!("encoding role scopes: {e}")))
}

/// The role the last-owner guard protects.
fn owner_role() -> &'static str {
    BuiltinRole::Owner.as_str()
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    seq: i64,
    at: i64,
    kind: String,
    subject: String,
}

impl From<ChangeRow> for Change {
    fn from(r: ChangeRow) -> Self {
        Change {
            seq: r.seq,
            at: Timestamp::from_millis(r.at),
            kind: r.kind,
            subject: r.subject,
        }
    }
}

#[derive(sqlx::FromRow)]
struct MfaRow {
    mfa_secret: Option<String>,
    mfa_pending: Option<String>,
    mfa_last_step: Option<i64>,
}

impl From<MfaRow> for MfaState {
    fn from(r: MfaRow) -> Self {
        MfaState {
            secret: r.mfa_secret,
            pending: r.mfa_pending,
            last_step: r.mfa_last_step,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ThrottleRow {
    failures: i64,
    window_start: i64,
    locked_until: i64,
}

impl From<ThrottleRow> for LoginThrottle {
    fn from(r: ThrottleRow) -> Self {
        LoginThrottle {
            // Never negative; a count beyond u32 is as good as u32::MAX.
            failures: u32::try_from(r.failures.max(0)).unwrap_or(u32::MAX),
            window_start: Timestamp::from_millis(r.window_start),
            locked_until: Timestamp::from_millis(r.locked_until),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_id: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            id: SessionId::from_trusted(r.id),
            user_id: UserId::from_trusted(r.user_id),
            created_at: Timestamp::from_millis(r.created_at),
            last_used_at: Timestamp::from_millis(r.last_used_at),
            expires_at: Timestamp::from_millis(r.expires_at),
            revoked_at: r.revoked_at.map(Timestamp::from_millis),
            ip: r.ip,
            user_agent: r.user_agent,
        }
    }
}

/// A refresh token looked up with the state of its session.
#[derive(sqlx::FromRow)]
struct TokenSessionRow {
    session_id: String,
    revoked_at: Option<i64>,
    expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct SigningKeyRow {
    kid: String,
    sealed_private: String,
    created_at: i64,
}

impl From<SigningKeyRow> for StoredSigningKey {
    fn from(r: SigningKeyRow) -> Self {
        StoredSigningKey {
            kid: r.kid,
            sealed_private: r.sealed_private,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    at: i64,
    workspace_id: Option<String>,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    outcome: String,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        let actor_type = ActorType::parse(&r.actor_type).ok_or_else(|| {
            StoreError::Other(format!(
                "audit entry {} has an unknown actor type {:?}",
                r.id, r.actor_type
            ))
        })?;
        Ok(AuditEntry {
            id: AuditId::from_trusted(r.id),
            at: Timestamp::from_millis(r.at),
            workspace_id: r.workspace_id.map(WorkspaceId::from_trusted),
            actor_type,
            actor_id: r.actor_id,
            action: r.action,
            target: r.target,
            ip: r.ip,
            user_agent: r.user_agent,
            outcome: r.outcome,
        })
    }
}

/// The change-log kind of a revoked session (its subject is the session id).
const SESSION_REVOKED: &str = "session.revoked";

/// What a write on a user that is not there reports: the trait gives such writes no `false`.
fn no_such_user(id: &UserId) -> StoreError {
    StoreError::Other(format!("user {id} does not exist"))
}

/// Keyset pagination bounds: ids are never empty, so `id > ''` is "from the start".
fn page_bounds(page: &Page) -> (&str, i64) {
    (page.after.as_deref().unwrap_or(""), i64::from(page.limit))
}

// ---------------------------------------------------------------------------------------------
// API keys

/// The columns of `keys`, in the order of [`KeyRow`] and of [`bind_key!`].
macro_rules! key_columns {
    () => {
        "id, workspace_id, name, prefix, hash, scopes, created_at, created_by, updated_at, \
         expires_at, revoked_at, disabled, last_used_at, rate_limit_limit, rate_limit_window, \
         remaining, meta, external_id, sealed_key, replaced_by"
    };
}

/// How many columns [`key_columns!`] names (placeholders per inserted row).
const KEY_COLUMN_COUNT: usize = 20;

// Batch statements are kept small on purpose. A statement whose parameters do not fit in one
// write of the driver (over TLS: one 16 KiB record) is sent in several TCP segments, and as sqlx
// 0.9 does not set TCP_NODELAY, the last one then waits for the server's delayed ACK: about 40 ms
// per statement. Many statements of a few KiB are far faster than a few big ones. Their shapes are
// also fixed (a few row counts), so that each connection prepares a handful of statements once
// instead of filling its statement cache with one-off texts.

/// The most rows of one multi-row `INSERT INTO keys` (a power of two; see [`key_insert_chunks`]).
const KEY_INSERT_MAX_ROWS: usize = 64;

/// Roughly how many bytes of parameters one `INSERT INTO keys` may carry.
const KEY_INSERT_MAX_BYTES: usize = 12 * 1024;

/// The multi-row insert statements, for 1, 2, 4, ... [`KEY_INSERT_MAX_ROWS`] rows.
static INSERT_KEYS_SQL: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    (0..=KEY_INSERT_MAX_ROWS.trailing_zeros())
        .map(|shift| insert_keys_sql(1 << shift).into())
        .collect()
});

/// Rows (hashes, or key ids with times) per lookup or update statement; a last, shorter batch is
/// padded with repeats of its last row, which change nothing.
const KEY_BATCH_ROWS: usize = 128;

/// `SELECT hash FROM keys WHERE hash IN (...)` over [`KEY_BATCH_ROWS`] hashes.
static EXISTING_HASHES_SQL: LazyLock<Arc<str>> =
    LazyLock::new(|| existing_hashes_sql(KEY_BATCH_ROWS).into());

/// The `touch_keys` update over [`KEY_BATCH_ROWS`] keys.
static TOUCH_KEYS_SQL: LazyLock<Arc<str>> = LazyLock::new(|| touch_keys_sql(KEY_BATCH_ROWS).into());

/// The change-log kind of a key that was changed, revoked or rotated (its subject is the key's
/// hash: the verify cache is keyed by it).
const KEY_CHANGED: &str = "key.changed";

/// The status of a key at `$n` in SQL, with the precedence of [`ApiKey::status`]: revoked (from
/// `revoked_at` on), else disabled, else expired (from `expires_at` on), else active. A NULL time
/// compares as unknown, so its branch is not taken.
macro_rules! key_status_at {
    ($now:literal) => {
        concat!(
            "CASE WHEN revoked_at <= ",
            $now,
            " THEN 'revoked' WHEN disabled THEN 'disabled' WHEN expires_at <= ",
            $now,
            " THEN 'expired' ELSE 'active' END"
        )
    };
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    workspace_id: String,
    name: String,
    prefix: String,
    hash: String,
    /// A JSON array of scope names.
    scopes: String,
    created_at: i64,
    created_by: Option<String>,
    updated_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    disabled: bool,
    last_used_at: Option<i64>,
    rate_limit_limit: Option<i64>,
    rate_limit_window: Option<i64>,
    remaining: Option<i64>,
    /// A JSON value.
    meta: Option<String>,
    external_id: Option<String>,
    sealed_key: Option<String>,
    replaced_by: Option<String>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        let bad = |what: &str, e: &dyn fmt::Display| {
            StoreError::Other(format!("key {} has an unreadable {what}: {e}", r.id))
        };
        let scopes: Vec<String> = serde_json::from_str(&r.scopes).map_err(|e| bad("scopes", &e))?;
        let meta = r
            .meta
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| bad("meta", &e))?;
        let rate_limit = match (r.rate_limit_limit, r.rate_limit_window) {
            (None, None) => None,
            (Some(limit), Some(window)) => Some(KeyRateLimit {
                limit: u32::try_from(limit).map_err(|e| bad("rate limit", &e))?,
                window_seconds: u32::try_from(window).map_err(|e| bad("rate limit window", &e))?,
            }),
            _ => return Err(bad("rate limit", &"only one of limit and window is set")),
        };
        Ok(ApiKey {
            id: KeyId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            name: r.name,
            prefix: r.prefix,
            hash: r.hash,
            scopes,
            created_at: Timestamp::from_millis(r.created_at),
            created_by: r.created_by,
            updated_at: Timestamp::from_millis(r.updated_at),
            expires_at: r.expires_at.map(Timestamp::from_millis),
            revoked_at: r.revoked_at.map(Timestamp::from_millis),
            disabled: r.disabled,
            last_used_at: r.last_used_at.map(Timestamp::from_millis),
            rate_limit,
            remaining: r.remaining,
            meta,
            external_id: r.external_id,
            sealed_key: r.sealed_key,
            replaced_by: r.replaced_by.map(KeyId::from_trusted),
        })
    }
}

/// A key with its JSON columns encoded, ready to bind.
struct KeyParams<'a> {
    key: &'a ApiKey,
    scopes: String,
    meta: Option<String>,
}

impl<'a> KeyParams<'a> {
    fn new(key: &'a ApiKey) -> StoreResult<Self> {
        let scopes = serde_json::to_string(&key.scopes)
            .map_err(|e| StoreError::Other(format!("encoding key scopes: {e}")))?;
        let meta = key
            .meta
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Other(format!("encoding key meta: {e}")))?;
        Ok(Self { key, scopes, meta })
    }

    fn rate_limit_limit(&self) -> Option<i64> {
        self.key.rate_limit.map(|r| i64::from(r.limit))
    }

    fn rate_limit_window(&self) -> Option<i64> {
        self.key.rate_limit.map(|r| i64::from(r.window_seconds))
    }

    /// About how many bytes its parameters take on the wire.
    fn wire_size(&self) -> usize {
        let k = self.key;
        let texts = [
            Some(k.id.as_str()),
            Some(k.workspace_id.as_str()),
            Some(k.name.as_str()),
            Some(k.prefix.as_str()),
            Some(k.hash.as_str()),
            Some(self.scopes.as_str()),
            k.created_by.as_deref(),
            self.meta.as_deref(),
            k.external_id.as_deref(),
            k.sealed_key.as_deref(),
            k.replaced_by.as_ref().map(KeyId::as_str),
        ];
        let text_bytes: usize = texts.iter().flatten().map(|t| t.len()).sum();
        // A length and a format code per parameter, 8 bytes per number.
        text_bytes + KEY_COLUMN_COUNT * 6 + 9 * 8
    }
}

/// Splits keys into runs for the multi-row insert: each run has a power-of-two length up to
/// [`KEY_INSERT_MAX_ROWS`] and, unless it is a single key, at most about
/// [`KEY_INSERT_MAX_BYTES`] of parameters.
fn key_insert_chunks<'k, 'a>(keys: &'k [KeyParams<'a>]) -> Vec<&'k [KeyParams<'a>]> {
    let mut chunks = Vec::new();
    let mut rest = keys;
    while !rest.is_empty() {
        let mut rows: usize = 0;
        let mut bytes = 0;
        for p in rest.iter().take(KEY_INSERT_MAX_ROWS) {
            bytes += p.wire_size();
            if rows > 0 && bytes > KEY_INSERT_MAX_BYTES {
                break;
            }
            rows += 1;
        }
        // Down to a power of two (rows >= 1).
        let rows = 1usize << rows.ilog2();
        let (chunk, tail) = rest.split_at(rows);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// `items` in batches of exactly [`KEY_BATCH_ROWS`], the last one padded with repeats of the
/// last item.
fn padded_batches<T: Copy>(items: &[T]) -> Vec<Vec<T>> {
    items
        .chunks(KEY_BATCH_ROWS)
        .map(|chunk| {
            let mut batch = chunk.to_vec();
            let last = chunk[chunk.len() - 1];
            batch.resize(KEY_BATCH_ROWS, last);
            batch
        })
        .collect()
}

/// Binds every column of a key, in the order of [`key_columns!`].
macro_rules! bind_key {
    ($query:expr, $p:expr) => {{
        let p: &KeyParams<'_> = $p;
        let k = p.key;
        $query
            .bind(k.id.as_str())
            .bind(k.workspace_id.as_str())
            .bind(k.name.as_str())
            .bind(k.prefix.as_str())
            .bind(k.hash.as_str())
            .bind(p.scopes.as_str())
            .bind(k.created_at.millis())
            .bind(k.created_by.as_deref())
            .bind(k.updated_at.millis())
            .bind(k.expires_at.map(Timestamp::millis))
            .bind(k.revoked_at.map(Timestamp::millis))
            .bind(k.disabled)
            .bind(k.last_used_at.map(Timestamp::millis))
            .bind(p.rate_limit_limit())
            .bind(p.rate_limit_window())
            .bind(k.remaining)
            .bind(p.meta.as_deref())
            .bind(k.external_id.as_deref())
            .bind(k.sealed_key.as_deref())
            .bind(k.replaced_by.as_ref().map(KeyId::as_str))
    }};
}

/// `($1, $2, ..., $cols), ($cols+1, ...), ...`: `rows` tuples of `cols` numbered placeholders.
fn placeholder_rows(rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * cols + col + 1));
        }
        sql.push(')');
    }
    sql
}

/// `INSERT INTO keys (...) VALUES` with `rows` rows of placeholders.
fn insert_keys_sql(rows: usize) -> String {
    format!(
        "INSERT INTO keys ({}) VALUES {}",
        key_columns!(),
        placeholder_rows(rows, KEY_COLUMN_COUNT)
    )
}

/// `SELECT hash FROM keys WHERE hash IN ($1, ..., $n)`.
fn existing_hashes_sql(n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!("SELECT hash FROM keys WHERE hash IN ({})", list.join(", "))
}

/// Sets `last_used_at` of `n` keys (parameters: id, time, id, time, ...), only forward: a key
/// whose stored time is as late or later is not written at all.
fn touch_keys_sql(n: usize) -> String {
    format!(
        "WITH used (id, at) AS (VALUES {})
         UPDATE keys SET last_used_at = used.at
         FROM used
         WHERE keys.id = used.id
           AND (keys.last_used_at IS NULL OR keys.last_used_at < used.at)",
        placeholder_rows(n, 2)
    )
}

/// The latest time per key, sorted by id (so rows are written, and on PostgreSQL locked, in one
/// order by every caller).
fn latest_uses(used: &[(KeyId, Timestamp)]) -> Vec<(&str, i64)> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, at) in used {
        let slot = latest.entry(id.as_str()).or_insert(at.millis());
        *slot = (*slot).max(at.millis());
    }
    latest.into_iter().collect()
}

/// The SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl SqliteStore {
    /// One process owns a SQLite database: its own writes evict as they happen.
    async fn follow_announcements(&self, _wake: Arc<Notify>) -> StoreResult<bool> {
        Ok(false)
    }
}

impl PgStore {
    /// Holds one connection of the pool, listening on [`PG_CHANGES_CHANNEL`].
    async fn follow_announcements(&self, wake: Arc<Notify>) -> StoreResult<bool> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(map_err)?;
        listener.listen(PG_CHANGES_CHANNEL).await.map_err(map_err)?;
        // Appends committed before the LISTEN took effect were not announced here.
        wake.notify_one();
        loop {
            // `None`: the connection was lost (and is remade, with its LISTEN, on the next
            // call); what was announced meanwhile is lost, so wake the poller either way.
            listener.try_recv().await.map_err(map_err)?;
            wake.notify_one();
        }
    }
}

// The pools' own Debug output includes the connect options; say nothing about them.
impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgStore")
    }
}

/// Expands the one body of SQL for a backend: `$store` wraps a pool in field `pool`, whose
/// connections are `$conn`; `$changes_lock` is an optional statement run before appending to
/// `changes`; `$workspace_lock` an optional statement (`$1` = the workspace id) run first by a
/// transaction that writes or counts a workspace's members; `$keys_lock` an optional statement
/// (`$1` = a JSON array of key ids) run before each batch update of keys.
///
/// Every transaction that writes starts with a write statement (after the optional locks, which
/// SQLite does not have): SQLite then waits (busy timeout) for the write lock, where a
/// transaction that read first would fail outright once another connection had written in
/// between. Holding the write lock, it also sees every earlier commit, which is what makes its
/// counting guards atomic.
// ---------------------------------------------------------------------------------------------
// Apps

#[derive(sqlx::FromRow)]
struct BuilderProfileRow {
    id: String,
    user_id: String,
    name: String,
    website: Option<String>,
    created_at: i64,
}

impl From<BuilderProfileRow> for BuilderProfile {
    fn from(r: BuilderProfileRow) -> Self {
        BuilderProfile {
            id: BuilderProfileId::from_trusted(r.id),
            user_id: UserId::from_trusted(r.user_id),
            name: r.name,
            website: r.website,
            created_at: Timestamp::from_millis(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct AppRow {
    client_id: String,
    owner_id: String,
    builder_profile_id: String,
    name: String,
    description: String,
    workspace_restrictions: Option<String>,
    active: bool,
    sealed_secret: String,
    secret_generation: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AppRow> for App {
    type Error = StoreError;

    fn try_from(r: AppRow) -> Result<Self, StoreError> {
        let workspace_restrictions = r
            .workspace_restrictions
            .map(|json| {
                serde_json::from_str::<Vec<String>>(&json)
                    .map(|ids| ids.into_iter().map(WorkspaceId::from_trusted).collect())
                    .map_err(|e| {
                        StoreError::Other(format!(
                            "app {} has unreadable workspace_restrictions: {e}",
                            r.client_id
                        ))
                    })
            })
            .transpose()?;
        Ok(App {
            client_id: r.client_id,
            owner_id: UserId::from_trusted(r.owner_id),
            builder_profile_id: BuilderProfileId::from_trusted(r.builder_profile_id),
            name: r.name,
            description: r.description,
            workspace_restrictions,
            active: r.active,
            sealed_secret: r.sealed_secret,
            secret_generation: r.secret_generation,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

fn restrictions_json(app: &App) -> StoreResult<Option<String>> {
    app.workspace_restrictions
        .as_ref()
        .map(|ids| {
            serde_json::to_string(&ids.iter().map(WorkspaceId::as_str).collect::<Vec<_>>())
                .map_err(|e| StoreError::Other(format!("encoding workspace_restrictions: {e}")))
        })
        .transpose()
}

const APP_COLUMNS: &str = "client_id, owner_id, builder_profile_id, name, description,
     workspace_restrictions, active, sealed_secret, secret_generation, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    client_id: String,
    workspace_id: String,
    member_id: String,
    scopes: String,
    shared: bool,
    created_at: i64,
    app_name: String,
}

impl TryFrom<GrantRow> for GrantView {
    type Error = StoreError;

    fn try_from(r: GrantRow) -> Result<Self, StoreError> {
        let scopes: Vec<String> = serde_json::from_str(&r.scopes)
            .map_err(|e| StoreError::Other(format!("grant {} has unreadable scopes: {e}", r.id)))?;
        Ok(GrantView {
            grant: Grant {
                id: GrantId::from_trusted(r.id),
                client_id: r.client_id,
                workspace_id: WorkspaceId::from_trusted(r.workspace_id),
                member_id: MemberId::from_trusted(r.member_id),
                scopes,
                shared: r.shared,
                created_at: Timestamp::from_millis(r.created_at),
            },
            app_name: r.app_name,
        })
    }
}

const GRANT_SELECT: &str = "SELECT g.id, g.client_id, g.workspace_id, g.member_id, g.scopes,
            g.shared, g.created_at, a.name AS app_name
     FROM grants g JOIN apps a ON a.client_id = g.client_id";

#[derive(sqlx::FromRow)]
struct TokenKeyRow {
    kid: String,
    sealed_key: String,
    created_at: i64,
}

macro_rules! sql_store {
    (
        $store:ident,
        $pool:ty,
        $conn:ty,
        $backend:literal,
        $migrator:expr,
        $changes_lock:expr,
        $workspace_lock:expr,
        $keys_lock:expr
    ) => {
        impl $store {
            /// Locks the workspace until the caller's transaction ends (PostgreSQL; a no-op on
            /// SQLite, whose first write takes the database's write lock). A missing workspace
            /// locks nothing; the statements that follow then find nothing either.
            async fn lock_workspace(conn: &mut $conn, ws: &WorkspaceId) -> StoreResult<()> {
                let lock: Option<&'static str> = $workspace_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock)
                        .bind(ws.as_str())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                Ok(())
            }

            /// Appends one `kind` entry per subject to the change log, inside the caller's
            /// transaction (on PostgreSQL after taking the change-log lock, held until commit).
            async fn append_changes(
                conn: &mut $conn,
                at: Timestamp,
                kind: &str,
                subjects: &[&str],
            ) -> StoreResult<()> {
                if subjects.is_empty() {
                    return Ok(());
                }
                let lock: Option<&'static str> = $changes_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                for subject in subjects {
                    sqlx::query("INSERT INTO changes (at, kind, subject) VALUES ($1, $2, $3)")
                        .bind(at.millis())
                        .bind(kind)
                        .bind(*subject)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                Ok(())
            }

            /// Adds a key format (its JSON) to those ever used, inside the caller's transaction.
            async fn remember_format(conn: &mut $conn, format_json: &str) -> StoreResult<()> {
                sqlx::query("INSERT INTO key_formats (format) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(format_json)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            /// Locks the rows of these keys in id order until the caller's transaction ends
            /// (PostgreSQL; a no-op on SQLite, whose first write takes the write lock).
            async fn lock_keys(conn: &mut $conn, ids: &[&str]) -> StoreResult<()> {
                let lock: Option<&'static str> = $keys_lock;
                if let Some(lock) = lock {
                    let ids = serde_json::to_string(ids)
                        .map_err(|e| StoreError::Other(format!("encoding key ids: {e}")))?;
                    sqlx::query(lock)
                        .bind(ids)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(map_err)?;
                }
                Ok(())
            }

            /// Inserts the keys with multi-row statements (see [`key_insert_chunks`]), inside
            /// the caller's transaction.
            async fn insert_key_rows(conn: &mut $conn, keys: &[KeyParams<'_>]) -> StoreResult<()> {
                for chunk in key_insert_chunks(keys) {
                    // A power of two: its statement is the log2-th.
                    let sql = Arc::clone(&INSERT_KEYS_SQL[chunk.len().trailing_zeros() as usize]);
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for p in chunk {
                        query = bind_key!(query, p);
                    }
                    query.execute(&mut *conn).await.map_err(map_err)?;
                }
                Ok(())
            }

            /// Saves what may change in a key (see [`KeyStore::update_key`]) inside the caller's
            /// transaction; returns the key's hash, or `None` when there is no such key.
            async fn save_key(conn: &mut $conn, p: &KeyParams<'_>) -> StoreResult<Option<String>> {
                let k = p.key;
                sqlx::query_scalar(
                    // A revocation is irreversible: `revoked_at` only ever moves earlier and
                    // `replaced_by` is set once, whatever the (maybe stale) copy says, so an
                    // edit racing a revoke or a rotation cannot bring the key back.
                    "UPDATE keys
                     SET name = $1, scopes = $2, meta = $3, rate_limit_limit = $4,
                         rate_limit_window = $5, disabled = $6, updated_at = $7,
                         expires_at = $8,
                         revoked_at = CASE
                             WHEN revoked_at IS NULL THEN $9
                             WHEN $9 IS NULL OR revoked_at <= $9 THEN revoked_at
                             ELSE $9
                         END,
                         replaced_by = COALESCE(replaced_by, $10)
                     WHERE id = $11 AND workspace_id = $12
                     RETURNING hash",
                )
                .bind(k.name.as_str())
                .bind(p.scopes.as_str())
                .bind(p.meta.as_deref())
                .bind(p.rate_limit_limit())
                .bind(p.rate_limit_window())
                .bind(k.disabled)
                .bind(k.updated_at.millis())
                .bind(k.expires_at.map(Timestamp::millis))
                .bind(k.revoked_at.map(Timestamp::millis))
                .bind(k.replaced_by.as_ref().map(KeyId::as_str))
                .bind(k.id.as_str())
                .bind(k.workspace_id.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)
            }

            /// Why a guarded member write matched nothing, inside its transaction: the member
            /// is not there, or it is the last owner (the only other condition of the write).
            async fn refused(
                conn: &mut $conn,
                ws: &WorkspaceId,
                id: &MemberId,
            ) -> StoreResult<OwnerGuarded> {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM members WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)?;
                Ok(match found {
                    Some(_) => OwnerGuarded::LastOwner,
                    None => OwnerGuarded::NotFound,
                })
            }

            /// Wraps a pool; the schema must already be migrated (see [`Self::migrate`]).
            pub fn from_pool(pool: $pool) -> Self {
                Self { pool }
            }

            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// Applies the embedded migrations that this database has not seen; returns how
            /// many were applied (0 when it was up to date).
            pub async fn migrate(&self) -> StoreResult<usize> {
                let migrator: &Migrator = &$migrator;
                let mut conn = self.pool.acquire().await.map_err(map_err)?;
                // Before the first run the bookkeeping table does not exist: nothing applied.
                let before = conn
                    .list_applied_migrations(&migrator.table_name)
                    .await
                    .map_or(0, |applied| applied.len());
                migrator.run(&mut *conn).await.map_err(map_migrate_error)?;
                let after = conn
                    .list_applied_migrations(&migrator.table_name)
                    .await
                    .map_err(map_migrate_error)?
                    .len();
                Ok(after.saturating_sub(before))
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }

        #[async_trait]
        impl IdentityStore for $store {
            async fn insert_user(&self, user: &User) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users
                         (id, email, name, password_hash, mfa_enabled, superuser,
                          created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(user.id.as_str())
                .bind(user.email.as_str())
                .bind(user.name.as_str())
                .bind(user.password_hash.expose())
                .bind(user.mfa_enabled)
                .bind(user.superuser)
                .bind(user.created_at.millis())
                .bind(user.updated_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(User::from))
            }

            async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(User::from))
            }

            async fn list_users(&self, page: &Page) -> StoreResult<Vec<User>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<UserRow> = sqlx::query_as(
                    "SELECT id, email, name, password_hash, mfa_enabled, superuser,
                            created_at, updated_at
                     FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(User::from).collect())
            }

            async fn set_password_hash(
                &self,
                id: &UserId,
                hash: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(hash)
                .bind(at.millis())
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn set_user_name(
                &self,
                id: &UserId,
                name: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated =
                    sqlx::query("UPDATE users SET name = $1, updated_at = $2 WHERE id = $3")
                        .bind(name)
                        .bind(at.millis())
                        .bind(id.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                Ok(updated > 0)
            }

            async fn set_superuser(
                &self,
                id: &UserId,
                superuser: bool,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated =
                    sqlx::query("UPDATE users SET superuser = $1, updated_at = $2 WHERE id = $3")
                        .bind(superuser)
                        .bind(at.millis())
                        .bind(id.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                Ok(updated > 0)
            }

            async fn mfa_state(&self, user: &UserId) -> StoreResult<MfaState> {
                let row: Option<MfaRow> = sqlx::query_as(
                    "SELECT mfa_secret, mfa_pending, mfa_last_step FROM users WHERE id = $1",
                )
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                // A user that does not exist has no MFA.
                Ok(row.map(MfaState::from).unwrap_or_default())
            }

            async fn set_mfa_pending(
                &self,
                user: &UserId,
                sealed: Option<&str>,
            ) -> StoreResult<()> {
                let updated = sqlx::query("UPDATE users SET mfa_pending = $1 WHERE id = $2")
                    .bind(sealed)
                    .bind(user.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if updated == 0 {
                    return Err(no_such_user(user));
                }
                Ok(())
            }

            async fn enable_mfa(
                &self,
                user: &UserId,
                sealed_secret: &str,
                last_step: i64,
                recovery_code_hashes: &[String],
                at: Timestamp,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE users
                     SET mfa_secret = $1, mfa_enabled = $2, mfa_pending = NULL,
                         mfa_last_step = $3, updated_at = $4
                     WHERE id = $5",
                )
                .bind(sealed_secret)
                .bind(true)
                .bind(last_step)
                .bind(at.millis())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Err(no_such_user(user));
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                for hash in recovery_code_hashes {
                    sqlx::query(
                        "INSERT INTO recovery_codes (user_id, code_hash, used_at, created_at)
                         VALUES ($1, $2, NULL, $3)",
                    )
                    .bind(user.as_str())
                    .bind(hash.as_str())
                    .bind(at.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            }

            async fn disable_mfa(&self, user: &UserId, at: Timestamp) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE users
                     SET mfa_secret = NULL, mfa_enabled = $1, mfa_pending = NULL,
                         mfa_last_step = NULL, updated_at = $2
                     WHERE id = $3",
                )
                .bind(false)
                .bind(at.millis())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Err(no_such_user(user));
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn advance_totp_step(&self, user: &UserId, step: i64) -> StoreResult<bool> {
                // One conditional write: of two concurrent uses of a step, the second finds the
                // step already stored and matches nothing.
                let updated = sqlx::query(
                    "UPDATE users SET mfa_last_step = $1
                     WHERE id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)",
                )
                .bind(step)
                .bind(user.as_str())
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn use_recovery_code(
                &self,
                user: &UserId,
                code_hash: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1
                     WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(at.millis())
                .bind(user.as_str())
                .bind(code_hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn unused_recovery_codes(&self, user: &UserId) -> StoreResult<u32> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }

            async fn login_throttle(&self, key: &str) -> StoreResult<Option<LoginThrottle>> {
                let row: Option<ThrottleRow> = sqlx::query_as(
                    "SELECT failures, window_start, locked_until FROM login_throttle
                     WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(LoginThrottle::from))
            }

            async fn record_login_failure(
                &self,
                key: &str,
                now: Timestamp,
                window_start_after: Timestamp,
            ) -> StoreResult<LoginThrottle> {
                // One statement, so concurrent failures are each counted: the row is created,
                // or updated under its row lock (PostgreSQL) / the write lock (SQLite).
                let row: ThrottleRow = sqlx::query_as(
                    "INSERT INTO login_throttle (key, failures, window_start, locked_until)
                     VALUES ($1, 1, $2, 0)
                     ON CONFLICT (key) DO UPDATE SET
                         failures = CASE WHEN login_throttle.window_start < $3 THEN 1
                                         ELSE login_throttle.failures + 1 END,
                         window_start = CASE WHEN login_throttle.window_start < $3 THEN $2
                                             ELSE login_throttle.window_start END
                     RETURNING failures, window_start, locked_until",
                )
                .bind(key)
                .bind(now.millis())
                .bind(window_start_after.millis())
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.into())
            }

            async fn lock_login(&self, key: &str, until: Timestamp) -> StoreResult<()> {
                // A key locked before any failure was counted has no window yet (0).
                sqlx::query(
                    "INSERT INTO login_throttle (key, failures, window_start, locked_until)
                     VALUES ($1, 0, 0, $2)
                     ON CONFLICT (key) DO UPDATE SET failures = 0, locked_until = $2",
                )
                .bind(key)
                .bind(until.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn clear_login_throttle(&self, key: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn insert_session(
                &self,
                session: &Session,
                refresh_hash: &str,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO sessions
                         (id, user_id, created_at, last_used_at, expires_at, revoked_at, ip,
                          user_agent)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(session.id.as_str())
                .bind(session.user_id.as_str())
                .bind(session.created_at.millis())
                .bind(session.last_used_at.millis())
                .bind(session.expires_at.millis())
                .bind(session.revoked_at.map(Timestamp::millis))
                .bind(session.ip.as_deref())
                .bind(session.user_agent.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (hash, session_id, created_at, spent_at)
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(refresh_hash)
                .bind(session.id.as_str())
                .bind(session.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn session_by_id(&self, id: &SessionId) -> StoreResult<Option<Session>> {
                let row: Option<SessionRow> = sqlx::query_as(
                    "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, ip,
                            user_agent
                     FROM sessions WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Session::from))
            }

            async fn active_sessions(
                &self,
                user: &UserId,
                now: Timestamp,
            ) -> StoreResult<Vec<Session>> {
                let rows: Vec<SessionRow> = sqlx::query_as(
                    "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, ip,
                            user_agent
                     FROM sessions
                     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
                     ORDER BY created_at DESC, id DESC",
                )
                .bind(user.as_str())
                .bind(now.millis())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Session::from).collect())
            }

            async fn rotate_refresh(
                &self,
                old_hash: &str,
                new_hash: &str,
                now: Timestamp,
            ) -> StoreResult<RefreshOutcome> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Spend first, conditionally. Of two concurrent rotations of one token, the
                // second waits for the first (row lock / write lock) and then matches nothing,
                // so it is told apart below as a reuse.
                let spent: Option<String> = sqlx::query_scalar(
                    "UPDATE refresh_tokens SET spent_at = $1
                     WHERE hash = $2 AND spent_at IS NULL
                     RETURNING session_id",
                )
                .bind(now.millis())
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;

                if let Some(session_id) = spent {
                    let session: Option<SessionRow> = sqlx::query_as(
                        "UPDATE sessions SET last_used_at = $1
                         WHERE id = $2 AND revoked_at IS NULL AND expires_at > $1
                         RETURNING id, user_id, created_at, last_used_at, expires_at,
                                   revoked_at, ip, user_agent",
                    )
                    .bind(now.millis())
                    .bind(session_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let Some(session) = session else {
                        // Revoked or expired: nothing is written (dropping rolls back).
                        return Ok(RefreshOutcome::Dead);
                    };
                    sqlx::query(
                        "INSERT INTO refresh_tokens (hash, session_id, created_at, spent_at)
                         VALUES ($1, $2, $3, NULL)",
                    )
                    .bind(new_hash)
                    .bind(session_id.as_str())
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    tx.commit().await.map_err(map_err)?;
                    return Ok(RefreshOutcome::Rotated(session.into()));
                }

                let found: Option<TokenSessionRow> = sqlx::query_as(
                    "SELECT t.session_id, s.revoked_at, s.expires_at
                     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                     WHERE t.hash = $1",
                )
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(found) = found else {
                    return Ok(RefreshOutcome::Unknown);
                };
                if found.revoked_at.is_some() || found.expires_at <= now.millis() {
                    return Ok(RefreshOutcome::Dead);
                }
                // The token exists and is spent, its session live: reuse. End the session.
                let revoked = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(now.millis())
                .bind(found.session_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if revoked > 0 {
                    Self::append_changes(&mut tx, now, SESSION_REVOKED, &[&found.session_id])
                        .await?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(RefreshOutcome::Reused(SessionId::from_trusted(
                    found.session_id,
                )))
            }

            async fn revoke_session(
                &self,
                user: &UserId,
                id: &SessionId,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Expired sessions are revoked too: an access token issued shortly before the
                // session expired outlives it, and the change log is how other nodes learn.
                let revoked = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                )
                .bind(at.millis())
                .bind(id.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if revoked == 0 {
                    return Ok(false);
                }
                Self::append_changes(&mut tx, at, SESSION_REVOKED, &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn revoke_user_sessions(
                &self,
                user: &UserId,
                at: Timestamp,
            ) -> StoreResult<Vec<SessionId>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let mut ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $1
                     WHERE user_id = $2 AND revoked_at IS NULL
                     RETURNING id",
                )
                .bind(at.millis())
                .bind(user.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                ids.sort();
                let subjects: Vec<&str> = ids.iter().map(String::as_str).collect();
                Self::append_changes(&mut tx, at, SESSION_REVOKED, &subjects).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(ids.into_iter().map(SessionId::from_trusted).collect())
            }

            async fn sessions_revoked_since(
                &self,
                since: Timestamp,
            ) -> StoreResult<Vec<SessionId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE revoked_at >= $1 ORDER BY revoked_at, id",
                )
                .bind(since.millis())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(ids.into_iter().map(SessionId::from_trusted).collect())
            }

            async fn insert_mfa_challenge(
                &self,
                hash: &str,
                user: &UserId,
                expires_at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO mfa_challenges (hash, user_id, expires_at, used_at)
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(hash)
                .bind(user.as_str())
                .bind(expires_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn mfa_challenge_user(
                &self,
                hash: &str,
                now: Timestamp,
            ) -> StoreResult<Option<UserId>> {
                let user: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM mfa_challenges
                     WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
                )
                .bind(hash)
                .bind(now.millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(user.map(UserId::from_trusted))
            }

            async fn consume_mfa_challenge(&self, hash: &str, now: Timestamp) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE mfa_challenges SET used_at = $1
                     WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
                )
                .bind(now.millis())
                .bind(hash)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(updated > 0)
            }

            async fn insert_password_reset(
                &self,
                hash: &str,
                user: &UserId,
                expires_at: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO password_resets (hash, user_id, expires_at, used_at)
                     VALUES ($1, $2, $3, NULL)",
                )
                .bind(hash)
                .bind(user.as_str())
                .bind(expires_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn consume_password_reset(
                &self,
                hash: &str,
                now: Timestamp,
            ) -> StoreResult<Option<UserId>> {
                let user: Option<String> = sqlx::query_scalar(
                    "UPDATE password_resets SET used_at = $1
                     WHERE hash = $2 AND used_at IS NULL AND expires_at > $1
                     RETURNING user_id",
                )
                .bind(now.millis())
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(user.map(UserId::from_trusted))
            }

            async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
                let rows: Vec<SigningKeyRow> = sqlx::query_as(
                    "SELECT kid, sealed_private, created_at FROM signing_keys
                     ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredSigningKey::from).collect())
            }

            async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, sealed_private, created_at)
                     VALUES ($1, $2, $3)",
                )
                .bind(key.kid.as_str())
                .bind(key.sealed_private.as_str())
                .bind(key.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn insert_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_log
                         (id, at, workspace_id, actor_type, actor_id, action, target, ip,
                          user_agent, outcome)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(entry.id.as_str())
                .bind(entry.at.millis())
                .bind(entry.workspace_id.as_ref().map(WorkspaceId::as_str))
                .bind(entry.actor_type.as_str())
                .bind(entry.actor_id.as_deref())
                .bind(entry.action.as_str())
                .bind(entry.target.as_deref())
                .bind(entry.ip.as_deref())
                .bind(entry.user_agent.as_deref())
                .bind(entry.outcome.as_str())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn list_audit(
                &self,
                filter: &AuditFilter,
                page: &Page,
            ) -> StoreResult<Vec<AuditEntry>> {
                // One statement for every combination of filters: an absent filter is a NULL
                // parameter whose predicate is true. `since` is inclusive, `until` exclusive.
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "SELECT id, at, workspace_id, actor_type, actor_id, action, target, ip,
                            user_agent, outcome
                     FROM audit_log
                     WHERE ($1 IS NULL OR workspace_id = $1)
                       AND ($2 IS NULL OR action = $2)
                       AND ($3 IS NULL OR actor_id = $3)
                       AND ($4 IS NULL OR at >= $4)
                       AND ($5 IS NULL OR at < $5)
                       AND ($6 IS NULL OR id < $6)
                     ORDER BY id DESC
                     LIMIT $7",
                )
                .bind(filter.workspace_id.as_ref().map(WorkspaceId::as_str))
                .bind(filter.action.as_deref())
                .bind(filter.actor_id.as_deref())
                .bind(filter.since.map(Timestamp::millis))
                .bind(filter.until.map(Timestamp::millis))
                .bind(page.after.as_deref())
                .bind(i64::from(page.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(AuditEntry::try_from).collect()
            }
        }

        #[async_trait]
        impl WorkspaceStore for $store {
            async fn create_workspace(&self, ws: &Workspace, owner: &Member) -> StoreResult<()> {
                if owner.workspace_id != ws.id {
                    return Err(StoreError::Other(
                        "the owner member belongs to another workspace".into(),
                    ));
                }
                let key_format = key_format_json(&ws.key_format)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO workspaces (id, name, status, key_format, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(ws.id.as_str())
                .bind(ws.name.as_str())
                .bind(ws.status.as_str())
                .bind(key_format.as_str())
                .bind(ws.created_at.millis())
                .bind(ws.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::remember_format(&mut tx, &key_format).await?;
                sqlx::query(
                    "INSERT INTO members (id, workspace_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(owner.id.as_str())
                .bind(owner.workspace_id.as_str())
                .bind(owner.user_id.as_str())
                .bind(owner.role.as_str())
                .bind(owner.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn workspace_by_id(&self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
                let row: Option<WorkspaceRow> = sqlx::query_as(
                    "SELECT id, name, status, key_format, created_at, updated_at
                     FROM workspaces WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(Workspace::try_from).transpose()
            }

            async fn workspaces_of_user(&self, user: &UserId) -> StoreResult<Vec<Workspace>> {
                let rows: Vec<WorkspaceRow> = sqlx::query_as(
                    "SELECT w.id, w.name, w.status, w.key_format, w.created_at, w.updated_at
                     FROM workspaces w JOIN members m ON m.workspace_id = w.id
                     WHERE m.user_id = $1
                     ORDER BY w.created_at, w.id",
                )
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                workspaces(rows)
            }

            async fn set_workspace_status(
                &self,
                id: &WorkspaceId,
                status: WorkspaceStatus,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated =
                    sqlx::query("UPDATE workspaces SET status = $1, updated_at = $2 WHERE id = $3")
                        .bind(status.as_str())
                        .bind(at.millis())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                if updated == 0 {
                    // Dropping the transaction rolls it back.
                    return Ok(false);
                }
                Self::append_changes(&mut tx, at, "workspace.status", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn update_workspace(&self, ws: &Workspace) -> StoreResult<bool> {
                let key_format = key_format_json(&ws.key_format)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let updated = sqlx::query(
                    "UPDATE workspaces SET name = $1, key_format = $2, updated_at = $3
                     WHERE id = $4",
                )
                .bind(ws.name.as_str())
                .bind(key_format.as_str())
                .bind(ws.updated_at.millis())
                .bind(ws.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::remember_format(&mut tx, &key_format).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn key_formats(&self) -> StoreResult<Vec<KeyFormat>> {
                let rows: Vec<String> =
                    sqlx::query_scalar("SELECT format FROM key_formats ORDER BY format")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_err)?;
                rows.iter()
                    .map(|f| {
                        serde_json::from_str(f).map_err(|e| {
                            StoreError::Other(format!("unreadable key format {f:?}: {e}"))
                        })
                    })
                    .collect()
            }

            async fn delete_workspace(&self, id: &WorkspaceId, at: Timestamp) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Members, roles and scopes go with it: every table under a workspace references
                // it ON DELETE CASCADE (see the migrations). The audit log has no foreign key.
                let deleted = sqlx::query("DELETE FROM workspaces WHERE id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                Self::append_changes(&mut tx, at, "workspace.deleted", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn list_workspaces(&self, page: &Page) -> StoreResult<Vec<Workspace>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<WorkspaceRow> = sqlx::query_as(
                    "SELECT id, name, status, key_format, created_at, updated_at
                     FROM workspaces WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                workspaces(rows)
            }

            async fn memberships_of_user(
                &self,
                user: &UserId,
            ) -> StoreResult<Vec<(Workspace, Member)>> {
                let rows: Vec<MembershipRow> = sqlx::query_as(
                    "SELECT w.id, w.name, w.status, w.key_format, w.created_at, w.updated_at,
                            m.id AS member_id, m.user_id AS member_user_id,
                            m.role AS member_role, m.created_at AS member_created_at
                     FROM members m JOIN workspaces w ON w.id = m.workspace_id
                     WHERE m.user_id = $1
                     ORDER BY w.created_at, w.id",
                )
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter()
                    .map(<(Workspace, Member)>::try_from)
                    .collect()
            }

            async fn insert_scope(&self, ws: &WorkspaceId, scope: &StoredScope) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO scopes (workspace_id, name, description, dangerous, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ws.as_str())
                .bind(scope.name.as_str())
                .bind(scope.description.as_str())
                .bind(scope.dangerous)
                .bind(scope.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn scopes_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<StoredScope>> {
                let rows: Vec<ScopeRow> = sqlx::query_as(
                    "SELECT name, description, dangerous, created_at FROM scopes
                     WHERE workspace_id = $1 ORDER BY name",
                )
                .bind(ws.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredScope::from).collect())
            }

            async fn delete_scope(
                &self,
                ws: &WorkspaceId,
                name: &str,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let deleted =
                    sqlx::query("DELETE FROM scopes WHERE workspace_id = $1 AND name = $2")
                        .bind(ws.as_str())
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                let subject = format!("{}:{name}", ws.as_str());
                Self::append_changes(&mut tx, at, "scope.deleted", &[&subject]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn insert_role(&self, role: &CustomRole) -> StoreResult<()> {
                let scopes = scopes_json(&role.scopes)?;
                sqlx::query(
                    "INSERT INTO roles (id, workspace_id, name, scopes, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(role.id.as_str())
                .bind(role.workspace_id.as_str())
                .bind(role.name.as_str())
                .bind(scopes)
                .bind(role.created_at.millis())
                .bind(role.updated_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn roles_of(&self, ws: &WorkspaceId) -> StoreResult<Vec<CustomRole>> {
                let rows: Vec<RoleRow> = sqlx::query_as(
                    "SELECT id, workspace_id, name, scopes, created_at, updated_at FROM roles
                     WHERE workspace_id = $1 ORDER BY name",
                )
                .bind(ws.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(CustomRole::try_from).collect()
            }

            async fn role_by_id(
                &self,
                ws: &WorkspaceId,
                id: &RoleId,
            ) -> StoreResult<Option<CustomRole>> {
                let row: Option<RoleRow> = sqlx::query_as(
                    "SELECT id, workspace_id, name, scopes, created_at, updated_at FROM roles
                     WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(CustomRole::try_from).transpose()
            }

            async fn update_role(&self, role: &CustomRole) -> StoreResult<bool> {
                let scopes = scopes_json(&role.scopes)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // A name taken by another role of the workspace fails here as a Conflict, and
                // the transaction is rolled back as it is dropped.
                let updated = sqlx::query(
                    "UPDATE roles SET name = $1, scopes = $2, updated_at = $3
                     WHERE id = $4 AND workspace_id = $5",
                )
                .bind(role.name.as_str())
                .bind(scopes)
                .bind(role.updated_at.millis())
                .bind(role.id.as_str())
                .bind(role.workspace_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                Self::append_changes(
                    &mut tx,
                    role.updated_at,
                    "role.updated",
                    &[role.id.as_str()],
                )
                .await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn delete_role(
                &self,
                ws: &WorkspaceId,
                id: &RoleId,
                at: Timestamp,
            ) -> StoreResult<Option<u32>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Every member write takes the workspace lock (PostgreSQL) or the write lock
                // (SQLite), so no member takes or leaves the role between the check and the
                // delete, nor between the delete and the count below.
                Self::lock_workspace(&mut tx, ws).await?;
                let deleted = sqlx::query(
                    "DELETE FROM roles
                     WHERE id = $1 AND workspace_id = $2
                       AND NOT EXISTS (SELECT 1 FROM members
                                       WHERE workspace_id = $2 AND role = $1)",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if deleted > 0 {
                    Self::append_changes(&mut tx, at, "role.deleted", &[id.as_str()]).await?;
                    tx.commit().await.map_err(map_err)?;
                    return Ok(Some(0));
                }
                // Nothing deleted: no such role, or members hold it. Nothing was written.
                let holders: Option<i64> = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM members WHERE workspace_id = $2 AND role = $1)
                     FROM roles WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                match holders {
                    None => Ok(None),
                    Some(n) if n > 0 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
                    // Every member write locks the workspace first, so the holders seen by the
                    // delete are still there.
                    Some(_) => Err(StoreError::Other(format!(
                        "role {id} was held when deleting it, and then by nobody"
                    ))),
                }
            }

            async fn set_member_role(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
                role: &str,
                at: Timestamp,
            ) -> StoreResult<OwnerGuarded> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_workspace(&mut tx, ws).await?;
                // One conditional write: an owner keeps the role unless it stays an owner or
                // another owner remains. Counted under the workspace lock (PostgreSQL) or the
                // write lock (SQLite), so two concurrent demotions cannot both pass.
                let updated = sqlx::query(
                    "UPDATE members SET role = $1
                     WHERE id = $2 AND workspace_id = $3
                       AND (role <> $4 OR $1 = $4
                            OR (SELECT COUNT(*) FROM members o
                                WHERE o.workspace_id = $3 AND o.role = $4) > 1)",
                )
                .bind(role)
                .bind(id.as_str())
                .bind(ws.as_str())
                .bind(owner_role())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if updated == 0 {
                    return Self::refused(&mut tx, ws, id).await;
                }
                Self::append_changes(&mut tx, at, "member.updated", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(OwnerGuarded::Done)
            }

            async fn remove_member(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
                at: Timestamp,
            ) -> StoreResult<OwnerGuarded> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_workspace(&mut tx, ws).await?;
                let deleted = sqlx::query(
                    "DELETE FROM members
                     WHERE id = $1 AND workspace_id = $2
                       AND (role <> $3
                            OR (SELECT COUNT(*) FROM members o
                                WHERE o.workspace_id = $2 AND o.role = $3) > 1)",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .bind(owner_role())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                if deleted == 0 {
                    return Self::refused(&mut tx, ws, id).await;
                }
                Self::append_changes(&mut tx, at, "member.removed", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(OwnerGuarded::Done)
            }

            async fn insert_member(&self, member: &Member) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Ordered with delete_role, which counts the holders of a role.
                Self::lock_workspace(&mut tx, &member.workspace_id).await?;
                sqlx::query(
                    "INSERT INTO members (id, workspace_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(member.id.as_str())
                .bind(member.workspace_id.as_str())
                .bind(member.user_id.as_str())
                .bind(member.role.as_str())
                .bind(member.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn member_by_id(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
            ) -> StoreResult<Option<Member>> {
                let row: Option<MemberRow> = sqlx::query_as(
                    "SELECT id, workspace_id, user_id, role, created_at
                     FROM members WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Member::from))
            }

            async fn member_of(
                &self,
                ws: &WorkspaceId,
                user: &UserId,
            ) -> StoreResult<Option<Member>> {
                let row: Option<MemberRow> = sqlx::query_as(
                    "SELECT id, workspace_id, user_id, role, created_at
                     FROM members WHERE workspace_id = $1 AND user_id = $2",
                )
                .bind(ws.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(Member::from))
            }

            async fn list_members(
                &self,
                ws: &WorkspaceId,
                page: &Page,
            ) -> StoreResult<Vec<MemberView>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<MemberViewRow> = sqlx::query_as(
                    "SELECT m.id, m.workspace_id, m.user_id, m.role, m.created_at,
                            u.email, u.name
                     FROM members m JOIN users u ON u.id = m.user_id
                     WHERE m.workspace_id = $1 AND m.id > $2
                     ORDER BY m.id LIMIT $3",
                )
                .bind(ws.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(MemberView::from).collect())
            }

            async fn delete_member(
                &self,
                ws: &WorkspaceId,
                id: &MemberId,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Unguarded (remove_member is the guarded one), but ordered with delete_role.
                Self::lock_workspace(&mut tx, ws).await?;
                let deleted =
                    sqlx::query("DELETE FROM members WHERE id = $1 AND workspace_id = $2")
                        .bind(id.as_str())
                        .bind(ws.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                if deleted == 0 {
                    return Ok(false);
                }
                Self::append_changes(&mut tx, at, "member.removed", &[id.as_str()]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }
        }

        #[async_trait]
        impl KeyStore for $store {
            async fn insert_key(&self, key: &ApiKey) -> StoreResult<()> {
                let p = KeyParams::new(key)?;
                let query = sqlx::query(concat!(
                    "INSERT INTO keys (",
                    key_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19, $20)"
                ));
                bind_key!(query, &p)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn insert_keys(&self, keys: &[ApiKey]) -> StoreResult<()> {
                let mut params = keys
                    .iter()
                    .map(KeyParams::new)
                    .collect::<StoreResult<Vec<_>>>()?;
                if params.is_empty() {
                    return Ok(());
                }
                // In hash order: two concurrent imports sharing hashes then meet at the first
                // shared one (the later waits, then conflicts) instead of each waiting for a hash
                // the other inserted (PostgreSQL's unique index would report a deadlock).
                params.sort_unstable_by(|a, b| a.key.hash.cmp(&b.key.hash));
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Any duplicate, in the table or within the batch, fails a statement as a
                // Conflict; the transaction is then rolled back as it is dropped.
                Self::insert_key_rows(&mut tx, &params).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn key_by_id(&self, ws: &WorkspaceId, id: &KeyId) -> StoreResult<Option<ApiKey>> {
                let row: Option<KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys WHERE id = $1 AND workspace_id = $2"
                ))
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(ApiKey::try_from).transpose()
            }

            async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
                let row: Option<KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys WHERE hash = $1"
                ))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(ApiKey::try_from).transpose()
            }

            async fn existing_key_hashes(&self, hashes: &[String]) -> StoreResult<Vec<String>> {
                // Each hash once, in the order given.
                let mut seen = HashSet::new();
                let unique: Vec<&str> = hashes
                    .iter()
                    .map(String::as_str)
                    .filter(|h| seen.insert(*h))
                    .collect();
                let mut found = HashSet::new();
                for batch in padded_batches(&unique) {
                    let mut query =
                        sqlx::query_scalar(AssertSqlSafe(Arc::clone(&EXISTING_HASHES_SQL)));
                    for hash in batch {
                        query = query.bind(hash);
                    }
                    let rows: Vec<String> = query.fetch_all(&self.pool).await.map_err(map_err)?;
                    found.extend(rows);
                }
                Ok(unique
                    .into_iter()
                    .filter(|h| found.contains(*h))
                    .map(str::to_owned)
                    .collect())
            }

            async fn list_keys(
                &self,
                ws: &WorkspaceId,
                filter: &KeyFilter,
                now: Timestamp,
                page: &Page,
            ) -> StoreResult<Vec<ApiKey>> {
                let (after, limit) = page_bounds(page);
                // One statement for every combination of filters: an absent filter is a NULL
                // parameter whose predicate is true. The status is computed at `now` exactly
                // as ApiKey::status computes it.
                let rows: Vec<KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys
                     WHERE workspace_id = $1 AND id > $2
                       AND ($3 IS NULL OR external_id = $3)
                       AND ($4 IS NULL OR ",
                    key_status_at!("$5"),
                    " = $4)
                     ORDER BY id LIMIT $6"
                ))
                .bind(ws.as_str())
                .bind(after)
                .bind(filter.external_id.as_deref())
                .bind(filter.status.map(|s| s.as_str()))
                .bind(now.millis())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(ApiKey::try_from).collect()
            }

            async fn update_key(&self, key: &ApiKey) -> StoreResult<bool> {
                let p = KeyParams::new(key)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let Some(hash) = Self::save_key(&mut tx, &p).await? else {
                    return Ok(false);
                };
                Self::append_changes(&mut tx, key.updated_at, KEY_CHANGED, &[&hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn set_key_remaining(
                &self,
                ws: &WorkspaceId,
                id: &KeyId,
                remaining: Option<i64>,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let hash: Option<String> = sqlx::query_scalar(
                    "UPDATE keys SET remaining = $1, updated_at = $2
                     WHERE id = $3 AND workspace_id = $4
                     RETURNING hash",
                )
                .bind(remaining)
                .bind(at.millis())
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(hash) = hash else {
                    return Ok(false);
                };
                Self::append_changes(&mut tx, at, KEY_CHANGED, &[&hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn rotate_key(&self, old: &ApiKey, new: &ApiKey) -> StoreResult<bool> {
                if new.workspace_id != old.workspace_id {
                    return Err(StoreError::Other(
                        "a key's replacement belongs to another workspace".into(),
                    ));
                }
                let old_params = KeyParams::new(old)?;
                let new_params = KeyParams::new(new)?;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Claims the old key for this replacement first: of concurrent rotations of
                // one key, one finds it unclaimed (the others wait for its row or write lock,
                // then find it claimed).
                let claimed: Option<String> = sqlx::query_scalar(
                    "UPDATE keys SET replaced_by = $1
                     WHERE id = $2 AND workspace_id = $3 AND replaced_by IS NULL
                     RETURNING id",
                )
                .bind(new.id.as_str())
                .bind(old.id.as_str())
                .bind(old.workspace_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                if claimed.is_none() {
                    // Gone, or replaced already: nothing was written (dropping rolls back).
                    return Ok(false);
                }
                let Some(hash) = Self::save_key(&mut tx, &old_params).await? else {
                    return Ok(false);
                };
                // A colliding new key fails here as a Conflict; the old key's save is rolled
                // back with the transaction.
                Self::insert_key_rows(&mut tx, std::slice::from_ref(&new_params)).await?;
                Self::append_changes(&mut tx, old.updated_at, KEY_CHANGED, &[&hash]).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn consume_credits(&self, id: &KeyId, cost: i64) -> StoreResult<Option<i64>> {
                if cost < 0 {
                    return Err(StoreError::Other(format!(
                        "cannot spend a negative number of credits ({cost})"
                    )));
                }
                // A few rounds at most: a round only repeats when the credits grew (an update)
                // between its two statements.
                for _ in 0..3 {
                    // One conditional write: concurrent spenders queue on the row lock
                    // (PostgreSQL) or the write lock (SQLite), each seeing what the previous one
                    // left, so no more than the credits are ever spent.
                    let left: Option<i64> = sqlx::query_scalar(
                        "UPDATE keys SET remaining = remaining - $2
                         WHERE id = $1 AND remaining >= $2
                         RETURNING remaining",
                    )
                    .bind(id.as_str())
                    .bind(cost)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                    if left.is_some() {
                        return Ok(left);
                    }
                    // Nothing spent: unlimited, too few credits, or no such key.
                    let remaining: Option<Option<i64>> =
                        sqlx::query_scalar("SELECT remaining FROM keys WHERE id = $1")
                            .bind(id.as_str())
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(map_err)?;
                    match remaining {
                        None => return Ok(None),
                        Some(None) => return Ok(Some(i64::MAX)),
                        Some(Some(n)) if n < cost => return Ok(None),
                        Some(Some(_)) => {}
                    }
                }
                Ok(None)
            }

            async fn touch_keys(&self, used: &[(KeyId, Timestamp)]) -> StoreResult<()> {
                let latest = latest_uses(used);
                if latest.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Batch after batch in id order, each locked (PostgreSQL) right before it is
                // written: every caller takes the row locks in ascending id order. A repeated
                // row (the padding) sets the same time again.
                for batch in padded_batches(&latest) {
                    let ids: Vec<&str> = batch.iter().map(|(id, _)| *id).collect();
                    Self::lock_keys(&mut tx, &ids).await?;
                    let mut query = sqlx::query(AssertSqlSafe(Arc::clone(&TOUCH_KEYS_SQL)));
                    for (id, at) in batch {
                        query = query.bind(id).bind(at);
                    }
                    query.execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            }
        }

        #[async_trait]
        impl ChangeStore for $store {
            async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<Change>> {
                let rows: Vec<ChangeRow> = sqlx::query_as(
                    "SELECT seq, at, kind, subject FROM changes
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Change::from).collect())
            }

            async fn latest_change(&self) -> StoreResult<i64> {
                let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(seq)
            }

            async fn follow_changes(&self, wake: Arc<Notify>) -> StoreResult<bool> {
                self.follow_announcements(wake).await
            }
        }

        #[async_trait]
        impl AppStore for $store {
            async fn insert_builder_profile(&self, p: &BuilderProfile) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO builder_profiles (id, user_id, name, website, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(p.id.as_str())
                .bind(p.user_id.as_str())
                .bind(p.name.as_str())
                .bind(p.website.as_deref())
                .bind(p.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn builder_profiles_of(
                &self,
                user: &UserId,
                page: &Page,
            ) -> StoreResult<Vec<BuilderProfile>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<BuilderProfileRow> = sqlx::query_as(
                    "SELECT id, user_id, name, website, created_at FROM builder_profiles
                     WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(user.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(BuilderProfile::from).collect())
            }

            async fn builder_profile_by_id(
                &self,
                id: &BuilderProfileId,
            ) -> StoreResult<Option<BuilderProfile>> {
                let row: Option<BuilderProfileRow> = sqlx::query_as(
                    "SELECT id, user_id, name, website, created_at FROM builder_profiles
                     WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(row.map(BuilderProfile::from))
            }

            async fn insert_app(&self, app: &App) -> StoreResult<()> {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO apps ({APP_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                )))
                .bind(app.client_id.as_str())
                .bind(app.owner_id.as_str())
                .bind(app.builder_profile_id.as_str())
                .bind(app.name.as_str())
                .bind(app.description.as_str())
                .bind(restrictions_json(app)?)
                .bind(app.active)
                .bind(app.sealed_secret.as_str())
                .bind(app.secret_generation)
                .bind(app.created_at.millis())
                .bind(app.updated_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<App>> {
                let row: Option<AppRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE client_id = $1"
                )))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(App::try_from).transpose()
            }

            async fn list_apps(
                &self,
                owner: Option<&UserId>,
                page: &Page,
            ) -> StoreResult<Vec<App>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<AppRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {APP_COLUMNS} FROM apps
                     WHERE ($1 IS NULL OR owner_id = $1) AND client_id > $2
                     ORDER BY client_id LIMIT $3"
                )))
                .bind(owner.map(UserId::as_str))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(App::try_from).collect()
            }

            async fn update_app(&self, app: &App) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE apps SET name = $2, description = $3, workspace_restrictions = $4,
                            active = $5, updated_at = $6
                     WHERE client_id = $1",
                )
                .bind(app.client_id.as_str())
                .bind(app.name.as_str())
                .bind(app.description.as_str())
                .bind(restrictions_json(app)?)
                .bind(app.active)
                .bind(app.updated_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_app_secret(
                &self,
                client_id: &str,
                sealed_secret: &str,
                at: Timestamp,
            ) -> StoreResult<Option<i64>> {
                sqlx::query_scalar(
                    "UPDATE apps SET sealed_secret = $2,
                            secret_generation = secret_generation + 1, updated_at = $3
                     WHERE client_id = $1 RETURNING secret_generation",
                )
                .bind(client_id)
                .bind(sealed_secret)
                .bind(at.millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)
            }

            async fn delete_app(&self, client_id: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM apps WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn workspaces_granting(&self, client_id: &str) -> StoreResult<Vec<WorkspaceId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT workspace_id FROM grants WHERE client_id = $1
                     ORDER BY workspace_id",
                )
                .bind(client_id)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(ids.into_iter().map(WorkspaceId::from_trusted).collect())
            }

            async fn insert_grant(&self, g: &Grant) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO grants
                        (id, client_id, workspace_id, member_id, scopes, shared, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(g.id.as_str())
                .bind(g.client_id.as_str())
                .bind(g.workspace_id.as_str())
                .bind(g.member_id.as_str())
                .bind(scopes_json(&g.scopes)?)
                .bind(g.shared)
                .bind(g.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn grant_by_id(&self, id: &GrantId) -> StoreResult<Option<GrantView>> {
                let row: Option<GrantRow> =
                    sqlx::query_as(AssertSqlSafe(format!("{GRANT_SELECT} WHERE g.id = $1")))
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_err)?;
                row.map(GrantView::try_from).transpose()
            }

            async fn list_grants(
                &self,
                ws: &WorkspaceId,
                filter: &GrantFilter,
                page: &Page,
            ) -> StoreResult<Vec<GrantView>> {
                let (after, limit) = page_bounds(page);
                let rows: Vec<GrantRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "{GRANT_SELECT}
                     WHERE g.workspace_id = $1 AND g.id > $2
                       AND ($3 IS NULL OR g.member_id = $3)
                       AND ($4 IS NULL OR g.client_id = $4)
                     ORDER BY g.id LIMIT $5"
                )))
                .bind(ws.as_str())
                .bind(after)
                .bind(filter.member_id.as_ref().map(MemberId::as_str))
                .bind(filter.client_id.as_deref())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(GrantView::try_from).collect()
            }

            async fn delete_grant(&self, ws: &WorkspaceId, id: &GrantId) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM grants WHERE id = $1 AND workspace_id = $2")
                    .bind(id.as_str())
                    .bind(ws.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn token_keys(&self) -> StoreResult<Vec<StoredTokenKey>> {
                let rows: Vec<TokenKeyRow> = sqlx::query_as(
                    "SELECT kid, sealed_key, created_at FROM token_keys ORDER BY created_at",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredTokenKey {
                        kid: r.kid,
                        sealed_key: r.sealed_key,
                        created_at: Timestamp::from_millis(r.created_at),
                    })
                    .collect())
            }

            async fn insert_token_key(&self, key: &StoredTokenKey) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO token_keys (kid, sealed_key, created_at) VALUES ($1, $2, $3)",
                )
                .bind(key.kid.as_str())
                .bind(key.sealed_key.as_str())
                .bind(key.created_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }
        }
    };
}

sql_store!(
    SqliteStore,
    SqlitePool,
    SqliteConnection,
    "sqlite",
    SQLITE_MIGRATOR,
    None,
    None,
    None
);
sql_store!(
    PgStore,
    PgPool,
    PgConnection,
    "postgres",
    POSTGRES_MIGRATOR,
    Some(PG_CHANGES_LOCK),
    Some(PG_WORKSPACE_LOCK),
    Some(PG_KEYS_LOCK)
);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name_len: usize) -> ApiKey {
        ApiKey {
            id: KeyId::new(),
            workspace_id: WorkspaceId::new(),
            name: "n".repeat(name_len),
            prefix: "kr_abcd".into(),
            hash: "0".repeat(64),
            scopes: vec!["keys:read".into()],
            created_at: Timestamp::from_millis(1),
            created_by: None,
            updated_at: Timestamp::from_millis(1),
            expires_at: None,
            revoked_at: None,
            disabled: false,
            last_used_at: None,
            rate_limit: None,
            remaining: None,
            meta: None,
            external_id: None,
            sealed_key: None,
            replaced_by: None,
        }
    }

    fn chunk_lengths(keys: &[ApiKey]) -> Vec<usize> {
        let params: Vec<KeyParams<'_>> = keys.iter().map(|k| KeyParams::new(k).unwrap()).collect();
        let chunks = key_insert_chunks(&params);
        // In order, nothing lost.
        let flat: Vec<&str> = chunks
            .iter()
            .flat_map(|c| c.iter().map(|p| p.key.id.as_str()))
            .collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(flat, ids);
        for c in &chunks {
            assert!(c.len().is_power_of_two() && c.len() <= KEY_INSERT_MAX_ROWS);
            let bytes: usize = c.iter().map(KeyParams::wire_size).sum();
            assert!(c.len() == 1 || bytes <= KEY_INSERT_MAX_BYTES, "{bytes}");
        }
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn insert_chunks_are_powers_of_two_within_the_byte_budget() {
        assert!(chunk_lengths(&[]).is_empty());
        assert_eq!(chunk_lengths(&[key(1)]), [1]);
        // Small keys: full chunks, then the rest in binary.
        let small: Vec<ApiKey> = (0..1000).map(|_| key(1)).collect();
        let lengths = chunk_lengths(&small);
        assert!(lengths.iter().all(|&n| n >= 8), "{lengths:?}");
        // Keys bigger than the budget go one by one.
        let big: Vec<ApiKey> = (0..3).map(|_| key(KEY_INSERT_MAX_BYTES)).collect();
        assert_eq!(chunk_lengths(&big), [1, 1, 1]);
        // A big key among small ones ends a chunk.
        let mut mixed: Vec<ApiKey> = (0..10).map(|_| key(1)).collect();
        mixed.insert(5, key(KEY_INSERT_MAX_BYTES));
        let lengths = chunk_lengths(&mixed);
        assert_eq!(lengths.iter().sum::<usize>(), 11);
    }

    #[test]
    fn batches_are_padded_with_the_last_item() {
        assert!(padded_batches::<u32>(&[]).is_empty());
        let items: Vec<u32> = (0..300).collect();
        let batches = padded_batches(&items);
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() == KEY_BATCH_ROWS));
        assert_eq!(batches[1][0], 128);
        assert_eq!(&batches[2][..44], &items[256..]);
        assert!(batches[2][44..].iter().all(|&x| x == 299));
    }

    #[test]
    fn latest_use_per_key_sorted_by_id() {
        let (a, b) = (KeyId::new(), KeyId::new());
        let t = Timestamp::from_millis;
        let used = [
            (b.clone(), t(5)),
            (a.clone(), t(3)),
            (b.clone(), t(9)),
            (a.clone(), t(1)),
        ];
        assert_eq!(latest_uses(&used), [(a.as_str(), 3), (b.as_str(), 9)]);
    }

    #[test]
    fn statement_shapes() {
        assert_eq!(placeholder_rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(
            existing_hashes_sql(3),
            "SELECT hash FROM keys WHERE hash IN ($1, $2, $3)"
        );
        assert_eq!(INSERT_KEYS_SQL.len(), 7);
        assert!(INSERT_KEYS_SQL[6].ends_with(&format!("${})", 64 * KEY_COLUMN_COUNT)));
        assert_eq!(
            key_columns!().split(',').count(),
            KEY_COLUMN_COUNT,
            "the column list and its count agree"
        );
    }

    /// An existing deployment upgraded to migration 0006 knows the formats its workspaces use.
    #[tokio::test]
    async fn key_formats_are_backfilled_on_upgrade() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        let before_0006 = Migrator {
            migrations: std::borrow::Cow::Owned(
                SQLITE_MIGRATOR
                    .migrations
                    .iter()
                    .filter(|m| m.version < 6)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        before_0006.run(&pool).await.unwrap();
        let format = r#"{"prefix":"old","alphabet":"hex","length":32,"checksum":false}"#;
        sqlx::query(
            "INSERT INTO workspaces (id, name, status, key_format, created_at, updated_at)
             VALUES ('ws_x', 'x', 'active', $1, 1, 1)",
        )
        .bind(format)
        .execute(&pool)
        .await
        .unwrap();
        SQLITE_MIGRATOR.run(&pool).await.unwrap();
        let store = SqliteStore { pool };
        let known = store.key_formats().await.unwrap();
        assert_eq!(known.len(), 1, "{known:?}");
        assert_eq!(known[0].prefix, "old");
    }
}
