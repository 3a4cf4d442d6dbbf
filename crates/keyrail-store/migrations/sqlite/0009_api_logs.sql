-- The API request log (API.md "Audit, logs, export"): one row per API request, written in
-- batches by the server, deleted after `api_logs_days`. SQLite flavour; keep in step with
-- ../postgres/0009_api_logs.sql.
--
-- `id` is the rowid (no second B-tree to fill on insert): it grows as rows are written, and
-- listings page on it, newest first. Never holds a secret: the principal is an id.
CREATE TABLE api_logs (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    method         TEXT    NOT NULL,
    route          TEXT    NOT NULL,
    status         INTEGER NOT NULL,
    latency_us     INTEGER NOT NULL,
    principal_type TEXT,
    principal_id   TEXT,
    workspace_id   TEXT,
    ip             TEXT,
    user_agent     TEXT,
    request_id     TEXT    NOT NULL
) STRICT;

-- A workspace's requests (W/logs), newest first.
CREATE INDEX api_logs_workspace_idx ON api_logs (workspace_id, id);
-- `?principal=`.
CREATE INDEX api_logs_principal_idx ON api_logs (principal_id, id);
-- The retention cleanup, oldest first; and `?since=` / `?until=` platform-wide.
CREATE INDEX api_logs_at_idx ON api_logs (at);
