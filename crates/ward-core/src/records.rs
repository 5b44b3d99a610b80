//! Plain rows as the store reads and writes them (and the audit log shows them); callers convert
//! to domain types.

/// A workload as stored: the spec is opaque JSON, never parsed here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadRecord {
    pub project: String,
    pub name: String,
    pub kind: String,
    pub spec_json: String,
    pub revision: i64,
    pub desired_state: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One past (or the current) spec of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionRecord {
    pub revision: i64,
    pub spec_json: String,
    pub created_at_ms: i64,
}

/// The observed state of one replica of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    pub project: String,
    pub workload: String,
    pub replica: u32,
    pub state: String,
    pub pid: Option<u32>,
    pub monitor_pid: Option<u32>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub handle_json: Option<String>,
    pub message: Option<String>,
    pub updated_at_ms: i64,
}

/// An event to append; the store assigns its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub time_ms: i64,
    pub project: String,
    pub workload: Option<String>,
    pub replica: Option<u32>,
    pub kind: String,
    pub message: String,
    pub data_json: String,
}

/// An event read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub id: i64,
    pub time_ms: i64,
    pub project: String,
    pub workload: Option<String>,
    pub replica: Option<u32>,
    pub kind: String,
    pub message: String,
    pub data_json: String,
}

/// A named image in a project: the name points at a manifest in the blob store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub project: String,
    /// The normalised reference, like `docker.io/library/busybox:1.36`.
    pub reference: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// Bytes of the manifest's config and layers as stored (compressed).
    pub size: i64,
    pub platform: String,
    /// Where it came from: `pull` or `import`.
    pub source: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A named model in a project: the name points at a file in the content-addressed model
/// store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRecord {
    pub project: String,
    pub name: String,
    /// `sha256:<hex>` of the file.
    pub digest: String,
    pub size: i64,
    /// `gguf`.
    pub format: String,
    /// What the file says of itself (architecture, parameters, quantisation, context length,
    /// chat template), as JSON.
    pub metadata_json: String,
    /// Where it came from: `import`, or the URL or reference it was pulled from.
    pub source: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An API key as stored: never its secret, only the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// `None`: every project.
    pub project: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Grants beyond the role, comma-separated: `exec`, `secrets:read`, `audit:read`.
    pub capabilities: String,
    pub secret_hash: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// An audit entry to append; the store numbers and chains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub time_ms: i64,
    /// Who called: `admin-token`, `key:<id>`, `user:<name>`.
    pub actor: String,
    /// The person a planner or MCP call acted for.
    pub on_behalf_of: Option<String>,
    pub project: Option<String>,
    /// `POST /api/v1/workloads/{name}/stop`: the method and the route.
    pub action: String,
    /// The path called, naming the resource.
    pub target: String,
    pub status: u16,
    /// `ok`, or the error's message.
    pub outcome: String,
}

/// An audit entry as stored, with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: NewAuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// What a check of the audit chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// The first entry whose hash or link does not match, and why.
    pub first_bad: Option<(i64, String)>,
}

/// A secret as stored: encrypted, never in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub project: String,
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretRecord")
            .field("project", &self.project)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A project's quota; `None`: no limit on that resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaRecord {
    pub project: String,
    pub cpu: Option<f64>,
    pub memory: Option<i64>,
    pub workloads: Option<i64>,
    pub replicas: Option<i64>,
    pub gpus: Option<i64>,
    pub volume_bytes: Option<i64>,
    pub updated_at_ms: i64,
}

/// A user: never the password, only its argon2 hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub generation: i64,
    pub created_at_ms: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserRecord")
            .field("name", &self.name)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A role a user holds in a project (`*`: every project).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub user: String,
    pub project: String,
    pub role: String,
    /// Comma-separated, as for API keys.
    pub capabilities: String,
}
