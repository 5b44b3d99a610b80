//! [`Store`]: typed reads and transactional writes over one SQLite connection.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::schema;
use crate::{
    EventRecord, ImageRecord, InstanceRecord, ModelRecord, NewAuditEntry, NewEvent, RevisionRecord,
    StoreError, WorkloadRecord,
};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's state. Calls are short and synchronous; one connection behind
/// a mutex is enough and keeps every transaction strictly serial.
pub struct Store {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let connection = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Store::configure(connection, path)
    }

    /// A fresh, migrated database that lives only as long as the `Store`.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let connection = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Store::configure(connection, path)
    }

    fn configure(mut connection: Connection, path: &Path) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL: a crash never tears a committed transaction, and readers do not
        // block the writer. NORMAL is durable against process crashes; only
        // the last commits before a power loss may be lost, never corrupted.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(open_error)?;
        schema::migrate(&mut connection, path)?;
        Ok(Store {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
        })
    }

    /// Runs SQLite's own consistency checks, including foreign keys.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let problems = self.read("check database integrity", |connection| {
            let mut problems = Vec::new();
            let mut statement = connection.prepare("PRAGMA integrity_check")?;
            for line in statement.query_map([], |row| row.get::<_, String>(0))? {
                let line = line?;
                if line != "ok" {
                    problems.push(line);
                }
            }
            let mut statement = connection.prepare("PRAGMA foreign_key_check")?;
            let rows = statement.query_map([], |row| {
                let table: String = row.get("table")?;
                let rowid: Option<i64> = row.get("rowid")?;
                let parent: String = row.get("parent")?;
                Ok(format!(
                    "{table} row {} references a missing {parent} row",
                    rowid.map_or_else(|| "?".to_owned(), |rowid| rowid.to_string())
                ))
            })?;
            for problem in rows {
                problems.push(problem?);
            }
            Ok(problems)
        })?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.path.clone(),
                details: problems.join("; "),
            })
        }
    }

    /// Creates the project if it does not exist yet.
    pub fn ensure_project(
        &self,
        name: &str,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let operation = format!("create project {name}");
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO projects (name, created_at_ms)
                     VALUES (?1, CAST(unixepoch('subsec') * 1000 AS INTEGER))
                     ON CONFLICT (name) DO NOTHING",
                    [name],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(())
        })
    }

    /// Whether the project exists.
    pub fn project_exists(&self, name: &str) -> Result<bool, StoreError> {
        self.read("look up a project", |connection| {
            connection
                .prepare_cached("SELECT 1 FROM projects WHERE name = ?1")?
                .exists([name])
        })
    }

    /// Project names in order.
    pub fn list_projects(&self) -> Result<Vec<String>, StoreError> {
        self.read("list projects", |connection| {
            let mut statement =
                connection.prepare_cached("SELECT name FROM projects ORDER BY name")?;
            let names = statement.query_map([], |row| row.get(0))?;
            names.collect()
        })
    }

    pub fn get_workload(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<WorkloadRecord>, StoreError> {
        self.read(&format!("get workload {project}/{name}"), |connection| {
            connection
                .prepare_cached(
                    "SELECT project, name, kind, spec_json, revision, desired_state,
                            created_at_ms, updated_at_ms
                     FROM workloads WHERE project = ?1 AND name = ?2",
                )?
                .query_row([project, name], workload_from_row)
                .optional()
        })
    }

    /// Workloads of one project, or of all projects, ordered by project and name.
    pub fn list_workloads(&self, project: Option<&str>) -> Result<Vec<WorkloadRecord>, StoreError> {
        self.read("list workloads", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, name, kind, spec_json, revision, desired_state,
                        created_at_ms, updated_at_ms
                 FROM workloads WHERE ?1 IS NULL OR project = ?1
                 ORDER BY project, name",
            )?;
            let workloads = statement.query_map([project], workload_from_row)?;
            workloads.collect()
        })
    }

    /// Inserts or replaces the given workloads and appends the events, all in ONE transaction.
    /// Each put also appends a row to workload_revisions (project, name, revision, spec_json, created_at_ms).
    ///
    /// The revision row takes the workload's `updated_at_ms` as its creation
    /// time. Putting a revision that is already stored is a no-op for the
    /// history if the spec is the same, and a constraint error if it differs.
    pub fn put_workloads(
        &self,
        workloads: &[WorkloadRecord],
        events: &[NewEvent],
        audit: Option<&NewAuditEntry>,
    ) -> Result<Vec<i64>, StoreError> {
        self.write_audited("put workloads", audit, |transaction| {
            for workload in workloads {
                put_workload(transaction, workload)?;
            }
            insert_events(transaction, events)
        })
    }

    /// Deletes the workload if its desired state is still `deleted` (a workload created again
    /// under the same name in the meantime is kept), with its instances and revisions; Ok(false)
    /// if there was no such row.
    pub fn forget_deleted_workload(&self, project: &str, name: &str) -> Result<bool, StoreError> {
        let operation = format!("forget workload {project}/{name}");
        self.write(&operation, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM workloads
                     WHERE project = ?1 AND name = ?2 AND desired_state = 'deleted'",
                    [project, name],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }

    /// Deletes the workload, its instances and revisions (not its events) and appends the events, one transaction. Ok(false) if it did not exist.
    ///
    /// The events are appended only if the workload existed.
    pub fn delete_workload(
        &self,
        project: &str,
        name: &str,
        events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        let operation = format!("delete workload {project}/{name}");
        self.write(&operation, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM workloads WHERE project = ?1 AND name = ?2",
                    [project, name],
                )
                .map_err(sqlite_error(&operation))?;
            if deleted == 0 {
                return Ok(false);
            }
            insert_events(transaction, events)?;
            Ok(true)
        })
    }

    /// Ok(false) if the workload does not exist.
    pub fn set_desired_state(
        &self,
        project: &str,
        name: &str,
        desired_state: &str,
        updated_at_ms: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("set desired state of workload {project}/{name}");
        self.write_audited(&operation, audit, |transaction| {
            let updated = transaction
                .execute(
                    "UPDATE workloads SET desired_state = ?3, updated_at_ms = ?4
                     WHERE project = ?1 AND name = ?2",
                    params![project, name, desired_state, updated_at_ms],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(updated > 0)
        })
    }

    /// The workload's stored revisions, oldest first; empty if it does not exist.
    pub fn list_revisions(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<RevisionRecord>, StoreError> {
        self.read(
            &format!("list revisions of workload {project}/{name}"),
            |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT revision, spec_json, created_at_ms FROM workload_revisions
                 WHERE project = ?1 AND name = ?2 ORDER BY revision",
                )?;
                let revisions = statement.query_map([project, name], |row| {
                    Ok(RevisionRecord {
                        revision: row.get("revision")?,
                        spec_json: row.get("spec_json")?,
                        created_at_ms: row.get("created_at_ms")?,
                    })
                })?;
                revisions.collect()
            },
        )
    }

    /// Inserts or replaces the instance and appends the events, one
    /// transaction. Its workload must exist.
    pub fn put_instance(
        &self,
        instance: &InstanceRecord,
        events: &[NewEvent],
    ) -> Result<Vec<i64>, StoreError> {
        let operation = format!(
            "put instance {}/{}/{}",
            instance.project, instance.workload, instance.replica
        );
        self.write(&operation, |transaction| {
            transaction
                .prepare_cached(
                    "INSERT INTO instances (project, workload, replica, state, pid, monitor_pid,
                         restarts, exit_code, oom_killed, started_at_ms, finished_at_ms,
                         handle_json, message, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT (project, workload, replica) DO UPDATE SET
                         state = excluded.state,
                         pid = excluded.pid,
                         monitor_pid = excluded.monitor_pid,
                         restarts = excluded.restarts,
                         exit_code = excluded.exit_code,
                         oom_killed = excluded.oom_killed,
                         started_at_ms = excluded.started_at_ms,
                         finished_at_ms = excluded.finished_at_ms,
                         handle_json = excluded.handle_json,
                         message = excluded.message,
                         updated_at_ms = excluded.updated_at_ms",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        instance.project,
                        instance.workload,
                        instance.replica,
                        instance.state,
                        instance.pid,
                        instance.monitor_pid,
                        instance.restarts,
                        instance.exit_code,
                        instance.oom_killed,
                        instance.started_at_ms,
                        instance.finished_at_ms,
                        instance.handle_json,
                        instance.message,
                        instance.updated_at_ms,
                    ])
                })
                .map_err(sqlite_error(&operation))?;
            insert_events(transaction, events)
        })
    }

    /// Instances of one project, or of all, ordered by project, workload, replica.
    pub fn list_instances(&self, project: Option<&str>) -> Result<Vec<InstanceRecord>, StoreError> {
        self.read("list instances", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, workload, replica, state, pid, monitor_pid, restarts, exit_code,
                        oom_killed, started_at_ms, finished_at_ms, handle_json, message,
                        updated_at_ms
                 FROM instances WHERE ?1 IS NULL OR project = ?1
                 ORDER BY project, workload, replica",
            )?;
            let instances = statement.query_map([project], instance_from_row)?;
            instances.collect()
        })
    }

    /// Ok(false) if the instance does not exist.
    pub fn delete_instance(
        &self,
        project: &str,
        workload: &str,
        replica: u32,
    ) -> Result<bool, StoreError> {
        let operation = format!("delete instance {project}/{workload}/{replica}");
        self.write(&operation, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM instances WHERE project = ?1 AND workload = ?2 AND replica = ?3",
                    params![project, workload, replica],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }

    /// Points `record.reference` in its project at `record.manifest_digest`, keeping the
    /// creation time of an existing name.
    pub fn put_image(
        &self,
        record: &ImageRecord,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        self.put_images(std::slice::from_ref(record), audit)
    }

    /// Names images (a name already taken moves to the new image), one transaction with the
    /// call's audit entry.
    pub fn put_images(
        &self,
        records: &[ImageRecord],
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let names: Vec<&str> = records
            .iter()
            .map(|record| record.reference.as_str())
            .collect();
        let operation = format!("record image {}", names.join(", "));
        self.write_audited(&operation, audit, |transaction| {
            for record in records {
                transaction
                    .execute(
                        "INSERT INTO images (project, reference, manifest_digest, config_digest, size,
                                             platform, source, created_at_ms, updated_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (project, reference) DO UPDATE SET
                             manifest_digest = excluded.manifest_digest,
                             config_digest = excluded.config_digest,
                             size = excluded.size,
                             platform = excluded.platform,
                             source = excluded.source,
                             updated_at_ms = excluded.updated_at_ms",
                        params![
                            record.project,
                            record.reference,
                            record.manifest_digest,
                            record.config_digest,
                            record.size,
                            record.platform,
                            record.source,
                            record.created_at_ms,
                            record.updated_at_ms
                        ],
                    )
                    .map_err(sqlite_error(&operation))?;
            }
            Ok(())
        })
    }

    pub fn get_image(
        &self,
        project: &str,
        reference: &str,
    ) -> Result<Option<ImageRecord>, StoreError> {
        self.read("read image", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, reference, manifest_digest, config_digest, size, platform, source,
                        created_at_ms, updated_at_ms
                 FROM images WHERE project = ?1 AND reference = ?2",
            )?;
            statement
                .query_row([project, reference], image_from_row)
                .optional()
        })
    }

    /// Images of one project, or of all, ordered by project and reference.
    pub fn list_images(&self, project: Option<&str>) -> Result<Vec<ImageRecord>, StoreError> {
        self.read("list images", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, reference, manifest_digest, config_digest, size, platform, source,
                        created_at_ms, updated_at_ms
                 FROM images WHERE ?1 IS NULL OR project = ?1
                 ORDER BY project, reference",
            )?;
            let images = statement.query_map([project], image_from_row)?;
            images.collect()
        })
    }

    /// Ok(false) if the project has no image of that name.
    pub fn delete_image(
        &self,
        project: &str,
        reference: &str,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("delete image {reference}");
        self.write_audited(&operation, audit, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM images WHERE project = ?1 AND reference = ?2",
                    [project, reference],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }

    /// Names a model (a name already taken moves to the new file), in one transaction with
    /// the call's audit entry.
    pub fn put_model(
        &self,
        record: &ModelRecord,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let operation = format!("record model {}", record.name);
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO models (project, name, digest, size, format, metadata_json,
                                         source, created_at_ms, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (project, name) DO UPDATE SET
                         digest = excluded.digest,
                         size = excluded.size,
                         format = excluded.format,
                         metadata_json = excluded.metadata_json,
                         source = excluded.source,
                         updated_at_ms = excluded.updated_at_ms",
                    params![
                        record.project,
                        record.name,
                        record.digest,
                        record.size,
                        record.format,
                        record.metadata_json,
                        record.source,
                        record.created_at_ms,
                        record.updated_at_ms
                    ],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(())
        })
    }

    pub fn get_model(&self, project: &str, name: &str) -> Result<Option<ModelRecord>, StoreError> {
        self.read("read model", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, name, digest, size, format, metadata_json, source,
                        created_at_ms, updated_at_ms
                 FROM models WHERE project = ?1 AND name = ?2",
            )?;
            statement
                .query_row([project, name], model_from_row)
                .optional()
        })
    }

    /// Models of one project, or of all, ordered by project and name.
    pub fn list_models(&self, project: Option<&str>) -> Result<Vec<ModelRecord>, StoreError> {
        self.read("list models", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, name, digest, size, format, metadata_json, source,
                        created_at_ms, updated_at_ms
                 FROM models WHERE ?1 IS NULL OR project = ?1
                 ORDER BY project, name",
            )?;
            let models = statement.query_map([project], model_from_row)?;
            models.collect()
        })
    }

    /// Removes a model's name; Ok(false) if the project has no model of that name.
    pub fn delete_model(
        &self,
        project: &str,
        name: &str,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("delete model {name}");
        self.write_audited(&operation, audit, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM models WHERE project = ?1 AND name = ?2",
                    [project, name],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }

    /// Appends the events in one transaction and returns their ids, in order.
    pub fn append_events(&self, events: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        self.write("append events", |transaction| {
            insert_events(transaction, events)
        })
    }

    /// [`Store::append_events`] with the audit entry of the call that made them, in the same
    /// transaction.
    pub fn append_events_audited(
        &self,
        events: &[NewEvent],
        audit: Option<&NewAuditEntry>,
    ) -> Result<Vec<i64>, StoreError> {
        self.write_audited("append events", audit, |transaction| {
            insert_events(transaction, events)
        })
    }

    /// Up to `limit` events with ids above `after_id` (all if `None`), of `project` only
    /// when given, oldest first.
    pub fn list_events(
        &self,
        project: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // AUTOINCREMENT ids start at 1, so 0 is before every event.
        let after_id = after_id.unwrap_or(0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("list events", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, time_ms, project, workload, replica, kind, message, data_json
                 FROM events WHERE id > ?1 AND (?2 IS NULL OR project = ?2)
                 ORDER BY id LIMIT ?3",
            )?;
            let events =
                statement.query_map(rusqlite::params![after_id, project, limit], event_from_row)?;
            events.collect()
        })
    }

    /// The newest `limit` events, of `project` only when given, oldest first.
    pub fn latest_events(
        &self,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut events = self.read("list the latest events", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, time_ms, project, workload, replica, kind, message, data_json
                 FROM events WHERE ?1 IS NULL OR project = ?1
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let events = statement.query_map(rusqlite::params![project, limit], event_from_row)?;
            events.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        events.reverse();
        Ok(events)
    }

    /// The id of the newest stored event; `None` when the log is empty.
    pub fn latest_event_id(&self) -> Result<Option<i64>, StoreError> {
        self.read("read latest event id", |connection| {
            connection.query_row("SELECT max(id) FROM events", [], |row| row.get(0))
        })
    }

    /// Deletes the oldest events beyond `keep` rows; returns how many were removed.
    pub fn prune_events(&self, keep: usize) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.write("prune events", |transaction| {
            transaction
                .execute(
                    "DELETE FROM events WHERE id <=
                         (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    [keep],
                )
                .map_err(sqlite_error("prune events"))
        })
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped any open transaction, which
        // rolled it back, so the connection is still usable.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn read<T>(
        &self,
        operation: &str,
        body: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        body(&self.connection()).map_err(sqlite_error(operation))
    }

    /// Runs `body` in one IMMEDIATE transaction: it takes the write lock up
    /// front, so it never fails half-way for lack of it. Any error rolls back.
    pub(crate) fn write<T>(
        &self,
        operation: &str,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_audited(operation, None, body)
    }

    /// [`Store::write`], appending `audit` to the audit log in the same transaction, so the
    /// change and its record commit together or not at all.
    pub(crate) fn write_audited<T>(
        &self,
        operation: &str,
        audit: Option<&NewAuditEntry>,
        body: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection();
        let written = (|| {
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_error(operation))?;
            let result = body(&transaction)?;
            if let Some(entry) = audit {
                crate::access::append_audit_in(&transaction, entry)?;
            }
            transaction.commit().map_err(sqlite_error(operation))?;
            Ok(result)
        })();
        written.map_err(|error| self.say_if_disk_full(operation, error))
    }

    /// Names the data directory and the space left when `error` is a full disk.
    fn say_if_disk_full(&self, operation: &str, error: StoreError) -> StoreError {
        if !error.is_sqlite_full() {
            return error;
        }
        let dir = self.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let available = nix::sys::statvfs::statvfs(&dir)
            .map(|stats| {
                stats
                    .blocks_available()
                    .saturating_mul(stats.fragment_size())
            })
            .unwrap_or(0);
        StoreError::DiskFull {
            operation: operation.to_string(),
            dir,
            available,
        }
    }
}

