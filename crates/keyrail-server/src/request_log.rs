//! The API request log, written off the request path (API.md "Audit, logs, export").
//!
//! The request middleware ([`crate::observe`]) runs each `/api/v1/*` request inside a
//! task-local slot; authentication ([`crate::auth::authenticate`]) and verify put who the caller
//! is into it ([`note`]): no allocation, no lock, and nothing at all when the log is off. After
//! the response, the middleware pushes a small [`Record`] into a bounded channel with `try_send`
//! ([`RequestLog::push`]); when the channel is full the record is dropped and counted
//! (`keyrail_api_log_dropped_total`), so a request never waits for the log. One writer task
//! ([`spawn_writer`]) wakes every [`FLUSH_EVERY`] and drains the channel in batches of up to
//! [`BATCH`] rows, one transaction each, and writes what is left when the server stops.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method};
use keyrail_core::id::{GrantId, UserId, WorkspaceId};
use keyrail_core::keys::verify::CachedKey;
use keyrail_core::model::ActorType;
use keyrail_core::request_log::{LoggedPrincipal, RequestLogEntry, USER_AGENT_MAX};
use keyrail_core::{Clock, Store, Timestamp};
use tokio::sync::{mpsc, oneshot};

/// Records waiting for the writer at most; beyond, records are dropped and counted.
pub const CAPACITY: usize = 16_384;
/// Rows per write at most.
pub const BATCH: usize = 500;
/// How often the writer wakes to write what came in (in batches of [`BATCH`]).
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How long a stopping server waits for the last rows to be written.
const FLUSH_ON_STOP: Duration = Duration::from_secs(5);

/// Who made a request, as authentication found it.
#[derive(Debug, Clone)]
pub enum Who {
    /// An API key (also the key verify checked): its id and workspace.
    Key(Arc<CachedKey>),
    /// A person; the workspace is the one of the route (`/api/v1/w/{workspace_id}/...`).
    User(UserId),
    /// An app's grant in a workspace.
    App {
        grant: GrantId,
        workspace: WorkspaceId,
    },
}

tokio::task_local! {
    static SLOT: Cell<Option<Who>>;
}

/// Tells the request log who the current request's principal is; a no-op outside a logged
/// request (the log is off, or the route is not logged). `who` runs only when it is logged.
pub fn note(who: impl FnOnce() -> Who) {
    let _ = SLOT.try_with(|slot| slot.set(Some(who())));
}

/// Runs `fut` with an empty slot for [`note`]; gives its output and what was noted.
pub async fn scoped<F: Future>(fut: F) -> (F::Output, Option<Who>) {
    SLOT.scope(Cell::new(None), async move {
        let out = fut.await;
        (out, SLOT.with(Cell::take))
    })
    .await
}

/// One request, as the middleware hands it over: what it already holds, cheap to move.
pub struct Record {
    pub at: Timestamp,
    pub method: Method,
    pub route: MatchedPath,
    pub status: u16,
    pub latency_us: u64,
    pub who: Option<Who>,
    /// For a person's request: the workspace of its route.
    pub route_workspace: Option<WorkspaceId>,
    pub ip: IpAddr,
    pub user_agent: Option<Box<str>>,
    pub request_id: HeaderValue,
}

impl Record {
    fn into_entry(self) -> RequestLogEntry {
        let (principal, workspace_id) = match self.who {
            None => (None, None),
            Some(Who::Key(k)) => (
                Some(LoggedPrincipal {
                    kind: ActorType::Key,
                    id: k.key.id.to_string(),
                }),
                Some(k.key.workspace_id.to_string()),
            ),
            Some(Who::User(id)) => (
                Some(LoggedPrincipal {
                    kind: ActorType::User,
                    id: id.to_string(),
                }),
                self.route_workspace.map(|w| w.to_string()),
            ),
            Some(Who::App { grant, workspace }) => (
                Some(LoggedPrincipal {
                    kind: ActorType::App,
                    id: grant.to_string(),
                }),
                Some(workspace.to_string()),
            ),
        };
        RequestLogEntry {
            at: self.at,
            method: self.method.as_str().to_owned(),
            route: self.route.as_str().to_owned(),
            status: self.status,
            latency_us: i64::try_from(self.latency_us).unwrap_or(i64::MAX),
            principal,
            workspace_id,
            ip: Some(self.ip.to_string()),
            user_agent: self.user_agent.map(String::from),
            request_id: String::from_utf8_lossy(self.request_id.as_bytes()).into_owned(),
        }
    }
}

