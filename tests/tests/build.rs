//! `build` (the classic builder): a real daemon, busybox as the base, through `berth build`, the
//! stock `docker build` (DOCKER_BUILDKIT=0) and raw `/build` requests.

use berth_tests::{assert_failure, assert_success, stderr, stdout, tar_of, Daemon};
use std::path::Path;

const MULTI_STAGE: &str = r#"ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
WORKDIR /src
COPY greeting.txt ./
RUN echo "$GREETING from run" > /src/generated.txt && cat greeting.txt
FROM busybox
LABEL org.example.role=test
ENV APP_HOME=/app MODE=prod
WORKDIR $APP_HOME
COPY --from=builder /src/generated.txt /src/greeting.txt ./
COPY dir/ /app/dir/
RUN echo built > /app/built.txt
USER 1234
EXPOSE 8080 53/udp
VOLUME /data
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["true"]
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/generated.txt"]
"#;

fn context(dir: &Path, dockerfile: &str) {
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.join("greeting.txt"), "hi there\n").unwrap();
    std::fs::create_dir_all(dir.join("dir/sub")).unwrap();
    std::fs::write(dir.join("dir/sub/file"), "nested\n").unwrap();
    std::fs::write(dir.join("ignored.txt"), "never sent\n").unwrap();
    std::fs::write(dir.join(".dockerignore"), "ignored.txt\n").unwrap();
}

fn image_id(d: &Daemon, name: &str) -> String {
    let (status, v) = d.api_json("GET", &format!("/images/{name}/json"), b"");
    assert_eq!(status, 200, "{v}");
    v["Id"].as_str().unwrap().to_string()
}

#[test]
fn multi_stage_build_gives_a_runnable_image_with_dockers_config() {
    let d = Daemon::start();
    d.import_busybox();
    let dir = tempfile::tempdir().unwrap();
    context(dir.path(), MULTI_STAGE);
    let out = d.berth(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "GREETING=howdy",
        dir.path().to_str().unwrap(),
    ]);
    assert_success(&out, "berth build");
    let text = stdout(&out);
    assert!(text.contains("Step 1/20 : ARG BASE=busybox"), "{text}");
    assert!(text.contains("hi there"), "RUN output streamed: {text}");
    assert!(text.contains(" ---> Running in "), "{text}");
    assert!(text.contains("Successfully tagged app:1"), "{text}");

    let out = d.berth(&["run", "--rm", "app:1"]);
    assert_success(&out, "run built image");
    assert_eq!(stdout(&out).trim(), "howdy from run");
    let out = d.berth(&[
        "run",
        "--rm",
        "app:1",
        "id -u; pwd; cat /app/dir/sub/file; echo $MODE",
    ]);
    assert_success(&out, "run built image");
    assert_eq!(stdout(&out), "1234\n/app\nnested\nprod\n");

    let (_, v) = d.api_json("GET", "/images/app:1/json", b"");
    let c = &v["Config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat /app/generated.txt"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1234");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    assert!(c["ExposedPorts"]["53/udp"].is_object(), "{c}");
    assert!(c["Volumes"]["/data"].is_object(), "{c}");
    assert_eq!(c["Labels"]["org.example.role"], "test");
    assert!(c["Env"].to_string().contains("APP_HOME=/app"), "{c}");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(c["Healthcheck"]["Retries"], 4);
    assert_eq!(v["Created"], "1970-01-01T00:00:00Z");

    // The ignored file never reached the context.
    let bad = dir.path().join("Dockerfile.ignored");
    std::fs::write(&bad, "FROM busybox\nCOPY ignored.txt /\n").unwrap();
    let out = d.berth(&["build", "-f", "Dockerfile.ignored", dir.path().to_str().unwrap()]);
    assert_failure(&out, "COPY of an ignored file");
    assert!(stderr(&out).contains("ignored.txt"), "{}", stderr(&out));

    // Second build: every step from the cache, same image.
    let out = d.berth(&[
        "build",
        "-t",
        "app:2",
        "--build-arg",
        "GREETING=howdy",
        dir.path().to_str().unwrap(),
    ]);
    assert_success(&out, "second build");
    let text = stdout(&out);
    assert!(!text.contains("Running in"), "{text}");
    assert_eq!(text.matches("CACHED").count(), 17, "{text}");
    assert_eq!(image_id(&d, "app:1"), image_id(&d, "app:2"));

    // Changing one COPY source rebuilds from that step on only.
    std::fs::write(dir.path().join("dir/sub/file"), "changed\n").unwrap();
    let out = d.berth(&[
        "build",
        "-t",
        "app:3",
        "--build-arg",
        "GREETING=howdy",
        dir.path().to_str().unwrap(),
    ]);
    assert_success(&out, "third build");
    let text = stdout(&out);
    let after = text.split("COPY dir/ /app/dir/").nth(1).unwrap();
    let before = text.split("COPY dir/ /app/dir/").next().unwrap();
    assert!(!after.contains("CACHED"), "{text}");
    assert_eq!(before.matches("CACHED").count(), 8, "{text}");
    assert_ne!(image_id(&d, "app:1"), image_id(&d, "app:3"));
}

