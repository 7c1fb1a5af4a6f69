//! A pull's blob download: the bytes go to a file in the store's download directory and, for a
//! layer, into the unpacker at the same time, on one blocking thread, so a layer is unpacked by
//! the time its last byte arrives instead of being read back afterwards.

use berth_image::content::EagerWriteback;
use berth_image::layers::StagedLayer;
use berth_image::{Digest, ImageStore};
use berth_registry::client::{BlobSink, ClientError, Progress, Repository};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks in flight between the download and the writer.
const QUEUE: usize = 256;

enum Piece {
    Chunk(Bytes),
    /// The server sent the blob again from its first byte.
    Restart,
}

/// The download side of the queue.
struct QueueSink(mpsc::Sender<Piece>);

impl BlobSink for QueueSink {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.0.send(Piece::Chunk(chunk)).await.map_err(|_| writer_gone())
    }

    async fn restart(&mut self) -> io::Result<()> {
        self.0.send(Piece::Restart).await.map_err(|_| writer_gone())
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the download writer stopped")
}

/// The writer side: a reader over the queue that copies every chunk into the download file first.
struct TeeReader {
    rx: mpsc::Receiver<Piece>,
    /// The blob is fsynced when it joins the store: its writeback starts as it is written.
    file: BufWriter<EagerWriteback>,
    current: Bytes,
}

impl TeeReader {
    fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        let piece = self.rx.blocking_recv();
        match &piece {
            Some(Piece::Chunk(c)) => self.file.write_all(c)?,
            Some(Piece::Restart) => {
                self.file.flush()?;
                self.file.get_mut().truncate()?;
            }
            None => {}
        }
        Ok(piece)
    }

    /// Writes what is still queued, after the unpacker stopped reading.
    fn drain(mut self) -> io::Result<File> {
        while self.next_piece()?.is_some() {}
        Ok(self.file.into_inner().map_err(|e| e.into_error())?.into_inner())
    }
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.next_piece()? {
                Some(Piece::Chunk(c)) => self.current = c,
                // What the unpacker read so far is not the blob: stop it (its result is dropped).
                Some(Piece::Restart) => return Err(io::Error::other("download restarted")),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// A downloaded, verified blob in the content store, and the layer unpacked from it if asked.
pub struct Fetched {
    pub unpacked: Option<StagedLayer>,
}

/// Downloads `digest` into the store; with `unpack`, unpacks it as a layer on the way.
pub async fn fetch(
    repo: &Repository,
    store: &Arc<ImageStore>,
    digest: &Digest,
    unpack: bool,
    progress: Progress<'_>,
) -> Result<Fetched, FetchError> {
    let path = store.download_path(digest);
    let file = File::create(&path).map_err(|e| FetchError::Store(e.to_string()))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = {
        let store = store.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || write_and_unpack(&store, file, rx, unpack.then_some(&digest)))
    };
    let downloaded = repo
        .fetch_blob(&digest.to_string(), &mut QueueSink(tx), progress)
        .await;
    // The queue is closed (the sink dropped): the writer finishes what is queued and returns.
    let written = writer
        .await
        .map_err(|e| FetchError::Store(e.to_string()))
        .and_then(|r| r.map_err(|e| FetchError::Store(format!("writing blob {digest}: {e}"))));
    match (downloaded, written) {
        (Ok(_), Ok(unpacked)) => {
            let (s, dg, p) = (store.clone(), digest.clone(), path.clone());
            let adopted = tokio::task::spawn_blocking(move || s.adopt_download(&p, &dg)).await;
            match adopted {
                Ok(Ok(_)) => Ok(Fetched { unpacked }),
                Ok(Err(e)) => Err(FetchError::Store(e.to_string())),
                Err(e) => Err(FetchError::Store(e.to_string())),
            }
        }
        // A failed writer also fails the download ("writer stopped"): its own error is the cause.
        (_, Err(e)) => {
            discard(&path, None);
            Err(e)
        }
        (Err(e), Ok(unpacked)) => {
            discard(&path, unpacked);
            Err(FetchError::Client(e))
        }
    }
}

fn discard(path: &Path, unpacked: Option<StagedLayer>) {
    let _ = std::fs::remove_file(path);
    if let Some(layer) = unpacked {
        layer.remove();
    }
}

