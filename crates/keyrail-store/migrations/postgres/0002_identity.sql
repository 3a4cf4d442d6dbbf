-- Identity: MFA, login throttling, sessions and refresh tokens, single-use tokens, JWT signing
-- keys and the audit log. PostgreSQL flavour; keep in step with ../sqlite/0002_identity.sql.
-- Ids use the "C" collation (byte order, for keyset pagination). Timestamps are BIGINT
-- milliseconds since the Unix epoch. Tokens are stored as SHA-256 hex digests, never in clear;
-- secrets are sealed under the master key.

-- The enabled TOTP secret, one awaiting confirmation, and the last accepted time step.
ALTER TABLE users ADD COLUMN mfa_secret TEXT;
ALTER TABLE users ADD COLUMN mfa_pending TEXT;
ALTER TABLE users ADD COLUMN mfa_last_step BIGINT;

CREATE TABLE recovery_codes (
    user_id    TEXT COLLATE "C" NOT NULL,
    code_hash  TEXT COLLATE "C" NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL,
    CONSTRAINT recovery_codes_pkey PRIMARY KEY (user_id, code_hash),
    CONSTRAINT recovery_codes_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

-- Failed logins per email (keyed by a hash of the normalised email, existing or not).
-- locked_until is 0 when not locked.
CREATE TABLE login_throttle (
    key          TEXT COLLATE "C" NOT NULL,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT login_throttle_pkey PRIMARY KEY (key)
);

CREATE TABLE sessions (
    id           TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    ip           TEXT,
    user_agent   TEXT,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token a session has had: spent ones stay so that presenting one again is seen
-- as reuse.
CREATE TABLE refresh_tokens (
    hash       TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    spent_at   BIGINT,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (hash),
    CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id)
        REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE mfa_challenges (
    hash       TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    CONSTRAINT mfa_challenges_pkey PRIMARY KEY (hash),
    CONSTRAINT mfa_challenges_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id);

CREATE TABLE password_resets (
    hash       TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    CONSTRAINT password_resets_pkey PRIMARY KEY (hash),
    CONSTRAINT password_resets_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX password_resets_user_id_idx ON password_resets (user_id);

CREATE TABLE signing_keys (
    kid            TEXT COLLATE "C" NOT NULL,
    sealed_private TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    CONSTRAINT signing_keys_pkey PRIMARY KEY (kid)
);

-- Append-only. No foreign keys: entries outlive the workspaces and users they name.
CREATE TABLE audit_log (
    id           TEXT COLLATE "C" NOT NULL,
    at           BIGINT NOT NULL,
    workspace_id TEXT COLLATE "C",
    actor_type   TEXT   NOT NULL,
    actor_id     TEXT COLLATE "C",
    action       TEXT COLLATE "C" NOT NULL,
    target       TEXT,
    ip           TEXT,
    user_agent   TEXT,
    outcome      TEXT   NOT NULL,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id),
    CONSTRAINT audit_log_actor_type_check
        CHECK (actor_type IN ('user', 'key', 'app', 'anonymous'))
);

CREATE INDEX audit_log_workspace_id_idx ON audit_log (workspace_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
