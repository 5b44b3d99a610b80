//! The content-addressed blob store: `blobs/sha256/<hex>`, written only through an ingest
//! file that is verified against its digest before it is renamed into place.
//!
//! Layout under the store's root (`DATA/images`):
//!
//! ```text
//! blobs/sha256/<hex>        verified blobs (manifests, configs, layers), read-only
//! ingest/<hex>.partial      a blob being written; kept across interruptions for resuming
//! ```
//!
//! Writers of one digest exclude each other with an exclusive lock on its ingest file, so a
//! blob that two pulls want is downloaded once: the second waits, then finds it stored.
//! A stored blob is verified again whenever it is read whole ([`BlobStore::read`]) or
//! streamed ([`BlobStore::open`], which fails at the end of a mismatching stream).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::digest::{Digest, Hasher};

/// Largest manifest, index or config read into memory.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected} is corrupt: its content hashes to {actual}; remove the image and pull or import it again")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} has {actual} bytes where {expected} were announced")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is missing from the image store; pull or import the image again")]
    Missing { digest: Digest },
    #[error("blob {digest} is larger than the {limit} bytes allowed for a manifest or config")]
    TooLarge { digest: Digest, limit: u64 },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The blob store under one root; cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating) the store at `root`.
    pub fn open_at(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        let root = root.into();
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(|source| StoreError::io("create", &dir, source))?;
        }
        Ok(BlobStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob lives once stored.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn ingest_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", digest.hex()))
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The stored blob's size, if it is stored.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().map(|meta| meta.len())
    }

    /// Starts (or resumes) writing `digest`. Blocks while another writer holds it. Returns
    /// `None` when the blob is already stored (possibly by the writer just waited for).
    pub fn ingest(&self, digest: &Digest) -> Result<Option<Ingest>, StoreError> {
        if self.contains(digest) {
            return Ok(None);
        }
        let path = self.ingest_path(digest);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::io("open", &path, source))?;
        let mut lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| StoreError::io("lock", &path, errno.into()))?;
        if self.contains(digest) {
            // The writer we waited for finished; its ingest file is gone or stale.
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        // Resume: hash what an interrupted writer left behind.
        let mut hasher = Hasher::new();
        lock.seek(SeekFrom::Start(0))
            .map_err(|source| StoreError::io("read", &path, source))?;
        io::copy(&mut *lock, &mut hasher)
            .map_err(|source| StoreError::io("read", &path, source))?;
        Ok(Some(Ingest {
            store: self.clone(),
            digest: digest.clone(),
            path,
            file: lock,
            hasher,
        }))
    }

    /// Stores `bytes` as `digest`, refusing them if they do not hash to it.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(mut ingest) = self.ingest(digest)? {
            ingest.restart()?;
            ingest.write(bytes)?;
            ingest.commit(Some(bytes.len() as u64))?;
        }
        Ok(())
    }

    /// Stores whatever `reader` yields under the digest it hashes to (for sources that do not
    /// announce digests, like the layers of a `docker save` archive). Returns the digest and
    /// size. Storing content that is already there costs only the hashing.
    pub fn put_stream(&self, reader: &mut dyn Read) -> Result<(Digest, u64), StoreError> {
        let temporary = tempfile::Builder::new()
            .prefix("stream-")
            .suffix(".partial")
            .tempfile_in(self.root.join("ingest"))
            .map_err(|source| StoreError::io("create", self.root.join("ingest"), source))?;
        let mut hasher = Hasher::new();
        let mut writer = io::BufWriter::new(temporary.as_file());
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let count = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(StoreError::io("read", temporary.path(), source)),
            };
            hasher.update(&buffer[..count]);
            writer
                .write_all(&buffer[..count])
                .map_err(|source| StoreError::io("write", temporary.path(), source))?;
        }
        writer
            .flush()
            .map_err(|source| StoreError::io("write", temporary.path(), source))?;
        drop(writer);
        let size = hasher.bytes();
        let digest = hasher.finish();
        if !self.contains(&digest) {
            temporary
                .as_file()
                .sync_all()
                .map_err(|source| StoreError::io("sync", temporary.path(), source))?;
            let _ = temporary
                .as_file()
                .set_permissions(fs::Permissions::from_mode(0o444));
            let destination = self.path(&digest);
            temporary
                .persist(&destination)
                .map_err(|error| StoreError::io("store", &destination, error.error))?;
        }
        Ok((digest, size))
    }

    /// Reads a small blob whole (a manifest, index or config) and verifies it.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::Missing {
                digest: digest.clone(),
            },
            _ => StoreError::io("open", &path, source),
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::io("read", &path, source))?;
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams a stored blob; the stream fails at its end if the content does not match.
    pub fn open(&self, digest: &Digest) -> Result<VerifyingReader, StoreError> {
        let path = self.path(digest);
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::Missing {
                digest: digest.clone(),
            },
            _ => StoreError::io("open", &path, source),
        })?;
        Ok(VerifyingReader {
            expected: digest.clone(),
            file,
            hasher: Some(Hasher::new()),
        })
    }

    /// Reads the whole blob and checks it against its digest.
    pub fn verify(&self, digest: &Digest) -> Result<(), StoreError> {
        let mut reader = self.open(digest)?;
        io::copy(&mut reader, &mut io::sink())
            .map_err(|source| into_store_error(source, digest))?;
        Ok(())
    }

    /// Removes a stored blob (and any partial ingest of it).
    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        for path in [self.path(digest), self.ingest_path(digest)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::io("remove", &path, source)),
            }
        }
        Ok(())
    }

    /// Every stored blob with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let dir = self.root.join("blobs/sha256");
        let entries = fs::read_dir(&dir).map_err(|source| StoreError::io("list", &dir, source))?;
        let mut blobs = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            blobs.push((digest, size));
        }
        blobs.sort();
        Ok(blobs)
    }
}

