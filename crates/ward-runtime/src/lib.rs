//! Running workload instances in isolation: OCI bundles, the OCI runtime (crun or runc),
//! the per-instance monitor that outlives the daemon, logs, networking and resource usage.
//!
//! The daemon calls [`Runtime`]; everything that touches namespaces, cgroups, the OCI
//! runtime binary or netfilter lives below this boundary. The `ward` binary must hand
//! `ward monitor …` to [`monitor::run_from_command_line`] before it builds any async runtime.

mod bundle;
mod cgroup;
mod driver;
mod error;
mod exec;
mod host;
pub mod hosts;
mod idmap;
mod idmount;
mod image;
mod instance;
mod kinds;
mod launcher;
pub mod logs;
pub mod monitor;
pub mod network;
mod oci;
mod pidfd;
mod probe;
mod runtime;
mod seccomp;
mod secrets;
mod terminal;

pub use bundle::HostVolume;
pub use cgroup::ProcessCgroup;
pub use driver::*;
pub use error::RuntimeError;
pub use host::{make_this_thread_idle, CgroupMode};
pub use idmap::IdRange;
pub use image::ImageResolver;
pub use oci::OciRuntimeKind;
pub use runtime::{Runtime, RuntimeConfig, RuntimeInfo, DEFAULT_PIDS_LIMIT};
pub use secrets::SecretResolver;
pub use ward_core::session::Signal;
