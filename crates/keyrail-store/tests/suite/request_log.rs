//! The API request log: batches of any size go in whole, listings filter and page newest
//! first, the retention deletes oldest first in batches. Run on a fresh database: it counts rows.

use keyrail_core::Store;
use keyrail_core::model::{ActorType, Page};
use keyrail_core::request_log::{
    LoggedPrincipal, RequestLogEntry, RequestLogFilter, RequestLogId, StatusFilter,
};

use crate::fixtures::ts;

fn row(i: i64, ws: Option<&str>, principal: Option<&str>, status: u16) -> RequestLogEntry {
    RequestLogEntry {
        at: ts(1_000 + i),
        method: "POST".into(),
        route: "/api/v1/keys/verify".into(),
        status,
        latency_us: 10 + i,
        principal: principal.map(|id| LoggedPrincipal {
            kind: ActorType::Key,
            id: id.into(),
        }),
        workspace_id: ws.map(str::to_owned),
        ip: Some("203.0.113.7".into()),
        user_agent: Some(format!("agent/{i}")),
        request_id: format!("rid-{i}"),
    }
}

async fn list(store: &dyn Store, filter: &RequestLogFilter, limit: u32) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut page = Page::first(limit);
    loop {
        let rows = store.list_request_logs(filter, &page).await.unwrap();
        assert!(rows.len() <= limit as usize);
        seen.extend(rows.iter().map(|r| r.entry.latency_us - 10));
        if rows.len() < limit as usize {
            return seen;
        }
        page.after = Some(rows.last().unwrap().id.to_string());
    }
}

pub(crate) async fn request_log(store: &dyn Store) {
    store.insert_request_logs(&[]).await.unwrap();
    // 300 rows in one batch: several statements of up to 64 rows, in order.
    let batch: Vec<RequestLogEntry> = (0..300)
        .map(|i| {
            let ws = if i % 2 == 0 { "ws_a" } else { "ws_b" };
            let principal = if i % 3 == 0 { Some("key_x") } else { None };
            let status = if i % 5 == 0 { 429 } else { 200 };
            row(i, Some(ws), principal, status)
        })
        .collect();
    store.insert_request_logs(&batch).await.unwrap();
    store
        .insert_request_logs(&[row(300, None, Some("usr_u"), 500)])
        .await
        .unwrap();

    // Everything, newest first, exactly as written; ids grow with the order of writing.
    let all = store
        .list_request_logs(&RequestLogFilter::default(), &Page::first(200))
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(all[0].entry, row(300, None, Some("usr_u"), 500));
    assert_eq!(all[1].entry, batch[299]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let every = list(store, &RequestLogFilter::default(), 64).await;
    assert_eq!(every, (0..=300).rev().collect::<Vec<_>>());

    // Filters, alone and together, through pages.
    let ws_a = RequestLogFilter {
        workspace_id: Some("ws_a".into()),
        ..Default::default()
    };
    assert_eq!(
        list(store, &ws_a, 7).await,
        (0..300).rev().filter(|i| i % 2 == 0).collect::<Vec<_>>()
    );
    let f = RequestLogFilter {
        workspace_id: Some("ws_b".into()),
        principal_id: Some("key_x".into()),
        status: StatusFilter::parse("4xx"),
        ..Default::default()
    };
    assert_eq!(
        list(store, &f, 3).await,
        (0..300)
            .rev()
            .filter(|i| i % 2 == 1 && i % 3 == 0 && i % 5 == 0)
            .collect::<Vec<_>>()
    );
    let f = RequestLogFilter {
        status: StatusFilter::parse("500"),
        ..Default::default()
    };
    assert_eq!(list(store, &f, 50).await, [300]);
    let f = RequestLogFilter {
        since: Some(ts(1_010)),
        until: Some(ts(1_013)),
        ..Default::default()
    };
    assert_eq!(list(store, &f, 50).await, [12, 11, 10]);
    let f = RequestLogFilter {
        workspace_id: Some("ws_none".into()),
        ..Default::default()
    };
    assert!(list(store, &f, 50).await.is_empty());
    // A cursor past the oldest row: nothing.
    let page = Page {
        limit: 10,
        after: Some(RequestLogId(1).to_string()),
    };
    assert!(
        store
            .list_request_logs(&RequestLogFilter::default(), &page)
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: rows before the cut go, oldest first, at most `limit` per call.
    assert_eq!(store.purge_request_logs(ts(1_005), 3).await.unwrap(), 3);
    assert_eq!(store.purge_request_logs(ts(1_005), 3).await.unwrap(), 2);
    assert_eq!(store.purge_request_logs(ts(1_005), 3).await.unwrap(), 0);
    let left = list(store, &RequestLogFilter::default(), 200).await;
    assert_eq!(left, (5..=300).rev().collect::<Vec<_>>());
    assert_eq!(
        store.purge_request_logs(ts(10_000), 500).await.unwrap(),
        296
    );
}
