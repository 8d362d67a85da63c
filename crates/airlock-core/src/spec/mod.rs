//! The JSON documents of OCI and Docker images, read leniently and written exactly.
//!
//! Manifests, indexes and configs are kept as the bytes that came in (their digests are their
//! identity); these types are views used to find the blobs they name. Unknown fields are
//! tolerated so that documents from any tool parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

mod go_keys;

/// What starts a sigstore signature file in containers/image's `dir:` layout (a GPG one
/// is the bare OpenPGP message).
pub const SIGSTORE_SIGNATURE_MARKER: &[u8] = b"\x00sigstore-json\n";

/// Media types of the documents and layers we meet.
pub mod media_type {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker layer (gzip).
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// The OCI empty descriptor's media type (`{}`), the config of most artifacts.
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// A cosign simple-signing payload (its signature in a layer annotation).
    pub const COSIGN_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    /// The artifact type of a cosign signature stored as an OCI 1.1 referrer.
    pub const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
    /// A GPG "simple signing" signature (what `skopeo copy --sign-by` and Red Hat make): an
    /// OpenPGP signed message over the JSON payload. No registry standard names one, so
    /// airlock stores each as a referrer layer of this type.
    pub const GPG_SIMPLE_SIGNING: &str = "application/vnd.dev.airlock.simplesigning.gpg.v1";

    /// True for an image config (OCI or Docker).
    pub fn is_image_config(mt: &str) -> bool {
        mt == OCI_CONFIG || mt == DOCKER_CONFIG
    }

    /// True for a filesystem layer: a tar, plain or compressed, OCI or Docker, foreign or
    /// non-distributable. Anything else in `layers` (a signature, an SBOM, a chart) makes the
    /// manifest an artifact.
    pub fn is_filesystem_layer(mt: &str) -> bool {
        mt.is_empty()
            || mt.starts_with("application/vnd.oci.image.layer.")
            || mt.starts_with("application/vnd.docker.image.rootfs.")
    }

    /// True for an index or manifest list.
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }

    /// True for a single-platform manifest.
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }
}

/// Annotation holding the full image name (Docker, containerd, airlock).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation holding the reference name in an image layout.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// OCI annotation naming the base image; some writers put the image's own repository there.
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest of the content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Where a foreign layer can be fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform of a manifest inside an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of the manifest it points at (OCI 1.1), for referrer lists.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with no annotations or platform.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// One annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An OS/architecture pair.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system (`linux`, ...).
    pub os: String,
    /// CPU variant (`v8`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of the running host, in Go's naming.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_string(),
            os: std::env::consts::OS.to_string(),
            variant: None,
            os_version: None,
        }
    }

    /// True when `other` (a manifest's or config's platform) is what `self` asks for: the
    /// same os and architecture, and the same variant when `self` names one. The one rule
    /// every platform choice uses.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }

    /// `os/arch[/variant]`.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// A single-platform image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type, when the document names it.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first (an artifact's blobs).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// What kind of artifact this is (OCI 1.1); absent on images.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The manifest this one refers to (a signature's or SBOM's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
}

impl Manifest {
    /// `None` for a container image; for an OCI artifact (a signature, an SBOM, a Helm
    /// chart, an attestation) its type: `artifactType`, else the config's media type, the
    /// way the OCI image spec derives it. A manifest is an artifact when it says so, when its
    /// config is no image config, or when a "layer" is no filesystem tar (cosign keeps an
    /// image config but JSON layers).
    pub fn artifact_type(&self) -> Option<String> {
        if let Some(t) = &self.artifact_type {
            return Some(t.clone());
        }
        // Old writers leave the config's media type out.
        let mt = &self.config.media_type;
        if !(media_type::is_image_config(mt) || mt.is_empty()) {
            return Some(self.config.media_type.clone());
        }
        self.layers
            .iter()
            .find(|l| !media_type::is_filesystem_layer(&l.media_type))
            .map(|l| l.media_type.clone())
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type, when the document names it.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// What kind of artifact this index is (OCI 1.1).
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The manifest this index refers to (boxed: rare, and it keeps [`Document`] small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<Descriptor>>,
}

impl Index {
    /// An empty OCI index.
    pub fn empty() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: None,
            artifact_type: None,
            subject: None,
        }
    }
}

/// One entry of Docker's `manifest.json`.
///
/// Read the way Docker reads it (Go's encoding/json): keys match case-insensitively (jib
/// writes `config`/`repoTags`/`layers`), the last of duplicate keys wins, and `null` is an
/// empty list (BuildKit writes `"Layers": null` for an image without layers).
#[derive(Clone, Debug, Serialize)]
pub struct DockerArchiveEntry {
    /// Path of the config file in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// Tags of the image.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer files, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    /// Descriptors of foreign layers, keyed by diffID.
    #[serde(rename = "LayerSources", skip_serializing_if = "Option::is_none")]
    pub layer_sources: Option<BTreeMap<String, Descriptor>>,
}

