//! `/_ping`, `/version`, `/info`, `/system/df`.

use super::{json, ApiResult, AppState};
use crate::services::system;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use berth_api::types::SystemDf;
use berth_api::version::CURRENT;
use berth_api::ApiVersion;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/system/df", get(df))
}

async fn ping(State(d): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        "Api-Version",
        HeaderValue::from_str(&CURRENT.to_string()).expect("header"),
    );
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert(
        "Docker-Experimental",
        HeaderValue::from_static(if d.config.experimental { "true" } else { "false" }),
    );
    // Classic builder: the docker CLI then uses POST /build rather than BuildKit's session.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    (h, "OK").into_response()
}

async fn version() -> Response {
    json(StatusCode::OK, &system::version())
}

async fn info(State(d): State<AppState>) -> Response {
    json(StatusCode::OK, &system::info(&d).await)
}

async fn df(State(d): State<AppState>, Extension(v): Extension<ApiVersion>) -> ApiResult {
    let (images, layers_size) = d.images.disk_usage(v).await?;
    let vols = d.clone();
    let volumes = tokio::task::spawn_blocking(move || {
        let all = vols.volumes.list(&Default::default()).unwrap_or_default();
        all.iter()
            .map(|vol| {
                let usage = (
                    vols.volumes.size(&vol.name) as i64,
                    vols.volumes.users(&vol.name).len() as i64,
                );
                vols.volumes.to_json(vol, Some(usage))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &SystemDf {
            layers_size,
            images,
            containers: d
                .containers
                .list(true, None, &Default::default())
                .unwrap_or_default(),
            volumes,
            build_cache: vec![],
        },
    ))
}
