//! A Docker Engine API client over a Unix socket: negotiates the API version with `/_ping`, then
//! sends requests under `/v<version>/`, and turns Docker error bodies into readable errors.

use anyhow::{anyhow, bail, Context, Result};
use berth_api::version::{ApiVersion, CURRENT};
use berth_api::{ErrorBody, Query};
use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

pub type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Clone)]
pub struct Client {
    host: String,
    socket: PathBuf,
    version: ApiVersion,
    /// Sent with every request (`X-Registry-Auth` for pull and push).
    extra_headers: Vec<(&'static str, String)>,
}

/// The daemon answered with an error status; the CLI prints it as Docker does.
#[derive(Debug, thiserror::Error)]
#[error("Error response from daemon: {message}")]
pub struct DaemonError {
    pub status: StatusCode,
    pub message: String,
}

impl Client {
    pub async fn connect(host: &str) -> Result<Client> {
        let socket = match host.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None if host.starts_with('/') => PathBuf::from(host),
            None => bail!("unsupported host {host:?}: only unix:///path sockets are supported"),
        };
        let mut client = Client {
            host: host.to_string(),
            socket,
            version: CURRENT,
            extra_headers: Vec::new(),
        };
        let mut resp = client.send(Method::HEAD, "/_ping", empty(), None).await?;
        if resp.status() == StatusCode::NOT_FOUND || resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            resp = client.send(Method::GET, "/_ping", empty(), None).await?;
        }
        client.version = resp
            .headers()
            .get("Api-Version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<ApiVersion>().ok())
            .map(|v| v.min(CURRENT))
            .unwrap_or(ApiVersion(1, 24));
        Ok(client)
    }

    pub fn version(&self) -> ApiVersion {
        self.version
    }

    /// A client that adds `name: value` to its requests.
    pub fn with_header(&self, name: &'static str, value: String) -> Client {
        let mut c = self.clone();
        c.extra_headers.push((name, value));
        c
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        self.send_with(method, uri, body, content_type, false).await
    }

    async fn send_with(
        &self,
        method: Method,
        uri: &str,
        body: Body,
        content_type: Option<&str>,
        upgrade: bool,
    ) -> Result<Response<Incoming>> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow!(
                "Cannot connect to the Berth daemon at {}. Is berthd running? ({e})",
                self.host
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder().method(method).uri(uri).header("Host", "api");
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        for (name, value) in &self.extra_headers {
            req = req.header(*name, value.as_str());
        }
        if upgrade {
            req = req.header("Connection", "Upgrade").header("Upgrade", "tcp");
        }
        sender
            .send_request(req.body(body)?)
            .await
            .context("talking to the daemon")
    }

    /// Sends a request under the negotiated version; an error status becomes a [`DaemonError`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &Query,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        let mut uri = format!("/v{}{}", self.version, path);
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query.encode());
        }
        let resp = self.send(method, &uri, body, content_type).await?;
        if resp.status().is_client_error() || resp.status().is_server_error() {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(DaemonError { status, message }.into());
        }
        Ok(resp)
    }

    /// A request the daemon answers by taking over the connection (attach, exec start).
    pub async fn hijack(
        &self,
        path: &str,
        query: &Query,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let mut uri = format!("/v{}{}", self.version, path);
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query.encode());
        }
        let resp = self
            .send_with(Method::POST, &uri, body, content_type, true)
            .await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(DaemonError { status, message }.into());
        }
        Ok(TokioIo::new(
            hyper::upgrade::on(resp)
                .await
                .context("upgrading the connection")?,
        ))
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, query: &Query) -> Result<T> {
        self.json(Method::GET, path, query).await
    }

    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &Query,
    ) -> Result<T> {
        let resp = self.request(method, path, query, empty(), None).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from the daemon to {path}"))
    }

    /// POSTs a JSON body and reads the JSON answer (create, exec create, ...).
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &Query,
        body: &serde_json::Value,
    ) -> Result<T> {
        let resp = self
            .request(
                Method::POST,
                path,
                query,
                json_body(body),
                Some("application/json"),
            )
            .await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from the daemon to {path}"))
    }

    /// Sends a request whose answer has no body worth reading.
    pub async fn call(&self, method: Method, path: &str, query: &Query) -> Result<()> {
        let resp = self.request(method, path, query, empty(), None).await?;
        resp.into_body().collect().await?;
        Ok(())
    }
}

pub fn json_body(v: &serde_json::Value) -> Body {
    http_body_util::Full::new(Bytes::from(serde_json::to_vec(v).expect("JSON")))
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body streamed from a reader (a file, or standard input).
pub fn streaming(reader: impl tokio::io::AsyncRead + Send + Sync + 'static) -> Body {
    let frames = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 16).map_ok(Frame::data);
    BodyExt::boxed(StreamBody::new(frames))
}

/// Reads a JSON message stream (load, import, pull...), calling `each` per message; a message
/// carrying an error ends the stream with that error.
pub async fn read_messages(
    resp: Response<Incoming>,
    mut each: impl FnMut(berth_api::types::JsonMessage),
) -> Result<()> {
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let handle = |line: &[u8], each: &mut dyn FnMut(berth_api::types::JsonMessage)| -> Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let msg: berth_api::types::JsonMessage =
            serde_json::from_slice(line).context("bad message from daemon")?;
        if let Some(e) = msg
            .error_detail
            .as_ref()
            .map(|d| d.message.clone())
            .or(msg.error.clone())
        {
            bail!("{e}");
        }
        each(msg);
        Ok(())
    };
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                handle(&line, &mut each)?;
            }
        }
    }
    handle(&buf, &mut each)
}
