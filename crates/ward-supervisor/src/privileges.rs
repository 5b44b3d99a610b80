//! What a workload spec may ask of the host, and who may ask it: host paths as volumes, the
//! host's network and the host's user ids are privileges; the daemon's own files are out of
//! reach for everyone.
//!
//! [`check_spec`] is called for every spec a caller creates or updates, before anything is
//! stored, with the caller's [`Principal`]; the runtime checks the protected paths again when it
//! mounts, so a path swapped for a link after the check gains nothing.

use std::path::{Path, PathBuf};

use ward_runtime::HostVolume;
use ward_spec::{NetworkMode, UserNamespace, WorkloadSpec};

use crate::access::{Capability, Principal};
use crate::SupervisorError;

/// The host's part of the privilege rules: paths no workload may mount, and host directories
/// the daemon's config opens to projects.
#[derive(Clone, Debug, Default)]
pub struct HostAccess {
    /// Refused as volume sources for everyone, with everything below them: the data dir, the
    /// run root, `/dev/shm`, `/proc`, `/sys`, and the daemon's key, certificate and config files.
    pub protected_paths: Vec<PathBuf>,
    /// Host directories open to the operators of the projects each one names.
    pub host_volumes: Vec<HostVolume>,
}

impl HostAccess {
    /// The protected path that `path` (canonical) is or lies inside, if any.
    pub fn protected_path_containing(&self, path: &Path) -> Option<&Path> {
        self.protected_paths
            .iter()
            .map(PathBuf::as_path)
            .find(|protected| path.starts_with(protected))
    }
}

/// Whether `principal` holds what every privileged field of `spec` needs in `project`.
pub fn check_spec(
    access: &HostAccess,
    principal: &Principal,
    project: &str,
    spec: &WorkloadSpec,
) -> Result<(), SupervisorError> {
    let every_project_admin = principal.is_every_project_admin();
    let forbidden = |message: String| SupervisorError::Forbidden { message };
    for (index, volume) in spec.volumes.iter().enumerate() {
        let field = format!("volumes[{index}]");
        if volume.is_named() {
            continue;
        }
        let source = Path::new(&volume.source);
        // The grant first, from the text alone: a caller without one learns nothing about the
        // host's files from the answer.
        let granted = access
            .host_volumes
            .iter()
            .find(|host_volume| host_volume.opens(project, source));
        if granted.is_none() && !principal.holds(Capability::HostPaths) {
            return Err(forbidden(format!(
                "{field}: mounting the host path {} needs the {} capability (`ward key create NAME --project {project} --role operator --capability {}`) or a key of every project with role admin; or use a named volume like data:{}, or ask the host's admin to list the directory under host_volumes in the daemon config",
                volume.source,
                Capability::HostPaths.as_str(),
                Capability::HostPaths.as_str(),
                volume.target
            )));
        }
        let canonical = source.canonicalize().map_err(|error| SupervisorError::Invalid {
            field: field.clone(),
            message: format!(
                "host path {} cannot be used: {error}; create it first, or use a named volume like data:{}",
                volume.source, volume.target
            ),
        })?;
        // Stored as written and resolved again at every start: a path through a link could
        // later lead elsewhere, so only the real path is taken.
        if canonical != source {
            return Err(SupervisorError::Invalid {
                field,
                message: format!(
                    "host path {} goes through a link or names . or ..: give the real path of the directory instead",
                    volume.source
                ),
            });
        }
        if let Some(protected) = access.protected_path_containing(&canonical) {
            return Err(SupervisorError::Invalid {
                field,
                message: format!(
                    "host path {} is inside {}, which belongs to Ward or the kernel: no workload may mount it; use a named volume like data:{}",
                    canonical.display(),
                    protected.display(),
                    volume.target
                ),
            });
        }
        if let Some(granted) = granted {
            if granted.read_only && !volume.read_only {
                return Err(SupervisorError::Invalid {
                    field,
                    message: format!(
                        "host directory {} is open to project {project} read-only: mount it with :ro",
                        granted.path.display()
                    ),
                });
            }
        }
    }
    if spec.network == NetworkMode::Host && !every_project_admin {
        return Err(forbidden(
            "network: host gives the workload the host's own network stack and every service on it; it needs a key of every project with role admin: use network: bridge and publish ports instead"
                .to_string(),
        ));
    }
    if spec.userns == UserNamespace::Host && !every_project_admin {
        return Err(forbidden(
            "userns: host makes root in the workload the host's root; it needs a key of every project with role admin: leave userns out (private)"
                .to_string(),
        ));
    }
    Ok(())
}
