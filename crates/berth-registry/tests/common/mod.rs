//! Helpers shared by the integration tests: an in-process server on an ephemeral port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use berth_registry::{Config, Registry};
use sha2::{Digest as _, Sha256};

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with `config` (its addr is ignored).
    pub async fn start(config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let registry = Registry::new(config).unwrap();
        let task = tokio::spawn(async move {
            registry.serve(listener).await.unwrap();
        });
        TestServer {
            addr,
            base: format!("{scheme}://{addr}"),
            task,
        }
    }

    pub async fn with_root(root: &Path) -> TestServer {
        TestServer::start(Config {
            root: root.to_path_buf(),
            delete_enabled: true,
            ..Config::default()
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops accepting and drops the server.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Uploads a blob monolithically (`POST ?digest=`), returning its digest.
pub async fn push_blob(client: &reqwest::Client, server: &TestServer, name: &str, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    let response = client
        .post(server.url(&format!("/v2/{name}/blobs/uploads/?digest={digest}")))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    digest
}

/// An image manifest (OCI) over a config and layers already pushed.
pub fn image_manifest(config: &[u8], layers: &[&[u8]], media_type: &str) -> Vec<u8> {
    let (config_type, layer_type) = if media_type.contains("docker") {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let layers: Vec<_> = layers
        .iter()
        .map(|layer| serde_json::json!({ "mediaType": layer_type, "digest": digest_of(layer), "size": layer.len() }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": { "mediaType": config_type, "digest": digest_of(config), "size": config.len() },
        "layers": layers,
    }))
    .unwrap()
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Pushes config + layers + manifest under `tag`, returning the manifest digest.
pub async fn push_image(
    client: &reqwest::Client,
    server: &TestServer,
    name: &str,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> String {
    push_blob(client, server, name, config).await;
    for layer in layers {
        push_blob(client, server, name, layer).await;
    }
    let manifest = image_manifest(config, layers, OCI_MANIFEST);
    let response = client
        .put(server.url(&format!("/v2/{name}/manifests/{tag}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    digest_of(&manifest)
}

/// Writes an htpasswd file with bcrypt hashes (low cost: tests only).
pub fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Where `make_oci_layout` puts its one file in the image, and what the file holds.
pub const LAYOUT_FILE: &str = "bin/hello";

pub fn layout_file_content() -> Vec<u8> {
    b"#!/bin/sh\necho hello from berth\n".repeat(200)
}

/// What `make_oci_layout` wrote; digests are bare hex (no `sha256:`).
pub struct OciLayout {
    /// The gzip layer blob.
    pub layer: String,
    /// The uncompressed layer tar (the config's diff_id).
    pub diff_id: String,
    /// The config blob, which is also the image ID podman and docker report.
    pub config: String,
    pub manifest: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes an OCI image layout at `dir` holding one image, tagged `tag`, with one real gzip tar layer
/// that contains `LAYOUT_FILE`.
pub fn make_oci_layout(dir: &Path, tag: &str) -> OciLayout {
    let mut tar = tar::Builder::new(Vec::new());
    let content = layout_file_content();
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar.append_data(&mut header, LAYOUT_FILE, &content[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = sha256_hex(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/hello"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created_by": "berth test" }],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len() }],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for bytes in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(sha256_hex(bytes)), bytes).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", sha256_hex(&manifest)),
                        "size": manifest.len(), "annotations": { "org.opencontainers.image.ref.name": tag } }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    OciLayout {
        layer: sha256_hex(&layer),
        diff_id,
        config: sha256_hex(&config),
        manifest: sha256_hex(&manifest),
    }
}
