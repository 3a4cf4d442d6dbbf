-- Apps (OAuth-style integrations). PostgreSQL flavour; keep in step with ../sqlite/0005_apps.sql.
--
-- An app's client secret is kept sealed under the master key (sealed_secret): the server needs
-- it to encrypt the outer layer of every token. secret_generation grows with each new secret
-- and is carried in the inner token. workspace_restrictions is NULL (any workspace) or a JSON
-- array of workspace ids. A grant belongs to a member: removing the member, the workspace or
-- the app removes its grants. token_keys holds the server's keys for the inner tokens, sealed.

CREATE TABLE builder_profiles (
    id         TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    name       TEXT   NOT NULL,
    website    TEXT,
    created_at BIGINT NOT NULL,
    CONSTRAINT builder_profiles_pkey PRIMARY KEY (id),
    CONSTRAINT builder_profiles_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX builder_profiles_user_id_idx ON builder_profiles (user_id, id);

CREATE TABLE apps (
    client_id              TEXT COLLATE "C" NOT NULL,
    owner_id               TEXT COLLATE "C" NOT NULL,
    builder_profile_id     TEXT COLLATE "C" NOT NULL,
    name                   TEXT    NOT NULL,
    description            TEXT    NOT NULL,
    workspace_restrictions TEXT,
    active                 BOOLEAN NOT NULL,
    sealed_secret          TEXT    NOT NULL,
    secret_generation      BIGINT  NOT NULL,
    created_at             BIGINT  NOT NULL,
    updated_at             BIGINT  NOT NULL,
    CONSTRAINT apps_pkey PRIMARY KEY (client_id),
    CONSTRAINT apps_owner_id_fkey FOREIGN KEY (owner_id)
        REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT apps_builder_profile_id_fkey FOREIGN KEY (builder_profile_id)
        REFERENCES builder_profiles (id) ON DELETE CASCADE
);

CREATE INDEX apps_owner_id_idx ON apps (owner_id, client_id);

CREATE TABLE grants (
    id           TEXT COLLATE "C" NOT NULL,
    client_id    TEXT COLLATE "C" NOT NULL,
    workspace_id TEXT COLLATE "C" NOT NULL,
    member_id    TEXT COLLATE "C" NOT NULL,
    scopes       TEXT    NOT NULL,
    shared       BOOLEAN NOT NULL,
    created_at   BIGINT  NOT NULL,
    CONSTRAINT grants_pkey PRIMARY KEY (id),
    CONSTRAINT grants_client_id_fkey FOREIGN KEY (client_id)
        REFERENCES apps (client_id) ON DELETE CASCADE,
    CONSTRAINT grants_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE,
    CONSTRAINT grants_member_id_fkey FOREIGN KEY (member_id)
        REFERENCES members (id) ON DELETE CASCADE
);

-- One shared grant per app per workspace; one personal grant per app per member.
CREATE UNIQUE INDEX grants_shared_key ON grants (client_id, workspace_id) WHERE shared;
CREATE UNIQUE INDEX grants_personal_key ON grants (client_id, member_id) WHERE NOT shared;
CREATE INDEX grants_workspace_id_idx ON grants (workspace_id, id);
CREATE INDEX grants_member_id_idx ON grants (member_id);

CREATE TABLE token_keys (
    kid        TEXT COLLATE "C" NOT NULL,
    sealed_key TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT token_keys_pkey PRIMARY KEY (kid)
);
