//! `/networks`: list, inspect, create, remove, prune, connect and disconnect (bridge networks).

use super::{json, ApiError, ApiResult, AppState};
use crate::services::containers::networking_settings;
use crate::services::network::{CreateNetwork, NetworkError};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use berth_api::{Filters, Query};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> ApiError {
        let status = match &e {
            NetworkError::NotFound(_) => StatusCode::NOT_FOUND,
            NetworkError::Conflict(_) => StatusCode::CONFLICT,
            NetworkError::Forbidden(_) => StatusCode::FORBIDDEN,
            NetworkError::Invalid(_) => StatusCode::BAD_REQUEST,
            NetworkError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

async fn list(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let f = Filters::parse(q.get("filters")).map_err(ApiError::bad_request)?;
    f.only(&["driver", "id", "label", "name", "scope", "type", "dangling"])
        .map_err(ApiError::bad_request)?;
    let predefined = ["bridge", "host", "none"];
    let out: Vec<Value> = d
        .network
        .list()
        .into_iter()
        .filter(|n| {
            let name = n["Name"].as_str().unwrap_or("");
            let id = n["Id"].as_str().unwrap_or("");
            let builtin = predefined.contains(&name);
            f.get("name").iter().all(|x| name.contains(x.as_str()))
                && f.get("id").iter().all(|x| id.starts_with(x.as_str()))
                && f.get("driver").iter().all(|x| n["Driver"] == x.as_str())
                && f.get("scope").iter().all(|x| x == "local")
                && f.get("type").iter().all(|x| (x == "builtin") == builtin)
                && f.get("dangling").iter().all(|x| {
                    let unused = n["Containers"].as_object().is_none_or(|c| c.is_empty()) && !builtin;
                    (x == "true" || x == "1") == unused
                })
                && f.match_labels("label", &string_map(&n["Labels"]))
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json(StatusCode::OK, &d.network.inspect(&id)?))
}

async fn create(State(d): State<AppState>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let ipam = &b["IPAM"]["Config"];
    let first = ipam
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    let req = CreateNetwork {
        name: b["Name"].as_str().unwrap_or("").to_string(),
        driver: b["Driver"].as_str().unwrap_or("").to_string(),
        internal: b["Internal"].as_bool().unwrap_or(false),
        subnet: text(&first["Subnet"]),
        gateway: text(&first["Gateway"]),
        ip_range: text(&first["IPRange"]),
        labels: string_map(&b["Labels"]),
        options: string_map(&b["Options"]),
    };
    let rec = d.network.create(req).await?;
    d.events.publish(
        "network",
        "create",
        &rec.id,
        BTreeMap::from([
            ("name".into(), rec.name.clone()),
            ("type".into(), "bridge".into()),
        ]),
    );
    Ok(json(StatusCode::CREATED, &json!({"Id": rec.id, "Warning": ""})))
}

async fn remove(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let rec = d.network.remove(&id).await?;
    d.events.publish(
        "network",
        "destroy",
        &rec.id,
        BTreeMap::from([
            ("name".into(), rec.name.clone()),
            ("type".into(), "bridge".into()),
        ]),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn prune(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let f = Filters::parse(q.get("filters")).map_err(ApiError::bad_request)?;
    f.only(&["label", "label!", "until"])
        .map_err(ApiError::bad_request)?;
    let removed = d
        .network
        .prune(|n| {
            let negated = f.get("label!").iter().any(|l| match l.split_once('=') {
                Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
                None => n.labels.contains_key(l.as_str()),
            });
            !f.match_labels("label", &n.labels) || negated
        })
        .await;
    Ok(json(StatusCode::OK, &json!({"NetworksDeleted": removed})))
}

async fn connect(State(d): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let container = b["Container"].as_str().unwrap_or("");
    if container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let settings = networking_settings(&b["EndpointConfig"]);
    d.containers.connect_to(container, &id, settings).await?;
    Ok(StatusCode::OK.into_response())
}

async fn disconnect(State(d): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let b = body_json(&body)?;
    let container = b["Container"].as_str().unwrap_or("");
    if container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let force = b["Force"].as_bool().unwrap_or(false);
    d.containers.disconnect_from(container, &id, force).await?;
    Ok(StatusCode::OK.into_response())
}
