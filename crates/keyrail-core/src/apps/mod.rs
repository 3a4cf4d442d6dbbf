//! Apps: third-party integrations that act for workspace members.
//!
//! A developer publishes an app under a builder profile and gets a client id and a secret. A
//! member grants the app scopes in a workspace (a personal grant, or a shared one made by
//! someone who manages the workspace). The app then asks for short-lived tokens with its client
//! credentials: two nested JWEs, the outer one under its secret, the inner one under a server key.
//! Acting through a token is acting as the member, within the grant's scopes; every use checks
//! the grant, the app, its secret generation and its workspace restrictions in the store, so a
//! revocation, a deactivation or a new secret stops tokens at once on every node.

pub mod oauth;
pub mod tokens;

use std::sync::Arc;

use serde_json::json;

use crate::audit::{self, RequestMeta};
use crate::authz::{self, GrantTarget, ScopeSet};
use crate::clock::Clock;
use crate::crypto::{b64url_decode, b64url_encode, ct_eq, fill_random_or_panic, seal};
use crate::error::Error;
use crate::events::{Audience, OutboxEvent};
use crate::id::{BuilderProfileId, GrantId, MemberId, WorkspaceId};
use crate::model::{
    App, AppKind, AuditEntry, BuilderProfile, Grant, GrantFilter, GrantView, Page, WorkspaceStatus,
};
use crate::reload_gate::ReloadGate;
use crate::secret::{MasterKey, Secret};
use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use crate::workspaces::{Access, Actor, tenant_suspended};

pub use tokens::TokenKeys;
use tokens::{InnerClaims, OuterClaims};

const SECRET_PURPOSE: &str = "app-client-secret";
/// Client secrets are 16 random bytes (the A128GCM key of the outer layer).
pub const SECRET_BYTES: usize = 16;
/// Tokens live 5 minutes.
pub const TOKEN_TTL_SECS: i64 = 300;
/// Client ids are `kr_app_` and this many characters of `[a-z0-9]`.
const CLIENT_ID_BODY: usize = 24;
pub const CLIENT_ID_PREFIX: &str = "kr_app_";

/// An app token, once its inner layer has been checked against the store.
#[derive(Debug, Clone)]
pub struct AppSession {
    pub client_id: String,
    pub grant_id: GrantId,
    pub workspace_id: WorkspaceId,
    pub member_id: MemberId,
    /// The grant's scopes as granted (not closed under implication).
    pub scopes: ScopeSet,
}

/// What `POST /apps` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub name: String,
    pub description: Option<String>,
    pub builder_profile_id: String,
    pub workspace_restrictions: Option<Vec<String>>,
}

/// What `PATCH /apps/{client_id}` changes (absent = unchanged; `Some(None)` clears).
#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub workspace_restrictions: Option<Option<Vec<String>>>,
    pub active: Option<bool>,
}

/// A token made for an app.
pub struct IssuedToken {
    /// `<client_id>:<compact JWE>`.
    pub token: Secret,
    pub expires_in: i64,
}

pub struct Apps {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: Arc<MasterKey>,
    pub token_keys: TokenKeys,
    /// Throttles the reloads of the token keys for an unknown `kid`.
    key_reloads: ReloadGate,
}

fn app_not_found() -> Error {
    Error::NotFound { what: "app" }
}

fn grant_not_found() -> Error {
    Error::NotFound { what: "grant" }
}

pub fn invalid_client() -> Error {
    Error::unauthenticated("invalid_client", "Invalid client credentials")
}

fn app_inactive() -> Error {
    Error::forbidden("app_inactive", "App is inactive")
}

fn workspace_restricted() -> Error {
    Error::forbidden(
        "workspace_restricted",
        "This app is restricted to other workspaces",
    )
}

fn clean_text(raw: &str, field: &str, min: usize, max: usize) -> Result<String, Error> {
    let s = raw.trim();
    let n = s.chars().count();
    if n < min || n > max || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(
            field,
            format!("{field} must be {min} to {max} characters"),
        ));
    }
    Ok(s.to_owned())
}

