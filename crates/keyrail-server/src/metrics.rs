//! Prometheus metrics of the HTTP layer, kept in atomics: request counts by method, route
//! template and status, and latency histograms by method and route template.
//!
//! Every label comes from a fixed set, so no request can add a series: the method is one of
//! [`METHODS`] (anything else is `OTHER`) and the route is a template of the router (anything
//! unmatched is `unmatched`). The hot path does one read-locked map lookup and a few atomic adds;
//! no allocation once a (route, method) pair has been seen.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::Method;

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

/// The `method` label values; any other method is counted as `OTHER`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Route templates come from the router, a fixed set; this bound only guards against a router
/// that would produce templates without end. Past it, requests count as `unmatched`.
const MAX_ROUTES: usize = 1024;

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

#[derive(Default)]
struct RouteStats {
    by_status: [AtomicU64; STATUSES.len()],
    by_class: [AtomicU64; 6],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// One route template's counters, one slot per method in [`METHODS`], made on first use.
#[derive(Default)]
struct ByMethod([OnceLock<Box<RouteStats>>; METHODS.len()]);

impl ByMethod {
    fn get(&self, method: usize) -> &RouteStats {
        self.0[method].get_or_init(Box::default)
    }
}

/// Counters for every (method, route template) seen.
#[derive(Default)]
pub struct HttpMetrics {
    /// Route template -> its counters by method.
    routes: RwLock<HashMap<String, Arc<ByMethod>>>,
}

impl HttpMetrics {
    /// The process-wide registry (every server in a process shares it, like one Prometheus
    /// target).
    pub fn global() -> &'static HttpMetrics {
        static M: OnceLock<HttpMetrics> = OnceLock::new();
        M.get_or_init(HttpMetrics::default)
    }

    fn route(&self, route: &str) -> Arc<ByMethod> {
        {
            let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = map.get(route) {
                return r.clone();
            }
        }
        let mut map = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let route = if map.len() >= MAX_ROUTES && !map.contains_key(route) {
            UNMATCHED
        } else {
            route
        };
        map.entry(route.to_owned()).or_default().clone()
    }

    /// Counts one answered request. `route` is the matched route template, or `None`.
    pub fn record(&self, method: &Method, route: Option<&str>, status: u16, elapsed: Duration) {
        let by_method = self.route(route.unwrap_or(UNMATCHED));
        let s = by_method.get(method_index(method));
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
        let mut rows: Vec<((&str, &str), &RouteStats)> = map
            .iter()
            .flat_map(|(route, methods)| {
                METHODS
                    .iter()
                    .zip(methods.0.iter())
                    .filter_map(move |(m, s)| s.get().map(|s| ((*m, route.as_str()), s.as_ref())))
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
        let get = Method::GET;
        m.record(&get, Some("/a/{id}"), 200, Duration::from_micros(90));
        m.record(&get, Some("/a/{id}"), 200, Duration::from_micros(3_000));
        m.record(&get, Some("/a/{id}"), 418, Duration::from_micros(3_000));
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

    #[test]
    fn labels_come_from_a_fixed_set() {
        let m = HttpMetrics::default();
        for i in 0..500 {
            let odd = Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
            m.record(&odd, None, 404, Duration::from_micros(10));
            m.record(&odd, Some("/a/{id}"), 405, Duration::from_micros(10));
        }
        m.record(&Method::PATCH, None, 404, Duration::from_micros(10));
        let text = m.render();
        assert!(
            text.contains(r#"{method="OTHER",route="unmatched",status="404"} 500"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{method="OTHER",route="/a/{id}",status="405"} 500"#),
            "{text}"
        );
        assert!(text.contains(r#"method="PATCH",route="unmatched""#));
        assert!(!text.contains("M1"), "{text}");
        assert_eq!(m.routes.read().unwrap().len(), 2);
    }
}
