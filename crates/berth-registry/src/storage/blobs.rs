//! Blobs: content files shared by all repositories, and the links that let a repository serve them.

use std::io;

use super::Storage;
use crate::error::{ErrorCode, StorageError};
use crate::reference::Digest;

impl Storage {
    /// The size of a blob that `name` may serve, `None` when it is not linked there or missing.
    pub async fn blob_size(&self, name: &str, digest: &Digest) -> Result<Option<u64>, StorageError> {
        if tokio::fs::metadata(self.layer_link_path(name, digest))
            .await
            .is_err()
        {
            return Ok(None);
        }
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Opens a blob of `name` for reading, with its size; BLOB_UNKNOWN when it has none.
    pub async fn open_blob(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<(tokio::fs::File, u64), StorageError> {
        let unknown =
            || StorageError::api(ErrorCode::BlobUnknown, format!("blob {digest} unknown to {name}"));
        if tokio::fs::metadata(self.layer_link_path(name, digest))
            .await
            .is_err()
        {
            return Err(unknown());
        }
        match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(file) => {
                let size = file.metadata().await?.len();
                Ok((file, size))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(unknown()),
            Err(err) => Err(err.into()),
        }
    }

    /// Lets `name` serve a blob already in the store.
    pub(crate) async fn link_blob(&self, name: &str, digest: &Digest) -> Result<(), StorageError> {
        let link = self.layer_link_path(name, digest);
        if tokio::fs::metadata(&link).await.is_err() {
            self.write_atomic(&link, b"").await?;
        }
        Ok(())
    }

    /// Links a blob of repository `from` into `name` (a cross-repository mount). `false` when
    /// `from` has no such blob.
    pub async fn mount_blob(&self, name: &str, from: &str, digest: &Digest) -> Result<bool, StorageError> {
        if self.blob_size(from, digest).await?.is_none() {
            return Ok(false);
        }
        self.link_blob(name, digest).await?;
        Ok(true)
    }

    /// Unlinks a blob from `name`. The content stays until garbage collection.
    pub async fn delete_blob(&self, name: &str, digest: &Digest) -> Result<(), StorageError> {
        if self.blob_size(name, digest).await?.is_none() {
            return Err(StorageError::api(
                ErrorCode::BlobUnknown,
                format!("blob {digest} unknown to {name}"),
            ));
        }
        super::remove_optional(&self.layer_link_path(name, digest)).await?;
        Ok(())
    }
}
