//! Loaded models: one `ward-runner` process per model file and project, started on its first
//! request and stopped after `keep_alive` without one. A runner runs as an unprivileged user
//! with no way to regain privileges, in network, IPC and UTS namespaces of its own (it reaches
//! nothing but the socket it was handed), in a cgroup under its project's with a memory cap
//! of its own, so the project's memory cap and quota count it with the project's workloads.
//! It gets the model file and its listening socket as open descriptors from the daemon, so it
//! needs no path under the data directory. A runner that has died (crashed, killed, out of
//! memory) is started again by the next request; its own requests end with an error, no
//! other's do.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use ward_core::inference::LoadedModel;
use ward_model::runner::{Event, ModelInfo, Refusal, Request};

use crate::models::{ModelError, ModelService};
use crate::{Supervisor, SupervisorError};

/// How long a runner may take to load its model.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// The user runners run as.
const RUNNER_UID: u32 = 65534;
/// What the names of runners' cgroups hold (`…model@<digest prefix>`).
const RUNNER_CGROUP_MARKER: &str = ".model@";

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Loading it would take the project past its memory quota.
    #[error(transparent)]
    Quota(#[from] SupervisorError),
    /// The request cannot run as asked.
    #[error("{0}")]
    Refused(Refusal),
    /// Every slot of the model is taken and its queue is full.
    #[error(
        "model {model} has {waiting} requests waiting, as many as it queues: try again in a moment"
    )]
    Busy { model: String, waiting: u32 },
    /// As many models as may be loaded are, and each serves requests now.
    #[error("model {model} cannot load now: all {loaded} loaded models serve requests; try again in a moment")]
    AllBusy { model: String, loaded: u32 },
    /// The model's runner could not start or stopped; the next request starts it again.
    #[error("model {model} is not available: {reason}")]
    Unavailable { model: String, reason: String },
}

/// How runners are started.
#[derive(Clone, Debug)]
pub struct InferenceConfig {
    /// The `ward-runner` program.
    pub runner: PathBuf,
    /// Where the daemon keeps runners' sockets (root only).
    pub run_dir: PathBuf,
    /// A runner with no request for this long is stopped.
    pub keep_alive: Duration,
    /// Sequences each runner decodes together.
    pub slots: u32,
    /// Tokens of context per slot.
    pub context: u32,
    /// Requests that may wait for a slot of one model.
    pub queue: u32,
    /// Models loaded at once; loading one more unloads the least recently used.
    pub max_loaded: u32,
    /// Memory all runners together may be capped at; loading one more unloads the least
    /// recently used until the new one fits. `None`: no cap beyond the count.
    pub max_memory: Option<u64>,
    /// Where runners are confined and counted; `None` runs them without a cgroup (tests of
    /// the engine alone).
    pub sandbox: Option<Sandbox>,
}

/// What confines runners: the runtime makes their cgroups, the supervisor knows the quotas.
#[derive(Clone)]
pub struct Sandbox {
    pub runtime: ward_runtime::Runtime,
    pub supervisor: Supervisor,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

/// The key of a project's runner of one model file, in the maps and the loaded registry.
pub fn runner_key(project: &str, digest: &str) -> String {
    format!("{project}/{digest}")
}

/// The daemon's loaded models; cheap to share.
#[derive(Clone)]
pub struct Inference {
    inner: Arc<Inner>,
}

struct Inner {
    models: ModelService,
    config: InferenceConfig,
    /// By [`runner_key`]: two names of one file in a project share a runner.
    runners: Mutex<HashMap<String, Runner>>,
    /// The runner keys loaded now, for the model views.
    loaded: Arc<Mutex<BTreeSet<String>>>,
    /// Requests in flight (running or waiting) per runner key.
    in_flight: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Runners that stopped on their own (crashed, killed, out of memory).
    failures: AtomicU64,
}

/// One request's place in its model's count; given back when dropped.
struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Runner {
    child: Child,
    project: String,
    /// The name it was loaded under.
    name: String,
    /// Its model file's.
    digest: String,
    /// Its cgroup, when runners are confined.
    cgroup: Option<ward_runtime::ProcessCgroup>,
    /// The memory cap of its cgroup.
    memory_max: u64,
    socket: PathBuf,
    info: ModelInfo,
    last_used: Instant,
    /// How long it stays loaded after its last request (the last request's say, or the
    /// configured default).
    keep_alive: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, mut runner) in self.lock().drain() {
            stop(&mut runner);
        }
    }
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Inference").finish_non_exhaustive()
    }
}

