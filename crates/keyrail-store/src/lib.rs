//! keyrail's [`Store`] implementations: SQLite (embedded, the default) and PostgreSQL.
//!
//! Both are expanded from one body of SQL (see `sql/`, one module per resource), use native sqlx
//! pools and runtime-checked queries, and carry their migrations embedded in the binary.
//!
//! The server calls [`open`] once at start (it connects and applies pending migrations);
//! `keyrail migrate` calls [`migrate`], which does the same and reports how many were applied.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use keyrail_core::store::{Store, StoreError, StoreResult};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub mod backup;
mod error;
mod sql;
pub mod testing;

pub use sql::{PgStore, SqliteStore};

use error::{map_err, prefix};

/// The file, inside the data directory, that holds the default SQLite database.
pub const SQLITE_FILE_NAME: &str = "keyrail.db";

/// How long to wait for a connection (connecting, or taking one from a busy pool) before the
/// store reports itself unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long SQLite waits on a lock held by another connection before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const SQLITE_MAX_CONNECTIONS: u32 = 4;
const PG_MAX_CONNECTIONS: u32 = 16;

/// Connects to the store named by `database_url` and applies pending migrations.
///
/// * `""`: SQLite in `data_dir/keyrail.db` (the directory is created when missing);
/// * `sqlite:PATH`, `sqlite://PATH`, `sqlite::memory:`: SQLite;
/// * `postgres://...`, `postgresql://...`: PostgreSQL.
///
/// An unreachable database gives [`StoreError::Unavailable`] within [`CONNECT_TIMEOUT`]. Error
/// texts never contain the URL or its password.
pub async fn open(database_url: &str, data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    Ok(open_and_migrate(database_url, data_dir).await?.0)
}

/// As [`open`], also telling how many migrations were applied (0 when up to date).
pub async fn open_and_migrate(
    database_url: &str,
    data_dir: &Path,
) -> StoreResult<(Arc<dyn Store>, usize)> {
    let backend = connect(database_url, data_dir).await?;
    match backend.migrate().await {
        Ok(applied) => Ok((backend.into_store(), applied)),
        Err(e) => {
            backend.close().await;
            Err(scrub(e, database_url))
        }
    }
}

/// Connects, applies pending migrations, closes; returns how many were applied.
/// Running it again is a no-op that returns 0.
pub async fn migrate(database_url: &str, data_dir: &Path) -> StoreResult<usize> {
    let backend = connect(database_url, data_dir).await?;
    let applied = backend.migrate().await;
    backend.close().await;
    applied.map_err(|e| scrub(e, database_url))
}

/// What a `database_url` names, for logs: the backend and where, never the password.
/// E.g. `sqlite ./keyrail-data/keyrail.db`, `postgres db.internal:5432/keyrail`.
pub fn describe(database_url: &str, data_dir: &Path) -> String {
    match scheme(database_url) {
        Scheme::DefaultSqlite => format!("sqlite {}", data_dir.join(SQLITE_FILE_NAME).display()),
        Scheme::Sqlite if is_sqlite_memory(database_url) => "sqlite (in memory)".into(),
        Scheme::Sqlite => match SqliteConnectOptions::from_str(database_url.trim()) {
            Ok(o) => format!("sqlite {}", o.get_filename().display()),
            Err(_) => "sqlite (invalid url)".into(),
        },
        Scheme::Postgres => match PgConnectOptions::from_str(database_url.trim()) {
            Ok(o) => format!("postgres {}", pg_target(&o)),
            Err(_) => "postgres (invalid url)".into(),
        },
        Scheme::Unsupported => "unsupported database_url".into(),
    }
}

/// The URL with its password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url_password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Backend {
    async fn migrate(&self) -> StoreResult<usize> {
        match self {
            Self::Sqlite(s) => s.migrate().await,
            Self::Postgres(s) => s.migrate().await,
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    fn into_store(self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => Arc::new(s),
            Self::Postgres(s) => Arc::new(s),
        }
    }
}

enum Scheme {
    DefaultSqlite,
    Sqlite,
    Postgres,
    Unsupported,
}

fn scheme(url: &str) -> Scheme {
    let lower = url.trim().to_ascii_lowercase();
    if lower.is_empty() {
        Scheme::DefaultSqlite
    } else if lower.starts_with("sqlite:") {
        Scheme::Sqlite
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Scheme::Postgres
    } else {
        Scheme::Unsupported
    }
}

async fn connect(database_url: &str, data_dir: &Path) -> StoreResult<Backend> {
    let url = database_url.trim();
    match scheme(url) {
        Scheme::DefaultSqlite => connect_sqlite_file(data_dir).await.map(Backend::Sqlite),
        Scheme::Sqlite => connect_sqlite_url(url).await.map(Backend::Sqlite),
        Scheme::Postgres => connect_postgres(url)
            .await
            .map(Backend::Postgres)
            .map_err(|e| scrub(e, url)),
        Scheme::Unsupported => {
            // Show the scheme only: the rest may hold credentials.
            let shown: String = url
                .split_once(':')
                .map(|(s, _)| s)
                .filter(|s| {
                    s.len() <= 20
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                })
                .map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"));
            Err(StoreError::Other(format!(
                "unsupported database_url scheme {shown}: use \"\" (SQLite in the data directory), \
                 sqlite:PATH, or postgres://..."
            )))
        }
    }
}

