//! Image archives: importing OCI image layouts (a directory, or a plain or compressed tar) and
//! `docker save` tars into the blob store, and exporting images as a tar that is both.
//!
//! An import reads a tar once, in order, streaming every file into the store; nothing larger
//! than a small metadata file is held in memory. A blob is trusted only once the store has
//! verified it, and an image is returned only when its manifest, config and every layer are
//! stored and verified. When an import fails, the blobs it already stored stay in the store
//! until garbage collection removes them.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::digest::Digest;
use crate::manifest::{
    self, Compression, Descriptor, Document, ImageConfig, Index, Manifest, ManifestError, Platform,
    DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_MANIFEST,
};
use crate::store::{into_store_error, BlobStore, Ingest, StoreError, MAX_DOCUMENT_BYTES};

/// The annotation holding an image's tag (or, from some tools, its full name) in an OCI layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker use for an image's full name in an OCI layout.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// One image found in an archive, with every blob it needs now in the store (verified).
#[derive(Clone, Debug)]
pub struct ImportedImage {
    /// Names the archive gives it (Docker `RepoTags`, or OCI `io.containerd.image.name` and
    /// full-reference `org.opencontainers.image.ref.name` annotations), normalised; may be
    /// empty.
    pub names: Vec<String>,
    /// Digest of the image manifest in the store; for a legacy `docker save` archive, of the
    /// OCI manifest made for it.
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// An image to export: its manifest (an image manifest, not an index) and an optional name.
#[derive(Clone, Debug)]
pub struct ExportImage {
    pub name: Option<String>,
    pub manifest_digest: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json); make one with `docker save` or `skopeo copy ... oci-archive:FILE`")]
    UnknownFormat { path: PathBuf },
    #[error("{path} is a directory without index.json; a directory must be an OCI image layout (pack a `docker save` directory into a tar to import it)")]
    NotALayoutDirectory { path: PathBuf },
    #[error("{path}: entry {entry:?} {problem}; the archive is refused")]
    UnsafeEntry {
        path: PathBuf,
        entry: String,
        problem: &'static str,
    },
    #[error(
        "{path}: entry {entry:?} links to {target:?}, which is not a file earlier in the archive"
    )]
    DanglingLink {
        path: PathBuf,
        entry: String,
        target: String,
    },
    #[error("{path}: {entry} has {size} bytes, more than the {limit} allowed for image metadata")]
    MetadataTooLarge {
        path: PathBuf,
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("{path}: {file} is not valid JSON of the expected shape: {source}")]
    Metadata {
        path: PathBuf,
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: oci-layout has imageLayoutVersion {version:?}; Ward reads version 1 layouts")]
    LayoutVersion { path: PathBuf, version: String },
    #[error("{path}: manifest.json names {entry:?}, which is not a file in the archive")]
    MissingEntry { path: PathBuf, entry: String },
    #[error("{path} does not contain blob {digest}, which an image in it needs; the archive is incomplete, export it again")]
    MissingBlob { path: PathBuf, digest: Digest },
    #[error("{path}: {entry} does not hold what its name says (its content hashes to {actual}); the archive is damaged or was altered, export it again")]
    Tampered {
        path: PathBuf,
        entry: String,
        actual: Digest,
    },
    #[error("{path}: {what}: {source}")]
    Store {
        path: PathBuf,
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("{path}: {what}: {source}")]
    Manifest {
        path: PathBuf,
        what: String,
        #[source]
        source: ManifestError,
    },
    #[error("{path}: {what} is {found}, where an {expected} was expected")]
    UnexpectedDocument {
        path: PathBuf,
        what: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{path} holds no image Ward can import: {what} lists none")]
    NoImages { path: PathBuf, what: &'static str },
    #[error("cannot export image {digest}: {source}")]
    ExportBlob {
        digest: Digest,
        #[source]
        source: StoreError,
    },
    #[error("cannot export image {digest}: its manifest: {source}")]
    ExportManifest {
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    #[error(
        "cannot export image {digest}: it is an image index; export one of its platform manifests"
    )]
    ExportIndex { digest: Digest },
    #[error("cannot export image {digest} under that name: {reason}")]
    ExportName { digest: Digest, reason: String },
    #[error("cannot write the image archive: {source}")]
    Write {
        #[source]
        source: io::Error,
    },
}

/// `oci-layout`.
#[derive(Serialize, Deserialize)]
struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// One entry of a `docker save` `manifest.json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports every image in the archive or OCI layout directory at `path` into `store`, choosing
/// `platform`'s manifest from multi-platform indexes. Blobs stored before an error are left
/// for garbage collection; an image is returned only once all its blobs are stored and
/// verified.
pub fn import(
    path: &Path,
    store: &BlobStore,
    platform: &Platform,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let metadata = fs::metadata(path).map_err(|source| ArchiveError::Io {
        action: "open",
        path: path.to_path_buf(),
        source,
    })?;
    let images = if metadata.is_dir() {
        import_layout_directory(path, store, platform)?
    } else {
        import_tar(path, store, platform)?
    };
    info!(archive = %path.display(), images = images.len(), "image archive imported");
    Ok(images)
}

fn import_layout_directory(
    path: &Path,
    store: &BlobStore,
    platform: &Platform,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let index =
        read_small_file(path, "index.json")?.ok_or_else(|| ArchiveError::NotALayoutDirectory {
            path: path.to_path_buf(),
        })?;
    if let Some(layout) = read_small_file(path, "oci-layout")? {
        check_layout(path, &layout)?;
    }
    let mut importer = Importer {
        path,
        store,
        platform,
        layout_directory: Some(path),
        verified: HashSet::new(),
    };
    importer.layout_images(&index)
}

/// Reads `name` in `directory` whole, if it exists, refusing one larger than a document may be.
fn read_small_file(directory: &Path, name: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
    let file_path = directory.join(name);
    let file = match File::open(&file_path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ArchiveError::Io {
                action: "open",
                path: file_path,
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ArchiveError::Io {
            action: "read",
            path: file_path.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ArchiveError::MetadataTooLarge {
            path: directory.to_path_buf(),
            entry: name.to_string(),
            size: bytes.len() as u64,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(Some(bytes))
}

fn check_layout(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let layout: OciLayout =
        serde_json::from_slice(bytes).map_err(|source| ArchiveError::Metadata {
            path: path.to_path_buf(),
            file: "oci-layout",
            source,
        })?;
    if layout.image_layout_version.starts_with("1.") {
        Ok(())
    } else {
        Err(ArchiveError::LayoutVersion {
            path: path.to_path_buf(),
            version: layout.image_layout_version,
        })
    }
}

fn import_tar(
    path: &Path,
    store: &BlobStore,
    platform: &Platform,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let contents = read_tar(path, store)?;
    let mut importer = Importer {
        path,
        store,
        platform,
        layout_directory: None,
        verified: contents.verified,
    };
    let docker_manifest = contents
        .metadata
        .get(Path::new("manifest.json"))
        .map(|bytes| {
            serde_json::from_slice::<Vec<DockerSaveEntry>>(bytes).map_err(|source| {
                ArchiveError::Metadata {
                    path: path.to_path_buf(),
                    file: "manifest.json",
                    source,
                }
            })
        })
        .transpose()?;
    if let Some(index) = contents.metadata.get(Path::new("index.json")) {
        if let Some(layout) = contents.metadata.get(Path::new("oci-layout")) {
            check_layout(path, layout)?;
        }
        let mut images = importer.layout_images(index)?;
        // Docker 25 and later write both; its OCI annotations may lack names RepoTags has.
        for entry in docker_manifest.iter().flatten() {
            let Some(config) = archive_path(Path::new(&entry.config))
                .ok()
                .and_then(|config| contents.files.get(&config))
            else {
                continue;
            };
            for image in images
                .iter_mut()
                .filter(|image| image.names.is_empty() && image.manifest.config.digest == config.0)
            {
                image.names = normalize_names(entry.repo_tags.iter().flatten());
            }
        }
        Ok(images)
    } else if let Some(entries) = docker_manifest {
        importer.docker_save_images(&entries, &contents.files)
    } else {
        Err(ArchiveError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

/// What one pass over a tar left: its files in the store, its metadata in memory.
struct TarContents {
    /// Every regular file (and link to one) by its path in the archive: digest and size.
    files: HashMap<PathBuf, (Digest, u64)>,
    /// The small JSON files at the archive's root ([`is_metadata`]).
    metadata: HashMap<PathBuf, Vec<u8>>,
    /// Blobs this pass wrote and the store verified while writing.
    verified: HashSet<Digest>,
}

/// Opens the tar at `path`, decompressing it if it starts with gzip or zstd magic.
fn open_tar(path: &Path) -> Result<Box<dyn Read>, ArchiveError> {
    let io_error = |action, source| ArchiveError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| io_error("open", source))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let magic = reader
        .fill_buf()
        .map_err(|source| io_error("read", source))?;
    Ok(if magic.starts_with(GZIP_MAGIC) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(ZSTD_MAGIC) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|source| io_error("decompress", source))?,
        )
    } else {
        Box::new(reader)
    })
}

fn read_tar(path: &Path, store: &BlobStore) -> Result<TarContents, ArchiveError> {
    let tar_error = |source| ArchiveError::Io {
        action: "read the tar archive",
        path: path.to_path_buf(),
        source,
    };
    let mut contents = TarContents {
        files: HashMap::new(),
        metadata: HashMap::new(),
        verified: HashSet::new(),
    };
    let mut archive = tar::Archive::new(open_tar(path)?);
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let raw_path = entry.path().map_err(tar_error)?.into_owned();
        let unsafe_entry = |problem| ArchiveError::UnsafeEntry {
            path: path.to_path_buf(),
            entry: raw_path.display().to_string(),
            problem,
        };
        let entry_path = archive_path(&raw_path).map_err(unsafe_entry)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if entry_path.as_os_str().is_empty() {
            return Err(unsafe_entry("has no name"));
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(tar_error)?
                .map(|target| target.into_owned())
                .unwrap_or_default();
            let resolved = resolve_link(&entry_path, &target, kind.is_symlink())
                .ok_or_else(|| unsafe_entry("links outside the archive"))?;
            if let Some(file) = contents.files.get(&resolved).cloned() {
                contents.files.insert(entry_path, file);
            } else if let Some(bytes) = contents.metadata.get(&resolved).cloned() {
                contents.metadata.insert(entry_path, bytes);
            } else {
                return Err(ArchiveError::DanglingLink {
                    path: path.to_path_buf(),
                    entry: entry_path.display().to_string(),
                    target: target.display().to_string(),
                });
            }
            continue;
        }
        if !kind.is_file() {
            // Devices, fifos and the like have no place in an image archive; nothing uses them.
            continue;
        }
        let entry_name = entry_path.display().to_string();
        let store_error = |source| ArchiveError::Store {
            path: path.to_path_buf(),
            what: entry_name.clone(),
            source,
        };
        if is_metadata(&entry_path) {
            let size = entry.size();
            if size > MAX_DOCUMENT_BYTES {
                return Err(ArchiveError::MetadataTooLarge {
                    path: path.to_path_buf(),
                    entry: entry_name,
                    size,
                    limit: MAX_DOCUMENT_BYTES,
                });
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(tar_error)?;
            contents.metadata.insert(entry_path, bytes);
        } else if let Some(digest) = blob_name(&entry_path) {
            let size = entry.size();
            if let Some(mut ingest) = store.ingest(&digest).map_err(store_error)? {
                // A tar cannot skip ahead, so a partial blob left by an interrupted import is
                // rewritten rather than resumed.
                ingest.restart().map_err(store_error)?;
                copy_into_ingest(path, &entry_name, &mut entry, ingest, size)?;
                contents.verified.insert(digest.clone());
            }
            contents.files.insert(entry_path, (digest, size));
        } else {
            let stored = store.put_stream(&mut entry).map_err(store_error)?;
            contents.files.insert(entry_path, stored);
        }
    }
    Ok(contents)
}

/// Small JSON files read into memory rather than stored. `repositories` (legacy names, which
/// `manifest.json` repeats) is read only so that it does not end up in the store.
fn is_metadata(entry_path: &Path) -> bool {
    ["index.json", "oci-layout", "manifest.json", "repositories"]
        .iter()
        .any(|name| entry_path == Path::new(name))
}

/// The digest a `blobs/sha256/<hex>` path names.
fn blob_name(entry_path: &Path) -> Option<Digest> {
    let hex = entry_path.strip_prefix("blobs/sha256").ok()?.to_str()?;
    format!("sha256:{hex}").parse().ok()
}

/// The path of an entry relative to the archive's root, refusing absolute paths and `..`.
fn archive_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("has a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(clean)
}

/// Where a link entry points, lexically within the archive: a symlink's target is relative to
/// its directory, a hard link's to the archive's root. `None` if it leaves the archive.
fn resolve_link(entry_path: &Path, target: &Path, symbolic: bool) -> Option<PathBuf> {
    let mut resolved: Vec<&OsStr> = Vec::new();
    if symbolic {
        resolved.extend(entry_path.parent()?.iter());
    }
    for component in target.components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(resolved.iter().collect())
}

/// Streams `reader` into `ingest` and commits it, which verifies digest and size.
fn copy_into_ingest(
    path: &Path,
    entry_name: &str,
    reader: &mut dyn Read,
    mut ingest: Ingest,
    size: u64,
) -> Result<(), ArchiveError> {
    let store_error = |source| ArchiveError::Store {
        path: path.to_path_buf(),
        what: entry_name.to_string(),
        source,
    };
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ArchiveError::Io {
                    action: "read",
                    path: path.join(entry_name),
                    source,
                })
            }
        };
        ingest.write(&buffer[..count]).map_err(store_error)?;
    }
    match ingest.commit(Some(size)) {
        Ok(_) => Ok(()),
        Err(StoreError::DigestMismatch { actual, .. }) => Err(ArchiveError::Tampered {
            path: path.to_path_buf(),
            entry: entry_name.to_string(),
            actual,
        }),
        Err(source) => Err(store_error(source)),
    }
}

