//! [`AppStore`] for both backends: builder profiles, apps, grants and the server keys of the
//! inner app tokens. Every audited write writes its audit entry (`write_audit`) in the
//! transaction of the change.

use async_trait::async_trait;
use keyrail_core::id::{BuilderProfileId, GrantId, MemberId, UserId, WorkspaceId};
use keyrail_core::model::{
    App, AppKind, AuditEntry, BuilderProfile, Grant, GrantFilter, GrantView, OAuthCode,
    OAuthRefresh, Page, Spent, StoredTokenKey,
};
use keyrail_core::store::{AppStore, StoreError, StoreResult};
use keyrail_core::time::Timestamp;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::{PgStore, SqliteStore, page_bounds, scopes_json};
use crate::error::map_err;

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
    owner_id: Option<String>,
    builder_profile_id: Option<String>,
    kind: String,
    redirect_uris: Option<String>,
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
        let kind = AppKind::parse(&r.kind).ok_or_else(|| {
            StoreError::Other(format!(
                "app {} has an unknown kind {}",
                r.client_id, r.kind
            ))
        })?;
        let redirect_uris = match r.redirect_uris {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<String>>(&json).map_err(|e| {
                StoreError::Other(format!(
                    "app {} has unreadable redirect_uris: {e}",
                    r.client_id
                ))
            })?,
        };
        Ok(App {
            client_id: r.client_id,
            owner_id: r.owner_id.map(UserId::from_trusted),
            builder_profile_id: r.builder_profile_id.map(BuilderProfileId::from_trusted),
            kind,
            redirect_uris,
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

fn redirect_uris_json(app: &App) -> StoreResult<Option<String>> {
    if app.kind == AppKind::Confidential {
        return Ok(None);
    }
    serde_json::to_string(&app.redirect_uris)
        .map(Some)
        .map_err(|e| StoreError::Other(format!("encoding redirect_uris: {e}")))
}

const APP_COLUMNS: &str = "client_id, owner_id, builder_profile_id, name, description,
     workspace_restrictions, active, sealed_secret, secret_generation, created_at, updated_at,
     kind, redirect_uris";

#[derive(sqlx::FromRow)]
struct OAuthCodeRow {
    code_hash: String,
    client_id: String,
    grant_id: String,
    redirect_uri: String,
    code_challenge: String,
    resource: String,
    used: bool,
    created_at: i64,
    expires_at: i64,
}

impl From<OAuthCodeRow> for Spent<OAuthCode> {
    fn from(r: OAuthCodeRow) -> Self {
        let code = OAuthCode {
            code_hash: r.code_hash,
            client_id: r.client_id,
            grant_id: GrantId::from_trusted(r.grant_id),
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            resource: r.resource,
            created_at: Timestamp::from_millis(r.created_at),
            expires_at: Timestamp::from_millis(r.expires_at),
        };
        if r.used {
            Spent::Again(code)
        } else {
            Spent::First(code)
        }
    }
}

#[derive(sqlx::FromRow)]
struct OAuthRefreshRow {
    token_hash: String,
    client_id: String,
    grant_id: String,
    resource: String,
    used: bool,
    created_at: i64,
    expires_at: i64,
}

impl From<OAuthRefreshRow> for Spent<OAuthRefresh> {
    fn from(r: OAuthRefreshRow) -> Self {
        let token = OAuthRefresh {
            token_hash: r.token_hash,
            client_id: r.client_id,
            grant_id: GrantId::from_trusted(r.grant_id),
            resource: r.resource,
            created_at: Timestamp::from_millis(r.created_at),
            expires_at: Timestamp::from_millis(r.expires_at),
        };
        if r.used {
            Spent::Again(token)
        } else {
            Spent::First(token)
        }
    }
}

const OAUTH_CODE_COLUMNS: &str = "code_hash, client_id, grant_id, redirect_uri, code_challenge,
     resource, used, created_at, expires_at";
const OAUTH_REFRESH_COLUMNS: &str =
    "token_hash, client_id, grant_id, resource, used, created_at, expires_at";

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

/// Implements [`AppStore`] for `$store`, whose connections are `$conn` (one body of SQL, the
/// same on both backends).
macro_rules! app_store {
    ($store:ident, $conn:ty) => {
        impl $store {
            /// Ends a transaction that changed one row, or found none to change: writes `audit`
            /// and commits when `changed`, else rolls back (nothing was written). `changed`.
            async fn audited(
                mut tx: sqlx::Transaction<'_, <$conn as sqlx::Connection>::Database>,
                changed: bool,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                if !changed {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(false);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }
        }

        #[async_trait]
        impl AppStore for $store {
            // builder profiles
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

            // apps
            async fn insert_app(&self, app: &App, audit: &AuditEntry) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO apps ({APP_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                )))
                .bind(app.client_id.as_str())
                .bind(app.owner_id.as_ref().map(UserId::as_str))
                .bind(app.builder_profile_id.as_ref().map(BuilderProfileId::as_str))
                .bind(app.name.as_str())
                .bind(app.description.as_str())
                .bind(restrictions_json(app)?)
                .bind(app.active)
                .bind(app.sealed_secret.as_str())
                .bind(app.secret_generation)
                .bind(app.created_at.millis())
                .bind(app.updated_at.millis())
                .bind(app.kind.as_str())
                .bind(redirect_uris_json(app)?)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
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

            async fn update_app(&self, app: &App, audit: &AuditEntry) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
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
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::audited(tx, done.rows_affected() == 1, audit).await
            }

            async fn set_app_secret(
                &self,
                client_id: &str,
                sealed_secret: &str,
                at: Timestamp,
                audit: &AuditEntry,
            ) -> StoreResult<Option<i64>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let generation: Option<i64> = sqlx::query_scalar(
                    "UPDATE apps SET sealed_secret = $2,
                            secret_generation = secret_generation + 1, updated_at = $3
                     WHERE client_id = $1 RETURNING secret_generation",
                )
                .bind(client_id)
                .bind(sealed_secret)
                .bind(at.millis())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                // Audited only when there was an app to change.
                Self::audited(tx, generation.is_some(), audit).await?;
                Ok(generation)
            }

            async fn delete_app(&self, client_id: &str, audit: &AuditEntry) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Its grants go with it (ON DELETE CASCADE).
                let done = sqlx::query("DELETE FROM apps WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::audited(tx, done.rows_affected() == 1, audit).await
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

            // grants
            async fn insert_grant(&self, g: &Grant, audit: &AuditEntry) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
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
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
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

            async fn delete_grant(
                &self,
                ws: &WorkspaceId,
                id: &GrantId,
                audit: &AuditEntry,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM grants WHERE id = $1 AND workspace_id = $2")
                    .bind(id.as_str())
                    .bind(ws.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::audited(tx, done.rows_affected() == 1, audit).await
            }

            // server keys of the inner app tokens
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

            // the OAuth authorization server
            async fn insert_oauth_code(&self, c: &OAuthCode) -> StoreResult<()> {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO oauth_codes ({OAUTH_CODE_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $8)"
                )))
                .bind(c.code_hash.as_str())
                .bind(c.client_id.as_str())
                .bind(c.grant_id.as_str())
                .bind(c.redirect_uri.as_str())
                .bind(c.code_challenge.as_str())
                .bind(c.resource.as_str())
                .bind(c.created_at.millis())
                .bind(c.expires_at.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn take_oauth_code(&self, code_hash: &str) -> StoreResult<Spent<OAuthCode>> {
                // One statement: of two concurrent takes, one finds the code unused.
                let taken: Option<OAuthCodeRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "UPDATE oauth_codes SET used = TRUE WHERE code_hash = $1 AND NOT used
                     RETURNING {OAUTH_CODE_COLUMNS}"
                )))
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                if let Some(mut row) = taken {
                    row.used = false;
                    return Ok(row.into());
                }
                let seen: Option<OAuthCodeRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {OAUTH_CODE_COLUMNS} FROM oauth_codes WHERE code_hash = $1"
                )))
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(seen.map_or(Spent::Unknown, Spent::from))
            }

            async fn insert_oauth_refresh(&self, t: &OAuthRefresh) -> StoreResult<()> {
                Self::insert_refresh(&self.pool, t).await
            }

            async fn rotate_oauth_refresh(
                &self,
                token_hash: &str,
                next: &OAuthRefresh,
            ) -> StoreResult<Spent<OAuthRefresh>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let taken: Option<OAuthRefreshRow> = sqlx::query_as(AssertSqlSafe(format!(
                    "UPDATE oauth_refresh_tokens SET used = TRUE
                     WHERE token_hash = $1 AND NOT used
                     RETURNING {OAUTH_REFRESH_COLUMNS}"
                )))
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                if let Some(mut row) = taken {
                    Self::insert_refresh(&mut *tx, next).await?;
                    tx.commit().await.map_err(map_err)?;
                    row.used = false;
                    return Ok(row.into());
                }
                tx.rollback().await.map_err(map_err)?;
                Ok(self
                    .oauth_refresh_row(token_hash)
                    .await?
                    .map_or(Spent::Unknown, Spent::from))
            }

            async fn oauth_refresh_by_hash(
                &self,
                token_hash: &str,
            ) -> StoreResult<Option<OAuthRefresh>> {
                Ok(match self.oauth_refresh_row(token_hash).await?.map(Spent::from) {
                    Some(Spent::First(t) | Spent::Again(t)) => Some(t),
                    _ => None,
                })
            }

            async fn delete_stale_oauth(
                &self,
                now: Timestamp,
                unused_before: Timestamp,
            ) -> StoreResult<u64> {
                let mut n = 0;
                for sql in [
                    "DELETE FROM oauth_codes WHERE expires_at < $1",
                    "DELETE FROM oauth_refresh_tokens WHERE expires_at < $1",
                ] {
                    n += sqlx::query(sql)
                        .bind(now.millis())
                        .execute(&self.pool)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                }
                n += sqlx::query(
                    "DELETE FROM apps WHERE kind = 'public' AND created_at < $1
                       AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.client_id = apps.client_id)",
                )
                .bind(unused_before.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                Ok(n)
            }
        }

        impl $store {
            async fn insert_refresh<'c, E>(conn: E, t: &OAuthRefresh) -> StoreResult<()>
            where
                E: sqlx::Executor<'c, Database = <$conn as sqlx::Connection>::Database>,
            {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO oauth_refresh_tokens ({OAUTH_REFRESH_COLUMNS})
                     VALUES ($1, $2, $3, $4, FALSE, $5, $6)"
                )))
                .bind(t.token_hash.as_str())
                .bind(t.client_id.as_str())
                .bind(t.grant_id.as_str())
                .bind(t.resource.as_str())
                .bind(t.created_at.millis())
                .bind(t.expires_at.millis())
                .execute(conn)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn oauth_refresh_row(&self, token_hash: &str) -> StoreResult<Option<OAuthRefreshRow>> {
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT {OAUTH_REFRESH_COLUMNS} FROM oauth_refresh_tokens WHERE token_hash = $1"
                )))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)
            }
        }
    };
}

app_store!(SqliteStore, SqliteConnection);
app_store!(PgStore, PgConnection);
