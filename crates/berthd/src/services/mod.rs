//! Daemon services: the layer between the HTTP API and the low-level crates. Each service owns
//! one kind of object and speaks in API types, never in HTTP.

pub mod build;
pub mod containers;
pub mod distribution;
pub mod events;
pub mod images;
pub mod network;
pub mod system;
pub mod userns;
pub mod volumes;

use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;

pub struct Daemon {
    pub config: Config,
    pub images: images::ImageService,
    pub build: build::BuildService,
    pub containers: containers::ContainerService,
    pub events: Arc<events::EventBus>,
    pub network: network::NetworkService,
    pub volumes: volumes::VolumeService,
    /// The remapped root of `--userns-remap`.
    pub userns: Option<Arc<userns::RemappedRoot>>,
    /// A stable identity for this daemon's root, as Docker's `ID` in /info.
    pub id: String,
}

impl Daemon {
    pub async fn open(config: Config) -> anyhow::Result<Daemon> {
        let root = config.root.clone();
        let store = tokio::task::spawn_blocking(move || berth_image::ImageStore::open(&root))
            .await?
            .context("opening the image store")?;
        let id = engine_id(&config.root)?;
        let store = Arc::new(store);
        let events = Arc::new(events::EventBus::default());
        let userns = match config.userns_remap.clone() {
            Some(setting) => {
                let root = config.root.clone();
                let remapped =
                    tokio::task::spawn_blocking(move || userns::RemappedRoot::setup(&setting, &root))
                        .await??;
                tracing::info!(user = %remapped.name, "containers run in user namespaces");
                traversable(&config.root)?;
                Some(Arc::new(remapped))
            }
            None => None,
        };
        let network = network::NetworkService::open(&config.root, &config.bridge, config.bip.as_deref())
            .await
            .context("setting up the bridge network")?;
        let volumes = {
            let root = config.root.clone();
            let owner = userns.as_ref().map(|u| u.root_ids());
            tokio::task::spawn_blocking(move || volumes::VolumeService::open(&root, owner))
                .await?
                .context("loading volumes")?
        };
        let containers = containers::ContainerService::open(
            &config.root,
            &config.exec_root,
            &config.cgroup_parent,
            containers::Collaborators {
                images: store.clone(),
                events: events.clone(),
                network: network.clone(),
                volumes: volumes.clone(),
                userns: userns.clone(),
            },
        )
        .await
        .context("loading containers")?;
        Ok(Daemon {
            build: build::BuildService::open(&config.root, store.clone())
                .context("opening the build cache")?,
            images: images::ImageService::new(store, events.clone()),
            containers,
            events,
            network,
            volumes,
            userns,
            config,
            id,
        })
    }
}

/// The remapped root must be able to walk to its containers' files (dockerd makes its root 0711
/// for the same reason); the directories below the root are made 0755.
fn traversable(root: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root)?.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode((mode & 0o7777) | 0o011))
            .with_context(|| format!("making {} traversable", root.display()))?;
    }
    Ok(())
}

fn engine_id(root: &std::path::Path) -> anyhow::Result<String> {
    let path = root.join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    let b: [u8; 16] = rand_bytes();
    let id = format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    );
    berth_image::content::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    b
}

/// Reads what is left of an uploaded body once its consumer is done with it, whether it
/// succeeded or not. A tar reader stops at the end-of-archive block, and if the response went
/// out with bytes unread, hyper closes the connection while the client may still be writing its
/// last chunk: the client then sees "broken pipe" instead of our answer.
pub fn drain_upload<T, R: std::io::Read>(result: T, reader: &mut R) -> T {
    let _ = std::io::copy(&mut std::io::Read::take(reader, 1 << 30), &mut std::io::sink());
    result
}

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> berth_image::Result<T> + Send + 'static,
) -> berth_image::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(berth_image::ImageError::Meta(format!("worker failed: {e}"))),
    }
}
