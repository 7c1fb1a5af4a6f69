//! Thin HTTP handlers over [`Storage`](crate::storage::Storage): parse the request, call storage,
//! shape the response the way distribution does.

use std::io::{self, SeekFrom};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{Stream, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{ApiError, ErrorCode};
use crate::proxy::Upstream;
use crate::reference::{validate_name, Digest, Reference};
use crate::server::{AppState, Identity, Query};
use crate::storage::media_types;

/// Manifests larger than this are refused, as distribution 3 and the OCI spec suggest.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

type Result<T> = std::result::Result<T, ApiError>;

fn body_stream(body: Body) -> impl Stream<Item = io::Result<bytes::Bytes>> + Unpin {
    body.into_data_stream().map_err(io::Error::other)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header(headers, "content-length").and_then(|value| value.trim().parse().ok())
}

fn response(status: StatusCode, headers: Vec<(&'static str, String)>, body: Body) -> Response {
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn upload_range(size: u64) -> String {
    // distribution answers "0-0" for an empty session too.
    format!("0-{}", size.saturating_sub(1))
}

fn upload_location(name: &str, uuid: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{uuid}")
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    response(
        StatusCode::CREATED,
        vec![
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn upload_accepted(status: StatusCode, name: &str, uuid: &str, size: u64) -> Response {
    response(
        status,
        vec![
            ("location", upload_location(name, uuid)),
            ("range", upload_range(size)),
            ("docker-upload-uuid", uuid.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

/// Parses `Range: bytes=a-b` (also `a-` and `-n`) against a blob of `size` bytes.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            if suffix == 0 {
                return None;
            }
            (size.saturating_sub(suffix), size.checked_sub(1)?)
        }
        (start, "") => (start.parse().ok()?, size.checked_sub(1)?),
        (start, end) => (
            start.parse().ok()?,
            end.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && start < size).then_some((start, end))
}

pub(crate) async fn get_blob(
    state: &AppState,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let digest = Digest::parse(digest)?;
    let (mut file, size) = state.storage.open_blob(name, &digest).await?;
    let mut out = vec![
        ("docker-content-digest", digest.to_string()),
        ("content-type", "application/octet-stream".to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("etag", format!("\"{digest}\"")),
        ("cache-control", "max-age=31536000".to_string()),
    ];
    let (status, start, length) = match header(headers, "range") {
        Some(range) => {
            let Some((start, end)) = parse_range(range, size) else {
                return Ok(response(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    vec![("content-range", format!("bytes */{size}"))],
                    Body::empty(),
                ));
            };
            out.push(("content-range", format!("bytes {start}-{end}/{size}")));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    out.push(("content-length", length.to_string()));
    if head {
        return Ok(response(status, out, Body::empty()));
    }
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(length), 256 << 10);
    Ok(response(status, out, Body::from_stream(stream)))
}

pub(crate) async fn delete_blob(state: &AppState, name: &str, digest: &str) -> Result<Response> {
    if !state.config.delete_enabled {
        return Err(ApiError::new(ErrorCode::Unsupported, "deletes are disabled"));
    }
    let digest = Digest::parse(digest)?;
    state.storage.delete_blob(name, &digest).await?;
    Ok(response(
        StatusCode::ACCEPTED,
        vec![("content-length", "0".into())],
        Body::empty(),
    ))
}

pub(crate) async fn start_upload(
    state: &AppState,
    identity: &Identity,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    if let (Some(mount), Some(from)) = (query.get("mount"), query.get("from")) {
        let digest = Digest::parse(mount)?;
        // Without pull access to `from` (or with a bad name) this falls back to a plain upload.
        if validate_name(from).is_ok()
            && state.can(identity, from, "pull")
            && state.storage.mount_blob(name, from, &digest).await?
        {
            return Ok(blob_created(name, &digest));
        }
    }
    if let Some(digest) = query.get("digest") {
        let digest = Digest::parse(digest)?;
        state
            .storage
            .put_blob(name, &digest, content_length(headers), body_stream(body))
            .await?;
        return Ok(blob_created(name, &digest));
    }
    let session = state.storage.start_upload(name).await?;
    Ok(upload_accepted(
        StatusCode::ACCEPTED,
        name,
        &session.uuid,
        session.size,
    ))
}

/// The first offset of a chunk's `Content-Range` (`a-b`, or `bytes a-b/*` as some clients send).
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(value) = header(headers, "content-range") else {
        return Ok(None);
    };
    let value = value
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches([' ', '=']);
    let start = value
        .split(['-', '/'])
        .next()
        .and_then(|start| start.trim().parse::<u64>().ok());
    match start {
        Some(start) => Ok(Some(start)),
        None => Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("bad Content-Range {value:?}"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)),
    }
}

pub(crate) async fn patch_upload(
    state: &AppState,
    name: &str,
    uuid: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let start = chunk_start(headers)?;
    let status = state
        .storage
        .append_upload(name, uuid, start, content_length(headers), body_stream(body))
        .await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, name, uuid, status.size))
}

pub(crate) async fn finish_upload(
    state: &AppState,
    name: &str,
    uuid: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let digest = query
        .get("digest")
        .ok_or_else(|| ApiError::new(ErrorCode::DigestInvalid, "the digest parameter is required"))?;
    let digest = Digest::parse(digest)?;
    if let Some(start) = chunk_start(headers)? {
        let status = state.storage.upload_status(name, uuid).await?;
        if start != status.size {
            return Err(ApiError::new(ErrorCode::BlobUploadInvalid, "chunk out of order")
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header("range", upload_range(status.size)));
        }
    }
    state
        .storage
        .finish_upload(name, uuid, &digest, content_length(headers), body_stream(body))
        .await?;
    Ok(blob_created(name, &digest))
}

pub(crate) async fn upload_status(state: &AppState, name: &str, uuid: &str) -> Result<Response> {
    let status = state.storage.upload_status(name, uuid).await?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, name, uuid, status.size))
}

pub(crate) async fn cancel_upload(state: &AppState, name: &str, uuid: &str) -> Result<Response> {
    state.storage.cancel_upload(name, uuid).await?;
    Ok(response(
        StatusCode::NO_CONTENT,
        vec![("content-length", "0".into())],
        Body::empty(),
    ))
}

pub(crate) async fn get_manifest(
    state: &AppState,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response> {
    let reference = Reference::parse(reference)?;
    let manifest = state.storage.get_manifest(name, &reference).await?;
    let headers = vec![
        ("content-type", manifest.media_type.clone()),
        ("docker-content-digest", manifest.digest.to_string()),
        ("content-length", manifest.bytes.len().to_string()),
        ("etag", format!("\"{}\"", manifest.digest)),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.bytes)
    };
    Ok(response(StatusCode::OK, headers, body))
}

pub(crate) async fn put_manifest(
    state: &AppState,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reference = Reference::parse(reference)?;
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::SizeInvalid,
                format!("manifests are limited to {MAX_MANIFEST_BYTES} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        })?;
    let put = state
        .storage
        .put_manifest(name, &reference, &bytes, header(headers, "content-type"))
        .await?;
    let mut out = vec![
        ("location", format!("/v2/{name}/manifests/{}", put.digest)),
        ("docker-content-digest", put.digest.to_string()),
        ("content-length", "0".into()),
    ];
    if let Some(subject) = put.subject {
        out.push(("oci-subject", subject.to_string()));
    }
    Ok(response(StatusCode::CREATED, out, Body::empty()))
}

pub(crate) async fn delete_manifest(state: &AppState, name: &str, reference: &str) -> Result<Response> {
    if !state.config.delete_enabled {
        return Err(ApiError::new(ErrorCode::Unsupported, "deletes are disabled"));
    }
    let reference = Reference::parse(reference)?;
    state.storage.delete_manifest(name, &reference).await?;
    Ok(response(
        StatusCode::ACCEPTED,
        vec![("content-length", "0".into())],
        Body::empty(),
    ))
}

/// Applies `n` and `last` to a sorted list; the second value is the `Link` for the next page.
fn paginate(items: Vec<String>, query: &Query, path: &str) -> Result<(Vec<String>, Option<String>)> {
    let n = match query.get("n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, format!("invalid n {n:?}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    let mut items: Vec<String> = match query.get("last") {
        Some(last) => items.into_iter().filter(|item| item.as_str() > last).collect(),
        None => items,
    };
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
                link = Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""));
            }
        }
    }
    Ok((items, link))
}

