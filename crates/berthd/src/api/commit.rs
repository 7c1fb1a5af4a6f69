//! `POST /commit`: a container's changes as a new image.

use super::{json, ApiError, ApiResult, AppState};
use crate::services::build::{commit as commit_container, CommitError, CommitRequest};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use berth_api::Query;

pub fn routes() -> Router<AppState> {
    Router::new().route("/commit", post(commit))
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> ApiError {
        match e {
            CommitError::Container(c) => c.into(),
            CommitError::Image(i) => i.into(),
            CommitError::Invalid(m) => ApiError::bad_request(m),
            CommitError::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

async fn commit(State(d): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let container = q
        .non_empty("container")
        .ok_or_else(|| ApiError::bad_request("container is required"))?
        .to_string();
    let config = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice::<serde_json::Value>(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid container config: {e}")))?,
        )
        .filter(|v| !v.is_null())
    };
    let req = CommitRequest {
        container,
        repo: q.non_empty("repo").map(str::to_string),
        tag: q.non_empty("tag").map(str::to_string),
        comment: q.get("comment").unwrap_or_default().to_string(),
        author: q.get("author").unwrap_or_default().to_string(),
        pause: q
            .get("pause")
            .is_none_or(|p| !matches!(p, "0" | "false" | "False")),
        changes: q.all("changes"),
        config,
    };
    let id = commit_container(&d, req).await?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id.to_string() }),
    ))
}
