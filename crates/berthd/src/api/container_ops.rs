//! `/containers/{id}/...`: pause, unpause, top, update, stats, rename.

use super::{json, ApiError, ApiResult, AppState};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use berth_api::Query;
use futures::StreamExt;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/rename", post(rename))
}

fn query(q: Option<String>) -> Query {
    Query::parse(q.as_deref())
}

async fn pause(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    d.containers.pause(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn unpause(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    d.containers.unpause(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn top(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let procs = d.containers.top(&id, q.get("ps_args")).await?;
    Ok(json(StatusCode::OK, &procs))
}

async fn update(State(d): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let answer = d.containers.update(&id, &body).await?;
    Ok(json(StatusCode::OK, &answer))
}

async fn stats(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    // `stream` defaults to true; `one-shot` only counts without streaming.
    let stream = q.get("stream").is_none() || q.bool("stream");
    let one_shot = !stream && q.bool("one-shot");
    let mut rx = d.containers.stats(&id, stream, one_shot)?;
    let lines = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|v| {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn rename(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    d.containers.rename(&id, q.get("name").unwrap_or("")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
