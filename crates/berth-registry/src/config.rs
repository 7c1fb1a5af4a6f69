//! Configuration: distribution's `config.yml` keys that this registry supports, plus Berth's
//! access list, resolved into a [`Config`]. Command-line flags override the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The resolved configuration of a registry server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`http.addr`).
    pub addr: String,
    /// Storage root (`storage.filesystem.rootdirectory`).
    pub root: PathBuf,
    /// Certificate and key files for HTTPS (`http.tls.certificate`, `http.tls.key`).
    pub tls: Option<TlsFiles>,
    /// Whether blobs and manifests may be deleted (`storage.delete.enabled`).
    pub delete_enabled: bool,
    /// Read-only maintenance mode: every write answers 405 UNSUPPORTED.
    pub read_only: bool,
    pub auth: AuthConfig,
    /// Who may do what where (`auth.access`); empty lets every authenticated user do everything.
    pub access: Vec<AccessRule>,
    /// Pull-through cache of another registry (`proxy.remoteurl`); pushes are refused then.
    pub proxy: Option<ProxyConfig>,
}

/// The upstream registry of a pull-through cache.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Base URL, e.g. `https://registry-1.docker.io`.
    pub remote_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// How clients authenticate.
#[derive(Debug, Clone, Default)]
pub enum AuthConfig {
    /// Everyone may do everything.
    #[default]
    None,
    /// HTTP basic authentication against an htpasswd file of bcrypt hashes.
    Htpasswd { realm: String, path: PathBuf },
    /// Docker token authentication: the built-in `/token` endpoint checks basic credentials
    /// against the htpasswd file and hands out JWTs the registry then requires.
    Token(TokenConfig),
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// htpasswd file the token endpoint checks credentials against.
    pub htpasswd: PathBuf,
    /// URL of the token endpoint announced in challenges; by default `<scheme>://<Host>/token`.
    pub realm: Option<String>,
    pub service: String,
    pub issuer: String,
    /// File holding the HMAC key that signs tokens; a random key is made at start without it.
    pub signing_key: Option<PathBuf>,
    /// Token lifetime in seconds.
    pub expiration: u64,
}

/// An entry of the access list: `account` (or `*`) may do `actions` (pull, push, delete, `*`)
/// on repositories matching `name` (`*` matches any characters, slashes included).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AccessRule {
    pub account: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:5000".to_string(),
            root: PathBuf::from("/var/lib/berth-registry"),
            tls: None,
            delete_enabled: false,
            read_only: false,
            auth: AuthConfig::None,
            access: Vec::new(),
            proxy: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_norway::Error,
    },
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
}

