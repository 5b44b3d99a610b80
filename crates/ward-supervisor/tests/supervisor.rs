//! Supervisor behaviour with time paused: restarts, backoff, recovery, scaling, updates and
//! health, against a fake driver at the OS boundary (the real driver has its own tests).
//!
//! The fake reads its behaviour from the workload's command: `run` runs until stopped,
//! `exit AFTER CODE` exits with CODE after AFTER (a duration), `fail-start` cannot start,
//! `unhealthy` runs but fails every health probe, `oom AFTER` is OOM-killed after AFTER.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;
use ward_runtime::{
    AttachOutcome, Driver, ExecRequest, ExecSession, ExitStatus, InstanceHandle, InstanceKey,
    LogLine, LogLocation, ResourceUsage, RuntimeError,
};
use ward_spec::{HealthProbe, WorkloadSpec};
use ward_store::Store;
use ward_supervisor::{
    Admission, Caller, Door, HealthState, Operation, Phase, Principal, Role, Supervisor,
    SupervisorConfig, SupervisorError,
};

#[derive(Default)]
struct FakeDriver {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    next_pid: u32,
    running: HashMap<InstanceKey, (InstanceHandle, watch::Sender<Option<ExitStatus>>)>,
    starts: Vec<(InstanceKey, tokio::time::Instant)>,
    /// Instances "left by an earlier daemon", answered by attach.
    leftovers: HashMap<InstanceKey, AttachOutcome>,
}

impl FakeDriver {
    fn starts_of(&self, workload: &str) -> Vec<tokio::time::Instant> {
        let state = self.state.lock().unwrap();
        state
            .starts
            .iter()
            .filter(|(key, _)| key.workload == workload)
            .map(|(_, at)| *at)
            .collect()
    }

    fn running_count(&self) -> usize {
        self.state.lock().unwrap().running.len()
    }
}

fn exit_status(code: Option<i32>, signal: Option<i32>, oom_killed: bool) -> ExitStatus {
    ExitStatus {
        exit_code: code,
        signal,
        oom_killed,
        finished_at: SystemTime::now(),
    }
}

