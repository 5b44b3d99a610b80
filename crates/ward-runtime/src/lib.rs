//! Running workload instances in isolation: OCI bundles, the OCI runtime (crun or runc),
//! the per-instance monitor that outlives the daemon, logs, networking and resource usage.
//!
//! The daemon calls [`Runtime`]; everything that touches namespaces, cgroups, the OCI
//! runtime binary or netfilter lives below this boundary.

mod driver;

pub use driver::*;
mod error;

pub use error::RuntimeError;