impl Inference {
    pub fn new(models: ModelService, config: InferenceConfig) -> std::io::Result<Inference> {
        std::fs::create_dir_all(&config.run_dir)?;
        std::fs::set_permissions(
            &config.run_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let loaded = models.loaded_registry();
        if let Some(sandbox) = &config.sandbox {
            // Runners of a daemon that died are orphans nothing will ever ask: stop them.
            let reaped = sandbox.runtime.reap_process_cgroups(RUNNER_CGROUP_MARKER);
            if reaped > 0 {
                tracing::info!(reaped, "stopped the model runners an earlier daemon left");
            }
        }
        let inference = Inference {
            inner: Arc::new(Inner {
                models,
                config,
                runners: Mutex::default(),
                loaded,
                in_flight: Mutex::default(),
                failures: AtomicU64::new(0),
            }),
        };
        let weak = Arc::downgrade(&inference.inner);
        std::thread::Builder::new()
            .name("model-reaper".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(inner) = weak.upgrade() else { return };
                inner.unload_idle();
            })?;
        Ok(inference)
    }

    /// The models of `project` loaded now.
    pub fn loaded(&self, project: &str) -> Result<Vec<LoadedModel>, InferenceError> {
        let models = self.inner.models.list(project)?;
        let runners = self.inner.lock();
        Ok(models
            .into_iter()
            .filter_map(|model| {
                let key = runner_key(project, &model.digest);
                let runner = runners.get(&key)?;
                Some(self.inner.describe(&model.name, &key, runner))
            })
            .collect())
    }

    /// Runners that have stopped on their own since the daemon started.
    pub fn runner_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// The models of every project loaded now, each with its project.
    pub fn loaded_everywhere(&self) -> Result<Vec<(String, LoadedModel)>, InferenceError> {
        let models = self.inner.models.list_everywhere()?;
        let runners = self.inner.lock();
        Ok(models
            .into_iter()
            .filter_map(|(project, model)| {
                let key = runner_key(&project, &model.digest);
                let runner = runners.get(&key)?;
                let described = self.inner.describe(&model.name, &key, runner);
                Some((project, described))
            })
            .collect())
    }

    /// Loads model `name` of `project` now. Blocks while it loads.
    pub fn load(&self, project: &str, name: &str) -> Result<LoadedModel, InferenceError> {
        let model = self.inner.models.get(project, name)?;
        self.inner.runner_for(project, name, &model.digest, None)?;
        let key = runner_key(project, &model.digest);
        let runners = self.inner.lock();
        let runner = runners
            .get(&key)
            .ok_or_else(|| InferenceError::Unavailable {
                model: name.to_string(),
                reason: "it was unloaded as soon as it loaded".to_string(),
            })?;
        Ok(self.inner.describe(name, &key, runner))
    }

    /// Stops the runner of model `name` of `project`, if it runs.
    pub fn unload(&self, project: &str, name: &str) -> Result<(), InferenceError> {
        let model = self.inner.models.get(project, name)?;
        self.inner.forget(&runner_key(project, &model.digest));
        Ok(())
    }

