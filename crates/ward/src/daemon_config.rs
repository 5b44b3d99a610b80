//! The daemon's configuration: one struct, layered defaults → file → environment → flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use ward_api::RateLimit;
use ward_runtime::HostVolume;

use crate::config::{resolve_data_dir, Environment};

/// Everything `ward serve` needs to know before it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The OCI runtime binary; `None` picks crun, then runc, from `PATH`.
    pub oci_runtime: Option<PathBuf>,
    /// `tracing` filter, like `info` or `ward=debug`.
    pub log_filter: String,
    /// Registries (`host:port`) pulled from over plain HTTP: an explicit opt-in.
    pub insecure_registries: Vec<String>,
    /// The key that seals secrets: kept apart from the database (default
    /// `DATA_DIR/secrets.key`; put it on another disk to keep the two apart physically).
    pub secrets_key_file: PathBuf,
    /// Calls per second and burst allowed to each API key (not to the admin token).
    pub rate_limit: RateLimit,
    /// HTTPS, when asked for.
    pub tls: Option<TlsSource>,
    /// The pids limit of workloads whose spec sets none; `None` (config `0`): unlimited.
    pub default_pids_limit: Option<u64>,
    /// Host directories opened to projects (`host_volumes` in the config file).
    pub host_volumes: Vec<HostVolume>,
    /// How models run.
    pub models: ModelSettings,
    /// How workloads' metrics are sampled and kept.
    pub metrics: MetricSettings,
    /// Alert rules and where their notifications go.
    pub alerts: ward_alert::AlertSettings,
    /// The config file itself, which no workload may mount.
    pub config_file: Option<PathBuf>,
}

/// Where the daemon's TLS certificate comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generated once into `DATA_DIR/tls`.
    SelfSigned,
}

/// The config file (`--config FILE`, YAML); every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    oci_runtime: Option<PathBuf>,
    log: Option<String>,
    insecure_registries: Option<Vec<String>>,
    secrets_key_file: Option<PathBuf>,
    rate_limit: Option<RateLimitFile>,
    tls: Option<TlsFile>,
    default_pids_limit: Option<u64>,
    host_volumes: Option<BTreeMap<String, HostVolumeFile>>,
    models: Option<ModelsFile>,
    metrics: Option<MetricsFile>,
    alerts: Option<ward_alert::AlertsFile>,
}

/// `metrics: {interval: 5s, retention: 2d, max_series: 100000}`: every running instance's
/// CPU, memory and processes are sampled each interval, kept for the retention in
/// `DATA_DIR/metrics`, and watched for anomalies.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSettings {
    pub interval: std::time::Duration,
    pub retention: std::time::Duration,
    pub max_series: usize,
    /// A Prometheus remote-write endpoint every sample is also sent to.
    pub remote_write: Option<String>,
    /// How long one-minute and one-hour buckets are kept once raw samples pass `retention`
    /// (zero: not kept).
    pub retention_1m: std::time::Duration,
    pub retention_1h: std::time::Duration,
}

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings {
            interval: std::time::Duration::from_secs(5),
            retention: std::time::Duration::from_secs(2 * 86_400),
            max_series: 100_000,
            remote_write: None,
            retention_1m: std::time::Duration::from_secs(30 * 86_400),
            retention_1h: std::time::Duration::from_secs(365 * 86_400),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    interval: Option<String>,
    retention: Option<String>,
    max_series: Option<usize>,
    remote_write: Option<String>,
    retention_1m: Option<String>,
    retention_1h: Option<String>,
}

/// How models run: `models: {slots: 4, context: 4096, queue: 32, max_loaded: 3,
/// max_memory: 16GiB, keep_alive: 5m}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    /// Requests each loaded model decodes together.
    pub slots: u32,
    /// Tokens of context per slot.
    pub context: u32,
    /// Requests that may wait for a slot of one model; past that, 429.
    pub queue: u32,
    /// Models loaded at once; the least recently used one goes first.
    pub max_loaded: u32,
    /// What all loaded models together may be capped at (each runner's cap: its file, a
    /// tenth more, its KV cache, and room to compute); `None`: no cap beyond `max_loaded`.
    pub max_memory: Option<u64>,
    /// Where `hf://` pulls go: Hugging Face, or a mirror (as `HF_ENDPOINT` says to its tools).
    pub hf_endpoint: Option<String>,
    /// A loaded model with no request for this long is unloaded.
    pub keep_alive: std::time::Duration,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            slots: 4,
            context: 4096,
            queue: 32,
            max_loaded: 3,
            max_memory: None,
            hf_endpoint: None,
            keep_alive: std::time::Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    slots: Option<u32>,
    context: Option<u32>,
    queue: Option<u32>,
    max_loaded: Option<u32>,
    max_memory: Option<String>,
    hf_endpoint: Option<String>,
    keep_alive: Option<String>,
}

