//! Secrets per project: sealed with ChaCha20-Poly1305 under a key that lives in a file of its
//! own (never in the database), opened only to hand a value to a starting workload or to a
//! caller granted `secrets:read`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ward_runtime::SecretResolver;
use ward_store::{SecretRecord, Store};

pub use ward_core::view::SecretInfo;

use crate::gate::{audited, Admission};
use crate::time::to_millis;

/// The largest secret value (like Kubernetes' 1 MiB).
pub const MAX_SECRET_BYTES: usize = 1 << 20;
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "secret {name} not found in project {project}; create it with 'ward secret set {name}'"
    )]
    NotFound { project: String, name: String },
    #[error("cannot {action} the key {path}: {source}")]
    KeyFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key {path} is {found} bytes, not {KEY_BYTES}: restore the right file")]
    KeyLength { path: PathBuf, found: usize },
    #[error("secret {name} of project {project} does not open with this key: the key file was replaced or the row altered")]
    Unsealable { project: String, name: String },
    #[error("{0}")]
    Store(#[from] ward_store::StoreError),
}

pub struct SecretService {
    store: std::sync::Arc<Store>,
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretService")
            .finish_non_exhaustive()
    }
}

/// Reads the key at `path`, creating it (32 random bytes, mode 0600) on first use.
fn load_or_create_key(path: &Path) -> Result<Key, SecretError> {
    load_or_create_key_bytes(path).map(|bytes| *Key::from_slice(&bytes))
}

/// The 32 bytes of the key file at `path`, created (random, mode 0600) on first use: the
/// secrets key, and the key that signs sessions.
pub(crate) fn load_or_create_key_bytes(path: &Path) -> Result<[u8; KEY_BYTES], SecretError> {
    let key_error = |action, source| SecretError::KeyFile {
        action,
        path: path.to_path_buf(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) if bytes.len() == KEY_BYTES => {
            let mut key = [0u8; KEY_BYTES];
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Ok(bytes) => Err(SecretError::KeyLength {
            path: path.to_path_buf(),
            found: bytes.len(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|source| key_error("create the directory of", source))?;
            }
            let key: [u8; KEY_BYTES] = rand::random();
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| key_error("create", source))?;
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|source| key_error("write", source))?;
            tracing::info!(path = %path.display(), "created a key");
            Ok(key)
        }
        Err(source) => Err(key_error("read", source)),
    }
}

/// What the ciphertext is bound to, so a sealed value cannot be moved to another name.
fn associated_data(project: &str, name: &str) -> Vec<u8> {
    format!("ward-secret\0{project}\0{name}").into_bytes()
}

impl SecretService {
    /// `store` is a connection of its own to the daemon's database; `key_path` the key file.
    pub fn open(
        store: std::sync::Arc<Store>,
        key_path: &Path,
    ) -> Result<SecretService, SecretError> {
        let key = load_or_create_key(key_path)?;
        Ok(SecretService {
            store,
            cipher: ChaCha20Poly1305::new(&key),
        })
    }

