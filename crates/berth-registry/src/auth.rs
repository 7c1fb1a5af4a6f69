//! Authentication (htpasswd basic auth, Docker bearer tokens) and authorization (the access list).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::AccessRule;

/// Users and bcrypt hashes from an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of (user, password, hash) already checked: bcrypt is deliberately slow, and clients
    /// send credentials on every request.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> std::io::Result<Htpasswd> {
        Ok(Htpasswd::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses `user:hash` lines; only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`) can match later.
    pub fn parse(text: &str) -> Htpasswd {
        let users = text
            .lines()
            .filter_map(|line| line.trim().split_once(':'))
            .map(|(user, hash)| (user.to_string(), hash.to_string()))
            .collect();
        Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Checks a password, off the async threads.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user).cloned() else {
            return false;
        };
        if !hash.starts_with("$2") {
            return false;
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(user)
            .chain_update([0])
            .chain_update(password)
            .chain_update([0])
            .chain_update(&hash)
            .finalize()
            .into();
        if self.verified.lock().expect("htpasswd cache").contains(&key) {
            return true;
        }
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.lock().expect("htpasswd cache").insert(key);
        }
        ok
    }
}

/// Decodes `Authorization: Basic ...` into user and password.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Matches a repository name against an access-list pattern where `*` matches anything.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| pattern_matches(rest, &tail[i..]))
        }
    }
}

/// The actions `user` may take on repository `name` according to the access list. An empty list
/// grants everything to every authenticated user.
pub fn allowed_actions(rules: &[AccessRule], user: &str, name: &str) -> HashSet<String> {
    let everything = || ["pull", "push", "delete"].map(String::from).into_iter().collect();
    if rules.is_empty() {
        return everything();
    }
    let mut actions = HashSet::new();
    for rule in rules {
        if (rule.account == "*" || rule.account == user) && pattern_matches(&rule.name, name) {
            for action in &rule.actions {
                if action == "*" {
                    actions.extend(everything());
                } else {
                    actions.insert(action.clone());
                }
            }
        }
    }
    actions
}

/// One entry of a token's `access` claim, as in Docker's token spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// Parses a `scope` parameter: `repository:<name>:<action>,<action>`.
    pub fn parse_scope(scope: &str) -> Option<ResourceActions> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(ResourceActions {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
        })
    }
}

/// The claims of the JWTs the token endpoint issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
}

impl Claims {
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|entry| {
            entry.kind == kind && entry.name == name && entry.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

/// Signs and checks tokens with an HMAC key (HS256).
pub struct TokenKeys {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    pub issuer: String,
    pub service: String,
    pub expiration: u64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .finish()
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8], issuer: String, service: String, expiration: u64) -> TokenKeys {
        TokenKeys {
            encoding: jsonwebtoken::EncodingKey::from_secret(secret),
            decoding: jsonwebtoken::DecodingKey::from_secret(secret),
            issuer,
            service,
            expiration,
        }
    }

    /// Issues a token for `subject` with the granted access.
    pub fn issue(&self, subject: &str, access: Vec<ResourceActions>) -> (String, Claims) {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: self.service.clone(),
            exp: now + self.expiration,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: format!("{:032x}", rand::random::<u128>()),
            access,
        };
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, claims)
    }

    /// Checks a token's signature, issuer, audience and lifetime.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_rules() {
        assert!(pattern_matches("team/*", "team/a/b"));
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("a*c", "abbc"));
        assert!(!pattern_matches("team/*", "other/a"));
        assert!(!pattern_matches("exact", "exact2"));
        let rules = vec![
            AccessRule {
                account: "bob".into(),
                name: "*".into(),
                actions: vec!["pull".into()],
            },
            AccessRule {
                account: "alice".into(),
                name: "team/*".into(),
                actions: vec!["*".into()],
            },
        ];
        assert_eq!(
            allowed_actions(&rules, "bob", "team/x"),
            HashSet::from(["pull".to_string()])
        );
        assert_eq!(allowed_actions(&rules, "alice", "team/x").len(), 3);
        assert!(allowed_actions(&rules, "alice", "other").is_empty());
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = TokenKeys::new(b"secret", "iss".into(), "svc".into(), 60);
        let scope = ResourceActions::parse_scope("repository:a/b:pull,push").unwrap();
        assert_eq!(scope.name, "a/b");
        let (token, _) = keys.issue("alice", vec![scope]);
        let claims = keys.verify(&token).unwrap();
        assert!(claims.allows("repository", "a/b", "push"));
        assert!(!claims.allows("repository", "a/b", "delete"));
        let other = TokenKeys::new(b"other", "iss".into(), "svc".into(), 60);
        assert!(other.verify(&token).is_none());
    }

    #[test]
    fn basic_header_parses() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6cHc6eA=="),
            Some(("alice".into(), "pw:x".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
