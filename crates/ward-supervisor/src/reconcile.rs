//! The reconcile loop: compare desired with actual state, act, and record what happened.
//!
//! [`plan`] is a pure function of the state and the time; every start, stop, restart,
//! scale-down, removal and crash recovery is an [`Action`] it returns, carried out by
//! [`execute`]. Operations mark their instance busy so the planner never doubles them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use ward_runtime::{AttachOutcome, ExitStatus, InstanceHandle, InstanceKey, ResourceUsage};
use ward_spec::{HealPolicy, WorkloadSpec};

use crate::events::{EventKind, PendingEvent};
use crate::policy::should_restart;
use crate::state::{InstanceEntry, State, WorkloadEntry};
use crate::telemetry::Reading;
use crate::time::from_millis;
use crate::view::{DesiredState, HealthState, Phase, UsageSample};
use crate::{Inner, SupervisorError};

#[derive(Debug)]
pub(crate) enum Action {
    Start {
        key: InstanceKey,
        spec: Box<WorkloadSpec>,
        revision: i64,
        restart: bool,
    },
    Stop {
        key: InstanceKey,
        handle: InstanceHandle,
        then_start: bool,
        /// `None`: the daemon's stop grace.
        grace: Option<Duration>,
    },
    Remove {
        key: InstanceKey,
    },
    /// The workload is deleted and has no instance left.
    Forget {
        project: String,
        name: String,
    },
}

pub(crate) struct Plan {
    pub actions: Vec<Action>,
    pub next_deadline: Option<Instant>,
}

/// Decides what to do now; marks the instances it acts on busy.
pub(crate) fn plan(state: &mut State, now: Instant) -> Plan {
    let mut actions = Vec::new();
    let mut next_deadline: Option<Instant> = None;
    if state.shutting_down {
        return Plan {
            actions,
            next_deadline,
        };
    }
    for entry in state.workloads.values_mut() {
        match entry.desired {
            DesiredState::Deleted => {
                for (replica, instance) in entry.instances.iter_mut() {
                    if !instance.busy {
                        instance.busy = true;
                        actions.push(Action::Remove {
                            key: InstanceKey::new(&entry.project, &entry.spec.name, *replica),
                        });
                    }
                }
                if entry.instances.is_empty() && !entry.forgetting {
                    entry.forgetting = true;
                    actions.push(Action::Forget {
                        project: entry.project.clone(),
                        name: entry.spec.name.clone(),
                    });
                }
            }
            DesiredState::Stopped => {
                for (replica, instance) in entry.instances.iter_mut() {
                    if instance.busy {
                        continue;
                    }
                    match (&instance.handle, instance.phase) {
                        (Some(handle), Phase::Running) => {
                            instance.busy = true;
                            actions.push(Action::Stop {
                                key: InstanceKey::new(&entry.project, &entry.spec.name, *replica),
                                handle: handle.clone(),
                                then_start: false,
                                grace: entry.stop_grace,
                            });
                        }
                        (_, Phase::Pending) => {
                            instance.phase = Phase::Stopped;
                            instance.retry_at = None;
                        }
                        _ => instance.retry_at = None,
                    }
                }
            }
            DesiredState::Running => plan_running(entry, now, &mut actions, &mut next_deadline),
        }
    }
    Plan {
        actions,
        next_deadline,
    }
}

