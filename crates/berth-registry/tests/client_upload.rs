//! The registry client's blob upload against the real server: chunked PATCHes, and a chunk whose
//! connection breaks midway resumed from where the registry says the session stands.

mod common;

use berth_registry::client::{Access, ClientConfig, RegistryClient};
use common::{client, digest_of, TestServer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to `upstream` that breaks the first connection carrying a PATCH after it has
/// forwarded `cut_after` bytes of the request.
async fn breaking_proxy(upstream: SocketAddr, cut_after: usize) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let cut_flag = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client_side, _)) = listener.accept().await else {
                return;
            };
            let server_side = TcpStream::connect(upstream).await.unwrap();
            let cut = cut_flag.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client_side.into_split();
                let (mut sr, mut sw) = server_side.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 << 10];
                let (mut forwarded, mut breaking) = (0usize, false);
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if !breaking && buf[..n].starts_with(b"PATCH ") && !cut.swap(true, Ordering::SeqCst) {
                        breaking = true;
                    }
                    let n = if breaking { n.min(cut_after - forwarded) } else { n };
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    forwarded += n;
                    if breaking && forwarded >= cut_after {
                        break;
                    }
                }
                // Both directions closed: the client sees its request fail midway.
                let _ = sw.shutdown().await;
                back.abort();
            });
        }
    });
    (addr, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_broken_midway_resumes_and_the_blob_is_whole() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let (proxy, cut) = breaking_proxy(server.addr, 1 << 20).await;

    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = digest_of(&blob);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("blob");
    std::fs::write(&src, &blob).unwrap();

    let registry = RegistryClient::new(ClientConfig::default()).unwrap();
    let repo = registry
        .repository(&proxy.to_string(), "resume/blob", Access::Push, None)
        .await
        .unwrap();
    let progress_calls = Arc::new(AtomicUsize::new(0));
    let calls = progress_calls.clone();
    repo.upload_blob(
        &digest,
        &src,
        Arc::new(move |_| {
            calls.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .await
    .expect("the upload resumes after the broken chunk");
    assert!(
        cut.load(Ordering::SeqCst),
        "the proxy never broke a PATCH: nothing was resumed"
    );
    assert!(progress_calls.load(Ordering::Relaxed) > 0);

    let got = client()
        .get(server.url(&format!("/v2/resume/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        &blob[..],
        "stored blob differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_blob_uploads_without_a_patch() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("empty");
    std::fs::write(&src, b"").unwrap();
    let digest = digest_of(b"");
    let registry = RegistryClient::new(ClientConfig::default()).unwrap();
    let repo = registry
        .repository(&server.addr.to_string(), "empty/blob", Access::Push, None)
        .await
        .unwrap();
    repo.upload_blob(&digest, &src, Arc::new(|_| {})).await.unwrap();
    let head = client()
        .head(server.url(&format!("/v2/empty/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "0");
}
