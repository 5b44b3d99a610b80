-- Schema version 6: users with argon2 password hashes, and their grants per project
-- (`*`: every project). `generation` grows when the password changes, which ends the
-- sessions signed before.

CREATE TABLE users (
    name           TEXT    NOT NULL PRIMARY KEY CHECK (name <> ''),
    password_hash  TEXT    NOT NULL,
    generation     INTEGER NOT NULL DEFAULT 0,
    created_at_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE grants (
    user          TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    project       TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    capabilities  TEXT    NOT NULL,
    PRIMARY KEY (user, project)
) STRICT;