fn plan_running(
    entry: &mut WorkloadEntry,
    now: Instant,
    actions: &mut Vec<Action>,
    next_deadline: &mut Option<Instant>,
) {
    let replicas = entry.spec.replicas;
    for replica in 0..replicas {
        entry
            .instances
            .entry(replica)
            .or_insert_with(|| InstanceEntry::new(entry.revision));
    }
    // One replacement at a time, so a rolling update keeps the other replicas serving.
    let mut replacing = entry
        .instances
        .iter()
        .any(|(replica, instance)| *replica < replicas && instance.busy);
    let start_action = |key: InstanceKey, restart: bool| Action::Start {
        key,
        spec: Box::new(entry.spec.clone()),
        revision: entry.revision,
        restart,
    };
    for (replica, instance) in entry.instances.iter_mut() {
        if instance.busy {
            continue;
        }
        let key = InstanceKey::new(&entry.project, &entry.spec.name, *replica);
        if *replica >= replicas {
            instance.busy = true;
            actions.push(Action::Remove { key });
            continue;
        }
        let outdated = instance.revision != entry.revision;
        match instance.phase {
            Phase::Running if outdated || instance.restart_requested => {
                if replacing {
                    continue;
                }
                if let Some(handle) = instance.handle.clone() {
                    replacing = true;
                    instance.busy = true;
                    actions.push(Action::Stop {
                        key,
                        handle,
                        then_start: true,
                        grace: None,
                    });
                }
            }
            Phase::Pending | Phase::Stopped => {
                instance.busy = true;
                actions.push(start_action(key, false));
            }
            Phase::Exited | Phase::Failed => {
                let due = match instance.retry_at {
                    Some(retry_at) if retry_at <= now => true,
                    Some(retry_at) => {
                        *next_deadline =
                            Some(next_deadline.map_or(retry_at, |deadline| deadline.min(retry_at)));
                        false
                    }
                    None => outdated || instance.restart_requested,
                };
                if due {
                    instance.busy = true;
                    let restart = instance.retry_at.is_some();
                    actions.push(start_action(key, restart));
                }
            }
            Phase::Starting | Phase::Stopping | Phase::Running => {}
        }
    }
}

