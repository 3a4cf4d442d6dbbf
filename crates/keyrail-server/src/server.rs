//! Starting and stopping a server: data directory, master key, store, router, listener (plain
//! HTTP or TLS), graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use keyrail_core::apps::Apps;
use keyrail_core::identity::{Identity, IdentityConfig, Keyring, SessionRevocations};
use keyrail_core::keys::manage::Keys;
use keyrail_core::keys::verify::KeyVerifier;
use keyrail_core::platform::Admin;
use keyrail_core::ratelimit::{FailurePolicy, RateLimiter};
use keyrail_core::webhooks::Webhooks;
use keyrail_core::workspaces::Workspaces;
use keyrail_core::{Clock, StoreError, SystemClock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::limiter::{FailureTracker, MemoryLimiter};
use crate::mailer::QueuedMailer;
use crate::redis_limits::{RedisLimiter, SharedFailures, SharedLimiter};
use crate::state::{AppState, Docs, Inner};
use crate::{app, background, bootstrap};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// What tests and embedders may change about a start.
pub struct StartOptions {
    pub clock: Arc<dyn Clock>,
    /// Routes merged beside the server's own, under the same middleware.
    pub extra_routes: Option<Router<AppState>>,
    /// How often the change log is polled besides the store's announcements (default 1 s).
    pub change_poll: Duration,
    /// How often the signing keys are reloaded, and rotated when due (default 1 min).
    pub keys_refresh: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            extra_routes: None,
            change_poll: background::POLL_EVERY,
            keys_refresh: background::KEYS_EVERY,
        }
    }
}

/// Prepares everything short of listening: used by `serve` and by commands that need the store.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, StartError> {
    config.validate().map_err(StartError::Config)?;
    bootstrap::ensure_data_dir(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let master_key =
        Arc::new(bootstrap::load_or_create_master_key(&config).map_err(StartError::MasterKey)?);
    let store = keyrail_store::open(&config.database_url, &config.data_dir).await?;
    let memory_limiter = Arc::new(MemoryLimiter::new());
    let shared = if config.redis_url.is_empty() {
        None
    } else {
        let redis = RedisLimiter::new(&config.redis_url, &config.redis_ca_file)
            .map_err(StartError::Config)?;
        Some(Arc::new(SharedLimiter::new(
            redis,
            memory_limiter.clone(),
            config.limits.on_redis_error,
        )))
    };
    let limiter: Arc<dyn RateLimiter> = match &shared {
        Some(s) => s.clone(),
        None => memory_limiter.clone(),
    };
    let failures = Arc::new(FailureTracker::new(FailurePolicy {
        failures: config.limits.failed_auth_per_ip,
        block: config.limits.failed_auth_block,
    }));
    let mailer = QueuedMailer::start(&config.smtp_url, &config.mail_from, config.dev)
        .map_err(StartError::Config)?;
    let identity_config = IdentityConfig::new(
        config.public_url.as_str(),
        config.limits.account_lock_after,
        config.limits.account_lock_for,
        config.limits.mfa_per_user,
    );
    let keyring = Keyring::empty(identity_config.access_ttl_secs);
    keyring
        .refresh(store.as_ref(), &master_key, clock.now())
        .await
        .map_err(|e| match e {
            keyrail_core::Error::Unavailable => {
                StartError::Store(StoreError::Unavailable("loading signing keys".into()))
            }
            other => StartError::MasterKey(other.to_string()),
        })?;
    let identity = Arc::new(Identity {
        store: store.clone(),
        clock: clock.clone(),
        master: master_key.clone(),
        keyring,
        revocations: SessionRevocations::default(),
        limiter: limiter.clone(),
        mailer: Arc::new(mailer),
        config: identity_config,
        hashers: keyrail_core::identity::Hashers::for_this_machine(),
    });
    let verifier = Arc::new(KeyVerifier::new(
        store.clone(),
        clock.clone(),
        limiter.clone(),
    ));
    verifier.set_outage_grace(config.store_outage_grace);
    verifier.reload_formats().await.map_err(|e| match e {
        keyrail_core::Error::Unavailable => {
            StartError::Store(StoreError::Unavailable("loading key formats".into()))
        }
        other => StartError::Config(other.to_string()),
    })?;
    let workspaces = Workspaces {
        store: store.clone(),
        clock: clock.clone(),
        verifier: verifier.clone(),
    };
    let admin = Admin {
        store: store.clone(),
        clock: clock.clone(),
        verifier: verifier.clone(),
    };
    let keys = Keys {
        store: store.clone(),
        clock: clock.clone(),
        master: master_key.clone(),
        verifier: verifier.clone(),
    };
    let apps = Apps::new(store.clone(), clock.clone(), master_key.clone());
    let webhooks = Webhooks {
        store: store.clone(),
        clock: clock.clone(),
        master: master_key.clone(),
        allow_private: config.webhooks_allow_private,
    };
    apps.refresh_keys().await.map_err(|e| match e {
        keyrail_core::Error::Unavailable => {
            StartError::Store(StoreError::Unavailable("loading app token keys".into()))
        }
        other => StartError::MasterKey(other.to_string()),
    })?;
    let request_log = Arc::new(crate::request_log::RequestLog::new(
        config.api_logs,
        crate::request_log::CAPACITY,
        clock.clone(),
    ));
    Ok(AppState::new(Inner {
        request_log,
        workspaces,
        admin,
        verifier,
        keys,
        apps,
        webhooks,
        config,
        store,
        clock,
        master_key,
        identity,
        limiter,
        memory_limiter,
        shared_failures: shared
            .as_ref()
            .map(|s| Arc::new(SharedFailures::new(s.clone(), failures.clone()))),
        shared_limiter: shared,
        failures,
        docs: OnceLock::new(),
        changes_applied: std::sync::atomic::AtomicI64::new(0),
    }))
}

