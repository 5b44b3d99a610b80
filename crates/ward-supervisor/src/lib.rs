//! The supervisor: one reconcile loop that drives every workload from its actual state to the
//! state the user asked for — first start, restarts with backoff, health, scaling, updates,
//! stops, removal and recovery after a daemon restart all go through the same path.
//!
//! Time is tokio's clock, so tests pause and advance it; the OS sits behind
//! [`ward_runtime::Driver`], so tests can put a fake at that boundary.

pub mod access;
pub use ward_core::ops;
pub(crate) use ward_core::view;
mod completion;
mod error;
mod events;
pub mod gate;
mod health;
mod host_metrics;
pub mod images;
pub mod inference;
mod logs;
pub mod model_transfer;
pub mod models;
pub mod policy;
pub mod privileges;
pub mod quota;
mod reconcile;
mod recorder;
mod remote_write;
pub mod secrets;
mod services;
mod state;
mod telemetry;
mod time;
pub mod users;
mod volumes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, Notify};
use ward_runtime::{Driver, InstanceKey, LogLocation};
use ward_spec::WorkloadSpec;
use ward_store::Store;

pub use access::{
    AccessError, AccessService, Capability, KeyView, NewKey, Permission, Principal, Role,
};
pub use error::SupervisorError;
pub use events::{Event, EventKind};
pub use gate::{Admission, Caller, Door, Gate, Refusal};
pub use images::{ImageError, ImageService, StoredImage};
pub use inference::{Inference, InferenceConfig, InferenceError};
pub use logs::WorkloadLogFollow;
pub use models::{ModelError, ModelService};
pub use ops::{Access, Audit, Operation, Policy, Reach};
pub use policy::BackoffPolicy;
pub use privileges::HostAccess;
pub use quota::{Quota, QuotaUsage};
pub use secrets::{SecretError, SecretInfo, SecretService};
pub use users::{Grant, Session, UserService, UserView};
pub use view::{
    summarize, DesiredState, HealthState, InstanceView, Phase, UsageSample, WorkloadView,
};
pub use ward_core::view::{
    ApplyAction, ApplyOutcome, ImageView, LogFollow, PruneReport, PullProgress, VolumeView,
};
pub use ward_image::credentials::CredentialStore;
pub use ward_runtime::{
    ExecControl, ExecExit, ExecOutput, ExecRequest, ExecSession, LogLine, Signal,
};

use events::PendingEvent;

/// The most bytes of a note's message, and of its data.
const MAXIMUM_NOTE_BYTES: usize = 4096;
use state::{InstanceEntry, State, WorkloadEntry};

/// Tunables of the supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub backoff: BackoffPolicy,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// How often resource usage of running instances is sampled.
    pub sample_interval: Duration,
    /// Events kept in the database.
    pub event_retention: usize,
    /// Host paths no workload may mount, and host directories opened to projects.
    pub host_access: HostAccess,
    /// Where sampled metrics are kept, and how; `None`: not kept, not watched.
    pub metrics: Option<MetricsConfig>,
}

/// The metric store's place and limits.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    pub dir: std::path::PathBuf,
    pub store: ward_tsdb::Options,
    /// A Prometheus remote-write endpoint every sample is also sent to.
    pub remote_write: Option<String>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            backoff: BackoffPolicy::default(),
            stop_grace: Duration::from_secs(10),
            sample_interval: Duration::from_secs(5),
            event_retention: 100_000,
            host_access: HostAccess::default(),
            metrics: None,
        }
    }
}

/// A handle on the running supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Arc<Store>,
    gate: Gate,
    driver: Arc<dyn Driver>,
    config: SupervisorConfig,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    wake: Notify,
    /// Signalled whenever an operation finishes, for callers waiting on a state.
    changed: Notify,
    /// The metric store and the anomaly detectors, when kept.
    telemetry: Option<Mutex<telemetry::Telemetry>>,
    /// What each project's volumes hold, measured off every lock.
    volumes: Arc<volumes::VolumeMeter>,
    /// Writes instance records and events off the state lock and the async threads, in the
    /// order the state changed.
    recorder: recorder::Recorder,
}

impl Supervisor {
    /// Loads state from the store, re-attaches to instances left by an earlier daemon and
    /// starts the reconcile loop and the usage sampler. Must be called inside a tokio runtime.
    pub async fn start(
        store: Arc<Store>,
        driver: Arc<dyn Driver>,
        config: SupervisorConfig,
    ) -> Result<Supervisor, SupervisorError> {
        let (events, _) = broadcast::channel(4096);
        let telemetry = match &config.metrics {
            Some(metrics) => Some(Mutex::new(telemetry::Telemetry::open(
                &metrics.dir,
                metrics.store,
                metrics
                    .remote_write
                    .clone()
                    .map(remote_write::RemoteWriter::start),
            )?)),
            None => None,
        };
        let inner = Arc::new(Inner {
            telemetry,
            gate: Gate::new(store.clone()),
            recorder: recorder::Recorder::start(store.clone(), events.clone()),
            store,
            driver,
            config,
            state: Mutex::new(State::default()),
            events,
            wake: Notify::new(),
            changed: Notify::new(),
            volumes: Arc::default(),
        });
        // Project caps live in cgroups, which a reboot empties: set them again first.
        for project in inner.store.list_projects()? {
            let Some(quota) = inner.store.get_quota(&project)? else {
                continue;
            };
            if quota.memory.is_none() && quota.cpu.is_none() {
                continue;
            }
            let memory = quota.memory.map(|bytes| bytes.max(0) as u64);
            if let Err(error) = inner.driver.set_project_limits(&project, memory, quota.cpu) {
                tracing::warn!(project, %error, "cannot cap the project's memory and CPU");
            }
        }
        reconcile::recover(&inner).await?;
        tokio::spawn(reconcile::run_loop(inner.clone()));
        tokio::spawn(reconcile::run_sampler(inner.clone()));
        volumes::start(&inner);
        Ok(Supervisor { inner })
    }

