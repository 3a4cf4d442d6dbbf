//! Webhooks: the outbox is written with the change (and not when the change fails), delivery
//! jobs are claimed with a lease, attempts are recorded, a 410 disables, `key.expiring` is
//! marked once per stage, and old attempts go.

use std::collections::HashSet;

use keyrail_core::events::OutboxEvent;
use keyrail_core::id::{DeliveryId, WebhookId};
use keyrail_core::model::{AuditEntry, Page, Workspace};
use keyrail_core::webhooks::{ClaimedJob, DeliveryAttempt, JobOutcome, WebhookEndpoint};
use keyrail_core::{Store, Timestamp};
use serde_json::json;

use crate::fixtures::{api_key, entry, join_all, new_workspace, taken_entry, ts};

fn endpoint(ws: &Workspace, events: &[&str]) -> WebhookEndpoint {
    WebhookEndpoint {
        id: WebhookId::new(),
        workspace_id: ws.id.clone(),
        url: "https://hooks.example.com/in".to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        created_at: ts(0),
        disabled_at: None,
    }
}

fn created(ws: &Workspace, label: &str) -> OutboxEvent {
    OutboxEvent::new("key.created", json!({"label": label}), ws.id.clone())
}

fn with(e: AuditEntry, event: OutboxEvent) -> AuditEntry {
    e.with_event(event)
}

fn attempt(job: &ClaimedJob, status: Option<u16>, at: Timestamp) -> DeliveryAttempt {
    DeliveryAttempt {
        id: DeliveryId::new(),
        endpoint_id: job.endpoint_id.clone(),
        event_id: job.event_id.clone(),
        event_type: job.event_type.clone(),
        attempt: job.attempt,
        status_code: status,
        ok: status == Some(200),
        error: None,
        next_attempt_at: None,
        at,
    }
}

fn page() -> Page {
    Page {
        limit: 50,
        after: None,
    }
}

