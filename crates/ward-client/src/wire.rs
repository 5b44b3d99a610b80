//! JSON bodies of the native API, as they cross the wire.
//!
//! A workload document is the normalised spec (CONTRACT §2) with a `status` object added;
//! the spec part stays a `serde_json::Value` so the client never second-guesses the server's
//! normalisation.

use serde::{Deserialize, Serialize};

/// A workload as `GET /api/v1/workloads/{name}` returns it: spec fields plus `status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkloadDocument {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub spec: serde_json::Map<String, serde_json::Value>,
    pub status: WorkloadStatus,
}

impl WorkloadDocument {
    pub fn name(&self) -> &str {
        self.spec
            .get("name")
            .and_then(|value| value.as_str())
            .unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.spec
            .get("kind")
            .and_then(|value| value.as_str())
            .unwrap_or("")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkloadStatus {
    /// `pending|starting|running|stopping|stopped|exited|failed`
    pub state: String,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    /// RFC 3339.
    pub started_at: Option<String>,
    pub revision: i64,
    pub project: String,
    /// `running` or `stopped`: what the user asked for.
    pub desired_state: String,
    pub oom_killed: bool,
    pub finished_at: Option<String>,
    /// `healthy|unhealthy|starting`, or null without a health check.
    pub health: Option<String>,
    /// Why the workload is in its state, when there is more to say (a start error, a backoff).
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// CPU time used since start, in seconds, summed over instances (null when unknown).
    pub cpu_seconds: Option<f64>,
    /// CPU use over the last sampling interval, in percent of one core, summed over instances.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Current memory use in bytes, summed over instances.
    pub memory_bytes: Option<u64>,
    /// Current number of processes (the cgroup's `pids.current`), summed over instances.
    #[serde(default)]
    pub process_count: Option<u64>,
    /// Bytes per second over the last sampling interval, summed over instances: read from
    /// and written to disk, received and sent on the workload's own network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_read_bytes_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_write_bytes_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_receive_bytes_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_transmit_bytes_per_second: Option<f64>,
    /// When one of its series was last anomalous (RFC 3339), if ever in this daemon's life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_anomaly: Option<String>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceStatus {
    /// `<workload>-<replica>`
    pub name: String,
    pub replica: u32,
    pub state: String,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub oom_killed: bool,
    pub health: Option<String>,
    pub address: Option<String>,
    /// The host ports published to the running instance: the spec's, and those chosen for
    /// `publish_all`.
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    pub revision: i64,
    pub message: Option<String>,
}

/// A host port forwarded to an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishedPort {
    pub host: u16,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkloadList {
    pub workloads: Vec<WorkloadDocument>,
}

/// `POST /api/v1/apply`: several workloads, applied all or nothing.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyRequest {
    #[schema(value_type = Vec<Object>)]
    pub workloads: Vec<serde_json::Value>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyResponse {
    pub results: Vec<ApplyResult>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyResult {
    pub name: String,
    /// `created|updated|unchanged`
    pub action: String,
    pub revision: i64,
    pub changes: Vec<FieldChange>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// Dotted path into the normalised spec, like `resources.memory`.
    pub path: String,
    #[schema(value_type = Option<Object>)]
    pub old: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub new: Option<serde_json::Value>,
}

/// One line of `GET /api/v1/workloads/{name}/logs` (newline-delimited JSON).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// `stdout|stderr`
    pub stream: String,
    pub instance: String,
    pub line: String,
}

/// One event of `GET /api/v1/events` (Server-Sent Events, `data:` is this JSON).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventEntry {
    pub id: i64,
    /// RFC 3339.
    pub time: String,
    pub project: String,
    pub workload: Option<String>,
    pub instance: Option<String>,
    /// `created|updated|deleted|starting|started|exited|oom_killed|restarting|stopping|stopped|start_failed|health_failed|unhealthy|healthy|scaled`
    pub kind: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The error body of every failed API call.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request|invalid_spec|unauthorized|not_found|conflict|internal`
    pub code: String,
    pub message: String,
    /// The spec field at fault, for `invalid_spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Frames the exec WebSocket sends as text, besides binary output frames.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecControl {
    /// Client → server: the terminal's new size.
    Resize { cols: u16, rows: u16 },
    /// Client → server: no more input.
    CloseStdin,
    /// Server → client: the command ended.
    Exit {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// Server → client: the command could not run.
    Error { message: String },
}

/// An image as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageDocument {
    /// The normalised name, like `docker.io/library/busybox:1.36`.
    pub reference: String,
    /// The manifest digest (the image's identity).
    pub digest: String,
    pub config_digest: String,
    /// Bytes of config and layers as stored (compressed).
    pub size: u64,
    pub platform: String,
    /// `pull` or `import`.
    pub source: String,
    /// RFC 3339.
    pub created_at: String,
    pub layers: Vec<String>,
    /// The image's run defaults: `Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`,
    /// `ExposedPorts`, `Labels`, `StopSignal`.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageDocument>,
}

/// A model as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelDocument {
    /// Its name in the project: the `model` the `/v1/` endpoints take.
    pub name: String,
    /// `sha256:<hex>` of the file.
    pub digest: String,
    pub size: u64,
    /// `gguf`.
    pub format: String,
    /// Whether a runner has it in memory now.
    pub loaded: bool,
    /// `general.architecture`, like `llama`.
    pub architecture: Option<String>,
    pub parameters: u64,
    /// The storage type most weights have, like `Q4_K`.
    pub quantization: Option<String>,
    /// The context it was trained for, in tokens.
    pub context_length: Option<u64>,
    pub chat_template: Option<String>,
    /// `completion` (it generates text: `/v1/chat/completions`, `/v1/completions`) or
    /// `embedding` (it makes vectors: `/v1/embeddings`).
    pub kind: String,
    /// For an embedding model, the length of its vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_length: Option<u64>,
    /// `import`, or where it was pulled from.
    pub source: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelDocument>,
}

/// A model a runner holds in memory now.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoadedModelDocument {
    pub name: String,
    pub digest: String,
    /// The runner's process.
    pub pid: u32,
    /// Resident memory of the runner now.
    pub memory_bytes: u64,
    pub slots: u32,
    /// Tokens of context per slot.
    pub context: u32,
    /// Requests running or waiting now.
    pub requests: u32,
    /// Seconds until it unloads if no request comes.
    pub unloads_in_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoadedModelList {
    pub models: Vec<LoadedModelDocument>,
}

/// One model in `GET /v1/models`, as OpenAI's API lists it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenAiModel {
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub owned_by: String,
}

