//! API keys, the hash-chained audit log, secrets (ciphertext only) and quotas.

use rusqlite::{params, OptionalExtension, Row, Transaction};
use sha2::{Digest, Sha256};

use crate::store::sqlite_error;
use crate::{
    ApiKeyRecord, AuditRecord, AuditVerification, GrantRecord, NewAuditEntry, QuotaRecord,
    SecretRecord, Store, StoreError, UserRecord,
};

/// The `prev_hash` of the first entry.
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of an audit entry at `seq` following `prev_hash`: SHA-256 over the JSON array of
/// every field, so no two different entries share an encoding.
pub fn audit_hash(seq: i64, entry: &NewAuditEntry, prev_hash: &str) -> String {
    let fields = serde_json::json!([
        seq,
        entry.time_ms,
        entry.actor,
        entry.on_behalf_of,
        entry.project,
        entry.action,
        entry.target,
        entry.status,
        entry.outcome,
        prev_hash,
    ]);
    let digest = Sha256::digest(fields.to_string().as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Store {
    pub fn put_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let operation = format!("create API key {}", key.id);
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO api_keys (id, name, project, role, capabilities, secret_hash,
                                           created_by, created_at_ms, expires_at_ms, revoked_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        key.id,
                        key.name,
                        key.project,
                        key.role,
                        key.capabilities,
                        key.secret_hash,
                        key.created_by,
                        key.created_at_ms,
                        key.expires_at_ms,
                        key.revoked_at_ms
                    ],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(())
        })
    }

    pub fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.read("read API key", |connection| {
            connection
                .prepare_cached(
                    "SELECT id, name, project, role, capabilities, secret_hash, created_by,
                            created_at_ms, expires_at_ms, revoked_at_ms
                     FROM api_keys WHERE id = ?1",
                )?
                .query_row([id], api_key_from_row)
                .optional()
        })
    }

    /// Keys of one project (and, with `include_global`, those valid for every project), or
    /// of all when `project` is `None`; oldest first.
    pub fn list_api_keys(&self, project: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read("list API keys", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, name, project, role, capabilities, secret_hash, created_by,
                        created_at_ms, expires_at_ms, revoked_at_ms
                 FROM api_keys WHERE ?1 IS NULL OR project = ?1
                 ORDER BY created_at_ms, id",
            )?;
            let keys = statement.query_map([project], api_key_from_row)?;
            keys.collect()
        })
    }

    /// Marks a key revoked at `time_ms`; Ok(false) when there is no such key or it was
    /// revoked already.
    pub fn revoke_api_key(
        &self,
        id: &str,
        time_ms: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("revoke API key {id}");
        self.write_audited(&operation, audit, |transaction| {
            let changed = transaction
                .execute(
                    "UPDATE api_keys SET revoked_at_ms = ?2
                     WHERE id = ?1 AND revoked_at_ms IS NULL",
                    params![id, time_ms],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(changed > 0)
        })
    }

    /// Appends one entry after the last, chained to it; returns the stored entry.
    pub fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditRecord, StoreError> {
        self.write("append to the audit log", |transaction| {
            append_audit_in(transaction, entry)
        })
    }

    /// Entries after `after_seq`, of one project or all, oldest first, at most `limit`.
    pub fn list_audit(
        &self,
        project: Option<&str>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read("list the audit log", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, time_ms, actor, on_behalf_of, project, action, target, status,
                        outcome, prev_hash, hash
                 FROM audit_log WHERE (?1 IS NULL OR project = ?1) AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let entries =
                statement.query_map(params![project, after_seq, limit], audit_from_row)?;
            entries.collect()
        })
    }

    /// Walks the whole chain: every entry must hash to its `hash`, link to the previous
    /// entry's hash and follow it in sequence.
    pub fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        self.read("verify the audit log", |connection| {
            let mut statement = connection.prepare(
                "SELECT seq, time_ms, actor, on_behalf_of, project, action, target, status,
                        outcome, prev_hash, hash
                 FROM audit_log ORDER BY seq",
            )?;
            let mut rows = statement.query([])?;
            let mut expected_prev = GENESIS_HASH.to_string();
            let mut expected_seq = 1;
            let mut entries = 0;
            while let Some(row) = rows.next()? {
                let record = audit_from_row(row)?;
                entries += 1;
                let problem = if record.seq != expected_seq {
                    Some(format!(
                        "entry {expected_seq} is missing: the next entry is {}",
                        record.seq
                    ))
                } else if record.prev_hash != expected_prev {
                    Some("it does not link to the entry before it".to_string())
                } else if audit_hash(record.seq, &record.entry, &record.prev_hash) != record.hash {
                    Some("its content does not match its hash".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Ok(AuditVerification {
                        entries,
                        first_bad: Some((record.seq, problem)),
                    });
                }
                expected_prev = record.hash;
                expected_seq += 1;
            }
            Ok(AuditVerification {
                entries,
                first_bad: None,
            })
        })
    }
}

