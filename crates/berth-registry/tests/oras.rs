//! Interoperability with the ORAS Python client (PyPI `oras`): push an artifact of two files with
//! custom media types, monolithically and in chunks, and pull it back.
//!
//! The client runs in a Python subprocess. The interpreter is `$BERTH_TEST_PYTHON`, else the venv
//! scripts/install-deps.sh makes (/opt/berth-test-venv), else `python3`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const VENV_PYTHON: &str = "/opt/berth-test-venv/bin/python3";
const ARTIFACT_TYPE: &str = "application/vnd.berth.test.artifact.v1+json";
const GREETING_TYPE: &str = "application/vnd.berth.test.greeting.v1+text";
const DATA_TYPE: &str = "application/vnd.berth.test.data.v1";

/// Pushes `hello.txt` and `data.bin` from the source dir as `:v1` (monolithic uploads) and `:chunked`
/// (PATCH uploads of 64 KiB), then pulls each tag into its own directory and prints what it pulled.
const CLIENT_SCRIPT: &str = r#"
import json, os, sys
import oras.client

registry, source, pulled = sys.argv[1:]
os.chdir(source)
client = oras.client.OrasClient(hostname=registry, insecure=True)
files = ["hello.txt:" + os.environ["GREETING_TYPE"], "data.bin:" + os.environ["DATA_TYPE"]]
config = "config.json:" + os.environ["ARTIFACT_TYPE"]
for tag, chunked in [("v1", False), ("chunked", True)]:
    response = client.push(
        target=f"{registry}/artifacts/hello:{tag}",
        files=files,
        manifest_config=config,
        manifest_annotations={"org.berth.test.kind": "greeting"},
        do_chunked=chunked,
        chunk_size=64 * 1024,
        quiet=True,
    )
    assert response.status_code == 201, (tag, response.status_code, response.text)
result = {}
for tag in ["v1", "chunked"]:
    outdir = os.path.join(pulled, tag)
    os.makedirs(outdir)
    paths = client.pull(target=f"{registry}/artifacts/hello:{tag}", outdir=outdir)
    result[tag] = sorted(os.path.relpath(path, outdir) for path in paths)
print(json.dumps(result))
"#;

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("BERTH_TEST_PYTHON") {
        return python.into();
    }
    if Path::new(VENV_PYTHON).exists() {
        return VENV_PYTHON.into();
    }
    "python3".into()
}

/// Fails (not skips) the test when the client is missing: CI runs scripts/install-deps.sh first.
fn require_oras(python: &Path) {
    let output = std::process::Command::new(python)
        .args(["-c", "import oras.client"])
        .output();
    let problem = match output {
        Ok(output) if output.status.success() => return,
        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
        Err(error) => error.to_string(),
    };
    panic!(
        "the ORAS Python client is not importable with {}: {problem}\n\
         run scripts/install-deps.sh (it makes {VENV_PYTHON} with `oras`), or set BERTH_TEST_PYTHON \
         to a Python that has it",
        python.display()
    );
}

/// Bytes that are not text and do not compress, so a byte mix-up cannot go unnoticed.
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_pushes_and_pulls_an_artifact() {
    let python = python();
    require_oras(&python);
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(&work.path().join("registry")).await;
    let client = client();

    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let files: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "hello.txt",
            GREETING_TYPE,
            b"hello from berth via oras\n".to_vec(),
        ),
        // Spans four 64 KiB chunks, the last one short.
        ("data.bin", DATA_TYPE, pseudo_random_bytes(200 * 1024 + 17)),
    ];
    for (name, _, bytes) in &files {
        std::fs::write(source.join(name), bytes).unwrap();
    }
    let config = br#"{"berth":"test artifact"}"#;
    std::fs::write(source.join("config.json"), config).unwrap();
    let script = work.path().join("oras_client.py");
    std::fs::write(&script, CLIENT_SCRIPT).unwrap();
    let pulled = work.path().join("pulled");

    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(server.addr.to_string())
        .arg(&source)
        .arg(&pulled)
        .env("ARTIFACT_TYPE", ARTIFACT_TYPE)
        .env("GREETING_TYPE", GREETING_TYPE)
        .env("DATA_TYPE", DATA_TYPE)
        // Keep the host's registry credentials out of the client.
        .env("DOCKER_CONFIG", work.path().join("docker-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the oras client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();

    for tag in ["v1", "chunked"] {
        assert_eq!(listed[tag], serde_json::json!(["data.bin", "hello.txt"]), "{tag}");
        for (name, _, bytes) in &files {
            let back = std::fs::read(pulled.join(tag).join(name)).unwrap();
            assert!(
                back == *bytes,
                "{tag}/{name}: pulled bytes differ from the pushed ones"
            );
        }

        let response = client
            .get(server.url(&format!("/v2/artifacts/hello/manifests/{tag}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{tag}");
        assert_eq!(response.headers()["content-type"], OCI_MANIFEST, "{tag}");
        let manifest: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{tag}");
        assert_eq!(manifest["config"]["mediaType"], ARTIFACT_TYPE, "{tag}");
        assert_eq!(manifest["config"]["digest"], digest_of(config), "{tag}");
        assert_eq!(
            manifest["annotations"]["org.berth.test.kind"], "greeting",
            "{tag}"
        );
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), files.len(), "{tag}");
        for (layer, (name, media_type, bytes)) in layers.iter().zip(&files) {
            assert_eq!(layer["mediaType"], *media_type, "{tag}/{name}");
            assert_eq!(layer["digest"], digest_of(bytes), "{tag}/{name}");
            assert_eq!(layer["size"], bytes.len(), "{tag}/{name}");
            assert_eq!(
                layer["annotations"]["org.opencontainers.image.title"], *name,
                "{tag}/{name}"
            );
            let blob = client
                .get(server.url(&format!(
                    "/v2/artifacts/hello/blobs/{}",
                    layer["digest"].as_str().unwrap()
                )))
                .send()
                .await
                .unwrap();
            assert_eq!(blob.status(), 200, "{tag}/{name}");
            assert!(
                blob.bytes().await.unwrap() == bytes[..],
                "{tag}/{name}: stored blob"
            );
        }
    }
    let tags: Value = client
        .get(server.url("/v2/artifacts/hello/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["chunked", "v1"]));
    server.stop().await;
}