fn clean_website(raw: Option<&str>) -> Result<Option<String>, Error> {
    let Some(url) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty()
    });
    if !host_ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "website",
            "website must be an http:// or https:// URL",
        ));
    }
    Ok(Some(url.to_owned()))
}

fn clean_restrictions(raw: Option<Vec<String>>) -> Result<Option<Vec<WorkspaceId>>, Error> {
    let Some(list) = raw else { return Ok(None) };
    let field = "workspace_restrictions";
    if list.is_empty() || list.len() > 100 {
        return Err(Error::invalid(
            field,
            "workspace_restrictions must list 1 to 100 workspace ids, or be null for any workspace",
        ));
    }
    let mut ids = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let id = WorkspaceId::parse(raw).ok_or_else(|| {
            Error::invalid(
                format!("{field}[{i}]"),
                format!("{field}[{i}] is not a workspace id"),
            )
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

fn new_client_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; CLIENT_ID_BODY];
    fill_random_or_panic(&mut bytes);
    // 256 = 7 * 36 + 4: the bias of the modulo is under 2% per character and the id is public.
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{CLIENT_ID_PREFIX}{body}")
}

/// A new client secret: the raw bytes (for the store, sealed) and its base64url (for the app).
fn new_secret() -> (zeroize::Zeroizing<[u8; SECRET_BYTES]>, Secret) {
    let mut raw = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    fill_random_or_panic(raw.as_mut());
    let shown = Secret::new(b64url_encode(raw.as_ref()));
    (raw, shown)
}

impl Apps {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, master: Arc<MasterKey>) -> Self {
        Self {
            store,
            clock,
            master,
            token_keys: TokenKeys::default(),
            key_reloads: ReloadGate::default(),
        }
    }

    /// Loads (or makes) the inner-token keys: at start and periodically.
    pub async fn refresh_keys(&self) -> Result<(), Error> {
        self.token_keys
            .refresh(self.store.as_ref(), &self.master, self.clock.now())
            .await
    }

    /// The audit entry of an action, for the store to write with the change.
    fn audit_entry(
        actor: &Actor,
        meta: &RequestMeta,
        workspace: Option<WorkspaceId>,
        action: &str,
        target: String,
        at: Timestamp,
    ) -> AuditEntry {
        audit::entry(
            at,
            meta,
            workspace,
            actor.audit_actor(),
            action,
            Some(target),
            true,
        )
    }

    // ---- builder profiles

    pub async fn create_profile(
        &self,
        actor: &Actor,
        name: &str,
        website: Option<&str>,
    ) -> Result<BuilderProfile, Error> {
        let user = actor.user_only()?;
        let profile = BuilderProfile {
            id: BuilderProfileId::new(),
            user_id: user.clone(),
            name: clean_text(name, "name", 1, 100)?,
            website: clean_website(website)?,
            created_at: self.clock.now(),
        };
        self.store.insert_builder_profile(&profile).await?;
        Ok(profile)
    }

    pub async fn list_profiles(
        &self,
        actor: &Actor,
        page: &Page,
    ) -> Result<Vec<BuilderProfile>, Error> {
        let user = actor.user_only()?;
        Ok(self.store.builder_profiles_of(user, page).await?)
    }

    // ---- apps

    /// The app, if the caller owns it (or is a superuser); else 404.
    async fn owned(&self, actor: &Actor, client_id: &str) -> Result<App, Error> {
        let user = actor.user_only()?;
        if !client_id.starts_with(CLIENT_ID_PREFIX) || client_id.len() > 64 {
            return Err(app_not_found());
        }
        match self.store.app_by_client_id(client_id).await? {
            // A public client (dynamically registered) has no developer to manage it.
            Some(app)
                if app.kind == AppKind::Confidential
                    && (app.owner_id.as_ref() == Some(user) || actor.is_superuser()) =>
            {
                Ok(app)
            }
            _ => Err(app_not_found()),
        }
    }

    /// Creates an app; its secret is returned this once.
    pub async fn create_app(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        input: NewApp,
    ) -> Result<(App, Secret), Error> {
        let user = actor.user_only()?.clone();
        let name = clean_text(&input.name, "name", 1, 100)?;
        let description = clean_text(
            input.description.as_deref().unwrap_or(""),
            "description",
            0,
            1000,
        )?;
        let bad_profile = || {
            Error::invalid(
                "builder_profile_id",
                "builder_profile_id must name one of your builder profiles",
            )
        };
        let profile_id =
            BuilderProfileId::parse(&input.builder_profile_id).ok_or_else(bad_profile)?;
        match self.store.builder_profile_by_id(&profile_id).await? {
            Some(p) if p.user_id == user => {}
            _ => return Err(bad_profile()),
        }
        let workspace_restrictions = clean_restrictions(input.workspace_restrictions)?;
        let (raw, shown) = new_secret();
        let now = self.clock.now();
        let app = App {
            client_id: new_client_id(),
            owner_id: Some(user),
            builder_profile_id: Some(profile_id),
            kind: AppKind::Confidential,
            redirect_uris: Vec::new(),
            name,
            description,
            workspace_restrictions,
            active: true,
            sealed_secret: seal::seal(&self.master, SECRET_PURPOSE, raw.as_ref()),
            secret_generation: 1,
            created_at: now,
            updated_at: now,
        };
        let entry = Self::audit_entry(actor, meta, None, "app.create", app.client_id.clone(), now);
        self.store.insert_app(&app, &entry).await?;
        Ok((app, shown))
    }

    /// The caller's apps.
    pub async fn list_apps(&self, actor: &Actor, page: &Page) -> Result<Vec<App>, Error> {
        let user = actor.user_only()?;
        Ok(self.store.list_apps(Some(user), page).await?)
    }

    pub async fn get_app(&self, actor: &Actor, client_id: &str) -> Result<App, Error> {
        self.owned(actor, client_id).await
    }

    pub async fn update_app(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        client_id: &str,
        patch: AppPatch,
    ) -> Result<App, Error> {
        let mut app = self.owned(actor, client_id).await?;
        if let Some(name) = &patch.name {
            app.name = clean_text(name, "name", 1, 100)?;
        }
        if let Some(description) = &patch.description {
            app.description = clean_text(description, "description", 0, 1000)?;
        }
        if let Some(restrictions) = patch.workspace_restrictions {
            app.workspace_restrictions = clean_restrictions(restrictions)?;
        }
        if let Some(active) = patch.active {
            app.active = active;
        }
        app.updated_at = self.clock.now();
        let entry = Self::audit_entry(
            actor,
            meta,
            None,
            "app.update",
            app.client_id.clone(),
            app.updated_at,
        );
        if !self.store.update_app(&app, &entry).await? {
            return Err(app_not_found());
        }
        Ok(app)
    }

    /// Deletes the app with all its grants: its tokens stop at once.
    pub async fn delete_app(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        client_id: &str,
    ) -> Result<(), Error> {
        let app = self.owned(actor, client_id).await?;
        let entry = Self::audit_entry(
            actor,
            meta,
            None,
            "app.delete",
            app.client_id.clone(),
            self.clock.now(),
        );
        if !self.store.delete_app(&app.client_id, &entry).await? {
            return Err(app_not_found());
        }
        Ok(())
    }

    /// A new client secret; the old one and every token made with it stop at once.
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        client_id: &str,
    ) -> Result<Secret, Error> {
        let app = self.owned(actor, client_id).await?;
        let (raw, shown) = new_secret();
        let sealed = seal::seal(&self.master, SECRET_PURPOSE, raw.as_ref());
        let now = self.clock.now();
        let entry = Self::audit_entry(
            actor,
            meta,
            None,
            "app.secret_rotate",
            app.client_id.clone(),
            now,
        )
        // Heard by every workspace that holds a grant to the app when the rotation commits.
        .with_event(OutboxEvent {
            kind: "app.secret_rotated",
            data: json!({"client_id": app.client_id}),
            audience: Audience::GrantsOf(app.client_id.clone()),
        });
        if self
            .store
            .set_app_secret(&app.client_id, &sealed, now, &entry)
            .await?
            .is_none()
        {
            return Err(app_not_found());
        }
        Ok(shown)
    }

    // ---- grants

    /// The calling member (grants are made by people, as members of the workspace).
    fn granting_member(access: &Access) -> Result<&crate::model::Member, Error> {
        match (&access.actor, &access.member) {
            (Actor::User { .. }, Some(member)) => Ok(member),
            _ => Err(Error::forbidden(
                "forbidden",
                "Only a member of the workspace, logged in, can grant an app",
            )),
        }
    }

    pub async fn create_grant(
        &self,
        access: &Access,
        meta: &RequestMeta,
        client_id: &str,
        scopes: &[String],
        shared: bool,
    ) -> Result<GrantView, Error> {
        let member = Self::granting_member(access)?;
        if shared {
            access.require(SHARE_SCOPES)?;
        }
        if scopes.is_empty() {
            return Err(Error::invalid(
                "scopes",
                "scopes must name at least one scope",
            ));
        }
        let requested = access.catalog.validate(scopes, "scopes")?;
        authz::authorize_grant(
            &access.effective,
            &requested,
            &access.catalog,
            GrantTarget::AppGrant,
        )?;
        let app = match self.store.app_by_client_id(client_id).await? {
            Some(app) => app,
            None => return Err(app_not_found()),
        };
        if !app.active {
            return Err(app_inactive());
        }
        if !app.allows(&access.workspace.id) {
            return Err(workspace_restricted());
        }
        let grant = Grant {
            id: GrantId::new(),
            client_id: app.client_id.clone(),
            workspace_id: access.workspace.id.clone(),
            member_id: member.id.clone(),
            scopes: requested.names(),
            shared,
            created_at: self.clock.now(),
        };
        let entry = Self::audit_entry(
            &access.actor,
            meta,
            Some(access.workspace.id.clone()),
            "grant.create",
            grant.id.to_string(),
            grant.created_at,
        )
        .with_event(OutboxEvent::new(
            "grant.created",
            grant_event(&grant),
            access.workspace.id.clone(),
        ));
        match self.store.insert_grant(&grant, &entry).await {
            Ok(()) => {}
            Err(StoreError::Conflict(what)) if what.ends_with("grant") => {
                return Err(Error::conflict(
                    "grant_exists",
                    if shared {
                        "This app already has a shared grant in this workspace; revoke it first"
                    } else {
                        "You have already granted this app; revoke that grant first"
                    },
                ));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(GrantView {
            grant,
            app_name: app.name,
        })
    }

    /// Everything with `apps:read`; otherwise the caller's own grants.
    pub async fn list_grants(
        &self,
        access: &Access,
        client_id: Option<String>,
        page: &Page,
    ) -> Result<Vec<GrantView>, Error> {
        let member_id = if access.effective.covers(&["apps:read"]) {
            None
        } else {
            match &access.member {
                Some(m) => Some(m.id.clone()),
                None => {
                    return Err(authz::insufficient_scope(vec!["apps:read".into()]));
                }
            }
        };
        let filter = GrantFilter {
            member_id,
            client_id,
        };
        Ok(self
            .store
            .list_grants(&access.workspace.id, &filter, page)
            .await?)
    }

    /// Revokes a grant: its tokens stop at once. The grant's own member may always; others need
    /// `apps:write` (and `workspace:write` for a shared grant).
    pub async fn revoke_grant(
        &self,
        access: &Access,
        meta: &RequestMeta,
        grant_id: &str,
    ) -> Result<(), Error> {
        let id = GrantId::parse(grant_id).ok_or_else(grant_not_found)?;
        let view = match self.store.grant_by_id(&id).await? {
            Some(v) if v.grant.workspace_id == access.workspace.id => v,
            _ => return Err(grant_not_found()),
        };
        if !is_own(access, &view.grant) {
            // Someone who cannot list the grant does not learn that it exists.
            if !access.effective.covers(&["apps:read"]) {
                return Err(grant_not_found());
            }
            access.require(revoke_scopes(&view.grant))?;
        }
        let entry = Self::audit_entry(
            &access.actor,
            meta,
            Some(access.workspace.id.clone()),
            "grant.revoke",
            id.to_string(),
            self.clock.now(),
        )
        .with_event(OutboxEvent::new(
            "grant.revoked",
            grant_event(&view.grant),
            access.workspace.id.clone(),
        ));
        if !self
            .store
            .delete_grant(&access.workspace.id, &id, &entry)
            .await?
        {
            return Err(grant_not_found());
        }
        Ok(())
    }

    // ---- tokens

    /// Checks the client credentials, in constant time for a known app.
    async fn authenticate_client(&self, client_id: &str, secret: &str) -> Result<App, Error> {
        if !client_id.starts_with(CLIENT_ID_PREFIX) || client_id.len() > 64 {
            return Err(invalid_client());
        }
        let app = self
            .store
            .app_by_client_id(client_id)
            .await?
            .ok_or_else(invalid_client)?;
        if app.kind == AppKind::Public {
            // It has no secret to present: its tokens come from the authorization code flow.
            return Err(invalid_client());
        }
        let stored = seal::open(&self.master, SECRET_PURPOSE, &app.sealed_secret)
            .map_err(|_| Error::Internal(format!("app {client_id}: secret cannot be opened")))?;
        let presented = b64url_decode(secret.trim_end_matches('=')).unwrap_or_default();
        if !ct_eq(&presented, &stored) {
            return Err(invalid_client());
        }
        Ok(app)
    }

    /// Makes a 5-minute token for one of the app's grants.
    pub async fn issue_token(
        &self,
        client_id: &str,
        secret: &str,
        grant_id: &str,
    ) -> Result<IssuedToken, Error> {
        let app = self.authenticate_client(client_id, secret).await?;
        if !app.active {
            return Err(app_inactive());
        }
        let id = GrantId::parse(grant_id).ok_or_else(grant_not_found)?;
        let grant = match self.store.grant_by_id(&id).await? {
            Some(v) if v.grant.client_id == app.client_id => v.grant,
            _ => return Err(grant_not_found()),
        };
        if !app.allows(&grant.workspace_id) {
            return Err(workspace_restricted());
        }
        let workspace = self
            .store
            .workspace_by_id(&grant.workspace_id)
            .await?
            .ok_or_else(grant_not_found)?;
        if workspace.status == WorkspaceStatus::Suspended {
            return Err(tenant_suspended());
        }
        let (api_token, exp) = self.inner_token(&app, &grant, None)?;
        let secret_bytes = seal::open(&self.master, SECRET_PURPOSE, &app.sealed_secret)
            .map_err(|_| Error::Internal(format!("app {client_id}: secret cannot be opened")))?;
        let outer = tokens::seal_outer(
            &secret_bytes,
            &OuterClaims {
                api_token,
                grant_id: grant.id.to_string(),
                workspace_id: grant.workspace_id.to_string(),
                member_id: grant.member_id.to_string(),
                scopes: grant.scopes.clone(),
                exp,
            },
        )?;
        Ok(IssuedToken {
            token: Secret::new(format!("{}:{outer}", app.client_id)),
            expires_in: TOKEN_TTL_SECS,
        })
    }

    /// An inner token for `grant` of `app`, [`TOKEN_TTL_SECS`] long, for `audience` (`None`:
    /// the API); and its expiry (Unix seconds).
    fn inner_token(
        &self,
        app: &App,
        grant: &Grant,
        audience: Option<&str>,
    ) -> Result<(String, i64), Error> {
        let now = self.clock.now().millis() / 1000;
        let exp = now + TOKEN_TTL_SECS;
        let token = self.token_keys.seal_inner(&InnerClaims {
            gid: grant.id.to_string(),
            cid: app.client_id.clone(),
            ws: grant.workspace_id.to_string(),
            mid: grant.member_id.to_string(),
            sgen: app.secret_generation,
            iat: now,
            exp,
            aud: audience.map(str::to_owned),
        })?;
        Ok((token, exp))
    }

    /// Opens an inner token and checks it against the store: the grant exists and matches, the
    /// app is active and allows the workspace, its secret generation is the token's, and the
    /// token has not expired, and its audience is `audience` (`None`: the API). Any failure is
    /// 401 `invalid_token`.
    pub async fn authenticate(
        &self,
        api_token: &str,
        audience: Option<&str>,
    ) -> Result<AppSession, Error> {
        let claims = match self.token_keys.open_inner(api_token)? {
            Some(c) => c,
            None => {
                // Another node may have made a new key.
                self.key_reloads
                    .reload(self.clock.now(), async || self.refresh_keys().await)
                    .await?;
                self.token_keys
                    .open_inner(api_token)?
                    .ok_or_else(Error::invalid_token)?
            }
        };
        if claims.exp <= self.clock.now().millis() / 1000 || claims.aud.as_deref() != audience {
            return Err(Error::invalid_token());
        }
        let id = GrantId::parse(&claims.gid).ok_or_else(Error::invalid_token)?;
        let grant = self
            .store
            .grant_by_id(&id)
            .await?
            .ok_or_else(Error::invalid_token)?
            .grant;
        if grant.client_id != claims.cid
            || grant.workspace_id.as_str() != claims.ws
            || grant.member_id.as_str() != claims.mid
        {
            return Err(Error::invalid_token());
        }
        let app = self
            .store
            .app_by_client_id(&grant.client_id)
            .await?
            .ok_or_else(Error::invalid_token)?;
        if !app.active || app.secret_generation != claims.sgen || !app.allows(&grant.workspace_id) {
            return Err(Error::invalid_token());
        }
        let scopes = ScopeSet::parse(&grant.scopes, "scopes").unwrap_or_default();
        Ok(AppSession {
            client_id: grant.client_id,
            grant_id: grant.id,
            workspace_id: grant.workspace_id,
            member_id: grant.member_id,
            scopes,
        })
    }
}

/// What making a shared grant (and revoking one made by someone else) needs.
pub const SHARE_SCOPES: &[&str] = &["apps:write", "workspace:write"];

/// Whether the grant is the caller's own (a person, the grant's member).
fn is_own(access: &Access, grant: &Grant) -> bool {
    matches!(access.actor, Actor::User { .. })
        && access
            .member
            .as_ref()
            .is_some_and(|m| m.id == grant.member_id)
}

/// What revoking someone else's grant needs (besides seeing it, `apps:read`).
fn revoke_scopes(grant: &Grant) -> &'static [&'static str] {
    if grant.shared {
        SHARE_SCOPES
    } else {
        &["apps:write"]
    }
}

