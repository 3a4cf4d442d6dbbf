//! Test support: a throw-away PostgreSQL database.
//!
//! [`TempPostgres::create`] connects to the admin URL in `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and creates a fresh database. When PostgreSQL
//! cannot be reached it returns `None` after printing `SKIPPED: ...`, unless `CI` is set, in
//! which case it panics: in CI a missing PostgreSQL is a broken pipeline, not a reason to skip.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::redact_url;

/// The admin URL used when `TEST_POSTGRES_URL` is unset.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database created for one test; drop it with [`TempPostgres::drop_db`] (dropping the value
/// also removes it, best effort).
pub struct TempPostgres {
    /// Connection URL of the new database.
    pub url: String,
    /// Its name (`keyrail_t_<hex>`).
    pub name: String,
    admin: PgConnectOptions,
    dropped: bool,
}

impl std::fmt::Debug for TempPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempPostgres")
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// `CI` set to anything but empty, `0` or `false`.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

fn unreachable(shown: &str, cause: &str) -> Option<TempPostgres> {
    if in_ci() {
        panic!(
            "PostgreSQL not reachable at {shown} ({cause}); CI is set, so the PostgreSQL tests \
             must run: start PostgreSQL or point TEST_POSTGRES_URL at one"
        );
    }
    eprintln!("SKIPPED: PostgreSQL not reachable at {shown} ({cause}); PostgreSQL tests skipped");
    None
}

fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// `url` with its database (path) replaced by `db`, keeping credentials and query.
fn with_database(url: &str, db: &str) -> String {
    let split = url.find(['?', '#']).unwrap_or(url.len());
    let (base, tail) = url.split_at(split);
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{tail}", &base[..path_start])
}

async fn admin_connect(admin: &PgConnectOptions) -> Result<PgConnection, String> {
    match tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, PgConnection::connect_with(admin)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            ADMIN_CONNECT_TIMEOUT.as_secs()
        )),
    }
}

async fn drop_database(admin: &PgConnectOptions, name: &str) -> Result<(), String> {
    let mut conn = admin_connect(admin).await?;
    let result = conn
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    let _ = conn.close().await;
    result
}

impl TempPostgres {
    /// Creates a fresh database, or `None` (after printing why) when PostgreSQL is not
    /// reachable outside CI.
    pub async fn create() -> Option<TempPostgres> {
        let admin_url = std::env::var("TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_POSTGRES_URL.to_owned());
        let shown = redact_url(&admin_url);
        let admin = match PgConnectOptions::from_str(&admin_url) {
            Ok(o) => o,
            Err(e) => panic!("TEST_POSTGRES_URL {shown} is not a PostgreSQL URL: {e}"),
        };
        let mut conn = match admin_connect(&admin).await {
            Ok(c) => c,
            Err(cause) => return unreachable(&shown, &cause),
        };
        let name = format!("keyrail_t_{}", random_hex());
        if let Err(e) = conn
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
        {
            // Reachable but refusing: that is a broken setup, not a reason to skip.
            panic!("cannot create test database {name} at {shown}: {e}");
        }
        let _ = conn.close().await;
        Some(TempPostgres {
            url: with_database(&admin_url, &name),
            name,
            admin,
            dropped: false,
        })
    }

    /// Drops the database, disconnecting whoever is still connected to it.
    pub async fn drop_db(mut self) {
        self.dropped = true;
        if let Err(e) = drop_database(&self.admin, &self.name).await {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

impl Drop for TempPostgres {
    /// Best effort for a test that panicked before calling [`TempPostgres::drop_db`]: drop the
    /// database from a helper thread with its own runtime (we may be inside one here).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.dropped = true;
        let admin = self.admin.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt
                && let Err(e) = rt.block_on(drop_database(&admin, &name))
            {
                eprintln!("could not drop test database {name}: {e}");
            }
        });
        let _ = cleanup.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "k"),
            "postgres://postgres@127.0.0.1:5432/k"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "k"),
            "postgres://u:p@h/k?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "k"),
            "postgres://h:5432/k"
        );
        assert_eq!(with_database("postgres://h?x=1", "k"), "postgres://h/k?x=1");
    }

    #[test]
    fn names_are_random_hex() {
        let (a, b) = (random_hex(), random_hex());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
