//! The keys, identity, apps, OAuth and MCP suites again, each test against a two-node cluster: both nodes
//! on one fresh PostgreSQL database and one `redis-server` of the test's own, sharing the
//! master key and the manual clock, behind a round-robin balancer, so consecutive requests of
//! a test reach different nodes (see `common::cluster_mode` and `common::Balancer`). Before each
//! request the balancer waits until both nodes have applied the change log, so what one node
//! wrote is in force on the other as it is, milliseconds later, in a real cluster.
//!
//! Without PostgreSQL or `redis-server` the tests print `SKIPPED:` and run on one node, except
//! under `CI`, where they fail. Tests about one node's internals say `SKIPPED in cluster mode`.
// Each suite has its own `mod common;`, as in its own binary: a copy of the helpers each.
#![allow(clippy::duplicate_mod)]

#[path = "apps.rs"]
mod apps;
#[path = "identity.rs"]
mod identity;
#[path = "keys.rs"]
mod keys;
#[path = "mcp.rs"]
mod mcp;
#[path = "oauth.rs"]
mod oauth;
