//! `POST /build` (the classic builder's JSON message stream) and `POST /build/prune`.

use super::{body_reader, json, receiver_stream, ApiError, ApiResult, AppState};
use crate::services::build::{start_build, BuildRequest};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use berth_api::Query;
use berth_build::BuildOptions;
use berth_image::Reference;
use futures::StreamExt;
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/build", post(build))
        .route("/build/prune", post(prune))
}

fn json_param<T: serde::de::DeserializeOwned + Default>(q: &Query, name: &str) -> Result<T, ApiError> {
    match q.non_empty(name) {
        None => Ok(T::default()),
        Some(raw) => serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid {name} parameter: {e}"))),
    }
}

fn options(q: &Query, headers: &HeaderMap) -> Result<BuildRequest, ApiError> {
    if q.get("version") == Some("2") {
        return Err(ApiError::bad_request(
            "BuildKit is not supported by berthd: use the classic builder (DOCKER_BUILDKIT=0)",
        ));
    }
    if let Some(remote) = q.non_empty("remote") {
        return Err(ApiError::bad_request(format!(
            "remote build contexts are not supported by berthd: {remote}"
        )));
    }
    let tags = q
        .all("t")
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Reference>()
                .map(Reference::with_default_tag)
                .map_err(|e| ApiError::bad_request(format!("invalid tag {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let build_args: BTreeMap<String, Option<String>> = json_param(q, "buildargs")?;
    let labels: BTreeMap<String, String> = json_param(q, "labels")?;
    let options = BuildOptions {
        dockerfile: q.non_empty("dockerfile").unwrap_or("Dockerfile").to_string(),
        tags,
        build_args,
        target: q.non_empty("target").map(str::to_string),
        no_cache: q.bool("nocache"),
        labels,
        network_mode: q.get("networkmode").unwrap_or_default().to_string(),
        force_remove: q.bool("forcerm"),
        keep_containers: q.get("rm").is_some_and(|v| matches!(v, "0" | "false" | "False")),
    };
    let registry_config = headers.get("x-registry-config").and_then(|v| v.to_str().ok());
    Ok(BuildRequest {
        options,
        quiet: q.bool("q"),
        pull: q.bool("pull"),
        registry_auth: crate::services::distribution::decode_auth_config(registry_config),
    })
}

async fn build(
    State(d): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let req = options(&q, &headers)?;
    let rx = start_build(d.clone(), req, body_reader(body));
    let lines = receiver_stream(rx).map(|m| {
        let mut line = serde_json::to_vec(&m).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn prune(State(d): State<AppState>) -> ApiResult {
    let (deleted, reclaimed) = d.build.prune().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "CachesDeleted": deleted, "SpaceReclaimed": reclaimed }),
    ))
}
