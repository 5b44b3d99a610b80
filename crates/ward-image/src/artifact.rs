//! OCI artifacts that are not images: a manifest whose config and layers carry media types
//! of their own, as Docker Model Runner stores models (a GGUF file as one layer, a small
//! config of the model's metadata). Pulled through the same verified, resumable blob store as
//! image layers; pushed blob by blob, streamed from disk, then the manifest.

use std::path::Path;

use futures_util::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::json;

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::pull::{PullError, PullOptions, PullProgress, Puller};
use crate::store::MAX_DOCUMENT_BYTES;

/// Docker Model Runner's model config.
pub const MODEL_CONFIG: &str = "application/vnd.docker.ai.model.config.v0.1+json";
/// Docker Model Runner's GGUF layer.
pub const GGUF_LAYER: &str = "application/vnd.docker.ai.gguf.v3";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPTED: [&str; 3] = [OCI_MANIFEST, OCI_INDEX, DOCKER_LIST];
/// Most layers an artifact may list.
const MAX_LAYERS: usize = 64;

/// A pulled artifact: its manifest, its config, and its layers of the wanted media types in
/// the store.
#[derive(Clone, Debug)]
pub struct PulledArtifact {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: Vec<u8>,
}

fn reference(reference: &str) -> Result<Reference, PullError> {
    let parts = ward_spec::units::ImageReference::parse(reference).map_err(|reason| {
        PullError::Reference {
            reference: reference.to_string(),
            reason,
        }
    })?;
    Ok(match (parts.tag, parts.digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(parts.registry, parts.repository, tag, digest)
        }
        (Some(tag), None) => Reference::with_tag(parts.registry, parts.repository, tag),
        (None, Some(digest)) => Reference::with_digest(parts.registry, parts.repository, digest),
        (None, None) => Reference::with_tag(parts.registry, parts.repository, "latest".into()),
    })
}

fn client(parsed: &Reference, options: &PullOptions) -> Client {
    Client::new(ClientConfig {
        protocol: if options.plain_http {
            ClientProtocol::HttpsExcept(vec![
                parsed.registry().to_string(),
                parsed.resolve_registry().to_string(),
            ])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: None,
        ..ClientConfig::default()
    })
}

fn auth(options: &PullOptions) -> RegistryAuth {
    match &options.credentials {
        Some(credentials) => {
            RegistryAuth::Basic(credentials.username.clone(), credentials.password.clone())
        }
        None => RegistryAuth::Anonymous,
    }
}

impl Puller {
    /// Pulls the artifact `reference_text` (normalised): its manifest, its config, and the
    /// layers whose media type is in `wanted`. An index is followed to its first manifest.
    pub async fn pull_artifact(
        &self,
        reference_text: &str,
        options: &PullOptions,
        wanted: &[&str],
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PulledArtifact, PullError> {
        let parsed = reference(reference_text)?;
        let client = client(&parsed, options);
        let auth = auth(options);
        let registry_error =
            |error: oci_client::errors::OciDistributionError| PullError::Registry {
                registry: parsed.resolve_registry().to_string(),
                message: error.to_string(),
            };
        let (mut bytes, _) = client
            .pull_manifest_raw(&parsed, &auth, &ACCEPTED)
            .await
            .map_err(registry_error)?;
        let malformed = |reason: String| PullError::Registry {
            registry: parsed.resolve_registry().to_string(),
            message: format!("{reference_text}: {reason}"),
        };
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(malformed("its manifest is too large".into()));
        }
        let document: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|error| malformed(format!("its manifest is not JSON: {error}")))?;
        if let Some(first) = document["manifests"]
            .as_array()
            .and_then(|list| list.first())
        {
            let digest = first["digest"]
                .as_str()
                .ok_or_else(|| malformed("its index names no manifest".into()))?;
            let pinned = parsed.clone_with_digest(digest.to_string());
            bytes = client
                .pull_manifest_raw(&pinned, &auth, &ACCEPTED)
                .await
                .map_err(registry_error)?
                .0;
        }
        let manifest_digest = Digest::of(&bytes);
        if let Some(pinned) = parsed.digest() {
            if pinned != manifest_digest.to_string() {
                return Err(malformed(format!(
                    "the registry sent a manifest that hashes to {manifest_digest}, not {pinned}"
                )));
            }
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|error| malformed(format!("its manifest cannot be read: {error}")))?;
        if manifest.schema_version != 2 || manifest.layers.len() > MAX_LAYERS {
            return Err(malformed("its manifest is not one Ward reads".into()));
        }
        if manifest.config.size > MAX_DOCUMENT_BYTES {
            return Err(malformed("its config is too large".into()));
        }
        let layers: Vec<&Descriptor> = manifest
            .layers
            .iter()
            .filter(|layer| wanted.contains(&layer.media_type.as_str()))
            .collect();
        let mut blobs = vec![(manifest.config.digest.clone(), manifest.config.size)];
        blobs.extend(
            layers
                .iter()
                .map(|layer| (layer.digest.clone(), layer.size)),
        );
        progress(PullProgress::Resolved {
            manifest_digest: manifest_digest.clone(),
            blobs,
        });
        self.fetch(&client, &parsed, &auth, &manifest.config, progress)
            .await?;
        let config = self.store().read(&manifest.config.digest)?;
        for layer in layers {
            self.fetch(&client, &parsed, &auth, layer, progress).await?;
        }
        Ok(PulledArtifact {
            manifest_digest,
            manifest,
            config,
        })
    }

    async fn fetch(
        &self,
        client: &Client,
        parsed: &Reference,
        auth: &RegistryAuth,
        descriptor: &Descriptor,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), PullError> {
        // The blob calls assume the client has authenticated for pulls.
        client
            .auth(parsed, auth, RegistryOperation::Pull)
            .await
            .map_err(|error| PullError::Registry {
                registry: parsed.resolve_registry().to_string(),
                message: error.to_string(),
            })?;
        self.fetch_blob(client, parsed, descriptor, progress).await
    }
}

