//! berthd itself: the ping contract, version negotiation, Docker's error shape, configuration,
//! clean shutdown, and state that survives a restart.

use berth_tests::{assert_success, stdout, Daemon};
use std::io::{Read, Write};

fn raw(d: &Daemon, request: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn ping_answers_with_docker_headers() {
    let d = Daemon::start();
    for method in ["GET", "HEAD"] {
        let resp = raw(
            &d,
            &format!("{method} /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        let lower = resp.to_ascii_lowercase();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(lower.contains("\r\napi-version: 1.50\r\n"), "{resp}");
        assert!(lower.contains("\r\nostype: linux\r\n"), "{resp}");
        assert!(lower.contains("\r\ndocker-experimental: false\r\n"), "{resp}");
        assert_eq!(resp.ends_with("\r\n\r\nOK"), method == "GET", "{resp}");
    }
}

#[test]
fn versioned_paths_and_negotiation() {
    let d = Daemon::start();
    for path in ["/version", "/v1.24/version", "/v1.41/version", "/v1.50/version"] {
        let (status, v) = d.api_json("GET", path, b"");
        assert_eq!(status, 200, "{path}");
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.24");
    }
    let (status, v) = d.api_json("GET", "/v1.51/version", b"");
    assert_eq!(status, 400);
    assert_eq!(
        v["message"],
        "client version 1.51 is too new. Maximum supported API version is 1.50"
    );
    let (status, v) = d.api_json("GET", "/v1.12/info", b"");
    assert_eq!(status, 400);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("client version 1.12 is too old"));
    // VirtualSize is only in answers to clients older than 1.44, as Docker does.
    d.import_busybox();
    let (_, old) = d.api_json("GET", "/v1.41/images/json", b"");
    let (_, new) = d.api_json("GET", "/v1.50/images/json", b"");
    assert!(old[0].get("VirtualSize").is_some());
    assert!(new[0].get("VirtualSize").is_none());
}

#[test]
fn errors_have_dockers_shape_and_status() {
    let d = Daemon::start();
    let (status, v) = d.api_json("GET", "/v1.50/no/such/endpoint", b"");
    assert_eq!((status, v["message"].as_str().unwrap()), (404, "page not found"));
    let (status, v) = d.api_json("GET", "/v1.50/images/nosuch/json", b"");
    assert_eq!(
        (status, v["message"].as_str().unwrap()),
        (404, "No such image: nosuch:latest")
    );
    let (status, v) = d.api_json("GET", "/v1.50/images/json?filters=%7Bbad", b"");
    assert_eq!(status, 400, "{v}");
    let (status, v) = d.api_json(
        "GET",
        "/v1.50/images/json?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D",
        b"",
    );
    assert_eq!(
        (status, v["message"].as_str().unwrap()),
        (400, "invalid filter 'colour'")
    );
    let (status, v) = d.api_json("POST", "/v1.50/images/busybox/tag?repo=good/name", b"");
    assert_eq!(
        (status, v["message"].as_str().unwrap()),
        (404, "No such image: busybox:latest")
    );
    d.import_busybox();
    let (status, v) = d.api_json("POST", "/v1.50/images/busybox/tag?repo=Upper/Case", b"");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("must be lowercase"),
        "{v}"
    );
    assert_success(&d.berth(&["tag", "busybox", "second:1"]), "tag");
    let id = stdout(&d.berth(&["images", "-q"])).trim().to_string();
    let (status, v) = d.api_json("DELETE", &format!("/v1.50/images/{id}"), b"");
    assert_eq!(status, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("must be forced"), "{v}");
}

#[test]
fn images_survive_a_restart_and_sigterm_cleans_up() {
    let mut d = Daemon::start();
    let id = d.import_busybox();
    let status = d.stop();
    assert!(status.success(), "berthd exits 0 on SIGTERM, got {status}");
    assert!(!d.socket().exists(), "socket removed on shutdown");
    assert!(
        !d.dir.path().join("run/berthd.pid").exists(),
        "pid file removed on shutdown"
    );
    d.spawn();
    let out = d.berth(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(stdout(&out).trim(), format!("{id} busybox:latest"));
    let engine_id = |d: &Daemon| {
        d.api_json("GET", "/info", b"").1["ID"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = engine_id(&d);
    d.restart();
    assert_eq!(engine_id(&d), first, "the engine ID is stable across restarts");
}

#[test]
fn daemon_json_is_read_and_unknown_keys_refused() {
    let d = Daemon::start();
    let cfg = d.dir.path().join("other.json");
    std::fs::write(
        &cfg,
        r#"{"labels": ["site=test"], "insecure-registries": ["myreg:5000"], "debug": true}"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let mut child = std::process::Command::new(berth_tests::bin("berthd"))
        .args(["--root", dir.path().join("root").to_str().unwrap()])
        .args(["--exec-root", dir.path().join("run").to_str().unwrap()])
        .args(["-H", &format!("unix://{}", sock.display())])
        .args(["--config-file", cfg.to_str().unwrap()])
        // No bridge: this daemon is killed, and a bridge would outlive it on the host.
        .args(["--bridge", "none"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = std::process::Command::new(berth_tests::bin("berth"))
        .args([
            "-H",
            &format!("unix://{}", sock.display()),
            "info",
            "--format",
            "{{json .Labels}} {{.Debug}} {{json .RegistryConfig.InsecureRegistryCIDRs}}",
        ])
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_success(&out, "info");
    assert_eq!(
        stdout(&out).trim(),
        r#"["site=test"] true ["127.0.0.0/8","myreg:5000"]"#
    );

    std::fs::write(&cfg, r#"{"no-such-key": 1}"#).unwrap();
    let out = std::process::Command::new(berth_tests::bin("berthd"))
        .args(["--root", dir.path().join("root2").to_str().unwrap()])
        .args(["--config-file", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every endpoint that takes a tar body reads it to its end before answering. A tar reader stops
/// at the first end-of-archive block; a client that makes its upload on the fly (the docker CLI's
/// `cp`) may still be writing the rest, and used to get "broken pipe" instead of the answer when
/// the daemon closed the connection first.
#[test]
fn uploads_are_read_to_their_end_before_the_answer() {
    let d = Daemon::with_busybox();
    assert_success(
        &d.docker(&["create", "--name", "box", "busybox", "true"]),
        "create",
    );
    let file = berth_tests::tar_of(&[("a.txt", b"uploaded\n")]);
    // The last 512 bytes: the second end-of-archive block, sent 300 ms after the rest.
    let send = |method: &str, path: &str, body: &[u8]| {
        d.try_api_slow_tail(method, path, body, 512)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };

    let (status, body) = send("PUT", "/v1.50/containers/box/archive?path=/tmp", &file);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let out = d.docker(&["cp", "box:/tmp/a.txt", "-"]);
    assert_success(&out, "cp out");
    assert!(String::from_utf8_lossy(&out.stdout).contains("uploaded\n"));
    // An error answer too: Docker's JSON, not a closed connection.
    let (status, body) = send("PUT", "/v1.50/containers/box/archive?path=/no/such", &file);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("\"message\""));

    let (archive, id) = berth_tests::docker_archive(&file, "loaded:latest");
    let (status, body) = send("POST", "/v1.50/images/load?quiet=1", &archive);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Loaded image: loaded:latest"));
    assert_eq!(
        stdout(&d.docker(&["inspect", "-f", "{{.Id}}", "loaded"])).trim(),
        id
    );

    let (status, body) = send(
        "POST",
        "/v1.50/images/create?fromSrc=-&repo=imported&tag=t",
        &file,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_success(&d.docker(&["image", "inspect", "imported:t"]), "imported image");

    let context = berth_tests::tar_of(&[
        ("Dockerfile", b"FROM busybox\nCOPY a.txt /a.txt\n"),
        ("a.txt", b"built\n"),
    ]);
    let (status, body) = send("POST", "/v1.50/build?t=built", &context);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("Successfully tagged built:latest"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let out = d.docker(&["run", "--rm", "--network", "none", "built", "cat", "/a.txt"]);
    assert_eq!(stdout(&out), "built\n");
}
