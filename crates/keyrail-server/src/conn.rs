//! Accepting connections, plain or TLS, under limits that keep unauthenticated clients from
//! exhausting the server (slowloris, descriptor exhaustion):
//!
//! - a connection must send a complete first request (TLS handshake included) within
//!   `header_read_timeout`, and each later request head on a kept-alive HTTP/1 connection too;
//! - at most `max_connections` are open, and at most `max_connections_per_ip` from one client
//!   address (an IPv6 /64 counts as one; `trusted_proxies` are exempt from this one). When a cap
//!   is reached, the oldest connection that has not yet sent a complete request ("pending") is
//!   closed to make room, from that address for the per-address cap; if there is none, the new
//!   connection is closed at once. A connection that has been served is never closed for room,
//!   so flooding half-open sockets only ever displaces the flood itself;
//! - accept errors (EMFILE, ENFILE, ...) are logged, a pending connection is closed to free a
//!   descriptor, and the loop goes on after a short pause: it never ends on an error.
//!
//! The hot path pays one atomic load per request (is this connection still pending?) beside
//! what hyper and axum do anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::proxies::TrustedProxies;

/// The limits of [`serve`].
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub header_read_timeout: Duration,
    /// Exempt from `max_per_ip`: a reverse proxy carries many clients on its connections.
    pub trusted: TrustedProxies,
}

/// Descriptors kept free for everything but client connections (store, files, logs).
fn reserved_fds(limit: u64) -> u64 {
    (limit / 4).clamp(16, 256)
}

