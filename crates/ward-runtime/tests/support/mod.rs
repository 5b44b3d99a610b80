//! Shared set-up of the runtime tests: a runtime on a fresh data directory, specs, waiting on
//! conditions with deadlines, and cleaning up instances that a failed test leaves running.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use ward_runtime::{
    Driver, ExitStatus, InstanceHandle, InstanceKey, LogLine, Runtime, RuntimeConfig,
};
use ward_spec::{NetworkMode, Resources, RestartPolicy, WorkloadKind, WorkloadSpec};

/// The monitor binary of this crate, started in place of `ward monitor`.
const MONITOR: &str = env!("CARGO_BIN_EXE_ward-runtime-monitor");

/// [`MONITOR`], or the binary named by `WARD_TEST_MONITOR` (to measure an optimised build).
pub fn monitor_executable() -> PathBuf {
    std::env::var_os("WARD_TEST_MONITOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(MONITOR))
}

static FIXTURES: AtomicUsize = AtomicUsize::new(0);

/// A runtime on its own data directory. Instances started through [`Fixture::key`] are
/// removed when the fixture drops, even when the test failed.
pub struct Fixture {
    pub runtime: Runtime,
    pub data: TempDir,
    pub project: String,
    keys: Mutex<Vec<InstanceKey>>,
}

/// A fixture, or `None` (after saying why) where the machine cannot run sandboxes.
/// The OCI runtime is the default one (crun, else runc), or `WARD_TEST_OCI_RUNTIME`.
pub fn fixture(test: &str) -> Option<Fixture> {
    let oci_runtime = std::env::var("WARD_TEST_OCI_RUNTIME").ok();
    fixture_with(test, oci_runtime.as_deref())
}

pub fn fixture_with(test: &str, oci_runtime: Option<&str>) -> Option<Fixture> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root to create namespaces and cgroups");
        return None;
    }
    // Outside /tmp, so that the sandbox's private /tmp does not hide it by accident: the mask
    // of the data directory is what must hide it.
    let data = tempfile::Builder::new()
        .prefix("ward-runtime-test-")
        .tempdir_in("/var/tmp")
        .expect("temp data dir");
    let config = RuntimeConfig {
        data_dir: data.path().to_path_buf(),
        ward_executable: monitor_executable(),
        oci_runtime: oci_runtime.map(PathBuf::from),
        ..RuntimeConfig::new(PathBuf::new(), PathBuf::new())
    };
    match Runtime::new(config) {
        Ok(runtime) => Some(Fixture {
            runtime,
            data,
            // Unique per fixture: cgroups (`/ward/<container id>`) are shared by the host.
            project: format!(
                "p{}-{}",
                std::process::id(),
                FIXTURES.fetch_add(1, Ordering::Relaxed)
            ),
            keys: Mutex::new(Vec::new()),
        }),
        Err(error) => {
            eprintln!("SKIP {test}: {error}");
            None
        }
    }
}

impl Fixture {
    /// A key unique to this test process, cleaned up at drop.
    pub fn key(&self, workload: &str) -> InstanceKey {
        let key = InstanceKey::new(&self.project, workload, 0);
        self.keys.lock().expect("keys").push(key.clone());
        key
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Stops the instance without a grace period and returns how it ended.
    pub async fn kill(&self, handle: &InstanceHandle) -> ExitStatus {
        self.runtime
            .stop(handle, Duration::ZERO)
            .await
            .expect("stop");
        self.runtime.wait(handle).await.expect("wait")
    }

    /// Starts `spec`, waits for it to exit and returns the exit and the logs.
    pub async fn run_to_exit(&self, spec: &WorkloadSpec) -> (ExitStatus, Vec<LogLine>) {
        let key = self.key(&spec.name);
        let handle = self.runtime.start(&key, spec).await.expect("start");
        let status = tokio::time::timeout(Duration::from_secs(60), self.runtime.wait(&handle))
            .await
            .expect("instance exits within 60 s")
            .expect("wait");
        let logs = self.runtime.read_logs(&key, None, None).expect("logs");
        (status, logs)
    }

    /// The text of the stdout lines of `key`.
    pub fn stdout(&self, key: &InstanceKey) -> Vec<String> {
        self.runtime
            .read_logs(key, None, None)
            .expect("logs")
            .into_iter()
            .filter(|line| line.stream == ward_runtime::LogStream::Stdout)
            .map(|line| line.text)
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let keys = self
            .keys
            .lock()
            .map(|keys| keys.clone())
            .unwrap_or_default();
        let runtime = self.runtime.clone();
        // A separate thread with its own runtime: drop may run inside a test's runtime.
        let cleanup = std::thread::spawn(move || {
            let Ok(tokio) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            tokio.block_on(async {
                for key in keys {
                    if let Err(error) = runtime.remove(&key).await {
                        eprintln!("cleanup of {}: {error}", key.container_id());
                    }
                }
            });
            runtime.release_idle();
        });
        let _ = cleanup.join();
    }
}

/// A process workload running `command` with no network and no limits.
pub fn spec(name: &str, command: &[&str]) -> WorkloadSpec {
    WorkloadSpec {
        name: name.to_string(),
        kind: WorkloadKind::Process,
        image: None,
        command: Some(command.iter().map(|part| part.to_string()).collect()),
        entrypoint: None,
        tty: false,
        workdir: None,
        env: BTreeMap::new(),
        resources: Resources::default(),
        ports: Vec::new(),
        publish_all: false,
        volumes: Vec::new(),
        secrets: Vec::new(),
        network: NetworkMode::None,
        userns: ward_spec::UserNamespace::Private,
        restart: RestartPolicy::default(),
        health: None,
        replicas: 1,
        autoscale: None,
        heal: Default::default(),
        labels: BTreeMap::new(),
    }
}

/// `sh -c SCRIPT`.
pub fn shell(name: &str, script: &str) -> WorkloadSpec {
    spec(name, &["sh", "-c", script])
}

/// Polls `check` until it returns something or `limit` passes (then panics, naming `what`).
pub async fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
