//! Prometheus metrics of the HTTP layer, kept in atomics: request counts by method, route
//! template and status, and latency histograms by method and route template. The hot path does
//! one read-locked map lookup and a few atomic adds; no allocation once a route has been seen.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The statuses counted one by one; anything else is counted under its class (`2xx`...).
const STATUSES: [u16; 20] = [
    200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 502,
    503,
];

#[derive(Default)]
struct RouteStats {
    by_status: [AtomicU64; STATUSES.len()],
    by_class: [AtomicU64; 6],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// The methods seen on one route template (a handful) and their counters.
type ByMethod = Vec<(String, Arc<RouteStats>)>;

/// Counters for every (method, route template) seen.
#[derive(Default)]
pub struct HttpMetrics {
    /// Route template -> the methods seen on it (a handful).
    routes: RwLock<HashMap<String, ByMethod>>,
}

impl HttpMetrics {
    /// The process-wide registry (every server in a process shares it, like one Prometheus
    /// target).
    pub fn global() -> &'static HttpMetrics {
        static M: OnceLock<HttpMetrics> = OnceLock::new();
        M.get_or_init(HttpMetrics::default)
    }

    fn stats(&self, method: &str, route: &str) -> Arc<RouteStats> {
        {
            let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, s)) = map
                .get(route)
                .and_then(|methods| methods.iter().find(|(m, _)| m == method))
            {
                return s.clone();
            }
        }
        let mut map = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let methods = map.entry(route.to_owned()).or_default();
        if let Some((_, s)) = methods.iter().find(|(m, _)| m == method) {
            return s.clone();
        }
        let stats = Arc::new(RouteStats::default());
        methods.push((method.to_owned(), stats.clone()));
        stats
    }

    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let s = self.stats(method, route);
        match STATUSES.iter().position(|&x| x == status) {
            Some(i) => s.by_status[i].fetch_add(1, Ordering::Relaxed),
            None => s.by_class[usize::from(status / 100).min(5)].fetch_add(1, Ordering::Relaxed),
        };
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            s.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<((&str, &str), &Arc<RouteStats>)> = map
            .iter()
            .flat_map(|(route, methods)| {
                methods
                    .iter()
                    .map(move |(m, s)| ((m.as_str(), route.as_str()), s))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP keyrail_http_requests_total HTTP requests answered, by method, route template and status\n");
        out.push_str("# TYPE keyrail_http_requests_total counter\n");
        for ((method, route), s) in &rows {
            let route = escape(route);
            for (i, status) in STATUSES.iter().enumerate() {
                let n = s.by_status[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "keyrail_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
            for (class, c) in s.by_class.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "keyrail_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}xx\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP keyrail_http_request_duration_seconds HTTP request latency, by method and route template\n");
        out.push_str("# TYPE keyrail_http_request_duration_seconds histogram\n");
        for ((method, route), s) in &rows {
            let route = escape(route);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS_US.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let le = *bound as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "keyrail_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "keyrail_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let sum = s.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "keyrail_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "keyrail_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} {count}"
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = HttpMetrics::default();
        m.record("GET", "/a/{id}", 200, Duration::from_micros(90));
        m.record("GET", "/a/{id}", 200, Duration::from_micros(3_000));
        m.record("GET", "/a/{id}", 418, Duration::from_micros(3_000));
        let text = m.render();
        assert!(
            text.contains(
                r#"keyrail_http_requests_total{method="GET",route="/a/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"status="4xx"} 1"#), "{text}");
        assert!(text.contains(r#"le="0.0001"} 1"#), "{text}");
        assert!(text.contains(r#"le="0.005"} 3"#), "{text}");
        assert!(text.contains(r#"le="+Inf"} 3"#), "{text}");
        assert!(
            text.contains(r#"_count{method="GET",route="/a/{id}"} 3"#),
            "{text}"
        );
    }
}
