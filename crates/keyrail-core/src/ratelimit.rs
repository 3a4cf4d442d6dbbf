//! Rate-limit arithmetic, with no IO: GCRA (the generic cell rate algorithm) for "N per window"
//! limits, and the failed-authentication block of API.md.
//!
//! # GCRA
//! A rate of `count` per `window` spaces requests one *emission interval* `T = window / count`
//! apart and tolerates a burst of `count` from a full bucket. The whole state of one key is its
//! theoretical arrival time ([`Tat`]): the instant at which the bucket would be full again. A
//! request of `cost` moves it `cost * T` later, starting from `max(tat, now)`, and is allowed when
//! the result lies no more than `window` after `now`.
//!
//! What that guarantees, exactly (see the property tests):
//! - from a full bucket, `count` requests pass at once and the next one does not;
//! - in any span `[a, a + L]`, the allowed cost is at most `count + floor(L * count / window)`;
//!   over long spans the rate tends to `count / window`, and within a span shorter than `T` no
//!   more than `count` pass. (It is a smoothed rate, not a fixed window: right after a burst of
//!   `count`, one more request passes every `T`, so a span of exactly `window` can hold up to
//!   `2 * count`.)
//! - after `window` without requests the full burst is available again.
//!
//! The arithmetic is exact: time is counted in units of `1 / count` ms in `i128`, so `T` is always
//! an integer (`window_ms` units) and no rounding accumulates; nothing overflows for any input.
//!
//! # State for a shared store (Redis)
//! One [`Tat`] per key, written only when [`gcra`] returns `Some`, with a time-to-live of
//! `tat.ms - now` milliseconds (never more than the window): once it expires the bucket is full,
//! which is what a missing key means. A Redis implementation runs the same steps in one Lua
//! script (`HMGET key ms behind per`, compute, `HSET` + `PEXPIREAT key ms`), so concurrent nodes
//! never race. keyrail-server's script is given `now` from the node's clock (the same clock as
//! every other rule, which tests move), not Redis `TIME`; nodes are expected to be NTP-synced.
//! Lua numbers are doubles: the script is exact while `window_ms * count < 2^53`, which holds
//! for every sensible rate (for example a million per day).

use std::collections::VecDeque;

use async_trait::async_trait;

use crate::limits::{Rate, Span};
use crate::time::Timestamp;

/// The outcome of one rate-limit check, with what the `RateLimit` fields need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rate's count.
    pub limit: u32,
    /// How many unit requests would pass right now, after this one.
    pub remaining: u32,
    /// Seconds until the bucket is full again, rounded up (0 when it is full).
    pub reset_after_secs: u64,
    /// 0 when allowed; otherwise the seconds after which the same request would pass, rounded
    /// up (at least 1). A cost above the limit never passes: it gets the window's length.
    pub retry_after_secs: u64,
}

/// The exact theoretical arrival time of one key.
///
/// `ms` is rounded up to a whole millisecond; the exact instant is `ms - behind / per` ms. `per`
/// is the rate's count when the state was written, so that a rate change is read correctly.
/// Any values are accepted on input (an inconsistent `behind` is clamped, to the safe side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tat {
    pub ms: i64,
    pub behind: u32,
    pub per: u32,
}

impl Tat {
    /// A TAT on a whole millisecond.
    pub const fn at_ms(ms: i64) -> Self {
        Self {
            ms,
            behind: 0,
            per: 1,
        }
    }

    /// Whether the bucket is full at `now_ms`, so the state can be dropped (a missing key means
    /// a full bucket).
    pub const fn is_spent(self, now_ms: i64) -> bool {
        self.ms <= now_ms
    }

    /// How long a shared store should keep this state, in milliseconds (0: not at all).
    pub fn ttl_ms(self, now_ms: i64) -> u64 {
        u64::try_from(i128::from(self.ms) - i128::from(now_ms)).unwrap_or(0)
    }

