//! Webhook delivery: a loop that claims due jobs from the outbox (with a lease, so one node
//! delivers each job at a time and a node that dies mid-delivery loses nothing: the lease ends
//! and another claim takes the job), sends them signed per Standard Webhooks with at most
//! [`IN_FLIGHT`] requests at once, and records every attempt; and the `key.expiring` scan.
//!
//! Requests: POST, [`TIMEOUT`], no redirects followed, no proxy, the response body never read.
//! Every connection goes through [`GuardedResolver`], which refuses a name resolving to any
//! forbidden address (see `keyrail_core::webhooks::ssrf`), so a name that re-resolves to a
//! private address after the endpoint was checked still gets nowhere; literal IP hosts are
//! checked before sending. Both are off with `webhooks_allow_private = true`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyrail_core::id::DeliveryId;
use keyrail_core::webhooks::{ClaimedJob, DeliveryAttempt, JobOutcome, outcome_of, sign, ssrf};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::task::{JoinHandle, JoinSet};

use crate::state::AppState;

/// Deliveries in flight at most, per node.
pub const IN_FLIGHT: usize = 16;
/// How long one delivery may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed job is this node's: longer than any delivery can take.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often due jobs are looked for when there was nothing to do.
const POLL: Duration = Duration::from_millis(500);
/// How often keys are checked for `key.expiring`.
const EXPIRING_EVERY: Duration = Duration::from_secs(60);
const EXPIRING_BATCH: u32 = 500;

const FORBIDDEN: &str = "refused: the host resolves to a forbidden address";

/// Resolves names for deliveries and refuses those with any forbidden address.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && found.iter().any(|a| ssrf::is_forbidden(a.ip())) {
                return Err(FORBIDDEN.into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The delivery client: rustls with ring and the Mozilla roots, HTTP/1.1.
pub fn client(allow_private: bool) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .dns_resolver(GuardedResolver { allow_private })
        .user_agent("keyrail-webhooks")
        .build()
        .map_err(|e| e.to_string())
}

/// What went wrong, without the URL (it may carry a token) or anything the peer sent.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains(FORBIDDEN) {
            return FORBIDDEN.to_owned();
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// Whether the URL's host is a literal IP that deliveries must not reach.
fn literal_forbidden(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .is_ok_and(ssrf::is_forbidden)
}

/// One attempt at a claimed job, recorded with its outcome.
pub async fn deliver(state: &AppState, client: &reqwest::Client, job: ClaimedJob) {
    let sent_at = state.clock.now();
    let timestamp = sent_at.millis().div_euclid(1000);
    let (status, error, refused) =
        if !state.config.webhooks_allow_private && literal_forbidden(&job.url) {
            (None, Some(FORBIDDEN.to_owned()), true)
        } else {
            match state.webhooks.signing_keys(&job.workspace_id).await {
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load the webhook secret; will retry");
                    (None, Some("internal error".to_owned()), false)
                }
                Ok(keys) => {
                    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
                    let signature =
                        sign::signature_header(&keys, job.event_id.as_str(), timestamp, &job.body);
                    let sent = client
                        .post(job.url.as_str())
                        .header("content-type", "application/json")
                        .header("webhook-id", job.event_id.as_str())
                        .header("webhook-timestamp", timestamp.to_string())
                        .header("webhook-signature", signature)
                        .body(job.body.clone())
                        .send()
                        .await;
                    // The body is never read: dropping the response closes what is left of it.
                    match sent {
                        Ok(resp) => (Some(resp.status().as_u16()), None, false),
                        Err(e) => (None, Some(describe(&e)), false),
                    }
                }
            }
        };
    let now = state.clock.now();
    let outcome = if refused {
        JobOutcome::GiveUp
    } else {
        outcome_of(
            status,
            job.attempt,
            job.event_at,
            now,
            rand::random_range(0.8..1.2),
        )
    };
    let attempt = DeliveryAttempt {
        id: DeliveryId::new(),
        endpoint_id: job.endpoint_id.clone(),
        event_id: job.event_id.clone(),
        event_type: job.event_type.clone(),
        attempt: job.attempt,
        status_code: status,
        ok: outcome == JobOutcome::Delivered,
        error: match (outcome, error) {
            (JobOutcome::GiveUp, None) => Some("gave up: retried for 24 hours".to_owned()),
            (_, error) => error,
        },
        next_attempt_at: match outcome {
            JobOutcome::Retry(at) => Some(at),
            _ => None,
        },
        at: now,
    };
    tracing::info!(
        webhook_id = %job.endpoint_id,
        message_id = %job.event_id,
        event = %job.event_type,
        attempt = job.attempt,
        status = ?status,
        outcome = ?outcome,
        "webhook delivery"
    );
    if let Err(e) = state
        .store
        .finish_webhook_job(&job, &attempt, outcome)
        .await
    {
        // The lease ends and the job is claimed again: delivered twice rather than never.
        tracing::warn!(error = %e, "cannot record a webhook delivery");
    }
}

/// Claims what is due (as many as there is room for) and delivers it; sleeps [`POLL`] when
/// there was less than room for.
async fn run(state: AppState, client: reqwest::Client) {
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let room = IN_FLIGHT.saturating_sub(running.len());
        if room == 0 {
            let _ = running.join_next().await;
            continue;
        }
        let now = state.clock.now();
        let lease_until = now.plus_secs(LEASE.as_secs() as i64);
        let claim = keyrail_core::id::new_body();
        let jobs = match state
            .store
            .claim_webhook_jobs(now, lease_until, room as u32, &claim)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries");
                Vec::new()
            }
        };
        let full = jobs.len() >= room;
        for job in jobs {
            let (state, client) = (state.clone(), client.clone());
            running.spawn(async move { deliver(&state, &client, job).await });
        }
        if !full {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Starts the delivery loop and the `key.expiring` scan. Aborting the loop's task aborts the
/// deliveries it runs (their leases end and other nodes take them).
pub fn spawn(state: AppState) -> Vec<JoinHandle<()>> {
    let client = match client(state.config.webhooks_allow_private) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; no deliveries");
            return Vec::new();
        }
    };
    let deliveries = tokio::spawn(run(state.clone(), client));
    let expiring = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.webhooks.scan_expiring(EXPIRING_BATCH).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "key.expiring events written"),
                Err(e) => tracing::warn!(error = %e, "cannot scan for expiring keys"),
            }
        }
    });
    vec![deliveries, expiring]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that resolves to loopback gets no address at delivery time, whatever it
    /// resolved to when the endpoint was made (DNS rebinding); allowed when configured.
    #[tokio::test]
    async fn the_resolver_refuses_forbidden_addresses() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let refused = guarded.resolve(name).await;
        assert_eq!(refused.err().unwrap().to_string(), FORBIDDEN);
        let open = GuardedResolver {
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn literal_addresses_are_checked_before_sending() {
        for url in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/x",
            "http://169.254.169.254/latest",
            "http://[::ffff:10.0.0.1]/",
            "http://2130706433/",
        ] {
            assert!(literal_forbidden(url), "{url}");
        }
        for url in [
            "https://8.8.8.8/x",
            "https://hooks.example.com/x",
            "not a url",
        ] {
            assert!(!literal_forbidden(url), "{url}");
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/\r\n\
                      Content-Length: 0\r\n\r\n",
                )
                .await;
        });
        let resp = client(true)
            .unwrap()
            .post(format!("http://{addr}/hook"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 307, "the redirect is the answer");
    }
}
