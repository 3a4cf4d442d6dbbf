-- The OAuth 2.1 authorization server of /mcp (API.md "MCP and OAuth 2.1"). PostgreSQL flavour;
-- keep in step with ../sqlite/0010_oauth.sql.
--
-- A client registered by RFC 7591 dynamic registration is an app of kind 'public': nobody owns
-- it (owner_id and builder_profile_id are NULL), it has no usable secret, and it lists the
-- redirect URIs it may use (a JSON array).
ALTER TABLE apps ALTER COLUMN owner_id DROP NOT NULL;
ALTER TABLE apps ALTER COLUMN builder_profile_id DROP NOT NULL;
ALTER TABLE apps ADD COLUMN kind TEXT NOT NULL DEFAULT 'confidential'
    CONSTRAINT apps_kind_check CHECK (kind IN ('confidential', 'public'));
ALTER TABLE apps ADD COLUMN redirect_uris TEXT;
ALTER TABLE apps ADD CONSTRAINT apps_public_owner_check
    CHECK ((kind = 'public') = (owner_id IS NULL));
ALTER TABLE apps ADD CONSTRAINT apps_public_profile_check
    CHECK ((kind = 'public') = (builder_profile_id IS NULL));
-- The cleanup of public clients nobody granted.
CREATE INDEX apps_kind_created_idx ON apps (kind, created_at);

-- Authorization codes: single use, a minute long. `used` stays set so that a second use is
-- recognised (and revokes the grant, RFC 9700 4.2.1 / OAuth 2.1 4.1.3).
CREATE TABLE oauth_codes (
    code_hash      TEXT COLLATE "C" NOT NULL,
    client_id      TEXT COLLATE "C" NOT NULL,
    grant_id       TEXT COLLATE "C" NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    used           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    CONSTRAINT oauth_codes_pkey PRIMARY KEY (code_hash),
    CONSTRAINT oauth_codes_client_id_fkey FOREIGN KEY (client_id)
        REFERENCES apps (client_id) ON DELETE CASCADE,
    CONSTRAINT oauth_codes_grant_id_fkey FOREIGN KEY (grant_id)
        REFERENCES grants (id) ON DELETE CASCADE
);

CREATE INDEX oauth_codes_grant_id_idx ON oauth_codes (grant_id);
CREATE INDEX oauth_codes_expires_at_idx ON oauth_codes (expires_at);

-- Refresh tokens of OAuth clients, rotated on every use; a used one presented again revokes
-- the grant (the rule of the sessions' refresh tokens).
CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    grant_id   TEXT COLLATE "C" NOT NULL,
    resource   TEXT    NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    CONSTRAINT oauth_refresh_tokens_pkey PRIMARY KEY (token_hash),
    CONSTRAINT oauth_refresh_tokens_client_id_fkey FOREIGN KEY (client_id)
        REFERENCES apps (client_id) ON DELETE CASCADE,
    CONSTRAINT oauth_refresh_tokens_grant_id_fkey FOREIGN KEY (grant_id)
        REFERENCES grants (id) ON DELETE CASCADE
);

CREATE INDEX oauth_refresh_tokens_grant_id_idx ON oauth_refresh_tokens (grant_id);
CREATE INDEX oauth_refresh_tokens_expires_at_idx ON oauth_refresh_tokens (expires_at);
