//! Registry operations: `POST /images/create?fromImage=` (pull), `POST /images/{name}/push`,
//! `POST /auth`. Progress streams as JSON lines; an error before the first line is answered with
//! Docker's status and `{"message"}`, after it as an `errorDetail` line.

use super::{ApiError, ApiResult, AppState};
use crate::services::distribution::{self as dist, DistributionError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use berth_api::types::JsonMessage;
use berth_api::Query;
use berth_registry::client::Credentials;
use futures::StreamExt;

pub fn routes() -> Router<AppState> {
    Router::new().route("/auth", post(auth))
}

impl From<DistributionError> for ApiError {
    fn from(e: DistributionError) -> ApiError {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.message)
    }
}

fn registry_auth(headers: &HeaderMap) -> Option<Credentials> {
    dist::decode_auth(headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()))
}

/// Streams the messages a task sends, ending with its error (if any) as an `errorDetail` line.
fn stream_task(
    run: impl FnOnce(
            tokio::sync::mpsc::UnboundedSender<JsonMessage>,
        ) -> futures::future::BoxFuture<'static, Result<(), DistributionError>>
        + Send
        + 'static,
) -> axum::response::Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let err_tx = tx.clone();
    tokio::spawn(async move {
        if let Err(e) = run(tx).await {
            let _ = err_tx.send(JsonMessage::error(e.message));
        }
    });
    let lines = tokio_stream_from(rx).map(|m| {
        let mut line = serde_json::to_vec(&m).unwrap_or_default();
        line.extend_from_slice(b"\r\n");
        Ok::<_, std::io::Error>(bytes::Bytes::from(line))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `POST /images/create?fromImage=...&tag=...`.
pub async fn pull(d: AppState, q: &Query, headers: &HeaderMap) -> ApiResult {
    let image = q.non_empty("fromImage").unwrap_or_default();
    let reference = dist::pull_reference(image, q.non_empty("tag"))?;
    let store = d.images.store.clone();
    if reference.tag().is_none() && reference.digest().is_none() {
        // No tag at all: every tag, as dockerd (`docker pull --all-tags`).
        let creds = registry_auth(headers);
        let tags = dist::list_tags(&d, &reference, creds.clone()).await?;
        return Ok(stream_task(move |tx| {
            Box::pin(async move { dist::run_pull_all(&d, store, reference, tags, creds, tx).await })
        }));
    }
    let prepared = dist::prepare_pull(&d, reference, registry_auth(headers)).await?;
    Ok(stream_task(move |tx| {
        Box::pin(async move { dist::run_pull(&d, store, prepared, tx).await })
    }))
}

/// `POST /images/{name}/push?tag=...`.
pub async fn push(d: AppState, name: &str, q: &Query, headers: &HeaderMap) -> ApiResult {
    let creds = registry_auth(headers);
    let store = d.images.store.clone();
    let (name, tag) = (name.to_string(), q.non_empty("tag").map(String::from));
    Ok(stream_task(move |tx| {
        Box::pin(async move { dist::run_push(&d, store, &name, tag.as_deref(), creds, tx).await })
    }))
}

#[derive(serde::Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
    #[serde(default)]
    identitytoken: String,
}

/// `POST /auth`: `docker login`.
async fn auth(State(d): State<AppState>, Json(a): Json<AuthConfig>) -> ApiResult {
    let creds = Credentials {
        username: a.username,
        password: a.password,
        identity_token: Some(a.identitytoken).filter(|t| !t.is_empty()),
    };
    dist::login(&d, &a.serveraddress, creds).await.map_err(|e| {
        let status = if e.status == 401 || e.status == 403 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, e.message)
    })?;
    Ok(Json(serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""})).into_response())
}