/// `max_connections`, lowered if the process may not open that many descriptors.
pub fn effective_max_connections(configured: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(limit) => {
            let room = limit.saturating_sub(reserved_fds(limit)).max(1);
            configured.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => configured,
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    // An unlimited hard limit is not a valid soft limit for open files (Linux caps it at
    // fs.nr_open, 2^20 by default).
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur < target {
        let wanted = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            lim.rlim_cur = target;
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<u64> {
    None
}

/// Counters shown on `/metrics`.
#[derive(Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Closed at once: a cap was reached and no pending connection could make room.
    pub refused: AtomicU64,
    /// Pending connections closed to make room for newer ones.
    pub evicted: AtomicU64,
    /// Closed because the first request (or TLS handshake) did not arrive in time.
    pub timed_out: AtomicU64,
    pub accept_errors: AtomicU64,
}

impl ConnStats {
    /// The process-wide counters (every server in a process shares them).
    pub fn global() -> &'static ConnStats {
        static S: std::sync::OnceLock<ConnStats> = std::sync::OnceLock::new();
        S.get_or_init(ConnStats::default)
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP keyrail_connections_open Client connections open\n\
             # TYPE keyrail_connections_open gauge\n\
             keyrail_connections_open {}\n\
             # HELP keyrail_connections_accepted_total Client connections accepted\n\
             # TYPE keyrail_connections_accepted_total counter\n\
             keyrail_connections_accepted_total {}\n\
             # HELP keyrail_connections_closed_total Connections the server closed before they \
             were served, by reason\n\
             # TYPE keyrail_connections_closed_total counter\n\
             keyrail_connections_closed_total{{reason=\"refused\"}} {}\n\
             keyrail_connections_closed_total{{reason=\"evicted\"}} {}\n\
             keyrail_connections_closed_total{{reason=\"header_timeout\"}} {}\n\
             # HELP keyrail_accept_errors_total Failed accepts (e.g. out of file descriptors)\n\
             # TYPE keyrail_accept_errors_total counter\n\
             keyrail_accept_errors_total {}\n",
            get(&self.open),
            get(&self.accepted),
            get(&self.refused),
            get(&self.evicted),
            get(&self.timed_out),
            get(&self.accept_errors),
        );
    }
}

const PENDING: u8 = 0;
const ACTIVE: u8 = 1;
const EVICTED: u8 = 2;

/// One open connection's place in the registry.
struct Slot {
    id: u64,
    /// The address the per-address cap counts; `None` when exempt.
    ip: Option<IpAddr>,
    /// PENDING, ACTIVE or EVICTED; changed only under the registry lock.
    state: AtomicU8,
    evicted: Notify,
}

impl Slot {
    fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }
}

#[derive(Default)]
struct PerIp {
    open: usize,
    pending: BTreeSet<u64>,
}

#[derive(Default)]
struct Tally {
    next_id: u64,
    open: usize,
    per_ip: HashMap<IpAddr, PerIp>,
    /// Pending connections by age (ids grow).
    pending: BTreeMap<u64, Arc<Slot>>,
}

impl Tally {
    /// Forgets a connection that is no longer pending (counts only).
    fn forget(&mut self, slot: &Slot) {
        self.open -= 1;
        ConnStats::global().open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = slot.ip
            && let Some(entry) = self.per_ip.get_mut(&ip)
        {
            entry.open -= 1;
            entry.pending.remove(&slot.id);
            if entry.open == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Closes the oldest pending connection (of `ip`, or of anyone); false if there is none.
    fn evict_oldest(&mut self, ip: Option<IpAddr>) -> bool {
        let id = match ip {
            Some(ip) => self
                .per_ip
                .get(&ip)
                .and_then(|e| e.pending.first().copied()),
            None => self.pending.keys().next().copied(),
        };
        let Some(slot) = id.and_then(|id| self.pending.remove(&id)) else {
            return false;
        };
        slot.state.store(EVICTED, Ordering::Release);
        slot.evicted.notify_one();
        self.forget(&slot);
        ConnStats::global().evicted.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The open connections, by address and age.
struct Registry {
    limits: ConnLimits,
    tally: Mutex<Tally>,
}

/// The per-address key: the address itself, an IPv6 /64, IPv4-mapped IPv6 as IPv4.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `peer`, making room if needed; `None`: close it.
    fn admit(&self, peer: IpAddr) -> Option<Arc<Slot>> {
        let exempt = self.limits.trusted.0.iter().any(|n| n.contains(peer));
        let ip = (!exempt).then(|| ip_key(peer));
        let mut t = self.lock();
        if t.open >= self.limits.max_connections && !t.evict_oldest(None) {
            return None;
        }
        if let Some(ip) = ip
            && t.per_ip
                .get(&ip)
                .is_some_and(|e| e.open >= self.limits.max_per_ip)
            && !t.evict_oldest(Some(ip))
        {
            return None;
        }
        let id = t.next_id;
        t.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            ip,
            state: AtomicU8::new(PENDING),
            evicted: Notify::new(),
        });
        t.open += 1;
        ConnStats::global().open.fetch_add(1, Ordering::Relaxed);
        if let Some(ip) = ip {
            let entry = t.per_ip.entry(ip).or_default();
            entry.open += 1;
            entry.pending.insert(id);
        }
        t.pending.insert(id, slot.clone());
        Some(slot)
    }

    /// The connection sent a complete request: it can no longer be closed to make room.
    fn activate(&self, slot: &Slot) {
        let mut t = self.lock();
        if slot.state.load(Ordering::Acquire) != PENDING {
            return;
        }
        slot.state.store(ACTIVE, Ordering::Release);
        t.pending.remove(&slot.id);
        if let Some(entry) = slot.ip.and_then(|ip| t.per_ip.get_mut(&ip)) {
            entry.pending.remove(&slot.id);
        }
    }

    fn release(&self, slot: &Slot) {
        let mut t = self.lock();
        match slot.state.load(Ordering::Acquire) {
            EVICTED => {}
            PENDING => {
                t.pending.remove(&slot.id);
                slot.state.store(EVICTED, Ordering::Release);
                t.forget(slot);
            }
            _ => {
                slot.state.store(EVICTED, Ordering::Release);
                t.forget(slot);
            }
        }
    }
}

/// Gives the connection's place back when its task ends, however it ends.
struct SlotGuard {
    registry: Arc<Registry>,
    slot: Arc<Slot>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.registry.release(&self.slot);
    }
}

/// The router as one connection's hyper service: adds `ConnectInfo` and marks the connection
/// active at its first request.
#[derive(Clone)]
struct ConnService {
    router: Router,
    remote: SocketAddr,
    registry: Arc<Registry>,
    slot: Arc<Slot>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if self.slot.is_pending() {
            self.registry.activate(&self.slot);
        }
        req.extensions_mut().insert(ConnectInfo(self.remote));
        tower::Service::call(&mut self.router.clone(), req)
    }
}

struct Ctx {
    registry: Arc<Registry>,
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    tls: Option<TlsAcceptor>,
}

/// Accepts on `listener` until `stop` fires, then lets the open connections finish (HTTP/1
/// ones close once idle, HTTP/2 ones get a GOAWAY) and returns once they have. Dropping the
/// future closes every connection at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnLimits,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let ctx = Arc::new(Ctx {
        registry: Arc::new(Registry {
            limits,
            tally: Mutex::default(),
        }),
        builder,
        router,
        tls: tls.map(TlsAcceptor::from),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let mut conns = JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let stats = ConnStats::global();
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = ctx.registry.admit(remote.ip()) else {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let guard = SlotGuard { registry: ctx.registry.clone(), slot };
                    conns.spawn(connection(ctx.clone(), tcp, remote, guard, shutdown_rx.clone()));
                }
                Err(e) => accept_failed(e, &ctx.registry, &mut last_warning).await,
            },
        }
    }
    drop(listener);
    let _ = shutdown_tx.send(());
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn accept_failed(e: io::Error, registry: &Registry, last_warning: &mut Option<Instant>) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    ConnStats::global()
        .accept_errors
        .fetch_add(1, Ordering::Relaxed);
    // Out of descriptors (or memory): close the oldest pending connection to free one.
    let freed = registry.lock().evict_oldest(None);
    let now = Instant::now();
    if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
        *last_warning = Some(now);
        tracing::warn!(error = %e, freed_pending = freed, "accept error; going on");
    }
    tokio::time::sleep(Duration::from_millis(if freed { 5 } else { 50 })).await;
}

