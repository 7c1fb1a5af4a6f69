//! The built-in token endpoint of Docker token authentication: `GET /token` with basic
//! credentials (Docker, skopeo, podman) and `POST /token` with an OAuth2 password grant
//! (containerd, buildkit).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::parse_basic;
use crate::error::{ApiError, ErrorCode};
use crate::server::{requested_scopes, AppState, Auth, Identity, Query};

fn unauthorized() -> Response {
    ApiError::new(ErrorCode::Unauthorized, "invalid username or password")
        .with_header("www-authenticate", "Basic realm=\"berth-registry token\"")
        .into_response()
}

/// Checks the credentials and answers a token for the requested scopes, narrowed to what the
/// access list allows the user.
async fn issue(state: &AppState, user: &str, password: &str, params: &Query) -> Response {
    let Auth::Token { users, keys, .. } = &state.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !users.verify(user, password).await {
        return unauthorized();
    }
    if params
        .get("service")
        .is_some_and(|service| service != keys.service)
    {
        return ApiError::new(ErrorCode::Denied, "unknown service")
            .with_status(StatusCode::BAD_REQUEST)
            .into_response();
    }
    let identity = Identity::User(user.to_string());
    let granted: Vec<_> = requested_scopes(params)
        .into_iter()
        .filter_map(|mut scope| {
            scope.actions.retain(|action| match scope.kind.as_str() {
                "repository" => state.can(&identity, &scope.name, action),
                "registry" => scope.name == "catalog",
                _ => false,
            });
            (!scope.actions.is_empty()).then_some(scope)
        })
        .collect();
    let scope = granted
        .iter()
        .map(|scope| format!("{}:{}:{}", scope.kind, scope.name, scope.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ");
    let (token, claims) = keys.issue(user, granted);
    let issued_at = chrono::DateTime::from_timestamp(claims.iat as i64, 0)
        .unwrap_or_default()
        .to_rfc3339();
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": keys.expiration,
        "issued_at": issued_at,
        "scope": scope,
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// `GET /token?service=...&scope=...` with basic credentials.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = Query::parse(raw_query.as_deref());
    let credentials = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_basic);
    let Some((user, password)) = credentials else {
        return unauthorized();
    };
    issue(&state, &user, &password, &params).await
}

/// `POST /token` with a form body `grant_type=password&username=...&password=...&scope=...`.
pub(crate) async fn post(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let params = Query::parse(std::str::from_utf8(&body).ok());
    if params.get("grant_type") != Some("password") {
        return ApiError::new(ErrorCode::Unsupported, "only the password grant is supported")
            .with_status(StatusCode::BAD_REQUEST)
            .into_response();
    }
    let (Some(user), Some(password)) = (params.get("username"), params.get("password")) else {
        return unauthorized();
    };
    issue(&state, user, password, &params).await
}