pub(crate) async fn outbox_is_written_with_the_change(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "hooks", 0).await;
    // Without an endpoint listening, nothing is queued.
    let k0 = api_key(&ws, "hooks-k0", 0);
    let e0 = with(entry("key.create"), created(&ws, "k0"));
    store.insert_key(&k0, Some(&e0)).await.unwrap();
    assert!(
        store
            .claim_webhook_jobs(ts(1000), ts(16_000), 10, "c0")
            .await
            .unwrap()
            .is_empty()
    );

    let a = endpoint(&ws, &["key.created", "key.revoked"]);
    let b = endpoint(&ws, &["member.added"]);
    assert!(
        store
            .insert_webhook(&a, 20, &entry("webhook.create"))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_webhook(&b, 20, &entry("webhook.create"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_webhook(
                &endpoint(&ws, &["key.created"]),
                2,
                &entry("webhook.create")
            )
            .await
            .unwrap(),
        "at most `max` endpoints"
    );
    assert_eq!(store.list_webhooks(&ws.id, &page()).await.unwrap().len(), 2);

    // A change that fails (its audit entry's id is taken) queues nothing.
    let k1 = api_key(&ws, "hooks-k1", 0);
    let failing = with(taken_entry(store, "key.create").await, created(&ws, "k1"));
    assert!(store.insert_key(&k1, Some(&failing)).await.is_err());
    assert!(
        store
            .claim_webhook_jobs(ts(1000), ts(16_000), 10, "c1")
            .await
            .unwrap()
            .is_empty(),
        "a rolled-back change leaves no job"
    );

    // A change that commits queues one job, for the subscribed endpoint only.
    let k2 = api_key(&ws, "hooks-k2", 0);
    let e2 = with(entry("key.create"), created(&ws, "k2"));
    store.insert_key(&k2, Some(&e2)).await.unwrap();
    let jobs = store
        .claim_webhook_jobs(ts(1000), ts(16_000), 10, "c2")
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.endpoint_id, a.id);
    assert_eq!(job.workspace_id, ws.id);
    assert_eq!((job.event_type.as_str(), job.attempt), ("key.created", 1));
    assert!(job.event_id.as_str().starts_with("msg_"));
    assert_eq!(job.url, a.url);
    let body: serde_json::Value = serde_json::from_str(&job.body).unwrap();
    assert_eq!(body["data"], json!({"label": "k2"}));
    assert_eq!(body["type"], "key.created");

    // Claimed: nobody gets it again until the lease ends; then it comes back as attempt 2.
    assert!(
        store
            .claim_webhook_jobs(ts(15_999), ts(30_000), 10, "c3")
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_webhook_jobs(ts(16_000), ts(31_000), 10, "c4")
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((&again[0].event_id, again[0].attempt), (&job.event_id, 2));
    // The first claimer, late, cannot change the job any more; its attempt is still recorded.
    store
        .finish_webhook_job(
            job,
            &attempt(job, Some(500), ts(17_000)),
            JobOutcome::Retry(ts(18_000)),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_webhook_jobs(ts(20_000), ts(40_000), 10, "c5")
            .await
            .unwrap()
            .is_empty(),
        "still the second claim's until its lease ends"
    );
    let now_job = &again[0];
    store
        .finish_webhook_job(
            now_job,
            &attempt(now_job, Some(500), ts(21_000)),
            JobOutcome::Retry(ts(25_000)),
        )
        .await
        .unwrap();
    let retried = store
        .claim_webhook_jobs(ts(25_000), ts(40_000), 10, "c6")
        .await
        .unwrap();
    assert_eq!((retried.len(), retried[0].attempt), (1, 3));
    store
        .finish_webhook_job(
            &retried[0],
            &attempt(&retried[0], Some(200), ts(26_000)),
            JobOutcome::Delivered,
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_webhook_jobs(ts(100_000), ts(115_000), 10, "c7")
            .await
            .unwrap()
            .is_empty(),
        "delivered: gone from the queue"
    );
    let log = store.list_webhook_deliveries(&a.id, &page()).await.unwrap();
    let seen: Vec<(u32, Option<u16>, bool)> = log
        .iter()
        .map(|d| (d.attempt, d.status_code, d.ok))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some(500), false),
            (2, Some(500), false),
            (3, Some(200), true)
        ]
    );

    // A 410 disables the endpoint and drops its jobs; later events skip it.
    let k3 = api_key(&ws, "hooks-k3", 0);
    store
        .insert_key(&k3, Some(&with(entry("key.create"), created(&ws, "k3"))))
        .await
        .unwrap();
    let jobs = store
        .claim_webhook_jobs(ts(100_000), ts(115_000), 10, "c8")
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    store
        .finish_webhook_job(
            &jobs[0],
            &attempt(&jobs[0], Some(410), ts(100_001)),
            JobOutcome::Gone,
        )
        .await
        .unwrap();
    let gone = store.webhook_by_id(&ws.id, &a.id).await.unwrap().unwrap();
    assert_eq!(gone.disabled_at, Some(ts(100_001)));
    let k4 = api_key(&ws, "hooks-k4", 0);
    store
        .insert_key(&k4, Some(&with(entry("key.create"), created(&ws, "k4"))))
        .await
        .unwrap();
    assert!(
        store
            .claim_webhook_jobs(ts(200_000), ts(215_000), 10, "c9")
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting an endpoint takes its attempts along; another workspace's id finds nothing.
    let (other, _) = new_workspace(store, "hooks-other", 0).await;
    assert!(
        !store
            .delete_webhook(&other.id, &a.id, &entry("webhook.delete"))
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_webhook(&ws.id, &a.id, &entry("webhook.delete"))
            .await
            .unwrap()
    );
    assert!(
        store
            .list_webhook_deliveries(&a.id, &page())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Concurrent claimers never get the same job (PostgreSQL: `FOR UPDATE SKIP LOCKED`).
pub(crate) async fn concurrent_claims_are_disjoint(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "hooks-claims", 0).await;
    let a = endpoint(&ws, &["key.created"]);
    assert!(
        store
            .insert_webhook(&a, 20, &entry("webhook.create"))
            .await
            .unwrap()
    );
    for i in 0..12 {
        let k = api_key(&ws, &format!("claims-{i}"), 0);
        let e = with(entry("key.create"), created(&ws, &format!("{i}")));
        store.insert_key(&k, Some(&e)).await.unwrap();
    }
    let tokens = ["p1", "p2", "p3"];
    let results = join_all(
        tokens
            .iter()
            .map(|t| store.claim_webhook_jobs(ts(500_000), ts(515_000), 6, t)),
    )
    .await;
    let mut seen = HashSet::new();
    let mut total = 0;
    for r in results {
        for job in r.unwrap() {
            total += 1;
            assert!(seen.insert(job.event_id.clone()), "claimed twice: {job:?}");
        }
    }
    assert_eq!(total, 12, "every due job claimed exactly once");
}

/// `key.expiring` is written once per stage, with the stage's update.
pub(crate) async fn expiring_keys_are_marked_once(store: &dyn Store) {
    let (ws, _) = new_workspace(store, "hooks-expiring", 0).await;
    let a = endpoint(&ws, &["key.expiring"]);
    assert!(
        store
            .insert_webhook(&a, 20, &entry("webhook.create"))
            .await
            .unwrap()
    );
    let mut k = api_key(&ws, "expiring-1", 0);
    k.expires_at = Some(ts(3 * 86_400_000));
    store.insert_key(&k, None).await.unwrap();
    let now = ts(1000);
    let week = ts(1000 + 7 * 86_400_000);
    let found = store.keys_expiring(now, week, 1, 100_000).await.unwrap();
    assert_eq!(found.iter().filter(|e| e.id == k.id).count(), 1);
    assert!(
        store
            .keys_expiring(now, ts(2000), 1, 100_000)
            .await
            .unwrap()
            .iter()
            .all(|e| e.id != k.id)
    );
    let ev = OutboxEvent::new("key.expiring", json!({"key_id": k.id}), ws.id.clone());
    assert!(store.mark_key_expiring(&k.id, 1, &ev, now).await.unwrap());
    assert!(
        !store.mark_key_expiring(&k.id, 1, &ev, now).await.unwrap(),
        "once"
    );
    assert!(
        store
            .keys_expiring(now, week, 1, 100_000)
            .await
            .unwrap()
            .iter()
            .all(|e| e.id != k.id)
    );
    assert_eq!(
        store
            .keys_expiring(now, week, 2, 100_000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.id == k.id)
            .count(),
        1,
        "the 1-day stage is still to come"
    );
    let jobs = store
        .claim_webhook_jobs(ts(600_000), ts(615_000), 10, "x1")
        .await
        .unwrap();
    let mine: Vec<_> = jobs.iter().filter(|j| j.endpoint_id == a.id).collect();
    assert_eq!(mine.len(), 1, "one event for the one mark: {jobs:?}");
    assert_eq!(mine[0].event_type, "key.expiring");
    for j in &jobs {
        store
            .finish_webhook_job(
                j,
                &attempt(j, Some(200), ts(600_001)),
                JobOutcome::Delivered,
            )
            .await
            .unwrap();
    }
    // Old attempts and events go.
    assert!(
        store
            .purge_webhook_deliveries(ts(900_000_000), 1000)
            .await
            .unwrap()
            >= 1
    );
    assert!(
        store
            .list_webhook_deliveries(&a.id, &page())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .purge_webhook_events(ts(900_000_000), 1000)
            .await
            .unwrap()
            >= 1
    );
}
