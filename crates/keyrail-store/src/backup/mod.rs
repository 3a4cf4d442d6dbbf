//! Backup and restore of the whole database, portable between SQLite and PostgreSQL.
//!
//! The archive is gzip of JSON lines:
//! 1. a header `{"format": "keyrail-backup", "version": 1, "schema_version": N, "created_at":
//!    ms, "backend": "sqlite"|"postgres"}` (`schema_version` = the latest migration applied to
//!    the source);
//! 2. per table, in [`TABLES`] order, `{"table": NAME, "columns": [...]}` and then one JSON array
//!    per row, each value a logical type (null, integer, real, text, bool, or bytes as
//!    `{"b64": ...}`);
//! 3. a trailer `{"end": {TABLE: rows, ...}, "sha256": HEX}`, the SHA-256 over every byte before
//!    the trailer line.
//!
//! A backup reads every table in one read transaction (one snapshot), beside a live server. A
//! restore reads the archive twice: first whole, checking the format, the versions, the row
//! counts and the checksum without touching the database; then it writes, in ONE transaction
//! for all tables (all or nothing), in multi-row inserts bound by the target column's type. Both
//! hold one row (or one insert batch) in memory at a time, whatever the size.
//!
//! The master key is not in the archive: the sealed secrets in it open only with the key that
//! sealed them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use keyrail_core::store::{StoreError, StoreResult};
use serde_json::Value;

mod db;

use db::{Conn, Kind};

/// The archive's `format` field.
pub const FORMAT: &str = "keyrail-backup";
/// The archive layout's version; a restore refuses any other.
pub const FORMAT_VERSION: u64 = 1;

/// Every table of the schema, parents before children (the order rows are restored in, and the
/// reverse of the order `--force` empties them in). A table added by a migration must be added
/// here: `backup_tables_match_the_schema` (both backends) fails until it is.
pub const TABLES: &[&str] = &[
    "users",
    "workspaces",
    "key_formats",
    "members",
    "scopes",
    "roles",
    "recovery_codes",
    "login_throttle",
    "sessions",
    "refresh_tokens",
    "mfa_challenges",
    "password_resets",
    "signing_keys",
    "token_keys",
    "keys",
    "builder_profiles",
    "apps",
    "grants",
    "oauth_codes",
    "oauth_refresh_tokens",
    "webhook_secrets",
    "webhook_endpoints",
    "webhook_events",
    "webhook_jobs",
    "webhook_deliveries",
    "audit_log",
    "changes",
    "api_logs",
];

/// The longest line a restore accepts (a row of the archive); a damaged archive cannot make it
/// allocate more.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Bind parameters per insert statement: well under SQLite's 32766 and PostgreSQL's 65535.
const MAX_BINDS: usize = 4000;
/// Rows per insert statement at most.
const MAX_BATCH_ROWS: usize = 500;

/// What a backup wrote or a restore read.
#[derive(Debug, Clone)]
pub struct Summary {
    pub schema_version: i64,
    pub backend: String,
    /// Rows per table, in restore order.
    pub tables: Vec<(String, u64)>,
}

fn other(msg: impl Into<String>) -> StoreError {
    StoreError::Other(msg.into())
}

