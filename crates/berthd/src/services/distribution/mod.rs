//! Pull and push: drives the registry client and the image store, and reports progress as the
//! JSON messages dockerd streams (`Pulling fs layer`, `Downloading`, `Pushed`, ...).

use super::Daemon;
use berth_api::types::JsonMessage;
use berth_image::manifest::{self, Descriptor, Index};
use berth_image::pull::UnpackedLayers;
use berth_image::{Digest, ImageConfig, ImageStore, Reference};
use berth_registry::client::{
    Access, ClientConfig, ClientError, Credentials, ErrorKind, RegistryClient, Repository,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc::UnboundedSender;

mod download;

/// Layers transferred at the same time, as dockerd's default.
const CONCURRENCY: usize = 3;

/// A failure of a pull or push, with the text Docker shows and the HTTP status it answers with
/// when nothing was streamed yet.
#[derive(Debug)]
pub struct DistributionError {
    pub status: u16,
    pub message: String,
}

impl DistributionError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        DistributionError {
            status,
            message: message.into(),
        }
    }
    fn client(e: ClientError) -> Self {
        let status = match e.kind {
            ErrorKind::NotFound => 404,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Denied => 403,
            _ => 500,
        };
        DistributionError::new(status, e.message)
    }
    fn image(e: berth_image::ImageError) -> Self {
        let status = match e.kind() {
            berth_image::ErrorKind::NotFound => 404,
            berth_image::ErrorKind::Conflict => 409,
            berth_image::ErrorKind::InvalidInput => 400,
            berth_image::ErrorKind::Internal => 500,
        };
        DistributionError::new(status, e.to_string())
    }
}

type Res<T> = Result<T, DistributionError>;

/// The registry client, built once from the daemon's configuration.
fn client(d: &Daemon) -> Res<RegistryClient> {
    static CLIENT: OnceLock<RegistryClient> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = RegistryClient::new(ClientConfig {
        insecure_registries: d.config.insecure_registries.clone(),
        registry_mirrors: d.config.registry_mirrors.clone(),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).into(),
    })
    .map_err(DistributionError::client)?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// Repositories each blob is known to be in, per registry: lets a push mount instead of upload.
/// (registry, blob digest) -> repositories.
type KnownLocations = Mutex<HashMap<(String, String), HashSet<String>>>;

fn known_locations() -> &'static KnownLocations {
    static KNOWN: OnceLock<KnownLocations> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

fn remember(registry: &str, digest: &str, repo: &str) {
    known_locations()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((registry.to_string(), digest.to_string()))
        .or_default()
        .insert(repo.to_string());
}

fn mount_source(registry: &str, digest: &str, not: &str) -> Option<String> {
    known_locations()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(registry.to_string(), digest.to_string()))
        .and_then(|s| s.iter().find(|r| *r != not).cloned())
}

/// Decodes `X-Registry-Auth` (base64url JSON, padded or not) into credentials.
pub fn decode_auth(header: Option<&str>) -> Option<Credentials> {
    credentials_of(&decode_header_json(header?)?)
}

/// `X-Registry-Config` (sent with `/build`): credentials by registry server, as the CLI keeps them.
pub fn decode_auth_config(header: Option<&str>) -> HashMap<String, Credentials> {
    let Some(serde_json::Value::Object(map)) = header.and_then(decode_header_json) else {
        return HashMap::new();
    };
    map.iter()
        .filter_map(|(server, v)| Some((normalize_server(server), credentials_of(v)?)))
        .collect()
}

/// A header holding base64 (URL-safe or not, padded or not) JSON, or plain JSON.
fn decode_header_json(header: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let raw = header.trim();
    if raw.is_empty() {
        return None;
    }
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(raw).ok())
        .unwrap_or_else(|| raw.as_bytes().to_vec());
    serde_json::from_slice(&bytes).ok()
}