/// `host_volumes: {site: {path: /srv/site, read_only: true, projects: [web]}}`: as Nomad's
/// `host_volume`, a host directory that the named projects' operators may mount (by name or by
/// a path inside it); `projects` left out: every project.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostVolumeFile {
    path: PathBuf,
    #[serde(default)]
    read_only: bool,
    projects: Option<Vec<String>>,
}

/// `tls: {cert: PATH, key: PATH}`, or `tls: {self_signed: true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    self_signed: bool,
}

/// `rate_limit: {per_second: 100, burst: 200}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    per_second: f64,
    burst: f64,
}

/// The layers above the defaults, as the caller found them.
#[derive(Debug)]
pub struct ConfigSources<'a> {
    pub file: Option<&'a Path>,
    pub environment: &'a Environment,
    pub flag_data_dir: Option<PathBuf>,
    pub flag_listen: Option<String>,
    pub flag_tls: bool,
}

impl DaemonConfig {
    pub fn resolve(sources: ConfigSources<'_>) -> anyhow::Result<DaemonConfig> {
        let environment = sources.environment;
        let file = match sources.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                serde_norway::from_str::<Option<ConfigFile>>(&text)
                    .with_context(|| {
                        format!(
                            "config file {}: fix the YAML or the key names",
                            path.display()
                        )
                    })?
                    .unwrap_or_default()
            }
            None => ConfigFile::default(),
        };
        // The client resolves the data dir the same way, so both find ward.addr and admin.token.
        let data_dir = match (
            &sources.flag_data_dir,
            environment.variable("WARD_DATA_DIR"),
            file.data_dir,
        ) {
            (None, None, Some(from_file)) => from_file,
            _ => resolve_data_dir(sources.flag_data_dir.as_deref(), environment)?,
        };
        let listen_text = sources
            .flag_listen
            .or_else(|| environment.variable("WARD_LISTEN").map(str::to_string))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7380".to_string());
        let listen: SocketAddr = match listen_text.parse() {
            Ok(address) => address,
            Err(_) => bail!("listen address {listen_text:?} is not HOST:PORT with an IP host, like 127.0.0.1:7380"),
        };
        let log_filter = environment
            .variable("WARD_LOG")
            .map(str::to_string)
            .or(file.log)
            .unwrap_or_else(|| "info".to_string());
        let secrets_key_file = file
            .secrets_key_file
            .unwrap_or_else(|| data_dir.join("secrets.key"));
        let rate_limit = match file.rate_limit {
            Some(limit) if limit.per_second > 0.0 && limit.burst >= 1.0 => RateLimit {
                per_second: limit.per_second,
                burst: limit.burst,
            },
            Some(_) => bail!(
                "rate_limit: per_second must be above 0 and burst at least 1, like {{per_second: 100, burst: 200}}"
            ),
            None => RateLimit::default(),
        };
        let tls = match (file.tls, sources.flag_tls) {
            (
                Some(TlsFile {
                    cert: Some(cert),
                    key: Some(key),
                    self_signed: false,
                }),
                _,
            ) => Some(TlsSource::Files { cert, key }),
            (
                Some(TlsFile {
                    cert: None,
                    key: None,
                    self_signed: true,
                }),
                _,
            )
            | (None, true) => Some(TlsSource::SelfSigned),
            (None, false) => None,
            (Some(_), _) => {
                bail!("tls: give both cert and key (PEM files), or self_signed: true, not both")
            }
        };
        let default_pids_limit = match file.default_pids_limit {
            Some(0) => None,
            Some(limit) => Some(limit),
            None => Some(ward_runtime::DEFAULT_PIDS_LIMIT),
        };
        let mut host_volumes = Vec::new();
        for (name, volume) in file.host_volumes.unwrap_or_default() {
            if let Err(reason) = ward_spec::validate_name(&name) {
                bail!("host_volumes: {name:?}: {reason}");
            }
            let path = volume.path.canonicalize().with_context(|| {
                format!(
                    "host_volumes.{name}.path: {} must be an existing host directory",
                    volume.path.display()
                )
            })?;
            if let Some(projects) = &volume.projects {
                for project in projects {
                    if let Err(reason) = ward_spec::validate_name(project) {
                        bail!("host_volumes.{name}.projects: {project:?}: {reason}");
                    }
                }
            }
            host_volumes.push(HostVolume {
                name,
                path,
                read_only: volume.read_only,
                projects: volume.projects,
            });
        }
        let mut models = ModelSettings::default();
        if let Some(file) = file.models {
            let positive = |key: &str, value: Option<u32>, default: u32| match value {
                Some(0) => bail!("models.{key}: give a whole number above 0"),
                Some(value) => Ok(value),
                None => Ok(default),
            };
            models.slots = positive("slots", file.slots, models.slots)?.min(64);
            models.context = positive("context", file.context, models.context)?;
            models.queue = file.queue.unwrap_or(models.queue);
            models.max_loaded = positive("max_loaded", file.max_loaded, models.max_loaded)?;
            if let Some(endpoint) = file.hf_endpoint {
                if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                    bail!("models.hf_endpoint: {endpoint:?} is not a URL; give one like https://huggingface.co");
                }
                models.hf_endpoint = Some(endpoint);
            }
            if let Some(text) = file.max_memory {
                models.max_memory = Some(ward_spec::units::parse_size(&text).map_err(|error| {
                    anyhow::anyhow!("models.max_memory: {text:?}: {error}; give a size like 16GiB")
                })?);
            }
            if let Some(text) = file.keep_alive {
                models.keep_alive = humantime::parse_duration(&text).map_err(|error| {
                    anyhow::anyhow!("models.keep_alive: {text:?}: {error}; give a duration like 5m")
                })?;
            }
        }
        let mut metrics = MetricSettings::default();
        if let Some(file) = file.metrics {
            if let Some(text) = file.interval {
                let interval = humantime::parse_duration(&text).map_err(|error| {
                    anyhow::anyhow!("metrics.interval: {text:?}: {error}; give a duration like 5s")
                })?;
                if !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(60))
                    .contains(&interval)
                {
                    bail!("metrics.interval: {text:?} is out of range; give 100ms to 60s, like 5s");
                }
                metrics.interval = interval;
            }
            if let Some(text) = file.retention {
                metrics.retention = humantime::parse_duration(&text).map_err(|error| {
                    anyhow::anyhow!("metrics.retention: {text:?}: {error}; give a duration like 2d")
                })?;
            }
            if let Some(max_series) = file.max_series {
                if max_series == 0 {
                    bail!("metrics.max_series: give a whole number above 0");
                }
                metrics.max_series = max_series;
            }
            for (field, text, kept) in [
                ("retention_1m", file.retention_1m, &mut metrics.retention_1m),
                ("retention_1h", file.retention_1h, &mut metrics.retention_1h),
            ] {
                if let Some(text) = text {
                    *kept = humantime::parse_duration(&text).map_err(|error| {
                        anyhow::anyhow!("metrics.{field}: {text:?}: {error}; give a duration like 30d, or 0s for none")
                    })?;
                }
            }
            if let Some(url) = file.remote_write {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("metrics.remote_write: {url:?} is not a URL; give one like http://127.0.0.1:9090/api/v1/write");
                }
                metrics.remote_write = Some(url);
            }
        }
        let alerts = file
            .alerts
            .unwrap_or_default()
            .settings(metrics.interval)
            .map_err(|message| anyhow::anyhow!(message))?;
        Ok(DaemonConfig {
            alerts,
            metrics,
            models,
            default_pids_limit,
            host_volumes,
            config_file: sources.file.map(Path::to_path_buf),
            tls,
            rate_limit,
            secrets_key_file,
            data_dir,
            listen,
            oci_runtime: file.oci_runtime,
            log_filter,
            insecure_registries: file.insecure_registries.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Environment {
        Environment {
            variables: pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            is_root: false,
        }
    }

    fn sources(environment: &Environment) -> ConfigSources<'_> {
        ConfigSources {
            file: None,
            environment,
            flag_data_dir: None,
            flag_listen: None,
            flag_tls: false,
        }
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("ward.yaml");
        std::fs::write(&file, "data_dir: /from/file\nlisten: 127.0.0.1:1\n").unwrap();
        let env = environment(&[("WARD_LISTEN", "127.0.0.1:2")]);
        let config = DaemonConfig::resolve(ConfigSources {
            file: Some(&file),
            environment: &env,
            flag_data_dir: None,
            flag_listen: None,
            flag_tls: false,
        })
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:2");
        let config = DaemonConfig::resolve(ConfigSources {
            file: Some(&file),
            environment: &env,
            flag_data_dir: Some("/from/flag".into()),
            flag_listen: Some("127.0.0.1:3".into()),
            flag_tls: false,
        })
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:3");
    }

    #[test]
    fn model_settings_come_from_the_file_and_bad_ones_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("ward.yaml");
        let env = environment(&[("WARD_DATA_DIR", "/d")]);
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            DaemonConfig::resolve(ConfigSources {
                file: Some(&file),
                ..sources(&env)
            })
        };
        let config = resolve("models: {slots: 2, queue: 0, keep_alive: 30s}\n").unwrap();
        assert_eq!(config.models.slots, 2);
        assert_eq!(config.models.queue, 0);
        assert_eq!(config.models.keep_alive, std::time::Duration::from_secs(30));
        assert_eq!(config.models.context, ModelSettings::default().context);
        for (text, field) in [
            ("models: {slots: 0}\n", "models.slots"),
            ("models: {keep_alive: soon}\n", "models.keep_alive"),
            ("models: {threads: 2}\n", "threads"),
        ] {
            let error = resolve(text).unwrap_err();
            assert!(format!("{error:#}").contains(field), "{text}: {error:#}");
        }
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let env = environment(&[("WARD_DATA_DIR", "/d")]);
        let config = DaemonConfig::resolve(sources(&env)).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7380");
        assert_eq!(config.data_dir, PathBuf::from("/d"));
    }

    #[test]
    fn host_volumes_and_the_pids_limit_come_from_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let site = directory.path().join("site");
        std::fs::create_dir(&site).unwrap();
        let file = directory.path().join("ward.yaml");
        std::fs::write(
            &file,
            format!(
                "data_dir: /d\ndefault_pids_limit: 0\nhost_volumes:\n  site: {{path: {}, read_only: true, projects: [web]}}\n",
                site.display()
            ),
        )
        .unwrap();
        let env = environment(&[]);
        let config = DaemonConfig::resolve(ConfigSources {
            file: Some(&file),
            ..sources(&env)
        })
        .unwrap();
        assert_eq!(config.default_pids_limit, None);
        assert_eq!(
            config.host_volumes,
            [HostVolume {
                name: "site".into(),
                path: site.canonicalize().unwrap(),
                read_only: true,
                projects: Some(vec!["web".into()]),
            }]
        );
        let defaults =
            DaemonConfig::resolve(sources(&environment(&[("WARD_DATA_DIR", "/d")]))).unwrap();
        assert_eq!(defaults.default_pids_limit, Some(2048));

        std::fs::write(
            &file,
            "data_dir: /d\nhost_volumes:\n  gone: {path: /no/such/dir/for/ward}\n",
        )
        .unwrap();
        let error = DaemonConfig::resolve(ConfigSources {
            file: Some(&file),
            ..sources(&env)
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("host_volumes.gone.path"),
            "{error:#}"
        );
    }

    #[test]
    fn bad_listen_address_is_refused() {
        let env = environment(&[("WARD_DATA_DIR", "/d")]);
        let error = DaemonConfig::resolve(ConfigSources {
            flag_listen: Some("localhost".into()),
            flag_tls: false,
            ..sources(&env)
        })
        .unwrap_err();
        assert!(error.to_string().contains("127.0.0.1:7380"), "{error}");
    }
}
