//! Pulling images from OCI Distribution registries (Docker Hub, GHCR, Quay, private ones)
//! into the blob store, with `oci-client` speaking the protocol.
//!
//! A pull resolves the reference to a manifest (picking the host's platform from an index),
//! then fetches the config and the layers it lacks, up to [`CONCURRENT_BLOBS`] at a time.
//! Every blob goes through [`BlobStore::ingest`]: it is verified before it is stored, a blob
//! that another pull is fetching is waited for rather than fetched twice, and a blob whose
//! download was interrupted resumes from the bytes already on disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::digest::Digest;
use crate::manifest::{
    parse_document, select_platform, Descriptor, Document, ImageConfig, Manifest, ManifestError,
    Platform, ACCEPTED_MANIFESTS,
};
use crate::store::{BlobStore, StoreError, MAX_DOCUMENT_BYTES};

/// Layers fetched at once.
pub const CONCURRENT_BLOBS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("{reference}: {source}")]
    Manifest {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("{reference}: the registry sent a manifest that hashes to {actual}, not {expected}")]
    ManifestDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference}: the manifest is larger than {MAX_DOCUMENT_BYTES} bytes")]
    ManifestTooLarge { reference: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{reference}: the registry answered with an invalid digest: {text}")]
    BadDigest { reference: String, text: String },
}

/// Whether an error's text says the image does not exist (a registry's "manifest unknown" or
/// "name unknown", a store's "not found") rather than that it could not be reached.
pub fn says_image_is_missing(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "manifest unknown",
        "name unknown",
        "not found",
        "does not exist",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// Credentials for one registry.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach the registry of one pull.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Speak plain HTTP to this registry (an explicit opt-in; never the default).
    pub plain_http: bool,
    pub credentials: Option<Credentials>,
}

/// What a pull reports while it runs.
#[derive(Clone, Debug)]
pub enum PullProgress {
    /// The manifest is known: these blobs make up the image.
    Resolved {
        manifest_digest: Digest,
        blobs: Vec<(Digest, u64)>,
    },
    /// `done` of `total` bytes of a blob are stored (resumed bytes included).
    Blob {
        digest: Digest,
        done: u64,
        total: u64,
    },
}

