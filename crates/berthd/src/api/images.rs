//! `/images/...`: list, inspect, history, tag, delete, prune, save, load, import.

use super::{body_reader, json, json_lines, ApiError, ApiResult, AppState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_api::types::JsonMessage;
use berth_api::{ApiVersion, Filters, Query};
use berth_image::{ImportOptions, Reference};
use futures::StreamExt;
use tokio_util::io::{ReaderStream, SyncIoBridge};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/get", get(save_many))
        .route("/images/load", post(load))
        .route("/images/create", post(create))
        .route("/images/prune", post(prune))
        .route(
            "/images/{*rest}",
            get(get_image).post(post_image).delete(delete_image),
        )
}

fn filters(q: &Query) -> Result<Filters, ApiError> {
    Filters::parse(q.get("filters")).map_err(ApiError::bad_request)
}

async fn list(
    State(d): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    Ok(json(
        StatusCode::OK,
        &d.images.list(filters(&q)?, v, q.bool("all")).await?,
    ))
}

/// Image names contain slashes (`localhost:5000/a/b`), so the action is the last path segment.
async fn get_image(State(d): State<AppState>, Path(rest): Path<String>) -> ApiResult {
    if let Some(name) = rest.strip_suffix("/json") {
        Ok(json(StatusCode::OK, &d.images.inspect(name).await?))
    } else if let Some(name) = rest.strip_suffix("/history") {
        Ok(json(StatusCode::OK, &d.images.history(name).await?))
    } else if let Some(name) = rest.strip_suffix("/get") {
        save(d, vec![name.to_string()]).await
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
    }
}

async fn post_image(
    State(d): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q
            .non_empty("repo")
            .ok_or_else(|| ApiError::bad_request("repository name must have at least one component"))?;
        d.images.tag(name, repo, q.get("tag")).await?;
        Ok(StatusCode::CREATED.into_response())
    } else if let Some(name) = rest.strip_suffix("/push") {
        super::distribution::push(d, name, &q, &headers).await
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
    }
}

async fn delete_image(
    State(d): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let force = q.bool("force");
    // An image under a container stays: refuse a delete that would remove it (untagging one of
    // several names is fine).
    let info = d.images.resolve(&name).await?;
    let only_untag = info.refs.len() > 1
        && info
            .refs
            .iter()
            .any(|r| r.familiar_string() == name || r.familiar_name() == name);
    if !only_untag {
        let users = d.containers.image_users(&info.record.id.to_string());
        if let Some(running) = users.iter().find(|c| c.state.running) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                    info.record.id.short(),
                    &running.id[..12]
                ),
            ));
        }
        if let Some(stopped) = users.first() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "conflict: unable to delete {} ({}) - image is being used by stopped container {}",
                    info.record.id.short(),
                    if force {
                        "cannot be forced"
                    } else {
                        "must be forced"
                    },
                    &stopped.id[..12]
                ),
            ));
        }
    }
    Ok(json(StatusCode::OK, &d.images.delete(&name, force).await?))
}

async fn prune(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let in_use: std::collections::HashSet<String> =
        d.containers.all().iter().map(|c| c.record().image_id).collect();
    Ok(json(StatusCode::OK, &d.images.prune(filters(&q)?, in_use).await?))
}

async fn save_many(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let names = Query::parse(q.as_deref()).all("names");
    if names.is_empty() {
        return Err(ApiError::bad_request("no images specified"));
    }
    save(d, names).await
}

/// Streams the archive as it is written. A failure half-way ends the body with an error, so the
/// client sees a broken transfer rather than a short tar that looks complete.
async fn save(d: AppState, names: Vec<String>) -> ApiResult {
    d.images.check_names(&names).await?;
    let (writer, reader) = tokio::io::duplex(1 << 20);
    let writer = SyncIoBridge::new(writer);
    let images = d.images.clone();
    let task = tokio::spawn(async move { images.save(names, writer).await });
    let outcome = futures::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e.to_string()))),
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        }
    })
    .filter_map(|x| async { x });
    let body = Body::from_stream(ReaderStream::with_capacity(reader, 1 << 16).chain(outcome));
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

async fn load(State(d): State<AppState>, body: Body) -> ApiResult {
    let messages = d.images.load(body_reader(body)).await?;
    let lines: Vec<JsonMessage> = messages
        .into_iter()
        .map(|m| JsonMessage::stream(format!("{m}\n")))
        .collect();
    Ok(json_lines(&lines))
}

/// `POST /images/create`: `fromSrc=-` imports the body as a rootfs; `fromImage` pulls.
async fn create(
    State(d): State<AppState>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult {
    let q = Query::parse(q.as_deref());
    if q.non_empty("fromImage").is_some() {
        return super::distribution::pull(d, &q, &headers).await;
    }
    match q.non_empty("fromSrc") {
        Some("-") => {}
        Some(src) => {
            return Err(ApiError::bad_request(format!(
                "importing from {src} is not supported: send the tarball in the request body (fromSrc=-)"
            )))
        }
        None => return Err(ApiError::bad_request("fromImage or fromSrc is required")),
    }
    let reference = match q.non_empty("repo") {
        Some(repo) => {
            let r: Reference = repo
                .parse()
                .map_err(|e: berth_image::ReferenceError| ApiError::bad_request(e.to_string()))?;
            Some(match q.non_empty("tag") {
                Some(tag) => r
                    .with_tag(tag)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                None => r,
            })
        }
        None => None,
    };
    let opts = ImportOptions {
        changes: q.all("changes"),
        message: q.non_empty("message").map(String::from),
        reference,
    };
    let id = d.images.import(body_reader(body), opts).await?;
    Ok(json_lines(&[JsonMessage::status(id)]))
}