/// The latest migration this binary carries (the schema it writes and reads).
pub fn latest_schema_version() -> i64 {
    crate::sql::SQLITE_MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

async fn open_conn(database_url: &str, data_dir: &Path, migrate: bool) -> StoreResult<Conn> {
    let backend = crate::connect(database_url, data_dir).await?;
    if migrate {
        backend.migrate().await?;
    }
    Ok(match backend {
        crate::Backend::Sqlite(s) => {
            Conn::Sqlite(s.pool().acquire().await.map_err(crate::error::map_err)?)
        }
        crate::Backend::Postgres(s) => {
            Conn::Postgres(s.pool().acquire().await.map_err(crate::error::map_err)?)
        }
    })
}

/// Checks that the database has exactly the tables of [`TABLES`]: a table the list misses would
/// silently be left out of backups.
async fn check_tables(conn: &mut Conn) -> StoreResult<()> {
    let found = conn.tables().await?;
    if found.is_empty() {
        return Err(other(
            "the database holds no keyrail tables: a wrong database_url, or a database never \
             migrated",
        ));
    }
    let listed: std::collections::BTreeSet<String> =
        TABLES.iter().map(|t| (*t).to_owned()).collect();
    if found != listed {
        let missing: Vec<_> = found.difference(&listed).cloned().collect();
        let absent: Vec<_> = listed.difference(&found).cloned().collect();
        return Err(other(format!(
            "the database's tables do not match this keyrail's backup list (not listed: \
             {missing:?}; not in the database: {absent:?}): a keyrail of another version?"
        )));
    }
    Ok(())
}

/// The application tables found in a migrated database (for tests comparing with [`TABLES`]).
pub async fn schema_tables(database_url: &str, data_dir: &Path) -> StoreResult<Vec<String>> {
    let mut conn = open_conn(database_url, data_dir, true).await?;
    Ok(conn.tables().await?.into_iter().collect())
}

/// Writes the archive: lines hashed as they go, gzip on the way out.
struct ArchiveWriter {
    out: GzEncoder<BufWriter<File>>,
    hash: ring::digest::Context,
}

impl ArchiveWriter {
    fn line(&mut self, v: &Value) -> StoreResult<()> {
        let mut bytes = serde_json::to_vec(v).map_err(|e| other(format!("encoding: {e}")))?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.out
            .write_all(&bytes)
            .map_err(|e| other(format!("writing the archive: {e}")))
    }
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Writes a backup of the whole database to `out` (via `out.partial`, renamed when complete).
/// `progress` hears each table's name and row count when it is done.
pub async fn backup(
    database_url: &str,
    data_dir: &Path,
    out: &Path,
    mut progress: impl FnMut(&str, u64),
) -> StoreResult<Summary> {
    let mut conn = open_conn(database_url, data_dir, false).await?;
    let backend = match conn {
        Conn::Sqlite(_) => "sqlite",
        Conn::Postgres(_) => "postgres",
    };
    conn.begin_snapshot().await?;
    let result = backup_in_snapshot(&mut conn, backend, out, &mut progress).await;
    // Read only: nothing to keep or undo either way.
    let _ = conn.exec("ROLLBACK".into()).await;
    if result.is_err() {
        // A half-written archive is no backup; `out` itself was never touched.
        let _ = std::fs::remove_file(tmp_path(out));
    }
    result
}

async fn backup_in_snapshot(
    conn: &mut Conn,
    backend: &str,
    out: &Path,
    progress: &mut impl FnMut(&str, u64),
) -> StoreResult<Summary> {
    check_tables(conn).await?;
    let schema_version = conn.schema_version().await?;
    let tmp = tmp_path(out);
    let file =
        File::create(&tmp).map_err(|e| other(format!("cannot create {}: {e}", tmp.display())))?;
    let mut w = ArchiveWriter {
        out: GzEncoder::new(BufWriter::new(file), Compression::default()),
        hash: ring::digest::Context::new(&ring::digest::SHA256),
    };
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    w.line(&serde_json::json!({
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_version": schema_version,
        "created_at": created_at,
        "backend": backend,
    }))?;
    let mut counts = serde_json::Map::new();
    let mut tables = Vec::new();
    for table in TABLES {
        let columns: Vec<String> = conn
            .columns(table)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        w.line(&serde_json::json!({"table": table, "columns": columns}))?;
        let n = conn
            .dump(table, &columns, |cells| w.line(&Value::Array(cells)))
            .await?;
        progress(table, n);
        counts.insert((*table).to_owned(), Value::from(n));
        tables.push(((*table).to_owned(), n));
    }
    let digest = w.hash.clone().finish();
    let trailer = serde_json::json!({"end": counts, "sha256": hex(digest.as_ref())});
    let mut bytes = serde_json::to_vec(&trailer).map_err(|e| other(format!("encoding: {e}")))?;
    bytes.push(b'\n');
    let finish = |w: ArchiveWriter| -> std::io::Result<()> {
        let mut out = w.out;
        out.write_all(&bytes)?;
        let mut buf = out.finish()?;
        buf.flush()?;
        buf.get_ref().sync_all()
    };
    finish(w).map_err(|e| other(format!("writing the archive: {e}")))?;
    std::fs::rename(&tmp, out)
        .map_err(|e| other(format!("cannot move the archive to {}: {e}", out.display())))?;
    Ok(Summary {
        schema_version,
        backend: backend.to_owned(),
        tables,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line of an archive.
enum Line {
    Header(Value),
    Table {
        name: String,
        columns: Vec<String>,
    },
    Row(Vec<Value>),
    Trailer {
        counts: BTreeMap<String, u64>,
        sha256: String,
    },
}

fn damaged(what: impl std::fmt::Display) -> StoreError {
    other(format!(
        "the archive is damaged or not a keyrail backup: {what}"
    ))
}

fn parse_line(bytes: &[u8]) -> StoreResult<Line> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| damaged(format!("bad line: {e}")))?;
    match v {
        Value::Array(cells) => Ok(Line::Row(cells)),
        Value::Object(ref m) if m.contains_key("format") => Ok(Line::Header(v)),
        Value::Object(m) if m.contains_key("table") => {
            let name = m["table"].as_str().ok_or_else(|| damaged("table name"))?;
            let columns = m
                .get("columns")
                .and_then(Value::as_array)
                .ok_or_else(|| damaged("table columns"))?
                .iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| damaged("column"))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Line::Table {
                name: name.to_owned(),
                columns,
            })
        }
        Value::Object(m) if m.contains_key("end") => {
            let counts = m["end"]
                .as_object()
                .ok_or_else(|| damaged("trailer"))?
                .iter()
                .map(|(k, v)| {
                    v.as_u64()
                        .map(|n| (k.clone(), n))
                        .ok_or_else(|| damaged("count"))
                })
                .collect::<StoreResult<BTreeMap<_, _>>>()?;
            let sha256 = m
                .get("sha256")
                .and_then(Value::as_str)
                .ok_or_else(|| damaged("checksum missing"))?
                .to_owned();
            Ok(Line::Trailer { counts, sha256 })
        }
        _ => Err(damaged("unknown line")),
    }
}

/// Reads an archive line by line (bounded), decompressing as it goes.
struct ArchiveReader {
    input: BufReader<GzDecoder<BufReader<File>>>,
    buf: Vec<u8>,
}

impl ArchiveReader {
    fn open(path: &Path) -> StoreResult<Self> {
        let file =
            File::open(path).map_err(|e| other(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self {
            input: BufReader::new(GzDecoder::new(BufReader::new(file))),
            buf: Vec::new(),
        })
    }

    /// The next line with its newline, or `None` at the end.
    fn next(&mut self) -> StoreResult<Option<&[u8]>> {
        self.buf.clear();
        let mut limited = (&mut self.input).take(MAX_LINE as u64 + 1);
        let n = limited
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| damaged(format!("{e} (checksum error or truncated file)")))?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.len() > MAX_LINE {
            return Err(damaged("a line longer than 64 MiB"));
        }
        if self.buf.last() != Some(&b'\n') {
            return Err(damaged("truncated line"));
        }
        Ok(Some(&self.buf))
    }
}

/// Reads the whole archive once, checking everything a restore relies on before it writes:
/// the format and its version, the schema version (not newer than this binary's), the tables
/// and columns, the per-table row counts and the SHA-256 of the content.
///
/// The header is judged first (an archive of another format version may be laid out
/// differently); after it, the checksum comes first: a damaged archive is reported as such
/// (gzip's CRC or the SHA-256), even where the damage also garbled a table name or a row.
pub fn verify(path: &Path) -> StoreResult<Summary> {
    let mut r = ArchiveReader::open(path)?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let first = r.next()?.ok_or_else(|| damaged("empty"))?.to_vec();
    let Line::Header(header) = parse_line(&first)? else {
        return Err(damaged("no header"));
    };
    hash.update(&first);
    if header["format"] != FORMAT {
        return Err(damaged("not a keyrail backup"));
    }
    let version = header["version"].as_u64().unwrap_or(0);
    if version != FORMAT_VERSION {
        return Err(other(format!(
            "archive format version {version} is not supported (this keyrail reads version \
             {FORMAT_VERSION})"
        )));
    }
    let schema_version = header["schema_version"]
        .as_i64()
        .ok_or_else(|| damaged("schema version"))?;
    if schema_version > latest_schema_version() {
        return Err(other(format!(
            "the archive's schema version {schema_version} is newer than this keyrail's ({}): \
             restore it with a keyrail at least as new as the one that made it",
            latest_schema_version()
        )));
    }
    let backend = header["backend"].as_str().unwrap_or("?").to_owned();
    let mut content = Content::default();
    // One line behind: the last line is the trailer, which the checksum does not cover.
    let mut behind: Option<Vec<u8>> = None;
    while let Some(bytes) = r.next()? {
        if let Some(prev) = behind.replace(bytes.to_vec()) {
            hash.update(&prev);
            content.take(&prev);
        }
    }
    let last = behind.ok_or_else(|| damaged("no trailer (truncated file)"))?;
    let Ok(Line::Trailer { counts, sha256 }) = parse_line(&last) else {
        return Err(damaged("no trailer (truncated file)"));
    };
    if hex(hash.finish().as_ref()) != sha256 {
        return Err(damaged("checksum mismatch (SHA-256 of the content)"));
    }
    if let Some(problem) = content.problem {
        return Err(problem);
    }
    let seen: BTreeMap<String, u64> = content.tables.iter().cloned().collect();
    if seen != counts {
        return Err(damaged("row counts differ from the trailer"));
    }
    Ok(Summary {
        schema_version,
        backend,
        tables: content.tables,
    })
}

/// What [`verify`] found between the header and the trailer: the tables with their row counts,
/// and the first thing wrong, if any.
#[derive(Default)]
struct Content {
    tables: Vec<(String, u64)>,
    width: usize,
    problem: Option<StoreError>,
}

impl Content {
    fn take(&mut self, bytes: &[u8]) {
        if self.problem.is_none()
            && let Err(e) = self.check(bytes)
        {
            self.problem = Some(e);
        }
    }

    fn check(&mut self, bytes: &[u8]) -> StoreResult<()> {
        match parse_line(bytes)? {
            Line::Header(_) => return Err(damaged("a second header")),
            Line::Trailer { .. } => return Err(damaged("data after the trailer")),
            Line::Table { name, columns } => {
                if !TABLES.contains(&name.as_str()) || self.tables.iter().any(|(t, _)| *t == name) {
                    return Err(damaged(format!("unexpected table {name:?}")));
                }
                self.width = columns.len();
                self.tables.push((name, 0));
            }
            Line::Row(cells) => {
                let Some(last) = self.tables.last_mut() else {
                    return Err(damaged("a row before any table"));
                };
                if cells.len() != self.width {
                    return Err(damaged(format!("a row of {} of the wrong width", last.0)));
                }
                last.1 += 1;
            }
        }
        Ok(())
    }
}

/// Restores an archive into the database named by `database_url`: migrates it first, refuses a
/// database that holds any row unless `force` (then it empties every table first), and writes
/// everything in one transaction. Checks the whole archive ([`verify`]) before writing.
/// `progress` hears each table's name and row count once written.
pub async fn restore(
    database_url: &str,
    data_dir: &Path,
    from: &Path,
    force: bool,
    mut progress: impl FnMut(&str, u64),
) -> StoreResult<Summary> {
    let summary = verify(from)?;
    let mut conn = open_conn(database_url, data_dir, true).await?;
    check_tables(&mut conn).await?;
    if !force {
        for table in TABLES {
            let n = conn.count(table).await?;
            if n > 0 {
                return Err(other(format!(
                    "the target database is not empty (table {table} has {n} rows): restore \
                     into an empty database, or pass --force to delete everything in it first"
                )));
            }
        }
    }
    conn.exec("BEGIN".into()).await?;
    match write_all(&mut conn, from, force, &mut progress).await {
        Ok(()) => {
            conn.exec("COMMIT".into()).await?;
            Ok(summary)
        }
        Err(e) => {
            let _ = conn.exec("ROLLBACK".into()).await;
            Err(e)
        }
    }
}

async fn write_all(
    conn: &mut Conn,
    from: &Path,
    force: bool,
    progress: &mut impl FnMut(&str, u64),
) -> StoreResult<()> {
    if force {
        for table in TABLES.iter().rev() {
            conn.exec(format!("DELETE FROM {}", db::quote(table)))
                .await?;
        }
    }
    let mut r = ArchiveReader::open(from)?;
    // The header was checked by `verify`.
    r.next()?;
    struct Current {
        name: String,
        columns: Vec<String>,
        kinds: Vec<Kind>,
        batch: Vec<Vec<Value>>,
        batch_rows: usize,
        rows: u64,
    }
    let mut current: Option<Current> = None;
    async fn flush(conn: &mut Conn, c: &mut Current) -> StoreResult<()> {
        conn.insert(&c.name, &c.columns, &c.kinds, &c.batch).await?;
        c.rows += c.batch.len() as u64;
        c.batch.clear();
        Ok(())
    }
    while let Some(bytes) = r.next()? {
        match parse_line(bytes)? {
            Line::Header(_) => return Err(damaged("a second header")),
            Line::Table { name, columns } => {
                if let Some(mut c) = current.take() {
                    flush(conn, &mut c).await?;
                    progress(&c.name, c.rows);
                }
                let target: BTreeMap<String, Kind> =
                    conn.columns(&name).await?.into_iter().collect();
                let kinds = columns
                    .iter()
                    .map(|c| {
                        target.get(c).copied().ok_or_else(|| {
                            other(format!(
                                "the archive's column {name}.{c} does not exist in the target \
                                 database"
                            ))
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                let batch_rows = (MAX_BINDS / columns.len().max(1)).clamp(1, MAX_BATCH_ROWS);
                current = Some(Current {
                    name,
                    columns,
                    kinds,
                    batch: Vec::with_capacity(batch_rows),
                    batch_rows,
                    rows: 0,
                });
            }
            Line::Row(cells) => {
                let c = current
                    .as_mut()
                    .ok_or_else(|| damaged("a row before any table"))?;
                c.batch.push(cells);
                if c.batch.len() >= c.batch_rows {
                    flush(conn, c).await?;
                }
            }
            Line::Trailer { .. } => break,
        }
    }
    if let Some(mut c) = current.take() {
        flush(conn, &mut c).await?;
        progress(&c.name, c.rows);
    }
    conn.advance_sequences().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        assert!(matches!(parse_line(b"[1, null]\n").unwrap(), Line::Row(c) if c.len() == 2));
        assert!(matches!(
            parse_line(br#"{"table":"users","columns":["id"]}"#).unwrap(),
            Line::Table { name, .. } if name == "users"
        ));
        assert!(parse_line(b"{}").is_err());
        assert!(parse_line(b"garbage").is_err());
    }

    /// Writes an archive of `lines` (a correct trailer appended) and verifies it.
    fn verify_lines(lines: &[Value]) -> StoreResult<Summary> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.krb");
        let mut w = ArchiveWriter {
            out: GzEncoder::new(
                BufWriter::new(File::create(&path).unwrap()),
                Compression::fast(),
            ),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
        };
        for l in lines {
            w.line(l).unwrap();
        }
        let sha = hex(w.hash.clone().finish().as_ref());
        w.line(&serde_json::json!({"end": {}, "sha256": sha}))
            .unwrap();
        w.out.finish().unwrap().flush().unwrap();
        verify(&path)
    }

    #[test]
    fn archives_from_a_newer_keyrail_or_format_are_refused() {
        let header = |version: u64, schema: i64| {
            serde_json::json!({"format": FORMAT, "version": version, "schema_version": schema,
                               "created_at": 0, "backend": "sqlite"})
        };
        let latest = latest_schema_version();
        assert!(verify_lines(&[header(FORMAT_VERSION, latest)]).is_ok());
        assert!(verify_lines(&[header(FORMAT_VERSION, latest - 1)]).is_ok());
        let err = verify_lines(&[header(FORMAT_VERSION, latest + 1)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer than this keyrail"), "{err}");
        let err = verify_lines(&[header(FORMAT_VERSION + 1, latest)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("format version 2 is not supported"), "{err}");
        // A row count that disagrees with the trailer (here: a row the trailer does not count).
        let err = verify_lines(&[
            header(FORMAT_VERSION, latest),
            serde_json::json!({"table": "users", "columns": ["id"]}),
            serde_json::json!(["usr_1"]),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("row counts"), "{err}");
    }

    /// The list names every table of the migrated schema (SQLite here; both backends in the
    /// store suite).
    #[tokio::test]
    async fn backup_tables_match_the_sqlite_schema() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut found = schema_tables(&url, dir.path()).await.unwrap();
        found.sort();
        let mut listed: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
        listed.sort();
        assert_eq!(found, listed, "update backup::TABLES for the new table");
    }
}