/// Normalises image names, dropping (with a warning) those that are not valid references.
fn normalize_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut normalized: Vec<String> = Vec::new();
    for name in names {
        match ward_spec::units::normalize_image(name) {
            Ok(name) if !normalized.contains(&name) => normalized.push(name),
            Ok(_) => {}
            Err(reason) => warn!(
                name = %name,
                %reason,
                "image archive names an invalid image; the name is ignored"
            ),
        }
    }
    normalized
}

/// The names an OCI layout's index entry gives its image. A bare `ref.name` (`latest`, `1.0`)
/// is only a tag, as `skopeo copy ... oci:DIR:TAG` writes it, and names nothing.
fn names_from_annotations(entry: &Descriptor) -> Vec<String> {
    let containerd = entry.annotations.get(CONTAINERD_NAME);
    let reference = entry
        .annotations
        .get(REF_NAME)
        .filter(|reference| reference.contains('/') || reference.contains(':'));
    normalize_names(containerd.into_iter().chain(reference))
}

/// Walks the documents of one import and checks that every blob they need is stored.
struct Importer<'a> {
    path: &'a Path,
    store: &'a BlobStore,
    platform: &'a Platform,
    /// An OCI layout directory to copy blobs from when they are needed; `None` for a tar,
    /// whose blobs are all stored by the time documents are read.
    layout_directory: Option<&'a Path>,
    /// Blobs this import wrote and the store verified while writing: no need to read again.
    verified: HashSet<Digest>,
}

