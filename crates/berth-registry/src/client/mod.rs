//! The distribution client berthd pulls and pushes with: ping, Basic and Bearer-token
//! authentication, manifests with Accept negotiation, resumable blob downloads into a file, and
//! blob uploads with cross-repository mounts.
//!
//! It speaks plain HTTP to loopback registries and those listed as insecure, HTTPS (rustls)
//! otherwise, and resolves `docker.io` to Docker Hub (trying `registry-mirrors` first for pulls).

mod auth;
mod blobs;
mod error;
mod manifests;

pub use auth::{Challenge, Credentials};
pub use blobs::{BlobSink, Progress};
pub use error::{ClientError, ErrorKind};
pub use manifests::{FetchedManifest, MANIFEST_ACCEPT};

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, StatusCode};

/// Docker Hub's canonical name and the host its API is served from.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where registries are and how to reach them (berthd's `insecure-registries`, `registry-mirrors`).
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Hosts (`host:port`) or CIDRs-free host names reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Base URLs tried before Docker Hub when pulling from `docker.io`.
    pub registry_mirrors: Vec<String>,
    pub user_agent: String,
}

/// A shared HTTP client; cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: std::sync::Arc<ClientConfig>,
}

/// What the caller wants to do in a repository: decides the token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// An authenticated conversation with one repository of one registry.
#[derive(Clone)]
pub struct Repository {
    http: reqwest::Client,
    /// `http://host:port` or `https://host`, no trailing slash.
    pub base: String,
    /// The registry as named in references (`localhost:5000`, `docker.io`).
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub name: String,
    authorization: Option<HeaderValue>,
    credentials: Option<Credentials>,
    challenge: Option<Challenge>,
}

