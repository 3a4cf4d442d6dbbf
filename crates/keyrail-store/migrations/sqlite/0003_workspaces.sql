-- Workspaces: their own scopes and custom roles. SQLite flavour; keep in step with
-- ../postgres/0003_workspaces.sql. Booleans are INTEGER 0/1; timestamps are INTEGER milliseconds
-- since the Unix epoch.
--
-- Everything that belongs to a workspace references it with ON DELETE CASCADE: deleting the
-- workspace row removes it all (the store's delete_workspace relies on this). A later table that
-- belongs to a workspace (keys, grants, webhooks, ...) must do the same.

-- Scopes a workspace defined for its own API (`chats:read`), beside the built-in catalog.
CREATE TABLE scopes (
    workspace_id TEXT    NOT NULL
        CONSTRAINT scopes_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    dangerous    INTEGER NOT NULL DEFAULT 0 CHECK (dangerous IN (0, 1)),
    created_at   INTEGER NOT NULL,
    CONSTRAINT scopes_pkey PRIMARY KEY (workspace_id, name)
) STRICT;

-- Custom roles: a named set of scopes. `scopes` is a JSON array of scope names. A member holding
-- a custom role stores the role's id in members.role (a built-in role by its name).
CREATE TABLE roles (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL
        CONSTRAINT roles_workspace_id_fkey REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CONSTRAINT roles_workspace_name_key UNIQUE (workspace_id, name)
) STRICT;

-- Counting a workspace's owners (the last-owner guard) and a role's holders.
CREATE INDEX members_workspace_role_idx ON members (workspace_id, role);