    /// Creates or replaces secret `name` of `project`.
    pub fn set(
        &self,
        project: &str,
        name: &str,
        value: &[u8],
        admission: Option<&Admission>,
    ) -> Result<SecretInfo, SecretError> {
        ward_spec::validate_name(name)
            .map_err(|reason| SecretError::Invalid(format!("name: {reason}")))?;
        if value.is_empty() {
            return Err(SecretError::Invalid(
                "value: a secret cannot be empty".to_string(),
            ));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::Invalid(format!(
                "value: {} bytes; a secret holds at most {MAX_SECRET_BYTES}",
                value.len()
            )));
        }
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &associated_data(project, name),
                },
            )
            .map_err(|_| SecretError::Invalid("value: cannot be sealed".to_string()))?;
        let now = to_millis(SystemTime::now());
        let created_at_ms = self
            .store
            .get_secret(project, name)?
            .map_or(now, |existing| existing.created_at_ms);
        let record = SecretRecord {
            project: project.to_string(),
            name: name.to_string(),
            nonce: nonce.to_vec(),
            ciphertext,
            created_at_ms,
            updated_at_ms: now,
        };
        audited(admission, 200, |audit| {
            self.store.put_secret(&record, audit)
        })?;
        Ok(SecretInfo {
            name: name.to_string(),
            created_at: crate::time::from_millis(created_at_ms),
            updated_at: crate::time::from_millis(now),
        })
    }

    pub fn list(&self, project: &str) -> Result<Vec<SecretInfo>, SecretError> {
        Ok(self
            .store
            .list_secrets(project)?
            .into_iter()
            .map(|record| info(&record))
            .collect())
    }

    pub fn info(&self, project: &str, name: &str) -> Result<SecretInfo, SecretError> {
        self.record(project, name).map(|record| info(&record))
    }

    /// The value in clear, for a starting workload or a caller holding `secrets:read`.
    pub fn reveal(&self, project: &str, name: &str) -> Result<Vec<u8>, SecretError> {
        let record = self.record(project, name)?;
        self.cipher
            .decrypt(
                Nonce::from_slice(&record.nonce),
                Payload {
                    msg: &record.ciphertext,
                    aad: &associated_data(project, name),
                },
            )
            .map_err(|_| SecretError::Unsealable {
                project: project.to_string(),
                name: name.to_string(),
            })
    }

    pub fn remove(
        &self,
        project: &str,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<SecretInfo, SecretError> {
        let record = self.record(project, name)?;
        audited(admission, 200, |audit| {
            self.store.delete_secret(project, name, audit)
        })?;
        Ok(info(&record))
    }

    fn record(&self, project: &str, name: &str) -> Result<SecretRecord, SecretError> {
        self.store
            .get_secret(project, name)?
            .ok_or_else(|| SecretError::NotFound {
                project: project.to_string(),
                name: name.to_string(),
            })
    }
}

fn info(record: &SecretRecord) -> SecretInfo {
    SecretInfo {
        name: record.name.clone(),
        created_at: crate::time::from_millis(record.created_at_ms),
        updated_at: crate::time::from_millis(record.updated_at_ms),
    }
}

#[async_trait]
impl SecretResolver for SecretService {
    async fn reveal(&self, project: &str, name: &str) -> Result<Vec<u8>, String> {
        SecretService::reveal(self, project, name).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sealed_at_rest_and_bound_to_their_name() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let database = directory.path().join("ward.db");
        let key = directory.path().join("secrets.key");
        let secrets = SecretService::open(
            std::sync::Arc::new(Store::open(&database).expect("store")),
            &key,
        )
        .expect("open");
        let value = b"correct-horse-battery-staple-7f3a";
        secrets
            .set("alpha", "db-password", value, None)
            .expect("set");
        assert_eq!(
            secrets.reveal("alpha", "db-password").expect("reveal"),
            value
        );
        assert!(matches!(
            secrets.reveal("beta", "db-password"),
            Err(SecretError::NotFound { .. })
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key)
            .expect("stat the key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // Nowhere in the database file in clear.
        drop(secrets);
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", database.display()));
            if let Ok(bytes) = fs::read(&path) {
                assert!(
                    !bytes.windows(value.len()).any(|window| window == value),
                    "{} holds the value in clear",
                    path.display()
                );
            }
        }

        // A row copied to another name does not open; another key opens nothing.
        let store = Store::open(&database).expect("store");
        let mut moved = store
            .get_secret("alpha", "db-password")
            .expect("read")
            .expect("row");
        moved.name = "other".to_string();
        store.put_secret(&moved, None).expect("copy the row");
        let secrets = SecretService::open(std::sync::Arc::new(store), &key).expect("open");
        assert!(matches!(
            secrets.reveal("alpha", "other"),
            Err(SecretError::Unsealable { .. })
        ));
        fs::write(&key, [7u8; KEY_BYTES]).expect("replace the key");
        let secrets = SecretService::open(
            std::sync::Arc::new(Store::open(&database).expect("store")),
            &key,
        )
        .expect("open");
        assert!(matches!(
            secrets.reveal("alpha", "db-password"),
            Err(SecretError::Unsealable { .. })
        ));
    }
}
