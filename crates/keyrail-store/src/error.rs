//! The one place where sqlx errors become [`StoreError`]s.
//!
//! Texts produced here never contain a connection URL: they are built from the driver's own
//! message (which the drivers do not fill with credentials) and fixed wording.

use keyrail_core::StoreError;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// Maps any sqlx error to the store's error.
pub(crate) fn map_err(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(db) => map_database_error(db.as_ref()),
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("database I/O error: {e}")),
        sqlx::Error::Tls(e) => {
            StoreError::Unavailable(format!("TLS error talking to the database: {e}"))
        }
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        sqlx::Error::PoolClosed => StoreError::Unavailable("the database pool is closed".into()),
        sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable("the database connection worker stopped".into())
        }
        // The connection broke mid-conversation: a proxy in front of a database that went away
        // accepts the connection and closes it before the first answer ("unexpected response
        // from SSLRequest"). The store is unreachable, not broken.
        sqlx::Error::Protocol(m) => {
            StoreError::Unavailable(format!("database connection broken: {m}"))
        }
        sqlx::Error::Migrate(m) => map_migrate_error(*m),
        other => StoreError::Other(other.to_string()),
    }
}

pub(crate) fn map_migrate_error(err: MigrateError) -> StoreError {
    match err {
        MigrateError::Execute(e) => prefix("applying migrations", map_err(e)),
        MigrateError::ExecuteMigration(e, version) => {
            prefix(&format!("applying migration {version}"), map_err(e))
        }
        other => StoreError::Other(format!("migrations: {other}")),
    }
}

/// Adds context in front of the message, keeping the kind. A conflict names what collided and
/// is left alone.
pub(crate) fn prefix(context: &str, err: StoreError) -> StoreError {
    match err {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{context}: {m}")),
        StoreError::Other(m) => StoreError::Other(format!("{context}: {m}")),
        conflict @ StoreError::Conflict(_) => conflict,
    }
}

fn map_database_error(db: &dyn DatabaseError) -> StoreError {
    match db.kind() {
        ErrorKind::UniqueViolation => StoreError::Conflict(conflict_subject(db).to_owned()),
        ErrorKind::ForeignKeyViolation => StoreError::Other(foreign_key_text(db.constraint())),
        ErrorKind::NotNullViolation | ErrorKind::CheckViolation => {
            StoreError::Other(format!("the database refused a value ({})", db.message()))
        }
        _ if is_unavailable(db) => {
            StoreError::Unavailable(format!("database unavailable: {}", db.message()))
        }
        _ => StoreError::Other(format!("database error: {}", db.message())),
    }
}

/// Which constraint refused the write: PostgreSQL names it; SQLite lists the columns in its
/// message (`UNIQUE constraint failed: users.email`).
fn constraint_key(db: &dyn DatabaseError) -> &str {
    if let Some(c) = db.constraint() {
        return c;
    }
    let msg = db.message();
    msg.split_once("constraint failed: ")
        .map_or(msg, |(_, cols)| cols.trim())
}

/// Names what collided, in words the API can show ("user email already exists").
fn conflict_subject(db: &dyn DatabaseError) -> &'static str {
    conflict_name(constraint_key(db))
}

pub(crate) fn conflict_name(key: &str) -> &'static str {
    match key {
        "users_email_key" | "users.email" => "user email",
        "users_pkey" | "users.id" => "user id",
        "workspaces_pkey" | "workspaces.id" => "workspace id",
        "members_workspace_user_key" | "members.workspace_id, members.user_id" => "member",
        "members_pkey" | "members.id" => "member id",
        "changes_pkey" | "changes.seq" => "change",
        "recovery_codes_pkey" | "recovery_codes.user_id, recovery_codes.code_hash" => {
            "recovery code"
        }
        "sessions_pkey" | "sessions.id" => "session id",
        "refresh_tokens_pkey" | "refresh_tokens.hash" => "refresh token",
        "mfa_challenges_pkey" | "mfa_challenges.hash" => "mfa challenge",
        "password_resets_pkey" | "password_resets.hash" => "password reset",
        "signing_keys_pkey" | "signing_keys.kid" => "signing key",
        "audit_log_pkey" | "audit_log.id" => "audit entry",
        "scopes_pkey" | "scopes.workspace_id, scopes.name" => "scope",
        "roles_pkey" | "roles.id" => "role id",
        "roles_workspace_name_key" | "roles.workspace_id, roles.name" => "role name",
        "keys_pkey" | "keys.id" => "key id",
        "keys_hash_key" | "keys.hash" => "key hash",
        "apps_pkey" | "apps.client_id" => "app client id",
        "grants_pkey" | "grants.id" => "grant id",
        "grants_shared_key" | "grants.client_id, grants.workspace_id" => "shared grant",
        "grants_personal_key" | "grants.client_id, grants.member_id" => "personal grant",
        "token_keys_pkey" | "token_keys.kid" => "token key",
        _ => "record",
    }
}

