-- Schema version 5: quotas per project. NULL: no limit on that resource.

CREATE TABLE quotas (
    project       TEXT    NOT NULL PRIMARY KEY REFERENCES projects (name),
    cpu           REAL    CHECK (cpu IS NULL OR cpu >= 0),
    memory        INTEGER CHECK (memory IS NULL OR memory >= 0),
    workloads     INTEGER CHECK (workloads IS NULL OR workloads >= 0),
    replicas      INTEGER CHECK (replicas IS NULL OR replicas >= 0),
    gpus          INTEGER CHECK (gpus IS NULL OR gpus >= 0),
    volume_bytes  INTEGER CHECK (volume_bytes IS NULL OR volume_bytes >= 0),
    updated_at_ms INTEGER NOT NULL
) STRICT;