/// `GET /v1/models`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenAiModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<OpenAiModel>,
}

/// `POST /api/v1/images/pull`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullRequest {
    pub reference: String,
    /// Speak plain HTTP to the registry (an explicit opt-in).
    #[serde(default)]
    pub plain_http: bool,
}

/// `POST /api/v1/models/pull`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelPullRequest {
    /// `https://…/FILE.gguf`, `hf://ORG/REPO/FILE.gguf`, or a registry reference
    /// (`registry/ns/model:tag`, Docker Model Runner's layout).
    pub source: String,
    /// The model's name here; by default the file's stem, or the repository's last part
    /// (with its tag unless `latest`).
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/v1/models/{name}/push`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelPushRequest {
    /// Where to: `registry/ns/model:tag`.
    pub reference: String,
}

/// What `POST /api/v1/models/{name}/push` did.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelPushed {
    pub reference: String,
    /// The pushed manifest's digest.
    pub digest: String,
}

/// One line of the NDJSON stream of a model pull or push: progress, then the end.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ModelTransferEvent {
    /// The blobs (or the one download) the transfer moves.
    Resolved {
        digest: String,
        blobs: Vec<BlobProgress>,
    },
    Progress(BlobProgress),
    /// A pull finished; the last line.
    Done {
        model: ModelDocument,
    },
    /// A push finished; the last line.
    Pushed(ModelPushed),
    /// The transfer failed; the last line.
    Error {
        error: ErrorDetail,
    },
}

/// What `POST /api/v1/images/prune` removed.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PruneResponse {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// One line of the NDJSON stream `POST /api/v1/images/pull` sends when asked for
/// `application/x-ndjson`: what the pull is doing, then the image or the error.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PullEvent {
    /// The manifest is known: these blobs (config first, then layers) make up the image.
    Resolved {
        digest: String,
        blobs: Vec<BlobProgress>,
    },
    /// `done` of `total` bytes of one blob are stored (resumed bytes included).
    Progress(BlobProgress),
    /// The pull finished; the last line.
    Done { image: ImageDocument },
    /// The pull failed; the last line.
    Error { error: ErrorDetail },
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobProgress {
    pub digest: String,
    pub done: u64,
    pub total: u64,
}

/// `POST /api/v1/images/export`: the images to write into one archive.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportRequest {
    /// Names or digests, as `ward image ls` shows them.
    pub images: Vec<String>,
}

/// `POST /api/v1/registries/login`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// `ghcr.io`, `docker.io`, `127.0.0.1:5000`, or a URL of the registry.
    pub registry: String,
    pub username: String,
    /// A password or an access token; kept by the daemon, never shown again.
    pub password: String,
    /// Speak plain HTTP to the registry (an explicit opt-in; loopback registries need none).
    #[serde(default)]
    pub plain_http: bool,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoginRequest")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("plain_http", &self.plain_http)
            .finish()
    }
}

/// A registry login of a project, without its password.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryLogin {
    /// The registry's canonical name (`docker.io` for Docker Hub).
    pub registry: String,
    pub username: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryLoginList {
    pub registries: Vec<RegistryLogin>,
}

/// `POST /api/v1/keys`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRequest {
    pub name: String,
    /// The project the key works in; null or absent: every project (needs such a key).
    #[serde(default)]
    pub project: Option<String>,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Grants on top of the role: `exec`, `secrets:read`, `audit:read`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How long the key works, like `30d` or `12h`; absent: until revoked.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// An API key as the API shows it: never its secret.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyDocument {
    pub id: String,
    pub name: String,
    /// Null: every project.
    pub project: Option<String>,
    pub role: String,
    pub capabilities: Vec<String>,
    /// Who created it: `admin-token` or `key:<id>`.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The answer to `POST /api/v1/keys`: the only time the key itself is shown.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// Send it as `Authorization: Bearer <key>`.
    pub key: String,
    #[serde(flatten)]
    pub document: KeyDocument,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyDocument>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    /// RFC 3339.
    pub time: String,
    /// `admin-token` or `key:<id>`.
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub project: Option<String>,
    /// The method and route, like `POST /api/v1/workloads/{name}/stop`.
    pub action: String,
    /// The path called.
    pub target: String,
    pub status: u16,
    /// `ok`, or what went wrong.
    pub outcome: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// What `GET /api/v1/audit/verify` found.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditVerifyResponse {
    /// True when every entry hashes to its hash and links to the one before.
    pub ok: bool,
    pub entries: u64,
    /// The first entry that does not, and why.
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
}

/// A project (tenant).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectDocument {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectDocument>,
}

/// A named volume and the workloads of its project that mount it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeDocument {
    pub name: String,
    /// RFC 3339; absent where the filesystem does not say.
    pub created_at: Option<String>,
    pub used_by: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeList {
    pub volumes: Vec<VolumeDocument>,
}

/// The volumes a removal or a prune took away, with their files.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumePruneResponse {
    pub removed: Vec<String>,
}

/// A secret, never with its value.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretDocument {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretList {
    pub secrets: Vec<SecretDocument>,
}

/// A note to record in a workload's events.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// What happened, in plain words (up to 4 KiB).
    pub message: String,
    /// Details as a JSON object (up to 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// A secret's value: as text, or as base64 for bytes that are not.
#[derive(Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretValue(<hidden>)")
    }
}

/// A project's limits; null: no limit. Sizes are bytes, or strings like `8GiB` on the way in.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaLimits {
    /// Cores, summed over every replica.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Bytes, summed over every replica; also caps the memory the project's instances use.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    pub memory: Option<serde_json::Value>,
    #[serde(default)]
    pub workloads: Option<u64>,
    #[serde(default)]
    pub replicas: Option<u64>,
    #[serde(default)]
    pub gpus: Option<u64>,
    /// Bytes in the project's named volumes.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    pub volume_bytes: Option<serde_json::Value>,
}

/// What a project uses: asked for by its specs, and measured.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaUse {
    pub cpu: f64,
    pub memory: u64,
    pub workloads: u64,
    pub replicas: u64,
    pub gpus: u64,
    pub measured_memory: u64,
    pub volume_bytes: u64,
}

/// `GET /api/v1/quota`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaDocument {
    pub project: String,
    /// Null when the project has no quota.
    pub limits: Option<QuotaLimits>,
    pub usage: QuotaUse,
}

/// `POST /api/v1/sessions`: a user's login.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionRequest {
    pub username: String,
    pub password: String,
    /// The project to work in; absent: the user's only one, or every project.
    #[serde(default)]
    pub project: Option<String>,
    /// How long the session lasts, like `12h` (the default) or `7d` (at most 30 days).
    #[serde(default)]
    pub expires_in: Option<String>,
}

impl std::fmt::Debug for SessionRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SessionRequest")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("project", &self.project)
            .finish()
    }
}

/// A session: send `token` as `Authorization: Bearer <token>` until `expires_at`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionDocument {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub username: String,
    /// Null: every project.
    pub project: Option<String>,
    pub role: String,
    pub capabilities: Vec<String>,
    /// What a browser holding the session in its cookie sends in `X-CSRF-Token` with every
    /// change (also in the `ward_csrf` cookie, which the page can read).
    #[serde(default)]
    pub csrf_token: String,
}

/// `POST /api/v1/users`: a user and its password (also sets a new password).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRequest {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for UserRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserRequest")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A role granted to a user in a project.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantDocument {
    /// Null: every project.
    #[serde(default)]
    pub project: Option<String>,
    pub role: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserDocument {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub grants: Vec<GrantDocument>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserList {
    pub users: Vec<UserDocument>,
}
