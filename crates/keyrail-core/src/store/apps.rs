//! Builder profiles, apps, their grants and the server keys of the inner app tokens.

use async_trait::async_trait;

use super::StoreResult;
use crate::id::{BuilderProfileId, GrantId, UserId, WorkspaceId};
use crate::model::{
    App, AuditEntry, BuilderProfile, Grant, GrantFilter, GrantView, OAuthCode, OAuthRefresh, Page,
    Spent, StoredTokenKey,
};
use crate::time::Timestamp;

/// Apps built by users and granted to workspaces.
///
/// Every audited write takes its audit entry and writes it in the transaction of the change:
/// the two commit together or not at all.
#[async_trait]
pub trait AppStore: Send + Sync {
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
    /// A client id that exists already is a `Conflict`. Writes `audit`.
    async fn insert_app(&self, app: &App, audit: &AuditEntry) -> StoreResult<()>;
    async fn app_by_client_id(&self, client_id: &str) -> StoreResult<Option<App>>;
    /// By client id; `owner` `None` lists every app (platform administration).
    async fn list_apps(&self, owner: Option<&UserId>, page: &Page) -> StoreResult<Vec<App>>;
    /// Saves name, description, workspace_restrictions, active and updated_at and writes
    /// `audit`; `false` when no such app. The secret is changed only by
    /// [`AppStore::set_app_secret`].
    async fn update_app(&self, app: &App, audit: &AuditEntry) -> StoreResult<bool>;
    /// Stores a new sealed secret, adds one to the generation and writes `audit`, atomically;
    /// the new generation, or `None` when no such app.
    async fn set_app_secret(
        &self,
        client_id: &str,
        sealed_secret: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<Option<i64>>;
    /// Deletes the app and its grants and writes `audit`; `false` when no such app.
    async fn delete_app(&self, client_id: &str, audit: &AuditEntry) -> StoreResult<bool>;
    /// The workspaces holding at least one grant of the app.
    async fn workspaces_granting(&self, client_id: &str) -> StoreResult<Vec<WorkspaceId>>;

    // grants
    /// A second shared grant of an app in a workspace, or a second personal grant of an app by
    /// one member, is a `Conflict`. Writes `audit`.
    async fn insert_grant(&self, grant: &Grant, audit: &AuditEntry) -> StoreResult<()>;
    async fn grant_by_id(&self, id: &GrantId) -> StoreResult<Option<GrantView>>;
    /// A workspace's grants by id.
    async fn list_grants(
        &self,
        ws: &WorkspaceId,
        filter: &GrantFilter,
        page: &Page,
    ) -> StoreResult<Vec<GrantView>>;
    /// Deletes the grant and writes `audit`; `false` when no such grant in the workspace.
    async fn delete_grant(
        &self,
        ws: &WorkspaceId,
        id: &GrantId,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    // server keys of the inner app tokens
    async fn token_keys(&self) -> StoreResult<Vec<StoredTokenKey>>;
    /// A duplicate kid is a `Conflict`.
    async fn insert_token_key(&self, key: &StoredTokenKey) -> StoreResult<()>;

    // the OAuth authorization server (public clients)
    async fn insert_oauth_code(&self, code: &OAuthCode) -> StoreResult<()>;
    /// Marks the code used and returns it: `First` the first time, `Again` after (a replay).
    async fn take_oauth_code(&self, code_hash: &str) -> StoreResult<Spent<OAuthCode>>;
    async fn insert_oauth_refresh(&self, token: &OAuthRefresh) -> StoreResult<()>;
    /// Spends a refresh token: when it was unused, marks it used and stores `next` in the same
    /// transaction (`First`); a used one is `Again` and nothing is stored. Of two concurrent
    /// uses exactly one is `First`.
    async fn rotate_oauth_refresh(
        &self,
        token_hash: &str,
        next: &OAuthRefresh,
    ) -> StoreResult<Spent<OAuthRefresh>>;
    async fn oauth_refresh_by_hash(&self, token_hash: &str) -> StoreResult<Option<OAuthRefresh>>;
    /// Deletes codes and refresh tokens that expired before `now`, and public clients made
    /// before `unused_before` that hold no grant. The number of rows deleted.
    async fn delete_stale_oauth(
        &self,
        now: Timestamp,
        unused_before: Timestamp,
    ) -> StoreResult<u64>;
}
