//! What a backup and a restore ask of the database, for each backend: the tables and their
//! columns, a consistent snapshot, reading rows as logical values and writing them back bound
//! by the target column's type.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::TryStreamExt;
use keyrail_core::store::{StoreError, StoreResult};
use serde_json::{Map, Value};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};

use crate::error::map_err;

/// The logical type of a target column: how an archived value is bound on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Real,
    Text,
    Bool,
    Bytes,
}

/// One connection of either backend, taken from the pool for the whole backup or restore.
pub(crate) enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// `"name"`, for identifiers that were checked against the schema first.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn other(msg: String) -> StoreError {
    StoreError::Other(msg)
}

/// SQLite's type affinity of a declared column type (section 3.1 of its datatype page); numeric
/// affinity (BOOLEAN, NUMERIC) stores what keyrail writes there as integers.
fn sqlite_kind(declared: &str) -> Kind {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        Kind::Int
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Kind::Text
    } else if t.is_empty() || t.contains("BLOB") {
        Kind::Bytes
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Kind::Real
    } else {
        Kind::Int
    }
}

fn pg_kind(data_type: &str, table: &str, column: &str) -> StoreResult<Kind> {
    Ok(match data_type {
        "bigint" | "integer" | "smallint" => Kind::Int,
        "double precision" | "real" => Kind::Real,
        "text" | "character varying" | "character" | "name" => Kind::Text,
        "boolean" => Kind::Bool,
        "bytea" => Kind::Bytes,
        other => {
            return Err(StoreError::Other(format!(
                "column {table}.{column} has type {other}, which backups do not handle"
            )));
        }
    })
}

/// A value of a source row as archived: null, integer, real, text, bool, or bytes as
/// `{"b64": "..."}`.
fn sqlite_cell(row: &SqliteRow, i: usize) -> StoreResult<Value> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_owned();
    Ok(match storage.as_str() {
        "INTEGER" => Value::from(row.try_get_unchecked::<i64, _>(i).map_err(map_err)?),
        "REAL" => Value::from(row.try_get_unchecked::<f64, _>(i).map_err(map_err)?),
        "TEXT" => Value::from(row.try_get_unchecked::<String, _>(i).map_err(map_err)?),
        _ => bytes_cell(&row.try_get_unchecked::<Vec<u8>, _>(i).map_err(map_err)?),
    })
}

fn pg_cell(row: &PgRow, i: usize) -> StoreResult<Value> {
    let raw = row.try_get_raw(i).map_err(map_err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = row.columns()[i].type_info().name().to_owned();
    Ok(match ty.as_str() {
        "INT8" => Value::from(row.try_get::<i64, _>(i).map_err(map_err)?),
        "INT4" => Value::from(row.try_get::<i32, _>(i).map_err(map_err)?),
        "INT2" => Value::from(row.try_get::<i16, _>(i).map_err(map_err)?),
        "FLOAT8" => Value::from(row.try_get::<f64, _>(i).map_err(map_err)?),
        "FLOAT4" => Value::from(f64::from(row.try_get::<f32, _>(i).map_err(map_err)?)),
        "BOOL" => Value::from(row.try_get::<bool, _>(i).map_err(map_err)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
            Value::from(row.try_get::<String, _>(i).map_err(map_err)?)
        }
        "BYTEA" => bytes_cell(&row.try_get::<Vec<u8>, _>(i).map_err(map_err)?),
        other => {
            return Err(StoreError::Other(format!(
                "column {} has type {other}, which backups do not handle",
                row.columns()[i].name()
            )));
        }
    })
}

fn bytes_cell(bytes: &[u8]) -> Value {
    let mut m = Map::new();
    m.insert("b64".into(), Value::from(B64.encode(bytes)));
    Value::Object(m)
}

/// The bytes of an archived `{"b64": ...}` value.
fn cell_bytes(v: &Value) -> Option<Vec<u8>> {
    let s = v.as_object()?.get("b64")?.as_str()?;
    B64.decode(s).ok()
}

/// What one archived value becomes in a column of `kind`: the typed value to bind.
enum Bound {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

fn bind_value(kind: Kind, v: &Value, table: &str, column: &str) -> StoreResult<Bound> {
    let bad = || {
        StoreError::Other(format!(
            "archive value for {table}.{column} does not fit the column ({kind:?})"
        ))
    };
    Ok(match kind {
        Kind::Int => Bound::Int(match v {
            Value::Null => None,
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Number(n) => Some(n.as_i64().ok_or_else(bad)?),
            _ => return Err(bad()),
        }),
        Kind::Bool => Bound::Bool(match v {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            Value::Number(n) => Some(n.as_i64().ok_or_else(bad)? != 0),
            _ => return Err(bad()),
        }),
        Kind::Real => Bound::Real(match v {
            Value::Null => None,
            Value::Number(n) => Some(n.as_f64().ok_or_else(bad)?),
            _ => return Err(bad()),
        }),
        Kind::Text => Bound::Text(match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return Err(bad()),
        }),
        Kind::Bytes => Bound::Bytes(match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone().into_bytes()),
            other => Some(cell_bytes(other).ok_or_else(bad)?),
        }),
    })
}

