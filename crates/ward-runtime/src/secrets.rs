//! Secrets handed to instances: values come from the daemon's [`SecretResolver`] when an
//! instance starts, and go into its environment or into read-only files kept in memory
//! (`/dev/shm/ward-<namespace>/<container id>/`, root only), so that their clear text never
//! reaches a disk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ward_spec::{VolumeMount, WorkloadSpec};

use crate::RuntimeError;

/// Opens a secret of a project; the daemon provides it (the values live in its database).
#[async_trait]
pub trait SecretResolver: Send + Sync + 'static {
    async fn reveal(&self, project: &str, name: &str) -> Result<Vec<u8>, String>;
}

/// Where the files of every instance's secrets live.
#[derive(Clone)]
pub(crate) struct SecretFiles {
    root: PathBuf,
    pub resolver: Arc<std::sync::RwLock<Option<Arc<dyn SecretResolver>>>>,
}

impl std::fmt::Debug for SecretFiles {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretFiles")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// The memory-backed directory every Linux host has.
const SHARED_MEMORY: &str = "/dev/shm";

impl SecretFiles {
    /// Secret files go to `/dev/shm/ward-<namespace>` when `/dev/shm` is a tmpfs, else (with
    /// a warning) to `fallback` on disk; either directory is root's alone.
    pub fn open(namespace: &str, fallback: PathBuf) -> Result<SecretFiles, RuntimeError> {
        let in_memory = Path::new(SHARED_MEMORY).join(format!("ward-{namespace}"));
        let root = if is_tmpfs(Path::new(SHARED_MEMORY)) {
            in_memory
        } else {
            tracing::warn!(fallback = %fallback.display(),
                "/dev/shm is not a tmpfs: secret files are kept on disk, readable by root only");
            fallback
        };
        Ok(SecretFiles {
            root,
            resolver: Arc::default(),
        })
    }

    fn dir(&self, container_id: &str) -> PathBuf {
        self.root.join(container_id)
    }

    /// `spec` with its secrets resolved: variables added to `env`, files written and added
    /// to `volumes` as read-only binds. Files of an earlier start are replaced.
    pub async fn apply(
        &self,
        project: &str,
        container_id: &str,
        spec: &WorkloadSpec,
    ) -> Result<WorkloadSpec, RuntimeError> {
        self.remove(container_id)?;
        let mut spec = spec.clone();
        if spec.secrets.is_empty() {
            return Ok(spec);
        }
        let resolver = self
            .resolver
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
            .ok_or_else(|| RuntimeError::Secret {
                workload: spec.name.clone(),
                message: "this daemon serves no secrets".to_string(),
            })?;
        private_directory(&self.root)?;
        let dir = self.dir(container_id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| RuntimeError::io("create", &dir, source))?;
        for secret in spec.secrets.clone() {
            let secret_error = |message: String| RuntimeError::Secret {
                workload: spec.name.clone(),
                message,
            };
            let value = resolver
                .reveal(project, &secret.name)
                .await
                .map_err(secret_error)?;
            if let Some(variable) = &secret.env {
                let text = String::from_utf8(value.clone()).map_err(|_| {
                    secret_error(format!(
                        "secret {} is not UTF-8 text and cannot be the variable {variable}; give it a file instead",
                        secret.name
                    ))
                })?;
                spec.env.insert(variable.clone(), text);
            }
            if let Some(target) = &secret.file {
                let path = dir.join(&secret.name);
                write_private(&path, &value)?;
                spec.volumes.push(VolumeMount {
                    source: path.display().to_string(),
                    target: target.clone(),
                    read_only: true,
                });
            }
        }
        Ok(spec)
    }

    /// Deletes the secret files of an instance; nothing to do is fine.
    pub fn remove(&self, container_id: &str) -> Result<(), RuntimeError> {
        let dir = self.dir(container_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::io("remove", &dir, source)),
        }
    }

    /// Removes the directory of every instance's secrets when no instance has any left, so
    /// that a data directory that is gone leaves nothing in `/dev/shm`; it comes back with
    /// the next instance that needs it.
    pub fn remove_root_if_empty(&self) {
        let _ = fs::remove_dir(&self.root);
    }
}

/// Writes `value` to a new file readable by its owner only.
fn write_private(path: &Path, value: &[u8]) -> Result<(), RuntimeError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(|source| RuntimeError::io("create", path, source))?;
    file.write_all(value)
        .map_err(|source| RuntimeError::io("write", path, source))
}

/// Creates `path` as a directory of mode 0700, or checks that the one there is a directory
/// (not a link) that only this user can enter: `/dev/shm` is writable by everyone.
fn private_directory(path: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(RuntimeError::io("create", path, source)),
    }
    let metadata =
        fs::symlink_metadata(path).map_err(|source| RuntimeError::io("inspect", path, source))?;
    let private = metadata.is_dir()
        && metadata.uid() == nix::unistd::geteuid().as_raw()
        && metadata.permissions().mode() & 0o077 == 0;
    if private {
        Ok(())
    } else {
        Err(RuntimeError::io(
            "trust",
            path,
            std::io::Error::other(
                "it is not a directory of mode 0700 owned by this user; remove it",
            ),
        ))
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|stats| stats.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}