/// A layer to push: its media type and the file that holds it.
#[derive(Clone, Debug)]
pub struct PushLayer<'a> {
    pub media_type: &'a str,
    pub file: &'a Path,
    pub digest: Digest,
    pub size: u64,
}

/// Pushes an artifact: each layer streamed from its file (unless the registry has it), the
/// config, then the manifest. Returns the manifest's digest.
pub async fn push_artifact(
    reference_text: &str,
    options: &PullOptions,
    config_media_type: &str,
    config: &[u8],
    layers: &[PushLayer<'_>],
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<Digest, PullError> {
    let parsed = reference(reference_text)?;
    let client = client(&parsed, options);
    let auth = auth(options);
    let registry_error = |error: oci_client::errors::OciDistributionError| PullError::Registry {
        registry: parsed.resolve_registry().to_string(),
        message: error.to_string(),
    };
    client
        .auth(&parsed, &auth, RegistryOperation::Push)
        .await
        .map_err(registry_error)?;
    let config_digest = Digest::of(config);
    let mut blobs = vec![(config_digest.clone(), config.len() as u64)];
    blobs.extend(
        layers
            .iter()
            .map(|layer| (layer.digest.clone(), layer.size)),
    );
    progress(PullProgress::Resolved {
        manifest_digest: config_digest.clone(),
        blobs,
    });
    for layer in layers {
        let file = tokio::fs::File::open(layer.file).await.map_err(|error| {
            PullError::Store(crate::store::StoreError::Io {
                action: "open",
                path: layer.file.to_path_buf(),
                source: error,
            })
        })?;
        let digest = layer.digest.clone();
        let total = layer.size;
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0u8; 1 << 20];
            let read = file.read(&mut buffer).await.map_err(|error| {
                oci_client::errors::OciDistributionError::GenericError(Some(error.to_string()))
            })?;
            if read == 0 {
                return Ok(None);
            }
            buffer.truncate(read);
            Ok(Some((bytes::Bytes::from(buffer), file)))
        });
        let counted = {
            let sent = sent.clone();
            stream.inspect_ok(move |chunk| {
                sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            })
        };
        progress(PullProgress::Blob {
            digest: digest.clone(),
            done: 0,
            total,
        });
        client
            .push_blob_stream(&parsed, counted, &digest.to_string(), Some(total))
            .await
            .map_err(registry_error)?;
        progress(PullProgress::Blob {
            digest,
            done: total,
            total,
        });
    }
    client
        .push_blob(&parsed, config.to_vec(), &config_digest.to_string())
        .await
        .map_err(registry_error)?;
    progress(PullProgress::Blob {
        digest: config_digest.clone(),
        done: config.len() as u64,
        total: config.len() as u64,
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_media_type, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|layer| json!({
            "mediaType": layer.media_type, "digest": layer.digest.to_string(), "size": layer.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    client
        .push_manifest_raw(
            &parsed,
            bytes.clone(),
            OCI_MANIFEST.parse().expect("a valid header value"),
        )
        .await
        .map_err(registry_error)?;
    Ok(Digest::of(&bytes))
}
