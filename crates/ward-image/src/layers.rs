//! Layers unpacked once and shared: `layers/sha256/<hex>` holds the unpacked tree of the
//! layer blob `<hex>` in overlayfs format, ready to be a lower directory of any container
//! that uses it.
//!
//! ```text
//! layers/sha256/<hex>/       the unpacked tree (complete once its marker exists)
//! layers/sha256/<hex>.json   the marker: diff id and the blob's size and mtime at unpack
//! layers/l/<short>           a short symlink to the tree, so that an overlay mount of many
//!                            layers fits the kernel's one-page limit on mount options
//! layers/tmp/                trees being unpacked
//! ```
//!
//! A layer is unpacked under an exclusive lock into `tmp/` and renamed into place, so a
//! crash leaves either nothing or a whole tree. Using an image re-reads its manifest and
//! config (verified), and re-verifies a layer blob whose size or mtime changed since it was
//! unpacked: a blob altered on disk makes the next use fail loudly.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::{
    parse_document, Compression, Document, ImageConfig, Manifest, ManifestError,
};
use crate::store::{BlobStore, StoreError};
use crate::unpack::{unpack_layer, UnpackError, UnpackLimits, UnpackOutcome, WhiteoutFormat};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image {digest}: {source}")]
    Manifest {
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    #[error("image {digest} is an index, not a manifest")]
    NotAManifest { digest: Digest },
    #[error("layer {digest}: {source}")]
    Unpack {
        digest: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("layer {digest} unpacks to content {actual}, but the image config says {expected}")]
    DiffId {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An image ready to run: its config and its unpacked layers.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    /// Lower directories for overlayfs, relative to [`LayerStore::root`], top layer first
    /// (the order of overlayfs' `lowerdir=`).
    pub lower_dirs: Vec<String>,
}

/// One layer of an image: its blob, the content it must unpack to, and how it is compressed.
#[derive(Clone, Debug)]
struct Layer {
    digest: Digest,
    diff_id: Digest,
    compression: Compression,
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    diff_id: Digest,
    blob_size: u64,
    blob_mtime_ns: i128,
}

/// Unpacked layers under one root; cheap to clone.
#[derive(Clone, Debug)]
pub struct LayerStore {
    root: PathBuf,
    blobs: BlobStore,
    limits: UnpackLimits,
}

impl LayerStore {
    pub fn open_at(root: impl Into<PathBuf>, blobs: BlobStore) -> Result<LayerStore, LayerError> {
        let root = root.into();
        for dir in [
            root.join("sha256"),
            root.join("l"),
            root.join("tmp"),
            root.join("locks"),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        }
        Ok(LayerStore {
            root,
            blobs,
            limits: UnpackLimits::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The verified manifest and config of a stored image.
    pub fn read_image(
        &self,
        manifest_digest: &Digest,
    ) -> Result<(Manifest, ImageConfig), LayerError> {
        let manifest_error = |source| LayerError::Manifest {
            digest: manifest_digest.clone(),
            source,
        };
        let bytes = self.blobs.read(manifest_digest)?;
        let Document::Manifest(manifest) = parse_document(&bytes, None).map_err(manifest_error)?
        else {
            return Err(LayerError::NotAManifest {
                digest: manifest_digest.clone(),
            });
        };
        let config = ImageConfig::parse(&self.blobs.read(&manifest.config.digest)?)
            .map_err(manifest_error)?;
        Ok((manifest, config))
    }

    /// Unpacks whatever layers of the image are not unpacked yet (blocking; run it off the
    /// async threads) and returns the image ready for an overlay mount. Layers in overlay form
    /// are independent of each other, so several unpack at once, one per core.
    pub fn prepare(&self, manifest_digest: &Digest) -> Result<PreparedImage, LayerError> {
        let (config, layers) = self.layers_of(manifest_digest)?;
        let lower_dirs = layers
            .iter()
            .rev()
            .map(|layer| format!("l/{}", short_name(&layer.digest)))
            .collect();
        // Unpacked layers (the usual case at a container's start) are checked here, without
        // starting the unpacking threads.
        let mut pending = Vec::new();
        for layer in &layers {
            match self.read_marker(&layer.digest) {
                Some(marker) => self.check_blob_unchanged(&layer.digest, &marker)?,
                None => pending.push(layer.clone()),
            }
        }
        let layers = pending;
        let workers = std::thread::available_parallelism()
            .map_or(1, |cores| cores.get())
            .min(layers.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let first_error: std::sync::Mutex<Option<LayerError>> = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(layer) = layers.get(index) else {
                        break;
                    };
                    if let Err(error) = self.ensure_unpacked(layer) {
                        let mut slot = first_error
                            .lock()
                            .unwrap_or_else(|poison| poison.into_inner());
                        slot.get_or_insert(error);
                        break;
                    }
                });
            }
        });
        if let Some(error) = first_error
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner())
        {
            return Err(error);
        }
        Ok(PreparedImage {
            manifest_digest: manifest_digest.clone(),
            config,
            lower_dirs,
        })
    }

    /// Applies the image's layers in order into `dest` (an empty directory): a private copy
    /// of the root filesystem, for hosts without overlayfs.
    pub fn flatten_into(
        &self,
        manifest_digest: &Digest,
        dest: &Path,
    ) -> Result<ImageConfig, LayerError> {
        let (config, layers) = self.layers_of(manifest_digest)?;
        for layer in &layers {
            self.unpack_checked(layer, dest, WhiteoutFormat::Apply)?;
        }
        Ok(config)
    }

    /// The image's config and its layers, bottom first.
    fn layers_of(&self, manifest_digest: &Digest) -> Result<(ImageConfig, Vec<Layer>), LayerError> {
        let (manifest, config) = self.read_image(manifest_digest)?;
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(layer, diff_id)| {
                Ok(Layer {
                    digest: layer.digest.clone(),
                    diff_id: diff_id.clone(),
                    compression: Compression::of_media_type(&layer.media_type).map_err(
                        |source| LayerError::Manifest {
                            digest: manifest_digest.clone(),
                            source,
                        },
                    )?,
                })
            })
            .collect::<Result<_, LayerError>>()?;
        Ok((config, layers))
    }

    /// Unpacks one layer blob into `dest` and checks that it is the content the image config
    /// names.
    fn unpack_checked(
        &self,
        layer: &Layer,
        dest: &Path,
        format: WhiteoutFormat,
    ) -> Result<UnpackOutcome, LayerError> {
        let reader = self.blobs.open(&layer.digest)?;
        let outcome = unpack_layer(reader, layer.compression, dest, &self.limits, format)
            .map_err(|source| unpack_error(&self.blobs, &layer.digest, source))?;
        if outcome.diff_id != layer.diff_id {
            return Err(LayerError::DiffId {
                digest: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                actual: outcome.diff_id,
            });
        }
        Ok(outcome)
    }

    fn tree(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    fn marker_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("sha256")
            .join(format!("{}.json", digest.hex()))
    }

    /// Whether the layer is unpacked (its marker exists).
    pub fn is_unpacked(&self, digest: &Digest) -> bool {
        self.marker_path(digest).is_file()
    }

    fn ensure_unpacked(&self, layer: &Layer) -> Result<(), LayerError> {
        let digest = &layer.digest;
        if let Some(marker) = self.read_marker(digest) {
            return self.check_blob_unchanged(digest, &marker);
        }
        let lock_path = self.root.join("locks").join(digest.hex());
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            LayerError::Io {
                action: "lock",
                path: lock_path.clone(),
                source: errno.into(),
            }
        })?;
        if let Some(marker) = self.read_marker(digest) {
            return self.check_blob_unchanged(digest, &marker);
        }
        let blob_meta = fs::metadata(self.blobs.path(digest)).map_err(|_| StoreError::Missing {
            digest: digest.clone(),
        })?;
        let staging = self.root.join("tmp").join(digest.hex());
        remove_tree(&staging)?;
        fs::create_dir(&staging).map_err(io_error("create", &staging))?;
        let outcome = match self.unpack_checked(layer, &staging, WhiteoutFormat::Overlay) {
            Ok(outcome) => outcome,
            Err(error) => {
                let _ = remove_tree(&staging);
                return Err(error);
            }
        };
        let tree = self.tree(digest);
        remove_tree(&tree)?;
        fs::rename(&staging, &tree).map_err(io_error("store", &tree))?;
        let link = self.root.join("l").join(short_name(digest));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("../sha256").join(digest.hex()), &link)
            .map_err(io_error("link", &link))?;
        let marker = Marker {
            diff_id: layer.diff_id.clone(),
            blob_size: blob_meta.len(),
            blob_mtime_ns: mtime_ns(&blob_meta),
        };
        let marker_path = self.marker_path(digest);
        let bytes = serde_json::to_vec(&marker).expect("a marker serialises");
        fs::write(&marker_path, bytes).map_err(io_error("write", &marker_path))?;
        if let Ok(dir) = File::open(self.root.join("sha256")) {
            let _ = dir.sync_all();
        }
        tracing::debug!(layer = %digest, bytes = outcome.bytes, entries = outcome.entries, "layer unpacked");
        Ok(())
    }

    fn read_marker(&self, digest: &Digest) -> Option<Marker> {
        let bytes = fs::read(self.marker_path(digest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A blob whose size or mtime moved since its layer was unpacked is verified again.
    fn check_blob_unchanged(&self, digest: &Digest, marker: &Marker) -> Result<(), LayerError> {
        let meta = fs::metadata(self.blobs.path(digest)).map_err(|_| StoreError::Missing {
            digest: digest.clone(),
        })?;
        if meta.len() != marker.blob_size || mtime_ns(&meta) != marker.blob_mtime_ns {
            self.blobs.verify(digest)?;
        }
        Ok(())
    }

    /// Removes the unpacked tree of a layer (for garbage collection).
    pub fn remove(&self, digest: &Digest) -> Result<(), LayerError> {
        let _ = fs::remove_file(self.marker_path(digest));
        let _ = fs::remove_file(self.root.join("l").join(short_name(digest)));
        remove_tree(&self.tree(digest))
    }

    /// Digests of every unpacked layer.
    pub fn list(&self) -> Vec<Digest> {
        let Ok(entries) = fs::read_dir(self.root.join("sha256")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_str()?.to_string();
                let hex = name.strip_suffix(".json").unwrap_or(&name);
                format!("sha256:{hex}").parse().ok()
            })
            .collect::<std::collections::BTreeSet<Digest>>()
            .into_iter()
            .collect()
    }
}

/// An unpack that failed because the blob is corrupt says so; any other failure is the
/// layer's own.
fn unpack_error(blobs: &BlobStore, digest: &Digest, source: UnpackError) -> LayerError {
    match blobs.verify(digest) {
        Err(error @ StoreError::DigestMismatch { .. }) => LayerError::Store(error),
        _ => LayerError::Unpack {
            digest: digest.clone(),
            source,
        },
    }
}

/// 16 hex digits: enough to tell layers apart, short enough for 128 of them in one mount.
fn short_name(digest: &Digest) -> &str {
    &digest.hex()[..16]
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Removes a tree without following symlinks; a missing tree is fine.
pub fn remove_tree(path: &Path) -> Result<(), LayerError> {
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LayerError::Io {
            action: "inspect",
            path: path.to_path_buf(),
            source,
        }),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io_error("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io_error("remove", path)),
    }
}