/// A user agent as logged: at most [`USER_AGENT_MAX`] characters, control characters gone.
pub fn user_agent(value: &HeaderValue) -> Box<str> {
    String::from_utf8_lossy(value.as_bytes())
        .chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_MAX)
        .collect()
}

/// Whether requests to `route` (a template) go to the log: the API (with `/mcp` and the OAuth
/// server's endpoints), not its document nor the console's pages.
pub fn logged_route(route: &str) -> bool {
    (route.starts_with("/api/v1/") && route != "/api/v1/openapi.json")
        // What AI clients do through MCP, and the OAuth server's API (not its consent page).
        || route == crate::mcp::PATH
        || matches!(route, "/oauth/register" | "/oauth/token" | "/oauth/revoke")
}

/// The request log's sending side, shared by the middleware of one server.
pub struct RequestLog {
    tx: Option<mpsc::Sender<Record>>,
    rx: Mutex<Option<mpsc::Receiver<Record>>>,
    dropped: AtomicU64,
    pub clock: Arc<dyn Clock>,
}

impl RequestLog {
    /// A log with a channel of `capacity` records; `enabled: false` records nothing.
    pub fn new(enabled: bool, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = if enabled {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Self {
            tx,
            rx: Mutex::new(rx),
            dropped: AtomicU64::new(0),
            clock,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands a record to the writer without waiting: when the channel is full (or the writer
    /// is gone), drops it and counts it. Says whether it was taken.
    pub fn push(&self, record: Record) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        match tx.try_send(record) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records lost: dropped with the channel full, or in a batch the store refused.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The Prometheus text of the counter.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP keyrail_api_log_dropped_total API request log records lost: the queue to the writer was full, or the store refused a batch\n");
        out.push_str("# TYPE keyrail_api_log_dropped_total counter\n");
        let _ = writeln!(out, "keyrail_api_log_dropped_total {}", self.dropped());
    }
}

/// The running writer: stop it with [`Writer::flush_and_stop`].
pub struct Writer {
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

impl Writer {
    /// Writes what is queued, then ends (waits at most a few seconds).
    pub async fn flush_and_stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(FLUSH_ON_STOP, self.done)
            .await
            .is_err()
        {
            tracing::warn!("request log: last rows not written in time; dropped");
        }
    }
}

/// Where the writer writes: the server's own store, or a store of its own that it opens.
pub enum Target {
    /// The server's store, written from the server's runtime (an in-memory SQLite database
    /// exists only in the server's own pool).
    Shared(Arc<dyn Store>),
    /// A pool of its own on this database, opened and used on the writer's own thread, which
    /// runs at the lowest CPU priority (Linux): when the CPU is busy the requests go first and
    /// the log waits (its queue full, records are dropped and counted); spare CPU writes it.
    /// SQLite's connection threads, started from that thread, inherit its priority.
    Dedicated {
        database_url: String,
        data_dir: std::path::PathBuf,
    },
}

impl Target {
    /// The dedicated target unless the database is an in-memory SQLite one.
    pub fn for_config(config: &crate::config::Config, store: &Arc<dyn Store>) -> Self {
        let url = config.database_url.trim();
        if url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory")) {
            Self::Shared(store.clone())
        } else {
            Self::Dedicated {
                database_url: config.database_url.clone(),
                data_dir: config.data_dir.clone(),
            }
        }
    }
}

/// Starts the writer of `log` (once; `None` when the log is off or already has one).
pub fn spawn_writer(log: Arc<RequestLog>, target: Target) -> Option<Writer> {
    let rx = log.rx.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let (stop, stopped) = oneshot::channel();
    let (finished, done) = oneshot::channel();
    match target {
        Target::Shared(store) => {
            tokio::spawn(async move {
                write_loop(log, store, rx, stopped).await;
                let _ = finished.send(());
            });
        }
        Target::Dedicated {
            database_url,
            data_dir,
        } => {
            let spawned = std::thread::Builder::new()
                .name("keyrail-api-log".into())
                .spawn(move || {
                    lowest_priority();
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "request log: cannot start its writer; nothing will be written");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let store = match keyrail_store::open(&database_url, &data_dir).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::error!(error = %e, "request log: cannot open the store; nothing will be written");
                                return;
                            }
                        };
                        write_loop(log, store.clone(), rx, stopped).await;
                        store.close().await;
                        let _ = finished.send(());
                    });
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "request log: cannot start its writer; nothing will be written");
            }
        }
    }
    Some(Writer { stop, done })
}