async fn connection(
    ctx: Arc<Ctx>,
    tcp: TcpStream,
    remote: SocketAddr,
    guard: SlotGuard,
    mut shutdown: watch::Receiver<()>,
) {
    let deadline = Instant::now() + ctx.registry.limits.header_read_timeout;
    let slot = guard.slot.clone();
    match &ctx.tls {
        None => drive(&ctx, tcp, remote, &guard, deadline, shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                r = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => r,
                _ = slot.evicted.notified() => return,
                _ = shutdown.changed() => return,
            };
            match handshake {
                Ok(Ok(stream)) => drive(&ctx, stream, remote, &guard, deadline, shutdown).await,
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => {
                    ConnStats::global()
                        .timed_out
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn drive<I>(
    ctx: &Ctx,
    io: I,
    remote: SocketAddr,
    guard: &SlotGuard,
    first_request_by: Instant,
    mut shutdown: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = &guard.slot;
    let service = ConnService {
        router: ctx.router.clone(),
        remote,
        registry: guard.registry.clone(),
        slot: slot.clone(),
    };
    let conn = ctx
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let first_request = tokio::time::sleep_until(first_request_by);
    tokio::pin!(first_request);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            // Dropping the connection closes it.
            _ = slot.evicted.notified() => return,
            _ = &mut first_request, if slot.is_pending() => {
                if slot.is_pending() {
                    ConnStats::global().timed_out.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, per_ip: usize) -> Registry {
        Registry {
            limits: ConnLimits {
                max_connections: max,
                max_per_ip: per_ip,
                header_read_timeout: Duration::from_secs(10),
                trusted: TrustedProxies::parse(&["10.0.0.1".into()]).unwrap(),
            },
            tally: Mutex::default(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_oldest_pending_connection_of_the_address_makes_room() {
        let r = registry(100, 2);
        let a = r.admit(ip("192.0.2.1")).unwrap();
        let b = r.admit(ip("192.0.2.1")).unwrap();
        r.activate(&a);
        let c = r.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            b.state.load(Ordering::Acquire),
            EVICTED,
            "b was the oldest pending"
        );
        assert_eq!(
            a.state.load(Ordering::Acquire),
            ACTIVE,
            "a served a request"
        );
        // Both remaining ones have been served: nothing can make room.
        r.activate(&c);
        assert!(r.admit(ip("192.0.2.1")).is_none(), "no pending one left");
        // Other addresses are not affected.
        assert!(r.admit(ip("192.0.2.2")).is_some());
        r.release(&a);
        assert!(r.admit(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn the_total_cap_makes_room_from_anyone_and_counts_stay_right() {
        let r = registry(3, 10);
        let slots: Vec<_> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|a| r.admit(ip(a)).unwrap())
            .collect();
        let d = r.admit(ip("192.0.2.4")).unwrap();
        assert_eq!(slots[0].state.load(Ordering::Acquire), EVICTED);
        for s in slots.iter().chain([&d]) {
            r.release(s);
        }
        let t = r.lock();
        assert_eq!(t.open, 0);
        assert!(t.per_ip.is_empty() && t.pending.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_trusted_proxies_are_exempt() {
        let r = registry(100, 1);
        let a = r.admit(ip("2001:db8::1")).unwrap();
        r.activate(&a);
        assert!(r.admit(ip("2001:db8::2")).is_none(), "same /64");
        assert!(r.admit(ip("2001:db8:0:1::1")).is_some(), "another /64");
        let p = r.admit(ip("10.0.0.1")).unwrap();
        r.activate(&p);
        assert!(
            r.admit(ip("10.0.0.1")).is_some(),
            "a trusted proxy is exempt"
        );
        assert_eq!(ip_key(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
    }

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        assert_eq!(effective_max_connections(10_000, None), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1024)), 768);
        assert_eq!(effective_max_connections(10_000, Some(256)), 192);
        assert_eq!(effective_max_connections(10_000, Some(1 << 20)), 10_000);
    }
}