pub(crate) async fn run_loop(inner: Arc<Inner>) {
    loop {
        let notified = inner.wake.notified();
        let plan = {
            let mut state = inner.lock();
            plan(&mut state, Instant::now())
        };
        let acted = !plan.actions.is_empty();
        for action in plan.actions {
            tokio::spawn(execute(inner.clone(), action));
        }
        if acted {
            inner.changed.notify_waiters();
        }
        match plan.next_deadline {
            Some(deadline) => {
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
            None => notified.await,
        }
    }
}

async fn execute(inner: Arc<Inner>, action: Action) {
    match action {
        Action::Start {
            key,
            spec,
            revision,
            restart,
        } => start_instance(&inner, key, &spec, revision, restart).await,
        Action::Stop {
            key,
            handle,
            then_start,
            grace,
        } => stop_instance(&inner, key, handle, then_start, grace).await,
        Action::Remove { key } => remove_instance(&inner, key).await,
        Action::Forget { project, name } => {
            let event = PendingEvent::new(
                &project,
                &name,
                None,
                EventKind::Deleted,
                format!("workload {name} deleted"),
            );
            // The record goes first and the workload leaves the state after it, so a name
            // that is free in memory is free in the database too: a workload created again
            // under it is never deleted with the old one's record. The event goes through the
            // one recording path, so its id is the one it was stored under; a crash in between
            // loses only the event, never consistency.
            let forgotten = inner.recorder.forget(&project, &name, event).await;
            if let Err(error) = &forgotten {
                tracing::error!(%error, workload = %name, "cannot delete workload record");
            }
            let mut state = inner.lock();
            let key = (project, name);
            let still_forgetting = state
                .workloads
                .get(&key)
                .is_some_and(|entry| entry.forgetting && entry.desired == DesiredState::Deleted);
            if still_forgetting {
                state.workloads.remove(&key);
            }
        }
    }
    inner.changed.notify_waiters();
    inner.wake.notify_one();
}

/// Applies `change` to the instance (if it still exists) and records it with `events`.
fn update_instance(
    inner: &Inner,
    key: &InstanceKey,
    events: Vec<PendingEvent>,
    change: impl FnOnce(&mut InstanceEntry),
) {
    let mut state = inner.lock();
    let Some(instance) = state
        .workloads
        .get_mut(&(key.project.clone(), key.workload.clone()))
        .and_then(|entry| entry.instances.get_mut(&key.replica))
    else {
        return;
    };
    change(instance);
    let record = instance.to_record(key);
    inner.record_releasing(state, Some((key, record)), events);
}

async fn start_instance(
    inner: &Arc<Inner>,
    key: InstanceKey,
    spec: &WorkloadSpec,
    revision: i64,
    restart: bool,
) {
    let name = key.instance_name();
    let mut events = Vec::new();
    if restart {
        events.push(PendingEvent::for_instance(
            &key,
            EventKind::Restarting,
            format!("restarting {name}"),
        ));
    }
    events.push(PendingEvent::for_instance(
        &key,
        EventKind::Starting,
        format!("starting {name}"),
    ));
    update_instance(inner, &key, events, |instance| {
        instance.phase = Phase::Starting;
        instance.revision = revision;
        instance.restart_requested = false;
        instance.message = None;
        if restart {
            instance.restarts += 1;
        }
    });
    match inner.driver.start(&key, spec).await {
        Ok(handle) => {
            let pid = handle.pid;
            let generation = adopt_running(inner, &key, handle.clone(), revision, spec);
            update_instance(
                inner,
                &key,
                vec![PendingEvent::for_instance(
                    &key,
                    EventKind::Started,
                    format!("{name} started (pid {pid})"),
                )
                .with_data(serde_json::json!({ "pid": pid }))],
                |_| {},
            );
            watch(inner.clone(), key, handle, generation);
        }
        Err(error) => {
            // A program that does not exist, an image that does not, a kind with no driver:
            // trying again changes nothing, so the instance fails and stays failed.
            let permanent = error.is_permanent();
            let message = error.to_string();
            let exit = ExitStatus {
                exit_code: None,
                signal: None,
                oom_killed: false,
                finished_at: SystemTime::now(),
            };
            let backoff = inner.config.backoff;
            update_instance(
                inner,
                &key,
                vec![PendingEvent::for_instance(
                    &key,
                    EventKind::StartFailed,
                    if permanent {
                        format!("{name} failed to start: {message}; not retried until the spec changes or it is started again")
                    } else {
                        format!("{name} failed to start: {message}")
                    },
                )
                .with_data(serde_json::json!({ "permanent": permanent }))],
                |instance| {
                    instance.busy = false;
                    instance.phase = Phase::Failed;
                    instance.handle = None;
                    instance.finished_at = Some(exit.finished_at);
                    instance.message = Some(message);
                    let delay = backoff.delay(instance.failures_in_row);
                    instance.failures_in_row = instance.failures_in_row.saturating_add(1);
                    instance.retry_at = (!permanent
                        && should_restart(&spec.restart, &exit, instance.restarts))
                    .then(|| Instant::now() + delay);
                    instance.last_exit = Some(exit);
                },
            );
        }
    }
}

/// Marks an instance running with `handle`; returns the generation of this run.
fn adopt_running(
    inner: &Arc<Inner>,
    key: &InstanceKey,
    handle: InstanceHandle,
    revision: i64,
    spec: &WorkloadSpec,
) -> u64 {
    let mut generation = 0;
    let started_at = handle.started_at;
    let has_health = spec.health.is_some();
    {
        let mut state = inner.lock();
        if let Some(instance) = state
            .workloads
            .get_mut(&(key.project.clone(), key.workload.clone()))
            .and_then(|entry| entry.instances.get_mut(&key.replica))
        {
            generation = crate::state::next_generation();
            instance.generation = generation;
            instance.busy = false;
            instance.phase = Phase::Running;
            instance.handle = Some(handle.clone());
            instance.revision = revision;
            instance.started_at = Some(started_at);
            instance.running_since = Some(Instant::now());
            instance.finished_at = None;
            instance.retry_at = None;
            instance.health = has_health.then_some(HealthState::Starting);
            instance.usage = None;
            instance.last_cpu_reading = None;
        }
    }
    if let Some(health) = spec.health.clone() {
        tokio::spawn(crate::health::run(
            inner.clone(),
            key.clone(),
            handle,
            generation,
            health,
        ));
    }
    generation
}

/// Waits for the instance to exit and applies the restart policy.
fn watch(inner: Arc<Inner>, key: InstanceKey, handle: InstanceHandle, generation: u64) {
    tokio::spawn(async move {
        let exit = match inner.driver.wait(&handle).await {
            Ok(exit) => exit,
            Err(error) => {
                tracing::warn!(%error, instance = %key.instance_name(), "cannot read exit status");
                ExitStatus {
                    exit_code: None,
                    signal: None,
                    oom_killed: false,
                    finished_at: SystemTime::now(),
                }
            }
        };
        on_exit(&inner, &key, generation, exit, false);
        inner.changed.notify_waiters();
        inner.wake.notify_one();
    });
}

/// Records an exit the supervisor did not ask for (or one found after a restart) and
/// decides whether the instance comes back.
pub(crate) fn on_exit(
    inner: &Inner,
    key: &InstanceKey,
    generation: u64,
    exit: ExitStatus,
    while_down: bool,
) {
    let mut state = inner.lock();
    let Some(entry) = state
        .workloads
        .get_mut(&(key.project.clone(), key.workload.clone()))
    else {
        return;
    };
    let restart_policy = entry.spec.restart;
    let heal_policy = entry.spec.heal.policy;
    let desired = entry.desired;
    let backoff = inner.config.backoff;
    let Some(instance) = entry.instances.get_mut(&key.replica) else {
        return;
    };
    if instance.generation != generation {
        return;
    }
    instance.handle = None;
    instance.finished_at = Some(exit.finished_at);
    instance.last_exit = Some(exit.clone());
    instance.health = None;
    if instance.busy {
        // A stop or removal is in flight; it records the outcome.
        return;
    }
    let name = key.instance_name();
    let how = describe_exit(&exit);
    let when = if while_down {
        " while the daemon was down"
    } else {
        ""
    };
    let mut events = Vec::new();
    let kind = if exit.oom_killed {
        EventKind::OomKilled
    } else {
        EventKind::Exited
    };
    events.push(
        PendingEvent::for_instance(key, kind, format!("{name} {how}{when}")).with_data(
            serde_json::json!({
                "exit_code": exit.exit_code,
                "signal": exit.signal,
                "oom_killed": exit.oom_killed,
                "revision": instance.revision,
            }),
        ),
    );
    instance.phase = if exit.success() {
        Phase::Exited
    } else {
        Phase::Failed
    };
    let ran_for = instance
        .running_since
        .map(|since| since.elapsed())
        .unwrap_or_default();
    if ran_for >= backoff.reset_after {
        instance.failures_in_row = 0;
    }
    let mut crash_loop = None;
    let restarting = desired == DesiredState::Running
        && should_restart(&restart_policy, &exit, instance.restarts);
    if restarting
        && heal_policy != HealPolicy::Off
        && ran_for < backoff.reset_after
        && instance.failures_in_row.saturating_add(1) >= backoff.crash_loop
    {
        instance.failures_in_row = instance.failures_in_row.saturating_add(1);
        instance.retry_at = None;
        instance.message = Some(format!(
            "crash loop: {how}, {} times in a row, each within {}; not restarted until it is \
             started again or its spec changes",
            instance.failures_in_row,
            humantime::format_duration(backoff.reset_after)
        ));
        crash_loop = Some((instance.failures_in_row, ran_for));
    } else if restarting {
        let delay = backoff.delay(instance.failures_in_row);
        instance.failures_in_row = instance.failures_in_row.saturating_add(1);
        instance.retry_at = Some(Instant::now() + delay);
        instance.message = Some(format!(
            "restarting in {}",
            humantime::format_duration(delay)
        ));
    } else {
        instance.retry_at = None;
        instance.message = None;
        if desired != DesiredState::Running {
            instance.phase = Phase::Stopped;
        }
    }
    let record = instance.to_record(key);
    inner.record_releasing(state, Some((key, record)), events);
    if let Some((failures, ran_for)) = crash_loop {
        let last_lines = inner
            .driver
            .read_logs(key, Some(CRASH_LOOP_LOG_LINES), None)
            .map(|lines| lines.into_iter().map(|line| line.text).collect::<Vec<_>>())
            .unwrap_or_default();
        let diagnosis = diagnose_crash(&exit, &last_lines);
        let message = format!(
            "{name} is in a crash loop: {how}, {failures} times in a row, after {} the last \
             time; {diagnosis}; restarts stopped until it is started again or its spec changes",
            humantime::format_duration(Duration::from_millis(ran_for.as_millis() as u64))
        );
        inner.record(
            None,
            vec![
                PendingEvent::for_instance(key, EventKind::CrashLoop, message).with_data(
                    serde_json::json!({
                        "exit_code": exit.exit_code,
                        "signal": exit.signal,
                        "oom_killed": exit.oom_killed,
                        "failures": failures,
                        "ran_for_ms": ran_for.as_millis() as u64,
                        "diagnosis": diagnosis,
                        "last_lines": last_lines,
                    }),
                ),
            ],
        );
    }
}

/// How many of its last log lines a crash loop's diagnosis quotes.
const CRASH_LOOP_LOG_LINES: usize = 10;

/// What an exit most likely means and what to do, in plain words, from how the instance
/// ended and what it wrote last.
fn diagnose_crash(exit: &ExitStatus, last_lines: &[String]) -> String {
    let cause = match (exit.oom_killed, exit.exit_code, exit.signal) {
        (true, _, _) => "it runs out of memory: raise resources.memory, or let Ward raise it with \
             heal: {policy: auto, memory_max: SIZE}"
            .to_string(),
        (false, Some(0), _) => "it exits successfully at once: its command returns instead of \
             running on; run a program that stays up, or use restart: on-failure"
            .to_string(),
        (false, Some(127), _) => {
            "the shell could not find a command (exit 127): check the command and its PATH"
                .to_string()
        }
        (false, Some(126), _) => {
            "a command could not be executed (exit 126): check that it is a program and executable"
                .to_string()
        }
        (false, _, Some(9)) => "something kills it with SIGKILL".to_string(),
        (false, _, Some(11)) => "it crashes with a segmentation fault (SIGSEGV)".to_string(),
        (false, _, Some(6)) => "it aborts (SIGABRT), usually a failed assertion".to_string(),
        (false, Some(code), _) => format!("it fails with exit code {code}"),
        (false, None, Some(signal)) => format!("it is killed by signal {signal}"),
        (false, None, None) => "it ends and its exit status is unknown".to_string(),
    };
    // The line a person would look for first: the last that reads like an error.
    let telling = last_lines
        .iter()
        .rev()
        .map(|line| line.trim())
        .find(|line| {
            let lower = line.to_ascii_lowercase();
            [
                "error",
                "exception",
                "fatal",
                "panic",
                "denied",
                "not found",
                "no such",
                "refused",
            ]
            .iter()
            .any(|word| lower.contains(word))
        })
        .or_else(|| {
            last_lines
                .iter()
                .rev()
                .map(|line| line.trim())
                .find(|line| !line.is_empty())
        });
    match telling {
        Some(line) => {
            let line: String = line.chars().take(300).collect();
            format!("{cause}; it last said: {line}")
        }
        None => format!("{cause}; it wrote nothing"),
    }
}

fn describe_exit(exit: &ExitStatus) -> String {
    match (exit.oom_killed, exit.exit_code, exit.signal) {
        (true, _, _) => "was killed: out of memory (oom_killed)".to_string(),
        (false, Some(code), _) => format!("exited with code {code}"),
        (false, None, Some(signal)) => format!("was killed by signal {signal}"),
        (false, None, None) => "ended; its exit status is unknown".to_string(),
    }
}

async fn stop_instance(
    inner: &Arc<Inner>,
    key: InstanceKey,
    handle: InstanceHandle,
    then_start: bool,
    grace: Option<Duration>,
) {
    let name = key.instance_name();
    update_instance(
        inner,
        &key,
        vec![PendingEvent::for_instance(
            &key,
            EventKind::Stopping,
            format!("stopping {name}"),
        )],
        |instance| instance.phase = Phase::Stopping,
    );
    let grace = grace.unwrap_or(inner.config.stop_grace);
    let result = inner.driver.stop(&handle, grace).await;
    let message = match &result {
        Ok(()) => format!("{name} stopped"),
        Err(error) => format!("{name} stop failed: {error}"),
    };
    update_instance(
        inner,
        &key,
        vec![PendingEvent::for_instance(
            &key,
            EventKind::Stopped,
            message,
        )],
        |instance| {
            instance.busy = then_start;
            instance.handle = None;
            instance.health = None;
            instance.retry_at = None;
            instance.phase = Phase::Stopped;
            if instance.finished_at.is_none() {
                instance.finished_at = Some(SystemTime::now());
            }
        },
    );
    if then_start {
        let next = {
            let state = inner.lock();
            state
                .workloads
                .get(&(key.project.clone(), key.workload.clone()))
                .filter(|entry| entry.desired == DesiredState::Running)
                .map(|entry| (entry.spec.clone(), entry.revision))
        };
        match next {
            Some((spec, revision)) => start_instance(inner, key, &spec, revision, true).await,
            None => update_instance(inner, &key, Vec::new(), |instance| instance.busy = false),
        }
    }
}

async fn remove_instance(inner: &Arc<Inner>, key: InstanceKey) {
    if let Err(error) = inner.driver.remove(&key).await {
        tracing::error!(%error, instance = %key.instance_name(), "cannot remove instance");
        update_instance(inner, &key, Vec::new(), |instance| {
            instance.busy = false;
            instance.message = Some(format!("remove failed: {error}"));
        });
        return;
    }
    let mut state = inner.lock();
    if let Some(entry) = state
        .workloads
        .get_mut(&(key.project.clone(), key.workload.clone()))
    {
        entry.instances.remove(&key.replica);
    }
    inner.delete_instance_releasing(state, &key);
}

/// Loads every workload from the store and re-attaches to instances an earlier daemon left.
pub(crate) async fn recover(inner: &Arc<Inner>) -> Result<(), SupervisorError> {
    let store = inner.store.clone();
    let (records, instance_records) = tokio::task::spawn_blocking(move || {
        Ok::<_, ward_store::StoreError>((store.list_workloads(None)?, store.list_instances(None)?))
    })
    .await
    .map_err(|_| SupervisorError::ShuttingDown)??;
    let mut adopted = Vec::new();
    let mut exited = Vec::new();
    {
        let mut state = inner.lock();
        for record in records {
            let spec = match serde_json::from_str(&record.spec_json)
                .map_err(|error| error.to_string())
                .and_then(|value| ward_spec::parse_value(value).map_err(|error| error.to_string()))
            {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::error!(project = %record.project, workload = %record.name, %error, "stored spec no longer parses; skipping workload");
                    continue;
                }
            };
            let key = (record.project.clone(), record.name.clone());
            state.workloads.insert(
                key,
                WorkloadEntry {
                    project: record.project,
                    spec,
                    spec_json: record.spec_json,
                    revision: record.revision,
                    desired: DesiredState::parse(&record.desired_state),
                    created_at: from_millis(record.created_at_ms),
                    updated_at: from_millis(record.updated_at_ms),
                    instances: Default::default(),
                    stop_grace: None,
                    forgetting: false,
                },
            );
        }
        for record in instance_records {
            let Some(entry) = state
                .workloads
                .get_mut(&(record.project.clone(), record.workload.clone()))
            else {
                continue;
            };
            let extra: serde_json::Value = record
                .handle_json
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default();
            let mut instance =
                InstanceEntry::new(extra["revision"].as_i64().unwrap_or(entry.revision));
            instance.phase = Phase::parse(&record.state).unwrap_or(Phase::Pending);
            instance.restarts = record.restarts;
            instance.failures_in_row = extra["failures_in_row"].as_u64().unwrap_or(0) as u32;
            instance.started_at = record.started_at_ms.map(from_millis);
            instance.finished_at = record.finished_at_ms.map(from_millis);
            instance.message = record.message;
            if record.exit_code.is_some() || record.oom_killed {
                instance.last_exit = Some(ExitStatus {
                    exit_code: record.exit_code,
                    signal: extra["signal"].as_i64().map(|signal| signal as i32),
                    oom_killed: record.oom_killed,
                    finished_at: instance.finished_at.unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
            let key = entry.instance_key(record.replica);
            match inner.driver.attach(&key) {
                Ok(AttachOutcome::Running(handle)) => {
                    instance.phase = Phase::Running;
                    instance.started_at = Some(handle.started_at);
                    adopted.push((key.clone(), handle, instance.revision, entry.spec.clone()));
                }
                Ok(AttachOutcome::Exited(exit)) => {
                    instance.phase = Phase::Running;
                    exited.push((key.clone(), exit));
                }
                Ok(AttachOutcome::NotFound) => {
                    if matches!(
                        instance.phase,
                        Phase::Running | Phase::Starting | Phase::Stopping
                    ) {
                        instance.phase = Phase::Running;
                        let exit = ExitStatus {
                            exit_code: None,
                            signal: None,
                            oom_killed: false,
                            finished_at: SystemTime::now(),
                        };
                        exited.push((key.clone(), exit));
                    } else if instance.phase == Phase::Pending {
                        instance.phase = Phase::Stopped;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, instance = %key.instance_name(), "cannot re-attach; treating it as gone");
                    instance.phase = Phase::Failed;
                    instance.message = Some(format!("re-attach failed: {error}"));
                }
            }
            entry.instances.insert(record.replica, instance);
        }
    }
    for (key, handle, revision, spec) in adopted {
        let pid = handle.pid;
        let generation = adopt_running(inner, &key, handle.clone(), revision, &spec);
        update_instance(
            inner,
            &key,
            vec![PendingEvent::for_instance(
                &key,
                EventKind::Recovered,
                format!("re-attached to {} (pid {pid})", key.instance_name()),
            )],
            |_| {},
        );
        watch(inner.clone(), key, handle, generation);
    }
    for (key, exit) in exited {
        on_exit(inner, &key, 0, exit, true);
    }
    Ok(())
}

/// How often the oldest events beyond the retention are deleted.
const EVENT_PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Samples resource usage of running instances at a fixed interval, and keeps the event log
/// within its retention.
pub(crate) async fn run_sampler(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(inner.config.sample_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    loop {
        ticker.tick().await;
        if last_prune.is_none_or(|at| at.elapsed() >= EVENT_PRUNE_INTERVAL) {
            last_prune = Some(Instant::now());
            inner.recorder.prune_events(inner.config.event_retention);
        }
        let running: Vec<InstanceHandle> = {
            let state = inner.lock();
            state
                .workloads
                .values()
                .flat_map(|entry| entry.instances.values())
                .filter(|instance| instance.phase == Phase::Running)
                .filter_map(|instance| instance.handle.clone())
                .collect()
        };
        let now = Instant::now();
        let readings: Vec<_> = running
            .into_iter()
            .filter_map(|handle| inner.driver.usage(&handle).map(|usage| (handle, usage)))
            .collect();
        let mut state = inner.lock();
        let mut samples = Vec::with_capacity(readings.len());
        for (handle, usage) in readings {
            let key = &handle.key;
            let Some(instance) = state
                .workloads
                .get_mut(&(key.project.clone(), key.workload.clone()))
                .and_then(|entry| entry.instances.get_mut(&key.replica))
            else {
                continue;
            };
            if instance.handle.as_ref() != Some(&handle) {
                continue;
            }
            // Rates over the interval since the previous reading of this run.
            let previous = instance.last_cpu_reading.and_then(|(then, before)| {
                let elapsed = now.duration_since(then).as_secs_f64();
                (elapsed > 0.0).then_some((elapsed, before))
            });
            let rate = |now_total: u64, before_total: fn(&ResourceUsage) -> u64| {
                previous.map(|(elapsed, before)| {
                    now_total.saturating_sub(before_total(&before)) as f64 / elapsed
                })
            };
            let cpu_percent =
                rate(usage.cpu_usage_nanos, |before| before.cpu_usage_nanos).map(|rate| rate / 1e7);
            let disk_read_rate = rate(usage.disk_read_bytes, |before| before.disk_read_bytes);
            let disk_write_rate = rate(usage.disk_write_bytes, |before| before.disk_write_bytes);
            let (network_receive_rate, network_transmit_rate) = match (usage.network, previous) {
                (Some((received, sent)), Some((elapsed, before))) => match before.network {
                    Some((received_before, sent_before)) => (
                        Some(received.saturating_sub(received_before) as f64 / elapsed),
                        Some(sent.saturating_sub(sent_before) as f64 / elapsed),
                    ),
                    None => (None, None),
                },
                _ => (None, None),
            };
            instance.last_cpu_reading = Some((now, usage));
            let sample = UsageSample {
                cpu_seconds: usage.cpu_usage_nanos as f64 / 1e9,
                cpu_percent,
                memory_bytes: usage.memory_bytes,
                pids: usage.pids,
                disk_read_rate,
                disk_write_rate,
                network_receive_rate,
                network_transmit_rate,
            };
            instance.usage = Some(sample);
            samples.push(Reading {
                project: key.project.clone(),
                workload: key.workload.clone(),
                replica: key.replica,
                cpu_cores: cpu_percent.map(|percent| percent / 100.0),
                memory_bytes: usage.memory_bytes,
                pids: usage.pids,
                rates: [
                    disk_read_rate,
                    disk_write_rate,
                    network_receive_rate,
                    network_transmit_rate,
                ],
                restarts: instance.restarts,
                health_check_seconds: instance.last_probe_seconds,
            });
        }
        drop(state);
        if let Some(telemetry) = &inner.telemetry {
            let events = {
                let mut telemetry = telemetry
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                telemetry.forget_except(&samples);
                telemetry.record(std::time::SystemTime::now(), &samples)
            };
            if !events.is_empty() {
                let mut state = inner.lock();
                let now = std::time::SystemTime::now();
                for event in &events {
                    if let Some(instance) = state
                        .workloads
                        .get_mut(&(event.project.clone(), event.workload.clone()))
                        .and_then(|entry| entry.instances.get_mut(&event.replica.unwrap_or(0)))
                    {
                        instance.last_anomaly = Some(now);
                    }
                }
                inner.record(None, events);
            }
        }
    }
}
