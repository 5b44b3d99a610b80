//! Images by name, per project: pulls and imports record a name → manifest in the database,
//! the blobs and unpacked layers live in the shared store on disk, and `container` instances
//! resolve their image through here (pulling it on first use, as `docker run` does).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ward_image::credentials::{self, CredentialStore};
use ward_image::layers::LayerStore;
use ward_image::manifest::{ImageConfig, Manifest, Platform};
use ward_image::pull::{Credentials, PullOptions, PullProgress, Puller};
use ward_image::Digest;
use ward_runtime::ImageResolver;
use ward_store::{ImageRecord, Store};

pub use ward_core::view::PruneReport;

use crate::gate::Admission;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Invalid(String),
    #[error("image {reference} not found in project {project}; pull or import it first")]
    NotFound { project: String, reference: String },
    #[error("image {reference} is used by workload {workload}; remove the workload first or use --force")]
    InUse { reference: String, workload: String },
    #[error("{0}")]
    Pull(#[from] ward_image::pull::PullError),
    #[error("{0}")]
    Archive(String),
    /// Reading or writing Ward's own files failed.
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Layers(#[from] ward_image::layers::LayerError),
    #[error("{0}")]
    Blobs(#[from] ward_image::store::StoreError),
    #[error("{0}")]
    Store(#[from] ward_store::StoreError),
    #[error("{0}")]
    Credentials(#[from] ward_image::credentials::CredentialError),
    #[error("not logged in to registry {registry} in project {project}")]
    NotLoggedIn { project: String, registry: String },
}

/// What kind of failure an [`ImageError`] is, for callers that answer with a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageErrorKind {
    /// The request is wrong (a reference that is not one, an archive that is not an image).
    Invalid,
    /// The image (or login) does not exist, here or at the registry.
    NotFound,
    /// A workload uses it.
    InUse,
    /// The registry is unreachable, refused, or sent something broken.
    Upstream,
    /// Ward's own storage failed; the details (host paths included) belong in the log.
    Internal,
}

impl ImageError {
    pub fn kind(&self) -> ImageErrorKind {
        use ward_image::credentials::CredentialError;
        use ward_image::layers::LayerError;
        use ward_image::pull::PullError;
        use ward_image::store::StoreError as BlobError;
        match self {
            ImageError::Invalid(_) | ImageError::Archive(_) => ImageErrorKind::Invalid,
            ImageError::NotFound { .. } | ImageError::NotLoggedIn { .. } => {
                ImageErrorKind::NotFound
            }
            ImageError::InUse { .. } => ImageErrorKind::InUse,
            ImageError::Pull(PullError::Reference { .. })
            | ImageError::Credentials(CredentialError::Registry { .. }) => ImageErrorKind::Invalid,
            ImageError::Pull(PullError::Registry { message, .. })
                if ward_image::pull::says_image_is_missing(message) =>
            {
                ImageErrorKind::NotFound
            }
            ImageError::Pull(PullError::Store(BlobError::Io { .. }))
            | ImageError::Blobs(BlobError::Io { .. })
            | ImageError::Layers(LayerError::Io { .. })
            | ImageError::Layers(LayerError::Store(BlobError::Io { .. }))
            | ImageError::Store(_)
            | ImageError::Io(_)
            | ImageError::Credentials(
                CredentialError::Io { .. } | CredentialError::Corrupt { .. },
            ) => ImageErrorKind::Internal,
            ImageError::Pull(_)
            | ImageError::Credentials(
                CredentialError::Unreachable { .. } | CredentialError::Refused { .. },
            ) => ImageErrorKind::Upstream,
            ImageError::Blobs(_) | ImageError::Layers(_) => ImageErrorKind::Invalid,
        }
    }
}

/// The canonical form of a registry name, as logins are keyed (`docker.io` for Docker Hub's
/// several names); `None` if it is not a registry name.
pub fn canonical_registry(registry: &str) -> Option<String> {
    ward_image::credentials::canonical_registry(registry).ok()
}

/// A named image with its manifest and config.
#[derive(Clone, Debug)]
pub struct StoredImage {
    pub record: ImageRecord,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// The daemon's images; cheap to clone.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    layers: LayerStore,
    puller: Puller,
    credentials: CredentialStore,
    platform: Platform,
    /// Registries spoken to over plain HTTP (`host:port`), by configuration.
    insecure_registries: Vec<String>,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ImageService")
            .finish_non_exhaustive()
    }
}

impl ImageService {
    /// `store` is the daemon's database; `credentials` keeps the registry logins.
    pub fn new(
        store: Arc<Store>,
        layers: LayerStore,
        credentials: CredentialStore,
        insecure_registries: Vec<String>,
    ) -> ImageService {
        let puller = Puller::new(layers.blobs().clone());
        ImageService {
            inner: Arc::new(Inner {
                store,
                layers,
                puller,
                credentials,
                platform: Platform::host(),
                insecure_registries,
            }),
        }
    }

    pub fn normalize(reference: &str) -> Result<String, ImageError> {
        ward_spec::units::normalize_image(reference).map_err(ImageError::Invalid)
    }

    /// Pulls `reference` into `project` and names it there, in one transaction with the
    /// call's audit entry (blobs go first; a blob no name needs is pruned).
    pub async fn pull(
        &self,
        project: &str,
        reference: &str,
        plain_http: bool,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        admission: Option<&Admission>,
    ) -> Result<StoredImage, ImageError> {
        let reference = Self::normalize(reference)?;
        let registry = reference.split('/').next().unwrap_or_default().to_string();
        let options = PullOptions {
            plain_http: plain_http || self.plain_http(&registry),
            credentials: self.inner.credentials.get(project, &registry)?,
        };
        let pulled = self
            .inner
            .puller
            .pull(&reference, &self.inner.platform, &options, progress)
            .await?;
        // Unpacked as part of the pull, as `docker pull` does: the first run starts at once,
        // and a layer that does not unpack fails the pull rather than the workload.
        self.unpack(&pulled.manifest_digest).await?;
        let record = image_record(
            project,
            &reference,
            &pulled.manifest_digest,
            &pulled.manifest,
            &pulled.config,
            "pull",
        );
        let mut records = self.name(project, vec![record], admission)?;
        Ok(StoredImage {
            record: records.remove(0),
            manifest: pulled.manifest,
            config: pulled.config,
        })
    }

    /// Imports a `docker save` archive or an OCI layout (directory or tar) into `project`.
    /// Images the archive does not name get `name` (when given) or stay nameless and are
    /// refused.
    pub async fn import(
        &self,
        project: &str,
        path: PathBuf,
        name: Option<String>,
        admission: Option<&Admission>,
    ) -> Result<Vec<StoredImage>, ImageError> {
        let name = name.map(|name| Self::normalize(&name)).transpose()?;
        let blobs = self.inner.layers.blobs().clone();
        let platform = self.inner.platform.clone();
        let shown = path.display().to_string();
        let imported = tokio::task::spawn_blocking(move || {
            ward_image::archive::import(&path, &blobs, &platform)
        })
        .await
        .map_err(|error| ImageError::Archive(error.to_string()))?
        .map_err(|error| match &error {
            // Failing to read or write Ward's own files is Ward's problem, not the archive's.
            ward_image::archive::ArchiveError::Io { path, .. }
                if path.display().to_string() != shown =>
            {
                ImageError::Io(error.to_string())
            }
            // Where the daemon keeps uploads is its own business.
            _ => ImageError::Archive(error.to_string().replace(&shown, "the archive")),
        })?;
        if name.is_some() {
            // One name for several images would leave it on whichever came last.
            let mut digests: Vec<&Digest> = imported
                .iter()
                .map(|image| &image.manifest_digest)
                .collect();
            digests.sort_unstable_by_key(|digest| digest.to_string());
            digests.dedup();
            if digests.len() > 1 {
                let mut names: Vec<String> = imported
                    .iter()
                    .flat_map(|image| image.names.iter().cloned())
                    .collect();
                names.sort_unstable();
                names.dedup();
                let held = if names.is_empty() {
                    format!("{} images", digests.len())
                } else {
                    format!("{} images ({})", digests.len(), names.join(", "))
                };
                return Err(ImageError::Invalid(format!(
                    "--name: the archive holds {held}, and one name can point at one of them; import it without --name to keep their own names"
                )));
            }
        }
        for image in &imported {
            self.unpack(&image.manifest_digest).await?;
        }
        let mut records = Vec::new();
        let mut images = Vec::new();
        for image in imported {
            let mut names = image.names.clone();
            if let Some(name) = &name {
                names = vec![name.clone()];
            }
            if names.is_empty() {
                return Err(ImageError::Invalid(format!(
                    "the archive names no image {}; give one with --name",
                    image.manifest_digest
                )));
            }
            for reference in names {
                records.push(image_record(
                    project,
                    &reference,
                    &image.manifest_digest,
                    &image.manifest,
                    &image.config,
                    "import",
                ));
                images.push((image.manifest.clone(), image.config.clone()));
            }
        }
        let records = self.name(project, records, admission)?;
        Ok(records
            .into_iter()
            .zip(images)
            .map(|(record, (manifest, config))| StoredImage {
                record,
                manifest,
                config,
            })
            .collect())
    }

    /// Unpacks the layers of a stored image that are not unpacked yet.
    async fn unpack(&self, manifest_digest: &Digest) -> Result<(), ImageError> {
        let layers = self.inner.layers.clone();
        let digest = manifest_digest.clone();
        tokio::task::spawn_blocking(move || layers.prepare(&digest))
            .await
            .map_err(|error| {
                ImageError::Archive(format!("unpacking {manifest_digest}: {error}"))
            })??;
        Ok(())
    }

    /// Stores the names in one transaction with the call's audit entry; returns them as
    /// stored.
    fn name(
        &self,
        project: &str,
        records: Vec<ImageRecord>,
        admission: Option<&Admission>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        self.inner.store.ensure_project(project, None)?;
        crate::gate::audited(admission, 200, |audit| {
            self.inner.store.put_images(&records, audit)
        })?;
        records
            .into_iter()
            .map(|record| {
                Ok(self
                    .inner
                    .store
                    .get_image(project, &record.reference)?
                    .unwrap_or(record))
            })
            .collect()
    }

    /// How `project` reaches `registry`: its login there, and plain HTTP where asked or
    /// where Ward speaks it unasked.
    pub fn registry_options(
        &self,
        project: &str,
        registry: &str,
        plain_http: bool,
    ) -> Result<PullOptions, ImageError> {
        Ok(PullOptions {
            plain_http: plain_http || self.plain_http(registry),
            credentials: self.inner.credentials.get(project, registry)?,
        })
    }

    /// Whether Ward speaks plain HTTP to `registry` without being asked: loopback registries
    /// (as Docker does) and those the configuration names.
    pub(crate) fn plain_http(&self, registry: &str) -> bool {
        credentials::is_loopback_registry(registry)
            || self
                .inner
                .insecure_registries
                .iter()
                .any(|insecure| insecure == registry)
    }

    /// Checks `username` and `password` against `registry` and keeps them for the pulls of
    /// `project`; returns the registry's canonical name.
    pub async fn login(
        &self,
        project: &str,
        registry: &str,
        username: &str,
        password: &str,
        plain_http: bool,
        admission: Option<&Admission>,
    ) -> Result<String, ImageError> {
        let registry = credentials::canonical_registry(registry)?;
        if username.is_empty() {
            return Err(ImageError::Invalid("username: give a username".to_string()));
        }
        if password.is_empty() {
            return Err(ImageError::Invalid(
                "password: give a password or token".to_string(),
            ));
        }
        let login = Credentials {
            username: username.to_string(),
            password: password.to_string(),
        };
        credentials::check_login(&registry, &login, plain_http || self.plain_http(&registry))
            .await?;
        crate::gate::audited_ahead(&self.inner.store, admission, || {
            Ok::<_, ImageError>(self.inner.credentials.set(project, &registry, &login)?)
        })?;
        tracing::info!(registry = %registry, project, username, "registry login kept");
        Ok(registry)
    }

    /// Forgets the login of `project` for `registry`; returns the canonical name.
    pub fn logout(
        &self,
        project: &str,
        registry: &str,
        admission: Option<&Admission>,
    ) -> Result<String, ImageError> {
        let registry = credentials::canonical_registry(registry)?;
        let not_logged_in = || ImageError::NotLoggedIn {
            project: project.to_string(),
            registry: registry.clone(),
        };
        let logged_in = self
            .inner
            .credentials
            .list(project)?
            .iter()
            .any(|(known, _)| *known == registry);
        if !logged_in {
            return Err(not_logged_in());
        }
        crate::gate::audited_ahead(&self.inner.store, admission, || {
            match self.inner.credentials.remove(project, &registry)? {
                true => Ok(()),
                false => Err(not_logged_in()),
            }
        })?;
        Ok(registry)
    }

    /// `(registry, username)` of the logins of `project`.
    pub fn logins(&self, project: &str) -> Result<Vec<(String, String)>, ImageError> {
        Ok(self.inner.credentials.list(project)?)
    }

    /// Verifies every blob of the named images of `project` against its digest: an export
    /// checks first, so that a corrupt store fails with a message and not with a cut archive.
    pub fn verify(&self, project: &str, references: &[String]) -> Result<(), ImageError> {
        for reference in references {
            let view = self.get(project, reference)?;
            let blobs = self.inner.layers.blobs();
            let digest: Digest = view.record.manifest_digest.parse().map_err(
                |error: ward_image::digest::DigestError| ImageError::Invalid(error.to_string()),
            )?;
            blobs.verify(&digest)?;
            blobs.verify(&view.manifest.config.digest)?;
            for layer in &view.manifest.layers {
                blobs.verify(&layer.digest)?;
            }
        }
        Ok(())
    }

    /// Writes the named images of `project` to `out` as one tar that is both an OCI layout and
    /// a `docker save` archive.
    pub fn export(
        &self,
        project: &str,
        references: &[String],
        out: &mut dyn std::io::Write,
    ) -> Result<(), ImageError> {
        let mut images = Vec::new();
        for reference in references {
            let record = self.find(project, reference)?;
            let manifest_digest = record.manifest_digest.parse().map_err(
                |error: ward_image::digest::DigestError| ImageError::Invalid(error.to_string()),
            )?;
            images.push(ward_image::archive::ExportImage {
                name: Some(record.reference),
                manifest_digest,
            });
        }
        ward_image::archive::export(&images, self.inner.layers.blobs(), out)
            .map_err(|error| ImageError::Archive(error.to_string()))
    }

    pub fn list(&self, project: &str) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.inner.store.list_images(Some(project))?)
    }

    /// One image, by name or by (a prefix of at least 12 hex digits of) its manifest digest.
    pub fn get(&self, project: &str, reference: &str) -> Result<StoredImage, ImageError> {
        let record = self.find(project, reference)?;
        let digest: Digest =
            record
                .manifest_digest
                .parse()
                .map_err(|error: ward_image::digest::DigestError| {
                    ImageError::Invalid(error.to_string())
                })?;
        let (manifest, config) = self.inner.layers.read_image(&digest)?;
        Ok(StoredImage {
            record,
            manifest,
            config,
        })
    }

    fn find(&self, project: &str, reference: &str) -> Result<ImageRecord, ImageError> {
        let not_found = || ImageError::NotFound {
            project: project.to_string(),
            reference: reference.to_string(),
        };
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 12 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            if let Some(record) = self
                .list(project)?
                .into_iter()
                .find(|record| record.manifest_digest["sha256:".len()..].starts_with(hex))
            {
                return Ok(record);
            }
        }
        let normalized = Self::normalize(reference).map_err(|_| not_found())?;
        self.inner
            .store
            .get_image(project, &normalized)?
            .ok_or_else(not_found)
    }

    /// Removes a name; `in_use` lists the workloads whose spec names it.
    pub fn remove(
        &self,
        project: &str,
        reference: &str,
        in_use: &[String],
        force: bool,
        admission: Option<&Admission>,
    ) -> Result<ImageRecord, ImageError> {
        let record = self.find(project, reference)?;
        if let (Some(workload), false) = (in_use.first(), force) {
            return Err(ImageError::InUse {
                reference: record.reference,
                workload: workload.clone(),
            });
        }
        crate::gate::audited(admission, 200, |audit| {
            self.inner
                .store
                .delete_image(project, &record.reference, audit)
        })?;
        Ok(record)
    }

    /// Deletes every blob and unpacked layer that no named image (in any project) and no
    /// image in `in_use` (those instances run) needs.
    pub fn prune(&self, in_use: &[Digest]) -> Result<PruneReport, ImageError> {
        let mut keep: BTreeSet<Digest> = BTreeSet::new();
        let named = self
            .inner
            .store
            .list_images(None)?
            .into_iter()
            .filter_map(|record| record.manifest_digest.parse::<Digest>().ok());
        for digest in named.chain(in_use.iter().cloned()) {
            keep.insert(digest.clone());
            if let Ok((manifest, _)) = self.inner.layers.read_image(&digest) {
                keep.insert(manifest.config.digest.clone());
                keep.extend(manifest.layers.iter().map(|layer| layer.digest.clone()));
            }
        }
        let mut report = PruneReport::default();
        let blobs = self.inner.layers.blobs();
        for (digest, size) in blobs.list()? {
            if !keep.contains(&digest) {
                blobs.remove(&digest)?;
                report.blobs += 1;
                report.bytes += size;
            }
        }
        for digest in self.inner.layers.list() {
            if !keep.contains(&digest) {
                self.inner.layers.remove(&digest)?;
                report.layers += 1;
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl ImageResolver for ImageService {
    async fn resolve(&self, project: &str, reference: &str) -> Result<Digest, String> {
        let normalized = Self::normalize(reference).map_err(|error| error.to_string())?;
        let known = self
            .inner
            .store
            .get_image(project, &normalized)
            .map_err(|error| error.to_string())?;
        let digest = match known {
            Some(record) => record.manifest_digest,
            None => {
                tracing::info!(image = %normalized, project, "pulling image");
                self.pull(project, &normalized, false, &|_| {}, None)
                    .await
                    .map_err(|error| error.to_string())?
                    .record
                    .manifest_digest
            }
        };
        digest
            .parse()
            .map_err(|error: ward_image::digest::DigestError| error.to_string())
    }
}

/// The record that names an image `reference` in `project`.
fn image_record(
    project: &str,
    reference: &str,
    manifest_digest: &Digest,
    manifest: &Manifest,
    config: &ImageConfig,
    source: &str,
) -> ImageRecord {
    let now = crate::time::to_millis(SystemTime::now());
    let size = manifest.config.size + manifest.layers.iter().map(|layer| layer.size).sum::<u64>();
    ImageRecord {
        project: project.to_string(),
        reference: reference.to_string(),
        manifest_digest: manifest_digest.to_string(),
        config_digest: manifest.config.digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        platform: config.platform().to_string(),
        source: source.to_string(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}