/// A server accepting connections in the background.
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    grace: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    log_writer: Option<crate::request_log::Writer>,
    pub state: AppState,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or https), for clients.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting, lets requests in flight finish (up to `shutdown_grace`), then returns.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = match tokio::time::timeout(self.grace + Duration::from_secs(1), &mut self.task)
            .await
        {
            Ok(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!("requests still running after the shutdown grace period; closing");
                self.task.abort();
                Ok(())
            }
        };
        for t in &self.tasks {
            t.abort();
        }
        background::flush_last_used(&self.state).await;
        if let Some(writer) = self.log_writer.take() {
            writer.flush_and_stop().await;
        }
        self.state.store.close().await;
        result
    }
}

/// Builds the state, binds `config.listen` and serves in the background.
pub async fn start(config: Config, options: StartOptions) -> Result<RunningServer, StartError> {
    let started = std::time::Instant::now();
    config.validate().map_err(StartError::Config)?;
    let listen = config.listen;
    let grace = Duration::from_secs(config.shutdown_grace.secs());
    let timeout = Duration::from_secs(config.request_timeout.secs());
    let tls = if config.tls_enabled() {
        Some(crate::tls::load(&config.tls_cert, &config.tls_key).map_err(StartError::Tls)?)
    } else {
        None
    };
    let state = build_state(config, options.clock).await?;
    let seq = background::warm_up(&state).await?;
    let mut tasks = background::spawn(
        state.clone(),
        seq,
        options.change_poll,
        options.keys_refresh,
    );
    tasks.extend(crate::webhooks_worker::spawn(state.clone()));
    let log_writer = crate::request_log::spawn_writer(
        state.request_log.clone(),
        crate::request_log::Target::for_config(&state.config, &state.store),
    );
    let (mut routes, openapi) = app::routes(&state);
    let spec = serde_json::to_value(&openapi).map_err(|e| StartError::Config(e.to_string()))?;
    let _ = state.docs.set(Docs {
        openapi_json: Bytes::from(serde_json::to_vec(&spec).unwrap_or_default()),
    });
    if let Some(extra) = options.extra_routes {
        routes = routes.merge(extra);
    }
    let router = app::finish(routes, state.clone(), timeout);
    let fd_limit = crate::conn::raise_fd_limit();
    let limits = crate::conn::ConnLimits {
        max_connections: crate::conn::effective_max_connections(
            state.config.max_connections,
            fd_limit,
        ),
        max_per_ip: state.config.max_connections_per_ip,
        header_read_timeout: Duration::from_secs(state.config.header_read_timeout.secs()),
        trusted: crate::proxies::TrustedProxies::parse(&state.config.trusted_proxies)
            .unwrap_or_default(),
    };
    if limits.max_connections < state.config.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            configured = state.config.max_connections,
            open_files_limit = fd_limit,
            "max_connections lowered to fit the open-files limit (raise it with ulimit -n)"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let tls_enabled = tls.is_some();
    let max_connections = limits.max_connections;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::conn::serve(listener, router, tls, limits, rx));
    tracing::info!(
        %addr,
        tls = tls_enabled,
        store = state.store.backend(),
        max_connections,
        open_files_limit = fd_limit,
        startup_ms = started.elapsed().as_millis() as u64,
        "keyrail listening"
    );
    Ok(RunningServer {
        addr,
        tls: tls_enabled,
        grace,
        stop: Some(tx),
        task,
        tasks,
        log_writer,
        state,
    })
}
