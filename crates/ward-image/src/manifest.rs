//! The JSON documents of an image: indexes (manifest lists), manifests and configs, in their
//! OCI and Docker v2 forms, parsed strictly enough that hostile input gets a clear error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type Ward accepts from a registry.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the {what} is not valid JSON of the expected shape: {source}")]
    Parse {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {what} has media type {media_type:?}, which Ward does not handle")]
    MediaType {
        what: &'static str,
        media_type: String,
    },
    #[error("the {what} has schemaVersion {found}; only 2 is supported")]
    SchemaVersion { what: &'static str, found: u32 },
    #[error("the image has no variant for {wanted}; it has {available}")]
    NoPlatform { wanted: String, available: String },
    #[error("the manifest lists {layers} layers but its config lists {diff_ids} layer digests")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("the image config is for {found}, not {wanted}")]
    WrongPlatform { found: String, wanted: String },
    #[error("the image has {count} layers; at most {limit} are supported")]
    TooManyLayers { count: usize, limit: usize },
}

/// Most layers an image may have (overlayfs stacks at most about 500 lower directories).
pub const MAX_LAYERS: usize = 128;

/// A pointer to a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The host's platform, in OCI's (Go's) names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: (architecture == "arm64").then(|| "v8".to_string()),
        }
    }

    /// Whether an image for `self` runs on `host`.
    pub fn runs_on(&self, host: &Platform) -> bool {
        self.os == host.os
            && self.architecture == host.architecture
            && match (&self.variant, &host.variant) {
                (Some(variant), Some(host_variant)) => variant == host_variant,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(formatter, "/{variant}")?;
        }
        Ok(())
    }
}

/// An index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a manifest-shaped document turned out to be.
#[derive(Clone, Debug)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// Reads a document fetched as a manifest: an index or an image manifest, told apart by its
/// media type (from the document, else from the transport) or, failing both, by its shape.
pub fn parse_document(
    bytes: &[u8],
    transport_media_type: Option<&str>,
) -> Result<Document, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
        what: "manifest",
        source,
    })?;
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| transport_media_type.map(str::to_string));
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) if !other.is_empty() && probe.media_type.is_some() => {
            return Err(ManifestError::MediaType {
                what: "manifest",
                media_type: other.to_string(),
            })
        }
        _ => probe.manifests.is_some(),
    };
    if is_index {
        let index: Index =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
                what: "image index",
                source,
            })?;
        check_schema("image index", index.schema_version)?;
        Ok(Document::Index(index))
    } else {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
                what: "image manifest",
                source,
            })?;
        check_manifest(&manifest)?;
        Ok(Document::Manifest(manifest))
    }
}

fn check_schema(what: &'static str, found: u32) -> Result<(), ManifestError> {
    if found == 2 {
        Ok(())
    } else {
        Err(ManifestError::SchemaVersion { what, found })
    }
}

fn check_manifest(manifest: &Manifest) -> Result<(), ManifestError> {
    check_schema("image manifest", manifest.schema_version)?;
    if !matches!(
        manifest.config.media_type.as_str(),
        OCI_CONFIG | DOCKER_CONFIG
    ) {
        return Err(ManifestError::MediaType {
            what: "image config",
            media_type: manifest.config.media_type.clone(),
        });
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(ManifestError::TooManyLayers {
            count: manifest.layers.len(),
            limit: MAX_LAYERS,
        });
    }
    for layer in &manifest.layers {
        Compression::of_media_type(&layer.media_type)?;
    }
    Ok(())
}

/// Picks the manifest of `platform` from an index.
pub fn select_platform<'a>(
    index: &'a Index,
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    index
        .manifests
        .iter()
        .filter(|entry| matches!(entry.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST))
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|candidate| candidate.runs_on(platform))
        })
        .ok_or_else(|| ManifestError::NoPlatform {
            wanted: platform.to_string(),
            available: {
                let platforms: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|entry| entry.platform.as_ref().map(Platform::to_string))
                    .collect();
                if platforms.is_empty() {
                    "none".to_string()
                } else {
                    platforms.join(", ")
                }
            },
        })
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of_media_type(media_type: &str) -> Result<Compression, ManifestError> {
        match media_type {
            OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
            OCI_LAYER_ZSTD | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
                Ok(Compression::Zstd)
            }
            other => Err(ManifestError::MediaType {
                what: "layer",
                media_type: other.to_string(),
            }),
        }
    }
}

/// The image config (the parts Ward uses; the rest is kept in the stored blob).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
}

/// How the image wants to be run (`config` in the image config).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            what: "image config",
            source,
        })
    }

    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
        }
    }

    /// Checks the config against its manifest and the host.
    pub fn check(&self, manifest: &Manifest, host: &Platform) -> Result<(), ManifestError> {
        if manifest.layers.len() != self.rootfs.diff_ids.len() {
            return Err(ManifestError::LayerCount {
                layers: manifest.layers.len(),
                diff_ids: self.rootfs.diff_ids.len(),
            });
        }
        if !self.platform().runs_on(host) {
            return Err(ManifestError::WrongPlatform {
                found: self.platform().to_string(),
                wanted: host.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> String {
        format!("sha256:{}", format!("{byte:02x}").repeat(32))
    }

    #[test]
    fn selects_the_host_platform_from_an_index() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            digest(1),
            digest(2)
        );
        let Document::Index(index) = parse_document(index.as_bytes(), None).unwrap() else {
            panic!("an index");
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            select_platform(&index, &amd64).unwrap().digest.to_string(),
            digest(2)
        );
        let riscv = Platform {
            architecture: "riscv64".into(),
            os: "linux".into(),
            variant: None,
        };
        let error = select_platform(&index, &riscv).unwrap_err().to_string();
        assert!(error.contains("linux/arm64/v8, linux/amd64"), "{error}");
    }

    #[test]
    fn refuses_unknown_layer_media_types_and_bad_digests() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":2}},
              "layers":[{{"mediaType":"application/x-evil","digest":"{}","size":3}}]}}"#,
            digest(1),
            digest(2)
        );
        let error = parse_document(manifest.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("application/x-evil"), "{error}");
        let bad_digest = manifest.replace(&digest(2), "sha256:../../etc/passwd");
        assert!(parse_document(bad_digest.as_bytes(), None).is_err());
    }
}
