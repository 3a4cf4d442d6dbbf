-- Webhooks. PostgreSQL flavour; keep in step with ../sqlite/0008_webhooks.sql.
--
-- webhook_secrets: a workspace's signing secret, sealed under the master key; after a rotation
-- the one it replaced (previous_sealed) signs too until previous_until.
-- webhook_endpoints: events is the JSON array of subscribed event types; disabled_at is set
-- when a delivery was answered 410.
-- webhook_events is the outbox: one row per event and workspace (id = the `webhook-id`, the
-- same on every retry), written in the transaction of the change, with the body to send.
-- webhook_jobs: one row per message still to deliver to an endpoint; due_at is when it may be
-- claimed next (a claim sets it to the end of the claim's lease); claim names the claimer.
-- webhook_deliveries: every attempt, listed by GET W/webhooks/{id}/deliveries.
-- keys.expiring_stage: which key.expiring events a key had (1 = 7 days, 2 = 1 day before).

CREATE TABLE webhook_secrets (
    workspace_id    TEXT COLLATE "C" NOT NULL,
    sealed          TEXT   NOT NULL,
    previous_sealed TEXT,
    previous_until  BIGINT,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT webhook_secrets_pkey PRIMARY KEY (workspace_id),
    CONSTRAINT webhook_secrets_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE
);

CREATE TABLE webhook_endpoints (
    id           TEXT COLLATE "C" NOT NULL,
    workspace_id TEXT COLLATE "C" NOT NULL,
    url          TEXT   NOT NULL,
    events       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    disabled_at  BIGINT,
    CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_endpoints_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE
);

CREATE INDEX webhook_endpoints_workspace_id_idx ON webhook_endpoints (workspace_id, id);

CREATE TABLE webhook_events (
    id           TEXT COLLATE "C" NOT NULL,
    workspace_id TEXT COLLATE "C" NOT NULL,
    event_type   TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    at           BIGINT NOT NULL,
    CONSTRAINT webhook_events_pkey PRIMARY KEY (id)
);

CREATE INDEX webhook_events_at_idx ON webhook_events (at);

CREATE TABLE webhook_jobs (
    event_id    TEXT COLLATE "C" NOT NULL,
    endpoint_id TEXT COLLATE "C" NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      BIGINT  NOT NULL,
    claim       TEXT,
    CONSTRAINT webhook_jobs_pkey PRIMARY KEY (event_id, endpoint_id),
    CONSTRAINT webhook_jobs_event_id_fkey FOREIGN KEY (event_id)
        REFERENCES webhook_events (id) ON DELETE CASCADE,
    CONSTRAINT webhook_jobs_endpoint_id_fkey FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE
);

CREATE INDEX webhook_jobs_due_at_idx ON webhook_jobs (due_at);
CREATE INDEX webhook_jobs_endpoint_id_idx ON webhook_jobs (endpoint_id);

CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" NOT NULL,
    endpoint_id     TEXT COLLATE "C" NOT NULL,
    event_id        TEXT COLLATE "C" NOT NULL,
    event_type      TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    status_code     INTEGER,
    ok              BOOLEAN NOT NULL,
    error           TEXT,
    next_attempt_at BIGINT,
    at              BIGINT  NOT NULL,
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE
);

CREATE INDEX webhook_deliveries_endpoint_id_idx ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_at_idx ON webhook_deliveries (at);

ALTER TABLE keys ADD COLUMN expiring_stage INTEGER NOT NULL DEFAULT 0;
-- What the key.expiring scan reads every minute: keys that can expire and are not revoked.
CREATE INDEX keys_expiring_idx ON keys (expires_at, expiring_stage)
    WHERE expires_at IS NOT NULL AND revoked_at IS NULL;