impl Store {
    /// Creates or replaces a secret, keeping the creation time of an existing one.
    pub fn put_secret(
        &self,
        secret: &SecretRecord,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let operation = format!("store secret {}", secret.name);
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO projects (name, created_at_ms) VALUES (?1, ?2)
                     ON CONFLICT (name) DO NOTHING",
                    params![secret.project, secret.created_at_ms],
                )
                .map_err(sqlite_error(&operation))?;
            transaction
                .execute(
                    "INSERT INTO secrets (project, name, nonce, ciphertext, created_at_ms,
                                          updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (project, name) DO UPDATE SET
                         nonce = excluded.nonce,
                         ciphertext = excluded.ciphertext,
                         updated_at_ms = excluded.updated_at_ms",
                    params![
                        secret.project,
                        secret.name,
                        secret.nonce,
                        secret.ciphertext,
                        secret.created_at_ms,
                        secret.updated_at_ms
                    ],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(())
        })
    }

    pub fn get_secret(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<SecretRecord>, StoreError> {
        self.read("read secret", |connection| {
            connection
                .prepare_cached(
                    "SELECT project, name, nonce, ciphertext, created_at_ms, updated_at_ms
                     FROM secrets WHERE project = ?1 AND name = ?2",
                )?
                .query_row([project, name], secret_from_row)
                .optional()
        })
    }

    /// The secrets of a project, by name.
    pub fn list_secrets(&self, project: &str) -> Result<Vec<SecretRecord>, StoreError> {
        self.read("list secrets", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT project, name, nonce, ciphertext, created_at_ms, updated_at_ms
                 FROM secrets WHERE project = ?1 ORDER BY name",
            )?;
            let secrets = statement.query_map([project], secret_from_row)?;
            secrets.collect()
        })
    }

    /// Ok(false) when the project has no secret of that name.
    pub fn delete_secret(
        &self,
        project: &str,
        name: &str,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("delete secret {name}");
        self.write_audited(&operation, audit, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM secrets WHERE project = ?1 AND name = ?2",
                    [project, name],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }
}

impl Store {
    /// Sets a project's quota (creating the project), replacing the one before.
    pub fn put_quota(
        &self,
        quota: &QuotaRecord,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let operation = format!("set the quota of project {}", quota.project);
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO projects (name, created_at_ms) VALUES (?1, ?2)
                     ON CONFLICT (name) DO NOTHING",
                    params![quota.project, quota.updated_at_ms],
                )
                .map_err(sqlite_error(&operation))?;
            transaction
                .execute(
                    "INSERT INTO quotas (project, cpu, memory, workloads, replicas, gpus,
                                         volume_bytes, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (project) DO UPDATE SET
                         cpu = excluded.cpu, memory = excluded.memory,
                         workloads = excluded.workloads, replicas = excluded.replicas,
                         gpus = excluded.gpus, volume_bytes = excluded.volume_bytes,
                         updated_at_ms = excluded.updated_at_ms",
                    params![
                        quota.project,
                        quota.cpu,
                        quota.memory,
                        quota.workloads,
                        quota.replicas,
                        quota.gpus,
                        quota.volume_bytes,
                        quota.updated_at_ms
                    ],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(())
        })
    }

    pub fn get_quota(&self, project: &str) -> Result<Option<QuotaRecord>, StoreError> {
        self.read("read a quota", |connection| {
            connection
                .prepare_cached(
                    "SELECT project, cpu, memory, workloads, replicas, gpus, volume_bytes,
                            updated_at_ms
                     FROM quotas WHERE project = ?1",
                )?
                .query_row([project], |row| {
                    Ok(QuotaRecord {
                        project: row.get(0)?,
                        cpu: row.get(1)?,
                        memory: row.get(2)?,
                        workloads: row.get(3)?,
                        replicas: row.get(4)?,
                        gpus: row.get(5)?,
                        volume_bytes: row.get(6)?,
                        updated_at_ms: row.get(7)?,
                    })
                })
                .optional()
        })
    }
}

