//! Hostile `docker load` input: archives whose layer tars (or the archive itself) try to escape the
//! layer directory, lie about digests, or are broken. Each load goes through the HTTP API of a real
//! berthd; afterwards nothing may exist outside the store, a failed load must leave the store as it
//! was, and the store must keep working.

use berth_tests::*;
use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tar::{EntryType, Header};

const LOAD: &str = "/v1.50/images/load";
const EVIL: &str = "evil:latest";

/// A layer tar written header by header, so that names the `tar` crate's builder refuses (`..`,
/// absolute paths, links anywhere) can be written.
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> RawTar {
        RawTar(Vec::new())
    }

    fn entry(
        mut self,
        name: &str,
        kind: EntryType,
        link: &str,
        data: &[u8],
        edit: impl FnOnce(&mut Header),
    ) -> Self {
        assert!(
            name.len() <= 100 && link.len() <= 100,
            "names must fit the ustar fields"
        );
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        edit(&mut h);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, EntryType::Regular, "", data, |_| {})
    }

    fn dir(self, name: &str) -> Self {
        self.entry(name, EntryType::Directory, "", b"", |h| h.set_mode(0o755))
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Symlink, "", b"", |_| {})
            .relink(target)
    }

    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, "", b"", |_| {}).relink(target)
    }

    /// Sets the link name of the last entry (kept apart so `entry` stays simple to call).
    fn relink(mut self, target: &str) -> Self {
        let at = self.0.len() - 512;
        let mut h = Header::from_byte_slice(&self.0[at..]).clone();
        h.as_old_mut().linkname = [0; 100];
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.0[at..].copy_from_slice(h.as_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

/// What the store holds, on disk and through the API.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    images: serde_json::Value,
    blobs: BTreeSet<String>,
    layers: BTreeSet<String>,
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    }
}

fn snapshot(d: &Daemon) -> Snapshot {
    let (status, images) = d.api_json("GET", "/v1.50/images/json?all=1", b"");
    assert_eq!(status, 200, "{images}");
    Snapshot {
        images,
        blobs: names_in(&d.root().join("content/blobs/sha256")),
        layers: names_in(&d.root().join("layers")),
    }
}

fn repo_tags(d: &Daemon) -> Vec<String> {
    let (status, images) = d.api_json("GET", "/v1.50/images/json?all=1", b"");
    assert_eq!(status, 200, "{images}");
    images
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["RepoTags"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// Every path under `dir`, not following symlinks.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// A directory outside the store that a hostile symlink points at; it must stay empty.
fn sentinel() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-sentinel-")
        .tempdir_in("/tmp")
        .unwrap()
}

/// Nothing written by the hostile layer exists anywhere: not in /etc, not in the sentinel, not
/// anywhere under the daemon's directory (outside or inside the store: a failed load keeps
/// nothing).
#[track_caller]
fn assert_nothing_escaped(d: &Daemon, sentinel: Option<&Path>) {
    let pwned: Vec<String> = names_in(Path::new("/etc"))
        .into_iter()
        .filter(|n| n.starts_with("berth-pwned"))
        .collect();
    assert!(pwned.is_empty(), "written to the host's /etc: {pwned:?}");
    if let Some(s) = sentinel {
        assert_eq!(
            walk(s),
            Vec::<PathBuf>::new(),
            "written into the sentinel directory {}",
            s.display()
        );
    }
    let found: Vec<PathBuf> = walk(d.dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("berth-pwned")
        })
        .collect();
    assert!(found.is_empty(), "hostile entries were written: {found:?}");
}