impl Importer<'_> {
    fn store_error(&self, what: impl Into<String>) -> impl FnOnce(StoreError) -> ArchiveError {
        let path = self.path.to_path_buf();
        let what = what.into();
        move |source| ArchiveError::Store { path, what, source }
    }

    fn manifest_error(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(ManifestError) -> ArchiveError {
        let path = self.path.to_path_buf();
        let what = what.into();
        move |source| ArchiveError::Manifest { path, what, source }
    }

    /// Makes sure `descriptor`'s blob is stored with the size it announces.
    fn fetch(&mut self, descriptor: &Descriptor) -> Result<(), ArchiveError> {
        let digest = &descriptor.digest;
        if let Some(directory) = self.layout_directory {
            if !self.store.contains(digest) {
                self.copy_from_directory(directory, descriptor)?;
            }
        }
        match self.store.size(digest) {
            None => Err(ArchiveError::MissingBlob {
                path: self.path.to_path_buf(),
                digest: digest.clone(),
            }),
            Some(size) if size != descriptor.size => Err(ArchiveError::Store {
                path: self.path.to_path_buf(),
                what: format!("blobs/sha256/{}", digest.hex()),
                source: StoreError::SizeMismatch {
                    digest: digest.clone(),
                    expected: descriptor.size,
                    actual: size,
                },
            }),
            Some(_) => Ok(()),
        }
    }

    /// Copies a blob out of an OCI layout directory, resuming an interrupted copy.
    fn copy_from_directory(
        &mut self,
        directory: &Path,
        descriptor: &Descriptor,
    ) -> Result<(), ArchiveError> {
        let digest = &descriptor.digest;
        let entry_name = format!("blobs/sha256/{}", digest.hex());
        let source_path = directory.join(&entry_name);
        let mut file = match File::open(&source_path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ArchiveError::MissingBlob {
                    path: self.path.to_path_buf(),
                    digest: digest.clone(),
                })
            }
            Err(source) => {
                return Err(ArchiveError::Io {
                    action: "open",
                    path: source_path,
                    source,
                })
            }
        };
        let Some(ingest) = self
            .store
            .ingest(digest)
            .map_err(self.store_error(entry_name.clone()))?
        else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(ingest.offset()))
            .map_err(|source| ArchiveError::Io {
                action: "read",
                path: source_path,
                source,
            })?;
        copy_into_ingest(self.path, &entry_name, &mut file, ingest, descriptor.size)?;
        self.verified.insert(digest.clone());
        Ok(())
    }

    /// Reads a stored manifest, index or config (verified, size-limited).
    fn read_document(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>, ArchiveError> {
        self.fetch(descriptor)?;
        self.store
            .read(&descriptor.digest)
            .map_err(self.store_error(format!("blobs/sha256/{}", descriptor.digest.hex())))
    }

    /// Checks a layer is stored whole and uncorrupted.
    fn check_layer(&mut self, descriptor: &Descriptor) -> Result<(), ArchiveError> {
        self.fetch(descriptor)?;
        if !self.verified.contains(&descriptor.digest) {
            self.store
                .verify(&descriptor.digest)
                .map_err(self.store_error(format!("layer {}", descriptor.digest)))?;
            self.verified.insert(descriptor.digest.clone());
        }
        Ok(())
    }

    /// Every image an OCI layout's `index.json` lists, `platform`'s from nested indexes.
    fn layout_images(&mut self, index_bytes: &[u8]) -> Result<Vec<ImportedImage>, ArchiveError> {
        let index = match manifest::parse_document(index_bytes, Some(OCI_INDEX))
            .map_err(self.manifest_error("index.json"))?
        {
            Document::Index(index) => index,
            Document::Manifest(_) => {
                return Err(ArchiveError::UnexpectedDocument {
                    path: self.path.to_path_buf(),
                    what: "index.json".to_string(),
                    found: "an image manifest",
                    expected: "image index",
                })
            }
        };
        let mut images: Vec<ImportedImage> = Vec::new();
        for entry in &index.manifests {
            let names = names_from_annotations(entry);
            let chosen = match entry.media_type.as_str() {
                OCI_INDEX | DOCKER_LIST => {
                    let what = format!("image index {}", entry.digest);
                    let bytes = self.read_document(entry)?;
                    let nested = match manifest::parse_document(&bytes, Some(&entry.media_type))
                        .map_err(self.manifest_error(what.clone()))?
                    {
                        Document::Index(nested) => nested,
                        Document::Manifest(_) => {
                            return Err(ArchiveError::UnexpectedDocument {
                                path: self.path.to_path_buf(),
                                what,
                                found: "an image manifest",
                                expected: "image index",
                            })
                        }
                    };
                    manifest::select_platform(&nested, self.platform)
                        .map_err(self.manifest_error(what))?
                        .clone()
                }
                OCI_MANIFEST | DOCKER_MANIFEST => {
                    if entry
                        .platform
                        .as_ref()
                        .is_some_and(|platform| !platform.runs_on(self.platform))
                    {
                        continue;
                    }
                    entry.clone()
                }
                other => {
                    warn!(
                        archive = %self.path.display(),
                        digest = %entry.digest,
                        media_type = other,
                        "index.json lists neither an image nor an index; the entry is skipped"
                    );
                    continue;
                }
            };
            if let Some(image) = images
                .iter_mut()
                .find(|image| image.manifest_digest == chosen.digest)
            {
                for name in names {
                    if !image.names.contains(&name) {
                        image.names.push(name);
                    }
                }
                continue;
            }
            let what = format!("image manifest {}", chosen.digest);
            let bytes = self.read_document(&chosen)?;
            let manifest = match manifest::parse_document(&bytes, Some(&chosen.media_type))
                .map_err(self.manifest_error(what.clone()))?
            {
                Document::Manifest(manifest) => manifest,
                Document::Index(_) => {
                    return Err(ArchiveError::UnexpectedDocument {
                        path: self.path.to_path_buf(),
                        what,
                        found: "an image index",
                        expected: "image manifest",
                    })
                }
            };
            images.push(self.complete_image(chosen.digest, manifest, names)?);
        }
        if images.is_empty() {
            // Only top-level manifests for other platforms (or nothing usable) were listed.
            manifest::select_platform(&index, self.platform)
                .map_err(self.manifest_error("index.json"))?;
            return Err(ArchiveError::NoImages {
                path: self.path.to_path_buf(),
                what: "index.json",
            });
        }
        Ok(images)
    }

    /// Every image a legacy `docker save` `manifest.json` lists, each given an OCI manifest.
    fn docker_save_images(
        &mut self,
        entries: &[DockerSaveEntry],
        files: &HashMap<PathBuf, (Digest, u64)>,
    ) -> Result<Vec<ImportedImage>, ArchiveError> {
        let path = self.path;
        let lookup = |entry: &str| {
            archive_path(Path::new(entry))
                .ok()
                .and_then(|entry_path| files.get(&entry_path))
                .cloned()
                .ok_or_else(|| ArchiveError::MissingEntry {
                    path: path.to_path_buf(),
                    entry: entry.to_string(),
                })
        };
        let mut images: Vec<ImportedImage> = Vec::new();
        for entry in entries {
            let (config_digest, config_size) = lookup(&entry.config)?;
            let mut layers = Vec::with_capacity(entry.layers.len());
            for layer in &entry.layers {
                let (digest, size) = lookup(layer)?;
                let media_type = match sniff_compression(self.store, &digest)
                    .map_err(self.store_error(layer.clone()))?
                {
                    Compression::None => OCI_LAYER,
                    Compression::Gzip => OCI_LAYER_GZIP,
                    Compression::Zstd => OCI_LAYER_ZSTD,
                };
                layers.push(plain_descriptor(media_type, digest, size));
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.to_string()),
                config: plain_descriptor(OCI_CONFIG, config_digest, config_size),
                layers,
                annotations: Default::default(),
            };
            let bytes = serde_json::to_vec(&manifest)
                .expect("a manifest of strings and numbers always serialises");
            let manifest_digest = Digest::of(&bytes);
            self.store
                .put(&manifest_digest, &bytes)
                .map_err(self.store_error("the manifest made for manifest.json"))?;
            let names = normalize_names(entry.repo_tags.iter().flatten());
            if let Some(image) = images
                .iter_mut()
                .find(|image| image.manifest_digest == manifest_digest)
            {
                for name in names {
                    if !image.names.contains(&name) {
                        image.names.push(name);
                    }
                }
                continue;
            }
            images.push(self.complete_image(manifest_digest, manifest, names)?);
        }
        if images.is_empty() {
            return Err(ArchiveError::NoImages {
                path: self.path.to_path_buf(),
                what: "manifest.json",
            });
        }
        Ok(images)
    }

    /// Reads and checks the config, and checks every layer, of a manifest already stored.
    fn complete_image(
        &mut self,
        manifest_digest: Digest,
        manifest: Manifest,
        names: Vec<String>,
    ) -> Result<ImportedImage, ArchiveError> {
        let what = format!("image {manifest_digest}");
        let config_bytes = self.read_document(&manifest.config)?;
        let config =
            ImageConfig::parse(&config_bytes).map_err(self.manifest_error(what.clone()))?;
        config
            .check(&manifest, self.platform)
            .map_err(self.manifest_error(what))?;
        for layer in &manifest.layers {
            self.check_layer(layer)?;
        }
        Ok(ImportedImage {
            names,
            manifest_digest,
            manifest,
            config,
        })
    }
}

