//! The bound on password hashing. One Argon2id run takes about 19 MiB and tens of milliseconds
//! of CPU; unbounded, a burst of logins would fill the blocking pool (512 threads, ~10 GiB) and
//! starve everything else. At most `running` hashes run at once, at most `waiting` more wait
//! for a turn (briefly), and anything beyond is refused at once with 503 and `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::Error;

/// How long a request waits for a hasher before it is refused.
const MAX_WAIT: Duration = Duration::from_secs(5);

pub struct Hashers {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Hashers {
    /// `running` hashes at once (at least 1), `waiting` more queued.
    pub fn new(running: usize, waiting: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(running.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: waiting,
        }
    }

    /// Two per core, and eight times that waiting.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(2 * cores, 16 * cores)
    }

    /// Runs `work` on the blocking pool once a hasher is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(busy());
                }
                let acquired =
                    tokio::time::timeout(MAX_WAIT, self.permits.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match acquired {
                    Ok(Ok(p)) => p,
                    _ => return Err(busy()),
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))
    }
}

fn busy() -> Error {
    Error::Busy {
        retry_after_secs: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_running_and_waiting_bounds_it_refuses() {
        let hashers = Arc::new(Hashers::new(1, 1));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        // One runs (blocked until released), one waits, the third is refused at once.
        let running = {
            let (h, wait) = (hashers.clone(), wait.clone());
            tokio::spawn(async move { h.run(move || wait.lock().unwrap().recv().is_ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = {
            let h = hashers.clone();
            tokio::spawn(async move { h.run(|| 7).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            hashers.run(|| 0).await,
            Err(Error::Busy {
                retry_after_secs: 1
            })
        ));
        release.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert_eq!(queued.await.unwrap().unwrap(), 7);
        // Free again.
        assert_eq!(hashers.run(|| 1).await.unwrap(), 1);
    }
}
