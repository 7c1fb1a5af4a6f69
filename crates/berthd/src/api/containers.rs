//! `/containers/...`: create, start, wait, attach (hijacked stream), logs, stop, kill, restart,
//! remove, list, inspect, resize, prune.

use super::{json, ApiError, ApiResult, AppState};
use crate::services::containers::{AttachSource, ContainerError, LogOptions};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use berth_api::container::CreateRequest;
use berth_api::{Filters, Query};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/create", post(create))
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/exec", post(exec_create))
        .route("/exec/{id}/start", post(exec_start))
        .route("/exec/{id}/json", get(exec_inspect))
        .route("/exec/{id}/resize", post(exec_resize))
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> ApiError {
        let status = match &e {
            ContainerError::NotFound(_)
            | ContainerError::NoSuchExec(_)
            | ContainerError::NoSuchNetwork(_) => StatusCode::NOT_FOUND,
            ContainerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ContainerError::Conflict(_) => StatusCode::CONFLICT,
            ContainerError::Invalid(_) | ContainerError::StartFailed { .. } => StatusCode::BAD_REQUEST,
            ContainerError::NotModified => StatusCode::NOT_MODIFIED,
            ContainerError::Image(i) => match i.kind() {
                berth_image::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                berth_image::ErrorKind::Conflict => StatusCode::CONFLICT,
                berth_image::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                berth_image::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ContainerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn query(q: Option<String>) -> Query {
    Query::parse(q.as_deref())
}

/// Nothing to say: 204, or 304 when the container was already in that state.
fn done(r: Result<(), ContainerError>) -> ApiResult {
    match r {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(ContainerError::NotModified) => Ok(StatusCode::NOT_MODIFIED.into_response()),
        Err(e) => Err(e.into()),
    }
}

async fn create(State(d): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> ApiResult {
    let q = query(q);
    let req: CreateRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let resp = d.containers.create(q.get("name"), req).await?;
    Ok(json(StatusCode::CREATED, &resp))
}

async fn list(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let filters = Filters::parse(q.get("filters")).map_err(ApiError::bad_request)?;
    let limit = q.int("limit").or_else(|| q.bool("latest").then_some(1));
    let mut list = d.containers.list(q.bool("all"), limit, &filters)?;
    if q.bool("size") {
        let svc = d.containers.clone();
        list = tokio::task::spawn_blocking(move || {
            svc.add_sizes(&mut list);
            list
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok(json(StatusCode::OK, &list))
}

async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json(StatusCode::OK, &d.containers.inspect(&id)?))
}

async fn start(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    done(d.containers.start(&id).await)
}

async fn wait(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let condition = q.non_empty("condition").unwrap_or("not-running").to_string();
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    let waiting = d.containers.wait_for(&id, &condition)?;
    // Headers go out at once (as Docker does), the status when the condition is met.
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<Bytes, std::io::Error>>();
    tokio::spawn(async move {
        let mut body = serde_json::to_vec(&waiting.await).unwrap_or_default();
        body.push(b'\n');
        let _ = tx.send(Ok(Bytes::from(body)));
    });
    let stream = futures::stream::once(async move {
        rx.await
            .unwrap_or_else(|_| Err(std::io::Error::other("wait ended")))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn attach(
    State(d): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> ApiResult {
    let q = query(q);
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let (rec, source) = d.containers.attach(&id, stdin, stdout, stderr).await?;
    let tty = rec.config.tty;
    // `logs=1`: what the container wrote so far comes first, in the same framing; with
    // `stream=0` nothing else follows (dockerd).
    let replay = if q.bool("logs") {
        attach_log_replay(&d, &id, stdout, stderr, tty).await?
    } else {
        Vec::new()
    };
    let live = !(q.bool("logs")
        && q.get("stream")
            .is_some_and(|v| matches!(v, "0" | "false" | "False")));
    let detach = if tty {
        Some(parse_detach_keys(
            q.non_empty("detachKeys").unwrap_or("ctrl-p,ctrl-q"),
        )?)
    } else {
        None
    };
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    if !wants_upgrade {
        // No hijack asked for: send the output as the response body.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            for chunk in replay {
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            if !live {
                return;
            }
            let Some(mut shim) = resolve_source(source).await else {
                return;
            };
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = shim.read(&mut buf).await {
                if n == 0 || tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    break;
                }
            }
        });
        let body = Body::from_stream(super::receiver_stream(rx));
        return Ok(([(header::CONTENT_TYPE, content_type)], body).into_response());
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut client = TokioIo::new(upgraded);
        for chunk in replay {
            if client.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if !live {
            let _ = client.shutdown().await;
            return;
        }
        let Some(shim) = resolve_source(source).await else {
            return;
        };
        proxy(client, shim, tty, stdin, detach, |_| {}).await;
    });
    Ok(switching_protocols(content_type))
}

/// The container's log so far, framed as `logs` frames it (multiplexed unless `tty`).
async fn attach_log_replay(
    d: &AppState,
    id: &str,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<Vec<Bytes>, ApiError> {
    let (entry, path) = d.containers.logs_path(id)?;
    let opts = LogOptions {
        stdout,
        stderr,
        follow: false,
        timestamps: false,
        since: None,
        until: None,
        tail: None,
    };
    let mut rx = crate::services::containers::stream_logs(entry, path, opts, tty);
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.push(chunk);
    }
    Ok(out)
}

async fn resolve_source(source: AttachSource) -> Option<tokio::net::UnixStream> {
    match source {
        AttachSource::Now(s) => Some(s),
        AttachSource::AtStart(rx) => rx.await.ok()?.ok(),
    }
}

/// Copies between a hijacked client connection and the shim: output frames to the client (as
/// they are: Docker's multiplexed format; with a TTY only their payload), stdin to the shim. The
/// shim's own frames (stream 3, an exec's `EXIT <code>`) go to `on_system`, not to the client.
/// Ends when the shim closes, that is when the process's output is done.
pub async fn proxy<C>(
    client: C,
    shim: tokio::net::UnixStream,
    tty: bool,
    stdin: bool,
    detach_keys: Option<Vec<u8>>,
    on_system: impl FnMut(&[u8]) + Send + 'static,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut on_system = on_system;
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut shim_r, mut shim_w) = shim.into_split();
    let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        if let (true, Some(keys)) = (stdin, detach_keys.filter(|k| !k.is_empty())) {
            // Watch the typed bytes for the detach sequence; on it, leave the container running
            // and end this client's session.
            let mut buf = vec![0u8; 8192];
            let mut matched = 0;
            loop {
                let n = match client_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = detached_tx.send(());
                            return;
                        }
                    } else {
                        out.extend_from_slice(&keys[..matched]);
                        matched = usize::from(b == keys[0]);
                        if matched == 0 {
                            out.push(b);
                        }
                    }
                }
                if shim_w.write_all(&out).await.is_err() {
                    break;
                }
            }
        } else if stdin {
            let _ = tokio::io::copy(&mut client_r, &mut shim_w).await;
        } else {
            // Read (and ignore) what the client sends, so its half-close is seen.
            let _ = tokio::io::copy(&mut client_r, &mut tokio::io::sink()).await;
        }
        let _ = shim_w.shutdown().await;
    });
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    // The input side ends without a detach (EOF) as well as with one; only a detach ends output.
    let mut detached_rx = Some(detached_rx);
    loop {
        let detach = async {
            match detached_rx.as_mut() {
                Some(rx) => rx.await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = shim_r.read_exact(&mut header) => if r.is_err() { break },
            detached = detach => {
                if detached {
                    break;
                }
                detached_rx = None;
                continue;
            }
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        payload.resize(len, 0);
        if shim_r.read_exact(&mut payload).await.is_err() {
            break;
        }
        let sent = match header[0] {
            berth_shim::STREAM_SYSTEM => {
                on_system(&payload);
                Ok(())
            }
            _ if tty => client_w.write_all(&payload).await,
            _ => match client_w.write_all(&header).await {
                Ok(()) => client_w.write_all(&payload).await,
                e => e,
            },
        };
        if sent.is_err() || client_w.flush().await.is_err() {
            break;
        }
    }
    let _ = client_w.shutdown().await;
    input.abort();
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStartConfig {
    detach: bool,
    tty: bool,
}

async fn exec_create(State(d): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let config: crate::services::containers::ExecConfig =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let exec_id = d.containers.exec_create(&id, config)?;
    Ok(json(StatusCode::CREATED, &json!({"Id": exec_id})))
}

async fn exec_start(State(d): State<AppState>, Path(id): Path<String>, req: Request) -> ApiResult {
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let start: ExecStartConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
        ExecStartConfig::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let (exec, shim) = d.containers.exec_start(&id).await?;
    let tty = exec.config.tty || start.tty;
    let stdin = exec.config.attach_stdin;
    let detach = if tty {
        let keys = if exec.config.detach_keys.is_empty() {
            "ctrl-p,ctrl-q"
        } else {
            exec.config.detach_keys.as_str()
        };
        Some(parse_detach_keys(keys)?)
    } else {
        None
    };
    if start.detach {
        // Nobody listens: read the output away and keep the exit code.
        tokio::spawn(async move {
            let (client, _peer) = tokio::io::duplex(64 * 1024);
            let sink = exec.clone();
            let drain = async move {
                let mut peer = _peer;
                let _ = tokio::io::copy(&mut peer, &mut tokio::io::sink()).await;
            };
            tokio::join!(
                proxy(client, shim, tty, false, None, move |m| sink.finished(m)),
                drain
            );
        });
        return Ok(StatusCode::OK.into_response());
    }
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let req = Request::from_parts(parts, Body::empty());
    if !wants_upgrade {
        let (client, mut peer) = tokio::io::duplex(64 * 1024);
        let sink = exec.clone();
        tokio::spawn(proxy(client, shim, tty, false, None, move |m| sink.finished(m)));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = peer.read(&mut buf).await {
                if n == 0 || tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    break;
                }
            }
        });
        return Ok((
            [(header::CONTENT_TYPE, content_type)],
            Body::from_stream(super::receiver_stream(rx)),
        )
            .into_response());
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let sink = exec.clone();
        proxy(TokioIo::new(upgraded), shim, tty, stdin, detach, move |m| {
            sink.finished(m)
        })
        .await;
    });
    Ok(switching_protocols(content_type))
}

