//! The change log.

use keyrail_core::Store;
use keyrail_core::model::{KeyFormat, WorkspaceStatus};

use crate::fixtures::*;

pub(crate) async fn empty_change_log(store: &dyn Store) {
    assert_eq!(store.latest_change().await.unwrap(), 0);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());
}

/// Many writers at once: every change lands, with strictly increasing seq.
pub(crate) async fn concurrent_changes_are_ordered(store: &dyn Store) {
    let u = user("conc@example.com", "Conc", 900);
    store.insert_user(&u).await.unwrap();
    let ws = workspace("Conc", 900, KeyFormat::default());
    store
        .create_workspace(&ws, &member(&ws, &u, "owner", 900))
        .await
        .unwrap();
    let before = store.latest_change().await.unwrap();

    let tasks = (0..6).map(|i| {
        let ws = ws.id.clone();
        async move {
            for j in 0..5 {
                let status = if (i + j) % 2 == 0 {
                    WorkspaceStatus::Suspended
                } else {
                    WorkspaceStatus::Active
                };
                assert!(
                    store
                        .set_workspace_status(
                            &ws,
                            status,
                            ts(1000 + j),
                            &entry("workspace.suspend")
                        )
                        .await
                        .unwrap()
                );
            }
        }
    });
    join_all(tasks).await;

    let changes = store.changes_after(before, 1000).await.unwrap();
    assert_eq!(changes.len(), 30);
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.latest_change().await.unwrap(), changes[29].seq);
}