fn plain_descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: None,
        annotations: Default::default(),
    }
}

/// How a stored layer is compressed, told by its first bytes.
fn sniff_compression(store: &BlobStore, digest: &Digest) -> Result<Compression, StoreError> {
    let mut reader = store.open(digest)?;
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(into_store_error(error, digest)),
        }
    }
    let magic = &magic[..filled];
    Ok(if magic.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if magic.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// One image being exported, with every name it is exported under.
struct ExportedImage {
    manifest_digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    names: Vec<String>,
}

/// Writes `images` to `out` as a tar that is both an OCI image layout and a `docker save`
/// archive `docker load` reads. Every blob is read back from the store and verified as it is
/// written: a corrupt blob fails the export (after part of the tar was written). The same
/// images always give the same bytes.
pub fn export(
    images: &[ExportImage],
    store: &BlobStore,
    out: &mut dyn Write,
) -> Result<(), ArchiveError> {
    let mut exported: Vec<ExportedImage> = Vec::new();
    for image in images {
        let digest = &image.manifest_digest;
        let name = image
            .name
            .as_deref()
            .map(ward_spec::units::normalize_image)
            .transpose()
            .map_err(|reason| ArchiveError::ExportName {
                digest: digest.clone(),
                reason,
            })?;
        if let Some(existing) = exported
            .iter_mut()
            .find(|existing| &existing.manifest_digest == digest)
        {
            existing
                .names
                .extend(name.filter(|name| !existing.names.contains(name)));
            continue;
        }
        let export_error = |source| ArchiveError::ExportBlob {
            digest: digest.clone(),
            source,
        };
        let manifest_bytes = store.read(digest).map_err(export_error)?;
        let manifest = match manifest::parse_document(&manifest_bytes, None).map_err(|source| {
            ArchiveError::ExportManifest {
                digest: digest.clone(),
                source,
            }
        })? {
            Document::Manifest(manifest) => manifest,
            Document::Index(_) => {
                return Err(ArchiveError::ExportIndex {
                    digest: digest.clone(),
                })
            }
        };
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            match store.size(&blob.digest) {
                None => {
                    return Err(export_error(StoreError::Missing {
                        digest: blob.digest.clone(),
                    }))
                }
                Some(size) if size != blob.size => {
                    return Err(export_error(StoreError::SizeMismatch {
                        digest: blob.digest.clone(),
                        expected: blob.size,
                        actual: size,
                    }))
                }
                Some(_) => {}
            }
        }
        exported.push(ExportedImage {
            manifest_digest: digest.clone(),
            manifest_bytes,
            manifest,
            names: name.into_iter().collect(),
        });
    }

    let mut builder = tar::Builder::new(out);
    let write_error = |source| ArchiveError::Write { source };
    for directory in ["blobs/", "blobs/sha256/"] {
        let mut header = deterministic_header(tar::EntryType::Directory, 0o755, 0);
        builder
            .append_data(&mut header, directory, io::empty())
            .map_err(write_error)?;
    }
    let layout = OciLayout {
        image_layout_version: "1.0.0".to_string(),
    };
    let documents = [
        ("oci-layout", to_json(&layout)),
        ("index.json", to_json(&export_index(&exported))),
        ("manifest.json", to_json(&export_docker_manifest(&exported))),
    ];
    for (name, bytes) in documents {
        let mut header = deterministic_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .map_err(write_error)?;
    }
    let mut written: HashSet<Digest> = HashSet::new();
    for image in &exported {
        if written.insert(image.manifest_digest.clone()) {
            let mut header = deterministic_header(
                tar::EntryType::Regular,
                0o644,
                image.manifest_bytes.len() as u64,
            );
            builder
                .append_data(
                    &mut header,
                    blob_path(&image.manifest_digest),
                    image.manifest_bytes.as_slice(),
                )
                .map_err(write_error)?;
        }
        for blob in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
            if !written.insert(blob.digest.clone()) {
                continue;
            }
            let blob_error = |source| ArchiveError::ExportBlob {
                digest: image.manifest_digest.clone(),
                source,
            };
            let reader = store.open(&blob.digest).map_err(blob_error)?;
            let mut header = deterministic_header(tar::EntryType::Regular, 0o644, blob.size);
            builder
                .append_data(&mut header, blob_path(&blob.digest), reader)
                .map_err(|error| blob_error(into_store_error(error, &blob.digest)))?;
        }
    }
    builder.into_inner().map_err(write_error)?;
    Ok(())
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("archive metadata of strings and numbers always serialises")
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn deterministic_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

