//! The services the engine offers every caller. A caller first passes the [`Door`] for an
//! [`Admission`]; each operation that changes something takes that admission (which names the
//! project and carries the audit entry), and reads take the project the admission named.
//!
//! [`Door`]: crate::door::Door

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::broadcast;
use ward_spec::WorkloadSpec;

use crate::access::Principal;
use crate::door::Admission;
use crate::events::{Event, EventKind};
use crate::records::{AuditRecord, AuditVerification, ImageRecord};
use crate::session::{ExecRequest, ExecSession, LogLine, Signal};
use crate::view::{
    AlertView, ApplyOutcome, Grant, ImageView, KeyView, LogFollow, ModelView, NewKey, PruneReport,
    PullProgress, Quota, QuotaUsage, SecretInfo, Session, SilenceView, UserView, VolumeView,
    WorkloadView,
};
use crate::Error;

/// Log lines, each after the name of the instance that wrote it.
pub type InstanceLines = Vec<(String, LogLine)>;

/// Workloads and what belongs to them: their lifecycle, events, logs, exec, volumes and the
/// project's quota.
#[async_trait]
pub trait Workloads: Send + Sync {
    /// Creates one workload; fails if the name is taken.
    fn create(&self, admission: &Admission, spec: WorkloadSpec) -> Result<WorkloadView, Error>;

    /// Creates or updates each workload, all or none (`dry_run`: says what it would do).
    fn apply(
        &self,
        admission: &Admission,
        specs: Vec<WorkloadSpec>,
        dry_run: bool,
    ) -> Result<Vec<ApplyOutcome>, Error>;

    fn get(&self, project: &str, name: &str) -> Result<WorkloadView, Error>;

    /// Every workload of `project`, or of every project.
    fn list(&self, project: Option<&str>) -> Vec<WorkloadView>;

