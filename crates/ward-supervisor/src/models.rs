//! The model store: each model file once under `DATA/models/blobs/sha256/<hex>`, named per
//! project in the database with what the file says of itself. A file goes in before its
//! name (as image blobs do) and leaves once no name in any project points at it; a file that
//! no name needs (an import cut short) is removed when the store opens.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use ward_core::records::ModelRecord;
use ward_core::view::{ModelMetadata, ModelView};
use ward_model::gguf::Header;
use ward_store::{Store, StoreError};

use crate::gate::{audited, Admission};
use crate::time::to_millis;

/// The longest model name.
const MAX_NAME: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "model {name} not found in project {project}: see `ward model ls` for the models there"
    )]
    NotFound { project: String, name: String },
    /// Reading or writing Ward's own files failed.
    #[error("model {name} is loaded: unload it first (`ward model unload {name}`), or remove it with -f")]
    Loaded { name: String },
    #[error("{0}")]
    Io(String),
    /// A server a pull or push spoke with failed, refused, or could not be reached.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The daemon's models; cheap to share.
#[derive(Clone)]
pub struct ModelService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    /// `DATA/models/blobs/sha256`.
    blobs: PathBuf,
    /// `DATA/models/incoming`: files being written, renamed into `blobs` once whole.
    incoming: PathBuf,
    /// Held while files enter or leave `blobs` and names change, so that no file is removed
    /// between its arrival and its naming.
    changes: Mutex<()>,
    /// Digests a runner has loaded now (kept by the inference side).
    loaded: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for ModelService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ModelService")
            .finish_non_exhaustive()
    }
}

impl ModelService {
    /// Opens the store under `data_dir/models`, removing what an interrupted import left.
    pub fn open(store: Arc<Store>, data_dir: &Path) -> Result<ModelService, ModelError> {
        let root = data_dir.join("models");
        let blobs = root.join("blobs").join("sha256");
        let incoming = root.join("incoming");
        for directory in [&blobs, &incoming] {
            fs::create_dir_all(directory).map_err(|error| io_error("create", directory, error))?;
        }
        // Runners, which run sandboxed as another user, read the files; nothing else is here.
        for directory in [&root, &root.join("blobs"), &blobs] {
            fs::set_permissions(directory, fs::Permissions::from_mode(0o755))
                .map_err(|error| io_error("set the mode of", directory, error))?;
        }
        fs::set_permissions(&incoming, fs::Permissions::from_mode(0o700))
            .map_err(|error| io_error("set the mode of", &incoming, error))?;
        if let Ok(entries) = fs::read_dir(&incoming) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let service = ModelService {
            inner: Arc::new(Inner {
                store,
                blobs,
                incoming,
                changes: Mutex::new(()),
                loaded: Arc::default(),
            }),
        };
        service.remove_unnamed()?;
        Ok(service)
    }

    /// The set of loaded digests, for the side that loads models to keep.
    pub fn loaded_registry(&self) -> Arc<Mutex<BTreeSet<String>>> {
        self.inner.loaded.clone()
    }