/// The tag part of a normalised name (`docker.io/library/busybox:1.36` → `1.36`), if it has
/// one rather than only a digest.
fn tag_of(name: &str) -> Option<&str> {
    let without_digest = name.split_once('@').map_or(name, |(before, _)| before);
    let last_segment = &without_digest[without_digest.rfind('/').map_or(0, |slash| slash + 1)..];
    last_segment.split_once(':').map(|(_, tag)| tag)
}

/// `index.json`: one entry per name (one unannotated entry for an unnamed image). The entry's
/// media type is the manifest's own, so a Docker v2 manifest stays described as one.
fn export_index(exported: &[ExportedImage]) -> Index {
    let mut manifests = Vec::new();
    for image in exported {
        let descriptor = plain_descriptor(
            image.manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST),
            image.manifest_digest.clone(),
            image.manifest_bytes.len() as u64,
        );
        if image.names.is_empty() {
            manifests.push(descriptor.clone());
        }
        for name in &image.names {
            let mut descriptor = descriptor.clone();
            descriptor
                .annotations
                .insert(CONTAINERD_NAME.to_string(), name.clone());
            if let Some(tag) = tag_of(name) {
                descriptor
                    .annotations
                    .insert(REF_NAME.to_string(), tag.to_string());
            }
            manifests.push(descriptor);
        }
    }
    Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests,
        annotations: Default::default(),
    }
}

