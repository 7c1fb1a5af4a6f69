//! Crashes: berthd killed with SIGKILL in the middle of loading a large image comes back clean, and
//! a second berthd cannot take over a root that is in use.

use berth_tests::*;
use sha2::Digest as _;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// splitmix64: fast, and its output does not compress, so the sizes on disk are the sizes loaded.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `len` pseudo-random bytes, as a reader.
struct RandomData {
    prng: Prng,
    left: u64,
}

impl Read for RandomData {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize) / 8 * 8;
        let n = if n == 0 {
            buf.len().min(self.left as usize)
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            let v = self.prng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes a layer tar of `files` random files of `file_size` bytes each; returns its sha256 (hex).
fn write_layer(path: &Path, seed: u64, files: usize, file_size: u64) -> String {
    let f = std::fs::File::create(path).unwrap();
    let out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, f),
        hasher: sha2::Sha256::new(),
    };
    let mut b = tar::Builder::new(out);
    let mut prng = Prng(seed);
    for i in 0..files {
        let data = RandomData {
            prng: Prng(prng.next()),
            left: file_size,
        };
        b.append_data(&mut file_header(file_size), format!("data/{seed}/f{i}"), data)
            .unwrap();
    }
    let mut out = b.into_inner().unwrap();
    out.flush().unwrap();
    out.inner.into_inner().unwrap().sync_all().unwrap();
    hex::encode(out.hasher.finalize())
}

/// A docker-archive of one image, tagged `tag`, with two ~150 MB layers of incompressible data.
/// Returns the archive's path and the image ID.
fn big_archive(dir: &Path, tag: &str) -> (PathBuf, String) {
    const FILE: u64 = 50 << 20;
    let mut diff_ids = Vec::new();
    let mut layer_files = Vec::new();
    for seed in [1u64, 2] {
        let p = dir.join(format!("layer{seed}.tar"));
        diff_ids.push(write_layer(&p, seed, 3, FILE));
        layer_files.push(p);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>()},
        "history": [{"created_by": "layer 1"}, {"created_by": "layer 2"}],
    }))
    .unwrap();
    let config_hex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": [tag],
        "Layers": diff_ids.iter().map(|d| format!("blobs/sha256/{d}")).collect::<Vec<_>>(),
    }]))
    .unwrap();

    let path = dir.join("big.tar");
    let mut b = tar::Builder::new(BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).unwrap(),
    ));
    for (file, diff_id) in layer_files.iter().zip(&diff_ids) {
        let f = std::fs::File::open(file).unwrap();
        let size = f.metadata().unwrap().len();
        b.append_data(&mut file_header(size), format!("blobs/sha256/{diff_id}"), f)
            .unwrap();
        std::fs::remove_file(file).unwrap();
    }
    b.append_data(
        &mut file_header(config.len() as u64),
        format!("blobs/sha256/{config_hex}"),
        &config[..],
    )
    .unwrap();
    b.append_data(
        &mut file_header(manifest.len() as u64),
        "manifest.json",
        &manifest[..],
    )
    .unwrap();
    b.into_inner().unwrap().into_inner().unwrap().sync_all().unwrap();
    (path, format!("sha256:{config_hex}"))
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    }
}

fn ingest_bytes(root: &Path) -> u64 {
    let dir = root.join("content/ingest");
    entries(&dir)
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .sum()
}

fn staging_layers(root: &Path) -> usize {
    entries(&root.join("layers"))
        .iter()
        .filter(|n| n.starts_with("tmp-"))
        .count()
}

/// Where to kill the daemon.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// While the archive is being streamed into the content store.
    Ingesting,
    /// While the second layer is streamed in, the first one already committed as a blob.
    SecondBlob,
    /// While the layers are being unpacked (all blobs are in by then).
    Unpacking,
}

fn reached(root: &Path, point: KillPoint) -> bool {
    match point {
        KillPoint::Ingesting => ingest_bytes(root) > 8 << 20,
        KillPoint::SecondBlob => {
            !entries(&root.join("content/blobs/sha256")).is_empty() && ingest_bytes(root) > 8 << 20
        }
        KillPoint::Unpacking => staging_layers(root) > 0,
    }
}

fn start_load(d: &Daemon, archive: &Path) -> Child {
    Command::new(bin("berth"))
        .args(["load", "-q", "-i"])
        .arg(archive)
        .env("BERTH_HOST", d.host())
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting berth load")
}