fn json_page(body: serde_json::Value, link: Option<String>) -> Response {
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(link) = link {
        headers.push(("link", link));
    }
    response(StatusCode::OK, headers, Body::from(body.to_string()))
}

pub(crate) async fn tags_list(state: &AppState, name: &str, query: &Query) -> Result<Response> {
    let tags = state.storage.tags(name).await?;
    let (tags, link) = paginate(tags, query, &format!("/v2/{name}/tags/list"))?;
    Ok(json_page(serde_json::json!({ "name": name, "tags": tags }), link))
}

pub(crate) async fn catalog(state: &AppState, identity: &Identity, query: &Query) -> Result<Response> {
    let mut repositories = state.storage.catalog().await?;
    // Basic-auth users see only what they may pull; a token's catalog scope shows everything.
    if let Identity::User(_) = identity {
        repositories.retain(|name| state.can(identity, name, "pull"));
    }
    let (repositories, link) = paginate(repositories, query, "/v2/_catalog")?;
    Ok(json_page(
        serde_json::json!({ "repositories": repositories }),
        link,
    ))
}

pub(crate) async fn referrers(state: &AppState, name: &str, digest: &str, query: &Query) -> Result<Response> {
    let digest = Digest::parse(digest)?;
    let artifact_type = query.get("artifactType");
    let manifests = state.storage.referrers(name, &digest, artifact_type).await?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": manifests,
    });
    let mut headers = vec![("content-type", media_types::OCI_INDEX.to_string())];
    if artifact_type.is_some() {
        headers.push(("oci-filters-applied", "artifactType".to_string()));
    }
    Ok(response(StatusCode::OK, headers, Body::from(index.to_string())))
}