/// Whether [`Apps::revoke_grant`] would let the caller revoke `grant` (for a page that shows a
/// button only where it works; the use case decides anyway).
pub fn may_revoke(access: &Access, grant: &Grant) -> bool {
    is_own(access, grant)
        || (access.effective.covers(&["apps:read"])
            && access.effective.covers(revoke_scopes(grant)))
}

/// Whether the caller may make shared grants ([`SHARE_SCOPES`]).
pub fn may_share(access: &Access) -> bool {
    access.effective.covers(SHARE_SCOPES)
}

fn grant_event(g: &Grant) -> serde_json::Value {
    json!({
        "id": g.id.to_string(),
        "client_id": g.client_id,
        "member_id": g.member_id.to_string(),
        "scopes": g.scopes,
        "shared": g.shared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_have_the_documented_shape() {
        let a = new_client_id();
        let b = new_client_id();
        assert_ne!(a, b);
        let body = a.strip_prefix("kr_app_").unwrap();
        assert_eq!(body.len(), 24);
        assert!(
            body.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn secrets_are_16_bytes_of_base64url() {
        let (raw, shown) = new_secret();
        assert_eq!(shown.expose().len(), 22);
        assert_eq!(b64url_decode(shown.expose()).unwrap(), raw.to_vec());
    }

    #[test]
    fn websites_and_restrictions_are_checked() {
        assert_eq!(clean_website(None).unwrap(), None);
        assert_eq!(clean_website(Some("  ")).unwrap(), None);
        assert_eq!(
            clean_website(Some("https://example.com/x")).unwrap(),
            Some("https://example.com/x".into())
        );
        for bad in [
            "example.com",
            "ftp://x",
            "https://",
            "https://a b",
            "javascript:alert(1)",
        ] {
            assert!(clean_website(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(clean_restrictions(None).unwrap(), None);
        assert!(clean_restrictions(Some(vec![])).is_err());
        assert!(clean_restrictions(Some(vec!["nope".into()])).is_err());
        let ws = WorkspaceId::new();
        assert_eq!(
            clean_restrictions(Some(vec![ws.to_string(), ws.to_string()])).unwrap(),
            Some(vec![ws])
        );
    }
}