    /// How far after `now_ms` this TAT lies, in units of `1 / count` ms (negative: in the past),
    /// never earlier than the exact instant.
    fn offset(self, now_ms: i64, count: i128) -> i128 {
        let per = self.per.max(1);
        let behind = self.behind.min(per - 1);
        let behind = if i128::from(per) == count {
            i128::from(behind)
        } else {
            // Written under another rate: convert, flooring what is subtracted (rounds late).
            i128::from(behind) * count / i128::from(per)
        };
        (i128::from(self.ms) - i128::from(now_ms)) * count - behind
    }

    /// The TAT `units` (>= 0) of `1 / count` ms after `now_ms`.
    fn after(now_ms: i64, units: i128, count: i128) -> Self {
        let whole = ceil_div(units, count);
        match i64::try_from(i128::from(now_ms) + whole) {
            Ok(ms) => Self {
                ms,
                // 0 <= whole*count - units < count <= u32::MAX
                behind: u32::try_from(whole * count - units).unwrap_or(0),
                per: u32::try_from(count).unwrap_or(u32::MAX),
            },
            // Beyond the year 292 million: saturate.
            Err(_) => Self::at_ms(i64::MAX),
        }
    }
}

// Division of i128 is a library call; the operands nearly always fit in u64, which divides in a
// few cycles. Both helpers take a positive divisor.

/// `n / d` rounded down.
fn div_floor(n: i128, d: i128) -> i128 {
    match (u64::try_from(n), u64::try_from(d)) {
        (Ok(n), Ok(d)) => i128::from(n / d),
        _ => n.div_euclid(d),
    }
}

/// `n / d` rounded up.
fn ceil_div(n: i128, d: i128) -> i128 {
    match (u64::try_from(n), u64::try_from(d)) {
        (Ok(n), Ok(d)) => i128::from(n.div_ceil(d)),
        _ => n.div_euclid(d) + i128::from(n.rem_euclid(d) != 0),
    }
}

fn clamp_u64(n: i128) -> u64 {
    u64::try_from(n.max(0)).unwrap_or(u64::MAX)
}

/// One GCRA step for the key whose state is `tat` (`None`: never seen or expired, a full
/// bucket), at `now_ms`, for a request of `cost` (0: only look).
///
/// Returns the decision and the state to store, `Some` only when it changed (an allowed request
/// of cost >= 1, or a stored debt larger than the rate allows, which is cut down to one window).
pub fn gcra(tat: Option<Tat>, now_ms: i64, rate: Rate, cost: u32) -> (Decision, Option<Tat>) {
    let window_secs = rate.window.secs();
    if rate.count == 0 {
        // Nothing may pass, and a look says so.
        let decision = Decision {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset_after_secs: 0,
            retry_after_secs: window_secs.max(1),
        };
        return (decision, None);
    }
    // Times below are offsets from `now`, in units of 1/count ms, in which one request takes
    // exactly `interval` (= window_ms / count ms) and the burst tolerance is one window.
    let count = i128::from(rate.count);
    let interval = (i128::from(window_secs) * 1000).max(1);
    let tolerance = interval * count;
    let per_sec = count * 1000;

    let stored = tat.map(|t| t.offset(now_ms, count));
    // A debt of more than one window cannot arise at a constant rate with a forward clock; it
    // means the rate was lowered (or the clock stepped back). Cut it to "just drained".
    let capped = stored.is_some_and(|t| t > tolerance);
    let start = stored.unwrap_or(0).clamp(0, tolerance);
    let rewrite = capped.then(|| Tat::after(now_ms, start, count));

    // A look (cost 0) spends nothing but answers as a request of cost 1 would: an exhausted
    // limit is reported as exhausted.
    let end = start + i128::from(cost.max(1)) * interval;
    if end <= tolerance {
        let end = start + i128::from(cost) * interval;
        let decision = Decision {
            allowed: true,
            limit: rate.count,
            remaining: u32::try_from(div_floor(tolerance - end, interval)).unwrap_or(0),
            reset_after_secs: clamp_u64(ceil_div(end, per_sec)),
            retry_after_secs: 0,
        };
        let next = if cost == 0 {
            rewrite
        } else {
            Some(Tat::after(now_ms, end, count))
        };
        return (decision, next);
    }
    let retry_after_secs = if cost > rate.count {
        window_secs.max(1)
    } else {
        // Allowed from the instant at which `end` is exactly one window ahead.
        clamp_u64(ceil_div(end - tolerance, per_sec)).max(1)
    };
    let decision = Decision {
        allowed: false,
        limit: rate.count,
        remaining: u32::try_from(div_floor(tolerance - start, interval)).unwrap_or(0),
        reset_after_secs: clamp_u64(ceil_div(start, per_sec)),
        retry_after_secs,
    };
    (decision, rewrite)
}