/// Pull-through cache: stores a blob from upstream unless it is here already. Leaves it missing
/// when upstream has none either (the local handler then answers BLOB_UNKNOWN).
pub(crate) async fn fill_blob(state: &AppState, upstream: &Upstream, name: &str, digest: &str) -> Result<()> {
    let digest = Digest::parse(digest)?;
    if state.storage.blob_size(name, &digest).await?.is_some() {
        return Ok(());
    }
    let Some(response) = upstream.blob(name, &digest.to_string()).await? else {
        return Ok(());
    };
    let length = response.content_length();
    let stream = Box::pin(response.bytes_stream().map_err(io::Error::other));
    state.storage.put_blob(name, &digest, length, stream).await?;
    Ok(())
}

/// Pull-through cache: refreshes a tag from upstream (keeping the cached one when upstream is
/// unreachable), or fetches a manifest by digest that is not here yet.
pub(crate) async fn fill_manifest(
    state: &AppState,
    upstream: &Upstream,
    name: &str,
    reference_text: &str,
) -> Result<()> {
    let reference = Reference::parse(reference_text)?;
    let cached = state.storage.resolve(name, &reference).await.is_ok();
    if cached && matches!(reference, Reference::Digest(_)) {
        return Ok(());
    }
    match upstream.manifest(name, reference_text).await {
        Ok(Some((bytes, media_type))) => {
            state
                .storage
                .cache_manifest(name, &reference, &bytes, Some(&media_type))
                .await?;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(err) if cached => {
            tracing::warn!(%name, reference = %reference_text, error = %err, "serving the cached manifest");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Pull-through cache: the upstream's tag list, passed through with its `Link`.
pub(crate) async fn upstream_tags(
    upstream: &Upstream,
    name: &str,
    query: &Query,
) -> Result<Option<Response>> {
    let raw: Option<String> = (!query.0.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.0.iter())
            .finish()
    });
    let Some(upstream_response) = upstream.tags(name, raw.as_deref()).await.ok().flatten() else {
        return Ok(None);
    };
    let link = upstream_response
        .headers()
        .get("link")
        .and_then(|h| h.to_str().ok())
        .map(String::from);
    let body = upstream_response.bytes().await.map_err(ApiError::internal)?;
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(link) = link {
        headers.push(("link", link));
    }
    Ok(Some(response(StatusCode::OK, headers, Body::from(body))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn pagination_links_the_next_page() {
        let items: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let query = Query::parse(Some("n=2"));
        let (page, link) = paginate(items.clone(), &query, "/v2/x/tags/list").unwrap();
        assert_eq!(page, ["a", "b"]);
        assert_eq!(link.unwrap(), "</v2/x/tags/list?n=2&last=b>; rel=\"next\"");
        let (page, link) = paginate(items, &Query::parse(Some("n=2&last=b")), "/p").unwrap();
        assert_eq!(page, ["c"]);
        assert!(link.is_none());
    }
}