    fn view(&self, record: &ModelRecord) -> Result<ModelView, ModelError> {
        let mut model = view(record)?;
        model.loaded = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&crate::inference::runner_key(
                &record.project,
                &record.digest,
            ));
        Ok(model)
    }

    /// Where the file of `digest` (`sha256:<hex>`) is.
    pub fn file(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .then(|| self.inner.blobs.join(hex))
    }

    /// Every project's models, each with its project.
    pub fn list_everywhere(&self) -> Result<Vec<(String, ModelView)>, ModelError> {
        self.inner
            .store
            .list_models(None)?
            .iter()
            .map(|record| Ok((record.project.clone(), self.view(record)?)))
            .collect()
    }

    pub fn list(&self, project: &str) -> Result<Vec<ModelView>, ModelError> {
        self.inner
            .store
            .list_models(Some(project))?
            .iter()
            .map(|record| self.view(record))
            .collect()
    }

    pub fn get(&self, project: &str, name: &str) -> Result<ModelView, ModelError> {
        let record =
            self.inner
                .store
                .get_model(project, name)?
                .ok_or_else(|| ModelError::NotFound {
                    project: project.to_string(),
                    name: name.to_string(),
                })?;
        self.view(&record)
    }

    /// Takes the GGUF file at `path` into the store as `name` (a copy: the file stays).
    pub fn import(
        &self,
        project: &str,
        path: &Path,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<ModelView, ModelError> {
        validate_name(name)?;
        let header = read_header(path)?;
        let (staged, hex, size) = self.stage(path)?;
        self.store_staged(
            project, name, &header, staged, &hex, size, "import", admission,
        )
    }

    /// Takes the GGUF file at `path` (on the data directory's file system, hashing to `hex`)
    /// into the store as `name`, moving it there; `source` says where it came from.
    pub fn adopt(
        &self,
        project: &str,
        path: &Path,
        hex: &str,
        name: &str,
        source: &str,
        admission: Option<&Admission>,
    ) -> Result<ModelView, ModelError> {
        validate_name(name)?;
        let header = match read_header(path) {
            Ok(header) => header,
            Err(error) => {
                let _ = fs::remove_file(path);
                return Err(error);
            }
        };
        let size = fs::metadata(path)
            .map_err(|error| io_error("read", path, error))?
            .len();
        let staged = self
            .inner
            .incoming
            .join(format!("{}-{}", std::process::id(), unique()));
        fs::rename(path, &staged).map_err(|error| io_error("move", path, error))?;
        let _ = fs::set_permissions(&staged, fs::Permissions::from_mode(0o644));
        self.store_staged(project, name, &header, staged, hex, size, source, admission)
    }

    #[allow(clippy::too_many_arguments)]
    fn store_staged(
        &self,
        project: &str,
        name: &str,
        header: &Header,
        staged: PathBuf,
        hex: &str,
        size: u64,
        source: &str,
        admission: Option<&Admission>,
    ) -> Result<ModelView, ModelError> {
        let metadata = ModelMetadata {
            architecture: header.architecture().map(str::to_string),
            parameters: header.parameters(),
            quantization: header.quantization().map(str::to_string),
            context_length: header.context_length(),
            chat_template: header.chat_template().map(str::to_string),
            embedding_length: header.embedding_length(),
        };
        let _changes = self.lock();
        let final_path = self.inner.blobs.join(hex);
        if final_path.exists() {
            let _ = fs::remove_file(&staged);
        } else {
            fs::rename(&staged, &final_path)
                .map_err(|error| io_error("store", &final_path, error))?;
        }
        let digest = format!("sha256:{hex}");
        let now = to_millis(SystemTime::now());
        let record = ModelRecord {
            project: project.to_string(),
            name: name.to_string(),
            digest,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            format: "gguf".to_string(),
            metadata_json: serde_json::to_string(&metadata).unwrap_or_default(),
            source: source.to_string(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.inner.store.ensure_project(project, None)?;
        audited(admission, 200, |audit| {
            self.inner.store.put_model(&record, audit)
        })?;
        // The name may have pointed at another file, which may now be unnamed.
        self.remove_unnamed()?;
        self.get(project, name)
    }

    /// Removes a name, and the file once no name points at it; a loaded model only with
    /// `force` (its runner keeps the file it has open until it unloads).
    pub fn remove(
        &self,
        project: &str,
        name: &str,
        force: bool,
        admission: Option<&Admission>,
    ) -> Result<ModelView, ModelError> {
        let _changes = self.lock();
        let removed = self.get(project, name)?;
        if removed.loaded && !force {
            return Err(ModelError::Loaded {
                name: name.to_string(),
            });
        }
        audited(admission, 200, |audit| {
            self.inner.store.delete_model(project, name, audit)
        })?;
        self.remove_unnamed()?;
        Ok(removed)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Copies `path` into `incoming`, hashing it on the way; returns the copy, its sha256 in
    /// hex and its size.
    fn stage(&self, path: &Path) -> Result<(PathBuf, String, u64), ModelError> {
        let mut source = File::open(path)
            .map_err(|error| ModelError::Invalid(format!("cannot read the model file: {error}")))?;
        let staged = self
            .inner
            .incoming
            .join(format!("{}-{}", std::process::id(), unique()));
        let mut target = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&staged)
            .map_err(|error| io_error("create", &staged, error))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut size = 0u64;
        let copied = (|| -> io::Result<()> {
            loop {
                let read = source.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                target.write_all(&buffer[..read])?;
                size += read as u64;
            }
            target.sync_all()
        })();
        if let Err(error) = copied {
            let _ = fs::remove_file(&staged);
            return Err(io_error("write", &staged, error));
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok((staged, hex, size))
    }

    /// Deletes every file no model name points at; called with the changes lock held (or
    /// before anyone else can change anything).
    fn remove_unnamed(&self) -> Result<(), ModelError> {
        let named: BTreeSet<String> = self
            .inner
            .store
            .list_models(None)?
            .into_iter()
            .filter_map(|record| record.digest.strip_prefix("sha256:").map(str::to_string))
            .collect();
        let entries = fs::read_dir(&self.inner.blobs)
            .map_err(|error| io_error("read", &self.inner.blobs, error))?;
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if !named.contains(&file_name) {
                if let Err(error) = fs::remove_file(entry.path()) {
                    tracing::warn!(%error, file = %entry.path().display(), "cannot remove an unnamed model file");
                }
            }
        }
        Ok(())
    }
}

/// What callers see of a model record.
fn view(record: &ModelRecord) -> Result<ModelView, ModelError> {
    Ok(ModelView {
        name: record.name.clone(),
        digest: record.digest.clone(),
        size: u64::try_from(record.size).unwrap_or(0),
        format: record.format.clone(),
        metadata: serde_json::from_str(&record.metadata_json).unwrap_or_default(),
        source: record.source.clone(),
        created_at: UNIX_EPOCH
            + Duration::from_millis(u64::try_from(record.created_at_ms).unwrap_or(0)),
        loaded: false,
    })
}

/// A model name: letters, digits and `.`, `_`, `-`, `:`, `/`, starting with a letter or digit,
/// at most 128 characters, without `..` or empty path segments.
/// The header of the GGUF file at `path`, or why it is not one.
fn read_header(path: &Path) -> Result<Header, ModelError> {
    Header::read_file(path).map_err(|error| {
        ModelError::Invalid(format!(
            "the file is not a GGUF model Ward can read: {error}"
        ))
    })
}

pub fn validate_name(name: &str) -> Result<(), ModelError> {
    let refuse = |why: &str| {
        Err(ModelError::Invalid(format!(
            "name: {name:?} {why}; use letters, digits, '.', '_', '-', ':' and '/', starting with a letter or digit"
        )))
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return refuse(&format!("is not 1 to {MAX_NAME} characters"));
    }
    if !name.starts_with(|first: char| first.is_ascii_alphanumeric()) {
        return refuse("does not start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        return refuse("holds a character a model name cannot have");
    }
    if name.contains("..") || name.contains("//") || name.ends_with('/') {
        return refuse("holds '..', '//' or ends with '/'");
    }
    Ok(())
}

fn io_error(action: &str, path: &Path, error: io::Error) -> ModelError {
    ModelError::Io(format!("{action} {}: {error}", path.display()))
}

/// A number no other call of this process gets.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in [
            "tiny",
            "llama-3.2-1b:q4_k_m",
            "ai/smollm2:latest",
            "Qwen2.5-0.5B",
        ] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "../x",
            "a//b",
            "a/",
            "a b",
            "a\u{e9}",
            &"x".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
