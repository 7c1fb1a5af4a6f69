//! The Docker Engine API over HTTP: routing, version negotiation, errors in Docker's shape.
//! Handlers translate between HTTP and the services; they hold no logic of their own.

mod build;
mod commit;
mod container_files;
mod container_ops;
mod containers;
mod distribution;
mod events;
mod images;
mod networks;
mod system;
mod volumes;

use crate::services::Daemon;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_api::version::{ApiVersion, CURRENT};
use berth_api::ErrorBody;
use futures::TryStreamExt;
use std::sync::Arc;
use tokio_util::io::{StreamReader, SyncIoBridge};

pub type AppState = Arc<Daemon>;

/// Serves the API on one listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    daemon: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = router(daemon);
    let app = tower::Layer::layer(&axum::middleware::from_fn(negotiate_version), routes);
    axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(app))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(daemon: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(images::routes())
        .merge(distribution::routes())
        .merge(build::routes())
        .merge(commit::routes())
        .merge(containers::routes())
        .merge(container_files::routes())
        .merge(container_ops::routes())
        .merge(events::routes())
        .merge(networks::routes())
        .merge(volumes::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "page not found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(daemon)
}

/// Strips `/vX.Y` from the path (refusing versions out of range, as Docker does), records the
/// version the client speaks, and stamps every answer with the server header.
async fn negotiate_version(mut req: Request, next: Next) -> Response {
    let mut version = CURRENT;
    if let Some((v, rest)) = ApiVersion::strip_prefix(req.uri().path()) {
        match v.and_then(|v| v.check().map(|_| v)) {
            Ok(v) => version = v,
            Err(msg) => return stamp(ApiError::new(StatusCode::BAD_REQUEST, msg).into_response()),
        }
        let rest = rest.to_string();
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest,
        };
        parts.path_and_query = pq.parse().ok();
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    tracing::debug!(method = %req.method(), path = %req.uri(), %version, "request");
    crate::memory::note_activity();
    req.extensions_mut().insert(version);
    stamp(next.run(req).await)
}

/// Every answer carries the server name and the API version, as Docker's do.
fn stamp(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(concat!("Berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp.headers_mut().insert(
        "Api-Version",
        HeaderValue::from_str(&CURRENT.to_string()).expect("header"),
    );
    resp
}

/// An error answered in Docker's shape: `{"message": "..."}` with Docker's status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        (
            self.status,
            axum::Json(ErrorBody {
                message: self.message,
            }),
        )
            .into_response()
    }
}

impl From<berth_image::ImageError> for ApiError {
    fn from(e: berth_image::ImageError) -> ApiError {
        use berth_image::ErrorKind;
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// A request body as a blocking reader, for the store's synchronous tar code.
pub fn body_reader(body: Body) -> impl std::io::Read + Send + 'static {
    SyncIoBridge::new(StreamReader::new(
        body.into_data_stream().map_err(std::io::Error::other),
    ))
}

/// Docker's JSON message stream (`{"stream": ...}` lines) as one response.
pub fn json_lines(messages: &[berth_api::types::JsonMessage]) -> Response {
    let mut body = String::new();
    for m in messages {
        body.push_str(&serde_json::to_string(m).unwrap_or_default());
        body.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

/// A channel's receiving end as a stream (for streamed response bodies).
pub fn receiver_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
