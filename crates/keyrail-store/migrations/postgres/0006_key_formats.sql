-- Every key format a workspace has used (the JSON of `workspaces.key_format`), so that a node
-- starting up knows the shape of keys made before their workspace changed its format: verify's
-- checksum precheck must never refuse them.
CREATE TABLE key_formats (
    format TEXT NOT NULL,
    CONSTRAINT key_formats_pkey PRIMARY KEY (format)
);

INSERT INTO key_formats (format) SELECT DISTINCT key_format FROM workspaces;