#[async_trait]
impl Driver for FakeDriver {
    async fn start(
        &self,
        key: &InstanceKey,
        spec: &WorkloadSpec,
    ) -> Result<InstanceHandle, RuntimeError> {
        let command = spec.command.clone().unwrap_or_default();
        if command.first().map(String::as_str) == Some("fail-start") {
            self.state
                .lock()
                .unwrap()
                .starts
                .push((key.clone(), tokio::time::Instant::now()));
            return Err(RuntimeError::NoOciRuntime);
        }
        let (sender, _) = watch::channel(None);
        let handle = {
            let mut state = self.state.lock().unwrap();
            state.next_pid += 1;
            let handle = InstanceHandle {
                key: key.clone(),
                pid: 1000 + state.next_pid,
                monitor_pid: 5000 + state.next_pid,
                started_at: SystemTime::now(),
                address: None,
                ports: spec.ports.clone(),
            };
            state
                .starts
                .push((key.clone(), tokio::time::Instant::now()));
            state
                .running
                .insert(key.clone(), (handle.clone(), sender.clone()));
            handle
        };
        let ends = match command.first().map(String::as_str) {
            Some("exit") => Some((
                humantime::parse_duration(&command[1]).unwrap(),
                exit_status(Some(command[2].parse().unwrap()), None, false),
            )),
            Some("oom") => Some((
                humantime::parse_duration(&command[1]).unwrap(),
                exit_status(None, Some(9), true),
            )),
            _ => None,
        };
        if let Some((after, status)) = ends {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                sender.send_replace(Some(status));
            });
        }
        Ok(handle)
    }

    async fn wait(&self, handle: &InstanceHandle) -> Result<ExitStatus, RuntimeError> {
        let mut receiver = {
            let state = self.state.lock().unwrap();
            match state.running.get(&handle.key) {
                Some((running, sender)) if running == handle => sender.subscribe(),
                _ => return Ok(exit_status(None, None, false)),
            }
        };
        let status = loop {
            if let Some(status) = receiver.borrow_and_update().clone() {
                break status;
            }
            if receiver.changed().await.is_err() {
                break exit_status(None, None, false);
            }
        };
        let mut state = self.state.lock().unwrap();
        if state
            .running
            .get(&handle.key)
            .is_some_and(|(running, _)| running == handle)
        {
            state.running.remove(&handle.key);
        }
        Ok(status)
    }

    fn attach(&self, key: &InstanceKey) -> Result<AttachOutcome, RuntimeError> {
        let mut state = self.state.lock().unwrap();
        let outcome = state
            .leftovers
            .remove(key)
            .unwrap_or(AttachOutcome::NotFound);
        if let AttachOutcome::Running(handle) = &outcome {
            let (sender, _) = watch::channel(None);
            state.running.insert(key.clone(), (handle.clone(), sender));
        }
        Ok(outcome)
    }

    async fn stop(&self, handle: &InstanceHandle, _grace: Duration) -> Result<(), RuntimeError> {
        let sender = self
            .state
            .lock()
            .unwrap()
            .running
            .get(&handle.key)
            .map(|(_, sender)| sender.clone());
        if let Some(sender) = sender {
            sender.send_replace(Some(exit_status(None, Some(15), false)));
        }
        while self
            .state
            .lock()
            .unwrap()
            .running
            .get(&handle.key)
            .is_some_and(|(running, _)| running == handle)
        {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    async fn remove(&self, key: &InstanceKey) -> Result<(), RuntimeError> {
        let running = self
            .state
            .lock()
            .unwrap()
            .running
            .get(key)
            .map(|(handle, _)| handle.clone());
        if let Some(handle) = running {
            self.stop(&handle, Duration::ZERO).await?;
        }
        Ok(())
    }

    fn usage(&self, _handle: &InstanceHandle) -> Option<ResourceUsage> {
        Some(ResourceUsage {
            cpu_usage_nanos: 1_000_000,
            memory_bytes: 4096,
            pids: 1,
            ..ResourceUsage::default()
        })
    }

    async fn probe(
        &self,
        handle: &InstanceHandle,
        _probe: &HealthProbe,
        _timeout: Duration,
    ) -> Result<(), String> {
        let unhealthy = handle.key.workload.starts_with("unhealthy");
        if unhealthy {
            Err("connection refused".to_string())
        } else {
            Ok(())
        }
    }

    fn read_logs(
        &self,
        _key: &InstanceKey,
        _tail: Option<usize>,
        _since: Option<SystemTime>,
    ) -> Result<Vec<LogLine>, RuntimeError> {
        Ok(Vec::new())
    }

    fn log_location(&self, key: &InstanceKey) -> LogLocation {
        LogLocation {
            path: format!("/nonexistent/{}", key.container_id()).into(),
        }
    }

    async fn exec(
        &self,
        handle: &InstanceHandle,
        _request: &ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        Err(RuntimeError::Io {
            action: "exec in",
            path: handle.key.container_id().into(),
            source: std::io::Error::other("the fake driver cannot exec"),
        })
    }
}

fn spec(yaml: &str) -> WorkloadSpec {
    ward_spec::parse_documents(yaml).unwrap().remove(0)
}

/// Waits until the workload has `count` instances, all running.
async fn all_running(
    supervisor: &Supervisor,
    name: &str,
    count: usize,
) -> ward_supervisor::WorkloadView {
    supervisor
        .wait_until("default", name, Duration::from_secs(5), |view| {
            view.instances.len() == count
                && view
                    .instances
                    .iter()
                    .all(|instance| instance.phase == Phase::Running)
        })
        .await
        .unwrap()
}

async fn supervisor_with(driver: Arc<FakeDriver>, store: Store) -> Supervisor {
    Supervisor::start(Arc::new(store), driver, SupervisorConfig::default())
        .await
        .unwrap()
}

/// Leave for the bootstrap admin to make one call of `operation` in project `default`.
fn as_admin(supervisor: &Supervisor, operation: Operation) -> Admission {
    supervisor
        .admit(
            &Caller::new(Principal::bootstrap_admin()),
            operation,
            Some("default"),
            "test",
        )
        .expect("the admin is admitted")
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off_to_a_handful_of_restarts_in_the_first_minute() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    let begin = tokio::time::Instant::now();
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: crash\ncommand: [exit, 0s, '1']\nheal: off\n"),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let starts = driver.starts_of("crash");
    let offsets: Vec<u64> = starts
        .iter()
        .map(|at| at.duration_since(begin).as_secs())
        .collect();
    assert_eq!(offsets, [0, 1, 3, 7, 15, 31], "starts at these seconds");
    let view = supervisor.get("default", "crash").unwrap();
    assert_eq!(view.restarts(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_ends_after_five_quick_failures_with_a_diagnosis() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    let begin = tokio::time::Instant::now();
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: crash\ncommand: [exit, 0s, '1']\n"),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
    let offsets: Vec<u64> = driver
        .starts_of("crash")
        .iter()
        .map(|at| at.duration_since(begin).as_secs())
        .collect();
    assert_eq!(
        offsets,
        [0, 1, 3, 7, 15],
        "starts at these seconds, then none"
    );
    let view = supervisor.get("default", "crash").unwrap();
    assert_eq!(view.instances[0].phase, Phase::Failed);
    let events = supervisor.latest_events(Some("default"), 100).unwrap();
    let diagnosis = events
        .iter()
        .find(|event| event.kind == "crash_loop")
        .expect("a crash_loop event");
    assert!(
        diagnosis
            .message
            .contains("exited with code 1, 5 times in a row"),
        "{}",
        diagnosis.message
    );
    assert_eq!(diagnosis.data["failures"], 5);

    // A start by hand begins a fresh set of tries.
    supervisor
        .start_workload(&as_admin(&supervisor, Operation::WorkloadStart), "crash")
        .await
        .ok();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(driver.starts_of("crash").len() >= 6);
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_stable_run() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    let begin = tokio::time::Instant::now();
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: flaky\ncommand: [exit, 40s, '1']\n"),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(130)).await;
    let offsets: Vec<u64> = driver
        .starts_of("flaky")
        .iter()
        .map(|at| at.duration_since(begin).as_secs())
        .collect();
    // Each run lasts 40 s, longer than reset_after, so every restart waits the initial 1 s.
    assert_eq!(offsets, [0, 41, 82, 123]);
}

#[tokio::test(start_paused = true)]
async fn restart_policies_decide_what_comes_back() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    let check = |name: &str, restart: &str, command: &str| {
        supervisor
            .create(
                &as_admin(&supervisor, Operation::WorkloadCreate),
                spec(&format!(
                    "name: {name}\nrestart: {restart}\ncommand: {command}\n"
                )),
            )
            .unwrap();
    };
    check("never-fails", "never", "[exit, 1s, '3']");
    check("failure-ok", "on-failure", "[exit, 1s, '0']");
    check("always-ok", "always", "[exit, 1s, '0']");
    check(
        "limited",
        "{policy: on-failure, max_retries: 2}",
        "[exit, 1s, '1']",
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    let phase = |name: &str| supervisor.get("default", name).unwrap();
    assert_eq!(phase("never-fails").phase(), Phase::Failed);
    assert_eq!(phase("never-fails").primary().unwrap().exit_code, Some(3));
    assert_eq!(driver.starts_of("never-fails").len(), 1);
    assert_eq!(phase("failure-ok").phase(), Phase::Exited);
    assert_eq!(driver.starts_of("failure-ok").len(), 1);
    assert!(driver.starts_of("always-ok").len() > 3);
    assert_eq!(driver.starts_of("limited").len(), 3);
    assert_eq!(phase("limited").restarts(), 2);
}

#[tokio::test(start_paused = true)]
async fn oom_kill_is_recorded_and_restarted() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    let mut events = supervisor.subscribe();
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: hog\ncommand: [oom, 2s]\n"),
        )
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 6 {
        kinds.push(events.recv().await.unwrap().kind);
    }
    assert_eq!(
        kinds,
        [
            "created",
            "starting",
            "started",
            "oom_killed",
            "restarting",
            "starting"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stop_start_and_delete() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: web\ncommand: [run]\n"),
        )
        .unwrap();
    let view = supervisor
        .wait_until_settled("default", "web", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(view.phase(), Phase::Running);
    let view = supervisor
        .stop(&as_admin(&supervisor, Operation::WorkloadStop), "web", None)
        .await
        .unwrap();
    assert_eq!(view.phase(), Phase::Stopped);
    assert_eq!(driver.running_count(), 0);
    let view = supervisor
        .start_workload(&as_admin(&supervisor, Operation::WorkloadStart), "web")
        .await
        .unwrap();
    assert_eq!(view.phase(), Phase::Running);
    let refused = supervisor
        .delete(
            &as_admin(&supervisor, Operation::WorkloadDelete),
            "web",
            false,
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("ward rm -f web"), "{refused}");
    supervisor
        .delete(
            &as_admin(&supervisor, Operation::WorkloadDelete),
            "web",
            true,
        )
        .await
        .unwrap();
    assert!(supervisor.get("default", "web").is_err());
    assert_eq!(driver.running_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn replicas_scale_up_and_down() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: pool\nreplicas: 3\ncommand: [run]\n"),
        )
        .unwrap();
    let view = all_running(&supervisor, "pool", 3).await;
    let names: Vec<&str> = view
        .instances
        .iter()
        .map(|instance| instance.name.as_str())
        .collect();
    assert_eq!(names, ["pool-0", "pool-1", "pool-2"]);
    supervisor
        .apply(
            &as_admin(&supervisor, Operation::WorkloadApply),
            vec![spec("name: pool\nreplicas: 1\ncommand: [run]\n")],
            false,
        )
        .unwrap();
    let view = supervisor
        .wait_until("default", "pool", Duration::from_secs(5), |view| {
            view.instances.len() == 1
        })
        .await
        .unwrap();
    assert_eq!(view.instances.len(), 1);
    assert_eq!(driver.running_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn scaling_up_leaves_the_running_replicas_alone() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: pool\nreplicas: 2\ncommand: [run]\n"),
        )
        .unwrap();
    let pids = |view: &ward_supervisor::WorkloadView| -> Vec<Option<u32>> {
        view.instances.iter().map(|instance| instance.pid).collect()
    };
    let before = pids(&all_running(&supervisor, "pool", 2).await);
    supervisor
        .apply(
            &as_admin(&supervisor, Operation::WorkloadApply),
            vec![spec("name: pool\nreplicas: 3\ncommand: [run]\n")],
            false,
        )
        .unwrap();
    let after = all_running(&supervisor, "pool", 3).await;
    assert_eq!(pids(&after)[..2], before[..]);
    assert!(after
        .instances
        .iter()
        .all(|instance| instance.revision == 2));
    assert_eq!(driver.running_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn update_replaces_instances_one_at_a_time() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: api\nreplicas: 2\ncommand: [run]\n"),
        )
        .unwrap();
    all_running(&supervisor, "api", 2).await;
    let outcomes = supervisor
        .apply(
            &as_admin(&supervisor, Operation::WorkloadApply),
            vec![spec(
                "name: api\nreplicas: 2\ncommand: [run]\nenv: {A: b}\n",
            )],
            false,
        )
        .unwrap();
    assert_eq!(outcomes[0].revision, 2);
    let view = supervisor
        .wait_until("default", "api", Duration::from_secs(5), |view| {
            view.instances
                .iter()
                .all(|instance| instance.revision == 2 && instance.phase == Phase::Running)
        })
        .await
        .unwrap();
    assert!(view.instances.iter().all(|instance| instance.revision == 2));
    assert_eq!(driver.starts_of("api").len(), 4);
    // Applying the same spec again changes nothing.
    let outcomes = supervisor
        .apply(
            &as_admin(&supervisor, Operation::WorkloadApply),
            vec![spec(
                "name: api\nreplicas: 2\ncommand: [run]\nenv: {A: b}\n",
            )],
            false,
        )
        .unwrap();
    assert_eq!(outcomes[0].action.as_str(), "unchanged");
}

#[tokio::test(start_paused = true)]
async fn failing_health_checks_restart_the_instance() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(&as_admin(&supervisor, Operation::WorkloadCreate), spec("name: unhealthy-web\ncommand: [run]\nhealth: {tcp: 80, interval: 5s, retries: 3}\n"))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(
        driver.starts_of("unhealthy-web").len(),
        2,
        "restarted after 3 failed probes 5 s apart"
    );
    let events = supervisor.events_after(None, None, 1000).unwrap();
    assert!(events.iter().any(|event| event.kind == "unhealthy"));
}

#[tokio::test(start_paused = true)]
async fn start_failure_is_reported_and_retried_with_backoff() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: broken\ncommand: [fail-start]\n"),
        )
        .unwrap();
    let view = supervisor
        .wait_until_settled("default", "broken", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(view.phase(), Phase::Failed);
    assert!(view
        .primary()
        .unwrap()
        .message
        .as_deref()
        .unwrap_or("")
        .contains("crun"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(driver.starts_of("broken").len(), 4, "at 0, 1, 3 and 7 s");
}

#[tokio::test(start_paused = true)]
async fn a_new_supervisor_reattaches_and_notices_exits_while_down() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("ward.db");
    let first_driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(first_driver.clone(), Store::open(&database).unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: alive\ncommand: [run]\n"),
        )
        .unwrap();
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: gone\ncommand: [run]\nrestart: never\n"),
        )
        .unwrap();
    let alive = supervisor
        .wait_until_settled("default", "alive", Duration::from_secs(5))
        .await
        .unwrap();
    supervisor
        .wait_until_settled("default", "gone", Duration::from_secs(5))
        .await
        .unwrap();
    let alive_handle = first_driver
        .state
        .lock()
        .unwrap()
        .running
        .get(&InstanceKey::new("default", "alive", 0))
        .unwrap()
        .0
        .clone();
    supervisor.shutdown();
    supervisor.flush().await;
    drop(supervisor);

    let second_driver = Arc::new(FakeDriver::default());
    {
        let mut state = second_driver.state.lock().unwrap();
        state.leftovers.insert(
            InstanceKey::new("default", "alive", 0),
            AttachOutcome::Running(alive_handle.clone()),
        );
        state.leftovers.insert(
            InstanceKey::new("default", "gone", 0),
            AttachOutcome::Exited(exit_status(Some(7), None, false)),
        );
    }
    let supervisor = supervisor_with(second_driver.clone(), Store::open(&database).unwrap()).await;
    let view = supervisor.get("default", "alive").unwrap();
    assert_eq!(view.phase(), Phase::Running);
    assert_eq!(view.primary().unwrap().pid, alive.primary().unwrap().pid);
    assert!(
        second_driver.starts_of("alive").is_empty(),
        "re-attached, not restarted"
    );
    let gone = supervisor.get("default", "gone").unwrap();
    assert_eq!(gone.phase(), Phase::Failed);
    assert_eq!(gone.primary().unwrap().exit_code, Some(7));
}

#[tokio::test(start_paused = true)]
async fn bad_batches_change_nothing() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: one\ncommand: [run]\nports: ['18181:80']\n"),
        )
        .unwrap();
    let clash = supervisor
        .apply(
            &as_admin(&supervisor, Operation::WorkloadApply),
            vec![
                spec("name: two\ncommand: [run]\n"),
                spec("name: three\ncommand: [run]\nports: ['18181:81']\n"),
            ],
            false,
        )
        .unwrap_err();
    assert!(clash.to_string().contains("18181"), "{clash}");
    assert!(
        supervisor.get("default", "two").is_err(),
        "nothing of the batch was applied"
    );
    let taken = supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: one\ncommand: [run]\n"),
        )
        .unwrap_err();
    assert!(taken.to_string().contains("already exists"), "{taken}");
}

