//! Archives Berth writes are read by independent tools (skopeo), and archives they write (skopeo's
//! and umoci's OCI layouts) are loaded by Berth.

use berth_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tool must be installed (`.ci/run` installs it); a missing tool is a failure, not a skip.
/// skopeo keeps one blob-info cache for the whole machine (/var/lib/containers/cache); the tests
/// that run it take turns.
static SKOPEO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("which").arg(name).output().expect("running which");
    assert!(
        out.status.success(),
        "`{name}` is not installed: the interop tests need it (apt-get install {name}; .ci/run installs it)"
    );
    PathBuf::from(stdout(&out).trim())
}

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(require_tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert_success(&out, &format!("{name} {}", args.join(" ")));
    out
}

fn json_out(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// `berth image inspect NAME`, the single object.
fn inspect(d: &Daemon, name: &str) -> serde_json::Value {
    let out = d.berth(&["image", "inspect", name]);
    assert_success(&out, &format!("berth image inspect {name}"));
    json_out(&out)[0].clone()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// `tar -C dir -cf out .`
fn tar_dir(dir: &Path, out: &Path) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(
        status.success(),
        "tar -C {} -cf {} . failed",
        dir.display(),
        out.display()
    );
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest an OCI layout's index.json points at (the first one).
fn layout_manifest(layout: &Path) -> serde_json::Value {
    let index = read_json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest in index.json")
        .to_string();
    read_json(
        &layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
}

#[test]
fn berth_save_is_read_by_skopeo_and_skopeo_oci_layout_loads_back() {
    let _turn = SKOPEO.lock().unwrap_or_else(|p| p.into_inner());
    require_tool("skopeo");
    let d = Daemon::start();
    let id = d.import_busybox();
    let before = inspect(&d, "busybox");
    assert_eq!(before["Id"].as_str(), Some(id.as_str()));
    let layers = strings(&before["RootFS"]["Layers"]);
    assert_eq!(layers.len(), 1, "{before}");

    let work = tempfile::tempdir().unwrap();
    let saved = work.path().join("x.tar");
    let saved_s = saved.to_str().unwrap();
    assert_success(&d.berth(&["save", "-o", saved_s, "busybox"]), "berth save");

    let info = json_out(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{saved_s}")],
    ));
    assert_eq!(strings(&info["Layers"]), layers, "skopeo inspect: {info}");
    assert_eq!(info["Os"].as_str(), Some("linux"), "{info}");
    let config = json_out(&tool(
        "skopeo",
        &["inspect", "--config", &format!("docker-archive:{saved_s}")],
    ));
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), layers, "{config}");
    assert_eq!(strings(&config["config"]["Cmd"]), ["sh"], "{config}");
    // The same archive read as an OCI layout (Docker 25+ archives are both).
    let oci_archive = json_out(&tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{saved_s}:latest")],
    ));
    assert_eq!(strings(&oci_archive["Layers"]), layers, "{oci_archive}");

    let layout = work.path().join("layout");
    tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("docker-archive:{saved_s}"),
            &format!("oci:{}:bb", layout.display()),
        ],
    );
    let oci_tar = work.path().join("oci.tar");
    tar_dir(&layout, &oci_tar);

    // Load it into the same daemon with the original gone, so the image really comes from the
    // layout.
    assert_success(&d.berth(&["rmi", "busybox"]), "berth rmi busybox");
    assert_failure(&d.berth(&["image", "inspect", &id]), "inspect after rmi");
    let out = d.berth(&["load", "-i", oci_tar.to_str().unwrap()]);
    assert_success(&out, "berth load -i oci.tar");
    assert!(
        stdout(&out).contains(&id),
        "load output does not name {id}: {}",
        stdout(&out)
    );
    let after = inspect(&d, &id);
    assert_eq!(after["Id"].as_str(), Some(id.as_str()));
    assert_eq!(strings(&after["RootFS"]["Layers"]), layers);
    let fs = d
        .root()
        .join("layers")
        .join(layers[0].trim_start_matches("sha256:"))
        .join("fs");
    assert!(
        fs.join("bin/busybox").is_file(),
        "{} has no bin/busybox",
        fs.display()
    );
}

