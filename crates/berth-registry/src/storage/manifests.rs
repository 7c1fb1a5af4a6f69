//! Manifests (stored as blobs, byte for byte), their revisions and tags, and the referrers index.

use serde_json::Value;

use super::{list_dir, read_optional, remove_optional, Storage};
use crate::error::{ErrorCode, StorageError};
use crate::reference::{validate_name, Digest, Reference};

/// Manifest media types the registry accepts.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    pub const ALL: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }
}

/// A stored manifest: its bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    /// The manifest's `subject`, answered back in the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

fn invalid(message: impl Into<String>) -> StorageError {
    StorageError::api(ErrorCode::ManifestInvalid, message)
}

/// The digests a manifest refers to.
#[derive(Debug, Default)]
pub(crate) struct References {
    /// Config and (distributable) layers.
    pub blobs: Vec<Digest>,
    /// Child manifests of an index.
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
}

/// Collects the digests a manifest refers to.
pub(crate) fn references(json: &Value) -> Result<References, StorageError> {
    let digest_of = |descriptor: &Value| -> Result<Digest, StorageError> {
        let text = descriptor
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("descriptor without digest"))?;
        Digest::parse(text).map_err(|err| invalid(err.message))
    };
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    if let Some(config) = json.get("config") {
        blobs.push(digest_of(config)?);
    }
    if let Some(layers) = json.get("layers") {
        for layer in layers
            .as_array()
            .ok_or_else(|| invalid("layers is not an array"))?
        {
            // Foreign (non-distributable) layers live elsewhere, at their `urls`.
            if layer
                .get("urls")
                .is_some_and(|urls| urls.as_array().is_some_and(|u| !u.is_empty()))
            {
                continue;
            }
            blobs.push(digest_of(layer)?);
        }
    }
    if let Some(manifests) = json.get("manifests") {
        for child in manifests
            .as_array()
            .ok_or_else(|| invalid("manifests is not an array"))?
        {
            children.push(digest_of(child)?);
        }
    }
    let subject = json.get("subject").map(digest_of).transpose()?;
    Ok(References {
        blobs,
        children,
        subject,
    })
}

/// Works out a pushed manifest's media type from its `mediaType` field and the request's
/// `Content-Type`, and checks its shape.
fn media_type_of(json: &Value, content_type: Option<&str>) -> Result<String, StorageError> {
    if json.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(invalid("only schemaVersion 2 manifests are supported"));
    }
    let field = json.get("mediaType").and_then(Value::as_str);
    let header = content_type
        .map(|ct| ct.split(';').next().unwrap_or_default().trim())
        .filter(|ct| media_types::ALL.contains(ct));
    let media_type = match (field, header) {
        (Some(field), Some(header)) if field != header => {
            return Err(invalid(format!(
                "mediaType {field} does not match Content-Type {header}"
            )))
        }
        (Some(field), _) => field.to_string(),
        (None, Some(header)) => header.to_string(),
        (None, None) if json.get("manifests").is_some() => media_types::OCI_INDEX.to_string(),
        (None, None) if json.get("config").is_some() => media_types::OCI_MANIFEST.to_string(),
        (None, None) => return Err(invalid("cannot tell the manifest's media type")),
    };
    if !media_types::ALL.contains(&media_type.as_str()) {
        return Err(invalid(format!("unsupported manifest media type {media_type}")));
    }
    let is_index = media_types::is_index(&media_type);
    if is_index && !json.get("manifests").is_some_and(Value::is_array) {
        return Err(invalid("an index needs a manifests array"));
    }
    let is_image =
        json.get("config").is_some_and(Value::is_object) && json.get("layers").is_some_and(Value::is_array);
    if !is_index && !is_image {
        return Err(invalid("an image manifest needs config and layers"));
    }
    Ok(media_type)
}