#[test]
fn stock_docker_build_works_and_builds_are_reproducible_across_roots() {
    let a = Daemon::start();
    a.import_busybox();
    // The same base image on both roots (an import stamps the time, so it is saved and loaded).
    let b = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("base.tar");
    assert_success(
        &a.berth(&["save", "-o", saved.to_str().unwrap(), "busybox"]),
        "save",
    );
    assert_success(&b.berth(&["load", "-i", saved.to_str().unwrap()]), "load");
    std::fs::remove_file(&saved).unwrap();
    let dockerfile = "FROM busybox\nRUN mkdir /out && echo data > /out/f\nCOPY greeting.txt /out/\nCMD [\"cat\", \"/out/f\"]\n";
    context(dir.path(), dockerfile);
    let out = a.docker(&["build", "-t", "repro:1", dir.path().to_str().unwrap()]);
    assert_success(&out, "docker build");
    assert!(
        stdout(&out).contains("Successfully tagged repro:1"),
        "{}",
        stdout(&out)
    );
    let out = a.docker(&["run", "--rm", "repro:1"]);
    assert_success(&out, "docker run");
    assert_eq!(stdout(&out).trim(), "data");
    let out = b.berth(&["build", "-q", "-t", "repro:1", dir.path().to_str().unwrap()]);
    assert_success(&out, "berth build on the second root");
    assert_eq!(image_id(&a, "repro:1"), image_id(&b, "repro:1"));
    assert_eq!(stdout(&out).trim(), image_id(&b, "repro:1"));
}

fn build_error(d: &Daemon, files: &[(&str, &[u8])], query: &str) -> String {
    let (status, body) = d.api("POST", &format!("/build?{query}"), &tar_of(files));
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let last = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_else(|_| panic!("{text}"));
    assert!(v["error"].is_string(), "expected an error: {text}\n{}", d.log());
    assert_eq!(v["error"], v["errorDetail"]["message"]);
    text
}