impl RegistryClient {
    pub fn new(config: ClientConfig) -> Result<RegistryClient, ClientError> {
        let agent = if config.user_agent.is_empty() {
            concat!("berth/", env!("CARGO_PKG_VERSION")).to_string()
        } else {
            config.user_agent.clone()
        };
        let http = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::new(ErrorKind::Transport, format!("building HTTP client: {e}")))?;
        Ok(RegistryClient {
            http,
            config: std::sync::Arc::new(config),
        })
    }

    /// Whether `registry` is spoken to over plain HTTP: loopback, or listed as insecure.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self
                .config
                .insecure_registries
                .iter()
                .any(|r| r.trim_end_matches('/') == registry || r == host)
    }

    /// Base URLs to try for `registry`, mirrors first when pulling from Docker Hub.
    pub fn endpoints(&self, registry: &str, access: Access) -> Vec<String> {
        let mut out = Vec::new();
        if registry == DOCKER_HUB || registry == "index.docker.io" {
            if access == Access::Pull {
                out.extend(
                    self.config
                        .registry_mirrors
                        .iter()
                        .map(|m| m.trim_end_matches('/').to_string()),
                );
            }
            out.push(format!("https://{DOCKER_HUB_API}"));
        } else if self.is_insecure(registry) {
            out.push(format!("http://{registry}"));
        } else {
            out.push(format!("https://{registry}"));
        }
        out
    }

    /// `GET /v2/` on the registry; returns the authentication challenge, if any.
    pub async fn ping(&self, base: &str) -> Result<Option<Challenge>, ClientError> {
        let resp = self
            .http
            .get(format!("{base}/v2/"))
            .send()
            .await
            .map_err(|e| ClientError::transport(base, e))?;
        match resp.status() {
            s if s.is_success() => Ok(None),
            StatusCode::UNAUTHORIZED => Ok(resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(Challenge::parse)
                .next()),
            s => Err(ClientError::new(
                ErrorKind::Protocol,
                format!("{base}/v2/: registry answered {s}"),
            )),
        }
    }

    /// Pings the registry (first reachable endpoint) and authenticates for `access` to `name`.
    pub async fn repository(
        &self,
        registry: &str,
        name: &str,
        access: Access,
        credentials: Option<Credentials>,
    ) -> Result<Repository, ClientError> {
        let mut last_err = None;
        for base in self.endpoints(registry, access) {
            match self.ping(&base).await {
                Ok(challenge) => {
                    let mut repo = Repository {
                        http: self.http.clone(),
                        base,
                        registry: registry.to_string(),
                        name: name.to_string(),
                        authorization: None,
                        credentials: credentials.clone(),
                        challenge,
                    };
                    repo.authenticate(&[(name, access)]).await?;
                    return Ok(repo);
                }
                Err(e) => {
                    tracing::debug!(%base, error = %e, "registry endpoint failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::new(ErrorKind::Transport, "no registry endpoint")))
    }

    /// `docker login`: checks `credentials` against the registry's challenge.
    pub async fn login(&self, registry: &str, credentials: &Credentials) -> Result<(), ClientError> {
        let base = self.endpoints(registry, Access::Push).pop().unwrap_or_default();
        let Some(challenge) = self.ping(&base).await? else {
            return Ok(());
        };
        match &challenge {
            Challenge::Basic { .. } => {
                let resp = self
                    .http
                    .get(format!("{base}/v2/"))
                    .header(AUTHORIZATION, credentials.basic_header())
                    .send()
                    .await
                    .map_err(|e| ClientError::transport(&base, e))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(error::from_response(resp).await)
                }
            }
            Challenge::Bearer { .. } => {
                auth::fetch_token(&self.http, &challenge, Some(credentials), &[]).await?;
                Ok(())
            }
        }
    }
}

impl Repository {
    /// Acquires the authorization header for the given scopes (token auth), or prepares Basic.
    pub async fn authenticate(&mut self, scopes: &[(&str, Access)]) -> Result<(), ClientError> {
        self.authorization = match &self.challenge {
            None => None,
            Some(Challenge::Basic { .. }) => self.credentials.as_ref().map(Credentials::basic_header),
            Some(c @ Challenge::Bearer { .. }) => {
                let scopes: Vec<String> = scopes
                    .iter()
                    .map(|(name, a)| match a {
                        Access::Pull => format!("repository:{name}:pull"),
                        Access::Push => format!("repository:{name}:pull,push"),
                    })
                    .collect();
                let token = auth::fetch_token(&self.http, c, self.credentials.as_ref(), &scopes).await?;
                HeaderValue::from_str(&format!("Bearer {token}")).ok()
            }
        };
        Ok(())
    }

    pub(crate) fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let b = self.http.request(method, url);
        match &self.authorization {
            Some(h) => b.header(AUTHORIZATION, h.clone()),
            None => b,
        }
    }

    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.name)
    }

    /// Turns a `Location` header (absolute or relative) into a URL.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_plain_http() {
        let c = RegistryClient::new(ClientConfig {
            insecure_registries: vec!["reg.lan:5000".into()],
            registry_mirrors: vec!["https://mirror.example/".into()],
            user_agent: String::new(),
        })
        .unwrap();
        assert_eq!(
            c.endpoints("localhost:5000", Access::Pull),
            ["http://localhost:5000"]
        );
        assert_eq!(
            c.endpoints("127.0.0.1:5000", Access::Pull),
            ["http://127.0.0.1:5000"]
        );
        assert_eq!(c.endpoints("[::1]:5000", Access::Pull), ["http://[::1]:5000"]);
        assert_eq!(c.endpoints("reg.lan:5000", Access::Push), ["http://reg.lan:5000"]);
        assert_eq!(c.endpoints("quay.io", Access::Pull), ["https://quay.io"]);
        assert_eq!(
            c.endpoints("docker.io", Access::Pull),
            ["https://mirror.example", "https://registry-1.docker.io"]
        );
        assert_eq!(
            c.endpoints("docker.io", Access::Push),
            ["https://registry-1.docker.io"]
        );
    }
}
