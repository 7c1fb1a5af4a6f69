//! The image store's error type. Each error has a [`ErrorKind`] so the API layer can pick an HTTP
//! status without parsing messages.

use crate::digest::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked for does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with the store's state (HTTP 409).
    Conflict,
    /// The caller's input is malformed (HTTP 400).
    InvalidInput,
    /// Something broke on our side (HTTP 500).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store: {0}")]
    Meta(String),
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NoSuchImage(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::Invalid(_) | ImageError::DigestMismatch { .. } | ImageError::Reference(_) => {
                ErrorKind::InvalidInput
            }
            // A layer that cannot be written for our own reasons (disk full) is not bad input.
            ImageError::Layer(crate::layer::LayerError::Io { .. }) => ErrorKind::Internal,
            ImageError::Layer(_) => ErrorKind::InvalidInput,
            ImageError::Io { .. } | ImageError::Meta(_) => ErrorKind::Internal,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ImageError::Invalid(msg.into())
    }
}

/// Adds a context line to I/O errors: `.ctx("writing blob")?`.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ImageError> {
        self.map_err(|source| ImageError::Io {
            context: context(),
            source,
        })
    }
}

macro_rules! meta_err {
    ($($t:ty),*) => {$(
        impl From<$t> for ImageError {
            fn from(e: $t) -> Self {
                ImageError::Meta(e.to_string())
            }
        }
    )*};
}
meta_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