fn put_workload(
    transaction: &Transaction<'_>,
    workload: &WorkloadRecord,
) -> Result<(), StoreError> {
    let operation = format!("put workload {}/{}", workload.project, workload.name);
    transaction
        .prepare_cached(
            "INSERT INTO workloads (project, name, kind, spec_json, revision, desired_state,
                 created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (project, name) DO UPDATE SET
                 kind = excluded.kind,
                 spec_json = excluded.spec_json,
                 revision = excluded.revision,
                 desired_state = excluded.desired_state,
                 created_at_ms = excluded.created_at_ms,
                 updated_at_ms = excluded.updated_at_ms",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                workload.project,
                workload.name,
                workload.kind,
                workload.spec_json,
                workload.revision,
                workload.desired_state,
                workload.created_at_ms,
                workload.updated_at_ms,
            ])
        })
        .map_err(sqlite_error(&operation))?;
    let inserted = transaction
        .prepare_cached(
            "INSERT INTO workload_revisions (project, name, revision, spec_json, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project, name, revision) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                workload.project,
                workload.name,
                workload.revision,
                workload.spec_json,
                workload.updated_at_ms,
            ])
        })
        .map_err(sqlite_error(&operation))?;
    if inserted == 0 {
        let stored_spec: String = transaction
            .query_row(
                "SELECT spec_json FROM workload_revisions
                 WHERE project = ?1 AND name = ?2 AND revision = ?3",
                params![workload.project, workload.name, workload.revision],
                |row| row.get(0),
            )
            .map_err(sqlite_error(&operation))?;
        if stored_spec != workload.spec_json {
            return Err(StoreError::Constraint {
                operation,
                details: format!(
                    "revision {} is already stored with a different spec",
                    workload.revision
                ),
            });
        }
    }
    Ok(())
}