fn foreign_key_text(constraint: Option<&str>) -> String {
    match constraint {
        Some("members_workspace_id_fkey") => "the member's workspace does not exist".into(),
        Some("members_user_id_fkey") => "the member's user does not exist".into(),
        Some("sessions_user_id_fkey") => "the session's user does not exist".into(),
        Some("refresh_tokens_session_id_fkey") => {
            "the refresh token's session does not exist".into()
        }
        Some("recovery_codes_user_id_fkey") => "the recovery code's user does not exist".into(),
        Some("mfa_challenges_user_id_fkey") => "the MFA challenge's user does not exist".into(),
        Some("password_resets_user_id_fkey") => "the password reset's user does not exist".into(),
        Some("scopes_workspace_id_fkey") => "the scope's workspace does not exist".into(),
        Some("roles_workspace_id_fkey") => "the role's workspace does not exist".into(),
        Some("keys_workspace_id_fkey") => "the key's workspace does not exist".into(),
        Some(other) => format!("a referenced record does not exist ({other})"),
        // SQLite does not say which reference failed.
        None => "a referenced record does not exist".into(),
    }
}

/// Errors that mean "the database cannot serve now", as opposed to "this request is wrong".
fn is_unavailable(db: &dyn DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        let code = pg.code();
        // 08: connection exception; 53: insufficient resources (too many connections, disk
        // full); 57P01..57P03: administrator shutdown, crash shutdown, cannot connect now.
        return code.starts_with("08")
            || code.starts_with("53")
            || matches!(code, "57P01" | "57P02" | "57P03");
    }
    if db.try_downcast_ref::<SqliteError>().is_some() {
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
        return matches!(primary, Some(5 | 6 | 10 | 13 | 14));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    #[test]
    fn non_database_errors() {
        assert!(matches!(
            map_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            map_err(sqlx::Error::Io(io)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::Protocol(
                "unexpected response from SSLRequest: 0x00".into()
            )),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
        assert!(matches!(
            map_err(sqlx::Error::Configuration("bad".into())),
            StoreError::Other(_)
        ));
    }

    #[test]
    fn migrate_errors_keep_their_kind() {
        let e = MigrateError::Execute(sqlx::Error::PoolTimedOut);
        assert!(
            matches!(map_migrate_error(e), StoreError::Unavailable(m) if m.starts_with("applying migrations"))
        );
        assert!(matches!(
            map_migrate_error(MigrateError::VersionMissing(3)),
            StoreError::Other(_)
        ));
    }

    #[test]
    fn conflict_names() {
        assert_eq!(conflict_name("users_email_key"), "user email");
        assert_eq!(conflict_name("users.email"), "user email");
        assert_eq!(
            conflict_name("members.workspace_id, members.user_id"),
            "member"
        );
        assert_eq!(conflict_name("members_workspace_user_key"), "member");
        assert_eq!(conflict_name("sessions.id"), "session id");
        assert_eq!(conflict_name("refresh_tokens_pkey"), "refresh token");
        assert_eq!(
            conflict_name("recovery_codes.user_id, recovery_codes.code_hash"),
            "recovery code"
        );
        assert_eq!(conflict_name("signing_keys.kid"), "signing key");
        assert_eq!(conflict_name("audit_log_pkey"), "audit entry");
        assert_eq!(conflict_name("scopes_pkey"), "scope");
        assert_eq!(conflict_name("scopes.workspace_id, scopes.name"), "scope");
        assert_eq!(conflict_name("roles_pkey"), "role id");
        assert_eq!(conflict_name("roles.id"), "role id");
        assert_eq!(conflict_name("roles_workspace_name_key"), "role name");
        assert_eq!(conflict_name("roles.workspace_id, roles.name"), "role name");
        assert_eq!(conflict_name("keys_pkey"), "key id");
        assert_eq!(conflict_name("keys.id"), "key id");
        assert_eq!(conflict_name("keys_hash_key"), "key hash");
        assert_eq!(conflict_name("keys.hash"), "key hash");
        assert_eq!(conflict_name("something_else"), "record");
    }

    #[tokio::test]
    async fn sqlite_constraint_errors_are_mapped() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE);
             CREATE TABLE members (id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users (id));
             INSERT INTO users VALUES ('u1', 'a@example.com');",
        )
        .execute(&pool)
        .await
        .unwrap();

        let dup = sqlx::query("INSERT INTO users VALUES ('u2', 'a@example.com')")
            .execute(&pool)
            .await
            .unwrap_err();
        match map_err(dup) {
            StoreError::Conflict(what) => assert_eq!(what, "user email"),
            other => panic!("{other:?}"),
        }

        let dup_id = sqlx::query("INSERT INTO users VALUES ('u1', 'b@example.com')")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(matches!(map_err(dup_id), StoreError::Conflict(w) if w == "user id"));

        let fk = sqlx::query("INSERT INTO members VALUES ('m1', 'nobody')")
            .execute(&pool)
            .await
            .unwrap_err();
        match map_err(fk) {
            StoreError::Other(text) => assert!(text.contains("does not exist"), "{text}"),
            other => panic!("{other:?}"),
        }

        let syntax = sqlx::query("SELEC 1").execute(&pool).await.unwrap_err();
        assert!(matches!(map_err(syntax), StoreError::Other(_)));
    }

    #[test]
    fn prefix_keeps_kind() {
        assert!(matches!(
            prefix("x", StoreError::Unavailable("y".into())),
            StoreError::Unavailable(m) if m == "x: y"
        ));
        assert!(matches!(
            prefix("x", StoreError::Conflict("member".into())),
            StoreError::Conflict(m) if m == "member"
        ));
    }
}