/// A regression: `restart` answered before the restart had begun, with the old instance.
#[tokio::test(start_paused = true)]
async fn restart_returns_once_the_new_instances_run() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: svc\nreplicas: 2\ncommand: [run]\n"),
        )
        .unwrap();
    let before = all_running(&supervisor, "svc", 2).await;
    let after = supervisor
        .restart(&as_admin(&supervisor, Operation::WorkloadRestart), "svc")
        .await
        .unwrap();
    for (old, new) in before.instances.iter().zip(&after.instances) {
        assert_eq!(new.phase, Phase::Running);
        assert_ne!(new.pid, old.pid, "{} was replaced", new.name);
        assert_eq!(new.restarts, 1);
    }
    assert_eq!(driver.starts_of("svc").len(), 4);
}

/// Every caller goes through the gate, not only HTTP: a viewer calling in-process is refused
/// and the refusal is in the audit log; leave to read is no leave to write; an agent acting
/// for an operator is recorded as such, once, by the change itself.
#[tokio::test(start_paused = true)]
async fn in_process_callers_go_through_the_gate_and_the_audit_log() {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let supervisor = Supervisor::start(
        store.clone(),
        Arc::new(FakeDriver::default()),
        SupervisorConfig::default(),
    )
    .await
    .unwrap();
    let principal = |actor: &str, role: Role| Principal {
        actor: actor.to_string(),
        project: Some("default".to_string()),
        role,
        capabilities: Default::default(),
    };
    let viewer = Caller::new(principal("key:viewer", Role::Viewer));
    let refused = supervisor.admit(&viewer, Operation::WorkloadCreate, None, "web");
    assert!(
        matches!(&refused, Err(SupervisorError::Forbidden { message }) if message.contains("viewer")),
        "{refused:?}"
    );
    let reading = supervisor
        .admit(&viewer, Operation::WorkloadList, None, "web")
        .unwrap();
    assert!(supervisor
        .create(&reading, spec("name: web\ncommand: [run]\n"))
        .is_err());
    let other_project = supervisor.admit(
        &Caller::new(principal("key:ops", Role::Operator)),
        Operation::WorkloadCreate,
        Some("elsewhere"),
        "web",
    );
    assert!(other_project.is_err());
    assert!(supervisor.list(None).is_empty());

    let planner = Caller::on_behalf_of("planner", principal("key:ops", Role::Operator));
    let admission = supervisor
        .admit(&planner, Operation::WorkloadCreate, None, "web")
        .unwrap();
    supervisor
        .create(&admission, spec("name: web\ncommand: [run]\n"))
        .unwrap();
    // The change wrote its own entry; finishing the call adds none.
    supervisor.gate().finish(&admission, 201, "ok");

    let audit = store.list_audit(None, 0, 100).unwrap();
    let summary: Vec<_> = audit
        .iter()
        .map(|record| {
            (
                record.entry.actor.as_str(),
                record.entry.on_behalf_of.as_deref(),
                record.entry.project.as_deref(),
                record.entry.action.as_str(),
                record.entry.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "key:viewer",
                None,
                Some("default"),
                "POST /api/v1/workloads",
                403
            ),
            (
                "key:ops",
                None,
                Some("elsewhere"),
                "POST /api/v1/workloads",
                403
            ),
            (
                "planner",
                Some("key:ops"),
                Some("default"),
                "POST /api/v1/workloads",
                201
            ),
        ]
    );
    assert!(store.verify_audit().unwrap().first_bad.is_none());
}

