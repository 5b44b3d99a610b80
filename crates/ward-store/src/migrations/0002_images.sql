-- Schema version 2: image references. An image is a name in a project that points at a
-- manifest in the shared, content-addressed blob store; blobs themselves live on disk.

CREATE TABLE images (
    project         TEXT    NOT NULL REFERENCES projects (name),
    reference       TEXT    NOT NULL CHECK (reference <> ''),
    manifest_digest TEXT    NOT NULL,
    config_digest   TEXT    NOT NULL,
    size            INTEGER NOT NULL CHECK (size >= 0),
    platform        TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (project, reference)
) STRICT;

CREATE INDEX images_by_digest ON images (manifest_digest);
