-- Workspaces: their own scopes and custom roles. PostgreSQL flavour; keep in step with
-- ../sqlite/0003_workspaces.sql. Ids and names use the "C" collation (byte order, as on SQLite:
-- lists are sorted by name). Timestamps are BIGINT milliseconds since the Unix epoch.
--
-- Everything that belongs to a workspace references it with ON DELETE CASCADE: deleting the
-- workspace row removes it all (the store's delete_workspace relies on this). A later table that
-- belongs to a workspace (keys, grants, webhooks, ...) must do the same.

-- Scopes a workspace defined for its own API (`chats:read`), beside the built-in catalog.
CREATE TABLE scopes (
    workspace_id TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    description  TEXT    NOT NULL,
    dangerous    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT  NOT NULL,
    CONSTRAINT scopes_pkey PRIMARY KEY (workspace_id, name),
    CONSTRAINT scopes_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE
);

-- Custom roles: a named set of scopes. `scopes` is a JSON array of scope names. A member holding
-- a custom role stores the role's id in members.role (a built-in role by its name).
CREATE TABLE roles (
    id           TEXT COLLATE "C" NOT NULL,
    workspace_id TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    scopes       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    CONSTRAINT roles_pkey PRIMARY KEY (id),
    CONSTRAINT roles_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE,
    CONSTRAINT roles_workspace_name_key UNIQUE (workspace_id, name)
);

-- Counting a workspace's owners (the last-owner guard) and a role's holders.
CREATE INDEX members_workspace_role_idx ON members (workspace_id, role);
