//! Secrets handed to instances: values come from the daemon's [`SecretResolver`] when an
//! instance starts, and go into its environment or into read-only files under the run root
//! (`/dev/shm/ward-<namespace>/secrets/<container id>/`, root only; see `host::RunRoot`), so
//! that their clear text never reaches a disk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ward_spec::{VolumeMount, WorkloadSpec};

use crate::host::private_directory;
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

impl SecretFiles {
    /// Secret files go to `root`, a directory of the run root.
    pub fn open(root: PathBuf) -> SecretFiles {
        SecretFiles {
            root,
            resolver: Arc::default(),
        }
    }

    /// Where the files of `container_id`'s secrets go.
    pub fn dir(&self, container_id: &str) -> PathBuf {
        self.root.join(container_id)
    }

    /// `spec` with its secrets resolved: variables added to `env`, files written and added
    /// to `volumes` as read-only binds. Files of an earlier start are replaced. With `owner`
    /// (the instance's root in host ids), the files are its, so its own root can read them.
    pub async fn apply(
        &self,
        project: &str,
        container_id: &str,
        spec: &WorkloadSpec,
        owner: Option<(u32, u32)>,
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
        give_to(&dir, owner)?;
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
                give_to(&path, owner)?;
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

    /// Removes the directory of every instance's secrets when no instance has any left; it
    /// comes back with the next instance that needs it.
    pub fn remove_root_if_empty(&self) {
        let _ = fs::remove_dir(&self.root);
    }
}

/// Makes `path` the instance root's (`owner`, in host ids), if it has one of its own.
fn give_to(path: &Path, owner: Option<(u32, u32)>) -> Result<(), RuntimeError> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|source| RuntimeError::io("give the instance's root", path, source)),
        None => Ok(()),
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
