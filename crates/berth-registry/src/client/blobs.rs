//! Blobs: HEAD, resumable GET into a file (verified), uploads (monolithic PATCH + PUT) and
//! cross-repository mounts.

use super::error::{from_response, ClientError, ErrorKind};
use super::Repository;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Called with the bytes transferred so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Where a download's bytes go, in order.
pub trait BlobSink: Send {
    fn write(&mut self, chunk: Bytes) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Forget everything written: the download starts again from byte 0.
    fn restart(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// A file as a [`BlobSink`].
impl BlobSink for tokio::fs::File {
    async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.write_all(&chunk).await
    }

    async fn restart(&mut self) -> std::io::Result<()> {
        self.set_len(0).await?;
        self.seek(std::io::SeekFrom::Start(0)).await.map(drop)
    }
}

/// Bytes per PATCH of a blob upload: a failed chunk is resent, not the whole blob.
pub const UPLOAD_CHUNK: u64 = 64 << 20;

/// How often a broken download or upload is resumed before giving up.
const RESUME_ATTEMPTS: usize = 5;

impl Repository {
    /// Whether the repository has the blob (`HEAD`).
    pub async fn has_blob(&self, digest: &str) -> Result<bool, ClientError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .request(Method::HEAD, &url)
            .send()
            .await
            .map_err(|e| ClientError::transport(&url, e))?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(from_response(resp).await),
        }
    }

    /// Downloads a blob into `sink`, verifying its digest. A dropped connection continues with a
    /// `Range` request; a server that ignores the range starts over, after [`BlobSink::restart`].
    /// On a digest mismatch the sink has had every byte, and the caller must discard them.
    pub async fn fetch_blob<S: BlobSink>(
        &self,
        digest: &str,
        sink: &mut S,
        progress: Progress<'_>,
    ) -> Result<u64, ClientError> {
        let url = self.url(&format!("blobs/{digest}"));
        let sink_err = |e: std::io::Error| ClientError::io(&format!("storing blob {digest}"), e);
        let mut hasher = Sha256::new();
        let mut have: u64 = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.request(Method::GET, &url);
            if have > 0 {
                req = req.header(RANGE, format!("bytes={have}-"));
            }
            let result: Result<(), ClientError> = async {
                let resp = req.send().await.map_err(|e| ClientError::transport(&url, e))?;
                match resp.status() {
                    StatusCode::PARTIAL_CONTENT => {}
                    StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Ok(()),
                    s if s.is_success() => {
                        if have > 0 {
                            // The server ignored the range: start over.
                            sink.restart().await.map_err(sink_err)?;
                            hasher = Sha256::new();
                            have = 0;
                        }
                    }
                    _ => return Err(from_response(resp).await),
                }
                let mut body = resp.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| ClientError::transport(&url, e))?;
                    hasher.update(&chunk);
                    have += chunk.len() as u64;
                    sink.write(chunk).await.map_err(sink_err)?;
                    progress(have);
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e) if e.kind == ErrorKind::Transport && attempt < RESUME_ATTEMPTS => {
                    tracing::info!(%digest, have, error = %e, "blob download interrupted; resuming");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != digest {
            return Err(ClientError::new(
                ErrorKind::Protocol,
                format!("filesystem layer verification failed for digest {digest}"),
            ));
        }
        Ok(have)
    }

    /// Asks the registry to mount `digest` from repository `from`; true when it did (201).
    pub async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool, ClientError> {
        let url = self.url("blobs/uploads/");
        let resp = self
            .request(Method::POST, &url)
            .query(&[("mount", digest), ("from", from)])
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| ClientError::transport(&url, e))?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            // 202: the registry opened an ordinary upload instead; let it expire.
            StatusCode::ACCEPTED => {
                if let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                    let _ = self.request(Method::DELETE, &self.absolute(loc)).send().await;
                }
                Ok(false)
            }
            _ => Err(from_response(resp).await),
        }
    }

    /// Uploads the file `src` as blob `digest`: POST a session, PATCH the content in chunks of
    /// [`UPLOAD_CHUNK`] (`Content-Range`), PUT `?digest=`. A chunk that fails in transit (or that
    /// the registry refuses with 416 or a 5xx) is resumed from the offset the registry reports for
    /// the session (`GET`, `Range: 0-<last>`).
    pub async fn upload_blob(
        &self,
        digest: &str,
        src: &Path,
        progress: std::sync::Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(), ClientError> {
        let url = self.url("blobs/uploads/");
        let resp = self
            .request(Method::POST, &url)
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| ClientError::transport(&url, e))?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(from_response(resp).await);
        }
        let mut location = self.location(&resp)?;
        let src_name = src.display().to_string();
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| ClientError::io(&src_name, e))?
            .len();
        let (mut offset, mut failures) = (0u64, 0usize);
        while offset < size {
            let len = UPLOAD_CHUNK.min(size - offset);
            match self.patch_chunk(&location, src, offset, len, &progress).await {
                Ok(next) => {
                    location = next;
                    offset += len;
                }
                Err(e) if e.retryable() && failures < RESUME_ATTEMPTS => {
                    failures += 1;
                    tracing::info!(%digest, offset, error = %e, "blob upload chunk failed; resuming");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * failures as u64)).await;
                    (location, offset) = self.upload_status(&location).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let resp = self
            .request(Method::PUT, &put)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| ClientError::transport(&location, e))?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(from_response(resp).await);
        }
        Ok(())
    }

    /// Sends bytes `offset..offset+len` of `src`; returns the session's next location.
    async fn patch_chunk(
        &self,
        location: &str,
        src: &Path,
        offset: u64,
        len: u64,
        progress: &std::sync::Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<String, ClientError> {
        let src_name = src.display().to_string();
        let mut file = tokio::fs::File::open(src)
            .await
            .map_err(|e| ClientError::io(&src_name, e))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| ClientError::io(&src_name, e))?;
        let mut sent = offset;
        let progress = progress.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 1 << 16).map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                progress(sent);
            }
            chunk
        });
        let resp = self
            .request(Method::PATCH, location)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len.to_string())
            .header(CONTENT_RANGE, format!("{}-{}", offset, offset + len - 1))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| ClientError::transport(location, e))?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::NO_CONTENT {
            return Err(from_response(resp).await);
        }
        Ok(self.location(&resp).unwrap_or_else(|_| location.to_string()))
    }

    /// Where an upload session stands: its location and the offset of the next byte it expects.
    async fn upload_status(&self, location: &str) -> Result<(String, u64), ClientError> {
        let resp = self
            .request(Method::GET, location)
            .send()
            .await
            .map_err(|e| ClientError::transport(location, e))?;
        if resp.status() != StatusCode::NO_CONTENT && !resp.status().is_success() {
            return Err(from_response(resp).await);
        }
        // `Range: 0-<last byte>`. distribution answers `0-0` for an empty session as well as for
        // one stored byte: read as empty (chunks are far bigger than one byte).
        let next = resp
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
        Ok((
            self.location(&resp).unwrap_or_else(|_| location.to_string()),
            next,
        ))
    }

    fn location(&self, resp: &reqwest::Response) -> Result<String, ClientError> {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .ok_or_else(|| ClientError::new(ErrorKind::Protocol, "upload answer has no Location"))
    }
}