    /// The gate every call goes through, and the audit log behind it.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// Admits `caller` to one call of `operation` (see [`Gate::admit`]).
    pub fn admit(
        &self,
        caller: &Caller,
        operation: Operation,
        project: Option<&str>,
        target: &str,
    ) -> Result<Admission, SupervisorError> {
        Ok(self.inner.gate.admit(caller, operation, project, target)?)
    }

    /// Creates one workload in the admitted project; fails if the name is taken.
    pub fn create(
        &self,
        admission: &Admission,
        spec: WorkloadSpec,
    ) -> Result<WorkloadView, SupervisorError> {
        admission.require(&[Operation::WorkloadCreate])?;
        let name = spec.name.clone();
        self.apply_batch(admission, vec![spec], false, true)?;
        self.get(admission.project_or_default(), &name)
    }

    /// Creates or updates workloads, all or nothing. With `dry_run`, only reports what would
    /// change.
    pub fn apply(
        &self,
        admission: &Admission,
        specs: Vec<WorkloadSpec>,
        dry_run: bool,
    ) -> Result<Vec<ApplyOutcome>, SupervisorError> {
        admission.require(&[Operation::WorkloadApply, Operation::WorkloadReplace])?;
        self.apply_batch(admission, specs, dry_run, false)
    }