/// The subset of distribution's `config.yml` that is understood. Unknown keys are ignored, as
/// distribution's own files carry many (log, health, notifications).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FileConfig {
    pub version: Option<serde_norway::Value>,
    pub http: HttpSection,
    pub storage: StorageSection,
    pub auth: AuthSection,
    pub proxy: Option<ProxySection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProxySection {
    pub remoteurl: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HttpSection {
    pub addr: Option<String>,
    pub tls: Option<TlsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TlsSection {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StorageSection {
    pub filesystem: Option<FilesystemSection>,
    pub delete: Option<EnabledSection>,
    pub maintenance: Option<MaintenanceSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FilesystemSection {
    pub rootdirectory: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EnabledSection {
    pub enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MaintenanceSection {
    pub readonly: Option<EnabledSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuthSection {
    pub htpasswd: Option<HtpasswdSection>,
    pub token: Option<TokenSection>,
    pub access: Vec<AccessRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HtpasswdSection {
    pub realm: Option<String>,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TokenSection {
    pub realm: Option<String>,
    pub service: Option<String>,
    pub issuer: Option<String>,
    pub signingkey: Option<PathBuf>,
    pub expiration: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        serde_norway::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Applies the file on top of `config`.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(proxy) = self.proxy {
            let remote_url = proxy
                .remoteurl
                .ok_or_else(|| ConfigError::Unsupported("proxy.remoteurl is missing".into()))?;
            config.proxy = Some(ProxyConfig {
                remote_url: remote_url.trim_end_matches('/').to_string(),
                username: proxy.username,
                password: proxy.password,
            });
        }
        if let Some(addr) = self.http.addr {
            config.addr = addr;
        }
        if let Some(tls) = self.http.tls {
            match (tls.certificate, tls.key) {
                (Some(certificate), Some(key)) => config.tls = Some(TlsFiles { certificate, key }),
                (None, None) => {}
                _ => {
                    return Err(ConfigError::Unsupported(
                        "http.tls needs both certificate and key".into(),
                    ))
                }
            }
        }
        if let Some(root) = self.storage.filesystem.and_then(|fs| fs.rootdirectory) {
            config.root = root;
        }
        if let Some(delete) = self.storage.delete {
            config.delete_enabled = delete.enabled;
        }
        if let Some(readonly) = self.storage.maintenance.and_then(|m| m.readonly) {
            config.read_only = readonly.enabled;
        }
        let htpasswd = self.auth.htpasswd;
        match (htpasswd, self.auth.token) {
            (Some(htpasswd), Some(token)) => {
                let path = htpasswd
                    .path
                    .ok_or_else(|| ConfigError::Unsupported("auth.htpasswd.path is missing".into()))?;
                config.auth = AuthConfig::Token(TokenConfig {
                    htpasswd: path,
                    realm: token.realm,
                    service: token.service.unwrap_or_else(|| "berth-registry".into()),
                    issuer: token.issuer.unwrap_or_else(|| "berth-registry".into()),
                    signing_key: token.signingkey,
                    expiration: token.expiration.unwrap_or(300),
                });
            }
            (Some(htpasswd), None) => {
                let path = htpasswd
                    .path
                    .ok_or_else(|| ConfigError::Unsupported("auth.htpasswd.path is missing".into()))?;
                config.auth = AuthConfig::Htpasswd {
                    realm: htpasswd.realm.unwrap_or_else(|| "berth-registry".into()),
                    path,
                };
            }
            (None, Some(_)) => {
                return Err(ConfigError::Unsupported(
                    "auth.token needs auth.htpasswd: the built-in token endpoint checks credentials there; \
                     tokens from an external issuer are not supported"
                        .into(),
                ))
            }
            (None, None) => {}
        }
        config.access = self.auth.access;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_keys_are_understood() {
        let yaml = r#"
version: 0.1
log:
  level: info
http:
  addr: 0.0.0.0:5001
  tls:
    certificate: /c.pem
    key: /k.pem
storage:
  filesystem:
    rootdirectory: /srv/reg
  delete:
    enabled: true
  maintenance:
    readonly:
      enabled: true
auth:
  htpasswd:
    realm: corp
    path: /etc/htpasswd
  access:
    - account: alice
      name: "team/*"
      actions: [pull, push]
"#;
        let file: FileConfig = serde_norway::from_str(yaml).unwrap();
        let mut config = Config::default();
        file.apply(&mut config).unwrap();
        assert_eq!(config.addr, "0.0.0.0:5001");
        assert_eq!(config.root, PathBuf::from("/srv/reg"));
        assert!(config.delete_enabled && config.read_only);
        assert_eq!(config.tls.unwrap().key, PathBuf::from("/k.pem"));
        match config.auth {
            AuthConfig::Htpasswd { realm, path } => {
                assert_eq!(realm, "corp");
                assert_eq!(path, PathBuf::from("/etc/htpasswd"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.access[0].actions, ["pull", "push"]);
    }

    #[test]
    fn token_needs_htpasswd_and_proxy_needs_a_url() {
        let file: FileConfig = serde_norway::from_str("auth:\n  token:\n    realm: x\n").unwrap();
        assert!(file.apply(&mut Config::default()).is_err());
        let file: FileConfig = serde_norway::from_str("proxy:\n  username: x\n").unwrap();
        assert!(file.apply(&mut Config::default()).is_err());
        let file: FileConfig = serde_norway::from_str("proxy:\n  remoteurl: https://up.example/\n").unwrap();
        let mut config = Config::default();
        file.apply(&mut config).unwrap();
        assert_eq!(config.proxy.unwrap().remote_url, "https://up.example");
    }
}
