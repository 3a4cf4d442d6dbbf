//! Platform bootstrap: the first superuser and their `admin` workspace (`keyrail init`).

use crate::clock::Clock;
use crate::crypto::{self, token};
use crate::error::Error;
use crate::id::{MemberId, UserId, WorkspaceId};
use crate::identity::normalize_email;
use crate::model::{KeyFormat, Member, User, Workspace, WorkspaceStatus};
use crate::secret::Secret;
use crate::store::Store;

pub const ADMIN_WORKSPACE: &str = "admin";

/// What `init` did.
pub struct InitOutcome {
    pub user: User,
    pub workspace: Workspace,
    /// Set when the password was generated here (shown once).
    pub generated_password: Option<Secret>,
    /// A new `admin:superuser` key in the `admin` workspace (shown once).
    pub api_key: Secret,
    pub created_user: bool,
}

/// Makes `email` a platform superuser with a workspace named `admin` that they own. Idempotent:
/// an existing account is promoted (its password left alone unless one is given), an existing
/// `admin` workspace of theirs is reused.
pub async fn init_superuser(
    store: &dyn Store,
    clock: &dyn Clock,
    email: &str,
    password: Option<Secret>,
) -> Result<InitOutcome, Error> {
    let email = normalize_email(email)
        .ok_or_else(|| Error::invalid("email", "email is not a valid address"))?;
    if let Some(p) = &password {
        crypto::check_password_policy(p.expose(), &[&email])
            .map_err(|e| Error::invalid("password", e.to_string()))?;
    }
    let now = clock.now();
    let (user, generated_password, created_user) = match store.user_by_email(&email).await? {
        Some(mut user) => {
            if let Some(p) = &password {
                let hash = crypto::hash_password(p.expose())
                    .map_err(|e| Error::Internal(e.to_string()))?;
                store.set_password_hash(&user.id, &hash, now).await?;
            }
            if !user.superuser {
                store.set_superuser(&user.id, true, now).await?;
                user.superuser = true;
            }
            (user, None, false)
        }
        None => {
            let (password, generated) = match password {
                Some(p) => (p, None),
                None => {
                    let p = token::random_token(18);
                    (p.clone(), Some(p))
                }
            };
            let hash = crypto::hash_password(password.expose())
                .map_err(|e| Error::Internal(e.to_string()))?;
            let user = User {
                id: UserId::new(),
                email,
                name: "Administrator".into(),
                password_hash: Secret::new(hash),
                mfa_enabled: false,
                superuser: true,
                created_at: now,
                updated_at: now,
            };
            store.insert_user(&user).await?;
            (user, generated, true)
        }
    };
    let existing = store
        .workspaces_of_user(&user.id)
        .await?
        .into_iter()
        .find(|w| w.name == ADMIN_WORKSPACE);
    let workspace = match existing {
        Some(ws) => ws,
        None => {
            let ws = Workspace {
                id: WorkspaceId::new(),
                name: ADMIN_WORKSPACE.into(),
                status: WorkspaceStatus::Active,
                key_format: KeyFormat::default(),
                created_at: now,
                updated_at: now,
            };
            let owner = Member {
                id: MemberId::new(),
                workspace_id: ws.id.clone(),
                user_id: user.id.clone(),
                role: "owner".into(),
                created_at: now,
            };
            store.create_workspace(&ws, &owner).await?;
            ws
        }
    };
    // The platform's own bootstrap key: the one place `admin:superuser` is put on a key.
    let secret = crate::keys::format::generate(&workspace.key_format);
    let key = crate::model::ApiKey {
        id: crate::id::KeyId::new(),
        workspace_id: workspace.id.clone(),
        name: "keyrail init".into(),
        prefix: crate::keys::format::display_prefix(secret.expose()),
        hash: token::sha256_hex(secret.expose().as_bytes()),
        scopes: vec![crate::authz::SUPERUSER.to_owned()],
        created_at: now,
        created_by: Some(user.id.to_string()),
        updated_at: now,
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
    };
    // Made by `keyrail init` from a shell, not by a request: no audit entry (none was ever
    // written for it).
    store.insert_key(&key, None).await?;
    Ok(InitOutcome {
        user,
        workspace,
        generated_password,
        api_key: secret,
        created_user,
    })
}

