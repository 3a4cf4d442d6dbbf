//! Webhooks: a workspace's signing secret and endpoints, the events they receive, and what the
//! delivery worker needs (signing keys, the retry schedule, the `key.expiring` scan). Delivery
//! itself (HTTP) is the server's.

pub mod sign;
pub mod ssrf;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zeroize::Zeroizing;

use crate::audit::{self, RequestMeta};
use crate::clock::Clock;
use crate::crypto::seal;
use crate::error::Error;
use crate::events::{EVENT_TYPES, OutboxEvent};
use crate::id::{DeliveryId, KeyId, MessageId, WebhookId, WorkspaceId};
use crate::model::{AuditEntry, Page};
use crate::secret::{MasterKey, Secret};
use crate::store::Store;
use crate::time::Timestamp;
use crate::workspaces::Access;

const SEAL_PURPOSE: &str = "webhook-secret";
/// Endpoints per workspace at most (a further `POST W/webhooks` answers 409 `webhook_limit`).
pub const MAX_ENDPOINTS: u32 = 20;
/// How long the secret a rotation replaced still signs deliveries (beside the new one).
pub const PREVIOUS_SECRET_SECS: i64 = 86_400;
/// Deliveries are retried until this long after the event.
pub const GIVE_UP_AFTER_SECS: i64 = 86_400;
/// The first retry's base delay; each further one doubles it, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// How long resolving an endpoint's host at creation may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The stages of `key.expiring`: 7 days before expiry, then 1 day before.
pub const EXPIRING_STAGES: [(i32, i64); 2] = [(1, 7), (2, 1)];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: Timestamp,
    /// Set when a delivery was answered 410 Gone: no more deliveries.
    pub disabled_at: Option<Timestamp>,
}

/// A workspace's secret as stored: sealed under the master key.
#[derive(Debug, Clone)]
pub struct StoredWebhookSecret {
    pub sealed: String,
    pub previous_sealed: Option<String>,
    pub previous_until: Option<Timestamp>,
}

/// One attempt to deliver a message to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: DeliveryId,
    pub endpoint_id: WebhookId,
    pub event_id: MessageId,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The endpoint's answer; `None` when none came (timeout, refused connection).
    pub status_code: Option<u16>,
    pub ok: bool,
    /// Why it failed, when no status says it (never a secret).
    pub error: Option<String>,
    /// When the next attempt is due; `None` when there is none (delivered, given up, gone).
    pub next_attempt_at: Option<Timestamp>,
    pub at: Timestamp,
}

/// A job the worker claimed: one message for one endpoint.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub event_id: MessageId,
    pub endpoint_id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub event_type: String,
    /// The body to send, as written with the event.
    pub body: String,
    pub event_at: Timestamp,
    pub url: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The claim's token: the job is this claimer's until its lease ends.
    pub claim: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Delivered,
    Retry(Timestamp),
    GiveUp,
    /// The endpoint answered 410: disable it.
    Gone,
}

/// A key about to expire, for `key.expiring`.
#[derive(Debug, Clone)]
pub struct ExpiringKey {
    pub id: KeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub prefix: String,
    pub expires_at: Timestamp,
}

/// The delay before retry number `failed` (1 after the first failed attempt): 5 s doubled per
/// further failure, at most an hour, times `jitter` (expected in `0.8..1.2`).
pub fn retry_delay(failed: u32, jitter: f64) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    doubled.min(MAX_RETRY_DELAY).mul_f64(jitter.clamp(0.5, 1.5))
}

/// What follows an attempt of a message written at `event_at`, made at `now`, that got
/// `status` (or none).
pub fn outcome_of(
    status: Option<u16>,
    attempt: u32,
    event_at: Timestamp,
    now: Timestamp,
    jitter: f64,
) -> JobOutcome {
    match status {
        Some(s) if (200..300).contains(&s) => JobOutcome::Delivered,
        Some(410) => JobOutcome::Gone,
        _ => {
            let delay = i64::try_from(retry_delay(attempt, jitter).as_millis()).unwrap_or(i64::MAX);
            let next = Timestamp::from_millis(now.millis().saturating_add(delay));
            if next > event_at.plus_secs(GIVE_UP_AFTER_SECS) {
                JobOutcome::GiveUp
            } else {
                JobOutcome::Retry(next)
            }
        }
    }
}

