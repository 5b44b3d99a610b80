-- Schema version 1: projects, workloads with their revisions, instances, events.
-- Resources name their project; users, roles and audit can later reference the
-- same `projects(name)` key without rewriting these tables.

CREATE TABLE projects (
    name          TEXT    NOT NULL PRIMARY KEY CHECK (name <> ''),
    created_at_ms INTEGER NOT NULL
) STRICT;

INSERT INTO projects (name, created_at_ms)
VALUES ('default', CAST(unixepoch('subsec') * 1000 AS INTEGER));

CREATE TABLE workloads (
    project       TEXT    NOT NULL REFERENCES projects (name),
    name          TEXT    NOT NULL CHECK (name <> ''),
    kind          TEXT    NOT NULL,
    spec_json     TEXT    NOT NULL,
    revision      INTEGER NOT NULL,
    desired_state TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) STRICT;

CREATE TABLE workload_revisions (
    project       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    revision      INTEGER NOT NULL,
    spec_json     TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (project, name, revision),
    FOREIGN KEY (project, name) REFERENCES workloads (project, name) ON DELETE CASCADE
) STRICT;

CREATE TABLE instances (
    project        TEXT    NOT NULL,
    workload       TEXT    NOT NULL,
    replica        INTEGER NOT NULL CHECK (replica >= 0),
    state          TEXT    NOT NULL,
    pid            INTEGER,
    monitor_pid    INTEGER,
    restarts       INTEGER NOT NULL,
    exit_code      INTEGER,
    oom_killed     INTEGER NOT NULL CHECK (oom_killed IN (0, 1)),
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    handle_json    TEXT,
    message        TEXT,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (project, workload, replica),
    FOREIGN KEY (project, workload) REFERENCES workloads (project, name) ON DELETE CASCADE
) STRICT;

-- The event log outlives what it mentions (deleted workloads keep their
-- history), so it has no foreign keys. AUTOINCREMENT: ids are never reused,
-- even after pruning, so clients can resume with "events after id N".
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms   INTEGER NOT NULL,
    project   TEXT    NOT NULL,
    workload  TEXT,
    replica   INTEGER CHECK (replica >= 0),
    kind      TEXT    NOT NULL,
    message   TEXT    NOT NULL,
    data_json TEXT    NOT NULL
) STRICT;