fn insert_events(
    transaction: &Transaction<'_>,
    events: &[NewEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut statement = transaction
        .prepare_cached(
            "INSERT INTO events (time_ms, project, workload, replica, kind, message, data_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             RETURNING id",
        )
        .map_err(sqlite_error("append events"))?;
    events
        .iter()
        .map(|event| {
            statement
                .query_row(
                    params![
                        event.time_ms,
                        event.project,
                        event.workload,
                        event.replica,
                        event.kind,
                        event.message,
                        event.data_json,
                    ],
                    |row| row.get(0),
                )
                .map_err(sqlite_error(&format!("append event {}", event.kind)))
        })
        .collect()
}

fn workload_from_row(row: &Row<'_>) -> rusqlite::Result<WorkloadRecord> {
    Ok(WorkloadRecord {
        project: row.get("project")?,
        name: row.get("name")?,
        kind: row.get("kind")?,
        spec_json: row.get("spec_json")?,
        revision: row.get("revision")?,
        desired_state: row.get("desired_state")?,
        created_at_ms: row.get("created_at_ms")?,
        updated_at_ms: row.get("updated_at_ms")?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: row.get("id")?,
        time_ms: row.get("time_ms")?,
        project: row.get("project")?,
        workload: row.get("workload")?,
        replica: row.get("replica")?,
        kind: row.get("kind")?,
        message: row.get("message")?,
        data_json: row.get("data_json")?,
    })
}

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        project: row.get("project")?,
        workload: row.get("workload")?,
        replica: row.get("replica")?,
        state: row.get("state")?,
        pid: row.get("pid")?,
        monitor_pid: row.get("monitor_pid")?,
        restarts: row.get("restarts")?,
        exit_code: row.get("exit_code")?,
        oom_killed: row.get("oom_killed")?,
        started_at_ms: row.get("started_at_ms")?,
        finished_at_ms: row.get("finished_at_ms")?,
        handle_json: row.get("handle_json")?,
        message: row.get("message")?,
        updated_at_ms: row.get("updated_at_ms")?,
    })
}

pub(crate) fn sqlite_error(operation: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::from_sqlite(operation.to_owned(), source)
}

fn model_from_row(row: &Row<'_>) -> rusqlite::Result<ModelRecord> {
    Ok(ModelRecord {
        project: row.get(0)?,
        name: row.get(1)?,
        digest: row.get(2)?,
        size: row.get(3)?,
        format: row.get(4)?,
        metadata_json: row.get(5)?,
        source: row.get(6)?,
        created_at_ms: row.get(7)?,
        updated_at_ms: row.get(8)?,
    })
}

fn image_from_row(row: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        project: row.get(0)?,
        reference: row.get(1)?,
        manifest_digest: row.get(2)?,
        config_digest: row.get(3)?,
        size: row.get(4)?,
        platform: row.get(5)?,
        source: row.get(6)?,
        created_at_ms: row.get(7)?,
        updated_at_ms: row.get(8)?,
    })
}