impl Storage {
    /// Stores a manifest under `reference` after checking that everything it refers to is in `name`.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &Reference,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<PutManifest, StorageError> {
        self.store_manifest(name, reference, bytes, content_type, true)
            .await
    }

    /// Stores a manifest fetched from an upstream registry: its blobs come later, on demand.
    pub async fn cache_manifest(
        &self,
        name: &str,
        reference: &Reference,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<PutManifest, StorageError> {
        self.store_manifest(name, reference, bytes, content_type, false)
            .await
    }

    async fn store_manifest(
        &self,
        name: &str,
        reference: &Reference,
        bytes: &[u8],
        content_type: Option<&str>,
        check_references: bool,
    ) -> Result<PutManifest, StorageError> {
        let json: Value =
            serde_json::from_slice(bytes).map_err(|err| invalid(format!("invalid JSON: {err}")))?;
        if !json.is_object() {
            return Err(invalid("a manifest is a JSON object"));
        }
        let media_type = media_type_of(&json, content_type)?;
        let digest = Digest::of_bytes(bytes);
        if let Reference::Digest(expected) = reference {
            if expected != &digest {
                return Err(StorageError::api(
                    ErrorCode::DigestInvalid,
                    format!("manifest digest is {digest}, not {expected}"),
                ));
            }
        }
        let References {
            blobs,
            children,
            subject,
        } = references(&json)?;
        for blob in blobs.iter().filter(|_| check_references) {
            if self.blob_size(name, blob).await?.is_none() {
                return Err(StorageError::Api(
                    crate::error::ApiError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!("blob {blob} unknown to {name}"),
                    )
                    .with_detail(serde_json::json!({ "digest": blob.to_string() })),
                ));
            }
        }
        for child in children.iter().filter(|_| check_references) {
            if read_optional(&self.revision_path(name, child)).await?.is_none() {
                return Err(StorageError::Api(
                    crate::error::ApiError::new(
                        ErrorCode::ManifestBlobUnknown,
                        format!("manifest {child} unknown to {name}"),
                    )
                    .with_detail(serde_json::json!({ "digest": child.to_string() })),
                ));
            }
        }
        let blob = self.blob_path(&digest);
        if tokio::fs::metadata(&blob).await.is_err() {
            self.write_atomic(&blob, bytes).await?;
        }
        if let Some(subject) = &subject {
            let mut descriptor = serde_json::json!({
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": bytes.len(),
            });
            let artifact_type = json
                .get("artifactType")
                .or_else(|| json.get("config").and_then(|config| config.get("mediaType")))
                .cloned();
            if let Some(artifact_type) = artifact_type {
                descriptor["artifactType"] = artifact_type;
            }
            if let Some(annotations) = json.get("annotations") {
                descriptor["annotations"] = annotations.clone();
            }
            let path = self.referrers_dir(name, subject).join(digest.hex());
            self.write_atomic(&path, descriptor.to_string().as_bytes())
                .await?;
        }
        self.write_atomic(&self.revision_path(name, &digest), media_type.as_bytes())
            .await?;
        if let Reference::Tag(tag) = reference {
            self.write_atomic(&self.tags_dir(name).join(tag), digest.to_string().as_bytes())
                .await?;
        }
        Ok(PutManifest { digest, subject })
    }

    /// Resolves a reference of `name` to a digest; MANIFEST_UNKNOWN when there is none.
    pub async fn resolve(&self, name: &str, reference: &Reference) -> Result<Digest, StorageError> {
        let unknown = || {
            StorageError::api(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference} unknown to {name}"),
            )
        };
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => {
                let text = read_optional(&self.tags_dir(name).join(tag))
                    .await?
                    .ok_or_else(unknown)?;
                Digest::parse(String::from_utf8_lossy(&text).trim()).map_err(|_| unknown())?
            }
        };
        if read_optional(&self.revision_path(name, &digest)).await?.is_none() {
            return Err(unknown());
        }
        Ok(digest)
    }

    /// Reads a manifest of `name` by tag or digest.
    pub async fn get_manifest(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<ManifestInfo, StorageError> {
        let digest = self.resolve(name, reference).await?;
        let unknown = || {
            StorageError::api(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference} unknown to {name}"),
            )
        };
        let media_type = read_optional(&self.revision_path(name, &digest))
            .await?
            .ok_or_else(unknown)?;
        let bytes = read_optional(&self.blob_path(&digest))
            .await?
            .ok_or_else(unknown)?;
        Ok(ManifestInfo {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            bytes,
        })
    }

    /// Deletes a tag, or a manifest by digest together with the tags pointing at it.
    pub async fn delete_manifest(&self, name: &str, reference: &Reference) -> Result<(), StorageError> {
        let digest = self.resolve(name, reference).await?;
        if let Reference::Tag(tag) = reference {
            remove_optional(&self.tags_dir(name).join(tag)).await?;
            return Ok(());
        }
        for tag in self.tags(name).await.unwrap_or_default() {
            let path = self.tags_dir(name).join(&tag);
            if read_optional(&path)
                .await?
                .is_some_and(|text| String::from_utf8_lossy(&text).trim() == digest.to_string())
            {
                remove_optional(&path).await?;
            }
        }
        if let Some(bytes) = read_optional(&self.blob_path(&digest)).await? {
            if let Ok(json) = serde_json::from_slice::<Value>(&bytes) {
                if let Ok(References {
                    subject: Some(subject),
                    ..
                }) = references(&json)
                {
                    remove_optional(&self.referrers_dir(name, &subject).join(digest.hex())).await?;
                }
            }
        }
        remove_optional(&self.revision_path(name, &digest)).await?;
        Ok(())
    }

    /// The tags of `name`, sorted; NAME_UNKNOWN when the repository does not exist.
    pub async fn tags(&self, name: &str) -> Result<Vec<String>, StorageError> {
        if tokio::fs::metadata(self.repo_path(name)).await.is_err() {
            return Err(StorageError::api(
                ErrorCode::NameUnknown,
                format!("repository {name} unknown"),
            ));
        }
        let dir = self.tags_dir(name);
        Ok(tokio::task::spawn_blocking(move || list_dir(&dir))
            .await
            .map_err(std::io::Error::other)??)
    }

    /// Every repository that holds manifests, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>, StorageError> {
        let root = self.root.join("repositories");
        Ok(tokio::task::spawn_blocking(move || repositories(&root))
            .await
            .map_err(std::io::Error::other)??)
    }

    /// Descriptors of the manifests of `name` whose subject is `subject`, optionally only those
    /// of one artifact type.
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>, StorageError> {
        let dir = self.referrers_dir(name, subject);
        let entries = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || list_dir(&dir)
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut descriptors = Vec::new();
        for entry in entries {
            let Some(bytes) = read_optional(&dir.join(&entry)).await? else {
                continue;
            };
            let Ok(descriptor) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if artifact_type
                .is_some_and(|wanted| descriptor.get("artifactType").and_then(Value::as_str) != Some(wanted))
            {
                continue;
            }
            descriptors.push(descriptor);
        }
        Ok(descriptors)
    }
}

/// Walks `repositories/` for directories holding `_manifests`, returning their names.
pub(crate) fn repositories(root: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(prefix) = pending.pop() {
        let dir = if prefix.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&prefix)
        };
        for entry in list_dir(&dir)? {
            if entry.starts_with('_') {
                if entry == "_manifests" && !prefix.is_empty() {
                    found.push(prefix.clone());
                }
                continue;
            }
            let name = if prefix.is_empty() {
                entry
            } else {
                format!("{prefix}/{entry}")
            };
            if validate_name(&name).is_ok() && dir.join(name.rsplit('/').next().unwrap_or_default()).is_dir()
            {
                pending.push(name);
            }
        }
    }
    found.sort();
    Ok(found)
}