fn sqlite_options(opts: SqliteConnectOptions, in_memory: bool) -> SqliteConnectOptions {
    let opts = opts.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
    if in_memory {
        opts
    } else {
        opts.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    }
}

async fn connect_sqlite_file(data_dir: &Path) -> StoreResult<SqliteStore> {
    tokio::fs::create_dir_all(data_dir).await.map_err(|e| {
        StoreError::Other(format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let path = data_dir.join(SQLITE_FILE_NAME);
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    sqlite_pool(
        sqlite_options(opts, false),
        false,
        &path.display().to_string(),
    )
    .await
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

async fn connect_sqlite_url(url: &str) -> StoreResult<SqliteStore> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Other(format!("invalid SQLite database_url: {e}")))?;
    let in_memory = is_sqlite_memory(url);
    // An explicit `mode=` (ro, rw, rwc, memory) is the operator's choice; otherwise create.
    let opts = if url.contains("mode=") {
        opts
    } else {
        opts.create_if_missing(true)
    };
    let label = if in_memory {
        "(in memory)".to_owned()
    } else {
        opts.get_filename().display().to_string()
    };
    sqlite_pool(sqlite_options(opts, in_memory), in_memory, &label).await
}

async fn sqlite_pool(
    opts: SqliteConnectOptions,
    in_memory: bool,
    label: &str,
) -> StoreResult<SqliteStore> {
    let pool_opts = if in_memory {
        // An in-memory database lives as long as a connection to it: keep exactly one, forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(SQLITE_MAX_CONNECTIONS)
    };
    let pool = pool_opts
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|e| prefix(&format!("opening SQLite database {label}"), map_err(e)))?;
    Ok(SqliteStore::from_pool(pool))
}

/// `host:port/database` (or the socket path), never the credentials.
fn pg_target(o: &PgConnectOptions) -> String {
    let place = match o.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", o.get_host(), o.get_port()),
    };
    match o.get_database() {
        Some(db) => format!("{place}/{db}"),
        None => place,
    }
}

async fn connect_postgres(url: &str) -> StoreResult<PgStore> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Other(format!("invalid PostgreSQL database_url: {e}")))?
        .application_name("keyrail");
    let target = pg_target(&opts);
    // Try one connection first: the pool would retry a refused connection until its timeout and
    // then report only "timed out"; this way the cause is known and a refusal fails at once.
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Err(_) => {
            return Err(StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {target}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => {
            return Err(prefix(
                &format!("cannot connect to PostgreSQL at {target}"),
                map_err(e),
            ));
        }
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(PG_MAX_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(opts);
    Ok(PgStore::from_pool(pool))
}

/// Byte range of the password in `scheme://user:password@host...`, if there is one.
fn url_password_span(url: &str) -> Option<(usize, usize)> {
    let auth_start = url.find("://")? + 3;
    let rest = &url[auth_start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((auth_start + colon + 1, auth_start + at))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Last line of defence: removes the URL and its password from an error text, should a driver
/// ever echo them.
fn scrub(err: StoreError, url: &str) -> StoreError {
    let clean = |msg: String| -> String {
        let mut msg = msg.replace(url, &redact_url(url));
        if let Some((s, e)) = url_password_span(url) {
            let raw = &url[s..e];
            for secret in [raw.to_owned(), percent_decode(raw)] {
                // Very short passwords would turn every matching letter into stars; such a
                // password cannot be hidden this way and is not worth garbling the text for.
                if secret.len() >= 4 {
                    msg = msg.replace(&secret, "***");
                }
            }
        }
        msg
    };
    match err {
        StoreError::Conflict(m) => StoreError::Conflict(clean(m)),
        StoreError::Unavailable(m) => StoreError::Unavailable(clean(m)),
        StoreError::Other(m) => StoreError::Other(clean(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/keyrail?sslmode=require"),
            "postgres://app:***@db:5432/keyrail?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/keyrail"),
            "postgres://app@db/keyrail"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        // An '@' in the path is not userinfo.
        assert_eq!(redact_url("postgres://db/x@y"), "postgres://db/x@y");
    }

    #[test]
    fn scrub_removes_raw_and_decoded_password() {
        let url = "postgres://app:s3cr%40t-pw@db/k";
        let e = scrub(
            StoreError::Other(format!("oops {url} and s3cr@t-pw and s3cr%40t-pw")),
            url,
        );
        let StoreError::Other(m) = e else { panic!() };
        assert!(!m.contains("s3cr"), "{m}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn describes_without_password() {
        let d = describe("postgres://u:hunter22@db.internal:6543/k", Path::new("/x"));
        assert_eq!(d, "postgres db.internal:6543/k");
        assert_eq!(
            describe("", Path::new("data")),
            format!("sqlite {}", Path::new("data").join("keyrail.db").display())
        );
        assert_eq!(
            describe("sqlite::memory:", Path::new("x")),
            "sqlite (in memory)"
        );
    }

    #[tokio::test]
    async fn unsupported_scheme_names_only_the_scheme() {
        let err = open("mysql://root:topsecret@db/x", Path::new("."))
            .await
            .err()
            .unwrap();
        let StoreError::Other(m) = err else {
            panic!("{err:?}")
        };
        assert!(
            m.contains("unsupported database_url scheme \"mysql\""),
            "{m}"
        );
        assert!(!m.contains("topsecret"));
        let err = open("not a url", Path::new(".")).await.err().unwrap();
        assert!(matches!(err, StoreError::Other(m) if m.contains("(none)")));
    }
}
