//! Interoperability with skopeo (Debian's `skopeo` package): push, inspect, list, mount, pull back.

mod common;

use std::path::Path;

use berth_registry::config::AuthConfig;
use berth_registry::Config;
use common::*;
use serde_json::Value;

struct Skopeo {
    policy: std::path::PathBuf,
    authfile: std::path::PathBuf,
}

impl Skopeo {
    fn new(dir: &Path) -> Skopeo {
        let policy = dir.join("policy.json");
        std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        Skopeo {
            policy,
            authfile: dir.join("auth.json"),
        }
    }

    /// Runs skopeo; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new("skopeo")
            .arg("--policy")
            .arg(&self.policy)
            .args(args)
            // Keep the host's credentials out of the test.
            .env("REGISTRY_AUTH_FILE", &self.authfile)
            .output()
            .await
            .expect("skopeo must be installed (Debian package skopeo)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "skopeo {args:?} failed: {stderr}");
        stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_inspect_list_and_pull_back() {
    let work = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let skopeo = Skopeo::new(work.path());
    let layout = work.path().join("layout");
    let layer = make_oci_layout(&layout, "v1").layer;
    let source = format!("oci:{}:v1", layout.display());
    let registry = format!("docker://{}", server.addr);

    for format in ["oci", "v2s2"] {
        let dest = format!("{registry}/smoke/busybox:{format}");
        skopeo
            .ok(&[
                "copy",
                "--dest-tls-verify=false",
                "--format",
                format,
                &source,
                &dest,
            ])
            .await;
    }
    let raw = skopeo
        .ok(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("{registry}/smoke/busybox:v2s2"),
        ])
        .await;
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST);
    let inspect = skopeo
        .ok(&[
            "inspect",
            "--tls-verify=false",
            &format!("{registry}/smoke/busybox:oci"),
        ])
        .await;
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"][0], format!("sha256:{layer}"));
    let tags = skopeo
        .ok(&[
            "list-tags",
            "--tls-verify=false",
            &format!("{registry}/smoke/busybox"),
        ])
        .await;
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["oci", "v2s2"]));

    // Registry to registry: the layer is mounted across repositories.
    skopeo
        .ok(&[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("{registry}/smoke/busybox:oci"),
            &format!("{registry}/smoke/other:copy"),
        ])
        .await;
    assert!(root
        .path()
        .join(format!("repositories/smoke/other/_layers/sha256/{layer}"))
        .exists());

    // Pull back: the layer is byte-identical.
    let back = work.path().join("back");
    skopeo
        .ok(&[
            "copy",
            "--src-tls-verify=false",
            &format!("{registry}/smoke/busybox:oci"),
            &format!("oci:{}:v1", back.display()),
        ])
        .await;
    let original = std::fs::read(layout.join("blobs/sha256").join(&layer)).unwrap();
    let pulled = std::fs::read(back.join("blobs/sha256").join(&layer)).unwrap();
    assert_eq!(original, pulled);

    skopeo
        .ok(&[
            "delete",
            "--tls-verify=false",
            &format!("{registry}/smoke/other:copy"),
        ])
        .await;
    let (ok, _, _) = skopeo
        .run(&[
            "inspect",
            "--tls-verify=false",
            &format!("{registry}/smoke/other:copy"),
        ])
        .await;
    assert!(!ok, "the deleted image is gone");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_with_htpasswd_needs_credentials() {
    let work = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "s3cret")]);
    let server = TestServer::start(Config {
        root: root.path().to_path_buf(),
        auth: AuthConfig::Htpasswd {
            realm: "test".into(),
            path: htpasswd,
        },
        ..Config::default()
    })
    .await;
    let skopeo = Skopeo::new(work.path());
    let layout = work.path().join("layout");
    make_oci_layout(&layout, "v1");
    let source = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{}/private/app:v1", server.addr);

    let (ok, _, stderr) = skopeo
        .run(&["copy", "--dest-tls-verify=false", &source, &dest])
        .await;
    assert!(!ok);
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication"),
        "{stderr}"
    );
    let (ok, _, _) = skopeo
        .run(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wrong",
            &source,
            &dest,
        ])
        .await;
    assert!(!ok);
    skopeo
        .ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            &source,
            &dest,
        ])
        .await;
    let tags = skopeo
        .ok(&[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
            &format!("docker://{}/private/app", server.addr),
        ])
        .await;
    assert!(tags.contains("v1"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_through_token_auth() {
    use berth_registry::config::{AccessRule, TokenConfig};
    let work = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let server = TestServer::start(Config {
        root: work.path().join("root"),
        auth: AuthConfig::Token(TokenConfig {
            htpasswd,
            realm: None,
            service: "berth-registry".into(),
            issuer: "berth-registry".into(),
            signing_key: None,
            expiration: 300,
        }),
        access: vec![
            AccessRule {
                account: "alice".into(),
                name: "*".into(),
                actions: vec!["*".into()],
            },
            AccessRule {
                account: "bob".into(),
                name: "*".into(),
                actions: vec!["pull".into()],
            },
        ],
        ..Config::default()
    })
    .await;
    let skopeo = Skopeo::new(work.path());
    let layout = work.path().join("layout");
    make_oci_layout(&layout, "v1");
    let source = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{}/team/app:v1", server.addr);

    let (ok, _, _) = skopeo
        .run(&["copy", "--dest-tls-verify=false", &source, &dest])
        .await;
    assert!(!ok, "no credentials, no push");
    let (ok, _, _) = skopeo
        .run(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:bob-pw",
            &source,
            &dest,
        ])
        .await;
    assert!(!ok, "bob may only pull");
    skopeo
        .ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            &source,
            &dest,
        ])
        .await;
    let inspect = skopeo
        .ok(&["inspect", "--tls-verify=false", "--creds", "bob:bob-pw", &dest])
        .await;
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Os"], "linux");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_cache_of_a_token_auth_upstream() {
    use berth_registry::config::{ProxyConfig, TokenConfig};
    let work = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("mirror", "mirror-pw")]);
    let upstream = TestServer::start(Config {
        root: work.path().join("upstream"),
        auth: AuthConfig::Token(TokenConfig {
            htpasswd,
            realm: None,
            service: "upstream".into(),
            issuer: "upstream".into(),
            signing_key: None,
            expiration: 300,
        }),
        ..Config::default()
    })
    .await;
    let skopeo = Skopeo::new(work.path());
    let layout = work.path().join("layout");
    let layer = make_oci_layout(&layout, "v1").layer;
    let source = format!("oci:{}:v1", layout.display());
    skopeo
        .ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "mirror:mirror-pw",
            &source,
            &format!("docker://{}/lib/app:v1", upstream.addr),
        ])
        .await;

    let cache_root = work.path().join("cache");
    let cache = TestServer::start(Config {
        root: cache_root.clone(),
        proxy: Some(ProxyConfig {
            remote_url: upstream.base.clone(),
            username: Some("mirror".into()),
            password: Some("mirror-pw".into()),
        }),
        ..Config::default()
    })
    .await;
    let through_cache = format!("docker://{}/lib/app:v1", cache.addr);
    let first = work.path().join("first");
    skopeo
        .ok(&[
            "copy",
            "--src-tls-verify=false",
            &through_cache,
            &format!("oci:{}:v1", first.display()),
        ])
        .await;
    let original = std::fs::read(layout.join("blobs/sha256").join(&layer)).unwrap();
    assert_eq!(
        std::fs::read(first.join("blobs/sha256").join(&layer)).unwrap(),
        original
    );
    assert_eq!(
        std::fs::read(cache_root.join("blobs/sha256").join(&layer)).unwrap(),
        original
    );
    let tags = skopeo
        .ok(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/lib/app", cache.addr),
        ])
        .await;
    assert!(tags.contains("v1"), "{tags}");

    let client = client();
    let push = client
        .post(cache.url("/v2/lib/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 405);

    // With upstream gone, the cached image is still served.
    upstream.stop().await;
    let second = work.path().join("second");
    skopeo
        .ok(&[
            "copy",
            "--src-tls-verify=false",
            &through_cache,
            &format!("oci:{}:v1", second.display()),
        ])
        .await;
    assert_eq!(
        std::fs::read(second.join("blobs/sha256").join(&layer)).unwrap(),
        original
    );
    let missing = client
        .get(cache.url("/v2/lib/app/manifests/never"))
        .send()
        .await
        .unwrap();
    assert!(missing.status().is_client_error() || missing.status().is_server_error());
    cache.stop().await;
}