/// A pulled image: every blob it needs is in the store.
#[derive(Clone, Debug)]
pub struct PulledImage {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// Pulls images into one store; shares in-flight downloads between concurrent pulls.
#[derive(Clone, Debug)]
pub struct Puller {
    store: BlobStore,
    in_flight: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Puller {
    pub fn new(store: BlobStore) -> Puller {
        Puller {
            store,
            in_flight: Arc::default(),
        }
    }

    /// Pulls `reference` (normalised, like `docker.io/library/busybox:1.36`) for `platform`.
    pub async fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        options: &PullOptions,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PulledImage, PullError> {
        // Read by Ward's one reference grammar, and handed to the client in parts.
        let parts = ward_spec::units::ImageReference::parse(reference).map_err(|reason| {
            PullError::Reference {
                reference: reference.to_string(),
                reason,
            }
        })?;
        let parsed = match (parts.tag, parts.digest) {
            (Some(tag), Some(digest)) => {
                Reference::with_tag_and_digest(parts.registry, parts.repository, tag, digest)
            }
            (Some(tag), None) => Reference::with_tag(parts.registry, parts.repository, tag),
            (None, Some(digest)) => {
                Reference::with_digest(parts.registry, parts.repository, digest)
            }
            (None, None) => {
                Reference::with_tag(parts.registry, parts.repository, "latest".to_string())
            }
        };
        let registry = parsed.resolve_registry().to_string();
        let client = Client::new(ClientConfig {
            protocol: if options.plain_http {
                ClientProtocol::HttpsExcept(vec![parsed.registry().to_string(), registry.clone()])
            } else {
                ClientProtocol::Https
            },
            platform_resolver: None,
            ..ClientConfig::default()
        });
        let auth = match &options.credentials {
            Some(credentials) => {
                RegistryAuth::Basic(credentials.username.clone(), credentials.password.clone())
            }
            None => RegistryAuth::Anonymous,
        };
        let registry_error =
            |error: oci_client::errors::OciDistributionError| PullError::Registry {
                registry: registry.clone(),
                message: explain_registry_error(&error, parsed.registry(), reference),
            };

        let (bytes, _) = client
            .pull_manifest_raw(&parsed, &auth, &ACCEPTED_MANIFESTS)
            .await
            .map_err(registry_error)?;
        let pinned = parsed
            .digest()
            .map(|text| parse_digest(reference, text))
            .transpose()?;
        let mut manifest_digest = check_document(reference, &bytes, pinned.as_ref())?;
        let manifest_error = |source| PullError::Manifest {
            reference: reference.to_string(),
            source,
        };
        let mut bytes = bytes.to_vec();
        let manifest = match parse_document(&bytes, None).map_err(manifest_error)? {
            Document::Manifest(manifest) => manifest,
            Document::Index(index) => {
                let entry = select_platform(&index, platform).map_err(manifest_error)?;
                let pinned = parsed.clone_with_digest(entry.digest.to_string());
                let (platform_bytes, _) = client
                    .pull_manifest_raw(&pinned, &auth, &ACCEPTED_MANIFESTS)
                    .await
                    .map_err(registry_error)?;
                manifest_digest = check_document(reference, &platform_bytes, Some(&entry.digest))?;
                bytes = platform_bytes.to_vec();
                match parse_document(&bytes, None).map_err(manifest_error)? {
                    Document::Manifest(manifest) => manifest,
                    Document::Index(_) => {
                        return Err(manifest_error(ManifestError::MediaType {
                            what: "platform manifest",
                            media_type: "a nested index".to_string(),
                        }))
                    }
                }
            }
        };

        let mut blobs = vec![(manifest.config.digest.clone(), manifest.config.size)];
        blobs.extend(
            manifest
                .layers
                .iter()
                .map(|layer| (layer.digest.clone(), layer.size)),
        );
        progress(PullProgress::Resolved {
            manifest_digest: manifest_digest.clone(),
            blobs,
        });

        // The config first: it says whether the image runs here at all.
        self.fetch_blob(&client, &parsed, &manifest.config, progress)
            .await?;
        let config_bytes = self.store.read(&manifest.config.digest)?;
        let config = ImageConfig::parse(&config_bytes).map_err(manifest_error)?;
        config.check(&manifest, platform).map_err(manifest_error)?;

        let fetches: Vec<_> = manifest
            .layers
            .iter()
            .map(|layer| Box::pin(self.fetch_blob(&client, &parsed, layer, progress)))
            .collect();
        futures_util::stream::iter(fetches)
            .buffer_unordered(CONCURRENT_BLOBS)
            .try_collect::<Vec<()>>()
            .await?;

        // The manifest last: a stored manifest means a complete image.
        self.store.put(&manifest_digest, &bytes)?;
        Ok(PulledImage {
            manifest_digest,
            manifest,
            config,
        })
    }

    /// The store blobs go into.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// Stores one blob unless it is there; waits for another pull fetching the same blob.
    pub(crate) async fn fetch_blob(
        &self,
        client: &Client,
        reference: &Reference,
        descriptor: &Descriptor,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), PullError> {
        let digest = &descriptor.digest;
        let gate = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            in_flight.entry(digest.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        let result = self
            .fetch_blob_alone(client, reference, descriptor, progress)
            .await;
        self.in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(digest);
        result
    }

    async fn fetch_blob_alone(
        &self,
        client: &Client,
        reference: &Reference,
        descriptor: &Descriptor,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), PullError> {
        let digest = descriptor.digest.clone();
        let total = descriptor.size;
        let store = self.store.clone();
        // Another process may hold the blob's lock: wait for it off the async threads.
        let ingest = tokio::task::spawn_blocking({
            let digest = digest.clone();
            move || store.ingest(&digest)
        })
        .await
        .map_err(|error| {
            PullError::Store(StoreError::io(
                "ingest",
                digest.to_string(),
                std::io::Error::other(error),
            ))
        })??;
        let Some(mut ingest) = ingest else {
            progress(PullProgress::Blob {
                digest: digest.clone(),
                done: total,
                total,
            });
            return Ok(());
        };
        let registry_error =
            |error: oci_client::errors::OciDistributionError| PullError::Registry {
                registry: reference.resolve_registry().to_string(),
                message: format!("blob {digest}: {error}"),
            };
        let wire = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: digest.to_string(),
            size: i64::try_from(total).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        if ingest.offset() > total {
            ingest.restart()?;
        }
        let mut stream = if ingest.offset() > 0 && ingest.offset() < total {
            match client
                .pull_blob_stream_partial(reference, &wire, ingest.offset(), None)
                .await
                .map_err(registry_error)?
            {
                oci_client::client::BlobResponse::Partial(stream) => stream.stream,
                oci_client::client::BlobResponse::Full(stream) => {
                    ingest.restart()?;
                    stream.stream
                }
            }
        } else if ingest.offset() == total {
            futures_util::stream::empty().boxed()
        } else {
            client
                .pull_blob_stream(reference, &wire)
                .await
                .map_err(registry_error)?
                .stream
        };
        let mut reported = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| PullError::Registry {
                registry: reference.resolve_registry().to_string(),
                message: format!("blob {digest}: {error}"),
            })?;
            ingest.write(&chunk)?;
            if ingest.offset() > total {
                break;
            }
            if ingest.offset() - reported >= 256 * 1024 {
                reported = ingest.offset();
                progress(PullProgress::Blob {
                    digest: digest.clone(),
                    done: reported,
                    total,
                });
            }
        }
        tokio::task::spawn_blocking(move || ingest.commit(Some(total)))
            .await
            .map_err(|error| {
                PullError::Store(StoreError::io(
                    "commit",
                    digest.to_string(),
                    std::io::Error::other(error),
                ))
            })??;
        progress(PullProgress::Blob {
            digest: descriptor.digest.clone(),
            done: total,
            total,
        });
        Ok(())
    }
}

/// The registry's error, with what to do about a refused login.
/// The registry's answer in plain words, with what to do about it.
fn explain_registry_error(
    error: &oci_client::errors::OciDistributionError,
    registry: &str,
    reference: &str,
) -> String {
    use oci_client::errors::OciDistributionError;
    let answer = error.to_string();
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => format!(
            "{answer}; log in with 'ward login {registry}' if the image is private, \
             and check the image name"
        ),
        _ if says_image_is_missing(&answer) => format!(
            "it has no image {reference} (its answer: {}); check the name and the tag, or log \
             in with 'ward login {registry}' if the image is private",
            answer.trim_start_matches("OCI API error: ")
        ),
        _ => answer,
    }
}

fn parse_digest(reference: &str, text: &str) -> Result<Digest, PullError> {
    text.parse().map_err(|_| PullError::BadDigest {
        reference: reference.to_string(),
        text: text.chars().take(100).collect(),
    })
}

/// The digest of a fetched manifest, checked against the digest it was asked for.
fn check_document(
    reference: &str,
    bytes: &[u8],
    expected: Option<&Digest>,
) -> Result<Digest, PullError> {
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(PullError::ManifestTooLarge {
            reference: reference.to_string(),
        });
    }
    let actual = Digest::of(bytes);
    match expected {
        Some(expected) if *expected != actual => Err(PullError::ManifestDigest {
            reference: reference.to_string(),
            expected: expected.clone(),
            actual,
        }),
        _ => Ok(actual),
    }
}
