//! One reload at a time, at most one a second: what a node does when a token names a key it does
//! not hold (another node may have made it). A forged token with a random `kid` must not make
//! every request read the store, so the reloads are throttled; and the requests that arrive
//! while one runs wait for it rather than starting their own.

use crate::time::Timestamp;

/// How long after a reload began no other starts.
pub const RELOAD_EVERY_MS: i64 = 1000;

#[derive(Default)]
pub struct ReloadGate {
    /// When the last reload began; held while a reload runs, so the others queue on it.
    began: tokio::sync::Mutex<Option<Timestamp>>,
}

impl ReloadGate {
    /// Runs `reload` unless one began less than [`RELOAD_EVERY_MS`] before `now`; a caller
    /// arriving while one runs waits for it to end, then does not start another. `Ok(true)` when
    /// this call reloaded, `Ok(false)` when it had to make do with what is loaded (which may
    /// be what a concurrent reload just brought).
    pub async fn reload<E>(
        &self,
        now: Timestamp,
        reload: impl AsyncFnOnce() -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut began = self.began.lock().await;
        if began.is_some_and(|t| (now.millis() - t.millis()).abs() < RELOAD_EVERY_MS) {
            return Ok(false);
        }
        *began = Some(now);
        reload().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_reload_a_second() {
        let gate = Arc::new(ReloadGate::default());
        let runs = Arc::new(AtomicU32::new(0));
        let at = Timestamp::from_millis(1_000_000);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (gate, runs) = (gate.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                gate.reload(at, async || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<(), ()>(())
                })
                .await
                .unwrap()
            }));
        }
        let mut reloaded = 0;
        for t in tasks {
            reloaded += u32::from(t.await.unwrap());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(reloaded, 1, "one caller reloaded, the others waited for it");

        let count = async |ms: i64| {
            gate.reload(Timestamp::from_millis(ms), async || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            })
            .await
            .unwrap()
        };
        assert!(!count(1_000_999).await, "still within the second");
        assert!(count(1_001_000).await, "a second later");
        assert!(!count(1_001_500).await);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_reload_still_counts() {
        let gate = ReloadGate::default();
        let at = Timestamp::from_millis(5_000);
        let failed: Result<bool, &str> = gate.reload(at, async || Err("store down")).await;
        assert_eq!(failed, Err("store down"));
        // A store that is down is not asked again by every request.
        assert_eq!(gate.reload(at, async || Err("store down")).await, Ok(false));
    }
}