/// `INSERT INTO t (cols) VALUES ($1, ...), (...)` for `rows` rows, bound by the target kinds.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $columns:expr, $kinds:expr, $rows:expr) => {{
        let cols: Vec<String> = $columns.iter().map(|c| quote(c)).collect();
        let width = cols.len();
        let tuples: Vec<String> = (0..$rows.len())
            .map(|r| {
                let ps: Vec<String> = (0..width)
                    .map(|c| format!("${}", r * width + c + 1))
                    .collect();
                format!("({})", ps.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote($table),
            cols.join(", "),
            tuples.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in $rows {
            for (i, v) in row.iter().enumerate() {
                q = match bind_value($kinds[i], v, $table, &$columns[i])? {
                    Bound::Int(x) => q.bind(x),
                    Bound::Real(x) => q.bind(x),
                    Bound::Text(x) => q.bind(x),
                    Bound::Bool(x) => q.bind(x),
                    Bound::Bytes(x) => q.bind(x),
                };
            }
        }
        q.execute(&mut **$conn).await.map_err(map_err)?;
    }};
}

impl Conn {
    /// Runs a statement that returns nothing of interest (`BEGIN`, `COMMIT`, a `DELETE`).
    pub(crate) async fn exec(&mut self, sql: String) -> StoreResult<()> {
        match self {
            Conn::Sqlite(c) => {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut **c)
                    .await
                    .map_err(map_err)?;
            }
            Conn::Postgres(c) => {
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut **c)
                    .await
                    .map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// Starts the read transaction every table of a backup is read in: one snapshot.
    /// PostgreSQL: `REPEATABLE READ READ ONLY`; SQLite (WAL): a deferred transaction whose
    /// first read fixes the snapshot, which a writing server does not disturb.
    pub(crate) async fn begin_snapshot(&mut self) -> StoreResult<()> {
        match self {
            Conn::Sqlite(_) => {
                self.exec("BEGIN".into()).await?;
                // The first read starts the snapshot now, not at the first table.
                self.exec("SELECT COUNT(*) FROM sqlite_master".into()).await
            }
            Conn::Postgres(_) => {
                self.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY".into())
                    .await
            }
        }
    }

    /// The application's tables (not the migrations' bookkeeping, not SQLite's own).
    pub(crate) async fn tables(&mut self) -> StoreResult<BTreeSet<String>> {
        let names: Vec<String> = match self {
            Conn::Sqlite(c) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                   AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'",
            )
            .fetch_all(&mut **c)
            .await
            .map_err(map_err)?,
            Conn::Postgres(c) => sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
                   AND table_name <> '_sqlx_migrations'",
            )
            .fetch_all(&mut **c)
            .await
            .map_err(map_err)?,
        };
        Ok(names.into_iter().collect())
    }

    /// A table's columns in their order, with their logical types.
    pub(crate) async fn columns(&mut self, table: &str) -> StoreResult<Vec<(String, Kind)>> {
        match self {
            Conn::Sqlite(c) => {
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                        .bind(table)
                        .fetch_all(&mut **c)
                        .await
                        .map_err(map_err)?;
                Ok(rows
                    .into_iter()
                    .map(|(n, t)| {
                        let k = sqlite_kind(&t);
                        (n, k)
                    })
                    .collect())
            }
            Conn::Postgres(c) => {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1
                     ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&mut **c)
                .await
                .map_err(map_err)?;
                rows.into_iter()
                    .map(|(n, t)| pg_kind(&t, table, &n).map(|k| (n, k)))
                    .collect()
            }
        }
    }

    /// The latest migration applied to this database (0 when none).
    pub(crate) async fn schema_version(&mut self) -> StoreResult<i64> {
        let sql = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let v: i64 = match self {
            Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(&mut **c).await,
            Conn::Postgres(c) => sqlx::query_scalar(sql).fetch_one(&mut **c).await,
        }
        .map_err(|e| other(format!("reading the schema version: {}", map_err(e))))?;
        Ok(v)
    }

    pub(crate) async fn count(&mut self, table: &str) -> StoreResult<i64> {
        let sql = format!("SELECT COUNT(*) FROM {}", quote(table));
        match self {
            Conn::Sqlite(c) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut **c)
                .await
                .map_err(map_err),
            Conn::Postgres(c) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut **c)
                .await
                .map_err(map_err),
        }
    }

    /// Streams every row of `table` (the `columns`, in that order) into `each`, one at a time.
    pub(crate) async fn dump<F>(
        &mut self,
        table: &str,
        columns: &[String],
        mut each: F,
    ) -> StoreResult<u64>
    where
        F: FnMut(Vec<Value>) -> StoreResult<()>,
    {
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let sql = format!("SELECT {} FROM {}", cols.join(", "), quote(table));
        let mut n = 0u64;
        match self {
            Conn::Sqlite(c) => {
                let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut **c);
                while let Some(row) = rows.try_next().await.map_err(map_err)? {
                    let cells = (0..columns.len())
                        .map(|i| sqlite_cell(&row, i))
                        .collect::<StoreResult<Vec<_>>>()?;
                    each(cells)?;
                    n += 1;
                }
            }
            Conn::Postgres(c) => {
                let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut **c);
                while let Some(row) = rows.try_next().await.map_err(map_err)? {
                    let cells = (0..columns.len())
                        .map(|i| pg_cell(&row, i))
                        .collect::<StoreResult<Vec<_>>>()?;
                    each(cells)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Inserts `rows` (values of `columns`, in order) in one statement, each value bound as the
    /// target column's type says.
    pub(crate) async fn insert(
        &mut self,
        table: &str,
        columns: &[String],
        kinds: &[Kind],
        rows: &[Vec<Value>],
    ) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Conn::Sqlite(c) => insert_rows!(c, table, columns, kinds, rows),
            Conn::Postgres(c) => insert_rows!(c, table, columns, kinds, rows),
        }
        Ok(())
    }

    /// Moves every PostgreSQL sequence owned by a column (identity or serial) past the largest
    /// value restored, so that the next insert does not collide. SQLite's AUTOINCREMENT
    /// (`sqlite_sequence`) follows explicit inserts by itself.
    pub(crate) async fn advance_sequences(&mut self) -> StoreResult<Vec<String>> {
        let Conn::Postgres(c) = self else {
            return Ok(Vec::new());
        };
        let owned: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema()
               AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')",
        )
        .fetch_all(&mut **c)
        .await
        .map_err(map_err)?;
        let mut done = Vec::new();
        for (table, column) in owned {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), \
                 COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                quote(&column),
                quote(&table)
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(quote(&table))
                .bind(&column)
                .execute(&mut **c)
                .await
                .map_err(map_err)?;
            done.push(format!("{table}.{column}"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_affinity() {
        assert_eq!(sqlite_kind("INTEGER"), Kind::Int);
        assert_eq!(sqlite_kind("BIGINT"), Kind::Int);
        assert_eq!(sqlite_kind("TEXT"), Kind::Text);
        assert_eq!(sqlite_kind("BOOLEAN"), Kind::Int);
        assert_eq!(sqlite_kind("REAL"), Kind::Real);
        assert_eq!(sqlite_kind(""), Kind::Bytes);
    }

    #[test]
    fn values_bind_by_target_type() {
        assert!(matches!(
            bind_value(Kind::Bool, &Value::from(1), "t", "c").unwrap(),
            Bound::Bool(Some(true))
        ));
        assert!(matches!(
            bind_value(Kind::Int, &Value::from(true), "t", "c").unwrap(),
            Bound::Int(Some(1))
        ));
        assert!(matches!(
            bind_value(Kind::Int, &Value::Null, "t", "c").unwrap(),
            Bound::Int(None)
        ));
        assert!(bind_value(Kind::Int, &Value::from("x"), "t", "c").is_err());
        let b = bytes_cell(&[0, 255, 7]);
        assert!(matches!(
            bind_value(Kind::Bytes, &b, "t", "c").unwrap(),
            Bound::Bytes(Some(v)) if v == [0, 255, 7]
        ));
    }
}