#[test]
fn umoci_layout_loads() {
    require_tool("umoci");
    let d = Daemon::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("L");
    let bundle = work.path().join("bundle");
    let image = format!("{}:t", layout.display());
    tool("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    tool("umoci", &["new", "--image", &image]);
    tool("umoci", &["unpack", "--image", &image, bundle.to_str().unwrap()]);
    let status = Command::new("tar")
        .arg("-C")
        .arg(bundle.join("rootfs"))
        .arg("-xf")
        .arg(busybox_rootfs())
        .status()
        .expect("running tar");
    assert!(status.success(), "extracting the busybox rootfs into the bundle");
    tool("umoci", &["repack", "--image", &image, bundle.to_str().unwrap()]);
    tool("umoci", &["config", "--image", &image, "--config.cmd", "sh"]);

    let manifest = layout_manifest(&layout);
    let umoci_layers = manifest["layers"]
        .as_array()
        .expect("layers in the umoci manifest")
        .len();
    assert!(umoci_layers >= 1, "{manifest}");
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();

    let layout_tar = work.path().join("umoci.tar");
    tar_dir(&layout, &layout_tar);
    let out = d.berth(&["load", "-i", layout_tar.to_str().unwrap()]);
    assert_success(&out, "berth load -i umoci.tar");
    assert!(stdout(&out).contains(&config_digest), "{}", stdout(&out));

    let out = d.berth(&["images", "-a", "--format", "{{.ID}}"]);
    assert_success(&out, "berth images -a");
    let short = &config_digest.trim_start_matches("sha256:")[..12];
    assert!(
        stdout(&out).lines().any(|l| l.trim() == short),
        "{short} not in:\n{}",
        stdout(&out)
    );

    let img = inspect(&d, &config_digest);
    assert_eq!(img["Id"].as_str(), Some(config_digest.as_str()));
    let layers = strings(&img["RootFS"]["Layers"]);
    assert_eq!(layers.len(), umoci_layers, "{img}");
    assert_eq!(strings(&img["Config"]["Cmd"]), ["sh"], "{img}");

    // The busybox layer is unpacked: the top layer's directory (chain ID) holds bin/busybox.
    let found = std::fs::read_dir(d.root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path().join("fs/bin/busybox"))
        .filter(|p| p.is_file())
        .count();
    assert_eq!(found, 1, "exactly one layer directory should hold bin/busybox");
    let first = d
        .root()
        .join("layers")
        .join(layers[0].trim_start_matches("sha256:"))
        .join("fs");
    if umoci_layers == 1 {
        assert!(
            first.join("bin/busybox").is_file(),
            "{} has no bin/busybox",
            first.display()
        );
    }
    // Saved again by berth, it is a valid docker-archive for skopeo too.
    let saved = work.path().join("resaved.tar");
    assert_success(
        &d.berth(&["save", "-o", saved.to_str().unwrap(), &config_digest]),
        "berth save",
    );
    require_tool("skopeo");
    let info = json_out(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", saved.display())],
    ));
    assert_eq!(strings(&info["Layers"]), layers, "{info}");
}

#[test]
fn docker_cli_save_is_read_by_skopeo() {
    let _turn = SKOPEO.lock().unwrap_or_else(|p| p.into_inner());
    require_tool("skopeo");
    require_tool("docker");
    let d = Daemon::start();
    let id = d.import_busybox();
    let layers = strings(&inspect(&d, "busybox")["RootFS"]["Layers"]);
    let work = tempfile::tempdir().unwrap();
    let saved = work.path().join("docker.tar");
    let out = d.docker(&["save", "-o", saved.to_str().unwrap(), "busybox:latest"]);
    assert_success(&out, "docker save");
    let info = json_out(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", saved.display())],
    ));
    assert_eq!(strings(&info["Layers"]), layers, "{info}");
    let config = json_out(&tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("docker-archive:{}", saved.display()),
        ],
    ));
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), layers);
    // The image ID is the config digest; skopeo sees the same config.
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--config",
            &format!("docker-archive:{}", saved.display()),
        ],
    );
    assert_eq!(format!("sha256:{}", sha256_hex(&raw.stdout)), id);
    // docker load reads it back into berth.
    assert_success(&d.docker(&["rmi", "busybox:latest"]), "docker rmi");
    let out = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert_success(&out, "docker load");
    assert!(
        stdout(&out).contains("Loaded image: busybox:latest"),
        "{}",
        stdout(&out)
    );
    assert_eq!(inspect(&d, "busybox")["Id"].as_str(), Some(id.as_str()));
}
