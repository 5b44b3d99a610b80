//! `ward serve`: assemble the daemon — data dir, state, runtime, supervisor, API — and run it
//! until SIGTERM or SIGINT.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use ward_api::{ApiKey, ApiState, Metrics, RateLimit, RateLimiter};
use ward_runtime::{Runtime, RuntimeConfig};
use ward_store::Store;
use ward_supervisor::model_transfer::ModelTransfers;
use ward_supervisor::{
    AccessService, CredentialStore, HostAccess, ImageService, Inference, InferenceConfig,
    MetricsConfig, ModelService, SecretService, Supervisor, SupervisorConfig, UserService,
};

use crate::cli::ServeArgs;
use crate::config::Environment;
use crate::daemon_config::{ConfigSources, DaemonConfig, TlsSource};

/// Replaces this process (`ward serve ...`) with `wardd serve ...` from the same directory,
/// keeping the PID, arguments and environment. Returns, after saying why, only if `wardd`
/// cannot be started; the caller then runs the daemon itself.
pub fn hand_over_to_wardd() {
    use std::os::unix::process::CommandExt;
    let Some(wardd) = sibling_executable("wardd") else {
        eprintln!("ward: wardd is not installed beside ward; the daemon runs in ward itself, without address-space layout randomisation of its program");
        return;
    };
    let error = std::process::Command::new(&wardd)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "ward: cannot start {}: {error}; the daemon runs in ward itself",
        wardd.display()
    );
}

/// The executable the daemon starts monitors from: `ward-monitor` beside this program, the
/// monitor alone linked position-independent; else this program, `wardd`, which is
/// position-independent too. Never the fixed-address `ward`: a monitor runs as root for the
/// life of its instance and reads what the workload writes.
fn monitor_executable() -> anyhow::Result<PathBuf> {
    if let Some(monitor) = sibling_executable("ward-monitor") {
        return Ok(monitor);
    }
    std::env::current_exe().context("cannot find the ward executable")
}

