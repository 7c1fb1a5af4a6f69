//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why the container's process could not be executed (decides Docker's exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecErrorKind {
    /// The executable does not exist (`executable file not found in $PATH`, `no such file or directory`):
    /// Docker exits 127.
    NotFound,
    /// The executable exists but cannot be run (`permission denied`): Docker exits 126.
    PermissionDenied,
    /// Any other `execve` failure (e.g. `exec format error`).
    Other,
}

impl ExecErrorKind {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            ExecErrorKind::NotFound => 1,
            ExecErrorKind::PermissionDenied => 2,
            ExecErrorKind::Other => 3,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(ExecErrorKind::NotFound),
            2 => Some(ExecErrorKind::PermissionDenied),
            3 => Some(ExecErrorKind::Other),
            _ => None,
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The OCI config asks for something invalid or contradictory.
    #[error("invalid container config: {0}")]
    InvalidSpec(String),

    /// The OCI config asks for something this runtime does not implement.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A cgroup operation failed.
    #[error("cgroup {path}: {message}")]
    Cgroup { path: PathBuf, message: String },

    /// The seccomp profile could not be compiled or loaded.
    #[error("seccomp: {0}")]
    Seccomp(String),

    /// The container's process could not be executed; the message is the one runc (and so Docker)
    /// prints, e.g. `exec: "nosuch": executable file not found in $PATH`.
    #[error("{message}")]
    Exec { kind: ExecErrorKind, message: String },

    /// Setting up the container failed inside the container's init process (before exec).
    #[error("container init: {0}")]
    Init(String),
}

impl RuntimeError {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The OS error number behind an I/O error, if that is what this is.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            RuntimeError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn cgroup(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        RuntimeError::Cgroup {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The kind of exec failure, when this error is one.
    pub fn exec_kind(&self) -> Option<ExecErrorKind> {
        match self {
            RuntimeError::Exec { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The exit code Docker reports for a container that failed to start with this error:
    /// 127 when the command was not found, 126 when it could not be invoked, else 125.
    pub fn exit_code(&self) -> i32 {
        match self.exec_kind() {
            Some(ExecErrorKind::NotFound) => 127,
            Some(ExecErrorKind::PermissionDenied) => 126,
            _ => 125,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
