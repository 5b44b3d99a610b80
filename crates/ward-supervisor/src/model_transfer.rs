//! Models from elsewhere and to elsewhere: `ward model pull` from an `https://` URL, from
//! Hugging Face (`hf://ORG/REPO/FILE`), or from an OCI registry in Docker Model Runner's
//! layout; `ward model push` to a registry in that layout, so models move between Ward and
//! `docker model` through any registry. Downloads resume after an interruption (a URL's
//! partial file, a registry blob's ingest file, both under `DATA/models/pull`) and are
//! verified before a name points at them.

use std::path::PathBuf;

use serde_json::json;
use ward_core::view::{ModelView, PullProgress};
use ward_image::artifact::{PushLayer, GGUF_LAYER, MODEL_CONFIG};
use ward_image::pull::Puller;
use ward_image::{BlobStore, Digest};

use crate::gate::Admission;
use crate::images::{ImageError, ImageService};
use crate::models::{ModelError, ModelService};

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file at a URL (Hugging Face's resolved to theirs).
    Url(String),
    /// An artifact in a registry (normalised reference).
    Registry(String),
}

/// Pulls and pushes models; cheap to share.
#[derive(Clone, Debug)]
pub struct ModelTransfers {
    models: ModelService,
    images: ImageService,
    puller: Puller,
    /// Partial downloads of URLs, by a hash of the URL.
    downloads: PathBuf,
    /// Where `hf://` points: `HF_ENDPOINT`, as the Hugging Face tools read it, else theirs.
    hf_endpoint: String,
}

impl ModelTransfers {
    pub fn new(
        models: ModelService,
        images: ImageService,
        data_dir: &std::path::Path,
        hf_endpoint: Option<String>,
    ) -> Result<ModelTransfers, ModelError> {
        let root = data_dir.join("models").join("pull");
        let store = BlobStore::open_at(&root).map_err(|error| ModelError::Io(error.to_string()))?;
        let downloads = root.join("urls");
        std::fs::create_dir_all(&downloads).map_err(|error| ModelError::Io(error.to_string()))?;
        let _ =
            std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        Ok(ModelTransfers {
            models,
            images,
            puller: Puller::new(store),
            downloads,
            hf_endpoint: hf_endpoint
                .or_else(|| std::env::var("HF_ENDPOINT").ok())
                .filter(|endpoint| !endpoint.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".to_string())
                .trim_end_matches('/')
                .to_string(),
        })
    }

    /// What `text` names, and the model name it suggests.
    pub fn parse_source(&self, text: &str) -> Result<(Source, String), ModelError> {
        let invalid = |reason: &str| {
            ModelError::Invalid(format!(
                "source {text:?}: {reason}; give https://…/FILE.gguf, hf://ORG/REPO/FILE.gguf, or a registry reference like registry.example/ns/model:tag"
            ))
        };
        let stem = |path: &str| {
            let file = path.rsplit('/').next().unwrap_or(path);
            let file = file.split(['?', '#']).next().unwrap_or(file);
            file.strip_suffix(".gguf").unwrap_or(file).to_string()
        };
        if let Some(rest) = text.strip_prefix("hf://") {
            let mut parts = rest.splitn(3, '/');
            let (Some(organisation), Some(repository), Some(file)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(invalid("hf:// takes ORG/REPO/FILE"));
            };
            let (repository, revision) = repository.split_once('@').unwrap_or((repository, "main"));
            let safe = |part: &str| {
                !part.is_empty()
                    && !part
                        .split('/')
                        .any(|segment| segment.is_empty() || segment == "..")
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            };
            if ![organisation, repository, revision, file]
                .iter()
                .all(|part| safe(part))
            {
                return Err(invalid(
                    "hf:// parts hold letters, digits, '.', '_', '-' and '/'",
                ));
            }
            return Ok((
                Source::Url(format!(
                    "{}/{organisation}/{repository}/resolve/{revision}/{file}",
                    self.hf_endpoint
                )),
                stem(file),
            ));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            let url = scheme_and_host(text).ok_or_else(|| invalid("it is not a URL"))?;
            if url.0 == "http" && !self.plain_http_host(&url.1) {
                return Err(invalid(
                    "plain http:// is taken only for loopback hosts and insecure_registries; use https://",
                ));
            }
            return Ok((Source::Url(text.to_string()), stem(text)));
        }
        let reference =
            ImageService::normalize(text).map_err(|error| invalid(&error.to_string()))?;
        let parts = ward_spec::units::ImageReference::parse(&reference)
            .map_err(|reason| invalid(&reason))?;
        let last = parts
            .repository
            .rsplit('/')
            .next()
            .unwrap_or(&parts.repository)
            .to_string();
        let name = match parts.tag.as_deref() {
            Some(tag) if tag != "latest" => format!("{last}:{tag}"),
            _ => last,
        };
        Ok((Source::Registry(reference), name))
    }

    fn plain_http_host(&self, host: &str) -> bool {
        self.images.plain_http(host)
    }

    /// Pulls `source` into `project` as `name` (or the name the source suggests).
    pub async fn pull(
        &self,
        project: &str,
        source: &str,
        name: Option<&str>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        admission: Option<&Admission>,
    ) -> Result<ModelView, ModelError> {
        let (parsed, suggested) = self.parse_source(source)?;
        let name = name.map_or(suggested, str::to_string);
        crate::models::validate_name(&name)?;
        match parsed {
            Source::Url(url) => {
                let key = {
                    use sha2::Digest as _;
                    let digest = sha2::Sha256::digest(url.as_bytes());
                    digest[..12]
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect::<String>()
                };
                let partial = self.downloads.join(format!("{key}.partial"));
                let label = "download".to_string();
                let resolved = std::sync::atomic::AtomicBool::new(false);
                let report = |done: u64, total: u64| {
                    if !resolved.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        progress(PullProgress::Resolved {
                            manifest_digest: url.clone(),
                            blobs: vec![(label.clone(), total)],
                        });
                    }
                    progress(PullProgress::Blob {
                        digest: label.clone(),
                        done,
                        total,
                    });
                };
                let downloaded = ward_image::download::download(&url, &partial, &report)
                    .await
                    .map_err(|error| ModelError::Upstream(error.to_string()))?;
                let models = self.models.clone();
                let project = project.to_string();
                let admission = admission.cloned();
                let source = url.clone();
                spawn_blocking(move || {
                    models.adopt(
                        &project,
                        &downloaded.path,
                        downloaded.digest.hex(),
                        &name,
                        &source,
                        admission.as_ref(),
                    )
                })
                .await
            }
            Source::Registry(reference) => {
                let registry = reference.split('/').next().unwrap_or_default().to_string();
                let options = self
                    .images
                    .registry_options(project, &registry, false)
                    .map_err(image_error)?;
                let report = |update: ward_image::pull::PullProgress| {
                    progress(crate::services::pull_progress(update))
                };
                let artifact = self
                    .puller
                    .pull_artifact(&reference, &options, &[GGUF_LAYER], &report)
                    .await
                    .map_err(|error| ModelError::Upstream(error.to_string()))?;
                let _ = self.puller.store().remove(&artifact.manifest.config.digest);
                let ggufs: Vec<_> = artifact
                    .manifest
                    .layers
                    .iter()
                    .filter(|layer| layer.media_type == GGUF_LAYER)
                    .collect();
                let [layer] = ggufs.as_slice() else {
                    return Err(ModelError::Invalid(format!(
                        "{reference} holds {} GGUF layers ({GGUF_LAYER}); a model has one",
                        ggufs.len()
                    )));
                };
                let path = self.puller.store().path(&layer.digest);
                let hex = layer.digest.hex().to_string();
                let models = self.models.clone();
                let project = project.to_string();
                let admission = admission.cloned();
                spawn_blocking(move || {
                    models.adopt(&project, &path, &hex, &name, &reference, admission.as_ref())
                })
                .await
            }
        }
    }

