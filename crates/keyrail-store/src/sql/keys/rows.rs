//! The rows of `keys`, a key's parameters, and the batch statements that insert, look up and
//! touch many keys at once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use keyrail_core::id::{KeyId, WorkspaceId};
use keyrail_core::model::{ApiKey, KeyChanges, KeyRateLimit};
use keyrail_core::store::{StoreError, StoreResult};
use keyrail_core::time::Timestamp;

/// The columns of `keys`, in the order of [`KeyRow`] and of [`bind_key!`].
macro_rules! key_columns {
    () => {
        "id, workspace_id, name, prefix, hash, scopes, created_at, created_by, updated_at, \
         expires_at, revoked_at, disabled, last_used_at, rate_limit_limit, rate_limit_window, \
         remaining, meta, external_id, sealed_key, replaced_by"
    };
}
pub(super) use key_columns;

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
pub(super) static INSERT_KEYS_SQL: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    (0..=KEY_INSERT_MAX_ROWS.trailing_zeros())
        .map(|shift| insert_keys_sql(1 << shift).into())
        .collect()
});

/// Rows (hashes, or key ids with times) per lookup or update statement; a last, shorter batch is
/// padded with repeats of its last row, which change nothing.
const KEY_BATCH_ROWS: usize = 128;

/// `SELECT hash FROM keys WHERE hash IN (...)` over [`KEY_BATCH_ROWS`] hashes.
pub(super) static EXISTING_HASHES_SQL: LazyLock<Arc<str>> =
    LazyLock::new(|| existing_hashes_sql(KEY_BATCH_ROWS).into());

/// The `touch_keys` update over [`KEY_BATCH_ROWS`] keys.
pub(super) static TOUCH_KEYS_SQL: LazyLock<Arc<str>> =
    LazyLock::new(|| touch_keys_sql(KEY_BATCH_ROWS).into());

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
pub(super) use key_status_at;

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
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
pub(super) struct KeyParams<'a> {
    pub(super) key: &'a ApiKey,
    pub(super) scopes: String,
    pub(super) meta: Option<String>,
}

impl<'a> KeyParams<'a> {
    pub(super) fn new(key: &'a ApiKey) -> StoreResult<Self> {
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

    pub(super) fn rate_limit_limit(&self) -> Option<i64> {
        self.key.rate_limit.map(|r| i64::from(r.limit))
    }

    pub(super) fn rate_limit_window(&self) -> Option<i64> {
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

/// A change of a key with its JSON columns encoded, ready to bind.
pub(super) struct KeyChangeParams<'a> {
    changes: &'a KeyChanges,
    /// The new scopes, when the change names them.
    pub(super) scopes: Option<String>,
    /// The new meta, when the change sets one (`None` too when it clears it or leaves it).
    pub(super) meta: Option<String>,
}

impl<'a> KeyChangeParams<'a> {
    pub(super) fn new(changes: &'a KeyChanges) -> StoreResult<Self> {
        let scopes = changes
            .scopes
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Other(format!("encoding key scopes: {e}")))?;
        let meta = changes
            .meta
            .as_ref()
            .and_then(Option::as_ref)
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Other(format!("encoding key meta: {e}")))?;
        Ok(Self {
            changes,
            scopes,
            meta,
        })
    }

    /// The new limit, when the change sets a rate limit.
    pub(super) fn rate_limit_limit(&self) -> Option<i64> {
        self.changes
            .rate_limit
            .flatten()
            .map(|r| i64::from(r.limit))
    }

    /// The new window, when the change sets a rate limit.
    pub(super) fn rate_limit_window(&self) -> Option<i64> {
        self.changes
            .rate_limit
            .flatten()
            .map(|r| i64::from(r.window_seconds))
    }
}

/// Splits keys into runs for the multi-row insert: each run has a power-of-two length up to
/// [`KEY_INSERT_MAX_ROWS`] and, unless it is a single key, at most about
/// [`KEY_INSERT_MAX_BYTES`] of parameters.
pub(super) fn key_insert_chunks<'k, 'a>(keys: &'k [KeyParams<'a>]) -> Vec<&'k [KeyParams<'a>]> {
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
pub(super) fn padded_batches<T: Copy>(items: &[T]) -> Vec<Vec<T>> {
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
pub(super) use bind_key;

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
pub(super) fn latest_uses(used: &[(KeyId, Timestamp)]) -> Vec<(&str, i64)> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, at) in used {
        let slot = latest.entry(id.as_str()).or_insert(at.millis());
        *slot = (*slot).max(at.millis());
    }
    latest.into_iter().collect()
}

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
}