/// One auth config object (`username`/`password`, `auth`, `identitytoken`).
fn credentials_of(v: &serde_json::Value) -> Option<Credentials> {
    use base64::Engine as _;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let mut creds = Credentials {
        username: s("username"),
        password: s("password"),
        identity_token: Some(s("identitytoken")).filter(|t| !t.is_empty()),
    };
    if creds.username.is_empty() && !s("auth").is_empty() {
        if let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(s("auth")) {
            if let Some((u, p)) = String::from_utf8_lossy(&pair).split_once(':') {
                creds.username = u.to_string();
                creds.password = p.to_string();
            }
        }
    }
    (!creds.username.is_empty() || creds.identity_token.is_some()).then_some(creds)
}

/// `POST /auth`: checks credentials against a registry.
pub async fn login(d: &Daemon, server: &str, creds: Credentials) -> Res<()> {
    let registry = normalize_server(server);
    client(d)?
        .login(&registry, &creds)
        .await
        .map_err(DistributionError::client)
}

/// `https://index.docker.io/v1/`, `http://localhost:5000` -> the registry host as references name it.
pub fn normalize_server(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        s => s.to_string(),
    }
}

fn image_event(d: &Daemon, action: &'static str, name: &str) {
    let attrs = std::collections::BTreeMap::from([("name".to_string(), name.to_string())]);
    d.events.publish("image", action, name, attrs);
}

fn send(tx: &UnboundedSender<JsonMessage>, m: JsonMessage) {
    let _ = tx.send(m);
}

fn status_id(status: &str, id: &str) -> JsonMessage {
    JsonMessage {
        status: Some(status.into()),
        id: Some(id.into()),
        progress_detail: Some(json!({})),
        ..Default::default()
    }
}

fn progress_msg(status: &str, id: &str, current: u64, total: u64) -> JsonMessage {
    JsonMessage {
        status: Some(status.into()),
        id: Some(id.into()),
        progress_detail: Some(json!({"current": current, "total": total})),
        progress: Some(progress_bar(current, total)),
        ..Default::default()
    }
}

/// Docker's progress string: a 50-wide bar and `current/total` in decimal units.
pub fn progress_bar(current: u64, total: u64) -> String {
    let width = 50;
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let filled = ((width as f64 * current as f64 / total as f64) as usize).min(width);
    let bar = if filled >= width {
        format!("[{}>]", "=".repeat(width - 1))
    } else {
        format!("[{}>{}]", "=".repeat(filled), " ".repeat(width - filled - 1))
    };
    format!("{bar} {:>8}/{}", human_size(current), human_size(total))
}

/// Docker's `units.HumanSize`: four significant digits, decimal units.
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        v.log10().floor() as usize + 1
    };
    let decimals = 4usize.saturating_sub(int_digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

/// Parses `fromImage` + `tag` as dockerd does: the tag may be a digest.
pub fn pull_reference(image: &str, tag: Option<&str>) -> Res<Reference> {
    let r = Reference::parse_normalized(image).map_err(|e| DistributionError::new(400, e.to_string()))?;
    match tag.filter(|t| !t.is_empty()) {
        Some(t) => match t.parse::<Digest>() {
            Ok(d) => Ok(r.with_digest(d)),
            Err(_) => r
                .with_tag(t)
                .map_err(|e| DistributionError::new(400, e.to_string())),
        },
        None => Ok(r),
    }
}

/// The pull, up to the point where progress starts streaming: resolves the manifest. Errors
/// here are answered with an HTTP status; after it, in the stream.
pub struct PreparedPull {
    repo: Repository,
    reference: Reference,
    /// What `Pulling from` names: the tag, or the digest.
    tag_or_digest: String,
    /// Digest of what the reference resolved to (index or manifest): the RepoDigest.
    top_digest: String,
    manifest: Vec<u8>,
    media_type: String,
}

pub async fn prepare_pull(d: &Daemon, reference: Reference, creds: Option<Credentials>) -> Res<PreparedPull> {
    let reference = reference.with_default_tag();
    let repo = client(d)?
        .repository(reference.domain(), reference.path(), Access::Pull, creds)
        .await
        .map_err(DistributionError::client)?;
    let tag_or_digest = match (reference.digest(), reference.tag()) {
        (Some(dg), _) => dg.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".into(),
    };
    let shown = reference.familiar_string();
    let top = repo
        .get_manifest(&tag_or_digest)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::NotFound => {
                DistributionError::new(404, format!("manifest for {shown} not found: {}", e.message))
            }
            _ => DistributionError::client(e),
        })?;
    let mut fetched = top.clone();
    for _ in 0..4 {
        if fetched.media_type != manifest::OCI_INDEX && fetched.media_type != manifest::DOCKER_MANIFEST_LIST {
            break;
        }
        let index: Index = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| DistributionError::new(500, format!("invalid index: {e}")))?;
        let chosen = pick_platform(&index.manifests).ok_or_else(|| {
            DistributionError::new(
                404,
                format!(
                    "no matching manifest for linux/{} in the manifest list entries",
                    manifest::host_architecture()
                ),
            )
        })?;
        fetched = repo
            .get_manifest(&chosen.digest.to_string())
            .await
            .map_err(DistributionError::client)?;
    }
    if fetched.media_type != manifest::OCI_MANIFEST && fetched.media_type != manifest::DOCKER_MANIFEST {
        return Err(DistributionError::new(
            400,
            format!("unsupported manifest media type {}", fetched.media_type),
        ));
    }
    Ok(PreparedPull {
        repo,
        reference,
        tag_or_digest,
        top_digest: top.digest,
        manifest: fetched.bytes,
        media_type: fetched.media_type,
    })
}