/// Why a limiter could not answer (a shared store that is down). The memory limiter never fails.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// A place that keeps GCRA state per key: in process, or shared between nodes (Redis).
///
/// `key` should name the policy as well as the subject (`"login:ip:203.0.113.7"`), since the
/// stored state does not know its rate.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Checks and, when allowed, records a request of `cost` (0: only look) at `now`.
    async fn check(
        &self,
        key: &str,
        rate: Rate,
        cost: u32,
        now: Timestamp,
    ) -> Result<Decision, LimiterError>;
}

/// The failed-authentication block: `failures.count` failures from one source within
/// `failures.window` block it for `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub failures: Rate,
    pub block: Span,
}

impl Default for FailurePolicy {
    /// API.md: 10 failures within 5 minutes block for 15 minutes.
    fn default() -> Self {
        Self {
            failures: Rate {
                count: 10,
                window: Span::from_secs(300),
            },
            block: Span::from_secs(900),
        }
    }
}

impl FailurePolicy {
    fn window_ms(&self) -> i64 {
        secs_to_ms(self.failures.window.secs())
    }

    fn block_ms(&self) -> i64 {
        secs_to_ms(self.block.secs())
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// Whole seconds left from `now_ms` to `until_ms`, rounded up, at least 1.
fn secs_left(until_ms: i64, now_ms: i64) -> u64 {
    let ms = i128::from(until_ms) - i128::from(now_ms);
    clamp_u64(ceil_div(ms, 1000)).max(1)
}

/// The failure state of one source (an IP): a sliding log of its recent failures, or the end of
/// its block. Exact: "N failures within the window" means any N, however they are spread.
///
/// In memory it is this struct; in Redis it maps to a list of failure times (`LPUSH` + `LTRIM`
/// to N, `PEXPIRE` the window) and a `blocked_until` key with a time-to-live of the block, both
/// handled by one Lua script doing what [`FailureWindow::record_failure`] does.
/// [`FailureWindow::expires_at`] is when the state means nothing any more (its time-to-live).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureWindow {
    /// Failure times in ms, oldest first, all inside the window; at most `failures.count`.
    recent: VecDeque<i64>,
    /// When blocked: the instant the block ends.
    blocked_until: Option<i64>,
}

impl FailureWindow {
    pub const fn new() -> Self {
        Self {
            recent: VecDeque::new(),
            blocked_until: None,
        }
    }

    /// `Some(seconds left, rounded up, >= 1)` while blocked.
    pub fn blocked(&self, now_ms: i64) -> Option<u64> {
        match self.blocked_until {
            Some(until) if now_ms < until => Some(secs_left(until, now_ms)),
            _ => None,
        }
    }

    /// The end of the current block, if any (even if already past).
    pub fn blocked_until(&self) -> Option<i64> {
        self.blocked_until
    }

    /// Records a failure at `now_ms`. Returns `Some(retry after seconds)` when the source is now
    /// blocked: by this failure, or already (a failure during a block does not extend it).
    pub fn record_failure(&mut self, policy: &FailurePolicy, now_ms: i64) -> Option<u64> {
        if let Some(left) = self.blocked(now_ms) {
            return Some(left);
        }
        if self.blocked_until.take().is_some() {
            // A block that ended starts the count afresh.
            self.recent.clear();
        }
        self.forget_old(policy, now_ms);
        let limit = policy.failures.count as usize;
        if self.recent.capacity() == 0 {
            self.recent.reserve_exact(limit.clamp(1, 16));
        }
        // Keep the log sorted even if the clock stepped back.
        let at = self.recent.partition_point(|&t| t <= now_ms);
        self.recent.insert(at, now_ms);
        while self.recent.len() > limit.max(1) {
            self.recent.pop_front();
        }
        if self.recent.len() >= limit {
            let until = now_ms.saturating_add(policy.block_ms());
            self.blocked_until = Some(until);
            self.recent = VecDeque::new();
            return Some(secs_left(until, now_ms));
        }
        None
    }

