//! `GET /events`: past events since `since`, then live ones until `until` or until the client
//! goes away; one JSON object per line.

use super::{ApiError, ApiResult, AppState};
use crate::services::containers::logs_time;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use berth_api::{Filters, Query};

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

async fn events(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref());
    let filters = Filters::parse(q.get("filters")).map_err(ApiError::bad_request)?;
    filters
        .only(&[
            "type",
            "event",
            "container",
            "image",
            "label",
            "network",
            "volume",
            "daemon",
            "scope",
            "node",
            "plugin",
            "config",
            "secret",
            "service",
        ])
        .map_err(ApiError::bad_request)?;
    let since = q
        .non_empty("since")
        .map(|s| logs_time(s).ok_or_else(|| ApiError::bad_request(format!("invalid since: {s}"))))
        .transpose()?;
    let until = q
        .non_empty("until")
        .map(|s| logs_time(s).ok_or_else(|| ApiError::bad_request(format!("invalid until: {s}"))))
        .transpose()?;
    let (past, mut live) = d.events.watch(since);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |e: &crate::services::events::Event| {
            let mut b = serde_json::to_vec(&e.to_json()).unwrap_or_default();
            b.push(b'\n');
            Ok(Bytes::from(b))
        };
        let before_until = |t: i128| until.is_none_or(|u| t < u);
        for e in past
            .iter()
            .filter(|e| e.matches(&filters) && before_until(e.time_nano))
        {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
        let deadline = match until {
            Some(u) if u <= now => return,
            Some(u) => Some(tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now) as u64)),
            None => None,
        };
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            tokio::select! {
                got = next => match got {
                    None => return,
                    Some(Ok(e)) => {
                        if e.matches(&filters) && tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    Some(Err(_)) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(super::receiver_stream(rx)),
    )
        .into_response())
}
