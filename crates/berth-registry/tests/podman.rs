//! Interoperability with podman (Debian's `podman` package): push in both manifest formats, pull back,
//! and log in to an htpasswd-protected registry.
//!
//! Every podman run is confined to the test's temp dir: its own storage (`vfs`, so nothing is mounted),
//! run root, libpod tmp dir, config files and auth file. The one thing podman has no option for is
//! containers/image's blob-info cache (always /var/lib/containers/cache for root), which it shares with
//! skopeo and the machine's own podman: each run gets a private mount namespace with the test's own
//! cache directory bound over that path, so runs neither read nor leave state there.

mod common;

use std::path::{Path, PathBuf};

use berth_registry::config::AuthConfig;
use berth_registry::Config;
use common::*;
use serde_json::Value;

/// Where containers/image keeps its blob-info cache when run as root.
const SYSTEM_BLOB_INFO_CACHE: &str = "/var/lib/containers/cache";

struct Podman {
    dir: PathBuf,
    global_args: Vec<String>,
    envs: Vec<(&'static str, PathBuf)>,
}

struct PodmanOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Podman {
    /// Lays out podman's private config and storage under `dir`.
    fn new(dir: &Path) -> Podman {
        let path = |name: &str| dir.join(name);
        for sub in ["root", "runroot", "tmp", "copy-tmp", "blob-info-cache"] {
            std::fs::create_dir_all(path(sub)).unwrap();
        }
        std::fs::write(
            path("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 image_copy_tmp_dir = \"{}\"\n",
                path("copy-tmp").display()
            ),
        )
        .unwrap();
        std::fs::write(
            path("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                path("root").display(),
                path("runroot").display()
            ),
        )
        .unwrap();
        std::fs::write(path("registries.conf"), "unqualified-search-registries = []\n").unwrap();
        std::fs::write(
            path("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        // Podman refuses an auth file that does not exist; an empty one keeps the host's out.
        std::fs::write(path("auth.json"), r#"{"auths":{}}"#).unwrap();
        let global_args = [
            ("--root", path("root").display().to_string()),
            ("--runroot", path("runroot").display().to_string()),
            ("--tmpdir", path("tmp").display().to_string()),
            ("--storage-driver", "vfs".to_string()),
            ("--cgroup-manager", "cgroupfs".to_string()),
            ("--events-backend", "file".to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect();
        Podman {
            dir: dir.to_path_buf(),
            global_args,
            envs: vec![
                ("CONTAINERS_CONF", path("containers.conf")),
                ("CONTAINERS_STORAGE_CONF", path("storage.conf")),
                ("CONTAINERS_REGISTRIES_CONF", path("registries.conf")),
                ("REGISTRY_AUTH_FILE", path("auth.json")),
            ],
        }
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.join("auth.json")
    }

    async fn run(&self, args: &[&str]) -> PodmanOutput {
        // The bind mount lives only in the new namespace and vanishes with the podman process.
        let script = format!(
            "mkdir -p {SYSTEM_BLOB_INFO_CACHE} && mount --bind \"$0\" {SYSTEM_BLOB_INFO_CACHE} && exec \"$@\""
        );
        let mut command = tokio::process::Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(self.dir.join("blob-info-cache"))
            .arg("podman")
            .args(&self.global_args);
        let (subcommand, rest) = args.split_first().expect("a podman subcommand");
        command.arg(subcommand);
        // The trust policy is a (hidden) option of the image-moving commands, not a global one.
        if matches!(*subcommand, "pull" | "push") {
            command
                .arg("--signature-policy")
                .arg(self.dir.join("policy.json"));
        }
        command.args(rest);
        for (name, value) in &self.envs {
            command.env(name, value);
        }
        let output = command
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("podman must be installed (Debian package podman; util-linux for unshare)");
        PodmanOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs podman and fails the test unless it succeeds; returns its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.success,
            "podman {args:?} failed:\n{}\n{}",
            output.stdout, output.stderr
        );
        output.stdout
    }

    /// Pulls `oci:<layout>:<tag>` into this podman's storage, returning the image ID.
    async fn pull_layout(&self, layout: &Path, tag: &str) -> String {
        let source = format!("oci:{}:{tag}", layout.display());
        self.ok(&["pull", "--quiet", &source]).await.trim().to_string()
    }

    async fn image_ids(&self) -> Vec<String> {
        let stdout = self.ok(&["images", "--quiet", "--no-trunc"]).await;
        stdout
            .lines()
            .map(|line| line.trim_start_matches("sha256:").to_string())
            .collect()
    }

    /// Reads a file out of an image's root filesystem (vfs "mounts" are plain directories).
    async fn read_image_file(&self, image: &str, file: &str) -> Vec<u8> {
        let rootfs = self.ok(&["image", "mount", image]).await;
        let bytes = std::fs::read(Path::new(rootfs.trim()).join(file)).unwrap();
        self.ok(&["image", "unmount", image]).await;
        bytes
    }

    /// Checks nothing podman made outlives the test: no mount and no process under the temp dir.
    fn assert_nothing_left(&self) {
        let dir = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&dir), "a mount under {dir} remains:\n{mounts}");
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !cmdline.contains(&dir),
                "process {:?} still runs: {cmdline}",
                entry.file_name()
            );
        }
    }
}

/// A temp dir whose path is a valid lowercase image name: podman names an image pulled from
/// `oci:<path>` after the path (`localhost/<path>`), and rejects `tempfile`'s mixed-case `.tmpXXXX`.
fn lowercase_tempdir() -> tempfile::TempDir {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tempfile::Builder::new()
        .prefix(&format!("berth-podman-{}-{count}-{nanos}", std::process::id()))
        .rand_bytes(0)
        .tempdir_in("/tmp")
        .unwrap()
}

/// GETs a manifest accepting both image manifest kinds: (content type, digest header, body).
async fn get_manifest(
    client: &reqwest::Client,
    server: &TestServer,
    name: &str,
    reference: &str,
    credentials: Option<(&str, &str)>,
) -> (reqwest::StatusCode, String, String, Vec<u8>) {
    let mut request = client
        .get(server.url(&format!("/v2/{name}/manifests/{reference}")))
        .header("accept", format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let content_type = header("content-type");
    let digest = header("docker-content-digest");
    let status = response.status();
    (
        status,
        content_type,
        digest,
        response.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pushes_both_manifest_kinds_and_pulls_them_back() {
    let work = lowercase_tempdir();
    let server = TestServer::with_root(&work.path().join("registry")).await;
    let client = client();
    let podman = Podman::new(&work.path().join("podman"));
    let layout = work.path().join("layout");
    let image = make_oci_layout(&layout, "v1");

    let id = podman.pull_layout(&layout, "v1").await;
    assert_eq!(id, image.config, "podman's image ID is the config digest");

    let repository = format!("{}/podman/busybox", server.addr);
    for (format, tag, media_type) in [("oci", "v1", OCI_MANIFEST), ("v2s2", "v2s2", DOCKER_MANIFEST)] {
        let digest_file = work.path().join(format!("{tag}.digest"));
        podman
            .ok(&[
                "push",
                "--tls-verify=false",
                "--format",
                format,
                "--digestfile",
                digest_file.to_str().unwrap(),
                &id,
                &format!("{repository}:{tag}"),
            ])
            .await;
        let pushed_digest = std::fs::read_to_string(&digest_file).unwrap();
        let (status, content_type, digest, body) =
            get_manifest(&client, &server, "podman/busybox", tag, None).await;
        assert_eq!(status, 200, "{tag}: {}", String::from_utf8_lossy(&body));
        assert_eq!(content_type, media_type, "{tag}");
        assert_eq!(digest, pushed_digest.trim(), "{tag}: the digest podman reported");
        assert_eq!(digest_of(&body), digest, "{tag}: the bytes podman pushed");
        let manifest: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(manifest["config"]["digest"], format!("sha256:{id}"), "{tag}");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{tag}");
        let layer = client
            .get(server.url(&format!(
                "/v2/podman/busybox/blobs/{}",
                layers[0]["digest"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(layer.status(), 200);
        assert_eq!(
            digest_of(&layer.bytes().await.unwrap()),
            layers[0]["digest"].as_str().unwrap()
        );
    }

    podman.ok(&["rmi", "--force", &id]).await;
    assert_eq!(podman.image_ids().await, Vec::<String>::new());
    for tag in ["v2s2", "v1"] {
        let reference = format!("{repository}:{tag}");
        podman
            .ok(&["pull", "--quiet", "--tls-verify=false", &reference])
            .await;
        assert_eq!(podman.image_ids().await, vec![id.clone()], "{tag}: same image ID");
        let inspect = podman.ok(&["image", "inspect", &reference]).await;
        let inspect: Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(
            inspect[0]["RootFS"]["Layers"],
            serde_json::json!([format!("sha256:{}", image.diff_id)]),
            "{tag}"
        );
        assert_eq!(
            podman.read_image_file(&reference, LAYOUT_FILE).await,
            layout_file_content(),
            "{tag}"
        );
        podman.ok(&["rmi", "--force", &reference]).await;
    }
    podman.assert_nothing_left();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_login_to_an_htpasswd_registry() {
    let work = lowercase_tempdir();
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "s3cret")]);
    let server = TestServer::start(Config {
        root: work.path().join("root"),
        auth: AuthConfig::Htpasswd {
            realm: "test".into(),
            path: htpasswd,
        },
        ..Config::default()
    })
    .await;
    let client = client();
    let podman = Podman::new(&work.path().join("podman"));
    let layout = work.path().join("layout");
    make_oci_layout(&layout, "v1");
    let id = podman.pull_layout(&layout, "v1").await;
    let registry = server.addr.to_string();
    let target = format!("{registry}/private/app:v1");
    let auth_file = podman.auth_file();
    let auth_file = auth_file.to_str().unwrap();

    let anonymous = podman
        .run(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            auth_file,
            &id,
            &target,
        ])
        .await;
    assert!(!anonymous.success, "pushed without credentials");
    assert!(
        anonymous.stderr.contains("unauthorized") || anonymous.stderr.contains("authentication required"),
        "{}",
        anonymous.stderr
    );
    let alice = Some(("alice", "s3cret"));
    let (status, ..) = get_manifest(&client, &server, "private/app", "v1", alice).await;
    assert_eq!(status, 404, "nothing was stored");

    let wrong = podman
        .run(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            auth_file,
            "-u",
            "alice",
            "-p",
            "wrong",
            &registry,
        ])
        .await;
    assert!(!wrong.success, "logged in with a wrong password");
    podman
        .ok(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            auth_file,
            "-u",
            "alice",
            "-p",
            "s3cret",
            &registry,
        ])
        .await;
    let auths: Value = serde_json::from_slice(&std::fs::read(auth_file).unwrap()).unwrap();
    assert!(auths["auths"][&registry]["auth"].is_string(), "{auths}");

    podman
        .ok(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            auth_file,
            &id,
            &target,
        ])
        .await;
    let (status, ..) = get_manifest(&client, &server, "private/app", "v1", None).await;
    assert_eq!(status, 401, "the registry still wants credentials");
    let (status, _, _, body) = get_manifest(&client, &server, "private/app", "v1", alice).await;
    assert_eq!(status, 200);
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["config"]["digest"], format!("sha256:{id}"));

    podman.ok(&["logout", "--authfile", auth_file, &registry]).await;
    let after_logout = podman
        .run(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            auth_file,
            &id,
            &format!("{registry}/private/app:v2"),
        ])
        .await;
    assert!(!after_logout.success, "pushed after logging out");
    podman.assert_nothing_left();
    server.stop().await;
}