#[test]
fn bad_input_gives_clear_errors_and_tags_nothing() {
    let d = Daemon::start();
    d.import_busybox();
    let t = build_error(&d, &[("Dockerfile", b"FROM busybox\nFROB x\n")], "t=bad:1");
    assert!(t.contains("line 2") && t.contains("unknown instruction"), "{t}");
    let t = build_error(
        &d,
        &[(
            "Dockerfile",
            b"FROM busybox\nRUN --mount=type=cache,target=/c true\n",
        )],
        "t=bad:1",
    );
    assert!(t.contains("the --mount option requires BuildKit"), "{t}");
    let t = build_error(
        &d,
        &[("Dockerfile", b"FROM busybox\nCOPY missing.txt /\n")],
        "t=bad:1",
    );
    assert!(t.contains("missing.txt"), "{t}");
    let t = build_error(
        &d,
        &[("Dockerfile", b"FROM busybox\nRUN echo out-before-fail && false\n")],
        "t=bad:1",
    );
    assert!(t.contains("out-before-fail"), "{t}");
    assert!(
        t.contains("The command '/bin/sh -c echo out-before-fail && false' returned a non-zero code: 1"),
        "{t}"
    );
    assert!(t.contains("\"code\":1"), "{t}");
    let (status, _) = d.api("GET", "/images/bad:1/json", b"");
    assert_eq!(status, 404, "a failed build tags nothing");

    // A context with a `..` entry is refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let name = b"../escape";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let df = b"FROM busybox\n";
    let mut h2 = tar::Header::new_gnu();
    h2.set_size(df.len() as u64);
    h2.set_mode(0o644);
    b.append_data(&mut h2, "Dockerfile", &df[..]).unwrap();
    let (status, body) = d.api("POST", "/build", &b.into_inner().unwrap());
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("invalid build context") && text.contains(".."),
        "{text}"
    );
    assert!(!d.root().parent().unwrap().join("escape").exists());

    // An ARG declared before FROM is not visible inside the stage unless redeclared.
    let t = build_error(
        &d,
        &[(
            "Dockerfile",
            b"ARG DIR=/nowhere\nFROM busybox\nRUN test -n \"$DIR\"\n",
        )],
        "",
    );
    assert!(t.contains("returned a non-zero code: 1"), "{t}");
    let out = d.berth(&["images", "-q"]);
    assert_success(&out, "images");
}

