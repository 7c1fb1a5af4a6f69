//! The product's promise end to end, through the stock docker CLI: build a small web app image,
//! run it with a published port and fetch its page, change a file inside the running container,
//! commit it, save it, load it into a second berthd root, and run it there: the change is there.

use berth_tests::{assert_success, stdout, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[track_caller]
fn docker_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.docker(args);
    assert_success(&out, &format!("docker {}", args.join(" ")));
    stdout(&out)
}

/// The body of `GET /` from the container's published port 80, retried while httpd starts.
fn fetch(d: &Daemon, container: &str) -> String {
    let addr = docker_ok(d, &["port", container, "80"]);
    let addr = addr.lines().next().expect("a published port").trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(&addr)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut raw = String::new();
            s.read_to_string(&mut raw)?;
            Ok(raw)
        })();
        match attempt {
            Ok(raw) if raw.starts_with("HTTP/1.") => {
                assert!(raw.contains(" 200 "), "{raw}");
                return raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            }
            other if Instant::now() > deadline => panic!("GET {addr}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn build_run_change_commit_save_load_run_elsewhere() {
    let a = Daemon::start();
    a.import_busybox();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("index.html"), "hello v1\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nWORKDIR /www\nCOPY index.html /www/index.html\nEXPOSE 80\nCMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    let out = docker_ok(&a, &["build", "-t", "webapp:1", ctx.path().to_str().unwrap()]);
    assert!(out.contains("Successfully tagged webapp:1"), "{out}");

    docker_ok(
        &a,
        &["run", "-d", "--name", "web", "-p", "127.0.0.1::80", "webapp:1"],
    );
    assert_eq!(fetch(&a, "web"), "hello v1\n");
    docker_ok(
        &a,
        &["exec", "web", "sh", "-c", "echo hello v2 > /www/index.html"],
    );
    assert_eq!(fetch(&a, "web"), "hello v2\n");
    let id = docker_ok(&a, &["commit", "-m", "v2 page", "web", "webapp:2"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let archive = a.dir.path().join("webapp2.tar");
    docker_ok(&a, &["save", "-o", archive.to_str().unwrap(), "webapp:2"]);

    // A second machine, as far as Berth can tell: another root, another bridge.
    let b = Daemon::start();
    let out = docker_ok(&b, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: webapp:2"), "{out}");
    let image_id = |d: &Daemon| docker_ok(d, &["image", "inspect", "-f", "{{.Id}}", "webapp:2"]);
    assert_eq!(image_id(&a), image_id(&b), "the same image on both roots");
    docker_ok(
        &b,
        &["run", "-d", "--name", "web2", "-p", "127.0.0.1::80", "webapp:2"],
    );
    assert_eq!(fetch(&b, "web2"), "hello v2\n");
    let out = docker_ok(&b, &["history", "--format", "{{.Comment}}", "webapp:2"]);
    assert!(out.lines().any(|l| l == "v2 page"), "{out}");
    docker_ok(&a, &["rm", "-f", "web"]);
    docker_ok(&b, &["rm", "-f", "web2"]);
}
