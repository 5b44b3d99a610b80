//! The validated workload spec types.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A validated, normalised workload spec.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    pub name: String,
    pub kind: WorkloadKind,
    /// Container images are normalised Docker-style (`docker.io/library/nginx:1.27`);
    /// for `vm` and `wasm` this is a path or URL, kept as given.
    pub image: Option<String>,
    /// `None` means "the image's default" (containers); processes always have one.
    pub command: Option<Vec<String>>,
    /// A container's program in place of its image's Entrypoint (which also drops the image's
    /// Cmd, as Docker does); `command` then gives its arguments. Empty: no entrypoint at all.
    pub entrypoint: Option<Vec<String>>,
    /// The first process runs on a terminal (`docker run -t`), which `ward attach` (and
    /// `ward run -it`) connects to; its output is logged as stdout.
    pub tty: bool,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub ports: Vec<PortMapping>,
    /// Publish every port the image exposes (`ExposedPorts`) that `ports` does not, each on a
    /// free host port chosen when the instance starts (`docker run -P`).
    pub publish_all: bool,
    pub volumes: Vec<VolumeMount>,
    /// Secrets of the workload's project handed to it as files or environment variables.
    pub secrets: Vec<SecretMount>,
    pub network: NetworkMode,
    /// Whose user ids the workload runs with: a range of its project's own (the default), or
    /// the host's (an admin's choice, like Docker's `--userns=host`).
    pub userns: UserNamespace,
    pub restart: RestartPolicy,
    pub health: Option<HealthCheck>,
    pub replicas: u32,
    pub autoscale: Option<Autoscale>,
    /// What Ward may do on its own when the workload runs out of memory or crashes in a loop.
    pub heal: Heal,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Process,
    Container,
    Vm,
    Wasm,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Process => "process",
            WorkloadKind::Container => "container",
            WorkloadKind::Vm => "vm",
            WorkloadKind::Wasm => "wasm",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    /// Cores (`1.5`; `"500m"` parses to `0.5`).
    pub cpu: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub gpu: Option<u32>,
    /// Bytes.
    pub disk: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// `0` ([`crate::units::FREE_HOST_PORT`]): a free port, chosen when the instance starts.
    pub host: u16,
    pub port: u16,
    pub protocol: Protocol,
    /// The one host address the port is published on (`127.0.0.1:8080:80`); `None`: every
    /// address of the host.
    pub host_ip: Option<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Where a secret's value goes: a read-only file (by default `/run/secrets/<name>`, as
/// Docker and Compose put them), an environment variable, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMount {
    pub name: String,
    pub env: Option<String>,
    pub file: Option<String>,
}

/// The directory secrets go to when the spec names no file.
pub const SECRETS_DIR: &str = "/run/secrets";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    /// A named volume (`data`, kept under the data dir) or an absolute host path.
    pub source: String,
    /// Absolute path inside the workload.
    pub target: String,
    pub read_only: bool,
}

impl VolumeMount {
    /// Named volumes have no `/`; bind mounts are absolute host paths.
    pub fn is_named(&self) -> bool {
        !self.source.starts_with('/')
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// Own network namespace on Ward's bridge; published ports are forwarded.
    Bridge,
    /// The host's network namespace.
    Host,
    /// Own network namespace with loopback only.
    None,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

/// The user namespace of a workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserNamespace {
    /// Its own user namespace: root in the workload is an unprivileged user id of the host,
    /// from a range its project alone uses.
    #[default]
    Private,
    /// The host's user ids: root in the workload is the host's root.
    Host,
}

impl UserNamespace {
    pub fn as_str(self) -> &'static str {
        match self {
            UserNamespace::Private => "private",
            UserNamespace::Host => "host",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    pub policy: RestartMode,
    /// Only meaningful for `on-failure`; `None` means unlimited.
    pub max_retries: Option<u32>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            policy: RestartMode::OnFailure,
            max_retries: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartMode {
    Never,
    OnFailure,
    Always,
}

impl RestartMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::Never => "never",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the instance is restarted.
    pub retries: u32,
    /// How long after a start failures do not count (until the first success), for programs
    /// that take a while to come up; zero by default.
    pub start_period: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthProbe {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Exec { command: Vec<String> },
}

/// The self-healing policy of a workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heal {
    pub policy: HealPolicy,
    /// The most memory Ward may raise `resources.memory` to; `None`: it raises nothing.
    pub memory_max: Option<u64>,
}

/// How far the healer goes: nothing, say what it would do, or do it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HealPolicy {
    /// No diagnosis, no suggestion, no action: restarts follow `restart` alone.
    Off,
    /// Diagnoses and suggests (events), stops crash loops, changes no spec.
    #[default]
    Suggest,
    /// Also applies the fix (a raised memory limit) within the spec's bounds and the quota.
    Auto,
}

impl HealPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            HealPolicy::Off => "off",
            HealPolicy::Suggest => "suggest",
            HealPolicy::Auto => "auto",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Autoscale {
    pub min: u32,
    pub max: u32,
    /// Target CPU percent of the requested cores.
    pub cpu_percent: f64,
}
