-- keyrail schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql: same tables,
-- columns and constraint names, so one body of SQL serves both backends.
-- Booleans are INTEGER 0/1; timestamps are INTEGER milliseconds since the Unix epoch.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    mfa_enabled   INTEGER NOT NULL DEFAULT 0 CHECK (mfa_enabled IN (0, 1)),
    superuser     INTEGER NOT NULL DEFAULT 0 CHECK (superuser IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
) STRICT;

CREATE TABLE workspaces (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    key_format TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE members (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL
        CONSTRAINT members_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      TEXT    NOT NULL
        CONSTRAINT members_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    CONSTRAINT members_workspace_user_key UNIQUE (workspace_id, user_id)
) STRICT;

CREATE INDEX members_user_id_idx ON members (user_id);

-- The change log every node polls to evict what it cached. AUTOINCREMENT: a seq is never reused,
-- even after old entries are pruned.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL
) STRICT;
