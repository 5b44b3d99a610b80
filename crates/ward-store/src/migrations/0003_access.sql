-- Schema version 3: API keys and the audit log.
--
-- A key is stored only as a hash of its secret; `project` NULL means every project.
-- The audit log is append-only (the triggers refuse UPDATE and DELETE) and hash-chained:
-- each entry's `hash` covers its fields and the previous entry's hash, so a row changed
-- behind the database's back breaks the chain at that row.

CREATE TABLE api_keys (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    name           TEXT    NOT NULL,
    project        TEXT    REFERENCES projects (name),
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    capabilities   TEXT    NOT NULL,
    secret_hash    TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER,
    revoked_at_ms  INTEGER
) STRICT;

CREATE TABLE audit_log (
    seq           INTEGER NOT NULL PRIMARY KEY,
    time_ms       INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    on_behalf_of  TEXT,
    project       TEXT,
    action        TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_log_by_project ON audit_log (project, seq);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
