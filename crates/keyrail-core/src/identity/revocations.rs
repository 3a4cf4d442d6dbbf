//! Sessions revoked recently, held in memory so that every request checks its access token's
//! session without a store query. An access token lives at most `ttl`, so a revocation older
//! than that can be forgotten: every token of that session has expired by then.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::time::Timestamp;

#[derive(Debug, Default)]
pub struct SessionRevocations {
    revoked: RwLock<HashMap<String, Timestamp>>,
}

impl SessionRevocations {
    pub fn insert(&self, session_id: &str, at: Timestamp) {
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        map.insert(session_id.to_owned(), at);
    }

    pub fn contains(&self, session_id: &str) -> bool {
        let map = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        map.contains_key(session_id)
    }

    /// Forgets revocations made before `before`.
    pub fn purge(&self, before: Timestamp) {
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, at| *at >= before);
    }

    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_purged() {
        let r = SessionRevocations::default();
        r.insert("ses_a", Timestamp::from_millis(1_000));
        r.insert("ses_b", Timestamp::from_millis(5_000));
        assert!(r.contains("ses_a") && r.contains("ses_b") && !r.contains("ses_c"));
        r.purge(Timestamp::from_millis(2_000));
        assert!(!r.contains("ses_a") && r.contains("ses_b"));
    }
}
