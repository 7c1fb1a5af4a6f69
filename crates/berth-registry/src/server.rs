//! The HTTP server: routing, authentication and authorization in front of thin handlers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;

use crate::auth::{allowed_actions, parse_basic, Claims, Htpasswd, ResourceActions, TokenKeys};
use crate::config::{AuthConfig, Config};
use crate::error::{ApiError, ErrorCode};
use crate::handlers;
use crate::reference::{validate_name, Route};
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening storage at {path}: {source}")]
    Storage {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("reading htpasswd file {path}: {source}")]
    Htpasswd {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("reading token signing key {path}: {source}")]
    SigningKey {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("upstream registry client: {0}")]
    Upstream(reqwest::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// How requests are authenticated, with what the mode needs loaded.
#[derive(Debug)]
pub(crate) enum Auth {
    None,
    Htpasswd {
        realm: String,
        users: Htpasswd,
    },
    Token {
        users: Htpasswd,
        keys: TokenKeys,
        realm: Option<String>,
    },
}

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    pub storage: Storage,
    pub config: Config,
    pub(crate) auth: Auth,
    /// The upstream registry in pull-through cache mode.
    pub(crate) upstream: Option<crate::proxy::Upstream>,
}

/// Who a request comes from, once authenticated.
#[derive(Debug)]
pub(crate) enum Identity {
    /// No authentication configured: everything is allowed.
    Anyone,
    User(String),
    Token(Claims),
}

impl AppState {
    /// Whether `identity` may take `action` on repository `name`.
    pub(crate) fn can(&self, identity: &Identity, name: &str, action: &str) -> bool {
        match identity {
            Identity::Anyone => true,
            Identity::User(user) => allowed_actions(&self.config.access, user, name).contains(action),
            Identity::Token(claims) => claims.allows("repository", name, action),
        }
    }
}

/// A registry server built from a [`Config`].
#[derive(Debug, Clone)]
pub struct Registry {
    state: Arc<AppState>,
}

impl Registry {
    /// Opens the storage and loads credentials and keys.
    pub fn new(config: Config) -> Result<Registry, ServerError> {
        let storage = Storage::open(&config.root).map_err(|source| ServerError::Storage {
            path: config.root.clone(),
            source,
        })?;
        let load_users = |path: &std::path::Path| {
            Htpasswd::load(path).map_err(|source| ServerError::Htpasswd {
                path: path.to_path_buf(),
                source,
            })
        };
        let auth = match &config.auth {
            AuthConfig::None => Auth::None,
            AuthConfig::Htpasswd { realm, path } => Auth::Htpasswd {
                realm: realm.clone(),
                users: load_users(path)?,
            },
            AuthConfig::Token(token) => {
                let secret = match &token.signing_key {
                    Some(path) => std::fs::read(path).map_err(|source| ServerError::SigningKey {
                        path: path.clone(),
                        source,
                    })?,
                    None => rand::random::<[u8; 32]>().to_vec(),
                };
                Auth::Token {
                    users: load_users(&token.htpasswd)?,
                    keys: TokenKeys::new(
                        &secret,
                        token.issuer.clone(),
                        token.service.clone(),
                        token.expiration,
                    ),
                    realm: token.realm.clone(),
                }
            }
        };
        let upstream = match &config.proxy {
            Some(proxy) => Some(crate::proxy::Upstream::new(proxy).map_err(ServerError::Upstream)?),
            None => None,
        };
        Ok(Registry {
            state: Arc::new(AppState {
                storage,
                config,
                auth,
                upstream,
            }),
        })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The axum router serving the distribution API (and `/token` in token mode).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2", any(base))
            .route("/v2/", any(base))
            .route("/v2/{*rest}", any(dispatch))
            .route("/token", get(crate::token::get).post(crate::token::post))
            .layer(DefaultBodyLimit::disable())
            .layer(axum::middleware::map_response(
                |mut response: Response| async move {
                    response.headers_mut().insert(
                        "docker-distribution-api-version",
                        HeaderValue::from_static("registry/2.0"),
                    );
                    response
                },
            ))
            .with_state(self.state.clone())
    }

    /// Binds the configured address and serves until the task is dropped.
    pub async fn run(self) -> Result<(), ServerError> {
        let addr = self.state.config.addr.clone();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        self.serve(listener).await
    }

