//! Manifests: GET/HEAD with Accept negotiation (as dockerd 20.10 sends it), PUT, digest checks.

use super::error::{from_response, ClientError, ErrorKind};
use super::Repository;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use sha2::{Digest as _, Sha256};

/// The Accept header dockerd sends for manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json,\
application/vnd.docker.distribution.manifest.v2+json,\
application/vnd.oci.image.index.v1+json,\
application/vnd.oci.image.manifest.v1+json,\
application/json";

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Repository {
    /// Fetches a manifest by tag or digest. A digest reference is verified against the bytes.
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, ClientError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .request(Method::GET, &url)
            .header(ACCEPT, MANIFEST_ACCEPT)
            .send()
            .await
            .map_err(|e| ClientError::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(from_response(resp).await);
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        if resp.content_length().is_some_and(|n| n as usize > MAX_MANIFEST) {
            return Err(ClientError::new(ErrorKind::Protocol, "manifest too large"));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::transport(&url, e))?
            .to_vec();
        if bytes.len() > MAX_MANIFEST {
            return Err(ClientError::new(ErrorKind::Protocol, "manifest too large"));
        }
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(ClientError::new(
                ErrorKind::Protocol,
                format!("manifest verification failed for digest {reference}"),
            ));
        }
        // The manifest's own mediaType wins over a generic Content-Type (application/json).
        let embedded = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(String::from));
        let media_type = match (embedded, header_type) {
            (Some(m), _) => m,
            (None, Some(h)) if h != "application/json" && !h.starts_with("text/") => h,
            (None, _) => guess_media_type(&bytes),
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD` on a manifest: its digest when it exists.
    pub async fn head_manifest(&self, reference: &str) -> Result<Option<String>, ClientError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .request(Method::HEAD, &url)
            .header(ACCEPT, MANIFEST_ACCEPT)
            .send()
            .await
            .map_err(|e| ClientError::transport(&url, e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .map(String::from)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            _ => Err(from_response(resp).await),
        }
    }

    /// Uploads a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, ClientError> {
        let digest = sha256_digest(&bytes);
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .request(Method::PUT, &url)
            .header(CONTENT_TYPE, media_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| ClientError::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(from_response(resp).await);
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
        {
            if d != digest {
                return Err(ClientError::new(
                    ErrorKind::Protocol,
                    format!("registry stored manifest as {d}, expected {digest}"),
                ));
            }
        }
        Ok(digest)
    }
}

/// Media type of a manifest that does not say: an index has `manifests`, a manifest `config`.
fn guess_media_type(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if v.get("manifests").is_some() {
        "application/vnd.oci.image.index.v1+json".into()
    } else {
        "application/vnd.oci.image.manifest.v1+json".into()
    }
}

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Repository {
    /// Every tag of the repository (`tags/list`, following `Link: <...>; rel="next"` pages).
    pub async fn list_tags(&self) -> Result<Vec<String>, ClientError> {
        let mut url = self.url("tags/list");
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let resp = self
                .request(Method::GET, &url)
                .send()
                .await
                .map_err(|e| ClientError::transport(&url, e))?;
            if !resp.status().is_success() {
                return Err(from_response(resp).await);
            }
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(|l| self.absolute(&l));
            let body = resp.bytes().await.map_err(|e| ClientError::transport(&url, e))?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| ClientError::new(ErrorKind::Protocol, format!("tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Err(ClientError::new(ErrorKind::Protocol, "tag list does not end"))
    }
}

/// The target of a `Link` header's `rel="next"` entry.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod link_tests {
    use super::next_link;

    #[test]
    fn next_link_is_read_from_the_header() {
        assert_eq!(
            next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
    }
}