    /// Takes a block decided elsewhere (another node, through the shared store) that ends at
    /// `until_ms`; a later end than the one held wins, an earlier one changes nothing.
    pub fn learn_block(&mut self, until_ms: i64) {
        if self.blocked_until.is_none_or(|held| held < until_ms) {
            self.blocked_until = Some(until_ms);
            self.recent.clear();
        }
    }

    /// Failures counted at `now_ms` (those inside the window; 0 while blocked).
    pub fn failures(&self, policy: &FailurePolicy, now_ms: i64) -> usize {
        if self.blocked(now_ms).is_some() {
            return 0;
        }
        let horizon = now_ms.saturating_sub(policy.window_ms());
        self.recent.iter().filter(|&&t| t > horizon).count()
    }

    /// From this instant on the state is the same as no state: it can be dropped.
    pub fn expires_at(&self, policy: &FailurePolicy) -> i64 {
        let failures = self
            .recent
            .back()
            .map_or(i64::MIN, |&t| t.saturating_add(policy.window_ms()));
        failures.max(self.blocked_until.unwrap_or(i64::MIN))
    }

    /// Whether the state can be dropped at `now_ms`.
    pub fn is_idle(&self, policy: &FailurePolicy, now_ms: i64) -> bool {
        now_ms >= self.expires_at(policy)
    }

    /// A failure exactly one window old no longer counts.
    fn forget_old(&mut self, policy: &FailurePolicy, now_ms: i64) {
        let horizon = now_ms.saturating_sub(policy.window_ms());
        while self.recent.front().is_some_and(|&t| t <= horizon) {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_795_449_020_000;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            window: Span::from_secs(secs),
        }
    }

    /// Runs requests against one key, keeping its state.
    #[derive(Default)]
    struct Bucket {
        tat: Option<Tat>,
    }

    impl Bucket {
        fn hit(&mut self, now: i64, rate: Rate, cost: u32) -> Decision {
            let (d, next) = gcra(self.tat, now, rate, cost);
            if let Some(t) = next {
                self.tat = Some(t);
            }
            d
        }
    }