/// The store keeps working: a busybox import succeeds and is listed.
#[track_caller]
fn assert_store_works(d: &Daemon) {
    let id = d.import_busybox();
    let (status, images) = d.api_json("GET", "/v1.50/images/json", b"");
    assert_eq!(status, 200);
    let listed = images.as_array().unwrap().iter().any(|i| {
        i["Id"].as_str() == Some(id.as_str())
            && i["RepoTags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "busybox:latest"))
    });
    assert!(listed, "busybox ({id}) is not listed after import: {images}");
    let out = d.berth(&["image", "inspect", "busybox"]);
    assert_success(&out, "berth image inspect busybox");
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = inspect[0]["RootFS"]["Layers"][0].as_str().unwrap();
    let fs = d
        .root()
        .join("layers")
        .join(top.trim_start_matches("sha256:"))
        .join("fs");
    assert!(
        fs.join("bin/busybox").is_file(),
        "{} has no bin/busybox",
        fs.display()
    );
}

/// Loads `archive`, expects 400 with a message containing every one of `needles`, and checks that
/// the store did not change, that the temporary places of the store are empty, and that nothing
/// escaped. Returns the message.
#[track_caller]
fn assert_refused(d: &Daemon, archive: &[u8], needles: &[&str], sentinel: Option<&Path>) -> String {
    let before = snapshot(d);
    let (status, body) = d.api("POST", LOAD, archive);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 400, "load answered {status}: {text}");
    let v: serde_json::Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    let message = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {v}"))
        .to_string();
    for n in needles {
        assert!(message.contains(n), "message {message:?} does not mention {n:?}");
    }
    assert!(
        !repo_tags(d).iter().any(|t| t == EVIL),
        "{EVIL} is listed after a failed load"
    );
    assert_eq!(snapshot(d), before, "a failed load changed the store");
    assert_eq!(
        names_in(&d.root().join("content/ingest")),
        BTreeSet::new(),
        "leftovers in content/ingest"
    );
    assert_nothing_escaped(d, sentinel);
    message
}

fn unique(name: &str) -> String {
    format!("berth-pwned-{}-{name}", std::process::id())
}

#[test]
fn dot_dot_path_is_refused() {
    let d = Daemon::start();
    let name = format!("../{}", unique("dotdot"));
    let layer = RawTar::new().file("ok", b"fine").file(&name, b"pwned").finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(&d, &archive, &["..", &name], None);
    // Deeper, and hidden behind a directory.
    let name = format!("a/../../../{}", unique("dotdot2"));
    let layer = RawTar::new().dir("a/").file(&name, b"pwned").finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(&d, &archive, &[".."], None);
    assert_store_works(&d);
}

#[test]
fn absolute_path_stays_inside_the_layer() {
    let d = Daemon::start();
    let name = unique("abs");
    let host = Path::new("/etc").join(&name);
    let layer = RawTar::new().file(&format!("/etc/{name}"), b"contained").finish();
    let (archive, id) = docker_archive(&layer, EVIL);
    let (status, body) = d.api("POST", LOAD, &archive);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        !host.exists(),
        "an absolute layer path was written to the host: {}",
        host.display()
    );
    match status {
        200 => {
            assert!(text.contains("Loaded image: evil:latest"), "{text}");
            let hits: Vec<PathBuf> = walk(d.dir.path())
                .into_iter()
                .filter(|p| p.file_name().unwrap() == name.as_str())
                .collect();
            assert_eq!(hits.len(), 1, "{hits:?}");
            let fs = d.root().join("layers").join(layer_chain(&layer)).join("fs");
            assert_eq!(hits[0], fs.join("etc").join(&name));
            assert_eq!(std::fs::read(&hits[0]).unwrap(), b"contained");
            assert!(repo_tags(&d).iter().any(|t| t == EVIL));
            let (status, v) = d.api_json("GET", "/v1.50/images/evil:latest/json", b"");
            assert_eq!((status, v["Id"].as_str()), (200, Some(id.as_str())));
        }
        400 => {
            assert!(!repo_tags(&d).iter().any(|t| t == EVIL));
            assert_nothing_escaped(&d, None);
        }
        s => panic!("load answered {s}: {text}"),
    }
    assert_store_works(&d);
    assert!(!host.exists());
}

/// The chain ID (directory name under `layers/`) of a single-layer image: its diff ID.
fn layer_chain(layer: &[u8]) -> String {
    sha256_hex(layer)
}

#[test]
fn write_through_symlink_to_outside_is_refused() {
    let d = Daemon::start();
    let s = sentinel();
    let name = unique("symlink");
    let layer = RawTar::new()
        .symlink("evil", s.path().to_str().unwrap())
        .file(&format!("evil/{name}"), b"pwned")
        .finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(&d, &archive, &["symlink", "evil"], Some(s.path()));
    // Through a symlinked directory deeper down, and via a directory entry.
    let layer = RawTar::new()
        .dir("usr/")
        .symlink("usr/lib", s.path().to_str().unwrap())
        .dir(&format!("usr/lib/{name}/"))
        .finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(&d, &archive, &["symlink"], Some(s.path()));
    assert_store_works(&d);
    assert_eq!(walk(s.path()), Vec::<PathBuf>::new());
}

