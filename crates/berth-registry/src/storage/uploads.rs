//! Upload sessions: data appended chunk by chunk to `uploads/<uuid>/data`, with the committed
//! size in `uploads/<uuid>/state` so that a session survives a restart of the server.

use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{sync_dir, Storage};
use crate::error::{ApiError, ErrorCode, StorageError};
use crate::reference::Digest;

/// What the server keeps in memory about a session: the running hash of the committed bytes.
/// After a restart the hash is unknown and is recomputed from the data when the upload finishes.
#[derive(Debug, Default)]
pub(crate) struct UploadCursor {
    loaded: bool,
    size: u64,
    hasher: Option<Sha256>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadState {
    name: String,
    /// Bytes of `data` that were completely received and fsynced.
    size: u64,
    /// When a chunk last arrived (RFC 3339), for purging abandoned sessions.
    updated_at: String,
}

/// Where an upload session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub uuid: String,
    pub size: u64,
}

impl Storage {
    fn upload_dir(&self, uuid: &str) -> PathBuf {
        self.root.join("uploads").join(uuid)
    }

    /// Starts a session for repository `name`.
    pub async fn start_upload(&self, name: &str) -> Result<UploadStatus, StorageError> {
        let uuid = new_uuid();
        let dir = self.upload_dir(&uuid);
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::File::create(dir.join("data")).await?;
        let state = UploadState {
            name: name.to_string(),
            size: 0,
            updated_at: chrono::Utc::now().to_rfc3339(),
        };
        self.write_atomic(
            &dir.join("state"),
            &serde_json::to_vec(&state).expect("state json"),
        )
        .await?;
        let cursor = UploadCursor {
            loaded: true,
            size: 0,
            hasher: Some(Sha256::new()),
        };
        self.uploads
            .lock()
            .expect("uploads lock")
            .insert(uuid.clone(), Arc::new(cursor.into()));
        Ok(UploadStatus { uuid, size: 0 })
    }

    fn cursor(&self, uuid: &str) -> Arc<tokio::sync::Mutex<UploadCursor>> {
        self.uploads
            .lock()
            .expect("uploads lock")
            .entry(uuid.to_string())
            .or_default()
            .clone()
    }

    fn forget(&self, uuid: &str) {
        self.uploads.lock().expect("uploads lock").remove(uuid);
    }

