-- Schema version 4: secrets, per project. Only ciphertext is stored: the key that opens it
-- lives in a file apart from this database.

CREATE TABLE secrets (
    project        TEXT    NOT NULL REFERENCES projects (name),
    name           TEXT    NOT NULL CHECK (name <> ''),
    nonce          BLOB    NOT NULL,
    ciphertext     BLOB    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) STRICT;
