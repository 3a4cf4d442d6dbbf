//! Starting a real server on 127.0.0.1:0 for black-box tests.
#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use keyrail_core::{ManualClock, Timestamp};
use keyrail_server::{AppState, Config, RunningServer, StartOptions};
use keyrail_store::testing::TempPostgres;

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub pg: Option<TempPostgres>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn config_in(dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.join("data");
    config.dev = true;
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Backend::Sqlite, |_| {}, None)
            .await
            .expect("sqlite always runs")
    }

    /// `None` when the backend is PostgreSQL and it is not reachable outside CI.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        extra: Option<Router<AppState>>,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let pg = TempPostgres::create().await?;
                config.database_url = pg.url.clone();
                Some(pg)
            }
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let server = keyrail_server::start(
            config,
            StartOptions {
                clock: clock.clone(),
                extra_routes: extra,
            },
        )
        .await
        .expect("server starts");
        let base = server.base_url();
        Some(Self {
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            clock,
            dir,
            pg,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// Status and JSON body.
pub async fn json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}
