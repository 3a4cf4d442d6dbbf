-- Identity: MFA, login throttling, sessions and refresh tokens, single-use tokens, JWT signing
-- keys and the audit log. SQLite flavour; keep in step with ../postgres/0002_identity.sql.
-- Booleans are INTEGER 0/1; timestamps are INTEGER milliseconds since the Unix epoch. Tokens are
-- stored as SHA-256 hex digests, never in clear; secrets are sealed under the master key.

-- The enabled TOTP secret, one awaiting confirmation, and the last accepted time step.
ALTER TABLE users ADD COLUMN mfa_secret TEXT;
ALTER TABLE users ADD COLUMN mfa_pending TEXT;
ALTER TABLE users ADD COLUMN mfa_last_step INTEGER;

CREATE TABLE recovery_codes (
    user_id    TEXT    NOT NULL
        CONSTRAINT recovery_codes_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT    NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL,
    CONSTRAINT recovery_codes_pkey PRIMARY KEY (user_id, code_hash)
) STRICT;

-- Failed logins per email (keyed by a hash of the normalised email, existing or not).
-- locked_until is 0 when not locked.
CREATE TABLE login_throttle (
    key          TEXT    NOT NULL PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE sessions (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL
        CONSTRAINT sessions_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    ip           TEXT,
    user_agent   TEXT
) STRICT;

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token a session has had: spent ones stay so that presenting one again is seen
-- as reuse.
CREATE TABLE refresh_tokens (
    hash       TEXT    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL
        CONSTRAINT refresh_tokens_session_id_fkey REFERENCES sessions (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    spent_at   INTEGER
) STRICT;

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE mfa_challenges (
    hash       TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL
        CONSTRAINT mfa_challenges_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id);

CREATE TABLE password_resets (
    hash       TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL
        CONSTRAINT password_resets_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

CREATE INDEX password_resets_user_id_idx ON password_resets (user_id);

CREATE TABLE signing_keys (
    kid            TEXT    NOT NULL PRIMARY KEY,
    sealed_private TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

-- Append-only. No foreign keys: entries outlive the workspaces and users they name.
CREATE TABLE audit_log (
    id           TEXT    NOT NULL PRIMARY KEY,
    at           INTEGER NOT NULL,
    workspace_id TEXT,
    actor_type   TEXT    NOT NULL
        CONSTRAINT audit_log_actor_type_check
        CHECK (actor_type IN ('user', 'key', 'app', 'anonymous')),
    actor_id     TEXT,
    action       TEXT    NOT NULL,
    target       TEXT,
    ip           TEXT,
    user_agent   TEXT,
    outcome      TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_log_workspace_id_idx ON audit_log (workspace_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
