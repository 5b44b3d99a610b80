//! Plain rows as the store reads and writes them; callers convert to domain types.

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