/// Checks an endpoint's event list: 1 to 9 known types, duplicates collapsed, in the list's
/// order.
pub fn check_events(events: &[String]) -> Result<Vec<String>, Error> {
    if events.is_empty() {
        return Err(Error::invalid(
            "events",
            "events must name at least one event",
        ));
    }
    if events.len() > 64 {
        return Err(Error::invalid("events", "events names too many events"));
    }
    if let Some(bad) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        let shown: String = bad.chars().take(64).collect();
        return Err(Error::invalid(
            "events",
            format!(
                "events: unknown event {shown:?}; known: {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    Ok(EVENT_TYPES
        .iter()
        .filter(|t| events.iter().any(|e| e == *t))
        .map(|t| (*t).to_owned())
        .collect())
}

pub struct Webhooks {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: Arc<MasterKey>,
    /// `webhooks_allow_private`: no SSRF guard (tests, closed networks).
    pub allow_private: bool,
}

fn not_found() -> Error {
    Error::NotFound { what: "webhook" }
}

fn url_error(message: impl Into<String>) -> Error {
    Error::invalid("url", message)
}

impl Webhooks {
    fn audit_entry(
        &self,
        access: &Access,
        meta: &RequestMeta,
        action: &str,
        target: Option<String>,
        at: Timestamp,
    ) -> AuditEntry {
        audit::entry(
            at,
            meta,
            Some(access.workspace.id.clone()),
            access.actor.audit_actor(),
            action,
            target,
            true,
        )
    }

    fn open(&self, sealed: &str) -> Result<Secret, Error> {
        let plain = seal::open(&self.master, SEAL_PURPOSE, sealed)
            .map_err(|e| Error::Internal(e.to_string()))?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| Error::Internal("sealed webhook secret is not UTF-8".into()))
    }

    /// The workspace's stored secret, made now if it has none.
    async fn stored_secret(&self, ws: &WorkspaceId) -> Result<StoredWebhookSecret, Error> {
        if let Some(s) = self.store.webhook_secret(ws).await? {
            return Ok(s);
        }
        let fresh = sign::new_secret();
        let sealed = seal::seal(&self.master, SEAL_PURPOSE, fresh.expose().as_bytes());
        self.store
            .init_webhook_secret(ws, &sealed, self.clock.now())
            .await?;
        // Another request may have made one first: read what was kept.
        self.store
            .webhook_secret(ws)
            .await?
            .ok_or_else(|| Error::Internal("webhook secret vanished".into()))
    }

    /// `GET W/webhooks/secret` [webhooks:read].
    pub async fn secret(&self, access: &Access) -> Result<Secret, Error> {
        access.require(&["webhooks:read"])?;
        let stored = self.stored_secret(&access.workspace.id).await?;
        self.open(&stored.sealed)
    }

    /// `POST W/webhooks/secret/rotate` [webhooks:write]: a new secret; for
    /// [`PREVIOUS_SECRET_SECS`] deliveries carry a signature with the old one too.
    pub async fn rotate_secret(
        &self,
        access: &Access,
        meta: &RequestMeta,
    ) -> Result<Secret, Error> {
        access.require(&["webhooks:write"])?;
        let fresh = sign::new_secret();
        let sealed = seal::seal(&self.master, SEAL_PURPOSE, fresh.expose().as_bytes());
        let now = self.clock.now();
        let entry = self.audit_entry(
            access,
            meta,
            "webhook.secret_rotate",
            Some(access.workspace.id.to_string()),
            now,
        );
        self.store
            .rotate_webhook_secret(
                &access.workspace.id,
                &sealed,
                now.plus_secs(PREVIOUS_SECRET_SECS),
                &entry,
            )
            .await?;
        Ok(fresh)
    }

    /// The HMAC keys that sign a delivery now: the current secret's, then the previous one's
    /// while it is still valid.
    pub async fn signing_keys(&self, ws: &WorkspaceId) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        let stored = self.stored_secret(ws).await?;
        let mut keys = Vec::with_capacity(2);
        let bad = || Error::Internal("stored webhook secret is malformed".into());
        keys.push(sign::secret_key(self.open(&stored.sealed)?.expose()).ok_or_else(bad)?);
        if let (Some(prev), Some(until)) = (&stored.previous_sealed, stored.previous_until)
            && until > self.clock.now()
        {
            keys.push(sign::secret_key(self.open(prev)?.expose()).ok_or_else(bad)?);
        }
        Ok(keys)
    }

    /// Refuses a URL whose host is, or resolves to, any forbidden address (unless private
    /// addresses are allowed).
    pub async fn check_url(&self, url: &str) -> Result<(), Error> {
        let parsed = ssrf::parse_url(url).map_err(url_error)?;
        if self.allow_private {
            return Ok(());
        }
        let addrs: Vec<IpAddr> = match &parsed.host {
            ssrf::Host::Ip(ip) => vec![*ip],
            ssrf::Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), parsed.port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                    _ => return Err(url_error("url: the host does not resolve")),
                }
            }
        };
        if addrs.is_empty() {
            return Err(url_error("url: the host does not resolve"));
        }
        if addrs.iter().any(|ip| ssrf::is_forbidden(*ip)) {
            return Err(url_error(
                "url must not point to a private, loopback, link-local or reserved address",
            ));
        }
        Ok(())
    }

    /// `POST W/webhooks` [webhooks:write].
    pub async fn create(
        &self,
        access: &Access,
        meta: &RequestMeta,
        url: &str,
        events: &[String],
    ) -> Result<WebhookEndpoint, Error> {
        access.require(&["webhooks:write"])?;
        let events = check_events(events)?;
        self.check_url(url).await?;
        // The secret exists before the first delivery needs it.
        self.stored_secret(&access.workspace.id).await?;
        let now = self.clock.now();
        let endpoint = WebhookEndpoint {
            id: WebhookId::new(),
            workspace_id: access.workspace.id.clone(),
            url: url.to_owned(),
            events,
            created_at: now,
            disabled_at: None,
        };
        let entry = self.audit_entry(
            access,
            meta,
            "webhook.create",
            Some(endpoint.id.to_string()),
            now,
        );
        if !self
            .store
            .insert_webhook(&endpoint, MAX_ENDPOINTS, &entry)
            .await?
        {
            return Err(Error::conflict(
                "webhook_limit",
                format!("A workspace has at most {MAX_ENDPOINTS} webhook endpoints"),
            ));
        }
        Ok(endpoint)
    }

    /// `GET W/webhooks` [webhooks:read].
    pub async fn list(&self, access: &Access, page: &Page) -> Result<Vec<WebhookEndpoint>, Error> {
        access.require(&["webhooks:read"])?;
        Ok(self.store.list_webhooks(&access.workspace.id, page).await?)
    }

    /// One endpoint of the workspace [webhooks:read] (the console's endpoint page).
    pub async fn get(&self, access: &Access, id: &str) -> Result<WebhookEndpoint, Error> {
        access.require(&["webhooks:read"])?;
        self.find(access, id).await
    }

    async fn find(&self, access: &Access, id: &str) -> Result<WebhookEndpoint, Error> {
        let id = WebhookId::parse(id).ok_or_else(not_found)?;
        self.store
            .webhook_by_id(&access.workspace.id, &id)
            .await?
            .ok_or_else(not_found)
    }

    /// `DELETE W/webhooks/{id}` [webhooks:write].
    pub async fn delete(&self, access: &Access, meta: &RequestMeta, id: &str) -> Result<(), Error> {
        access.require(&["webhooks:write"])?;
        let endpoint = self.find(access, id).await?;
        let entry = self.audit_entry(
            access,
            meta,
            "webhook.delete",
            Some(endpoint.id.to_string()),
            self.clock.now(),
        );
        if !self
            .store
            .delete_webhook(&access.workspace.id, &endpoint.id, &entry)
            .await?
        {
            return Err(not_found());
        }
        Ok(())
    }

    /// `GET W/webhooks/{id}/deliveries` [webhooks:read].
    pub async fn deliveries(
        &self,
        access: &Access,
        id: &str,
        page: &Page,
    ) -> Result<Vec<DeliveryAttempt>, Error> {
        access.require(&["webhooks:read"])?;
        let endpoint = self.find(access, id).await?;
        Ok(self
            .store
            .list_webhook_deliveries(&endpoint.id, page)
            .await?)
    }

    /// Writes `key.expiring` for keys 7 days and 1 day before they expire, once per stage per
    /// key, however many nodes run this at once (the store's conditional update decides).
    /// A key found first within a day of expiring gets only the 1-day event. Returns how many
    /// events were written.
    pub async fn scan_expiring(&self, limit: u32) -> Result<usize, Error> {
        let now = self.clock.now();
        let mut written = 0;
        // The later stage first: a key within a day skips the 7-day event.
        for &(stage, days) in EXPIRING_STAGES.iter().rev() {
            let before = now.plus_secs(days * 86_400);
            for key in self.store.keys_expiring(now, before, stage, limit).await? {
                let event = OutboxEvent::new(
                    "key.expiring",
                    json!({
                        "key_id": key.id,
                        "name": key.name,
                        "prefix": key.prefix,
                        "expires_at": key.expires_at.to_string(),
                        "days": days,
                    }),
                    key.workspace_id.clone(),
                );
                if self
                    .store
                    .mark_key_expiring(&key.id, stage, &event, now)
                    .await?
                {
                    written += 1;
                }
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_first_within_10s() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(5));
        assert!(retry_delay(1, 1.2) <= Duration::from_secs(10));
        assert_eq!(retry_delay(2, 1.0), Duration::from_secs(10));
        assert_eq!(retry_delay(5, 1.0), Duration::from_secs(80));
        assert_eq!(retry_delay(40, 1.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(3, 0.8), Duration::from_secs(16));
    }

    #[test]
    fn outcomes() {
        let t0 = Timestamp::from_millis(1_000_000);
        assert_eq!(outcome_of(Some(204), 1, t0, t0, 1.0), JobOutcome::Delivered);
        assert_eq!(outcome_of(Some(410), 1, t0, t0, 1.0), JobOutcome::Gone);
        assert_eq!(
            outcome_of(Some(500), 1, t0, t0, 1.0),
            JobOutcome::Retry(t0.plus_secs(5))
        );
        assert_eq!(
            outcome_of(None, 2, t0, t0, 1.0),
            JobOutcome::Retry(t0.plus_secs(10))
        );
        assert_eq!(
            outcome_of(Some(301), 9, t0, t0.plus_secs(86_000), 1.0),
            JobOutcome::GiveUp
        );
    }

    #[test]
    fn events_must_be_known_and_some() {
        assert!(check_events(&[]).is_err());
        let e = check_events(&["key.created".into(), "nope".into()]).unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "events"));
        assert_eq!(
            check_events(&[
                "member.added".into(),
                "key.created".into(),
                "key.created".into()
            ])
            .unwrap(),
            ["key.created", "member.added"]
        );
    }
}
