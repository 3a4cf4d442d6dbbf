//! The API request log (API.md "Audit, logs, export"): one row per API request (method, route
//! template, status, latency, principal, workspace, ip, user agent, request id), written in
//! batches off the request path by the server, listed by superusers platform-wide and by
//! holders of `audit:read` for their workspace, deleted after `api_logs_days`.
//!
//! Rows never hold a secret: the principal is an id (key, user or grant), never a credential.

use crate::Timestamp;
use crate::error::Error;
use crate::model::{ActorType, Page};
use crate::platform::Admin;
use crate::workspaces::{Access, Actor, Workspaces};

/// The id of a request-log row: `log_<n>`, `n` increasing as rows are written (the table's own
/// sequence), so cursor pagination sorts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestLogId(pub i64);

impl RequestLogId {
    pub const PREFIX: &'static str = "log";

    /// Parses `log_<n>` as this server writes it; `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        let digits = s.strip_prefix("log_")?;
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|n| *n > 0).map(Self)
    }
}

impl std::fmt::Display for RequestLogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log_{}", self.0)
    }
}

/// Who made a logged request: `Key` (key id), `User` (user id) or `App` (grant id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedPrincipal {
    pub kind: ActorType,
    pub id: String,
}

/// One request as written to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogEntry {
    pub at: Timestamp,
    pub method: String,
    /// The route template (`/api/v1/w/{workspace_id}/keys/{key_id}`), never the raw path.
    pub route: String,
    pub status: u16,
    pub latency_us: i64,
    pub principal: Option<LoggedPrincipal>,
    pub workspace_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// A row read back: its id and what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogRow {
    pub id: RequestLogId,
    pub entry: RequestLogEntry,
}

/// Filters of a listing. Statuses between `status_min` and `status_max` (inclusive); `since`
/// inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLogFilter {
    /// `None` = platform-wide (superuser).
    pub workspace_id: Option<String>,
    pub status: Option<StatusFilter>,
    pub principal_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// `?status=`: one code (`404`) or a class (`4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFilter {
    pub min: u16,
    pub max: u16,
}

impl StatusFilter {
    /// `100`..`599`, or `1xx`..`5xx` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 3 || !(b'1'..=b'5').contains(&b[0]) {
            return None;
        }
        let class = u16::from(b[0] - b'0') * 100;
        if b[1..].eq_ignore_ascii_case(b"xx") {
            return Some(Self {
                min: class,
                max: class + 99,
            });
        }
        let code: u16 = s.parse().ok()?;
        Some(Self {
            min: code,
            max: code,
        })
    }
}

/// The most characters of a user agent kept in the log.
pub const USER_AGENT_MAX: usize = 256;

/// Checks the page's cursor: a `log_<n>` this server gave.
fn check_page(page: &Page) -> Result<(), Error> {
    match page.after.as_deref() {
        Some(c) if RequestLogId::parse(c).is_none() => Err(Error::invalid(
            "cursor",
            "cursor is not one this server gave",
        )),
        _ => Ok(()),
    }
}

impl Workspaces {
    /// The workspace's requests, newest first. [audit:read]
    pub async fn request_logs(
        &self,
        access: &Access,
        mut filter: RequestLogFilter,
        page: &Page,
    ) -> Result<Vec<RequestLogRow>, Error> {
        access.require(&["audit:read"])?;
        check_page(page)?;
        filter.workspace_id = Some(access.workspace.id.to_string());
        Ok(self.store.list_request_logs(&filter, page).await?)
    }
}

impl Admin {
    /// Every request of the platform, newest first. [admin:superuser]
    pub async fn request_logs(
        &self,
        actor: &Actor,
        filter: RequestLogFilter,
        page: &Page,
    ) -> Result<Vec<RequestLogRow>, Error> {
        if !actor.is_superuser() {
            return Err(crate::authz::insufficient_scope(vec![
                crate::authz::SUPERUSER.to_owned(),
            ]));
        }
        check_page(page)?;
        Ok(self.store.list_request_logs(&filter, page).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_what_this_server_never_gave() {
        let id = RequestLogId(42);
        assert_eq!(id.to_string(), "log_42");
        assert_eq!(RequestLogId::parse("log_42"), Some(id));
        for bad in [
            "",
            "log_",
            "log_0",
            "log_-1",
            "log_1a",
            "aud_42",
            "log_99999999999999999999",
        ] {
            assert_eq!(RequestLogId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_filters_are_codes_or_classes() {
        assert_eq!(
            StatusFilter::parse("404"),
            Some(StatusFilter { min: 404, max: 404 })
        );
        assert_eq!(
            StatusFilter::parse("4xx"),
            Some(StatusFilter { min: 400, max: 499 })
        );
        assert_eq!(
            StatusFilter::parse("5XX"),
            Some(StatusFilter { min: 500, max: 599 })
        );
        for bad in ["", "42", "600", "099", "6xx", "4x", "abc", "4x0", "+40"] {
            assert_eq!(StatusFilter::parse(bad), None, "{bad}");
        }
    }
}