    /// Loads the session from disk on first use after a restart, dropping any bytes that a crash
    /// left beyond the committed size. Checks that the session belongs to `name`.
    async fn load(&self, name: &str, uuid: &str, cursor: &mut UploadCursor) -> Result<(), StorageError> {
        let unknown = || {
            // Requests for unknown sessions must not leave entries behind in memory.
            if !cursor.loaded {
                self.forget(uuid);
            }
            StorageError::api(ErrorCode::BlobUploadUnknown, format!("upload {uuid} unknown"))
        };
        if uuid.is_empty() || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(unknown());
        }
        let dir = self.upload_dir(uuid);
        let state = match super::read_optional(&dir.join("state")).await? {
            Some(bytes) => serde_json::from_slice::<UploadState>(&bytes).map_err(io::Error::other)?,
            None => return Err(unknown()),
        };
        if state.name != name {
            return Err(unknown());
        }
        if !cursor.loaded {
            let data = tokio::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("data"))
                .await?;
            data.set_len(state.size).await?;
            *cursor = UploadCursor {
                loaded: true,
                size: state.size,
                hasher: None,
            };
        }
        Ok(())
    }

    /// Where the session stands.
    pub async fn upload_status(&self, name: &str, uuid: &str) -> Result<UploadStatus, StorageError> {
        let cursor = self.cursor(uuid);
        let mut cursor = cursor.lock().await;
        self.load(name, uuid, &mut cursor).await?;
        Ok(UploadStatus {
            uuid: uuid.to_string(),
            size: cursor.size,
        })
    }

    /// Appends a chunk. `start` is the first offset of a `Content-Range`, which must be the
    /// current size (else 416); `length` a `Content-Length` the chunk must match.
    pub async fn append_upload<S>(
        &self,
        name: &str,
        uuid: &str,
        start: Option<u64>,
        length: Option<u64>,
        body: S,
    ) -> Result<UploadStatus, StorageError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let cursor = self.cursor(uuid);
        let mut cursor = cursor.lock().await;
        self.load(name, uuid, &mut cursor).await?;
        if let Some(start) = start {
            if start != cursor.size {
                let end = cursor.size.saturating_sub(1);
                return Err(StorageError::Api(
                    ApiError::new(
                        ErrorCode::BlobUploadInvalid,
                        format!("chunk starts at {start}, upload has {} bytes", cursor.size),
                    )
                    .with_status(axum::http::StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header("range", format!("0-{end}"))
                    .with_header("docker-upload-uuid", uuid),
                ));
            }
        }
        self.append_locked(name, uuid, &mut cursor, length, body).await?;
        Ok(UploadStatus {
            uuid: uuid.to_string(),
            size: cursor.size,
        })
    }

    async fn append_locked<S>(
        &self,
        name: &str,
        uuid: &str,
        cursor: &mut UploadCursor,
        length: Option<u64>,
        mut body: S,
    ) -> Result<(), StorageError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let dir = self.upload_dir(uuid);
        let mut data = tokio::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("data"))
            .await?;
        data.seek(SeekFrom::Start(cursor.size)).await?;
        let mut hasher = cursor.hasher.take();
        let (mut written, mut flushed) = (0u64, 0u64);
        let result: Result<(), StorageError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&chunk);
                }
                data.write_all(&chunk).await?;
                written += chunk.len() as u64;
                if written - flushed >= super::WRITEBACK_STEP {
                    data.flush().await?;
                    super::start_writeback(&data, cursor.size + flushed);
                    flushed = written;
                }
            }
            if let Some(length) = length {
                if length != written {
                    return Err(StorageError::api(
                        ErrorCode::SizeInvalid,
                        format!("received {written} bytes, Content-Length said {length}"),
                    ));
                }
            }
            data.sync_data().await?;
            Ok(())
        }
        .await;
        if let Err(err) = result {
            // Drop the partial chunk: the session stays at its last committed size. The running
            // hash already took some of the chunk, so it is recomputed at the end instead.
            data.set_len(cursor.size).await?;
            return Err(err);
        }
        cursor.size += written;
        cursor.hasher = hasher;
        let state = UploadState {
            name: name.to_string(),
            size: cursor.size,
            updated_at: chrono::Utc::now().to_rfc3339(),
        };
        self.write_atomic(
            &dir.join("state"),
            &serde_json::to_vec(&state).expect("state json"),
        )
        .await?;
        Ok(())
    }

    /// Finishes a session: appends the optional last chunk, checks the digest, and moves the data
    /// into the blob store, linked to `name`. On a digest mismatch the session is discarded and
    /// nothing is stored.
    pub async fn finish_upload<S>(
        &self,
        name: &str,
        uuid: &str,
        expected: &Digest,
        length: Option<u64>,
        body: S,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let cursor = self.cursor(uuid);
        let mut cursor = cursor.lock().await;
        self.load(name, uuid, &mut cursor).await?;
        self.append_locked(name, uuid, &mut cursor, length, body).await?;
        let dir = self.upload_dir(uuid);
        let data_path = dir.join("data");
        let actual = match cursor.hasher.take() {
            Some(hasher) => Digest::from_sha256(&hasher.finalize()),
            None => hash_file(&data_path).await?,
        };
        if &actual != expected {
            self.discard(uuid, &mut cursor).await?;
            return Err(StorageError::Api(
                ApiError::new(
                    ErrorCode::DigestInvalid,
                    format!("content digest is {actual}, not {expected}"),
                )
                .with_detail(
                    serde_json::json!({ "expected": expected.to_string(), "actual": actual.to_string() }),
                ),
            ));
        }
        let blob = self.blob_path(expected);
        if tokio::fs::metadata(&blob).await.is_err() {
            tokio::fs::rename(&data_path, &blob).await?;
            let parent = blob.parent().expect("blob dir").to_path_buf();
            tokio::task::spawn_blocking(move || sync_dir(&parent))
                .await
                .map_err(io::Error::other)??;
        }
        self.link_blob(name, expected).await?;
        let size = cursor.size;
        self.discard(uuid, &mut cursor).await?;
        Ok(size)
    }

    /// Cancels a session.
    pub async fn cancel_upload(&self, name: &str, uuid: &str) -> Result<(), StorageError> {
        let cursor = self.cursor(uuid);
        let mut cursor = cursor.lock().await;
        self.load(name, uuid, &mut cursor).await?;
        self.discard(uuid, &mut cursor).await
    }

    async fn discard(&self, uuid: &str, cursor: &mut UploadCursor) -> Result<(), StorageError> {
        // The state file goes first: without it the session is unknown, whatever else remains.
        super::remove_optional(&self.upload_dir(uuid).join("state")).await?;
        match tokio::fs::remove_dir_all(self.upload_dir(uuid)).await {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        *cursor = UploadCursor::default();
        self.forget(uuid);
        Ok(())
    }

    /// Stores a whole blob in one go (a monolithic upload).
    pub async fn put_blob<S>(
        &self,
        name: &str,
        expected: &Digest,
        length: Option<u64>,
        body: S,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let session = self.start_upload(name).await?;
        let result = self
            .finish_upload(name, &session.uuid, expected, length, body)
            .await;
        if result.is_err() {
            let _ = self.cancel_upload(name, &session.uuid).await;
        }
        result
    }
}