fn switching_protocols(content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

async fn exec_inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json(StatusCode::OK, &d.containers.exec(&id)?.inspect()))
}

async fn exec_resize(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let (h, w) = (q.int("h").unwrap_or(0), q.int("w").unwrap_or(0));
    d.containers
        .exec_resize(&id, h.clamp(0, 65535) as u16, w.clamp(0, 65535) as u16)
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn logs(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let opts = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        follow: q.bool("follow"),
        timestamps: q.bool("timestamps"),
        since: q
            .non_empty("since")
            .and_then(crate::services::containers::logs_time),
        until: q
            .non_empty("until")
            .and_then(crate::services::containers::logs_time),
        tail: q
            .non_empty("tail")
            .filter(|t| *t != "all")
            .and_then(|t| t.parse().ok()),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let (entry, path) = d.containers.logs_path(&id)?;
    let tty = entry.record().config.tty;
    let rx = crate::services::containers::stream_logs(entry, path, opts, tty);
    let stream = futures::StreamExt::map(super::receiver_stream(rx), Ok::<_, std::io::Error>);
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response())
}

async fn stop(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    done(
        d.containers
            .stop(
                &id,
                q.int("t").or_else(|| q.int("timeout")),
                q.non_empty("signal"),
            )
            .await,
    )
}

