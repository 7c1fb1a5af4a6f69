//! `/networks`: the built-in networks (`bridge`, `host`, `none`) as Docker lists them. User-defined
//! networks are not there yet.

use super::{json, ApiError, ApiResult, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/{id}", get(inspect))
}

fn builtin(d: &AppState) -> Vec<Value> {
    let net = |name: &str, driver: &str, config: Value, options: Value| {
        json!({
            "Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local", "Driver": driver,
            "EnableIPv4": true, "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": config},
            "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
            "ConfigOnly": false, "Containers": {}, "Options": options, "Labels": {}
        })
    };
    let mut out = Vec::new();
    if let (Some(bridge), Some(subnet)) = (d.network.bridge(), d.network.subnet()) {
        out.push(net(
            "bridge",
            "bridge",
            json!([{"Subnet": subnet.to_string(), "Gateway": subnet.gateway().to_string()}]),
            json!({"com.docker.network.bridge.name": bridge, "com.docker.network.bridge.default_bridge": "true"}),
        ));
    }
    out.push(net("host", "host", json!([]), json!({})));
    out.push(net("none", "null", json!([]), json!({})));
    out
}

async fn list(State(d): State<AppState>) -> ApiResult {
    Ok(json(StatusCode::OK, &builtin(&d)))
}

async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    builtin(&d)
        .into_iter()
        .find(|n| n["Name"] == id.as_str() || n["Id"] == id.as_str())
        .map(|n| json(StatusCode::OK, &n))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("network {id} not found")))
}