/// A workload scaled to zero runs nothing and says so; scaling it up starts its instances.
#[tokio::test(start_paused = true)]
async fn a_workload_scaled_to_zero_is_stopped_not_pending() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: idle\ncommand: [run]\nreplicas: 0\n"),
        )
        .unwrap();
    let view = supervisor
        .wait_until_settled("default", "idle", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(view.phase(), Phase::Stopped);
    assert!(driver.starts_of("idle").is_empty());
    supervisor
        .apply(
            &as_admin(&supervisor, Operation::WorkloadApply),
            vec![spec("name: idle\ncommand: [run]\nreplicas: 2\n")],
            false,
        )
        .unwrap();
    let view = supervisor
        .wait_until("default", "idle", Duration::from_secs(5), |view| {
            view.instances.len() == 2 && view.phase() == Phase::Running
        })
        .await
        .unwrap();
    assert_eq!(view.phase(), Phase::Running);
}

/// Failed probes within the start period do not count: the same failing check that restarts
/// an instance after 15 s leaves it alone for its 30 s start period, and counts after it.
#[tokio::test(start_paused = true)]
async fn health_failures_in_the_start_period_do_not_count() {
    let driver = Arc::new(FakeDriver::default());
    let supervisor = supervisor_with(driver.clone(), Store::open_in_memory().unwrap()).await;
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: unhealthy-slow\ncommand: [run]\nhealth: {tcp: 80, interval: 5s, retries: 3, start_period: 30s}\n"),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(
        driver.starts_of("unhealthy-slow").len(),
        1,
        "within the start period"
    );
    let view = supervisor.get("default", "unhealthy-slow").unwrap();
    assert_eq!(view.primary().unwrap().health, Some(HealthState::Starting));
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(
        driver.starts_of("unhealthy-slow").len(),
        2,
        "restarted after 3 counted failures past the start period"
    );
}

/// A name removed with `rm -f` and taken again at once keeps the new workload's record: the
/// old one's record is gone before the name is free, and deleting it never takes the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_again_at_once_keeps_its_new_record() {
    let driver = Arc::new(FakeDriver::default());
    let store = Arc::new(Store::open_in_memory().unwrap());
    let supervisor = Supervisor::start(store.clone(), driver, SupervisorConfig::default())
        .await
        .unwrap();
    for cycle in 0..300 {
        supervisor
            .create(
                &as_admin(&supervisor, Operation::WorkloadCreate),
                spec("name: web\ncommand: [run]\n"),
            )
            .unwrap_or_else(|error| panic!("cycle {cycle}: {error}"));
        supervisor
            .delete(
                &as_admin(&supervisor, Operation::WorkloadDelete),
                "web",
                true,
            )
            .await
            .unwrap();
        let left = store.list_workloads(None).unwrap();
        assert!(left.is_empty(), "cycle {cycle}: {left:?}");
    }
    supervisor
        .create(
            &as_admin(&supervisor, Operation::WorkloadCreate),
            spec("name: web\ncommand: [run]\n"),
        )
        .unwrap();
    // Let every action of the loop run out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = store.list_workloads(None).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].desired_state, "running");
}