/// The entry for this machine: linux and our architecture; on arm, the variant rules (arm64 is
/// v8 when unspecified).
fn pick_platform(entries: &[Descriptor]) -> Option<&Descriptor> {
    let arch = manifest::host_architecture();
    let want_variant = match arch {
        "arm64" => Some("v8"),
        _ => None,
    };
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    candidates
        .iter()
        .find(|m| m.platform.as_ref().and_then(|p| p.variant.as_deref()) == want_variant)
        .or_else(|| candidates.first())
        .copied()
}

/// `pull --all-tags` (a `fromImage` without a tag): the repository's tags, before streaming.
pub async fn list_tags(d: &Daemon, reference: &Reference, creds: Option<Credentials>) -> Res<Vec<String>> {
    let repo = client(d)?
        .repository(reference.domain(), reference.path(), Access::Pull, creds)
        .await
        .map_err(DistributionError::client)?;
    let tags = repo.list_tags().await.map_err(|e| match e.kind {
        ErrorKind::NotFound => DistributionError::new(
            404,
            format!(
                "repository {} not found: {}",
                reference.familiar_name(),
                e.message
            ),
        ),
        _ => DistributionError::client(e),
    })?;
    if tags.is_empty() {
        return Err(DistributionError::new(
            404,
            format!("repository {} has no tags", reference.familiar_name()),
        ));
    }
    Ok(tags)
}

/// Pulls each of `tags` of `reference`'s repository in turn, as dockerd does for `pull -a`.
pub async fn run_pull_all(
    d: &Daemon,
    store: Arc<ImageStore>,
    reference: Reference,
    tags: Vec<String>,
    creds: Option<Credentials>,
    tx: UnboundedSender<JsonMessage>,
) -> Res<()> {
    let mut newer = false;
    for tag in tags {
        let tagged = reference
            .clone()
            .with_tag(&tag)
            .map_err(|e| DistributionError::new(500, format!("registry tag {tag:?}: {e}")))?;
        let prepared = prepare_pull(d, tagged, creds.clone()).await?;
        newer |= pull_one(d, store.clone(), prepared, tx.clone()).await?;
    }
    send(&tx, pull_status(&reference.familiar_string(), newer));
    Ok(())
}

/// Downloads config and layers, records the image, and streams Docker's messages to `tx`.
pub async fn run_pull(
    d: &Daemon,
    store: Arc<ImageStore>,
    p: PreparedPull,
    tx: UnboundedSender<JsonMessage>,
) -> Res<()> {
    let shown = p.reference.familiar_string();
    let newer = pull_one(d, store, p, tx.clone()).await?;
    send(&tx, pull_status(&shown, newer));
    Ok(())
}

