//! Pull-through cache: the upstream registry client. Manifests and blobs missing locally are
//! fetched from upstream, verified by digest and stored, then served from storage.

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::{Response, StatusCode};

use crate::config::ProxyConfig;
use crate::error::{ApiError, ErrorCode};
use crate::storage::media_types;

/// A client of the upstream registry that answers its auth challenges (basic or bearer).
#[derive(Debug)]
pub struct Upstream {
    base: String,
    client: reqwest::Client,
    credentials: Option<(String, String)>,
    /// Bearer tokens by repository name.
    tokens: Mutex<HashMap<String, String>>,
}

fn unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %err, "upstream registry request failed");
    ApiError::new(ErrorCode::Unsupported, format!("upstream registry: {err}"))
        .with_status(axum::http::StatusCode::BAD_GATEWAY)
}

/// Parses `Bearer realm="...",service="...",scope="..."` into its parameters.
fn challenge_params(header: &str) -> Option<HashMap<String, String>> {
    let rest = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?;
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after
                .split_once(',')
                .map_or((after, ""), |(value, remaining)| (value, remaining)),
        };
        params.insert(
            key.trim().trim_start_matches(',').trim().to_lowercase(),
            value.to_string(),
        );
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(params)
}

impl Upstream {
    pub fn new(config: &ProxyConfig) -> Result<Upstream, reqwest::Error> {
        let client = reqwest::Client::builder().user_agent("berth-registry").build()?;
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            _ => None,
        };
        Ok(Upstream {
            base: config.remote_url.clone(),
            client,
            credentials,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// GETs `/v2/<path>` for repository `name`, authenticating when challenged.
    async fn get(&self, name: &str, path: &str, accept: Option<&str>) -> Result<Response, ApiError> {
        let url = format!("{}/v2/{path}", self.base);
        let mut retried = false;
        loop {
            let mut request = self.client.get(&url);
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let token = self.tokens.lock().expect("token cache").get(name).cloned();
            if let Some(token) = token {
                request = request.bearer_auth(token);
            } else if let Some((user, password)) = &self.credentials {
                request = request.basic_auth(user, Some(password));
            }
            let response = request.send().await.map_err(unavailable)?;
            if response.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(response);
            }
            retried = true;
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let Some(params) = challenge_params(challenge) else {
                return Ok(response);
            };
            let token = self.fetch_token(&params, name).await?;
            self.tokens
                .lock()
                .expect("token cache")
                .insert(name.to_string(), token);
        }
    }

    async fn fetch_token(&self, params: &HashMap<String, String>, name: &str) -> Result<String, ApiError> {
        let realm = params
            .get("realm")
            .ok_or_else(|| unavailable("bearer challenge without realm"))?;
        let mut query = vec![("scope", format!("repository:{name}:pull"))];
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let mut request = self.client.get(realm).query(&query);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "token endpoint answered {}",
                response.status()
            )));
        }
        let body = response.bytes().await.map_err(unavailable)?;
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(unavailable)?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|token| token.as_str())
            .map(String::from)
            .ok_or_else(|| unavailable("token response without a token"))
    }

    /// Fetches a manifest: its bytes and media type, `None` when upstream has none.
    pub async fn manifest(&self, name: &str, reference: &str) -> Result<Option<(Vec<u8>, String)>, ApiError> {
        let accept = media_types::ALL.join(", ");
        let response = self
            .get(name, &format!("{name}/manifests/{reference}"), Some(&accept))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "manifest {name}:{reference}: {}",
                response.status()
            )));
        }
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response.bytes().await.map_err(unavailable)?;
        Ok(Some((bytes.to_vec(), media_type)))
    }

    /// Starts fetching a blob; `None` when upstream has none.
    pub async fn blob(&self, name: &str, digest: &str) -> Result<Option<Response>, ApiError> {
        let response = self.get(name, &format!("{name}/blobs/{digest}"), None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "blob {name}@{digest}: {}",
                response.status()
            )));
        }
        Ok(Some(response))
    }

    /// The upstream's tags of `name`, as its JSON body.
    pub async fn tags(&self, name: &str, raw_query: Option<&str>) -> Result<Option<Response>, ApiError> {
        let path = match raw_query {
            Some(query) => format!("{name}/tags/list?{query}"),
            None => format!("{name}/tags/list"),
        };
        let response = self.get(name, &path, None).await?;
        Ok(response.status().is_success().then_some(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse() {
        let params = challenge_params(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull");
        assert!(challenge_params("Basic realm=\"x\"").is_none());
    }
}