#[test]
fn write_through_symlink_to_parent_is_refused() {
    let d = Daemon::start();
    let name = unique("up");
    let layer = RawTar::new()
        .symlink("up", "..")
        .file(&format!("up/up/{name}"), b"pwned")
        .finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(&d, &archive, &["symlink", "up"], None);
    assert_store_works(&d);
}

#[test]
fn hardlink_to_absolute_host_file_is_refused() {
    let d = Daemon::start();
    let nlink = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let layer = RawTar::new()
        .file("ok", b"fine")
        .hardlink("h", "/etc/passwd")
        .finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(
        &d,
        &archive,
        &["hard link", "/etc/passwd", "does not exist in the layer"],
        None,
    );
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        nlink,
        "/etc/passwd gained a link"
    );
    assert_store_works(&d);
}

#[test]
fn hardlink_with_dot_dot_target_is_refused() {
    let d = Daemon::start();
    let nlink = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let layer = RawTar::new()
        .file("ok", b"fine")
        .hardlink("h", "../../../../etc/passwd")
        .finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    assert_refused(&d, &archive, &["hard link", "../../../../etc/passwd", ".."], None);
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        nlink,
        "/etc/passwd gained a link"
    );
    assert_store_works(&d);
}

#[test]
fn device_node_is_created_inside_the_layer_only() {
    let d = Daemon::start();
    let layer = RawTar::new()
        .dir("dev/")
        .entry("dev/null2", EntryType::Char, "", b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_mode(0o666);
        })
        .finish();
    let (archive, id) = docker_archive(&layer, EVIL);
    let (status, body) = d.api("POST", LOAD, &archive);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Loaded image: evil:latest"), "{text}");
    assert!(
        !Path::new("/dev/null2").exists(),
        "/dev/null2 was created on the host"
    );

    let expected = d
        .root()
        .join("layers")
        .join(layer_chain(&layer))
        .join("fs/dev/null2");
    let hits: Vec<PathBuf> = walk(d.dir.path())
        .into_iter()
        .filter(|p| p.file_name().unwrap() == "null2")
        .collect();
    assert_eq!(
        hits,
        vec![expected.clone()],
        "dev/null2 must exist once, inside the layer directory"
    );
    let m = std::fs::symlink_metadata(&expected).unwrap();
    assert!(m.file_type().is_char_device(), "{m:?}");
    assert_eq!((libc::major(m.rdev()), libc::minor(m.rdev())), (1, 3));
    assert_eq!(m.mode() & 0o7777, 0o666);

    let (status, v) = d.api_json("GET", "/v1.50/images/evil:latest/json", b"");
    assert_eq!((status, v["Id"].as_str()), (200, Some(id.as_str())), "{v}");
    assert_store_works(&d);
}

#[test]
fn blob_not_matching_its_digest_name_is_refused() {
    let d = Daemon::start();
    let layer = RawTar::new()
        .file("payload", b"the real bytes of this layer")
        .finish();
    let claimed = sha256_hex(b"some other data entirely");
    let diff_id = sha256_hex(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    }))
    .unwrap();
    let config_hex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": [EVIL],
        "Layers": [format!("blobs/sha256/{claimed}")],
    }]))
    .unwrap();
    let archive = tar_of(&[
        (&format!("blobs/sha256/{config_hex}"), &config),
        (&format!("blobs/sha256/{claimed}"), &layer),
        ("manifest.json", &manifest),
    ]);
    let message = assert_refused(&d, &archive, &["digest", &claimed], None);
    assert!(
        message.contains(&diff_id),
        "{message:?} does not say what the blob really is"
    );
    let blobs = d.root().join("content/blobs/sha256");
    assert!(!blobs.join(&claimed).exists());
    assert!(!blobs.join(&diff_id).exists());
    for p in walk(&d.root().join("content")) {
        if p.is_file() {
            assert_ne!(
                std::fs::read(&p).unwrap(),
                layer,
                "{} holds the refused blob",
                p.display()
            );
        }
    }
    assert_store_works(&d);
}