/// Turns the error a [`VerifyingReader`] raises back into the store's error.
pub fn into_store_error(error: io::Error, digest: &Digest) -> StoreError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<MismatchError>())
    {
        Some(mismatch) => StoreError::DigestMismatch {
            expected: digest.clone(),
            actual: mismatch.actual.clone(),
        },
        None => StoreError::io("read blob", format!("{digest}"), error),
    }
}

/// A blob being written. Dropping it without [`Ingest::commit`] keeps what was written for a
/// later resume.
#[derive(Debug)]
pub struct Ingest {
    store: BlobStore,
    digest: Digest,
    path: PathBuf,
    file: Flock<File>,
    hasher: Hasher,
}

impl Ingest {
    /// Bytes already written (by this writer or an interrupted one): where to resume.
    pub fn offset(&self) -> u64 {
        self.hasher.bytes()
    }

    /// Throws away what an interrupted writer left, for sources that cannot resume.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|source| StoreError::io("truncate", &self.path, source))?;
        self.hasher = Hasher::new();
        Ok(())
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .seek(SeekFrom::End(0))
            .and_then(|_| self.file.write_all(bytes))
            .map_err(|source| StoreError::io("write", &self.path, source))?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// Verifies the content (and its size, when known) and moves it into the store. On a
    /// mismatch the partial file is deleted: nothing of it is stored.
    pub fn commit(mut self, expected_size: Option<u64>) -> Result<PathBuf, StoreError> {
        let size = self.hasher.bytes();
        let actual = std::mem::take(&mut self.hasher).finish();
        let mismatch = if actual != self.digest {
            Some(StoreError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            })
        } else {
            expected_size
                .filter(|expected| *expected != size)
                .map(|expected| StoreError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected,
                    actual: size,
                })
        };
        if let Some(error) = mismatch {
            let _ = fs::remove_file(&self.path);
            return Err(error);
        }
        self.file
            .sync_all()
            .map_err(|source| StoreError::io("sync", &self.path, source))?;
        let _ = self.file.set_permissions(fs::Permissions::from_mode(0o444));
        let destination = self.store.path(&self.digest);
        fs::rename(&self.path, &destination)
            .map_err(|source| StoreError::io("store", &destination, source))?;
        if let Some(dir) = destination.parent() {
            if let Ok(dir) = File::open(dir) {
                let _ = nix::unistd::fsync(dir.as_fd());
            }
        }
        Ok(destination)
    }
}

/// Streams a stored blob and fails with [`MismatchError`] at the end if it was altered.
#[derive(Debug)]
pub struct VerifyingReader {
    expected: Digest,
    file: File,
    /// `None` once the end was reached and checked.
    hasher: Option<Hasher>,
}

/// The error a [`VerifyingReader`] raises at the end of a corrupt blob.
#[derive(Debug, thiserror::Error)]
#[error("content hashes to {actual}")]
pub struct MismatchError {
    pub actual: Digest,
}

impl Read for VerifyingReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        let count = self.file.read(buffer)?;
        hasher.update(&buffer[..count]);
        if count == 0 && !buffer.is_empty() {
            let actual = self.hasher.take().map(Hasher::finish);
            if let Some(actual) = actual.filter(|actual| *actual != self.expected) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    MismatchError { actual },
                ));
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_verified_blobs_and_refuses_wrong_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_at(dir.path()).unwrap();
        let digest = Digest::of(b"hello");
        store.put(&digest, b"hello").unwrap();
        assert_eq!(store.read(&digest).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        assert!(matches!(
            store.put(&wrong, b"hello"),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.contains(&wrong));
        assert!(store
            .list()
            .unwrap()
            .iter()
            .all(|(listed, _)| listed != &wrong));
    }

    #[test]
    fn resumes_an_interrupted_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_at(dir.path()).unwrap();
        let content = b"0123456789".repeat(100);
        let digest = Digest::of(&content);
        let mut first = store.ingest(&digest).unwrap().unwrap();
        first.write(&content[..300]).unwrap();
        drop(first);
        let mut second = store.ingest(&digest).unwrap().unwrap();
        assert_eq!(second.offset(), 300);
        second.write(&content[300..]).unwrap();
        second.commit(Some(content.len() as u64)).unwrap();
        assert!(store.ingest(&digest).unwrap().is_none());
        store.verify(&digest).unwrap();
    }

    #[test]
    fn a_changed_byte_fails_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_at(dir.path()).unwrap();
        let content = vec![7u8; 100_000];
        let digest = Digest::of(&content);
        store.put(&digest, &content).unwrap();
        let path = store.path(&digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(5_000)).unwrap();
        file.write_all(&[8]).unwrap();
        drop(file);
        assert!(matches!(
            store.read(&digest),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.verify(&digest),
            Err(StoreError::DigestMismatch { .. })
        ));
    }
}