fn write_and_unpack(
    store: &ImageStore,
    file: File,
    rx: mpsc::Receiver<Piece>,
    unpack_as: Option<&Digest>,
) -> io::Result<Option<StagedLayer>> {
    let mut tee = TeeReader {
        rx,
        file: BufWriter::with_capacity(1 << 20, EagerWriteback::new(file)),
        current: Bytes::new(),
    };
    let unpacked = if let Some(blob) = unpack_as {
        match store.unpack_layer(&mut tee, blob) {
            Ok(layer) => Some(layer),
            Err(e) => {
                // Unpacked again from the stored blob later, which reports a real error.
                tracing::debug!(error = %e, "unpacking during download failed");
                None
            }
        }
    } else {
        None
    };
    match tee.drain() {
        Ok(_) => Ok(unpacked),
        Err(e) => {
            if let Some(layer) = unpacked {
                layer.remove();
            }
            Err(e)
        }
    }
}

#[derive(Debug)]
pub enum FetchError {
    Client(ClientError),
    Store(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_registry::client::{Access, ClientConfig, RegistryClient};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A layer tar with one 300 KB file, so a cut in the middle falls inside the file's data.
    fn layer_tar() -> Vec<u8> {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "data.bin", &data[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// A registry whose first blob response breaks off halfway; the second answers a `Range`
    /// request with 206 (`honour_range`) or sends the whole blob again with 200.
    async fn flaky_registry(blob: Vec<u8>, honour_range: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut blob_requests = 0;
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).to_lowercase();
                let range_start = req
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().trim_end_matches('-').parse::<usize>().ok());
                let head = |status: &str, len: usize| {
                    format!("HTTP/1.1 {status}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
                };
                if !req.contains("/blobs/") {
                    let _ = conn.write_all(head("200 OK", 0).as_bytes()).await;
                    continue;
                }
                blob_requests += 1;
                let reply = match (blob_requests, range_start) {
                    (1, _) => [head("200 OK", blob.len()).as_bytes(), &blob[..blob.len() / 2]].concat(),
                    (_, Some(start)) if honour_range => [
                        head("206 Partial Content", blob.len() - start).as_bytes(),
                        &blob[start..],
                    ]
                    .concat(),
                    _ => [head("200 OK", blob.len()).as_bytes(), &blob[..]].concat(),
                };
                let _ = conn.write_all(&reply).await;
                let _ = conn.shutdown().await;
            }
        });
        addr.to_string()
    }

    async fn fetch_through(honour_range: bool) {
        let tar = layer_tar();
        let digest = Digest::of(&tar);
        let registry = flaky_registry(tar.clone(), honour_range).await;
        let client = RegistryClient::new(ClientConfig::default()).unwrap();
        let repo = client
            .repository(&registry, "test/layer", Access::Pull, None)
            .await
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(root.path()).unwrap());
        let fetched = fetch(&repo, &store, &digest, true, &|_| {}).await.unwrap();
        assert_eq!(store.content.read_blob(&digest).unwrap(), tar, "stored blob");
        if honour_range {
            let layer = fetched.unpacked.expect("unpacked during the download");
            assert_eq!(
                layer.stats.diff_id, digest,
                "the unpacker saw exactly the blob's bytes"
            );
            assert_eq!(layer.stats.size, 300_000);
            layer.remove();
        } else {
            // The unpacker had read half a blob when it began again: the layer is unpacked
            // from the stored blob later instead.
            assert!(fetched.unpacked.is_none());
        }
        let staging = std::fs::read_dir(root.path().join("layers")).unwrap().count();
        assert_eq!(staging, 0, "unpacked layers left behind");
        let leftovers = std::fs::read_dir(store.download_dir()).unwrap().count();
        assert_eq!(leftovers, 0, "download files left behind");
    }

    #[tokio::test]
    async fn a_broken_download_resumes_with_a_range_request() {
        fetch_through(true).await;
    }

    #[tokio::test]
    async fn a_server_that_ignores_the_range_starts_the_blob_over_and_the_early_unpack_is_dropped() {
        fetch_through(false).await;
    }
}