/// Platform administration: only for holders of `admin:superuser`.
pub struct Admin {
    pub store: std::sync::Arc<dyn Store>,
    pub clock: std::sync::Arc<dyn Clock>,
    pub verifier: std::sync::Arc<crate::keys::verify::KeyVerifier>,
}

fn require_superuser(actor: &crate::workspaces::Actor) -> Result<(), Error> {
    if actor.is_superuser() {
        Ok(())
    } else {
        Err(crate::authz::insufficient_scope(vec![
            crate::authz::SUPERUSER.to_owned(),
        ]))
    }
}

impl Admin {
    pub async fn users(
        &self,
        actor: &crate::workspaces::Actor,
        page: &crate::model::Page,
    ) -> Result<Vec<User>, Error> {
        require_superuser(actor)?;
        Ok(self.store.list_users(page).await?)
    }

    /// Until when a user's sign-in is locked (too many wrong passwords), if it is now.
    pub async fn locked_until(
        &self,
        actor: &crate::workspaces::Actor,
        user: &User,
    ) -> Result<Option<crate::Timestamp>, Error> {
        require_superuser(actor)?;
        let now = self.clock.now();
        Ok(self
            .store
            .login_throttle(&crate::identity::login_throttle_key(&user.email))
            .await?
            .map(|t| t.locked_until)
            .filter(|until| until.millis() > now.millis()))
    }

    /// Every workspace of the platform, whatever its status.
    pub async fn workspaces(
        &self,
        actor: &crate::workspaces::Actor,
        page: &crate::model::Page,
    ) -> Result<Vec<Workspace>, Error> {
        require_superuser(actor)?;
        Ok(self.store.list_workspaces(page).await?)
    }

    /// One workspace, whatever its status.
    pub async fn workspace(
        &self,
        actor: &crate::workspaces::Actor,
        ws_id: &str,
    ) -> Result<Workspace, Error> {
        require_superuser(actor)?;
        let id = WorkspaceId::parse(ws_id).ok_or(Error::NotFound { what: "workspace" })?;
        self.store
            .workspace_by_id(&id)
            .await?
            .ok_or(Error::NotFound { what: "workspace" })
    }

    /// Lifts the login lockout of a user's email.
    pub async fn unlock(
        &self,
        actor: &crate::workspaces::Actor,
        meta: &crate::audit::RequestMeta,
        user_id: &str,
    ) -> Result<User, Error> {
        require_superuser(actor)?;
        let id = UserId::parse(user_id).ok_or(Error::NotFound { what: "user" })?;
        let user = self
            .store
            .user_by_id(&id)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        self.store
            .clear_login_throttle(&crate::identity::login_throttle_key(&user.email))
            .await?;
        let entry = crate::audit::entry(
            self.clock.now(),
            meta,
            None,
            actor.audit_actor(),
            "user.unlock",
            Some(user.id.to_string()),
            true,
        );
        self.store.insert_audit(&entry).await?;
        Ok(user)
    }

    pub async fn set_status(
        &self,
        actor: &crate::workspaces::Actor,
        meta: &crate::audit::RequestMeta,
        ws_id: &str,
        status: WorkspaceStatus,
    ) -> Result<Workspace, Error> {
        require_superuser(actor)?;
        let id = WorkspaceId::parse(ws_id).ok_or(Error::NotFound { what: "workspace" })?;
        let now = self.clock.now();
        let action = match status {
            WorkspaceStatus::Suspended => "workspace.suspend",
            WorkspaceStatus::Active => "workspace.activate",
        };
        let entry = crate::audit::entry(
            now,
            meta,
            Some(id.clone()),
            actor.audit_actor(),
            action,
            Some(id.to_string()),
            true,
        );
        let changed = self
            .store
            .set_workspace_status(&id, status, now, &entry)
            .await;
        // Keys of the workspace answer TENANT_SUSPENDED (or work again) from now on.
        self.verifier.evict_workspace(&id);
        if !changed? {
            return Err(Error::NotFound { what: "workspace" });
        }
        self.store
            .workspace_by_id(&id)
            .await?
            .ok_or(Error::NotFound { what: "workspace" })
    }

    pub async fn audit(
        &self,
        actor: &crate::workspaces::Actor,
        filter: crate::model::AuditFilter,
        page: &crate::model::Page,
    ) -> Result<Vec<crate::model::AuditEntry>, Error> {
        require_superuser(actor)?;
        Ok(self.store.list_audit(&filter, page).await?)
    }
}