    /// Pushes model `name` of `project` to `reference` in Docker Model Runner's layout;
    /// returns the manifest's digest.
    pub async fn push(
        &self,
        project: &str,
        name: &str,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<String, ModelError> {
        let model = self.models.get(project, name)?;
        let file = self
            .models
            .file(&model.digest)
            .ok_or_else(|| ModelError::Io(format!("the file of model {name} is missing")))?;
        let reference = ImageService::normalize(reference)
            .map_err(|error| ModelError::Invalid(format!("reference {reference:?}: {error}")))?;
        let registry = reference.split('/').next().unwrap_or_default().to_string();
        let options = self
            .images
            .registry_options(project, &registry, false)
            .map_err(image_error)?;
        let digest: Digest = model
            .digest
            .parse()
            .map_err(|_| ModelError::Io(format!("model {name} has a malformed digest")))?;
        let size = model.size;
        let metadata = &model.metadata;
        let config = json!({
            "config": {
                "format": "gguf",
                "architecture": metadata.architecture,
                "quantization": metadata.quantization,
                "parameters": metadata.parameters.to_string(),
                "size": size.to_string(),
                "context_size": metadata.context_length,
            },
            "descriptor": {"created": humantime::format_rfc3339_seconds(model.created_at).to_string()},
            "rootfs": {"type": "rootfs", "diff_ids": [model.digest]},
        });
        let config = serde_json::to_vec(&config).unwrap_or_default();
        let report = |update: ward_image::pull::PullProgress| {
            progress(crate::services::pull_progress(update))
        };
        let pushed = ward_image::artifact::push_artifact(
            &reference,
            &options,
            MODEL_CONFIG,
            &config,
            &[PushLayer {
                media_type: GGUF_LAYER,
                file: &file,
                digest,
                size,
            }],
            &report,
        )
        .await
        .map_err(|error| ModelError::Upstream(error.to_string()))?;
        Ok(pushed.to_string())
    }
}

/// The scheme and host of a URL, if it is one.
fn scheme_and_host(text: &str) -> Option<(String, String)> {
    let (scheme, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    if host.is_empty() {
        return None;
    }
    Some((scheme.to_string(), host.to_string()))
}

fn image_error(error: ImageError) -> ModelError {
    ModelError::Invalid(error.to_string())
}

async fn spawn_blocking(
    work: impl FnOnce() -> Result<ModelView, ModelError> + Send + 'static,
) -> Result<ModelView, ModelError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ModelError::Io(format!("the import stopped: {error}")))?
}