    /// Stops it, each instance given `grace` (or its spec's) before it is killed.
    async fn stop(
        &self,
        admission: &Admission,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<WorkloadView, Error>;

    async fn kill(
        &self,
        admission: &Admission,
        name: &str,
        signal: Signal,
    ) -> Result<WorkloadView, Error>;

    async fn start(&self, admission: &Admission, name: &str) -> Result<WorkloadView, Error>;

    async fn restart(&self, admission: &Admission, name: &str) -> Result<WorkloadView, Error>;

    /// Removes it; a running one only with `force`.
    async fn delete(&self, admission: &Admission, name: &str, force: bool) -> Result<(), Error>;

    /// Waits until its instances have settled (running, or failed to start), at most
    /// `timeout`.
    async fn wait_until_settled(
        &self,
        project: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<WorkloadView, Error>;

    /// Events as they are recorded.
    /// Records an event of `kind` on workload `name` for an admitted
    /// [`Operation::WorkloadNote`](crate::ops::Operation::WorkloadNote); the event's data
    /// names the caller (and its reason), and the call's audit entry is written with it.
    fn record_event(
        &self,
        admission: &Admission,
        name: &str,
        kind: EventKind,
        message: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error>;

    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// Up to `limit` events after `after_id`, oldest first.
    fn events_after(
        &self,
        project: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, Error>;

    /// The newest `limit` events, oldest first.
    fn latest_events(&self, project: Option<&str>, limit: usize) -> Result<Vec<Event>, Error>;

    /// The project's stored samples of one metric, gathered into steps.
    fn query_metrics(&self, project: &str, query: &MetricQuery)
        -> Result<Vec<MetricSeries>, Error>;

    /// Its instances' log lines, the last `tail` of each, written since `since`.
    fn logs(
        &self,
        project: &str,
        name: &str,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<InstanceLines, Error>;

    /// [`Workloads::logs`], then a follow of what comes after.
    fn follow_logs(
        &self,
        project: &str,
        name: &str,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<(InstanceLines, Box<dyn LogFollow>), Error>;

    /// Runs a command in one of its instances (the first running one unless `replica`).
    async fn exec(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
        request: &ExecRequest,
    ) -> Result<ExecSession, Error>;

    /// Connects to the terminal of an instance that runs on one.
    async fn attach(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
    ) -> Result<ExecSession, Error>;

    /// The manifest digests of the images instances run now.
    fn images_in_use(&self) -> Vec<String>;

    fn set_quota(
        &self,
        project: &str,
        quota: &Quota,
        admission: Option<&Admission>,
    ) -> Result<(), Error>;

    /// The project's quota (if it has one) and what it uses.
    fn quota(&self, project: &str) -> Result<(Option<Quota>, QuotaUsage), Error>;

    fn volumes(&self, admission: &Admission) -> Result<Vec<VolumeView>, Error>;

    fn remove_volume(&self, admission: &Admission, name: &str) -> Result<(), Error>;

    /// Removes every named volume no workload mounts; returns their names.
    fn prune_volumes(&self, admission: &Admission) -> Result<Vec<String>, Error>;
}

/// Images, and the registry logins pulls use.
#[async_trait]
pub trait Images: Send + Sync {
    /// Pulls `reference` into `project` and names it there.
    async fn pull(
        &self,
        project: &str,
        reference: &str,
        plain_http: bool,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        admission: Option<&Admission>,
    ) -> Result<ImageView, Error>;

    /// Imports a `docker save` archive or an OCI layout at `path`; images it does not name
    /// get `name`.
    async fn import(
        &self,
        project: &str,
        path: PathBuf,
        name: Option<String>,
        admission: Option<&Admission>,
    ) -> Result<Vec<ImageView>, Error>;

    /// Checks the credentials against `registry` and keeps them for `project`'s pulls;
    /// returns the registry's canonical name.
    async fn login(
        &self,
        project: &str,
        registry: &str,
        username: &str,
        password: &str,
        plain_http: bool,
        admission: Option<&Admission>,
    ) -> Result<String, Error>;

    /// Forgets a login; returns the registry's canonical name and the username it had.
    fn logout(
        &self,
        project: &str,
        registry: &str,
        admission: Option<&Admission>,
    ) -> Result<(String, String), Error>;

    /// `(registry, username)` of each login of `project`.
    fn logins(&self, project: &str) -> Result<Vec<(String, String)>, Error>;

    /// Checks every blob of the named images against its digest.
    fn verify(&self, project: &str, references: &[String]) -> Result<(), Error>;

    /// Writes the named images as one `docker save` / OCI archive.
    fn export(
        &self,
        project: &str,
        references: &[String],
        out: &mut dyn std::io::Write,
    ) -> Result<(), Error>;

    fn list(&self, project: &str) -> Result<Vec<ImageRecord>, Error>;

    fn get(&self, project: &str, reference: &str) -> Result<ImageView, Error>;

    /// Removes a name; `in_use` names the workloads whose spec uses it.
    fn remove(
        &self,
        project: &str,
        reference: &str,
        in_use: &[String],
        force: bool,
        admission: Option<&Admission>,
    ) -> Result<ImageRecord, Error>;

    /// Deletes what no named image and no image in `in_use` (digests) needs.
    fn prune(&self, in_use: &[String]) -> Result<PruneReport, Error>;
}

/// Secrets, sealed at rest.
pub trait Secrets: Send + Sync {
    fn set(
        &self,
        project: &str,
        name: &str,
        value: &[u8],
        admission: Option<&Admission>,
    ) -> Result<SecretInfo, Error>;

    fn list(&self, project: &str) -> Result<Vec<SecretInfo>, Error>;

    fn info(&self, project: &str, name: &str) -> Result<SecretInfo, Error>;

    fn reveal(&self, project: &str, name: &str) -> Result<Vec<u8>, Error>;

    fn remove(
        &self,
        project: &str,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<SecretInfo, Error>;
}

/// API keys, projects and the audit log.
pub trait Keys: Send + Sync {
    /// Creates a key; returns it and its secret, shown this once.
    fn create_key(
        &self,
        creator: &Principal,
        request: &NewKey,
        admission: Option<&Admission>,
    ) -> Result<(KeyView, String), Error>;

    /// The principal of a presented key; `None` for no such key.
    fn authenticate(&self, presented: &str) -> Result<Option<Principal>, Error>;

    fn list_keys(&self, viewer: &Principal) -> Result<Vec<KeyView>, Error>;

    fn revoke_key(
        &self,
        revoker: &Principal,
        id: &str,
        admission: Option<&Admission>,
    ) -> Result<KeyView, Error>;

    fn projects(&self, viewer: &Principal) -> Result<Vec<String>, Error>;

    fn create_project(&self, name: &str, admission: Option<&Admission>) -> Result<(), Error>;

    /// Up to `limit` audit entries after `after_seq` that `reader` may see.
    fn audit(
        &self,
        reader: &Principal,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, Error>;

    fn verify_audit(&self) -> Result<AuditVerification, Error>;
}

/// Alert rules' active alerts, and the silences that mute them, per project.
pub trait Alerts: Send + Sync {
    /// The project's pending and firing alerts.
    fn alerts(&self, project: &str) -> Vec<AlertView>;

    /// The project's silences that have not ended.
    fn silences(&self, project: &str) -> Vec<SilenceView>;

    /// Mutes the admitted project's alerts matching `matchers` for `duration`.
    fn silence(
        &self,
        admission: &Admission,
        matchers: BTreeMap<String, String>,
        duration: Duration,
        comment: &str,
    ) -> Result<SilenceView, Error>;

    /// Ends one of the admitted project's silences now.
    fn expire(&self, admission: &Admission, id: &str) -> Result<SilenceView, Error>;
}

/// Users and their browser sessions.
pub trait Users: Send + Sync {
    fn set_password(
        &self,
        name: &str,
        password: &str,
        admission: Option<&Admission>,
    ) -> Result<UserView, Error>;

    fn list(&self) -> Result<Vec<UserView>, Error>;

    fn remove(&self, name: &str, admission: Option<&Admission>) -> Result<(), Error>;

    fn grant(
        &self,
        user: &str,
        grant: &Grant,
        admission: Option<&Admission>,
    ) -> Result<UserView, Error>;

    fn revoke(
        &self,
        user: &str,
        project: Option<&str>,
        admission: Option<&Admission>,
    ) -> Result<UserView, Error>;

    /// Opens a session of `lifetime` for a user whose password checks out.
    fn login(
        &self,
        name: &str,
        password: &str,
        project: Option<&str>,
        lifetime: Duration,
    ) -> Result<Session, Error>;

    /// The principal of a session token; `None` for none or an expired one.
    fn authenticate(&self, token: &str) -> Result<Option<Principal>, Error>;

    /// The anti-forgery token that goes with a session.
    fn csrf_token(&self, session_token: &str) -> String;
}

/// Models: files in the content-addressed model store, named per project.
/// Models from and to elsewhere: URLs, Hugging Face, registries.
#[async_trait]
pub trait ModelTransfers: Send + Sync {
    /// Pulls `source` (an `https://` URL, `hf://ORG/REPO/FILE`, or a registry reference) into
    /// `project` as `name` (by default the name the source suggests).
    async fn pull(
        &self,
        project: &str,
        source: &str,
        name: Option<&str>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        admission: Option<&Admission>,
    ) -> Result<ModelView, Error>;

    /// Pushes model `name` of `project` to the registry reference `reference`; returns the
    /// manifest's digest.
    async fn push(
        &self,
        project: &str,
        name: &str,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<String, Error>;
}

pub trait Models: Send + Sync {
    fn list(&self, project: &str) -> Result<Vec<ModelView>, Error>;

    fn get(&self, project: &str, name: &str) -> Result<ModelView, Error>;

    /// Takes the GGUF file at `path` into the store under `name` (a name already taken moves
    /// to it); the file at `path` is left as it is.
    fn import(
        &self,
        project: &str,
        path: PathBuf,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<ModelView, Error>;

    /// Removes a name; the file goes once no name in any project points at it. A loaded
    /// model only with `force`.
    fn remove(
        &self,
        project: &str,
        name: &str,
        force: bool,
        admission: Option<&Admission>,
    ) -> Result<ModelView, Error>;
}

/// The stored series a metric's short name means (`memory`, `cpu`, `pids`); any other name
/// is the series' own.
pub fn metric_name(name: &str) -> &str {
    match name {
        "memory" => "ward_instance_memory_bytes",
        "cpu" => "ward_instance_cpu_usage_cores",
        "pids" => "ward_instance_pids",
        other => other,
    }
}

/// What [`Workloads::query_metrics`] reads: one metric, optionally of one workload, from
/// `start` to `end` (milliseconds since the epoch) in steps of `step` milliseconds, each step
/// the `aggregation` (avg, min, max, sum, last or count) of its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricQuery {
    pub name: String,
    pub workload: Option<String>,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub aggregation: String,
}

/// One series of a metric: its labels and its (milliseconds, value) points.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSeries {
    pub labels: Vec<(String, String)>,
    pub points: Vec<(i64, f64)>,
}