    /// Runs `request` (a completion or embeddings) on model `name` of `project` (which then
    /// stays loaded for `keep_alive` after its last request, when given); the events come
    /// through the receiver, the last a `Done`, `Embeddings` or `Error`. Blocks while the
    /// model loads: call it off the async threads.
    pub fn generate(
        &self,
        project: &str,
        name: &str,
        request: Request,
        keep_alive: Option<Duration>,
    ) -> Result<mpsc::Receiver<Event>, InferenceError> {
        let model = self.inner.models.get(project, name)?;
        let key = runner_key(project, &model.digest);
        let place = self.inner.take_place(name, &key)?;
        let unavailable = |reason: String| InferenceError::Unavailable {
            model: name.to_string(),
            reason,
        };
        let mut line =
            serde_json::to_vec(&request).map_err(|error| unavailable(error.to_string()))?;
        line.push(b'\n');
        // A runner that is dying can still take a connection: one that ends before its first
        // answer is asked again of a new runner, once.
        for attempt in 0..2 {
            let socket = self
                .inner
                .runner_for(project, name, &model.digest, keep_alive)?;
            let mut stream = UnixStream::connect(&socket)
                .map_err(|error| unavailable(format!("cannot reach its runner: {error}")))?;
            stream.write_all(&line).map_err(|error| {
                unavailable(format!("its runner did not take the request: {error}"))
            })?;
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            let first = match reader.read_line(&mut first) {
                Ok(read) if read > 0 => serde_json::from_str::<Event>(&first).ok(),
                _ => None,
            };
            let Some(first) = first else {
                if attempt == 0 {
                    tracing::warn!(
                        model = name,
                        "the model's runner stopped before answering; starting it again"
                    );
                    self.inner.forget_failed(&key);
                    continue;
                }
                return Err(unavailable("its runner stopped before answering".into()));
            };
            let (sender, receiver) = mpsc::channel(64);
            let model_name = name.to_string();
            std::thread::Builder::new()
                .name("model-stream".into())
                .spawn(move || {
                    let _place = place;
                    relay(first, reader, &sender, &model_name)
                })
                .map_err(|error| unavailable(error.to_string()))?;
            return Ok(receiver);
        }
        Err(unavailable("its runner stopped before answering".into()))
    }
}