/// The executable file `name` in this program's own directory, if there is one.
fn sibling_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.with_file_name(name);
    let metadata = std::fs::metadata(&path).ok()?;
    (metadata.is_file() && metadata.permissions().mode() & 0o111 != 0).then_some(path)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let environment = Environment::current();
    let config = DaemonConfig::resolve(ConfigSources {
        file: args.config.as_deref(),
        environment: &environment,
        flag_data_dir: args.data_dir.clone(),
        flag_listen: args.listen.clone(),
        flag_tls: args.tls,
    })?;
    init_logging(&config.log_filter);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    set_mode(&config.data_dir, 0o700)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let admin_key = ensure_admin_token(&config.data_dir)?;

    // One connection, shared: every write is serial, and a change and its audit entry
    // commit in one transaction.
    let store = Arc::new(Store::open(&config.data_dir.join("ward.db"))?);
    // The daemon's own files outside the data dir: no workload may mount or read them.
    let mut daemon_files = vec![config.secrets_key_file.clone()];
    daemon_files.extend(config.config_file.clone());
    if let Some(TlsSource::Files { cert, key }) = &config.tls {
        daemon_files.extend([cert.clone(), key.clone()]);
    }
    let runtime = Runtime::new(RuntimeConfig {
        data_dir: config.data_dir.clone(),
        ward_executable: monitor_executable()?,
        oci_runtime: config.oci_runtime.clone(),
        host_volumes: config.host_volumes.clone(),
        protected_paths: daemon_files,
        default_pids_limit: config.default_pids_limit,
    })?;
    let images = ImageService::new(
        store.clone(),
        runtime.layer_store(),
        CredentialStore::open_at(config.data_dir.join("registries.json")),
        config.insecure_registries.clone(),
    );
    runtime.set_image_resolver(Arc::new(images.clone()));
    let secrets = Arc::new(SecretService::open(
        store.clone(),
        &config.secrets_key_file,
    )?);
    runtime.set_secret_resolver(secrets.clone());
    let upload_dir = config.data_dir.join("images").join("uploads");
    std::fs::create_dir_all(&upload_dir)
        .with_context(|| format!("cannot create {}", upload_dir.display()))?;
    let supervisor = Supervisor::start(
        store.clone(),
        Arc::new(runtime.clone()),
        SupervisorConfig {
            host_access: HostAccess {
                protected_paths: runtime.protected_paths(),
                host_volumes: config.host_volumes.clone(),
            },
            sample_interval: config.metrics.interval,
            metrics: Some(MetricsConfig {
                dir: config.data_dir.join("metrics"),
                store: ward_tsdb::Options {
                    max_series: config.metrics.max_series,
                    retention_ms: config.metrics.retention.as_millis().min(i64::MAX as u128) as i64,
                    tiers: {
                        let [minutes, hours] = ward_tsdb::Options::default().tiers;
                        let millis = |kept: std::time::Duration| {
                            kept.as_millis().min(i64::MAX as u128) as i64
                        };
                        [
                            ward_tsdb::Tier {
                                retention_ms: millis(config.metrics.retention_1m),
                                ..minutes
                            },
                            ward_tsdb::Tier {
                                retention_ms: millis(config.metrics.retention_1h),
                                ..hours
                            },
                        ]
                    },
                    ..ward_tsdb::Options::default()
                },
                remote_write: config.metrics.remote_write.clone(),
            }),
            ..SupervisorConfig::default()
        },
    )
    .await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pick another address with --listen",
                config.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let tls = match &config.tls {
        None => None,
        Some(source) => {
            let (cert, key) = match source {
                TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
                TlsSource::SelfSigned => {
                    let host_name = nix::unistd::gethostname()
                        .ok()
                        .and_then(|name| name.into_string().ok())
                        .into_iter()
                        .collect::<Vec<_>>();
                    ward_api::tls::ensure_self_signed(&config.data_dir.join("tls"), &host_name)?
                }
            };
            Some(ward_api::tls::server_config(&cert, &key)?)
        }
    };
    // With TLS the address file names the scheme too, so local clients speak HTTPS.
    let address_line = match tls {
        Some(_) => format!("https://{bound}\n"),
        None => format!("{bound}\n"),
    };
    write_atomically(
        &config.data_dir.join("ward.addr"),
        address_line.as_bytes(),
        0o644,
    )?;
    tracing::info!(address = %bound, data_dir = %config.data_dir.display(), "ward is serving");

    let models = ModelService::open(store.clone(), &config.data_dir)?;
    let transfers = ModelTransfers::new(
        models.clone(),
        images.clone(),
        &config.data_dir,
        config.models.hf_endpoint.clone(),
    )?;
    let workloads: Arc<dyn ward_core::services::Workloads> = Arc::new(supervisor.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let alerts = ward_alert::AlertManager::open(
        config.alerts.clone(),
        workloads.clone(),
        config.data_dir.join("alerts"),
        format!("{scheme}://{bound}"),
    )
    .context("cannot open the alert manager's directory")?;
    let alert_manager = tokio::spawn(alerts.clone().run());
    let state = Arc::new(ApiState {
        alerts,
        workloads,
        door: Arc::new(supervisor.gate().clone()),
        images: Arc::new(images),
        models: Arc::new(models.clone()),
        model_transfers: Arc::new(transfers),
        inference: Arc::new(Inference::new(
            models,
            InferenceConfig {
                runner: runner_executable(),
                run_dir: config.data_dir.join("models").join("run"),
                keep_alive: config.models.keep_alive,
                slots: config.models.slots,
                context: config.models.context,
                queue: config.models.queue,
                max_loaded: config.models.max_loaded,
                max_memory: config.models.max_memory,
                sandbox: Some(ward_supervisor::inference::Sandbox {
                    runtime: runtime.clone(),
                    supervisor: supervisor.clone(),
                }),
            },
        )?),
        upload_dir,
        admin_key,
        secrets,
        access: Arc::new(AccessService::new(store.clone())),
        metrics: Arc::new(Metrics::default()),
        rate_limiter: RateLimiter::new(config.rate_limit),
        users: Arc::new(UserService::open(
            store.clone(),
            &config.data_dir.join("session.key"),
        )?),
        login_limiter: RateLimiter::new(RateLimit::LOGIN),
        secure_cookies: tls.is_some(),
    });
    // The healer acts through the same door as every caller, as the agent `healer`; it
    // checks memory forecasts every two samples (at least each second).
    let healer = ward_heal::Healer::new(
        state.door.clone(),
        state.workloads.clone(),
        ward_heal::HealerConfig {
            check_every: (config.metrics.interval * 2).max(std::time::Duration::from_secs(1)),
            ..Default::default()
        },
    );
    let healer = tokio::spawn(healer.run());
    match tls {
        Some(tls) => ward_api::serve_tls(listener, tls, state, shutdown_signal()).await,
        None => ward_api::serve(listener, state, shutdown_signal()).await,
    }
    .context("the API server failed")?;

    healer.abort();
    alert_manager.abort();
    supervisor.shutdown();
    supervisor.flush().await;
    runtime.release_idle();
    let _ = std::fs::remove_file(config.data_dir.join("ward.addr"));
    tracing::info!("ward stopped; workloads keep running and the next daemon re-attaches to them");
    Ok(())
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Takes an exclusive lock on the data dir for the daemon's lifetime: two daemons on one
/// data dir would fight over every workload.
/// How long a start waits for the data dir's lock to be released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("ward.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // A daemon killed a moment ago holds the lock until the kernel has torn it down (a few
    // to tens of milliseconds after the kill): wait that long, not more.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a valid, open file descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "another ward daemon is using {}: stop it first or pick another --data-dir",
                data_dir.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Reads the admin key, creating it (mode 0600) on first start.
fn ensure_admin_token(data_dir: &Path) -> anyhow::Result<ApiKey> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(ApiKey::new(text.trim().to_string())),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes: [u8; 32] = rand::random();
    let key: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    write_atomically(&path, format!("{key}\n").as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), "created the admin API key");
    Ok(ApiKey::new(key))
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    set_mode(&temporary, mode)?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", path.display()))
}

/// `ward-runner`, beside this program (`WARD_RUNNER` names another).
fn runner_executable() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("WARD_RUNNER") {
        return path.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("ward-runner")))
        .unwrap_or_else(|| "ward-runner".into())
}
