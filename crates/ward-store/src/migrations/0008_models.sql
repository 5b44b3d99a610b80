-- Schema version 8: models. A model is a name in a project that points at a file in the
-- shared, content-addressed model store; what the file says of itself is kept beside it.

CREATE TABLE models (
    project        TEXT    NOT NULL REFERENCES projects (name),
    name           TEXT    NOT NULL CHECK (name <> ''),
    digest         TEXT    NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    format         TEXT    NOT NULL,
    metadata_json  TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) STRICT;

CREATE INDEX models_by_digest ON models (digest);
