//! `/volumes`: create, list, inspect, remove and prune named volumes (Docker's `local` driver).

use super::{json, ApiError, ApiResult, AppState};
use crate::services::volumes::VolumeError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_api::version::ApiVersion;
use berth_api::{Filters, Query};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove).put(update))
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        let status = match &e {
            VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
            VolumeError::InUse { .. } => StatusCode::CONFLICT,
            VolumeError::Invalid(_) => StatusCode::BAD_REQUEST,
            VolumeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Runs volume work (directory walks, deletes) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

fn filters(q: &Query) -> ApiResult<Filters> {
    Filters::parse(q.get("filters")).map_err(ApiError::bad_request)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(State(d): State<AppState>, body: Bytes) -> ApiResult {
    let body: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let vols = d.volumes.clone();
    let v = blocking(move || {
        vols.create(
            body.name.as_deref(),
            body.driver.as_deref(),
            body.driver_opts.unwrap_or_default(),
            body.labels.unwrap_or_default(),
        )
    })
    .await?;
    d.events.publish(
        "volume",
        "create",
        &v.name,
        BTreeMap::from([("driver".to_string(), v.driver.clone())]),
    );
    Ok(json(StatusCode::CREATED, &d.volumes.to_json(&v, None)))
}

async fn list(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let volumes = d.volumes.list(&filters(&q)?)?;
    let out: Vec<_> = volumes.iter().map(|v| d.volumes.to_json(v, None)).collect();
    Ok(json(StatusCode::OK, &json!({"Volumes": out, "Warnings": null})))
}

async fn inspect(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let v = d.volumes.get(&name)?;
    Ok(json(StatusCode::OK, &d.volumes.to_json(&v, None)))
}

/// Only cluster volumes can be updated; Docker answers the same for local ones.
async fn update(Path(_name): Path<String>) -> ApiResult {
    Err(ApiError::bad_request(
        "volume update is only supported for cluster volumes",
    ))
}

async fn remove(State(d): State<AppState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let force = q.bool("force");
    let vols = d.volumes.clone();
    let existed = d.volumes.get(&name).is_ok();
    let n = name.clone();
    blocking(move || vols.remove(&n, force)).await?;
    if existed {
        d.events.publish("volume", "destroy", &name, BTreeMap::new());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(
    State(d): State<AppState>,
    RawQuery(q): RawQuery,
    Extension(v): Extension<ApiVersion>,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let f = filters(&q)?;
    // Before API 1.42, prune took every unused volume; since, only anonymous ones unless `all`.
    let all_by_default = v < ApiVersion(1, 42);
    let vols = d.volumes.clone();
    let (deleted, reclaimed) = blocking(move || vols.prune(&f, all_by_default)).await?;
    for name in &deleted {
        d.events.publish("volume", "destroy", name, BTreeMap::new());
    }
    Ok(json(
        StatusCode::OK,
        &json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