/// Docker's last line of a pull: whether anything new was stored under `shown`.
fn pull_status(shown: &str, newer: bool) -> JsonMessage {
    JsonMessage::status(if newer {
        format!("Status: Downloaded newer image for {shown}")
    } else {
        format!("Status: Image is up to date for {shown}")
    })
}

/// One manifest's pull, up to its `Digest:` line; true when the image or tag is new.
async fn pull_one(
    d: &Daemon,
    store: Arc<ImageStore>,
    p: PreparedPull,
    tx: UnboundedSender<JsonMessage>,
) -> Res<bool> {
    let m: berth_image::manifest::Manifest = serde_json::from_slice(&p.manifest)
        .map_err(|e| DistributionError::new(500, format!("invalid manifest: {e}")))?;
    send(
        &tx,
        JsonMessage {
            status: Some(format!("Pulling from {}", p.reference.familiar_name())),
            id: Some(p.tag_or_digest.clone()),
            ..Default::default()
        },
    );
    let mut hold = store.hold_blobs();
    // The config first: its diff IDs say which layers are here already.
    let config_digest = m.config.digest.clone();
    hold.add(&config_digest);
    if !store.content.contains(&config_digest) {
        fetch_into_store(&p.repo, &store, &config_digest, false, &|_| {}).await?;
    }
    let config_bytes = store
        .content
        .read_blob(&config_digest)
        .map_err(DistributionError::image)?;
    let config = ImageConfig::parse(&config_bytes).map_err(DistributionError::image)?;
    let diff_ids = config.rootfs.diff_ids.clone();
    let mut needed = Vec::new();
    for (i, l) in m.layers.iter().enumerate() {
        hold.add(&l.digest);
        let id = l.digest.short().to_string();
        if store.has_pulled_layer(&diff_ids, i, &l.digest) {
            send(&tx, status_id("Already exists", &id));
        } else {
            send(&tx, status_id("Pulling fs layer", &id));
            needed.push(l.clone());
        }
    }
    for l in needed.iter().skip(CONCURRENCY) {
        send(&tx, status_id("Waiting", l.digest.short()));
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let early = Mutex::new(UnpackedLayers::default());
    let downloads = needed.iter().map(|l| {
        let semaphore = semaphore.clone();
        let tx = tx.clone();
        let repo = &p.repo;
        let store = &store;
        let early = &early;
        async move {
            let _permit = semaphore
                .acquire()
                .await
                .map_err(|e| DistributionError::new(500, e.to_string()))?;
            let id = l.digest.short().to_string();
            let total = l.size;
            let last = Mutex::new((std::time::Instant::now(), 0u64));
            let report = |n: u64| {
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if n == total || last.0.elapsed() >= std::time::Duration::from_millis(100) {
                    *last = (std::time::Instant::now(), n);
                    send(&tx, progress_msg("Downloading", &id, n, total));
                }
            };
            if !store.content.contains(&l.digest) {
                let unpacked = fetch_into_store(repo, store, &l.digest, true, &report).await?;
                if let Some(layer) = unpacked {
                    early
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(l.digest.clone(), layer);
                }
            }
            send(&tx, status_id("Verifying Checksum", &id));
            send(&tx, status_id("Download complete", &id));
            send(&tx, progress_msg("Extracting", &id, total, total));
            Ok::<(), DistributionError>(())
        }
    });
    for r in futures::future::join_all(downloads).await {
        r?;
    }
    let name = p.reference.clone();
    let repo_digest_ref = p
        .top_digest
        .parse::<Digest>()
        .map(|dg| Reference::parse_normalized(&name.name()).map(|r| r.with_digest(dg)))
        .map_err(|e| DistributionError::new(500, e.to_string()))?
        .map_err(|e| DistributionError::new(500, e.to_string()))?;
    let mut tags = vec![repo_digest_ref];
    if name.digest().is_none() {
        tags.push(name.clone());
    }
    let before = store.resolve(&name.to_string()).ok().map(|i| i.record.id);
    let (manifest_bytes, media_type) = (p.manifest.clone(), p.media_type.clone());
    let (s2, early) = (
        store.clone(),
        early.into_inner().unwrap_or_else(|p| p.into_inner()),
    );
    let pulled = super::blocking(move || s2.register_pulled(&manifest_bytes, &media_type, &tags, early))
        .await
        .map_err(DistributionError::image)?;
    drop(hold);
    for l in &needed {
        send(&tx, status_id("Pull complete", l.digest.short()));
    }
    for l in &m.layers {
        remember(&p.repo.registry, &l.digest.to_string(), &p.repo.name);
    }
    send(&tx, JsonMessage::status(format!("Digest: {}", p.top_digest)));
    let up_to_date = pulled.existed && before.as_ref() == Some(&pulled.id);
    image_event(d, "pull", &name.familiar_string());
    Ok(!up_to_date)
}

/// Downloads a blob into the store; with `unpack`, returns the layer unpacked on the way.
async fn fetch_into_store(
    repo: &Repository,
    store: &Arc<ImageStore>,
    digest: &Digest,
    unpack: bool,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Res<Option<berth_image::layers::StagedLayer>> {
    match download::fetch(repo, store, digest, unpack, progress).await {
        Ok(fetched) => Ok(fetched.unpacked),
        Err(download::FetchError::Client(e)) => Err(DistributionError::client(e)),
        Err(download::FetchError::Store(e)) => Err(DistributionError::new(500, e)),
    }
}

/// `docker push`: every tag of the repository when `tag` is empty, else that tag.
pub async fn run_push(
    d: &Daemon,
    store: Arc<ImageStore>,
    name: &str,
    tag: Option<&str>,
    creds: Option<Credentials>,
    tx: UnboundedSender<JsonMessage>,
) -> Res<()> {
    let base = Reference::parse_normalized(name).map_err(|e| DistributionError::new(400, e.to_string()))?;
    let refs: Vec<Reference> = match tag.filter(|t| !t.is_empty()).or(base.tag()) {
        Some(t) => vec![base
            .with_tag(t)
            .map_err(|e| DistributionError::new(400, e.to_string()))?],
        None => {
            let s = store.clone();
            let repo_name = base.name();
            let all = super::blocking(move || s.list())
                .await
                .map_err(DistributionError::image)?;
            let mut tags: Vec<Reference> = all
                .iter()
                .flat_map(|i| i.refs.iter())
                .filter(|r| r.digest().is_none() && r.name() == repo_name)
                .cloned()
                .collect();
            tags.sort_by_key(|r| r.to_string());
            tags
        }
    };
    send(
        &tx,
        JsonMessage::status(format!(
            "The push refers to repository [{}]",
            Reference::parse_normalized(&base.name())
                .map(|r| r.familiar_name())
                .unwrap_or_else(|_| base.name())
        )),
    );
    if refs.is_empty() {
        return Err(DistributionError::new(
            404,
            format!(
                "An image does not exist locally with the tag: {}",
                base.familiar_name()
            ),
        ));
    }
    let repo = client(d)?
        .repository(base.domain(), base.path(), Access::Push, creds)
        .await
        .map_err(DistributionError::client)?;
    for r in refs {
        push_one(&repo, &store, &r, &tx).await?;
        image_event(d, "push", &r.familiar_string());
    }
    Ok(())
}

async fn push_one(
    repo: &Repository,
    store: &Arc<ImageStore>,
    r: &Reference,
    tx: &UnboundedSender<JsonMessage>,
) -> Res<()> {
    let (s, n) = (store.clone(), r.to_string());
    let src = super::blocking(move || s.push_source(&n))
        .await
        .map_err(|e| match e.kind() {
            berth_image::ErrorKind::NotFound => DistributionError::new(
                404,
                format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar_name()
                ),
            ),
            _ => DistributionError::image(e),
        })?;
    let mut hold = store.hold_blobs();
    let config = ImageConfig::parse(
        &store
            .content
            .read_blob(&src.config.digest)
            .map_err(DistributionError::image)?,
    )
    .map_err(DistributionError::image)?;
    // Docker names push progress lines by diff ID, top layer first.
    let ids: Vec<String> = src
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            config
                .rootfs
                .diff_ids
                .get(i)
                .map(|d| d.short().to_string())
                .unwrap_or_else(|| l.digest.short().to_string())
        })
        .collect();
    for (l, id) in src.layers.iter().zip(&ids).rev() {
        hold.add(&l.digest);
        send(tx, status_id("Preparing", id));
    }
    for id in ids.iter().rev().skip(CONCURRENCY) {
        send(tx, status_id("Waiting", id));
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let uploads = src.layers.iter().zip(&ids).rev().map(|(l, id)| {
        let semaphore = semaphore.clone();
        let tx = tx.clone();
        async move {
            let _permit = semaphore
                .acquire()
                .await
                .map_err(|e| DistributionError::new(500, e.to_string()))?;
            let outcome = push_blob(repo, store, &l.digest, l.size, Some((id.as_str(), &tx))).await?;
            send(&tx, status_id(&outcome, id));
            Ok::<(), DistributionError>(())
        }
    });
    for r in futures::future::join_all(uploads).await {
        r?;
    }
    hold.add(&src.config.digest);
    push_blob(repo, store, &src.config.digest, src.config.size, None).await?;
    let tag = r.tag().unwrap_or("latest").to_string();
    let size = src.manifest.len();
    let digest = repo
        .put_manifest(&tag, &src.media_type, src.manifest.clone())
        .await
        .map_err(DistributionError::client)?;
    drop(hold);
    send(
        tx,
        JsonMessage::status(format!("{tag}: digest: {digest} size: {size}")),
    );
    send(
        tx,
        JsonMessage {
            progress_detail: Some(json!({})),
            aux: Some(json!({"Tag": tag, "Digest": digest, "Size": size})),
            ..Default::default()
        },
    );
    // The pushed name now has this digest: record it as a RepoDigest, as Docker does.
    if let Ok(dg) = digest.parse::<Digest>() {
        if let Ok(named) = Reference::parse_normalized(&r.name()) {
            let (s, rd) = (store.clone(), named.with_digest(dg));
            let (bytes, mt) = (src.manifest.clone(), src.media_type.clone());
            let _ = super::blocking(move || s.register_pulled(&bytes, &mt, &[rd], UnpackedLayers::default()))
                .await;
        }
    }
    Ok(())
}