impl<'de> Deserialize<'de> for DockerArchiveEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // A list of pairs keeps duplicate keys in order (a map would drop all but one).
        struct Pairs(Vec<(String, serde_json::Value)>);
        impl<'de> Deserialize<'de> for Pairs {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Pairs;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a manifest.json entry (an object)")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Pairs, A::Error> {
                        let mut v = Vec::new();
                        while let Some(kv) = map.next_entry()? {
                            v.push(kv);
                        }
                        Ok(Pairs(v))
                    }
                }
                d.deserialize_map(V)
            }
        }
        let mut config = None;
        let mut repo_tags = serde_json::Value::Null;
        let mut layers = serde_json::Value::Null;
        let mut layer_sources = serde_json::Value::Null;
        for (k, v) in Pairs::deserialize(d)?.0 {
            match k.to_ascii_lowercase().as_str() {
                "config" => config = Some(v),
                "repotags" => repo_tags = v,
                "layers" => layers = v,
                "layersources" => layer_sources = v,
                _ => {}
            }
        }
        fn field<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            name: &str,
            v: serde_json::Value,
        ) -> Result<T, E> {
            serde_json::from_value(v).map_err(|e| E::custom(format!("{name}: {e}")))
        }
        let list = |name: &str, v| -> Result<Vec<String>, D::Error> {
            Ok(field::<Option<Vec<String>>, D::Error>(name, v)?.unwrap_or_default())
        };
        let config: String = match config {
            Some(v) => field::<String, D::Error>("Config", v)?,
            None => return Err(D::Error::missing_field("Config")),
        };
        Ok(DockerArchiveEntry {
            config,
            repo_tags: list("RepoTags", repo_tags)?,
            layers: list("Layers", layers)?,
            layer_sources: field::<_, D::Error>("LayerSources", layer_sources)?,
        })
    }
}

/// `null` where a list is expected is an empty list: Go writes a nil slice that way.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// The parts of an image config that airlock reads. The config itself is kept as bytes.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct ConfigView {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// The layer diffIDs (absent in configs some artifact tools write: then empty, with
    /// an empty `type`).
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct RootFs {
    /// Always "layers".
    #[serde(rename = "type", default)]
    pub kind: String,
    /// diffIDs, bottom first (`null` from BuildKit for an image without layers).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub diff_ids: Vec<Digest>,
}

/// What a JSON document is, judged by its media type or shape.
pub enum Document {
    /// A single-platform manifest.
    Manifest(Box<Manifest>),
    /// An index of manifests.
    Index(Index),
}

/// Parse manifest or index bytes, named `path` in messages.
pub fn parse_document(bytes: &[u8], path: &str) -> Result<Document> {
    let bad = |detail: String| Error::BadMetadata {
        path_in_archive: path.to_string(),
        what: "image manifest or index",
        detail,
    };
    go_keys::check_depth(bytes, path, "image manifest or index")?;
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    go_keys::check_document(&value, path)?;
    let mt = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if media_type::is_index(mt) || (mt.is_empty() && value.get("manifests").is_some()) {
        serde_json::from_value(value)
            .map(Document::Index)
            .map_err(|e| bad(e.to_string()))
    } else {
        serde_json::from_value(value)
            .map(|m| Document::Manifest(Box::new(m)))
            .map_err(|e| bad(e.to_string()))
    }
}

/// Parse an image config, named `path` in messages, refusing keys Go would read otherwise.
pub fn parse_config(bytes: &[u8], path: &str) -> Result<ConfigView> {
    let view = parse_json(bytes, path, "image config")?;
    // parse_json checked the depth, so valid JSON also parses as a Value: the key check
    // is never skipped.
    let value: serde_json::Value = parse_json(bytes, path, "image config")?;
    go_keys::check_config(&value, path)?;
    Ok(view)
}

/// Parse JSON bytes into `T`, naming the file and what it should be in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &str,
    what: &'static str,
) -> Result<T> {
    go_keys::check_depth(bytes, path, what)?;
    serde_json::from_slice(bytes).map_err(|e| Error::BadMetadata {
        path_in_archive: path.to_string(),
        what,
        detail: e.to_string(),
    })
}

/// The uncompressed-layer media type that pairs with a manifest media type.
pub fn uncompressed_layer_type(manifest_media_type: &str) -> &'static str {
    if manifest_media_type == media_type::DOCKER_MANIFEST {
        "application/vnd.docker.image.rootfs.diff.tar"
    } else {
        media_type::OCI_LAYER
    }
}

#[cfg(test)]
mod tests;