    /// `apply`; with `create_only`, a name already taken refuses the batch, checked under the
    /// same lock as the write so two creates of one name cannot both succeed.
    fn apply_batch(
        &self,
        admission: &Admission,
        specs: Vec<WorkloadSpec>,
        dry_run: bool,
        create_only: bool,
    ) -> Result<Vec<ApplyOutcome>, SupervisorError> {
        let project = admission.project_or_default();
        // Privileges first: a caller learns nothing about names or quotas it may not use.
        for spec in &specs {
            privileges::check_spec(
                &self.inner.config.host_access,
                admission.principal(),
                project,
                spec,
            )?;
        }
        // Then what this host can run at all: a spec no driver would start is not stored.
        for spec in &specs {
            self.inner
                .driver
                .check(spec)
                .map_err(|unsupported| SupervisorError::Invalid {
                    field: unsupported.field,
                    message: unsupported.reason,
                })?;
        }
        if !self.inner.store.project_exists(project)? {
            return Err(SupervisorError::UnknownProject {
                project: project.to_string(),
            });
        }
        let quota = self.stored_quota(project)?;
        if !dry_run {
            self.inner.driver.start_coming();
        }
        let mut state = self.inner.lock();
        if state.shutting_down {
            return Err(SupervisorError::ShuttingDown);
        }
        if create_only {
            if let Some(taken) = specs.iter().find(|spec| {
                state
                    .workloads
                    .contains_key(&(project.to_string(), spec.name.clone()))
            }) {
                return Err(SupervisorError::AlreadyExists {
                    project: project.to_string(),
                    name: taken.name.clone(),
                });
            }
        }
        validate_batch(&state, project, &specs)?;
        self.check_quota(&state, project, quota.as_ref(), &specs)?;
        let now = SystemTime::now();
        let mut outcomes = Vec::new();
        let mut records = Vec::new();
        let mut pending_events = Vec::new();
        let mut entries = Vec::new();
        for spec in specs {
            let new_json = spec.to_normalized_json();
            let key = (project.to_string(), spec.name.clone());
            let existing = state.workloads.get(&key);
            let (action, revision, old, created_at) = match existing {
                None => (ApplyAction::Created, 1, None, now),
                Some(entry) => {
                    let old_json: serde_json::Value =
                        serde_json::from_str(&entry.spec_json).unwrap_or(serde_json::Value::Null);
                    if old_json == new_json && entry.desired != DesiredState::Deleted {
                        (
                            ApplyAction::Unchanged,
                            entry.revision,
                            Some(old_json),
                            entry.created_at,
                        )
                    } else {
                        (
                            ApplyAction::Updated,
                            entry.revision + 1,
                            Some(old_json),
                            entry.created_at,
                        )
                    }
                }
            };
            outcomes.push(ApplyOutcome {
                name: spec.name.clone(),
                action,
                revision,
                old,
                new: new_json.clone(),
            });
            if action == ApplyAction::Unchanged || dry_run {
                continue;
            }
            let entry = WorkloadEntry {
                project: project.to_string(),
                spec_json: new_json.to_string(),
                revision,
                desired: DesiredState::Running,
                created_at,
                updated_at: now,
                instances: BTreeMap::new(),
                stop_grace: None,
                forgetting: false,
                spec,
            };
            records.push(entry.to_record());
            let kind = if action == ApplyAction::Created {
                EventKind::Created
            } else {
                EventKind::Updated
            };
            let caller = admission.caller();
            let mut message = format!(
                "workload {} {} (revision {revision})",
                entry.spec.name,
                kind.as_str()
            );
            let mut data = serde_json::json!({ "revision": revision });
            // A change an agent made says which agent, and why.
            if let Some(agent) = &caller.agent {
                message.push_str(&format!(" by the {agent}"));
                data["agent"] = serde_json::json!(agent);
                if let Some(reason) = &caller.reason {
                    message.push_str(&format!(": {reason}"));
                    data["reason"] = serde_json::json!(reason);
                }
            }
            pending_events.push(
                PendingEvent::new(project, &entry.spec.name, None, kind, message).with_data(data),
            );
            entries.push(entry);
        }
        if records.is_empty() {
            return Ok(outcomes);
        }
        let store_events: Vec<_> = pending_events
            .iter()
            .map(|event| event.to_store(now))
            .collect();
        let audit = admission.success_entry(if create_only { 201 } else { 200 });
        let ids = self
            .inner
            .store
            .put_workloads(&records, &store_events, audit.as_ref())
            .inspect_err(|_| admission.unrecord())?;
        for entry in entries {
            let key = (project.to_string(), entry.spec.name.clone());
            match state.workloads.get_mut(&key) {
                Some(existing) => {
                    // A change of the memory limit alone is made in place where the driver
                    // can: those instances run the new revision as they are.
                    if let Some(bytes) = memory_change_only(&existing.spec_json, &entry.spec_json) {
                        let old_revision = existing.revision;
                        for (replica, instance) in existing.instances.iter_mut() {
                            let in_place = instance.revision == old_revision
                                && instance.phase == Phase::Running
                                && !instance.busy
                                && instance.handle.as_ref().is_some_and(|handle| {
                                    self.inner.driver.set_memory_limit(handle, bytes)
                                });
                            if in_place {
                                instance.revision = entry.revision;
                                let instance_key = InstanceKey::new(project, &key.1, *replica);
                                self.inner
                                    .record(Some((&instance_key, instance)), Vec::new());
                            }
                        }
                    }
                    // A change of the replica count alone keeps the running instances: they
                    // run the new revision as they are.
                    if differ_only_in_replicas(&existing.spec_json, &entry.spec_json) {
                        let old_revision = existing.revision;
                        for (replica, instance) in existing.instances.iter_mut() {
                            if instance.revision == old_revision {
                                instance.revision = entry.revision;
                                let instance_key = InstanceKey::new(project, &key.1, *replica);
                                self.inner
                                    .record(Some((&instance_key, instance)), Vec::new());
                            }
                        }
                    }
                    existing.spec = entry.spec;
                    existing.spec_json = entry.spec_json;
                    existing.revision = entry.revision;
                    existing.desired = DesiredState::Running;
                    // Taken again while its record was being forgotten: it stays.
                    existing.forgetting = false;
                    existing.updated_at = entry.updated_at;
                    for instance in existing.instances.values_mut() {
                        if instance.phase.is_terminal() && !instance.busy {
                            instance.retry_at = None;
                            instance.failures_in_row = 0;
                        }
                    }
                }
                None => {
                    state.workloads.insert(key, entry);
                }
            }
        }
        drop(state);
        recorder::broadcast(&self.inner.events, ids, pending_events, now);
        self.inner.wake.notify_one();
        Ok(outcomes)
    }

    /// Records a caller's event on workload `name`, with its audit entry in the same
    /// transaction; the event's data names the caller and its reason.
    pub fn record_event(
        &self,
        admission: &Admission,
        name: &str,
        kind: EventKind,
        message: &str,
        data: serde_json::Value,
    ) -> Result<Event, SupervisorError> {
        admission.require(&[Operation::WorkloadNote])?;
        let project = admission.project_or_default();
        let message = message.trim();
        if message.is_empty() || message.len() > MAXIMUM_NOTE_BYTES {
            return Err(SupervisorError::Invalid {
                field: "message".to_string(),
                message: format!(
                    "give a message of 1 to {MAXIMUM_NOTE_BYTES} bytes, like \"deployed v2\""
                ),
            });
        }
        let serde_json::Value::Object(mut fields) = data else {
            return Err(SupervisorError::Invalid {
                field: "data".to_string(),
                message: "must be a JSON object, like {\"version\": \"2\"}".to_string(),
            });
        };
        if serde_json::to_vec(&fields).map_or(0, |bytes| bytes.len()) > MAXIMUM_NOTE_BYTES {
            return Err(SupervisorError::Invalid {
                field: "data".to_string(),
                message: format!("is over {MAXIMUM_NOTE_BYTES} bytes: keep notes short"),
            });
        }
        let (actor, on_behalf_of) = admission.caller().actor();
        fields.insert("actor".to_string(), serde_json::json!(actor));
        if let Some(on_behalf_of) = on_behalf_of {
            fields.insert("on_behalf_of".to_string(), serde_json::json!(on_behalf_of));
        }
        if let Some(reason) = &admission.caller().reason {
            fields.insert("reason".to_string(), serde_json::json!(reason));
        }
        let pending = PendingEvent::new(project, name, None, kind, message)
            .with_data(serde_json::Value::Object(fields));
        let state = self.inner.lock();
        state
            .workloads
            .get(&(project.to_string(), name.to_string()))
            .filter(|entry| entry.desired != DesiredState::Deleted)
            .ok_or_else(|| not_found(project, name))?;
        let now = SystemTime::now();
        let audit = admission.success_entry(201);
        let ids = self
            .inner
            .store
            .append_events_audited(&[pending.to_store(now)], audit.as_ref())
            .inspect_err(|_| admission.unrecord())?;
        drop(state);
        let event = Event {
            id: ids.first().copied().unwrap_or_default(),
            time: now,
            project: pending.project.clone(),
            workload: Some(pending.workload.clone()),
            replica: None,
            kind: kind.as_str().to_string(),
            message: pending.message.clone(),
            data: pending.data.clone(),
        };
        recorder::broadcast(&self.inner.events, ids, vec![pending], now);
        Ok(event)
    }