/// Uploads one blob unless the repository has it; returns Docker's word for what happened.
async fn push_blob(
    repo: &Repository,
    store: &Arc<ImageStore>,
    digest: &Digest,
    size: u64,
    progress: Option<(&str, &UnboundedSender<JsonMessage>)>,
) -> Res<String> {
    let dg = digest.to_string();
    if repo.has_blob(&dg).await.map_err(DistributionError::client)? {
        remember(&repo.registry, &dg, &repo.name);
        return Ok("Layer already exists".into());
    }
    if let Some(from) = mount_source(&repo.registry, &dg, &repo.name) {
        if repo
            .mount_blob(&dg, &from)
            .await
            .map_err(DistributionError::client)?
        {
            remember(&repo.registry, &dg, &repo.name);
            return Ok(format!("Mounted from {from}"));
        }
    }
    let path = store.content.blob_path(digest);
    let report: Arc<dyn Fn(u64) + Send + Sync> = match progress {
        Some((id, tx)) => {
            let (id, tx) = (id.to_string(), tx.clone());
            let last = Mutex::new(std::time::Instant::now());
            Arc::new(move |n: u64| {
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if n == size || last.elapsed() >= std::time::Duration::from_millis(100) {
                    *last = std::time::Instant::now();
                    send(&tx, progress_msg("Pushing", &id, n, size));
                }
            })
        }
        None => Arc::new(|_| {}),
    };
    repo.upload_blob(&dg, &path, report)
        .await
        .map_err(DistributionError::client)?;
    remember(&repo.registry, &dg, &repo.name);
    Ok("Pushed".into())
}
