-- Webhooks. SQLite flavour; keep in step with ../postgres/0008_webhooks.sql, which says what
-- each table holds.

CREATE TABLE webhook_secrets (
    workspace_id    TEXT    NOT NULL PRIMARY KEY
        CONSTRAINT webhook_secrets_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    sealed          TEXT    NOT NULL,
    previous_sealed TEXT,
    previous_until  INTEGER,
    updated_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_endpoints (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL
        CONSTRAINT webhook_endpoints_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    url          TEXT    NOT NULL,
    events       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    disabled_at  INTEGER
) STRICT;

CREATE INDEX webhook_endpoints_workspace_id_idx ON webhook_endpoints (workspace_id, id);

CREATE TABLE webhook_events (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    at           INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_events_at_idx ON webhook_events (at);

CREATE TABLE webhook_jobs (
    event_id    TEXT    NOT NULL
        CONSTRAINT webhook_jobs_event_id_fkey REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id TEXT    NOT NULL
        CONSTRAINT webhook_jobs_endpoint_id_fkey REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    claim       TEXT,
    PRIMARY KEY (event_id, endpoint_id)
) STRICT;

CREATE INDEX webhook_jobs_due_at_idx ON webhook_jobs (due_at);
CREATE INDEX webhook_jobs_endpoint_id_idx ON webhook_jobs (endpoint_id);

CREATE TABLE webhook_deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,
    endpoint_id     TEXT    NOT NULL
        CONSTRAINT webhook_deliveries_endpoint_id_fkey REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    status_code     INTEGER,
    ok              INTEGER NOT NULL CHECK (ok IN (0, 1)),
    error           TEXT,
    next_attempt_at INTEGER,
    at              INTEGER NOT NULL
) STRICT;

CREATE INDEX webhook_deliveries_endpoint_id_idx ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_at_idx ON webhook_deliveries (at);

ALTER TABLE keys ADD COLUMN expiring_stage INTEGER NOT NULL DEFAULT 0;
-- What the key.expiring scan reads every minute: keys that can expire and are not revoked.
CREATE INDEX keys_expiring_idx ON keys (expires_at, expiring_stage)
    WHERE expires_at IS NOT NULL AND revoked_at IS NULL;
