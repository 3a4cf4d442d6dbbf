//! `keyrail_store::backup` against both backends: the table list is the schema's, and an archive
//! of SQLite restores into PostgreSQL (booleans, NULLs, the change log's sequence) and back.

use std::io::{Read, Write};
use std::path::Path;

use keyrail_store::backup::{self, TABLES};
use keyrail_store::testing::TempPostgres;
use sqlx::{AssertSqlSafe, Connection};

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn listed() -> Vec<String> {
    sorted(TABLES.iter().map(|t| (*t).to_owned()).collect())
}

#[tokio::test]
async fn backup_tables_match_the_schema_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let found = sorted(backup::schema_tables(&url, dir.path()).await.unwrap());
    assert_eq!(
        found,
        listed(),
        "backup::TABLES must list every table (SQLite)"
    );
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let found = sorted(backup::schema_tables(&pg.url, dir.path()).await.unwrap());
    assert_eq!(
        found,
        listed(),
        "backup::TABLES must list every table (PostgreSQL)"
    );
    pg.drop_db().await;
}

async fn sqlite_exec(url: &str, sql: &str) {
    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn sqlite_archive_restores_into_postgres() {
    let Some(pg) = TempPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = format!("sqlite://{}", dir.path().join("src.db").display());
    keyrail_store::migrate(&src, dir.path()).await.unwrap();
    sqlite_exec(
        &src,
        "INSERT INTO users (id, email, name, password_hash, mfa_enabled, superuser, created_at,
                            updated_at, mfa_secret)
         VALUES ('usr_1', 'a@example.com', 'A', '$argon2id$x', 1, 0, 1, 2, 'sealed-totp');
         INSERT INTO workspaces (id, name, status, key_format, created_at, updated_at)
         VALUES ('ws_1', 'Acme', 'active', '{}', 1, 1);
         INSERT INTO keys (id, workspace_id, name, prefix, hash, scopes, created_at, updated_at,
                           disabled, sealed_key)
         VALUES ('key_1', 'ws_1', 'k', 'kr_ab', 'h1', '[]', 1, 1, 1, 'sealed-key');
         INSERT INTO changes (at, kind, subject) VALUES (1, 'k', 's'), (2, 'k', 't');",
    )
    .await;
    let archive = dir.path().join("x.krb");
    let mut seen = Vec::new();
    let made = backup::backup(&src, dir.path(), &archive, |t, n| {
        seen.push((t.to_owned(), n))
    })
    .await
    .unwrap();
    assert_eq!(made.schema_version, backup::latest_schema_version());
    assert_eq!(seen.len(), TABLES.len());
    assert!(seen.contains(&("users".to_owned(), 1)) && seen.contains(&("changes".to_owned(), 2)));

    backup::restore(&pg.url, dir.path(), &archive, false, |_, _| {})
        .await
        .unwrap();
    let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let (mfa, secret): (bool, Option<String>) =
        sqlx::query_as("SELECT mfa_enabled, mfa_secret FROM users WHERE id = 'usr_1'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(mfa);
    assert_eq!(secret.as_deref(), Some("sealed-totp"));
    let (disabled, expires): (bool, Option<i64>) =
        sqlx::query_as("SELECT disabled, expires_at FROM keys WHERE id = 'key_1'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(disabled);
    assert_eq!(expires, None);
    // The change log's identity moved past what was restored.
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO changes (at, kind, subject) VALUES (3, 'k', 'u') RETURNING seq",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(seq, 3);
    c.close().await.unwrap();

    // Not empty now: refused without --force, naming why; with it, replaced.
    let err = backup::restore(&pg.url, dir.path(), &archive, false, |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    backup::restore(&pg.url, dir.path(), &archive, true, |_, _| {})
        .await
        .unwrap();

    // Back into a fresh SQLite: booleans become integers again.
    let back = format!("sqlite://{}", dir.path().join("back.db").display());
    let archive2 = dir.path().join("y.krb");
    backup::backup(&pg.url, dir.path(), &archive2, |_, _| {})
        .await
        .unwrap();
    backup::restore(&back, dir.path(), &archive2, false, |_, _| {})
        .await
        .unwrap();
    let mut s = sqlx::SqliteConnection::connect(&back).await.unwrap();
    let mfa: i64 = sqlx::query_scalar("SELECT mfa_enabled FROM users")
        .fetch_one(&mut s)
        .await
        .unwrap();
    assert_eq!(mfa, 1);
    s.close().await.unwrap();

    // A damaged archive is refused before anything is written.
    flip_a_byte(&archive);
    let empty = format!("sqlite://{}", dir.path().join("empty.db").display());
    let err = backup::restore(&empty, dir.path(), &archive, false, |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("damaged") && err.contains("checksum"), "{err}");
    assert!(
        !dir.path().join("empty.db").exists(),
        "a refused archive touches no database"
    );
    // Changed content in an intact gzip stream: the SHA-256 catches it.
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&archive2).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("a@example.com"));
    let text = text.replace("a@example.com", "b@example.com");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(&archive2, gz.finish().unwrap()).unwrap();
    let err = backup::restore(&empty, dir.path(), &archive2, false, |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(!dir.path().join("empty.db").exists());
    pg.drop_db().await;
}