/// An HTTP server on 127.0.0.1 answering GET `path` with `body` (and 404 otherwise) until
/// dropped; counts the requests it served.
struct FileServer {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl FileServer {
    fn start(path: &'static str, body: &[u8]) -> FileServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = FileServer {
            port,
            hits: Default::default(),
            stop: Default::default(),
            body: std::sync::Arc::new(std::sync::Mutex::new(body.to_vec())),
        };
        let (hits, stop, body) = (server.hits.clone(), server.stop.clone(), server.body.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let (plain, query) = (format!("GET {path} "), format!("GET {path}?"));
                let reply = if req.starts_with(plain.as_bytes()) || req.starts_with(query.as_bytes()) {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = body.lock().unwrap().clone();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    [head.into_bytes(), body].concat()
                } else {
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                };
                let _ = conn.write_all(&reply);
            }
        });
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn add_from_a_url_downloads_checks_the_checksum_and_caches_by_content() {
    let d = Daemon::start();
    d.import_busybox();
    let web = FileServer::start("/files/hello.txt", b"hello from the web\n");
    let url = web.url("/files/hello.txt");
    let sum = sha256_hex(b"hello from the web\n");
    let dockerfile = format!(
        "FROM busybox\nADD {url} /web/\nADD --checksum=sha256:{sum} {url}?v=1 /web/renamed.txt\n\
         CMD [\"sh\", \"-c\", \"cat /web/hello.txt; stat -c %a /web/hello.txt; cat /web/renamed.txt\"]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), &dockerfile).unwrap();
    let ctx = dir.path().to_str().unwrap();
    let out = d.docker(&["build", "-t", "web:1", ctx]);
    assert_success(&out, "docker build with ADD <url>");
    let out = d.docker(&["run", "--rm", "web:1"]);
    assert_success(&out, "run");
    // Downloaded files are 0600, as the classic builder makes them.
    assert_eq!(stdout(&out), "hello from the web\n600\nhello from the web\n");
    assert_eq!(web.hits.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Unchanged content: downloaded again (to know), and every step from the cache.
    let first = image_id(&d, "web:1");
    let out = d.berth(&["build", "-t", "web:2", ctx]);
    assert_success(&out, "second build");
    assert_eq!(image_id(&d, "web:2"), first);
    assert_eq!(stdout(&out).matches("CACHED").count(), 3, "{}", stdout(&out));
    // New content at the same URL: the ADD step runs again.
    *web.body.lock().unwrap() = b"changed\n".to_vec();
    let out = d.berth(&["build", "-t", "web:3", ctx]);
    assert_failure(&out, "the pinned checksum no longer matches");
    assert!(
        stderr(&out).contains(&format!(
            "digest mismatch sha256:{sum}: sha256:{}",
            sha256_hex(b"changed\n")
        )),
        "{}",
        stderr(&out)
    );
    assert_failure(&d.berth(&["image", "inspect", "web:3"]), "nothing tagged");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM busybox\nADD {url} /web/\nCMD [\"cat\", \"/web/hello.txt\"]\n"),
    )
    .unwrap();
    let out = d.berth(&["build", "-t", "web:4", ctx]);
    assert_success(&out, "build after the content changed");
    let out = d.docker(&["run", "--rm", "web:4"]);
    assert_eq!(stdout(&out), "changed\n");

    // A URL that answers 404.
    let t = build_error(
        &d,
        &[(
            "Dockerfile",
            format!("FROM busybox\nADD {} /x\n", web.url("/missing")).as_bytes(),
        )],
        "t=bad:1",
    );
    assert!(t.contains("failed to GET") && t.contains("404"), "{t}");
    assert_failure(&d.berth(&["image", "inspect", "bad:1"]), "nothing tagged");
}

#[test]
fn onbuild_triggers_run_in_the_child_build_and_build_prune_empties_the_cache() {
    let d = Daemon::start();
    d.import_busybox();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let child = dir.path().join("child");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(
        base.join("Dockerfile"),
        "FROM busybox\nONBUILD RUN echo triggered > /onbuild.txt\nONBUILD COPY note.txt /note.txt\n",
    )
    .unwrap();
    std::fs::write(
        child.join("Dockerfile"),
        "FROM base:1\nCMD [\"cat\", \"/onbuild.txt\", \"/note.txt\"]\n",
    )
    .unwrap();
    std::fs::write(child.join("note.txt"), "from the child's context\n").unwrap();

    assert_success(
        &d.docker(&["build", "-t", "base:1", base.to_str().unwrap()]),
        "build base",
    );
    let out = d.docker(&["inspect", "--format", "{{json .Config.OnBuild}}", "base:1"]);
    assert_eq!(
        stdout(&out).trim(),
        r#"["RUN echo triggered > /onbuild.txt","COPY note.txt /note.txt"]"#
    );
    let out = d.docker(&["build", "-t", "child:1", child.to_str().unwrap()]);
    assert_success(&out, "build child");
    assert!(
        stdout(&out).contains("Executing 2 build triggers"),
        "{}",
        stdout(&out)
    );
    let out = d.docker(&["run", "--rm", "child:1"]);
    assert_eq!(stdout(&out), "triggered\nfrom the child's context\n");
    // Triggers fire once: the child's own config has none.
    let out = d.docker(&["inspect", "--format", "{{json .Config.OnBuild}}", "child:1"]);
    assert!(matches!(stdout(&out).trim(), "null" | "[]"), "{}", stdout(&out));

    // The second build is cached; after `builder prune` it is not.
    let out = d.docker(&["build", "-t", "child:2", child.to_str().unwrap()]);
    assert!(stdout(&out).contains("Using cache"), "{}", stdout(&out));
    let out = d.docker(&["builder", "prune", "-f"]);
    assert_success(&out, "docker builder prune");
    assert!(stdout(&out).contains("Total reclaimed space"), "{}", stdout(&out));
    let out = d.docker(&["build", "-t", "child:3", child.to_str().unwrap()]);
    assert_success(&out, "build after prune");
    assert!(!stdout(&out).contains("Using cache"), "{}", stdout(&out));
    assert_eq!(
        stdout(&d.docker(&["run", "--rm", "child:3"])),
        "triggered\nfrom the child's context\n"
    );
}