    /// Serves on a bound listener, over TLS when the configuration has a certificate.
    pub async fn serve(self, listener: TcpListener) -> Result<(), ServerError> {
        let local: Option<SocketAddr> = listener.local_addr().ok();
        let router = self.router();
        match &self.state.config.tls {
            Some(files) => {
                let acceptor = crate::tls::acceptor(files)?;
                tracing::info!(addr = ?local, "serving HTTPS");
                crate::tls::serve(listener, acceptor, router).await
            }
            None => {
                tracing::info!(addr = ?local, "serving HTTP");
                axum::serve(listener, router).await?;
                Ok(())
            }
        }
    }
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The scheme and host clients reached us by, for the token realm.
fn external_base(state: &AppState, headers: &HeaderMap) -> String {
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Authenticates a request and checks that it may take `actions` on `scope` (a repository name,
/// or `None` for requests that only need a user). Answers 401 with a challenge, or 403.
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    scope: Option<(&str, &str, &[&str])>,
) -> Result<Identity, ApiError> {
    let authorization = headers.get("authorization").and_then(|value| value.to_str().ok());
    match &state.auth {
        Auth::None => Ok(Identity::Anyone),
        Auth::Htpasswd { realm, users } => {
            let challenge = format!("Basic realm=\"{realm}\"");
            let unauthorized = |message: &str| {
                ApiError::new(ErrorCode::Unauthorized, message)
                    .with_header("www-authenticate", challenge.clone())
            };
            let (user, password) = authorization
                .and_then(parse_basic)
                .ok_or_else(|| unauthorized("authentication required"))?;
            if !users.verify(&user, &password).await {
                return Err(unauthorized("invalid username or password"));
            }
            let identity = Identity::User(user);
            if let Some((kind, name, actions)) = scope {
                let allowed = match kind {
                    "repository" => actions.iter().all(|action| state.can(&identity, name, action)),
                    _ => true,
                };
                if !allowed {
                    return Err(ApiError::new(
                        ErrorCode::Denied,
                        "requested access to the resource is denied",
                    ));
                }
            }
            Ok(identity)
        }
        Auth::Token { keys, realm, .. } => {
            let realm = realm
                .clone()
                .unwrap_or_else(|| format!("{}/token", external_base(state, headers)));
            let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{}\"", keys.service);
            if let Some((kind, name, actions)) = scope {
                challenge.push_str(&format!(",scope=\"{kind}:{name}:{}\"", actions.join(",")));
            }
            let token = authorization.and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            });
            let Some(claims) = token.and_then(|token| keys.verify(token.trim())) else {
                return Err(ApiError::new(ErrorCode::Unauthorized, "authentication required")
                    .with_header("www-authenticate", challenge));
            };
            if let Some((kind, name, actions)) = scope {
                if !actions.iter().all(|action| claims.allows(kind, name, action)) {
                    // As distribution: the client may fetch a wider token and retry.
                    return Err(ApiError::new(ErrorCode::Denied, "insufficient scope")
                        .with_status(StatusCode::UNAUTHORIZED)
                        .with_header(
                            "www-authenticate",
                            format!("{challenge},error=\"insufficient_scope\""),
                        ));
                }
            }
            Ok(Identity::Token(claims))
        }
    }
}

/// `GET /v2/`: the API version check, which also tells clients whether they must authenticate.
async fn base(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match authorize(&state, &headers, None).await {
        Ok(_) => ([("content-type", "application/json")], "{}").into_response(),
        Err(err) => err.into_response(),
    }
}

/// Query parameters of a request, in order (a name may repeat, as `scope` does).
#[derive(Debug, Default)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|raw| form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Everything under `/v2/`: parses the path, checks the name and access, then hands over.
async fn dispatch(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
    method: Method,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = Query::parse(raw_query.as_deref());
    match dispatch_inner(&state, &rest, &method, &query, &headers, body).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(%method, path = %rest, code = err.code.as_str(), message = %err.message, "request failed");
            err.into_response()
        }
    }
}

async fn dispatch_inner(
    state: &Arc<AppState>,
    rest: &str,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(route) = Route::parse(rest) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if let Some(name) = route.name() {
        validate_name(name)?;
    }
    let actions: &[&str] = match *method {
        Method::GET | Method::HEAD => &["pull"],
        Method::DELETE => &["delete"],
        _ => &["pull", "push"],
    };
    let identity = match route.name() {
        Some(name) => authorize(state, headers, Some(("repository", name, actions))).await?,
        None => authorize(state, headers, Some(("registry", "catalog", &["*"]))).await?,
    };
    if is_write(method) && state.config.read_only {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "the registry is in read-only mode",
        ));
    }
    if let Some(upstream) = &state.upstream {
        if is_write(method) {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "a pull-through cache does not accept pushes",
            ));
        }
        match (&route, method.clone()) {
            (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
                handlers::fill_blob(state, upstream, name, digest).await?
            }
            (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
                handlers::fill_manifest(state, upstream, name, reference).await?
            }
            (Route::TagsList { name }, Method::GET) => {
                if let Some(response) = handlers::upstream_tags(upstream, name, query).await? {
                    return Ok(response);
                }
            }
            _ => {}
        }
    }
    let unsupported = || {
        Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported here"),
        ))
    };
    let head = *method == Method::HEAD;
    match (route, method.clone()) {
        (Route::Catalog, Method::GET) => handlers::catalog(state, &identity, query).await,
        (Route::TagsList { name }, Method::GET) => handlers::tags_list(state, &name, query).await,
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            handlers::get_blob(state, &name, &digest, headers, head).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => handlers::delete_blob(state, &name, &digest).await,
        (Route::UploadStart { name }, Method::POST) => {
            handlers::start_upload(state, &identity, &name, query, headers, body).await
        }
        (Route::Upload { name, uuid }, Method::PATCH) => {
            handlers::patch_upload(state, &name, &uuid, headers, body).await
        }
        (Route::Upload { name, uuid }, Method::PUT) => {
            handlers::finish_upload(state, &name, &uuid, query, headers, body).await
        }
        (Route::Upload { name, uuid }, Method::GET) => handlers::upload_status(state, &name, &uuid).await,
        (Route::Upload { name, uuid }, Method::DELETE) => handlers::cancel_upload(state, &name, &uuid).await,
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            handlers::get_manifest(state, &name, &reference, head).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            handlers::put_manifest(state, &name, &reference, headers, body).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            handlers::delete_manifest(state, &name, &reference).await
        }
        (Route::Referrers { name, digest }, Method::GET) => {
            handlers::referrers(state, &name, &digest, query).await
        }
        _ => unsupported(),
    }
}

/// Scopes asked for on `/token`, parsed.
pub(crate) fn requested_scopes(query: &Query) -> Vec<ResourceActions> {
    query
        .all("scope")
        .flat_map(|scope| scope.split(' '))
        .filter_map(ResourceActions::parse_scope)
        .collect()
}
