//! Named volumes: listing and removing them (never one a workload mounts), and the bytes in
//! each project's, measured on a thread of their own and read from a cache: a volume of
//! millions of files takes seconds to walk, and no API call waits for it.
//!
//! The thread runs in the kernel's idle class: a walk takes no core a request wants.
//! Every project is measured once at start and again after a pause that grows with the time
//! the walk took (never more than a twentieth of a core); asking for a project's figure, as
//! `GET /api/v1/projects/{name}/quota` does, brings its next measurement forward.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

pub use ward_core::view::VolumeView;

use crate::gate::Admission;
use crate::ops::Operation;
use crate::view::DesiredState;
use crate::{Inner, Supervisor, SupervisorError};

impl Supervisor {
    /// The named volumes of the admitted project, each with the workloads that mount it.
    pub fn volumes(&self, admission: &Admission) -> Result<Vec<VolumeView>, SupervisorError> {
        admission.require(&[Operation::VolumeList])?;
        let project = admission.project_or_default();
        let volumes = self.inner.driver.named_volumes(project)?;
        let state = self.inner.lock();
        Ok(volumes
            .into_iter()
            .map(|volume| VolumeView {
                used_by: users_of(&state, project, &volume.name),
                name: volume.name,
                created_at: volume.created_at,
            })
            .collect())
    }

    /// Removes a named volume and its files; refused while a workload of the project mounts
    /// it, running or not (as `docker volume rm` refuses).
    pub fn remove_volume(&self, admission: &Admission, name: &str) -> Result<(), SupervisorError> {
        admission.require(&[Operation::VolumeRemove])?;
        let project = admission.project_or_default();
        ward_spec::validate_name(name).map_err(|_| SupervisorError::VolumeNotFound {
            project: project.to_string(),
            name: name.to_string(),
        })?;
        let not_found = || SupervisorError::VolumeNotFound {
            project: project.to_string(),
            name: name.to_string(),
        };
        let in_use = |users: Vec<String>| SupervisorError::VolumeInUse {
            name: name.to_string(),
            users,
        };
        // Checked first, so that the audit entry written ahead of the removal is one for a
        // change that can happen.
        {
            let state = self.inner.lock();
            let users = users_of(&state, project, name);
            if !users.is_empty() {
                return Err(in_use(users));
            }
        }
        let exists = self
            .inner
            .driver
            .named_volumes(project)?
            .iter()
            .any(|volume| volume.name == name);
        if !exists {
            return Err(not_found());
        }
        let retired = crate::gate::audited_ahead(&self.inner.store, Some(admission), || {
            // Under the lock, no workload that mounts it can be created or started meanwhile.
            let state = self.inner.lock();
            let users = users_of(&state, project, name);
            if !users.is_empty() {
                return Err(in_use(users));
            }
            self.inner
                .driver
                .retire_named_volume(project, name)?
                .ok_or_else(not_found)
        })?;
        retired.delete()?;
        self.inner.volumes.refresh(project);
        Ok(())
    }

    /// Removes every named volume of the admitted project that no workload mounts; returns
    /// their names.
    pub fn prune_volumes(&self, admission: &Admission) -> Result<Vec<String>, SupervisorError> {
        admission.require(&[Operation::VolumePrune])?;
        let project = admission.project_or_default();
        let volumes = self.inner.driver.named_volumes(project)?;
        let mut retired = Vec::new();
        crate::gate::audited_ahead(&self.inner.store, Some(admission), || {
            let state = self.inner.lock();
            for volume in volumes {
                if !users_of(&state, project, &volume.name).is_empty() {
                    continue;
                }
                if let Some(files) = self
                    .inner
                    .driver
                    .retire_named_volume(project, &volume.name)?
                {
                    retired.push((volume.name, files));
                }
            }
            Ok::<_, SupervisorError>(())
        })?;
        let mut removed = Vec::new();
        for (name, files) in retired {
            files.delete()?;
            removed.push(name);
        }
        self.inner.volumes.refresh(project);
        Ok(removed)
    }
}

/// The workloads of `project` that mount the named volume `name`, by name.
fn users_of(state: &crate::state::State, project: &str, name: &str) -> Vec<String> {
    state
        .workloads
        .iter()
        .filter(|((workload_project, _), entry)| {
            workload_project == project
                && entry.desired != DesiredState::Deleted
                && entry
                    .spec
                    .volumes
                    .iter()
                    .any(|volume| volume.is_named() && volume.source == name)
        })
        .map(|((_, workload), _)| workload.clone())
        .collect()
}

/// The shortest pause between two measurements of every project.
const MINIMUM_PAUSE: Duration = Duration::from_secs(30);

/// The pause is at least this many times the duration of the last walk.
const PAUSE_PER_WALK: u32 = 20;

/// Measured figures, and the projects whose measurement was asked for.
#[derive(Default)]
pub(crate) struct VolumeMeter {
    state: Mutex<MeterState>,
    asked: Condvar,
}

#[derive(Default)]
struct MeterState {
    bytes: HashMap<String, u64>,
    wanted: BTreeSet<String>,
}

impl VolumeMeter {
    /// The bytes in `project`'s volumes as last measured (0 before the first measurement).
    pub(crate) fn bytes(&self, project: &str) -> u64 {
        self.lock().bytes.get(project).copied().unwrap_or(0)
    }

    /// Asks for a fresh measurement of `project` without waiting for it.
    pub(crate) fn refresh(&self, project: &str) {
        self.lock().wanted.insert(project.to_string());
        self.asked.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts the measuring thread; it ends when the supervisor is gone.
pub(crate) fn start(inner: &Arc<Inner>) {
    let meter = Arc::clone(&inner.volumes);
    let weak = Arc::downgrade(inner);
    let spawned = std::thread::Builder::new()
        .name("ward-volumes".to_string())
        .spawn(move || measure_forever(&meter, &weak));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the volume measuring thread; volume quotas see 0 bytes");
    }
}

fn measure_forever(meter: &VolumeMeter, weak: &Weak<Inner>) {
    if !ward_runtime::make_this_thread_idle() {
        tracing::debug!("the volume measuring thread runs at normal priority");
    }
    let mut next_round = Instant::now();
    loop {
        {
            // No strong reference outlives a pass: the supervisor may go while this waits.
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if Instant::now() >= next_round {
                let started = Instant::now();
                let projects = inner.store.list_projects().unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot list projects to measure their volumes");
                    Vec::new()
                });
                measure(&inner, &projects);
                next_round = Instant::now() + MINIMUM_PAUSE.max(started.elapsed() * PAUSE_PER_WALK);
            }
            let wanted: Vec<String> = std::mem::take(&mut meter.lock().wanted)
                .into_iter()
                .collect();
            measure(&inner, &wanted);
        }
        // Wake for a request, for the next round, and every second to notice an end.
        let state = meter.lock();
        if state.wanted.is_empty() {
            let wait = next_round
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            drop(
                meter
                    .asked
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
        }
    }
}

fn measure(inner: &Inner, projects: &[String]) {
    for project in projects {
        let bytes = inner.driver.project_volume_bytes(project);
        inner.volumes.lock().bytes.insert(project.clone(), bytes);
    }
}