/// Removes sessions idle for longer than `max_idle` (distribution purges after a week too).
pub(crate) fn purge_idle_uploads(uploads: &std::path::Path, max_idle: chrono::Duration) -> io::Result<usize> {
    let now = chrono::Utc::now();
    let mut purged = 0;
    for uuid in super::list_dir(uploads)? {
        let dir = uploads.join(&uuid);
        let updated = std::fs::read(dir.join("state"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<UploadState>(&bytes).ok())
            .and_then(|state| chrono::DateTime::parse_from_rfc3339(&state.updated_at).ok());
        // A directory without a readable state is a session whose start or end was cut short.
        let idle = updated.is_none_or(|updated| now.signed_duration_since(updated) > max_idle);
        if idle {
            std::fs::remove_dir_all(&dir)?;
            purged += 1;
        }
    }
    Ok(purged)
}

/// Recomputes the digest of a file (a session's data after a restart).
async fn hash_file(path: &std::path::Path) -> io::Result<Digest> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(Digest::from_sha256(&hasher.finalize()));
        }
        hasher.update(&buffer[..read]);
    }
}

/// A random version-4 UUID in its usual text form.
fn new_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_sessions_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let write = |uuid: &str, age: chrono::Duration| {
            let session = dir.path().join(uuid);
            std::fs::create_dir_all(&session).unwrap();
            let state = UploadState {
                name: "r".into(),
                size: 0,
                updated_at: (chrono::Utc::now() - age).to_rfc3339(),
            };
            std::fs::write(session.join("state"), serde_json::to_vec(&state).unwrap()).unwrap();
        };
        write("fresh", chrono::Duration::hours(1));
        write("stale", chrono::Duration::days(8));
        std::fs::create_dir_all(dir.path().join("no-state")).unwrap();
        assert_eq!(
            purge_idle_uploads(dir.path(), chrono::Duration::days(7)).unwrap(),
            2
        );
        assert_eq!(super::super::list_dir(dir.path()).unwrap(), ["fresh"]);
    }
}