#[test]
fn truncated_archive_is_refused_and_changes_nothing() {
    let d = Daemon::start();
    // A store that already has something in it, to see that a failed load leaves it alone.
    d.import_busybox();
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let layer = RawTar::new().file("big", &data).file("small", b"s").finish();
    let (archive, _) = docker_archive(&layer, EVIL);
    // Where each entry's data starts, and its size.
    let mut spans = std::collections::HashMap::new();
    for e in tar::Archive::new(&archive[..]).entries().unwrap() {
        let e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        spans.insert(name, (e.raw_file_position() as usize, e.size() as usize));
    }
    let mid = |name: &str| {
        let (start, size) = spans[name];
        start + size / 2
    };
    let layer_name = format!("blobs/sha256/{}", sha256_hex(&layer));
    let config_name = spans
        .keys()
        .find(|k| **k != layer_name && k.starts_with("blobs/"))
        .unwrap()
        .clone();
    let cuts = [
        // In the middle of the layer data.
        mid(&layer_name),
        // Inside the layer's header.
        100,
        // Right after the layer's header.
        spans[&layer_name].0 + 1,
        // In the config (the layer is complete by then).
        mid(&config_name),
        // In manifest.json.
        mid("manifest.json"),
    ];
    for cut in cuts {
        assert!(cut < archive.len() - 1024, "cut {cut} of {}", archive.len());
        let before = snapshot(&d);
        assert_refused(&d, &archive[..cut], &[], None);
        assert_eq!(snapshot(&d), before, "cut at {cut}");
    }
    assert_store_works(&d);
}

#[test]
fn garbage_is_refused() {
    let d = Daemon::start();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert_refused(&d, &garbage, &["invalid archive"], None);
    // Gzip magic followed by garbage, and a few bytes only.
    let mut gz = vec![0x1f, 0x8b, 0x08, 0x00];
    gz.extend_from_slice(&garbage[..1000]);
    assert_refused(&d, &gz, &["invalid archive"], None);
    assert_refused(&d, b"hello", &["invalid archive"], None);
    // A well-formed tar that is not an image archive.
    assert_refused(
        &d,
        &tar_of(&[("hello.txt", b"hi")]),
        &["manifest.json", "index.json"],
        None,
    );
    assert_store_works(&d);
}

#[test]
fn manifest_with_missing_layer_is_refused() {
    let d = Daemon::start();
    let layer = RawTar::new().file("f", b"x").finish();
    let missing = sha256_hex(b"a layer that is not in the archive");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer)), format!("sha256:{missing}")]},
    }))
    .unwrap();
    let config_hex = sha256_hex(&config);
    let layer_hex = sha256_hex(&layer);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": [EVIL],
        "Layers": [format!("blobs/sha256/{layer_hex}"), format!("blobs/sha256/{missing}")],
    }]))
    .unwrap();
    let archive = tar_of(&[
        (&format!("blobs/sha256/{layer_hex}"), &layer),
        (&format!("blobs/sha256/{config_hex}"), &config),
        ("manifest.json", &manifest),
    ]);
    assert_refused(&d, &archive, &["missing", &missing], None);
    // The config missing instead.
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{missing}"),
        "RepoTags": [EVIL],
        "Layers": [format!("blobs/sha256/{layer_hex}")],
    }]))
    .unwrap();
    let archive = tar_of(&[
        (&format!("blobs/sha256/{layer_hex}"), &layer),
        ("manifest.json", &manifest),
    ]);
    assert_refused(&d, &archive, &["missing", &missing], None);
    assert_store_works(&d);
}

/// The legacy docker-archive layout (`<id>.json`, `<dir>/layer.tar`), whose config is kept in
/// memory and only written to the content store when the manifest is resolved.
#[test]
fn legacy_archive_with_hostile_layer_is_refused() {
    let d = Daemon::start();
    let s = sentinel();
    let layer = RawTar::new()
        .symlink("evil", s.path().to_str().unwrap())
        .file(&format!("evil/{}", unique("legacy")), b"pwned")
        .finish();
    let diff_id = sha256_hex(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    }))
    .unwrap();
    let config_hex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [EVIL],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]))
    .unwrap();
    let archive = tar_of(&[
        (&format!("{diff_id}/layer.tar"), &layer),
        (&format!("{config_hex}.json"), &config),
        ("manifest.json", &manifest),
    ]);
    assert_refused(&d, &archive, &["symlink", "evil"], Some(s.path()));
    assert_store_works(&d);
}
