-- Apps (OAuth-style integrations). SQLite flavour; keep in step with ../postgres/0005_apps.sql.
-- Booleans are INTEGER 0/1; timestamps are INTEGER milliseconds since the Unix epoch.

CREATE TABLE builder_profiles (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL
        CONSTRAINT builder_profiles_user_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    website    TEXT,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX builder_profiles_user_id_idx ON builder_profiles (user_id, id);

CREATE TABLE apps (
    client_id              TEXT    NOT NULL PRIMARY KEY,
    owner_id               TEXT    NOT NULL
        CONSTRAINT apps_owner_id_fkey REFERENCES users (id) ON DELETE CASCADE,
    builder_profile_id     TEXT    NOT NULL
        CONSTRAINT apps_builder_profile_id_fkey
        REFERENCES builder_profiles (id) ON DELETE CASCADE,
    name                   TEXT    NOT NULL,
    description            TEXT    NOT NULL,
    workspace_restrictions TEXT,
    active                 INTEGER NOT NULL CHECK (active IN (0, 1)),
    sealed_secret          TEXT    NOT NULL,
    secret_generation      INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
) STRICT;

CREATE INDEX apps_owner_id_idx ON apps (owner_id, client_id);

CREATE TABLE grants (
    id           TEXT    NOT NULL PRIMARY KEY,
    client_id    TEXT    NOT NULL
        CONSTRAINT grants_client_id_fkey REFERENCES apps (client_id) ON DELETE CASCADE,
    workspace_id TEXT    NOT NULL
        CONSTRAINT grants_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    member_id    TEXT    NOT NULL
        CONSTRAINT grants_member_id_fkey REFERENCES members (id) ON DELETE CASCADE,
    scopes       TEXT    NOT NULL,
    shared       INTEGER NOT NULL CHECK (shared IN (0, 1)),
    created_at   INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX grants_shared_key ON grants (client_id, workspace_id) WHERE shared;
CREATE UNIQUE INDEX grants_personal_key ON grants (client_id, member_id) WHERE NOT shared;
CREATE INDEX grants_workspace_id_idx ON grants (workspace_id, id);
CREATE INDEX grants_member_id_idx ON grants (member_id);

CREATE TABLE token_keys (
    kid        TEXT    NOT NULL PRIMARY KEY,
    sealed_key TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