    pub fn get(&self, project: &str, name: &str) -> Result<WorkloadView, SupervisorError> {
        let state = self.inner.lock();
        state
            .workloads
            .get(&(project.to_string(), name.to_string()))
            .map(WorkloadEntry::view)
            .ok_or_else(|| not_found(project, name))
    }

    /// Every workload of `project` (all projects with `None`), by name.
    pub fn list(&self, project: Option<&str>) -> Vec<WorkloadView> {
        let state = self.inner.lock();
        state
            .workloads
            .values()
            .filter(|entry| project.is_none_or(|project| entry.project == project))
            .map(WorkloadEntry::view)
            .collect()
    }

    /// Marks a workload stopped and waits until its instances are down; `grace` (`stop -t`)
    /// replaces the daemon's wait between SIGTERM and SIGKILL for this stop.
    pub async fn stop(
        &self,
        admission: &Admission,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<WorkloadView, SupervisorError> {
        admission.require(&[Operation::WorkloadStop, Operation::WorkloadKill])?;
        let project = admission.project_or_default();
        self.set_desired(admission, name, DesiredState::Stopped, grace)?;
        let grace = grace.unwrap_or(self.inner.config.stop_grace);
        self.wait_until(project, name, grace + Duration::from_secs(60), |view| {
            view.instances
                .iter()
                .all(|instance| instance.phase.is_terminal())
        })
        .await
    }

    /// `ward kill`: SIGKILL stops the workload at once (no grace, and no restart, as after
    /// `docker kill`); any other signal goes to each running instance's first process and
    /// changes nothing else.
    pub async fn kill(
        &self,
        admission: &Admission,
        name: &str,
        signal: ward_runtime::Signal,
    ) -> Result<WorkloadView, SupervisorError> {
        admission.require(&[Operation::WorkloadKill])?;
        if signal == ward_runtime::Signal::SIGKILL {
            return self.stop(admission, name, Some(Duration::ZERO)).await;
        }
        let project = admission.project_or_default();
        let handles: Vec<ward_runtime::InstanceHandle> = {
            let state = self.inner.lock();
            let entry = state
                .workloads
                .get(&(project.to_string(), name.to_string()))
                .filter(|entry| entry.desired != DesiredState::Deleted)
                .ok_or_else(|| not_found(project, name))?;
            entry
                .instances
                .values()
                .filter(|instance| instance.phase == Phase::Running)
                .filter_map(|instance| instance.handle.clone())
                .collect()
        };
        if handles.is_empty() {
            return Err(SupervisorError::NotRunning {
                name: name.to_string(),
                replica: None,
            });
        }
        for handle in &handles {
            self.inner.driver.signal(handle, signal)?;
        }
        self.get(project, name)
    }

    pub async fn start_workload(
        &self,
        admission: &Admission,
        name: &str,
    ) -> Result<WorkloadView, SupervisorError> {
        admission.require(&[Operation::WorkloadStart])?;
        let project = admission.project_or_default();
        self.inner.driver.start_coming();
        self.set_desired(admission, name, DesiredState::Running, None)?;
        self.wait_until_settled(project, name, Duration::from_secs(60))
            .await
    }

    /// Replaces every instance of a workload with a fresh one and waits until the new ones
    /// run (or have failed to start).
    pub async fn restart(
        &self,
        admission: &Admission,
        name: &str,
    ) -> Result<WorkloadView, SupervisorError> {
        admission.require(&[Operation::WorkloadRestart])?;
        let project = admission.project_or_default();
        self.inner.driver.start_coming();
        {
            let mut state = self.inner.lock();
            let entry = state
                .workloads
                .get_mut(&(project.to_string(), name.to_string()))
                .filter(|entry| entry.desired != DesiredState::Deleted)
                .ok_or_else(|| not_found(project, name))?;
            // The database first: memory never runs ahead of a write that failed.
            self.store_desired(admission, name, DesiredState::Running)?;
            entry.desired = DesiredState::Running;
            for instance in entry.instances.values_mut() {
                instance.restart_requested = true;
                instance.retry_at = None;
                instance.failures_in_row = 0;
            }
        }
        self.inner.wake.notify_one();
        self.wait_until(project, name, Duration::from_secs(60), |view| {
            view.instances.iter().all(|instance| {
                !instance.restart_pending
                    && matches!(
                        instance.phase,
                        Phase::Running | Phase::Exited | Phase::Failed
                    )
            })
        })
        .await
    }

    /// Deletes a workload and everything its instances left. Without `force`, a running
    /// workload is refused.
    pub async fn delete(
        &self,
        admission: &Admission,
        name: &str,
        force: bool,
    ) -> Result<(), SupervisorError> {
        admission.require(&[Operation::WorkloadDelete])?;
        let project = admission.project_or_default();
        let key = (project.to_string(), name.to_string());
        {
            let mut state = self.inner.lock();
            let entry = state
                .workloads
                .get_mut(&key)
                .ok_or_else(|| not_found(project, name))?;
            let view = entry.view();
            let phase = view.phase();
            if !force && entry.desired != DesiredState::Deleted && !phase.is_terminal() {
                return Err(SupervisorError::Conflict {
                    name: name.to_string(),
                    state: phase.as_str().to_string(),
                    hint: format!("stop it first with `ward stop {name}`, or remove it anyway with `ward rm -f {name}`"),
                });
            }
            self.store_desired(admission, name, DesiredState::Deleted)?;
            entry.desired = DesiredState::Deleted;
        }
        self.inner.wake.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let notified = self.inner.changed.notified();
            if !self.inner.lock().workloads.contains_key(&key) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(SupervisorError::Conflict {
                    name: name.to_string(),
                    state: "stopping".to_string(),
                    hint:
                        "its instances did not stop within 120 s; it will be removed once they do"
                            .to_string(),
                });
            }
        }
    }

    /// Waits until no instance of the workload is pending, starting or stopping.
    pub async fn wait_until_settled(
        &self,
        project: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<WorkloadView, SupervisorError> {
        self.wait_until(project, name, timeout, |view| {
            !view.instances.is_empty()
                && view.instances.iter().all(|instance| {
                    matches!(
                        instance.phase,
                        Phase::Running | Phase::Stopped | Phase::Exited | Phase::Failed
                    )
                })
                || view.spec.replicas == 0
        })
        .await
    }

    /// Waits until `condition` holds for the workload's view, or `timeout` passes (then
    /// returns the view as it is).
    pub async fn wait_until(
        &self,
        project: &str,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&WorkloadView) -> bool,
    ) -> Result<WorkloadView, SupervisorError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            let view = self.get(project, name)?;
            if condition(&view) {
                return Ok(view);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(project, name);
            }
        }
    }

    /// Subscribes to events as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Up to `limit` recorded events after `after_id`, of `project` only when given, oldest
    /// first.
    pub fn events_after(
        &self,
        project: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, SupervisorError> {
        Ok(self
            .inner
            .store
            .list_events(project, after_id, limit)?
            .into_iter()
            .map(events::from_store)
            .collect())
    }

    /// The newest `limit` recorded events, of `project` only when given, oldest first.
    pub fn latest_events(
        &self,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, SupervisorError> {
        Ok(self
            .inner
            .store
            .latest_events(project, limit)?
            .into_iter()
            .map(events::from_store)
            .collect())
    }

    /// Log lines of every instance of a workload, merged by time: the last `tail` of each
    /// instance, those after `since`.
    pub fn logs(
        &self,
        project: &str,
        name: &str,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<Vec<(String, LogLine)>, SupervisorError> {
        let keys = self.instance_keys(project, name)?;
        let mut lines = Vec::new();
        for key in keys {
            let instance_name = key.instance_name();
            for line in self.inner.driver.read_logs(&key, tail, since)? {
                lines.push((instance_name.clone(), line));
            }
        }
        lines.sort_by_key(|(_, line)| line.time);
        Ok(lines)
    }

    /// Where each instance's log files are, for followers.
    pub fn log_locations(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<(String, LogLocation)>, SupervisorError> {
        Ok(self
            .instance_keys(project, name)?
            .into_iter()
            .map(|key| (key.instance_name(), self.inner.driver.log_location(&key)))
            .collect())
    }

    /// Runs a command inside a running instance (the first running one unless `replica` is given).
    pub async fn exec(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
        request: &ExecRequest,
    ) -> Result<ExecSession, SupervisorError> {
        let handle = self.running_instance(project, name, replica)?;
        self.inner
            .driver
            .exec(&handle, request)
            .await
            .map_err(|error| match error {
                ward_runtime::RuntimeError::ExecRefused { field, message } => {
                    SupervisorError::Invalid {
                        field: field.to_string(),
                        message,
                    }
                }
                other => other.into(),
            })
    }

    /// Attaches to the terminal of a running instance of a `tty` workload (`ward attach`).
    pub async fn attach(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
    ) -> Result<ExecSession, SupervisorError> {
        let handle = self.running_instance(project, name, replica)?;
        self.inner
            .driver
            .attach_terminal(&handle)
            .await
            .map_err(|error| match error {
                ward_runtime::RuntimeError::NoTerminal { .. } => SupervisorError::Conflict {
                    name: name.to_string(),
                    state: "running without a terminal".to_string(),
                    hint: format!(
                        "run it with tty: true (ward run -t), or open a shell in it with 'ward exec -it {name} -- sh'"
                    ),
                },
                ward_runtime::RuntimeError::TerminalBusy { .. } => SupervisorError::Conflict {
                    name: name.to_string(),
                    state: "attached already".to_string(),
                    hint: "one client at a time; detach the other first".to_string(),
                },
                other => other.into(),
            })
    }

    /// The handle of a running instance of a workload: `replica`, else the first running.
    fn running_instance(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
    ) -> Result<ward_runtime::InstanceHandle, SupervisorError> {
        let handle = {
            let state = self.inner.lock();
            let entry = state
                .workloads
                .get(&(project.to_string(), name.to_string()))
                .ok_or_else(|| not_found(project, name))?;
            entry
                .instances
                .iter()
                .filter(|(index, _)| replica.is_none_or(|replica| **index == replica))
                .find_map(|(_, instance)| {
                    instance
                        .handle
                        .clone()
                        .filter(|_| instance.phase == Phase::Running)
                })
                .ok_or(SupervisorError::NotRunning {
                    name: name.to_string(),
                    replica,
                })?
        };
        Ok(handle)
    }

    /// Stops accepting changes. Workloads keep running: the next daemon re-attaches to them.
    /// Images that instances run, or ran and may run again (see `Driver::images_in_use`).
    pub fn images_in_use(&self) -> Vec<ward_image::Digest> {
        self.inner.driver.images_in_use()
    }

    /// Sets the quota of `project` and bounds its real memory and CPU use to the quota's.
    pub fn set_quota(
        &self,
        project: &str,
        quota: &Quota,
        admission: Option<&Admission>,
    ) -> Result<(), SupervisorError> {
        ward_spec::validate_name(project).map_err(|reason| SupervisorError::Invalid {
            field: "project".to_string(),
            message: reason,
        })?;
        self.inner
            .driver
            .set_project_limits(project, quota.memory, quota.cpu)
            .map_err(|error| SupervisorError::Invalid {
                field: "quota".to_string(),
                message: format!(
                    "the kernel refused the project's caps ({error}); a memory cap below what its instances use now cannot be set"
                ),
            })?;
        let to_i64 =
            |value: Option<u64>| value.map(|value| i64::try_from(value).unwrap_or(i64::MAX));
        let record = ward_store::QuotaRecord {
            project: project.to_string(),
            cpu: quota.cpu,
            memory: to_i64(quota.memory),
            workloads: to_i64(quota.workloads),
            replicas: to_i64(quota.replicas),
            gpus: to_i64(quota.gpus),
            volume_bytes: to_i64(quota.volume_bytes),
            updated_at_ms: time::to_millis(SystemTime::now()),
        };
        gate::audited(admission, 200, |audit| {
            self.inner.store.put_quota(&record, audit)
        })?;
        Ok(())
    }

    /// The quota of `project`, if it has one, and what it uses now; its volumes as last
    /// measured (a fresh measurement is asked for, not waited on).
    pub fn quota(&self, project: &str) -> Result<(Option<Quota>, QuotaUsage), SupervisorError> {
        let quota = self.stored_quota(project)?;
        self.inner.volumes.refresh(project);
        let volume_bytes = self.inner.volumes.bytes(project);
        let state = self.inner.lock();
        Ok((quota, self.usage_of(&state, project, &[], volume_bytes)))
    }

    fn stored_quota(&self, project: &str) -> Result<Option<Quota>, SupervisorError> {
        let to_u64 = |value: Option<i64>| value.map(|value| value.max(0) as u64);
        Ok(self.inner.store.get_quota(project)?.map(|record| Quota {
            cpu: record.cpu,
            memory: to_u64(record.memory),
            workloads: to_u64(record.workloads),
            replicas: to_u64(record.replicas),
            gpus: to_u64(record.gpus),
            volume_bytes: to_u64(record.volume_bytes),
        }))
    }

    /// What `project` asks for and uses with `replacing` in place of its workloads of the
    /// same names (none: as it is), with `volume_bytes` in its volumes.
    fn usage_of(
        &self,
        state: &State,
        project: &str,
        replacing: &[WorkloadSpec],
        volume_bytes: u64,
    ) -> QuotaUsage {
        let kept = state.workloads.iter().filter(|(key, entry)| {
            key.0 == project
                && entry.desired != DesiredState::Deleted
                && !replacing.iter().any(|spec| spec.name == key.1)
        });
        let mut usage = QuotaUsage::configured(
            kept.clone()
                .map(|(_, entry)| &entry.spec)
                .chain(replacing.iter()),
        );
        usage.measured_memory = kept
            .flat_map(|(_, entry)| entry.instances.values())
            .filter_map(|instance| instance.usage.as_ref())
            .map(|usage| usage.memory_bytes)
            .sum();
        usage.volume_bytes = volume_bytes;
        usage
    }

    /// Refuses a batch that takes `project` over its `quota` (read before the state lock:
    /// nothing under it waits for the database or the disk).
    fn check_quota(
        &self,
        state: &State,
        project: &str,
        quota: Option<&Quota>,
        specs: &[WorkloadSpec],
    ) -> Result<(), SupervisorError> {
        let Some(quota) = quota else {
            return Ok(());
        };
        let volume_bytes = self.inner.volumes.bytes(project);
        let before = self.usage_of(state, project, &[], volume_bytes);
        let after = self.usage_of(state, project, specs, volume_bytes);
        quota::check(project, quota, &before, &after).map_err(|exceeded| {
            SupervisorError::QuotaExceeded {
                quota: exceeded.quota,
                message: exceeded.message,
            }
        })
    }

    /// Records an event about model `model` of `project` (its runner stopped on its own, or ran
    /// out of memory); the event's workload is `model:<name>`.
    pub fn model_event(&self, project: &str, model: &str, kind: EventKind, message: String) {
        let _order = self.inner.lock();
        self.inner.record(
            None,
            vec![PendingEvent::new(
                project,
                &format!("model:{model}"),
                None,
                kind,
                message,
            )],
        );
    }

    /// The project's stored samples of one metric (see [`ward_core::services::MetricQuery`]).
    pub fn query_metrics(
        &self,
        project: &str,
        query: &ward_core::services::MetricQuery,
    ) -> Result<Vec<ward_core::services::MetricSeries>, SupervisorError> {
        let Some(telemetry) = &self.inner.telemetry else {
            return Ok(Vec::new());
        };
        let telemetry = telemetry
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        telemetry.query(project, query)
    }

    /// Refuses to load a model whose runner may use up to `bytes` when, with the memory the
    /// project's workloads ask for and `models_bytes` its loaded models may use, that goes past
    /// the project's memory quota.
    pub fn check_model_memory(
        &self,
        project: &str,
        model: &str,
        bytes: u64,
        models_bytes: u64,
    ) -> Result<(), SupervisorError> {
        let Some(limit) = self.stored_quota(project)?.and_then(|quota| quota.memory) else {
            return Ok(());
        };
        let workloads = {
            let state = self.inner.lock();
            self.usage_of(&state, project, &[], 0).memory
        };
        let total = workloads.saturating_add(models_bytes).saturating_add(bytes);
        if total > limit {
            return Err(SupervisorError::QuotaExceeded {
                quota: "memory",
                message: format!(
                    "quota memory of project {project}: its workloads ask {} and its loaded models may use {}; model {model} may use {} more, over the limit of {} (unload a model, or raise the quota)",
                    ward_spec::units::format_size(workloads),
                    ward_spec::units::format_size(models_bytes),
                    ward_spec::units::format_size(bytes),
                    ward_spec::units::format_size(limit)
                ),
            });
        }
        Ok(())
    }

    /// Waits until every state change made so far is in the store.
    pub async fn flush(&self) {
        self.inner.recorder.flush().await;
    }

    pub fn shutdown(&self) {
        self.inner.lock().shutting_down = true;
        self.inner.wake.notify_one();
    }

    fn set_desired(
        &self,
        admission: &Admission,
        name: &str,
        desired: DesiredState,
        stop_grace: Option<Duration>,
    ) -> Result<(), SupervisorError> {
        let project = admission.project_or_default();
        let mut state = self.inner.lock();
        let entry = state
            .workloads
            .get_mut(&(project.to_string(), name.to_string()))
            .filter(|entry| entry.desired != DesiredState::Deleted)
            .ok_or_else(|| not_found(project, name))?;
        // The database first: memory never runs ahead of a write that failed.
        self.store_desired(admission, name, desired)?;
        entry.desired = desired;
        entry.stop_grace = stop_grace;
        if desired == DesiredState::Running {
            for instance in entry.instances.values_mut() {
                if instance.phase.is_terminal() && !instance.busy {
                    instance.phase = Phase::Pending;
                    instance.retry_at = None;
                    instance.failures_in_row = 0;
                }
            }
        }
        drop(state);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Stores the desired state of a workload of the admitted project, with the call's audit
    /// entry in the same transaction.
    fn store_desired(
        &self,
        admission: &Admission,
        name: &str,
        desired: DesiredState,
    ) -> Result<(), SupervisorError> {
        self.inner
            .store
            .set_desired_state(
                admission.project_or_default(),
                name,
                desired.as_str(),
                time::to_millis(SystemTime::now()),
                admission.success_entry(200).as_ref(),
            )
            .inspect_err(|_| admission.unrecord())?;
        Ok(())
    }

    fn instance_keys(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<InstanceKey>, SupervisorError> {
        let state = self.inner.lock();
        let entry = state
            .workloads
            .get(&(project.to_string(), name.to_string()))
            .ok_or_else(|| not_found(project, name))?;
        let mut replicas: Vec<u32> = entry.instances.keys().copied().collect();
        if replicas.is_empty() {
            replicas = (0..entry.spec.replicas.max(1)).collect();
        }
        Ok(replicas
            .into_iter()
            .map(|replica| entry.instance_key(replica))
            .collect())
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the events (with the instance record when given) for the store; they are
    /// broadcast once stored. Called under the state lock, so writes keep the order of the
    /// changes.
    pub(crate) fn record(
        &self,
        instance: Option<(&InstanceKey, &InstanceEntry)>,
        pending: Vec<PendingEvent>,
    ) {
        self.recorder
            .record(instance.map(|(key, entry)| entry.to_record(key)), pending);
    }

    /// [`Inner::record`] for a change made under `state`: queued before the lock is
    /// released, written after it.
    pub(crate) fn record_releasing(
        &self,
        state: MutexGuard<'_, State>,
        instance: Option<(&InstanceKey, ward_store::InstanceRecord)>,
        pending: Vec<PendingEvent>,
    ) {
        self.recorder
            .record(instance.map(|(_, record)| record), pending);
        drop(state);
    }

    /// Deletes an instance's record, queued before `state` is released.
    pub(crate) fn delete_instance_releasing(
        &self,
        state: MutexGuard<'_, State>,
        key: &InstanceKey,
    ) {
        self.recorder.delete_instance(key.clone());
        drop(state);
    }
}

/// Whether two normalised specs (JSON text) are the same but for `replicas`.
/// The new memory limit when it is all that changes between two normalised specs (and
/// both have one).
fn memory_change_only(old: &str, new: &str) -> Option<u64> {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let (mut old, mut new) = (parse(old)?, parse(new)?);
    let bytes = new["resources"]["memory"].as_u64()?;
    old["resources"]["memory"].as_u64()?;
    old["resources"]["memory"] = serde_json::Value::Null;
    new["resources"]["memory"] = serde_json::Value::Null;
    (old == new).then_some(bytes)
}

fn differ_only_in_replicas(old: &str, new: &str) -> bool {
    let without_replicas = |text: &str| {
        let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
        value.as_object_mut()?.remove("replicas");
        Some(value)
    };
    match (without_replicas(old), without_replicas(new)) {
        (Some(old), Some(new)) => old == new,
        _ => false,
    }
}

fn not_found(project: &str, name: &str) -> SupervisorError {
    SupervisorError::NotFound {
        project: project.to_string(),
        name: name.to_string(),
    }
}

/// Refuses a batch that would clash with itself or with what runs already: host ports are
/// global, names unique per project.
fn validate_batch(
    state: &State,
    project: &str,
    specs: &[WorkloadSpec],
) -> Result<(), SupervisorError> {
    let mut names = std::collections::HashSet::new();
    let mut claimed: BTreeMap<(u16, &'static str), String> = BTreeMap::new();
    for (key, entry) in &state.workloads {
        let replaced = key.0 == project && specs.iter().any(|spec| spec.name == key.1);
        if replaced || entry.desired == DesiredState::Deleted {
            continue;
        }
        for port in entry
            .spec
            .ports
            .iter()
            .filter(|port| port.host != ward_spec::units::FREE_HOST_PORT)
        {
            claimed.insert(
                (port.host, port.protocol.as_str()),
                format!("{}/{}", entry.project, entry.spec.name),
            );
        }
    }
    for spec in specs {
        if !names.insert(spec.name.as_str()) {
            return Err(SupervisorError::Invalid {
                field: "name".to_string(),
                message: format!(
                    "workload {} appears twice in the same apply: give each document its own name",
                    spec.name
                ),
            });
        }
        let fixed_host_ports = spec
            .ports
            .iter()
            .any(|port| port.host != ward_spec::units::FREE_HOST_PORT);
        if spec.replicas > 1 && fixed_host_ports {
            return Err(SupervisorError::Invalid {
                field: "ports".to_string(),
                message: format!(
                    "workload {} publishes host ports with {} replicas: a host port can go to one replica only; use replicas: 1, or let each replica take a free port (ports: [\"80\"])",
                    spec.name, spec.replicas
                ),
            });
        }
        let existing_ports: Vec<(u16, &str)> = state
            .workloads
            .get(&(project.to_string(), spec.name.clone()))
            .map(|entry| {
                entry
                    .spec
                    .ports
                    .iter()
                    .map(|port| (port.host, port.protocol.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        for (index, port) in spec.ports.iter().enumerate() {
            if port.host == ward_spec::units::FREE_HOST_PORT {
                continue;
            }
            let claim = (port.host, port.protocol.as_str());
            if let Some(owner) = claimed.get(&claim) {
                return Err(SupervisorError::Invalid {
                    field: format!("ports[{index}]"),
                    message: format!(
                        "host port {}/{} is already published by workload {owner}: pick another host port",
                        port.host,
                        port.protocol.as_str()
                    ),
                });
            }
            if !existing_ports.contains(&claim)
                && !ward_runtime::network::host_port_is_free(port.host, port.protocol)
            {
                return Err(SupervisorError::Invalid {
                    field: format!("ports[{index}]"),
                    message: format!(
                        "host port {}/{} is taken by another program on this host: pick another host port",
                        port.host,
                        port.protocol.as_str()
                    ),
                });
            }
            claimed.insert(claim, format!("{project}/{}", spec.name));
        }
    }
    Ok(())
}
