//! Client errors, with the registry's error code turned into the text Docker shows
//! (`manifest unknown: manifest unknown`, `unauthorized: authentication required`).

use reqwest::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The manifest, blob or repository does not exist.
    NotFound,
    /// Credentials are missing or wrong.
    Unauthorized,
    /// Authenticated, but not allowed.
    Denied,
    /// The registry could not be reached, or the connection broke.
    Transport,
    /// The registry answered something this client does not understand, or bad content.
    Protocol,
    /// Local I/O (the download file).
    Io,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
    pub status: Option<u16>,
}

impl ClientError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError {
            kind,
            message: message.into(),
            status: None,
        }
    }

    /// Worth resuming: a broken connection, the registry's own failure (5xx), or a range it
    /// did not expect (416: ask where the upload stands, and go on from there).
    pub fn retryable(&self) -> bool {
        self.kind == ErrorKind::Transport || self.status.is_some_and(|s| s >= 500 || s == 416)
    }

    pub(crate) fn transport(url: &str, e: reqwest::Error) -> ClientError {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        ClientError::new(ErrorKind::Transport, format!("{url}: {msg}"))
    }

    pub(crate) fn io(context: &str, e: std::io::Error) -> ClientError {
        ClientError::new(ErrorKind::Io, format!("{context}: {e}"))
    }
}

#[derive(serde::Deserialize)]
struct ErrorsBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Reads an error answer: distribution's `{"errors":[...]}`, formatted as Docker formats it.
pub(crate) async fn from_response(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    from_parts(status, &body)
}

pub(crate) fn from_parts(status: StatusCode, body: &[u8]) -> ClientError {
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Denied,
        _ => ErrorKind::Protocol,
    };
    let parsed: Option<ErrorsBody> = serde_json::from_slice(body).ok();
    let message = match parsed.filter(|b| !b.errors.is_empty()) {
        Some(b) => b
            .errors
            .iter()
            .map(|e| {
                let code = e.code.to_ascii_lowercase().replace('_', " ");
                if e.message.is_empty() {
                    code
                } else {
                    format!("{code}: {}", e.message)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        None if status == StatusCode::UNAUTHORIZED => "unauthorized: authentication required".into(),
        None if status == StatusCode::NOT_FOUND => "not found".into(),
        None => format!(
            "registry answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
        ),
    };
    ClientError {
        kind,
        message,
        status: Some(status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_registry_errors_like_docker() {
        let e = from_parts(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "manifest unknown: manifest unknown");
        let e = from_parts(
            StatusCode::UNAUTHORIZED,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
        );
        assert_eq!(e.message, "unauthorized: authentication required");
        assert_eq!(
            from_parts(StatusCode::UNAUTHORIZED, b"").kind,
            ErrorKind::Unauthorized
        );
    }
}