/// Puts the calling thread (only it: Linux priorities are per thread) at nice 19.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their integer arguments.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

async fn write_loop(
    log: Arc<RequestLog>,
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Record>,
    mut stop: oneshot::Receiver<()>,
) {
    // The writer wakes on a timer, never on a record: a record sent while it sleeps wakes no
    // task, so the requests' worker is not interrupted once per request to hand over one row.
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            biased;
            _ = &mut stop => true,
            _ = tick.tick() => false,
        };
        if stopping {
            // What is queued now is the last of it.
            rx.close();
        }
        // Full batches while there are; then back to sleep.
        loop {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let full = batch.len() >= BATCH;
            write(&log, store.as_ref(), &mut batch).await;
            if !full {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

async fn write(log: &RequestLog, store: &dyn Store, batch: &mut Vec<Record>) {
    if batch.is_empty() {
        return;
    }
    let entries: Vec<RequestLogEntry> = batch.drain(..).map(Record::into_entry).collect();
    if let Err(e) = store.insert_request_logs(&entries).await {
        log.dropped
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        tracing::warn!(error = %e, rows = entries.len(), "request log: cannot write a batch; dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrail_core::SystemClock;

    fn record(n: u64) -> Record {
        Record {
            at: Timestamp::from_millis(1),
            method: Method::GET,
            route: dummy_route(),
            status: 200,
            latency_us: n,
            who: None,
            route_workspace: None,
            ip: IpAddr::from([127, 0, 0, 1]),
            user_agent: None,
            request_id: HeaderValue::from_static("rid"),
        }
    }

    /// A `MatchedPath` as axum makes them, through a one-route router.
    fn dummy_route() -> MatchedPath {
        use std::sync::OnceLock;
        static ROUTE: OnceLock<MatchedPath> = OnceLock::new();
        ROUTE
            .get_or_init(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                let app = axum::Router::new().route(
                    "/api/v1/x",
                    axum::routing::get(move |m: MatchedPath| {
                        let _ = tx.send(m);
                        async {}
                    }),
                );
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use tower::ServiceExt;
                    let req = axum::http::Request::get("/api/v1/x")
                        .body(axum::body::Body::empty())
                        .unwrap();
                    app.oneshot(req).await.unwrap();
                });
                rx.recv().unwrap()
            })
            .clone()
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let log = RequestLog::new(true, 2, Arc::new(SystemClock));
        assert!(log.push(record(1)));
        assert!(log.push(record(2)));
        // Full, and nobody drains it: each push returns at once, dropped and counted.
        let started = std::time::Instant::now();
        for i in 0..1000 {
            assert!(!log.push(record(i)));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(log.dropped(), 1000);
        let mut text = String::new();
        log.render(&mut text);
        assert!(
            text.contains("keyrail_api_log_dropped_total 1000"),
            "{text}"
        );
        // What was queued first is still there, in order.
        let mut rx = log.rx.lock().unwrap().take().unwrap();
        assert_eq!(rx.try_recv().unwrap().latency_us, 1);
        assert_eq!(rx.try_recv().unwrap().latency_us, 2);
    }

    #[test]
    fn an_off_log_takes_nothing() {
        let log = RequestLog::new(false, 2, Arc::new(SystemClock));
        assert!(!log.enabled());
        assert!(!log.push(record(1)));
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn note_fills_the_slot_of_its_own_request_only() {
        note(|| unreachable!("outside a logged request nothing is built"));
        let user = UserId::new();
        let ((), who) = scoped(async {
            tokio::task::yield_now().await;
            note(|| Who::User(user.clone()));
        })
        .await;
        assert!(matches!(who, Some(Who::User(u)) if u == user));
        let ((), who) = scoped(async {}).await;
        assert!(who.is_none());
    }

    #[test]
    fn user_agents_are_cut_and_cleaned() {
        let long = "a".repeat(1000);
        assert_eq!(
            user_agent(&HeaderValue::from_str(&long).unwrap()).len(),
            256
        );
        assert_eq!(
            &*user_agent(&HeaderValue::from_static("curl/8.0\t(x)")),
            "curl/8.0(x)"
        );
        assert!(logged_route("/api/v1/keys/verify"));
        assert!(!logged_route("/api/v1/openapi.json"));
        assert!(!logged_route("/healthz"));
        assert!(logged_route("/mcp"));
        assert!(logged_route("/oauth/token"));
        assert!(!logged_route("/oauth/authorize"), "a console page");
        assert!(!logged_route("/metrics"));
    }
}
