//! A container's files: `GET /containers/{id}/changes`, `GET /containers/{id}/export`, and
//! `GET`/`HEAD`/`PUT /containers/{id}/archive` (what `docker cp` uses). Tars are streamed.

use super::{body_reader, json, ApiError, ApiResult, AppState};
use crate::services::containers::files::{ExtractOptions, FileError, PathStat};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_api::Query;
use std::io::Write;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/export", get(export))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> ApiError {
        match e {
            FileError::Container(e) => e.into(),
            e @ FileError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            FileError::Invalid(m) => ApiError::bad_request(m),
            FileError::Io(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// A blocking writer feeding a response body; fails once the client has gone.
struct BodyWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tar response whose body `produce` writes from a blocking thread. An error after the
/// headers went out ends the body abruptly, so the client sees a broken archive, not a short one.
fn tar_stream(
    produce: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> (HeaderValue, Body) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, BodyWriter(tx));
        let r = produce(&mut out).and_then(|()| out.flush());
        if let Err(e) = r {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(error = %e, "writing a container tar failed");
            }
            let _ = errors.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        HeaderValue::from_static("application/x-tar"),
        Body::from_stream(stream),
    )
}

async fn changes(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json(StatusCode::OK, &d.containers.diff(&id).await?))
}

async fn export(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let source = d.containers.export_source(&id).await?;
    let (ct, body) = tar_stream(move |out| source.write_to(out).map(|_| ()));
    Ok(([(header::CONTENT_TYPE, ct)], body).into_response())
}

fn stat_header(stat: &PathStat) -> HeaderValue {
    let json = serde_json::to_vec(stat).unwrap_or_default();
    HeaderValue::from_str(&base64(&json)).expect("base64 is a valid header value")
}

/// Standard base64 with padding, as Docker encodes the path stat.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn path_param(q: &Query) -> ApiResult<String> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path is required")),
    }
}

async fn archive_head(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let path = path_param(&Query::parse(q.as_deref()))?;
    let stat = d.containers.stat_path(&id, &path).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(STAT_HEADER, stat_header(&stat));
    Ok(resp)
}

async fn archive_get(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let path = path_param(&Query::parse(q.as_deref()))?;
    let (stat, source) = d.containers.archive_source(&id, &path).await?;
    let (ct, body) = tar_stream(move |out| source.write_to(out).map(|_| ()));
    let mut resp: Response = ([(header::CONTENT_TYPE, ct)], body).into_response();
    resp.headers_mut().insert(STAT_HEADER, stat_header(&stat));
    Ok(resp)
}

async fn archive_put(
    State(d): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let path = path_param(&q)?;
    let opts = ExtractOptions {
        no_overwrite_dir_non_dir: q.bool("noOverwriteDirNonDir"),
        copy_uid_gid: q.bool("copyUIDGID"),
        ..Default::default()
    };
    let reader = body_reader(req.into_body());
    d.containers.extract_archive(&id, &path, opts, reader).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
