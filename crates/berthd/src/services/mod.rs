//! Daemon services: the layer between the HTTP API and the low-level crates. Each service owns
//! one kind of object and speaks in API types, never in HTTP.

pub mod build;
pub mod containers;
pub mod distribution;
pub mod events;
pub mod images;
pub mod network;
pub mod system;
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
        let network = network::NetworkService::open(&config.root, &config.bridge, config.bip.as_deref())
            .await
            .context("setting up the bridge network")?;
        let volumes = {
            let root = config.root.clone();
            tokio::task::spawn_blocking(move || volumes::VolumeService::open(&root))
                .await?
                .context("loading volumes")?
        };
        let containers = containers::ContainerService::open(
            &config.root,
            &config.exec_root,
            &config.cgroup_parent,
            store.clone(),
            events.clone(),
            network.clone(),
            volumes.clone(),
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
            config,
            id,
        })
    }
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

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> berth_image::Result<T> + Send + 'static,
) -> berth_image::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(berth_image::ImageError::Meta(format!("worker failed: {e}"))),
    }
}