/// Passes the runner's events on; a stream that ends without its last event ends with an
/// error saying so.
fn relay(first: Event, reader: BufReader<UnixStream>, sender: &mpsc::Sender<Event>, model: &str) {
    let first_is_last = first.is_last();
    if sender.blocking_send(first).is_err() || first_is_last {
        return;
    }
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            break;
        };
        let last = event.is_last();
        if sender.blocking_send(event).is_err() || last {
            return;
        }
    }
    let _ = sender.blocking_send(Event::Error(Refusal::RunnerStopped(format!(
        "the runner of model {model} stopped before the completion ended; the next request starts it again"
    ))));
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Runner>> {
        self.runners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn describe(&self, name: &str, key: &str, runner: &Runner) -> LoadedModel {
        let requests = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .map_or(0, |count| count.load(Ordering::SeqCst));
        let memory_bytes = runner
            .cgroup
            .as_ref()
            .and_then(ward_runtime::ProcessCgroup::memory_bytes)
            .unwrap_or_else(|| resident_bytes(runner.child.id()));
        LoadedModel {
            name: name.to_string(),
            digest: runner.digest.clone(),
            pid: runner.child.id(),
            memory_bytes,
            slots: runner.info.slots,
            context: runner.info.context,
            requests,
            unloads_in_seconds: runner
                .keep_alive
                .saturating_sub(runner.last_used.elapsed())
                .as_secs(),
        }
    }

    /// A place among the requests of runner `key`, unless its slots and queue are full.
    fn take_place(&self, name: &str, key: &str) -> Result<InFlight, InferenceError> {
        let counter = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        let limit = self.config.slots.saturating_add(self.config.queue);
        let taken = counter.fetch_add(1, Ordering::SeqCst);
        let place = InFlight(counter);
        if taken >= limit {
            return Err(InferenceError::Busy {
                model: name.to_string(),
                waiting: self.config.queue,
            });
        }
        Ok(place)
    }

    /// Counts, records and forgets runner `key`, which stopped on its own.
    fn forget_failed(&self, key: &str) {
        let removed = self.lock().remove(key);
        if let Some(mut runner) = removed {
            self.note_failure(&runner.name.clone(), &runner);
            stop(&mut runner);
        }
        self.mark(key, false);
    }

    /// Stops and forgets runner `key`, if it runs.
    fn forget(&self, key: &str) {
        if let Some(mut runner) = self.lock().remove(key) {
            stop(&mut runner);
        }
        self.mark(key, false);
    }

    /// The socket of `project`'s runner of `digest`, started first if none runs.
    fn runner_for(
        &self,
        project: &str,
        name: &str,
        digest: &str,
        keep_alive: Option<Duration>,
    ) -> Result<PathBuf, InferenceError> {
        let key = runner_key(project, digest);
        let mut runners = self.lock();
        if let Some(runner) = runners.get_mut(&key) {
            if matches!(runner.child.try_wait(), Ok(None)) {
                runner.last_used = Instant::now();
                if let Some(keep_alive) = keep_alive {
                    runner.keep_alive = keep_alive;
                }
                return Ok(runner.socket.clone());
            }
            self.note_failure(name, runner);
            if let Some(mut gone) = runners.remove(&key) {
                stop(&mut gone);
            }
            self.mark(&key, false);
        }
        let plan = self.plan(name, digest)?;
        // Room: fewer runners than the count allows, and (with a memory cap on all runners)
        // enough memory for this one's cap.
        loop {
            let count_full = runners.len() >= self.config.max_loaded.max(1) as usize;
            let memory_full = self.config.max_memory.is_some_and(|max| {
                runners
                    .values()
                    .map(|runner| runner.memory_max)
                    .sum::<u64>()
                    + plan.memory_max
                    > max
            });
            if !count_full && !memory_full {
                break;
            }
            // The least recently used model that serves no request now.
            let idle = |key: &String| {
                self.in_flight
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get(key)
                    .is_none_or(|count| count.load(Ordering::SeqCst) == 0)
            };
            let Some(oldest) = runners
                .iter()
                .filter(|(key, _)| idle(key))
                .min_by_key(|(_, runner)| runner.last_used)
                .map(|(key, _)| key.clone())
            else {
                if runners.is_empty() {
                    return Err(InferenceError::Unavailable {
                        model: name.to_string(),
                        reason: format!(
                            "it may use {} and the daemon lets all models together use {}",
                            ward_spec::units::format_size(plan.memory_max),
                            ward_spec::units::format_size(self.config.max_memory.unwrap_or(0))
                        ),
                    });
                }
                return Err(InferenceError::AllBusy {
                    model: name.to_string(),
                    loaded: runners.len() as u32,
                });
            };
            if let Some(mut evicted) = runners.remove(&oldest) {
                tracing::info!(runner = oldest, "model unloaded to make room for another");
                stop(&mut evicted);
            }
            self.mark(&oldest, false);
        }
        if let Some(sandbox) = &self.config.sandbox {
            let others: u64 = runners
                .values()
                .filter(|runner| runner.project == project)
                .map(|runner| runner.memory_max)
                .sum();
            sandbox
                .supervisor
                .check_model_memory(project, name, plan.memory_max, others)?;
        }
        let mut runner = self.start(project, name, digest, plan)?;
        if let Some(keep_alive) = keep_alive {
            runner.keep_alive = keep_alive;
        }
        let socket = runner.socket.clone();
        tracing::info!(
            project,
            model = name,
            parameters = runner.info.parameters,
            context = runner.info.context,
            slots = runner.info.slots,
            memory_max = runner.memory_max,
            "model loaded"
        );
        runners.insert(key.clone(), runner);
        self.mark(&key, true);
        Ok(socket)
    }

    /// Logs, counts and records as an event a runner that stopped on its own, saying so when
    /// it ran out of memory.
    fn note_failure(&self, name: &str, runner: &Runner) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let out_of_memory = runner
            .cgroup
            .as_ref()
            .is_some_and(ward_runtime::ProcessCgroup::oom_killed);
        let (kind, message) = if out_of_memory {
            (
                crate::EventKind::OomKilled,
                format!(
                    "the runner of model {name} ran out of memory (its cap is {}) and was killed; the next request starts it again",
                    ward_spec::units::format_size(runner.memory_max)
                ),
            )
        } else {
            (
                crate::EventKind::Exited,
                format!(
                    "the runner of model {name} stopped on its own; the next request starts it again"
                ),
            )
        };
        tracing::warn!(project = runner.project, model = name, "{message}");
        if let Some(sandbox) = &self.config.sandbox {
            sandbox
                .supervisor
                .model_event(&runner.project, name, kind, message);
        }
    }

    /// The file of `digest` and what its runner may use.
    fn plan(&self, name: &str, digest: &str) -> Result<Plan, InferenceError> {
        let unavailable = |reason: String| InferenceError::Unavailable {
            model: name.to_string(),
            reason,
        };
        let file = self
            .models
            .file(digest)
            .ok_or_else(|| unavailable("its file is not in the store".into()))?;
        let size = std::fs::metadata(&file)
            .map_err(|error| unavailable(format!("cannot read its file: {error}")))?
            .len();
        let header = ward_model::gguf::Header::read_file(&file)
            .map_err(|error| unavailable(format!("cannot read its file: {error}")))?;
        Ok(Plan {
            file,
            memory_max: memory_cap(
                &header,
                size,
                u64::from(self.config.context) * u64::from(self.config.slots),
            ),
        })
    }

    fn start(
        &self,
        project: &str,
        name: &str,
        digest: &str,
        plan: Plan,
    ) -> Result<Runner, InferenceError> {
        let unavailable = |reason: String| InferenceError::Unavailable {
            model: name.to_string(),
            reason,
        };
        let model = std::fs::File::open(&plan.file)
            .map_err(|error| unavailable(format!("cannot open its file: {error}")))?;
        let hex = digest.trim_start_matches("sha256:");
        let short = &hex[..16.min(hex.len())];
        let socket = self
            .config
            .run_dir
            .join(format!("{}-{short}.sock", project_hash(project)));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|error| unavailable(format!("cannot make its socket: {error}")))?;
        let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
        // The program too goes in as a descriptor: the runner's user may not reach its path
        // (a build under /root, say).
        let program = std::fs::File::open(&self.config.runner).map_err(|error| {
            unavailable(format!(
                "cannot open ward-runner at {}: {error}",
                self.config.runner.display()
            ))
        })?;
        let cgroup = match &self.config.sandbox {
            Some(sandbox) => Some(
                sandbox
                    .runtime
                    .process_cgroup(project, &format!("model@{short}"), plan.memory_max)
                    .map_err(|error| unavailable(format!("cannot confine its runner: {error}")))?,
            ),
            None => None,
        };
        // Opened here: between fork and exec the child only writes to them.
        let procs: Vec<std::fs::File> = match &cgroup {
            Some(cgroup) => cgroup
                .procs_files()
                .iter()
                .map(|path| std::fs::OpenOptions::new().write(true).open(path))
                .collect::<Result<_, _>>()
                .map_err(|error| unavailable(format!("cannot confine its runner: {error}")))?,
            None => Vec::new(),
        };
        let procs_fds: Vec<i32> = procs.iter().map(AsRawFd::as_raw_fd).collect();
        let confine = self.config.sandbox.is_some();
        let (model_fd, listener_fd, program_fd) =
            (model.as_raw_fd(), listener.as_raw_fd(), program.as_raw_fd());
        let mut command = Command::new("/proc/self/fd/5");
        command.arg0("ward-runner");
        command
            .args(["--model", "/proc/self/fd/3", "--listen-fd", "4"])
            .args(["--context", &self.config.context.to_string()])
            .args(["--slots", &self.config.slots.to_string()])
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .current_dir("/")
            .env_clear();
        // SAFETY: between fork and exec only async-signal-safe calls: write, unshare, fcntl,
        // dup2, setsid, setgroups, setgid, setuid and prctl.
        unsafe {
            command.pre_exec(move || {
                // Into its cgroup before anything else, so all it allocates is counted.
                for fd in &procs_fds {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // No network, no host IPC, its own host name: it needs only the socket it
                // is handed.
                if confine
                    && libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS)
                        != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Through high descriptors first, so neither lands on the other's target;
                // dup2 onto 3 and 4 leaves them open across exec.
                let model_high = libc::fcntl(model_fd, libc::F_DUPFD_CLOEXEC, 10);
                let listener_high = libc::fcntl(listener_fd, libc::F_DUPFD_CLOEXEC, 10);
                let program_high = libc::fcntl(program_fd, libc::F_DUPFD_CLOEXEC, 10);
                if model_high < 0
                    || listener_high < 0
                    || program_high < 0
                    || libc::dup2(model_high, 3) < 0
                    || libc::dup2(listener_high, 4) < 0
                    || libc::dup3(program_high, 5, libc::O_CLOEXEC) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::setsid();
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(RUNNER_UID) != 0
                    || libc::setuid(RUNNER_UID) != 0
                    || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = command.spawn();
        drop(procs);
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                if let Some(cgroup) = &cgroup {
                    cgroup.remove();
                }
                return Err(unavailable(format!("cannot start ward-runner: {error}")));
            }
        };
        drop(listener);
        drop(model);
        drop(program);
        // The runner answers `info` once its model is loaded.
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let info = loop {
            if let Ok(Some(status)) = child.try_wait() {
                let out_of_memory = cgroup
                    .as_ref()
                    .is_some_and(ward_runtime::ProcessCgroup::oom_killed);
                if let Some(cgroup) = &cgroup {
                    cgroup.remove();
                }
                return Err(unavailable(if out_of_memory {
                    format!(
                        "its runner ran out of memory while loading it (its cap is {})",
                        ward_spec::units::format_size(plan.memory_max)
                    )
                } else {
                    format!(
                        "its runner exited while loading it ({status}); the daemon log of ward-runner says why"
                    )
                }));
            }
            if let Some(info) = ask_info(&socket) {
                break info;
            }
            if Instant::now() >= deadline {
                let mut runner_child = child;
                let _ = runner_child.kill();
                let _ = runner_child.wait();
                if let Some(cgroup) = &cgroup {
                    cgroup.remove();
                }
                return Err(unavailable(format!(
                    "it did not load within {} s",
                    LOAD_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Runner {
            child,
            project: project.to_string(),
            name: name.to_string(),
            digest: digest.to_string(),
            cgroup,
            memory_max: plan.memory_max,
            socket,
            info,
            last_used: Instant::now(),
            keep_alive: self.config.keep_alive,
        })
    }

    fn mark(&self, key: &str, loaded: bool) {
        let mut set = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded {
            set.insert(key.to_string());
        } else {
            set.remove(key);
        }
    }

    fn unload_idle(&self) {
        let mut runners = self.lock();
        let serving: BTreeSet<String> = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|(_, count)| count.load(Ordering::SeqCst) > 0)
            .map(|(digest, _)| digest.clone())
            .collect();
        let mut idle = Vec::new();
        for (digest, runner) in runners.iter_mut() {
            if !matches!(runner.child.try_wait(), Ok(None)) {
                self.note_failure(&runner.name.clone(), runner);
                idle.push(digest.clone());
            } else if serving.contains(digest) {
                // A model keeps its runner while it serves, and for keep_alive after.
                runner.last_used = Instant::now();
            } else if runner.last_used.elapsed() >= runner.keep_alive {
                idle.push(digest.clone());
            }
        }
        for digest in idle {
            if let Some(mut runner) = runners.remove(&digest) {
                tracing::info!(digest, "model unloaded");
                stop(&mut runner);
            }
            self.mark(&digest, false);
        }
    }
}

/// Resident memory of process `pid`, from `/proc`; 0 if it cannot be read.
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}

/// The runner's `info` answer, once it gives one.
fn ask_info(socket: &std::path::Path) -> Option<ModelInfo> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut line = serde_json::to_vec(&Request::Info).ok()?;
    line.push(b'\n');
    stream.write_all(&line).ok()?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

fn stop(runner: &mut Runner) {
    let _ = runner.child.kill();
    let _ = runner.child.wait();
    let _ = std::fs::remove_file(&runner.socket);
    if let Some(cgroup) = &runner.cgroup {
        cgroup.remove();
    }
}

/// Where a runner's model is and what it may use.
struct Plan {
    file: PathBuf,
    memory_max: u64,
}

/// The memory cap of a runner of the model `header` describes, in a file of `size` bytes,
/// holding `context` tokens of KV cache: the weights, a tenth more, the cache (16-bit keys
/// and values), and room for the compute buffers.
fn memory_cap(header: &ward_model::gguf::Header, size: u64, context: u64) -> u64 {
    let number = |suffix: &str| {
        header
            .architecture_value(suffix)
            .and_then(ward_model::gguf::Value::as_u64)
    };
    let cache = match (
        header.embedding_length(),
        number("block_count"),
        number("embedding_length"),
        number("attention.head_count"),
    ) {
        // An embedding model keeps no cache.
        (Some(_), ..) => 0,
        (None, Some(layers), Some(embedding), Some(heads)) if heads > 0 => {
            let kv_heads = number("attention.head_count_kv").unwrap_or(heads);
            let kv_width = embedding / heads * kv_heads;
            2u64.saturating_mul(layers)
                .saturating_mul(context)
                .saturating_mul(kv_width)
                .saturating_mul(2)
        }
        _ => size,
    };
    size.saturating_add(size / 10)
        .saturating_add(cache)
        .saturating_add(512 << 20)
}

/// A short, path-safe tag of a project name for runner sockets.
fn project_hash(project: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(project.as_bytes());
    digest[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