async fn kill(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    done(d.containers.kill(&id, q.non_empty("signal")).await)
}

async fn restart(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    done(
        d.containers
            .restart(&id, q.int("t").or_else(|| q.int("timeout")))
            .await,
    )
}

async fn remove(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    done(d.containers.remove(&id, q.bool("force"), q.bool("v")).await)
}

async fn resize(State(d): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let (h, w) = (q.int("h").unwrap_or(0), q.int("w").unwrap_or(0));
    d.containers
        .resize(&id, h.clamp(0, 65535) as u16, w.clamp(0, 65535) as u16)
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn prune(State(d): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let q = query(q);
    let filters = Filters::parse(q.get("filters")).map_err(ApiError::bad_request)?;
    let removed = d.containers.prune(&filters).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"ContainersDeleted": if removed.is_empty() { None } else { Some(removed) }, "SpaceReclaimed": 0}),
    ))
}

/// Docker's detach key syntax: `ctrl-p,ctrl-q`, `ctrl-@`, `ctrl-[`, or single characters.
fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, ApiError> {
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                    b @ b'a'..=b'z' => Ok(b - b'a' + 1),
                    b'@' => Ok(0),
                    b @ b'['..=b'_' => Ok(b - b'[' + 27),
                    _ => Err(ApiError::bad_request(format!(
                        "Invalid detach keys ({spec}) provided"
                    ))),
                },
                None if k.len() == 1 => Ok(k.as_bytes()[0]),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid detach keys ({spec}) provided"
                ))),
            }
        })
        .collect()
}