    #[test]
    fn a_full_bucket_allows_exactly_the_burst() {
        let r = rate(10, 60);
        let mut b = Bucket::default();
        for i in 0..10 {
            let d = b.hit(T0, r, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!((d.limit, d.remaining, d.retry_after_secs), (10, 9 - i, 0));
            assert_eq!(d.reset_after_secs, 6 * (u64::from(i) + 1));
        }
        let d = b.hit(T0, r, 1);
        assert_eq!(
            d,
            Decision {
                allowed: false,
                limit: 10,
                remaining: 0,
                reset_after_secs: 60,
                retry_after_secs: 6,
            }
        );
        // One emission interval later exactly one more passes.
        assert!(!b.hit(T0 + 5_999, r, 1).allowed);
        let d = b.hit(T0 + 6_000, r, 1);
        assert!(d.allowed && d.remaining == 0);
        assert!(!b.hit(T0 + 6_000, r, 1).allowed);
    }

    #[test]
    fn uneven_intervals_are_exact() {
        // 7/1s: T = 142.857.. ms. Rounding per request would lose the 7th of the burst.
        let r = rate(7, 1);
        let mut b = Bucket::default();
        assert_eq!((0..20).filter(|_| b.hit(0, r, 1).allowed).count(), 7);
        // Hammering every millisecond for 100 s: exactly count + floor(L * count / W) pass,
        // the k-th extra one at ceil(k * T).
        let mut b = Bucket::default();
        let mut allowed = Vec::new();
        for t in 0..100_000 {
            if b.hit(t, r, 1).allowed {
                allowed.push(t);
            }
        }
        assert_eq!(allowed.len(), 7 + 99_999 * 7 / 1000);
        assert_eq!(&allowed[7..10], &[143, 286, 429]);
        assert_eq!(allowed[6 + 699], 99_858); // the 699th extra; the 700th would be at 100_000
    }

    #[test]
    fn cost_counts_and_peeks_change_nothing() {
        let r = rate(10, 60);
        let mut b = Bucket::default();
        let d = b.hit(T0, r, 4);
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_after_secs), (6, 24));
        let before = b.tat;
        let (peek, next) = gcra(b.tat, T0, r, 0);
        assert!(peek.allowed && next.is_none());
        assert_eq!((peek.remaining, peek.reset_after_secs), (6, 24));
        assert_eq!(b.tat, before);
        // 7 does not fit in 6; it fits once one more interval (6 s) has passed.
        let d = b.hit(T0, r, 7);
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after_secs), (6, 6));
        assert_eq!(b.tat, before, "a refusal writes nothing");
        assert!(b.hit(T0 + 6_000, r, 7).allowed);
        // A peek on an unknown key reports a full bucket.
        let (d, next) = gcra(None, T0, r, 0);
        assert!(next.is_none());
        assert_eq!((d.allowed, d.remaining, d.reset_after_secs), (true, 10, 0));
    }

    #[test]
    fn a_peek_at_an_exhausted_limit_reports_it_without_spending() {
        let r = rate(2, 60);
        let mut b = Bucket::default();
        assert!(b.hit(T0, r, 2).allowed);
        let before = b.tat;
        let (peek, next) = gcra(b.tat, T0, r, 0);
        assert!(next.is_none(), "a look writes nothing");
        assert!(!peek.allowed);
        assert_eq!((peek.remaining, peek.retry_after_secs), (0, 30));
        assert_eq!(b.tat, before);
        // Once one request fits again, the look says so.
        assert!(gcra(b.tat, T0 + 30_000, r, 0).0.allowed);
        // A zero limit: a look is refused too.
        assert!(!gcra(None, T0, rate(0, 60), 0).0.allowed);
    }

    #[test]
    fn a_cost_above_the_limit_never_passes() {
        let r = rate(10, 60);
        let (d, next) = gcra(None, T0, r, 11);
        assert!(next.is_none());
        assert_eq!(
            (d.allowed, d.remaining, d.retry_after_secs),
            (false, 10, 60)
        );
        let (d, _) = gcra(None, T0 + 10_000_000, r, u32::MAX);
        assert!(!d.allowed);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        // 3/1s: after the burst the next one passes at 333.33 ms, so Retry-After is 1.
        let r = rate(3, 1);
        let mut b = Bucket::default();
        for _ in 0..3 {
            assert!(b.hit(0, r, 1).allowed);
        }
        let d = b.hit(0, r, 1);
        assert_eq!((d.retry_after_secs, d.reset_after_secs), (1, 1));
        assert!(!b.hit(333, r, 1).allowed);
        assert!(b.hit(334, r, 1).allowed);
    }

    #[test]
    fn a_lowered_rate_does_not_keep_old_debt() {
        let mut b = Bucket::default();
        let big = rate(1000, 86_400);
        for _ in 0..500 {
            assert!(b.hit(T0, big, 1).allowed);
        }
        // Half a day of debt under the old rate; under 10/1m it is at most one window.
        let small = rate(10, 60);
        let d = b.hit(T0, small, 1);
        assert!(!d.allowed);
        assert_eq!(
            (d.remaining, d.reset_after_secs, d.retry_after_secs),
            (0, 60, 6)
        );
        assert!(b.hit(T0 + 6_000, small, 1).allowed);
        // A raised rate reads the old state in its own units.
        let mut b = Bucket::default();
        assert!(b.hit(T0, rate(2, 1), 1).allowed); // tat = T0 + 500
        let (d, _) = gcra(b.tat, T0, rate(4, 1), 0);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn extreme_inputs_do_not_overflow() {
        let huge_window = Rate {
            count: u32::MAX,
            window: Span::from_secs(u64::MAX),
        };
        let tats = [
            None,
            Some(Tat::at_ms(i64::MAX)),
            Some(Tat::at_ms(i64::MIN)),
            Some(Tat {
                ms: 5,
                behind: u32::MAX,
                per: 0,
            }),
        ];
        for now in [i64::MIN, -1, 0, T0, i64::MAX] {
            for r in [
                huge_window,
                rate(1, 1),
                rate(u32::MAX, 1),
                rate(0, 0),
                rate(3, 0),
            ] {
                for cost in [0, 1, 2, u32::MAX] {
                    for tat in tats {
                        let (d, next) = gcra(tat, now, r, cost);
                        assert!(d.remaining <= d.limit);
                        assert!(d.allowed || d.retry_after_secs >= 1);
                        if let Some(t) = next {
                            assert!(t.behind < t.per.max(1));
                        }
                    }
                }
            }
        }
        // A zero count lets nothing through.
        let (d, _) = gcra(None, T0, rate(0, 60), 1);
        assert!(!d.allowed && d.retry_after_secs == 60);
    }

    #[test]
    fn state_expiry() {
        let r = rate(10, 60);
        let (_, next) = gcra(None, T0, r, 1);
        let t = next.unwrap();
        assert_eq!(t.ms, T0 + 6_000);
        assert_eq!(t.ttl_ms(T0), 6_000);
        assert!(!t.is_spent(T0 + 5_999) && t.is_spent(T0 + 6_000));
        assert_eq!(t.ttl_ms(T0 + 7_000), 0);
    }

    fn arb_rate() -> impl Strategy<Value = Rate> {
        (1u32..=25, 1u64..=120).prop_map(|(c, s)| rate(c, s))
    }

    /// Request times (non-decreasing, starting at T0) and costs for a rate.
    fn arb_requests(r: Rate) -> impl Strategy<Value = Vec<(i64, u32)>> {
        let w = (r.window.secs() * 1000) as i64;
        prop::collection::vec((0..=w / 4, 0..=r.count + 1), 1..120).prop_map(|steps| {
            let mut t = T0;
            steps
                .into_iter()
                .map(|(dt, cost)| {
                    t += dt;
                    (t, cost)
                })
                .collect()
        })
    }

    fn arb_case() -> impl Strategy<Value = (Rate, Vec<(i64, u32)>)> {
        arb_rate().prop_flat_map(|r| (Just(r), arb_requests(r)))
    }

    proptest! {
        #[test]
        fn never_more_than_the_rate_allows((r, reqs) in arb_case()) {
            let mut b = Bucket::default();
            let mut allowed: Vec<(i64, u64)> = Vec::new();
            for &(t, cost) in &reqs {
                let d = b.hit(t, r, cost);
                prop_assert!(d.remaining <= d.limit);
                prop_assert_eq!(d.allowed, d.retry_after_secs == 0);
                if d.allowed && cost > 0 {
                    allowed.push((t, u64::from(cost)));
                }
            }
            // In any span [a, a + L]: sum(cost) * W <= count * (W + L).
            let w = i128::from(r.window.secs()) * 1000;
            let count = i128::from(r.count);
            for i in 0..allowed.len() {
                let mut sum = 0i128;
                for &(t, cost) in &allowed[i..] {
                    sum += i128::from(cost);
                    let span = i128::from(t - allowed[i].0);
                    prop_assert!(sum * w <= count * (w + span),
                        "{} allowed in {} ms under {}", sum, span, r);
                    if span < w / count {
                        prop_assert!(sum <= count);
                    }
                }
            }
        }

        #[test]
        fn a_quiet_window_refills_the_whole_burst((r, reqs) in arb_case()) {
            let mut b = Bucket::default();
            let mut last = (T0, b.hit(T0, r, 0));
            for &(t, cost) in &reqs {
                last = (t, b.hit(t, r, cost));
            }
            // reset_after is exact: full then, not a second earlier.
            let (t, d) = last;
            let full_at = t + 1000 * d.reset_after_secs as i64;
            prop_assert_eq!(gcra(b.tat, full_at, r, 0).0.remaining, r.count);
            if d.reset_after_secs > 0 {
                prop_assert!(gcra(b.tat, full_at - 1000, r, 0).0.remaining < r.count);
            }
            let later = t + 1000 * r.window.secs() as i64;
            for _ in 0..r.count {
                prop_assert!(b.hit(later, r, 1).allowed);
            }
            prop_assert!(!b.hit(later, r, 1).allowed);
        }

        #[test]
        fn remaining_and_retry_after_are_exact((r, reqs) in arb_case(), probe in 1u32..=25) {
            let mut b = Bucket::default();
            for &(t, cost) in &reqs {
                let before = b.tat;
                let d = b.hit(t, r, cost);
                if d.allowed {
                    // Exactly `remaining` more unit requests pass at the same instant.
                    let mut tat = b.tat;
                    for _ in 0..d.remaining {
                        let (d2, next) = gcra(tat, t, r, 1);
                        prop_assert!(d2.allowed);
                        tat = next;
                    }
                    prop_assert!(!gcra(tat, t, r, 1).0.allowed);
                } else if cost <= r.count {
                    let ra = d.retry_after_secs as i64;
                    prop_assert!(ra >= 1);
                    prop_assert!(gcra(before, t + ra * 1000, r, cost).0.allowed);
                    prop_assert!(!gcra(before, t + (ra - 1) * 1000, r, cost).0.allowed);
                }
            }
            // The same for an arbitrary probe cost against the final state.
            let t = reqs.last().map_or(T0, |x| x.0);
            let probe = probe.min(r.count);
            let (d, _) = gcra(b.tat, t, r, probe);
            if !d.allowed {
                let ra = d.retry_after_secs as i64;
                prop_assert!(gcra(b.tat, t + ra * 1000, r, probe).0.allowed);
                prop_assert!(!gcra(b.tat, t + (ra - 1) * 1000, r, probe).0.allowed);
            }
        }

        #[test]
        fn gcra_never_panics(
            tat in proptest::option::of((any::<i64>(), any::<u32>(), any::<u32>())),
            now in any::<i64>(),
            count in any::<u32>(),
            secs in any::<u64>(),
            cost in any::<u32>(),
        ) {
            let tat = tat.map(|(ms, behind, per)| Tat { ms, behind, per });
            let r = Rate { count, window: Span::from_secs(secs) };
            let (d, _) = gcra(tat, now, r, cost);
            prop_assert!(d.remaining <= d.limit);
        }
    }

    // The failed-authentication block.

    fn policy() -> FailurePolicy {
        FailurePolicy::default()
    }

    #[test]
    fn ten_failures_within_five_minutes_block_for_fifteen() {
        let p = policy();
        let mut w = FailureWindow::new();
        for i in 0..9 {
            assert_eq!(w.record_failure(&p, T0 + i * 30_000), None, "failure {i}");
            assert_eq!(w.blocked(T0 + i * 30_000), None);
        }
        // The 10th, 4:59.999 after the first: blocked.
        let now = T0 + 299_999;
        assert_eq!(w.failures(&p, now), 9);
        assert_eq!(w.record_failure(&p, now), Some(900));
        assert_eq!(w.blocked(now), Some(900));
        assert_eq!(w.blocked(now + 1), Some(900));
        assert_eq!(w.blocked(now + 1_000), Some(899));
        assert_eq!(w.blocked(now + 899_001), Some(1));
        assert_eq!(w.blocked(now + 899_999), Some(1));
        // Failures during the block do not extend it.
        assert_eq!(w.record_failure(&p, now + 600_000), Some(300));
        assert_eq!(w.blocked_until(), Some(now + 900_000));
        assert!(!w.is_idle(&p, now + 899_999));
        // Over: a fresh count.
        assert_eq!(w.blocked(now + 900_000), None);
        assert!(w.is_idle(&p, now + 900_000));
        assert_eq!(w.record_failure(&p, now + 900_000), None);
        assert_eq!(w.failures(&p, now + 900_000), 1);
    }

    #[test]
    fn a_block_learned_from_elsewhere_holds_until_its_end() {
        let p = policy();
        let mut w = FailureWindow::new();
        assert_eq!(w.record_failure(&p, T0), None);
        w.learn_block(T0 + 60_000);
        assert_eq!(w.blocked(T0 + 1_000), Some(59));
        assert_eq!(w.failures(&p, T0 + 1_000), 0);
        // An earlier end learned later changes nothing; a later one extends it.
        w.learn_block(T0 + 30_000);
        assert_eq!(w.blocked_until(), Some(T0 + 60_000));
        w.learn_block(T0 + 90_000);
        assert_eq!(w.blocked(T0 + 60_000), Some(30));
        assert!(w.is_idle(&p, T0 + 90_000));
        assert_eq!(w.blocked(T0 + 90_000), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let p = policy();
        let mut w = FailureWindow::new();
        // 10 failures spread over exactly 5 minutes: the first has expired when the 10th comes.
        for i in 0..9 {
            assert_eq!(w.record_failure(&p, T0 + i * 37_500), None);
        }
        assert_eq!(w.record_failure(&p, T0 + 300_000), None);
        assert_eq!(w.failures(&p, T0 + 300_000), 9);
        // The next one makes 10 within the window (37.5 s .. 300 s .. now).
        assert_eq!(w.record_failure(&p, T0 + 300_001), Some(900));
    }

    #[test]
    fn a_slow_trickle_is_never_blocked() {
        // One failure every 34 s: any 10 of them span 306 s, more than the window.
        let p = policy();
        let mut w = FailureWindow::new();
        for i in 0..1_000 {
            assert_eq!(w.record_failure(&p, T0 + i * 34_000), None);
        }
        assert_eq!(w.failures(&p, T0 + 999 * 34_000), 9);
        assert!(w.recent.len() <= 10);
        assert_eq!(w.expires_at(&p), T0 + 999 * 34_000 + 300_000);
    }

    #[test]
    fn the_numbers_are_configurable() {
        let p = FailurePolicy {
            failures: rate(3, 60),
            block: Span::from_secs(90),
        };
        let mut w = FailureWindow::new();
        assert_eq!(w.record_failure(&p, T0), None);
        assert_eq!(w.record_failure(&p, T0 + 10), None);
        assert_eq!(w.record_failure(&p, T0 + 20), Some(90));
        assert_eq!(w.blocked(T0 + 60_000), Some(31));
        assert_eq!(w.expires_at(&p), T0 + 90_020);
        // A clock that steps back still counts correctly.
        let mut w = FailureWindow::new();
        assert_eq!(w.record_failure(&p, T0 + 50_000), None);
        assert_eq!(w.record_failure(&p, T0), None);
        assert_eq!(w.failures(&p, T0 + 65_000), 1);
        assert_eq!(w.record_failure(&p, T0 + 65_000), None);
        assert_eq!(w.record_failure(&p, T0 + 66_000), Some(90));
    }

    #[test]
    fn extreme_failure_times_do_not_overflow() {
        let p = FailurePolicy {
            failures: rate(2, u64::MAX),
            block: Span::from_secs(u64::MAX),
        };
        let mut w = FailureWindow::new();
        assert_eq!(w.record_failure(&p, i64::MAX), None);
        assert!(w.record_failure(&p, i64::MIN).is_some());
        assert_eq!(w.blocked(i64::MIN), Some(i64::MAX as u64 / 1000 + 1));
        assert_eq!(w.blocked(i64::MAX), None);
        assert_eq!(w.expires_at(&p), -1);
        let mut w = FailureWindow::new();
        assert_eq!(w.record_failure(&p, i64::MAX), None);
        assert_eq!(w.record_failure(&p, i64::MAX), Some(1));
        assert_eq!(w.expires_at(&p), i64::MAX);
        let mut w = FailureWindow::new();
        let zero = FailurePolicy {
            failures: rate(0, 0),
            block: Span::from_secs(0),
        };
        assert_eq!(w.record_failure(&zero, T0), Some(1));
        assert_eq!(w.blocked(T0), None);
    }
}
