//! Errors of the container service, each with the HTTP status Docker gives it.

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("{0}")]
    Conflict(String),
    /// Not allowed in this state (HTTP 403, as Docker's `errdefs.Forbidden`).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    /// Already in the asked-for state (HTTP 304, no body).
    #[error("container already in that state")]
    NotModified,
    /// The process could not be started; `code` is what `docker run` exits with.
    #[error("{message}")]
    StartFailed { code: i64, message: String },
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    #[error("{0}")]
    Internal(String),
}

impl From<std::io::Error> for ContainerError {
    fn from(e: std::io::Error) -> Self {
        ContainerError::Internal(e.to_string())
    }
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