fn images(d: &Daemon) -> serde_json::Value {
    let (status, v) = d.api_json("GET", "/v1.50/images/json?all=1", b"");
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn kill_9_during_load_leaves_a_clean_store() {
    let mut d = Daemon::start();
    let work = tempfile::tempdir().unwrap();
    let tag = "big:crash";
    let (archive, id) = big_archive(work.path(), tag);
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(size > 300_000_000, "archive is {size} bytes");
    let root = d.root();

    for point in [KillPoint::Ingesting, KillPoint::SecondBlob, KillPoint::Unpacking] {
        let mut client = start_load(&d, &archive);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reached(&root, point) {
                break;
            }
            if let Some(status) = client.try_wait().unwrap() {
                let mut err = String::new();
                client.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("{point:?}: the load ended ({status}) before the kill point was reached: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "{point:?} never reached; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        d.kill9();
        let _ = client.kill();
        let status = client.wait().unwrap();
        assert!(
            !status.success(),
            "{point:?}: the client reported success although the daemon was killed"
        );

        d.spawn();
        let list = images(&d);
        assert_eq!(
            list,
            serde_json::json!([]),
            "{point:?}: an image survived the crash"
        );
        let (status, _) = d.api("GET", &format!("/v1.50/images/{id}/json"), b"");
        assert_eq!(status, 404, "{point:?}");
        assert_eq!(
            entries(&root.join("content/ingest")),
            Vec::<String>::new(),
            "{point:?}: ingest leftovers"
        );
        assert_eq!(
            entries(&root.join("layers")),
            Vec::<String>::new(),
            "{point:?}: layer leftovers"
        );
        assert_eq!(
            entries(&root.join("content/blobs/sha256")),
            Vec::<String>::new(),
            "{point:?}: blobs of an image that was never recorded"
        );
    }

    // The same archive loads completely afterwards.
    let out = d.berth(&["load", "-i", archive.to_str().unwrap()]);
    assert_success(&out, "berth load after the crashes");
    assert!(
        stdout(&out).contains("Loaded image: big:crash"),
        "{}",
        stdout(&out)
    );
    let list = images(&d);
    let listed = list.as_array().unwrap().iter().any(|i| {
        i["Id"].as_str() == Some(id.as_str())
            && i["RepoTags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == tag))
    });
    assert!(listed, "{list}");
    let (status, v) = d.api_json("GET", "/v1.50/images/big:crash/json", b"");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(entries(&root.join("content/ingest")), Vec::<String>::new());
    assert_eq!(staging_layers(&root), 0);
    // One directory per layer.
    assert_eq!(
        entries(&root.join("layers")).len(),
        2,
        "{:?}",
        entries(&root.join("layers"))
    );
    // And it survives a clean restart.
    d.restart();
    let (status, v) = d.api_json("GET", "/v1.50/images/big:crash/json", b"");
    assert_eq!((status, v["Id"].as_str()), (200, Some(id.as_str())), "{v}");
    // Big files go with `work` and the daemon's directory.
    assert_success(&d.berth(&["rmi", tag]), "berth rmi");
}

#[test]
fn second_daemon_on_the_same_root_is_refused() {
    let d = Daemon::start();
    let id = d.import_busybox();
    // Exactly the first daemon's command line: same root, same exec root, same socket.
    let out = Command::new(bin("berthd"))
        .arg("--root")
        .arg(d.root())
        .arg("--exec-root")
        .arg(d.dir.path().join("run"))
        .arg("--host")
        .arg(d.host())
        .arg("--config-file")
        .arg(d.dir.path().join("daemon.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a second berthd");
    let started = Instant::now();
    let out = {
        let mut child = out;
        loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!("the second berthd kept running; stderr: {}", stderr(&o));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_failure(&out, "second berthd on the same root");
    let err = stderr(&out);
    assert!(
        err.contains("lock"),
        "the refusal does not mention the lock: {err}"
    );
    assert!(
        err.contains(d.root().to_str().unwrap()),
        "the refusal does not name the root: {err}"
    );

    // The first one is untouched and still answers, on the same socket.
    assert!(d.socket().exists());
    let (status, _) = d.api("GET", "/_ping", b"");
    assert_eq!(status, 200);
    let (status, v) = d.api_json("GET", "/v1.50/images/busybox:latest/json", b"");
    assert_eq!((status, v["Id"].as_str()), (200, Some(id.as_str())), "{v}");
    let out = d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_success(&out, "berth images");
    assert!(stdout(&out).contains("busybox:latest"), "{}", stdout(&out));
    assert!(
        d.dir.path().join("run/berthd.pid").exists(),
        "the second daemon removed the first one's pid file"
    );
}
