//! `WWW-Authenticate` challenges and Docker's token protocol (anonymous or with credentials).

use super::error::{from_response, ClientError, ErrorKind};
use base64::Engine as _;
use reqwest::header::HeaderValue;
use std::collections::BTreeMap;

/// What `/v2/` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: String },
    Bearer { realm: String, service: Option<String> },
}

/// A username and password, or an identity (refresh) token from a previous login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub identity_token: Option<String>,
}

impl Credentials {
    pub fn basic_header(&self) -> HeaderValue {
        let raw =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password));
        HeaderValue::from_str(&format!("Basic {raw}")).expect("base64 is a valid header")
    }
}

impl Challenge {
    /// Parses `Basic realm="x"` or `Bearer realm="x",service="y",scope="z"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let params = parse_params(rest);
        let realm = params.get("realm").cloned().unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic { realm }),
            "bearer" => Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
            }),
            _ => None,
        }
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = after.trim_start_matches([',', ' ']);
    }
    out
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Gets a bearer token from the challenge's realm for `scopes` (GET, as Docker does; with Basic
/// credentials when there are any, anonymous otherwise).
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    challenge: &Challenge,
    credentials: Option<&Credentials>,
    scopes: &[String],
) -> Result<String, ClientError> {
    let Challenge::Bearer { realm, service } = challenge else {
        return Err(ClientError::new(ErrorKind::Protocol, "not a token challenge"));
    };
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = service {
        query.push(("service", s));
    }
    for s in scopes {
        query.push(("scope", s));
    }
    if let Some(c) = credentials.filter(|c| !c.username.is_empty()) {
        query.push(("account", &c.username));
    }
    let mut req = http.get(realm).query(&query);
    if let Some(c) = credentials.filter(|c| !c.username.is_empty() || c.identity_token.is_some()) {
        req = req.header(reqwest::header::AUTHORIZATION, c.basic_header());
    }
    let resp = req.send().await.map_err(|e| ClientError::transport(realm, e))?;
    if !resp.status().is_success() {
        return Err(from_response(resp).await);
    }
    let bytes = resp.bytes().await.map_err(|e| ClientError::transport(realm, e))?;
    let body: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::new(ErrorKind::Protocol, format!("token server answer: {e}")))?;
    body.token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ClientError::new(ErrorKind::Protocol, "token server answered no token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: "Registry Realm".into()
            })
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn basic_header_is_base64_of_user_colon_password() {
        let c = Credentials {
            username: "user".into(),
            password: "pass".into(),
            identity_token: None,
        };
        assert_eq!(c.basic_header(), "Basic dXNlcjpwYXNz");
    }
}