/// `manifest.json` in `docker save` form, pointing into `blobs/sha256`.
fn export_docker_manifest(exported: &[ExportedImage]) -> Vec<DockerSaveEntry> {
    exported
        .iter()
        .map(|image| DockerSaveEntry {
            config: blob_path(&image.manifest.config.digest),
            repo_tags: Some(
                image
                    .names
                    .iter()
                    .filter(|name| tag_of(name).is_some())
                    .cloned()
                    .collect(),
            ),
            layers: image
                .manifest
                .layers
                .iter()
                .map(|layer| blob_path(&layer.digest))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;

    fn foreign_platforms() -> Vec<Platform> {
        let host = Platform::host();
        ["s390x", "riscv64", "ppc64le"]
            .into_iter()
            .filter(|architecture| *architecture != host.architecture)
            .take(2)
            .map(|architecture| Platform {
                architecture: architecture.to_string(),
                os: "linux".to_string(),
                variant: None,
            })
            .collect()
    }

    /// An uncompressed layer holding one file.
    fn layer(name: &str, content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = deterministic_header(tar::EntryType::Regular, 0o644, content.len() as u64);
        builder.append_data(&mut header, name, content).unwrap();
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn config(platform: &Platform, diff_ids: &[Digest]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    fn descriptor(
        media_type: &str,
        bytes: &[u8],
        platform: Option<&Platform>,
        annotations: &[(&str, &str)],
    ) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            platform: platform.cloned(),
            annotations: annotations
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// An image of uncompressed layers: its manifest and every blob it needs.
    struct TestImage {
        manifest_bytes: Vec<u8>,
        config_bytes: Vec<u8>,
        layers: Vec<Vec<u8>>,
    }

    impl TestImage {
        fn new(platform: &Platform, layers: Vec<Vec<u8>>) -> TestImage {
            let diff_ids: Vec<Digest> = layers.iter().map(|layer| Digest::of(layer)).collect();
            let config_bytes = config(platform, &diff_ids);
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.to_string()),
                config: descriptor(OCI_CONFIG, &config_bytes, None, &[]),
                layers: layers
                    .iter()
                    .map(|layer| descriptor(OCI_LAYER, layer, None, &[]))
                    .collect(),
                annotations: Default::default(),
            };
            TestImage {
                manifest_bytes: serde_json::to_vec(&manifest).unwrap(),
                config_bytes,
                layers,
            }
        }

        fn digest(&self) -> Digest {
            Digest::of(&self.manifest_bytes)
        }

        /// Its entry in an index.
        fn entry(&self, platform: Option<&Platform>, annotations: &[(&str, &str)]) -> Descriptor {
            descriptor(OCI_MANIFEST, &self.manifest_bytes, platform, annotations)
        }

        fn blobs(&self) -> Vec<Vec<u8>> {
            let mut blobs = vec![self.manifest_bytes.clone(), self.config_bytes.clone()];
            blobs.extend(self.layers.iter().cloned());
            blobs
        }
    }

    fn index(entries: Vec<Descriptor>) -> Vec<u8> {
        serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: entries,
            annotations: Default::default(),
        })
        .unwrap()
    }

    /// The files of an OCI layout: `oci-layout`, `index.json` and `blobs`.
    fn layout(index: Vec<u8>, blobs: Vec<Vec<u8>>) -> Vec<Entry> {
        let mut files = vec![
            Entry::File(
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            Entry::File("index.json".into(), index),
        ];
        for blob in blobs {
            files.push(Entry::File(blob_path(&Digest::of(&blob)), blob));
        }
        files
    }

    enum Entry {
        File(String, Vec<u8>),
        Symlink(String, String),
        /// A file whose name is written as is, bypassing the `tar` crate's checks.
        RawName(&'static [u8], Vec<u8>),
    }

    fn tar_of(entries: &[Entry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            match entry {
                Entry::File(name, bytes) => {
                    let mut header =
                        deterministic_header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
                    builder
                        .append_data(&mut header, name, bytes.as_slice())
                        .unwrap();
                }
                Entry::Symlink(name, target) => {
                    let mut header = deterministic_header(tar::EntryType::Symlink, 0o777, 0);
                    builder.append_link(&mut header, name, target).unwrap();
                }
                Entry::RawName(name, bytes) => {
                    let mut header = tar::Header::new_gnu();
                    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(0o644);
                    header.set_size(bytes.len() as u64);
                    header.set_cksum();
                    builder.append(&header, bytes.as_slice()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn write_directory(directory: &Path, entries: &[Entry]) {
        for entry in entries {
            let Entry::File(name, bytes) = entry else {
                panic!("a layout directory holds only files");
            };
            let path = directory.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
    }

    /// A temporary directory with a blob store in `store/`.
    struct Scratch {
        directory: tempfile::TempDir,
        store: BlobStore,
    }

    impl Scratch {
        fn new() -> Scratch {
            let directory = tempfile::tempdir().unwrap();
            let store = BlobStore::open_at(directory.path().join("store")).unwrap();
            Scratch { directory, store }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.directory.path().join(name)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.path(name);
            fs::write(&path, bytes).unwrap();
            path
        }

        fn import(&self, archive: &Path) -> Result<Vec<ImportedImage>, ArchiveError> {
            import(archive, &self.store, &Platform::host())
        }

        fn import_error(&self, archive: &Path) -> String {
            match self.import(archive) {
                Ok(images) => panic!("imported {} images from a bad archive", images.len()),
                Err(error) => error.to_string(),
            }
        }
    }

    /// Checks what an import returned against the images expected, as (manifest, names).
    fn check(images: &[ImportedImage], expected: &[(Digest, &[&str])]) {
        let found: Vec<(Digest, Vec<String>)> = images
            .iter()
            .map(|image| (image.manifest_digest.clone(), image.names.clone()))
            .collect();
        let expected: Vec<(Digest, Vec<String>)> = expected
            .iter()
            .map(|(digest, names)| {
                (
                    digest.clone(),
                    names.iter().map(|name| name.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn imports_an_oci_layout_directory() {
        let scratch = Scratch::new();
        let image = TestImage::new(
            &Platform::host(),
            vec![layer("etc/hostname", b"ward\n"), layer("bin/sh", b"#!")],
        );
        let directory = scratch.path("layout");
        // skopeo's `oci:DIR:1.0` writes the tag alone: the image has no name.
        let tag_only = index(vec![image.entry(None, &[(REF_NAME, "1.0")])]);
        write_directory(&directory, &layout(tag_only, image.blobs()));
        let images = scratch.import(&directory).unwrap();
        check(&images, &[(image.digest(), &[])]);
        assert_eq!(images[0].config.rootfs.diff_ids.len(), 2);
        assert_eq!(
            images[0].config.config.cmd,
            Some(vec!["/bin/sh".to_string()])
        );
        for blob in image.blobs() {
            scratch.store.verify(&Digest::of(&blob)).unwrap();
        }

        let full_name = index(vec![
            image.entry(None, &[(REF_NAME, "example.com/tools/app:1.0")])
        ]);
        fs::write(directory.join("index.json"), full_name).unwrap();
        check(
            &scratch.import(&directory).unwrap(),
            &[(image.digest(), &["example.com/tools/app:1.0"])],
        );
    }

    #[test]
    fn picks_the_host_manifest_from_a_multi_platform_layout_tar() {
        let scratch = Scratch::new();
        let host = Platform::host();
        let [foreign, other_foreign] = <[Platform; 2]>::try_from(foreign_platforms()).unwrap();
        let host_image = TestImage::new(&host, vec![layer("host", b"host")]);
        let foreign_image = TestImage::new(&foreign, vec![layer("foreign", b"foreign")]);
        let other_image = TestImage::new(&other_foreign, vec![layer("other", b"other")]);
        let nested = index(vec![
            foreign_image.entry(Some(&foreign), &[]),
            host_image.entry(Some(&host), &[]),
        ]);
        let top = index(vec![descriptor(
            OCI_INDEX,
            &nested,
            None,
            &[(CONTAINERD_NAME, "busybox:1.36"), (REF_NAME, "1.36")],
        )]);
        let mut blobs = vec![nested];
        blobs.extend(host_image.blobs());
        blobs.extend(foreign_image.blobs());
        let archive = scratch.write("multi.tar.gz", &gzip(&tar_of(&layout(top, blobs))));
        check(
            &scratch.import(&archive).unwrap(),
            &[(host_image.digest(), &["docker.io/library/busybox:1.36"])],
        );

        let without_host = index(vec![
            foreign_image.entry(Some(&foreign), &[]),
            other_image.entry(Some(&other_foreign), &[]),
        ]);
        let top = index(vec![descriptor(OCI_INDEX, &without_host, None, &[])]);
        let mut blobs = vec![without_host];
        blobs.extend(foreign_image.blobs());
        blobs.extend(other_image.blobs());
        let archive = scratch.write("foreign.tar", &tar_of(&layout(top, blobs)));
        let error = scratch.import_error(&archive);
        assert!(error.contains(&format!("no variant for {host}")), "{error}");
        assert!(
            error.contains(&format!("{foreign}, {other_foreign}")),
            "{error}"
        );
    }

    #[test]
    fn imports_a_legacy_docker_save_tar_with_a_duplicated_layer() {
        let scratch = Scratch::new();
        let base = layer("bin/busybox", b"\x7fELF");
        let top = layer("etc/motd", b"hello");
        let top_gzip = gzip(&top);
        let config_bytes = config(
            &Platform::host(),
            &[Digest::of(&base), Digest::of(&base), Digest::of(&top)],
        );
        let config_name = format!("{}.json", Digest::of(&config_bytes).hex());
        let manifest_json = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["busybox:latest"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
        }]))
        .unwrap();
        let archive = scratch.write(
            "busybox.tar",
            &tar_of(&[
                Entry::File("aaa/VERSION".into(), b"1.0".to_vec()),
                Entry::File("aaa/layer.tar".into(), base.clone()),
                Entry::Symlink("bbb/layer.tar".into(), "../aaa/layer.tar".into()),
                Entry::File("ccc/layer.tar".into(), top_gzip.clone()),
                Entry::File(config_name.clone(), config_bytes.clone()),
                Entry::File(
                    "repositories".into(),
                    br#"{"busybox":{"latest":"aaa"}}"#.to_vec(),
                ),
                Entry::File("manifest.json".into(), manifest_json),
            ]),
        );
        let images = scratch.import(&archive).unwrap();
        let [image] = images.as_slice() else {
            panic!("one image expected, got {}", images.len());
        };
        assert_eq!(image.names, ["docker.io/library/busybox:latest"]);
        assert_eq!(image.manifest.config.digest, Digest::of(&config_bytes));
        assert_eq!(image.manifest.config.media_type, OCI_CONFIG);
        let layers: Vec<(&str, Digest)> = image
            .manifest
            .layers
            .iter()
            .map(|layer| (layer.media_type.as_str(), layer.digest.clone()))
            .collect();
        assert_eq!(
            layers,
            [
                (OCI_LAYER, Digest::of(&base)),
                (OCI_LAYER, Digest::of(&base)),
                (OCI_LAYER_GZIP, Digest::of(&top_gzip)),
            ]
        );
        let stored = scratch.store.read(&image.manifest_digest).unwrap();
        let Document::Manifest(stored) = manifest::parse_document(&stored, None).unwrap() else {
            panic!("the stored manifest is an image manifest");
        };
        assert_eq!(stored.layers, image.manifest.layers);
    }

    #[test]
    fn names_come_from_repo_tags_when_the_layout_has_none() {
        let scratch = Scratch::new();
        let image = TestImage::new(&Platform::host(), vec![layer("a", b"a")]);
        let manifest_json = serde_json::to_vec(&serde_json::json!([{
            "Config": blob_path(&Digest::of(&image.config_bytes)),
            "RepoTags": ["registry.example.com:5000/team/app:2"],
            "Layers": [blob_path(&Digest::of(&image.layers[0]))],
        }]))
        .unwrap();
        let mut entries = layout(index(vec![image.entry(None, &[])]), image.blobs());
        entries.push(Entry::File("manifest.json".into(), manifest_json));
        let archive = scratch.write("docker25.tar", &tar_of(&entries));
        check(
            &scratch.import(&archive).unwrap(),
            &[(image.digest(), &["registry.example.com:5000/team/app:2"])],
        );
    }

    #[test]
    fn a_tampered_blob_is_refused() {
        let scratch = Scratch::new();
        let image = TestImage::new(&Platform::host(), vec![layer("a", b"original")]);
        let layer_digest = Digest::of(&image.layers[0]);
        let mut entries = layout(index(vec![image.entry(None, &[])]), image.blobs());
        for entry in &mut entries {
            if let Entry::File(name, bytes) = entry {
                if *name == blob_path(&layer_digest) {
                    *bytes = layer("a", b"tampered");
                }
            }
        }
        let directory = scratch.path("layout");
        write_directory(&directory, &entries);
        let archive = scratch.write("tampered.tar", &tar_of(&entries));
        for source in [directory, archive] {
            let error = scratch.import_error(&source);
            assert!(error.contains(&blob_path(&layer_digest)), "{error}");
            assert!(
                error.contains("does not hold what its name says"),
                "{error}"
            );
            assert!(!scratch.store.contains(&layer_digest));
        }
    }

    #[test]
    fn entries_leaving_the_archive_are_refused() {
        let scratch = Scratch::new();
        let evil = scratch.write(
            "evil.tar",
            &tar_of(&[Entry::RawName(b"../evil", b"x".to_vec())]),
        );
        let error = scratch.import_error(&evil);
        assert!(
            error.contains("\"../evil\" has a `..` component"),
            "{error}"
        );
        let absolute = scratch.write(
            "absolute.tar",
            &tar_of(&[Entry::RawName(b"/etc/evil", b"x".to_vec())]),
        );
        let error = scratch.import_error(&absolute);
        assert!(error.contains("is an absolute path"), "{error}");
        let link = scratch.write(
            "link.tar",
            &tar_of(&[Entry::Symlink(
                "a/layer.tar".into(),
                "../../etc/passwd".into(),
            )]),
        );
        let error = scratch.import_error(&link);
        assert!(error.contains("links outside the archive"), "{error}");
        let dangling = scratch.write(
            "dangling.tar",
            &tar_of(&[Entry::Symlink(
                "a/layer.tar".into(),
                "../b/layer.tar".into(),
            )]),
        );
        let error = scratch.import_error(&dangling);
        assert!(
            error.contains("not a file earlier in the archive"),
            "{error}"
        );
    }

    #[test]
    fn an_archive_of_something_else_is_named_in_the_error() {
        let scratch = Scratch::new();
        let archive = scratch.write(
            "notes.tar",
            &tar_of(&[Entry::File("notes.txt".into(), b"hi".to_vec())]),
        );
        let error = scratch.import_error(&archive);
        assert!(error.starts_with(&archive.display().to_string()), "{error}");
        assert!(error.contains("neither an OCI image layout"), "{error}");
    }

    /// Imports an image with two names into `scratch` and exports it.
    fn export_named(scratch: &Scratch) -> (TestImage, Vec<u8>) {
        let image = TestImage::new(
            &Platform::host(),
            vec![
                layer("a", b"shared"),
                layer("b", b"b"),
                layer("a", b"shared"),
            ],
        );
        let directory = scratch.path("layout");
        write_directory(
            &directory,
            &layout(index(vec![image.entry(None, &[])]), image.blobs()),
        );
        let imported = scratch.import(&directory).unwrap();
        let mut tar = Vec::new();
        export(
            &[
                ExportImage {
                    name: Some("busybox:1.36".into()),
                    manifest_digest: imported[0].manifest_digest.clone(),
                },
                ExportImage {
                    name: Some("example.com/busybox".into()),
                    manifest_digest: imported[0].manifest_digest.clone(),
                },
            ],
            &scratch.store,
            &mut tar,
        )
        .unwrap();
        (image, tar)
    }

    #[test]
    fn export_then_import_round_trips() {
        let scratch = Scratch::new();
        let (image, tar) = export_named(&scratch);
        let (_, again) = export_named(&Scratch::new());
        assert!(tar == again, "the same images export to the same bytes");

        let mut archive = tar::Archive::new(tar.as_slice());
        let mut paths = Vec::new();
        let mut docker_manifest = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            assert_eq!(entry.header().mtime().unwrap(), 0);
            assert_eq!(entry.header().uid().unwrap(), 0);
            let path = entry.path().unwrap().display().to_string();
            if path == "manifest.json" {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                docker_manifest =
                    Some(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
            }
            paths.push(path);
        }
        let blob_count = paths
            .iter()
            .filter(|path| blob_name(Path::new(path)).is_some())
            .count();
        assert_eq!(
            blob_count, 4,
            "manifest, config and two distinct layers once each: {paths:?}"
        );
        let docker_manifest = docker_manifest.unwrap();
        assert_eq!(
            docker_manifest[0]["RepoTags"],
            serde_json::json!([
                "docker.io/library/busybox:1.36",
                "example.com/busybox:latest"
            ])
        );
        assert_eq!(
            docker_manifest[0]["Config"],
            blob_path(&Digest::of(&image.config_bytes))
        );

        let fresh = Scratch::new();
        let archive = fresh.write("export.tar", &tar);
        check(
            &fresh.import(&archive).unwrap(),
            &[(
                image.digest(),
                &[
                    "docker.io/library/busybox:1.36",
                    "example.com/busybox:latest",
                ],
            )],
        );
    }

    #[test]
    fn a_corrupt_stored_blob_fails_the_export() {
        let scratch = Scratch::new();
        let image = TestImage::new(&Platform::host(), vec![layer("a", b"a")]);
        for blob in image.blobs() {
            scratch.store.put(&Digest::of(&blob), &blob).unwrap();
        }
        let layer_path = scratch.store.path(&Digest::of(&image.layers[0]));
        fs::set_permissions(&layer_path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut corrupt = image.layers[0].clone();
        corrupt[600] ^= 1;
        fs::write(&layer_path, corrupt).unwrap();
        let error = export(
            &[ExportImage {
                name: None,
                manifest_digest: image.digest(),
            }],
            &scratch.store,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            matches!(
                &error,
                ArchiveError::ExportBlob {
                    source: StoreError::DigestMismatch { .. },
                    ..
                }
            ),
            "{error}"
        );
    }

    /// Runs skopeo with a policy that accepts unsigned images; `None` if it is not installed.
    fn skopeo(scratch: &Scratch, args: &[String]) -> Option<Vec<u8>> {
        let policy = scratch.write(
            "policy.json",
            br#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        );
        let output = match Command::new("skopeo")
            .arg("--policy")
            .arg(policy)
            .args(args)
            .output()
        {
            Ok(output) => output,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => panic!("cannot run skopeo: {error}"),
        };
        assert!(
            output.status.success(),
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(output.stdout)
    }

    #[test]
    fn skopeo_reads_an_exported_archive_and_writes_ones_ward_imports() {
        let scratch = Scratch::new();
        let (image, tar) = export_named(&scratch);
        let unpacked = scratch.path("unpacked");
        tar::Archive::new(tar.as_slice()).unpack(&unpacked).unwrap();
        let layout = format!("oci:{}:1.36", unpacked.display());
        let Some(raw) = skopeo(
            &scratch,
            &["inspect".into(), "--raw".into(), layout.clone()],
        ) else {
            eprintln!("skipped: skopeo is not installed, so exports are not checked against it");
            return;
        };
        assert_eq!(raw, image.manifest_bytes);

        let oci_archive = scratch.path("skopeo-oci.tar");
        let docker_archive = scratch.path("skopeo-docker.tar");
        for destination in [
            format!("oci-archive:{}:1.36", oci_archive.display()),
            format!("docker-archive:{}:busybox:1.36", docker_archive.display()),
        ] {
            skopeo(&scratch, &["copy".into(), layout.clone(), destination]);
        }
        // skopeo rewrites manifests as it copies; the config (with the layers' digests) is kept.
        let fresh = Scratch::new();
        for (archive, names) in [
            (oci_archive, Vec::<String>::new()),
            (
                docker_archive,
                vec!["docker.io/library/busybox:1.36".to_string()],
            ),
        ] {
            let images = fresh.import(&archive).unwrap();
            let [imported] = images.as_slice() else {
                panic!(
                    "one image expected in {}, got {}",
                    archive.display(),
                    images.len()
                );
            };
            assert_eq!(imported.names, names);
            assert_eq!(
                imported.manifest.config.digest,
                Digest::of(&image.config_bytes)
            );
        }
    }
}