impl Store {
    /// Creates a user, or replaces its password (and ends its sessions: the generation grows).
    pub fn put_user(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
        audit: Option<&NewAuditEntry>,
    ) -> Result<UserRecord, StoreError> {
        let operation = format!("store user {name}");
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO users (name, password_hash, generation, created_at_ms)
                     VALUES (?1, ?2, 0, ?3)
                     ON CONFLICT (name) DO UPDATE SET
                         password_hash = excluded.password_hash,
                         generation = users.generation + 1",
                    params![name, password_hash, now_ms],
                )
                .map_err(sqlite_error(&operation))?;
            transaction
                .query_row(
                    "SELECT name, password_hash, generation, created_at_ms FROM users WHERE name = ?1",
                    [name],
                    user_from_row,
                )
                .map_err(sqlite_error(&operation))
        })
    }

    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.read("read user", |connection| {
            connection
                .prepare_cached(
                    "SELECT name, password_hash, generation, created_at_ms FROM users WHERE name = ?1",
                )?
                .query_row([name], user_from_row)
                .optional()
        })
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read("list users", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT name, password_hash, generation, created_at_ms FROM users ORDER BY name",
            )?;
            let users = statement.query_map([], user_from_row)?;
            users.collect()
        })
    }

    /// Deletes a user and its grants; Ok(false) when there was none.
    pub fn delete_user(
        &self,
        name: &str,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("delete user {name}");
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute("DELETE FROM grants WHERE user = ?1", [name])
                .map_err(sqlite_error(&operation))?;
            let deleted = transaction
                .execute("DELETE FROM users WHERE name = ?1", [name])
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }

    /// Grants a role (replacing the user's grant in that project).
    pub fn put_grant(
        &self,
        grant: &GrantRecord,
        audit: Option<&NewAuditEntry>,
    ) -> Result<(), StoreError> {
        let operation = format!("grant {} to {}", grant.role, grant.user);
        self.write_audited(&operation, audit, |transaction| {
            transaction
                .execute(
                    "INSERT INTO grants (user, project, role, capabilities) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user, project) DO UPDATE SET
                         role = excluded.role, capabilities = excluded.capabilities",
                    params![grant.user, grant.project, grant.role, grant.capabilities],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(())
        })
    }

    /// Ok(false) when the user held nothing in that project.
    pub fn delete_grant(
        &self,
        user: &str,
        project: &str,
        audit: Option<&NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let operation = format!("revoke the grant of {user} in {project}");
        self.write_audited(&operation, audit, |transaction| {
            let deleted = transaction
                .execute(
                    "DELETE FROM grants WHERE user = ?1 AND project = ?2",
                    [user, project],
                )
                .map_err(sqlite_error(&operation))?;
            Ok(deleted > 0)
        })
    }

    pub fn list_grants(&self, user: &str) -> Result<Vec<GrantRecord>, StoreError> {
        self.read("list grants", |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT user, project, role, capabilities FROM grants WHERE user = ?1 ORDER BY project",
            )?;
            let grants = statement.query_map([user], |row| {
                Ok(GrantRecord {
                    user: row.get(0)?,
                    project: row.get(1)?,
                    role: row.get(2)?,
                    capabilities: row.get(3)?,
                })
            })?;
            grants.collect()
        })
    }
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        generation: row.get(2)?,
        created_at_ms: row.get(3)?,
    })
}

fn secret_from_row(row: &Row<'_>) -> rusqlite::Result<SecretRecord> {
    Ok(SecretRecord {
        project: row.get(0)?,
        name: row.get(1)?,
        nonce: row.get(2)?,
        ciphertext: row.get(3)?,
        created_at_ms: row.get(4)?,
        updated_at_ms: row.get(5)?,
    })
}

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        project: row.get(2)?,
        role: row.get(3)?,
        capabilities: row.get(4)?,
        secret_hash: row.get(5)?,
        created_by: row.get(6)?,
        created_at_ms: row.get(7)?,
        expires_at_ms: row.get(8)?,
        revoked_at_ms: row.get(9)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get(0)?,
        entry: NewAuditEntry {
            time_ms: row.get(1)?,
            actor: row.get(2)?,
            on_behalf_of: row.get(3)?,
            project: row.get(4)?,
            action: row.get(5)?,
            target: row.get(6)?,
            status: row.get(7)?,
            outcome: row.get(8)?,
        },
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
    })
}

/// Appends `entry` to the audit log inside `transaction`, chained to the last entry.
pub(crate) fn append_audit_in(
    transaction: &Transaction<'_>,
    entry: &NewAuditEntry,
) -> Result<AuditRecord, StoreError> {
    let last: Option<(i64, String)> = transaction
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sqlite_error("read the end of the audit log"))?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_string()),
    };
    let hash = audit_hash(seq, entry, &prev_hash);
    transaction
        .execute(
            "INSERT INTO audit_log (seq, time_ms, actor, on_behalf_of, project, action,
                                    target, status, outcome, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                seq,
                entry.time_ms,
                entry.actor,
                entry.on_behalf_of,
                entry.project,
                entry.action,
                entry.target,
                entry.status,
                entry.outcome,
                prev_hash,
                hash
            ],
        )
        .map_err(sqlite_error("append to the audit log"))?;
    Ok(AuditRecord {
        seq,
        entry: entry.clone(),
        prev_hash,
        hash,
    })
}
