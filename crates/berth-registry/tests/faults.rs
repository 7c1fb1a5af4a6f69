//! Faults and maintenance with the real binary: kill -9 in the middle of an upload, and gc.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_berth-registry");
const CHUNK: usize = 16 << 20;
const CHUNKS: usize = 12;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server child process on a free port of 127.0.0.1; killed on drop.
struct ChildServer {
    child: Child,
    base: String,
}

impl ChildServer {
    async fn start(root: &Path) -> ChildServer {
        let port = free_port();
        let root = root.to_str().unwrap();
        let addr = format!("127.0.0.1:{port}");
        ChildServer::start_with(&["--addr", &addr, "--delete-enabled", "--root", root], port, None).await
    }

    /// Starts `serve ARGS` and waits until `GET /v2/` answers `expected` (200 unless told).
    async fn start_with(args: &[&str], port: u16, expected: Option<u16>) -> ChildServer {
        let child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = ChildServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if let Ok(response) = client().get(server.url("/v2/")).send().await {
                if response.status() == expected.unwrap_or(200) {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("berth-registry did not come up");
    }

    /// Resident memory of the server process, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chunk(index: usize) -> Vec<u8> {
    (0..CHUNK).map(|i| ((i * 7 + index * 13) % 251) as u8).collect()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_leaves_no_partial_blob() {
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let mut hasher = Sha256::new();
    for index in 0..CHUNKS {
        hasher.update(chunk(index));
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));

    let mut server = ChildServer::start(root.path()).await;
    let response = client
        .post(server.url("/v2/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = header(&response, "location");
    let committed = CHUNKS / 2;
    for index in 0..committed {
        let start = index * CHUNK;
        let response = client
            .patch(server.url(&location))
            .header("content-range", format!("{start}-{}", start + CHUNK - 1))
            .body(chunk(index))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }

    // The next chunk streams half its bytes, then the server dies with SIGKILL.
    let (half_sent, half_sent_rx) = tokio::sync::oneshot::channel::<()>();
    let mut half_sent = Some(half_sent);
    let pieces: Vec<bytes::Bytes> = chunk(committed)
        .chunks(1 << 20)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let stream = futures::stream::iter(pieces.into_iter().enumerate()).then(move |(i, piece)| {
        let signal = if i == 8 { half_sent.take() } else { None };
        async move {
            if let Some(signal) = signal {
                let _ = signal.send(());
                futures::future::pending::<()>().await;
            }
            Ok::<_, std::io::Error>(piece)
        }
    });
    let request = client
        .patch(server.url(&location))
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let request = tokio::spawn(request);
    half_sent_rx.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9();
    assert!(request.await.unwrap().is_err(), "the interrupted PATCH fails");

    let server = ChildServer::start(root.path()).await;
    let head = client
        .head(server.url(&format!("/v2/big/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    assert_eq!(
        std::fs::read_dir(root.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    // The session is back at its last committed chunk; resume and finish it.
    let status = client.get(server.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(header(&status, "range"), format!("0-{}", committed * CHUNK - 1));
    for index in committed..CHUNKS {
        let start = index * CHUNK;
        let response = client
            .patch(server.url(&location))
            .header("content-range", format!("{start}-{}", start + CHUNK - 1))
            .body(chunk(index))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let response = client
        .put(server.url(&format!("{location}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .get(server.url(&format!("/v2/big/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "content-length"), (CHUNK * CHUNKS).to_string());
    let mut body = response.bytes_stream();
    let mut hasher = Sha256::new();
    while let Some(piece) = body.next().await {
        hasher.update(piece.unwrap());
    }
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), digest);
    // 192 MiB went in and out; the server streamed it rather than holding it.
    assert!(server.rss() < 96 << 20, "server RSS {} bytes", server.rss());

    // A fresh upload of another blob also works after the crash.
    let response = client
        .post(server.url(&format!("/v2/big/blobs/uploads/?digest={}", digest_of(b"after"))))
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

fn gc(root: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .arg("gc")
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_frees_only_unreferenced_blobs() {
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let server = TestServer::with_root(root.path()).await;
    let shared: &[u8] = b"shared base layer";
    let image_a = push_image(
        &client,
        &server,
        "app",
        "a",
        b"{\"n\":\"a\"}",
        &[shared, b"layer a"],
    )
    .await;
    let image_b = push_image(
        &client,
        &server,
        "app",
        "b",
        b"{\"n\":\"b\"}",
        &[shared, b"layer b"],
    )
    .await;
    push_image(&client, &server, "other", "c", b"{\"n\":\"c\"}", &[b"layer c"]).await;
    let deleted = client
        .delete(server.url(&format!("/v2/app/manifests/{image_b}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    let untagged = client
        .delete(server.url("/v2/other/manifests/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(untagged.status(), 202);
    server.stop().await;
    // a: config, 2 layers, manifest; b: config, layer b, manifest; c: config, layer, manifest.
    assert_eq!(blob_count(root.path()), 10);

    let dry = gc(root.path(), &["--dry-run"]);
    assert!(dry.contains("would delete blob"), "{dry}");
    assert_eq!(blob_count(root.path()), 10);

    let out = gc(root.path(), &[]);
    assert!(out.contains(&format!("deleted blob {image_b}")), "{out}");
    assert_eq!(blob_count(root.path()), 7);
    // c lost only its tag: its revision still holds its blobs until -m.
    let out = gc(root.path(), &["--delete-untagged"]);
    assert!(out.contains("deleted manifest other@"), "{out}");
    assert_eq!(blob_count(root.path()), 4);

    let server = TestServer::with_root(root.path()).await;
    let manifest = client
        .get(server.url("/v2/app/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&manifest, "docker-content-digest"), image_a);
    for blob in [
        digest_of(shared),
        digest_of(b"layer a"),
        digest_of(b"{\"n\":\"a\"}"),
    ] {
        let head = client
            .head(server.url(&format!("/v2/app/blobs/{blob}")))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200, "{blob}");
    }
    let head = client
        .head(server.url(&format!("/v2/app/blobs/{}", digest_of(b"layer b"))))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_with_flag_overrides() {
    let work = tempfile::tempdir().unwrap();
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("ops", "ops-pw")]);
    let port = free_port();
    let config = work.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: debug\nhttp:\n  addr: 127.0.0.1:1\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\n  delete:\n    enabled: true\nauth:\n  htpasswd:\n    realm: ops\n    path: {}\n",
            work.path().join("root").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    // --addr overrides http.addr; the rest comes from the file.
    let server = ChildServer::start_with(
        &["--config", config.to_str().unwrap(), "--addr", &addr],
        port,
        Some(401),
    )
    .await;
    let client = client();
    let response = client.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(header(&response, "www-authenticate"), "Basic realm=\"ops\"");
    let response = client
        .get(server.url("/v2/"))
        .basic_auth("ops", Some("ops-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let digest = digest_of(b"x");
    let response = client
        .delete(server.url(&format!("/v2/some/repo/manifests/{digest}")))
        .basic_auth("ops", Some("ops-pw"))
        .send()
        .await
        .unwrap();
    // Deletes are enabled by the file: the manifest is unknown rather than the method refused.
    assert_eq!(response.status(), 404);
    assert!(work.path().join("root/blobs/sha256").is_dir());
}
