//! Pull, push and login against a real, independent registry (Debian's `docker-registry`,
//! distribution 2.8), through berthd's registry client, the stock docker CLI and `berth`.

use berth_tests::{assert_failure, assert_success, bin, stderr, stdout, Daemon};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A distribution registry on 127.0.0.1:<free port>, storing into a temp dir; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Debian's distribution registry, with htpasswd auth for one user when given.
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let (dir, port) = registry_dir();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(user) = htpasswd {
            write_htpasswd(&dir.path().join("htpasswd"), &[user]);
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(dir.path().join("config.yml"));
        Registry::spawn(cmd, dir, port, "docker-registry (Debian package docker-registry)")
    }

    /// berth's own registry with Docker token auth (its built-in `/token` endpoint): `users`
    /// with bcrypt passwords, and access rules `ACCOUNT:PATTERN:ACTIONS`.
    fn start_berth_token_auth(users: &[(&str, &str)], access: &[&str]) -> Registry {
        let (dir, port) = registry_dir();
        write_htpasswd(&dir.path().join("htpasswd"), users);
        let mut cmd = Command::new(bin("berth-registry"));
        cmd.arg("serve")
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(dir.path().join("data"))
            .arg("--htpasswd")
            .arg(dir.path().join("htpasswd"))
            .arg("--token-auth");
        for rule in access {
            cmd.args(["--access", rule]);
        }
        Registry::spawn(cmd, dir, port, "berth-registry")
    }

    /// Starts `cmd` (its log in `dir`) and waits until `port` accepts connections.
    fn spawn(mut cmd: Command, dir: tempfile::TempDir, port: u16, what: &str) -> Registry {
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let reg = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp dir for a registry and a free port on 127.0.0.1.
fn registry_dir() -> (tempfile::TempDir, u16) {
    let dir = tempfile::Builder::new().prefix("berth-reg-").tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (dir, port)
}

/// An htpasswd file of bcrypt hashes (apache2-utils' htpasswd).
fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let mut lines = Vec::new();
    for (user, pass) in users {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, pass])
            .output()
            .expect("htpasswd (apache2-utils)");
        assert!(out.status.success(), "htpasswd failed");
        lines.extend_from_slice(&out.stdout);
    }
    std::fs::write(path, lines).unwrap();
}

fn image_id(d: &Daemon, name: &str) -> String {
    let out = d.docker(&["image", "inspect", "--format", "{{.Id}}", name]);
    assert_success(&out, "inspect");
    stdout(&out).trim().to_string()
}

/// `berth` with its own docker config directory (credentials for login/push).
fn berth_with_config(d: &Daemon, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin("berth"))
        .args(args)
        .env("BERTH_HOST", d.host())
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

#[test]
fn push_from_one_daemon_pull_into_another() {
    let reg = Registry::start(None);
    let name = format!("{}/bb", reg.host());
    let d1 = Daemon::start();
    d1.import_busybox();
    assert_success(&d1.berth(&["tag", "busybox", &name]), "tag");
    let out = d1.berth(&["push", &name]);
    assert_success(&out, "berth push");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("The push refers to repository [{name}]")),
        "{text}"
    );
    assert!(text.contains(": Pushed"), "{text}");
    assert!(text.contains("latest: digest: sha256:"), "{text}");
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("latest: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();

    let out = d1.berth(&["push", &name]);
    assert_success(&out, "second push");
    assert!(
        stdout(&out).contains(": Layer already exists"),
        "{}",
        stdout(&out)
    );

    let d2 = Daemon::start();
    let out = d2.berth(&["pull", &name]);
    assert_success(&out, "berth pull");
    let text = stdout(&out);
    assert!(text.contains(": Pull complete"), "{text}");
    assert!(text.contains(&format!("Digest: {digest}")), "{text}");
    assert!(
        text.contains(&format!("Status: Downloaded newer image for {name}:latest")),
        "{text}"
    );
    assert_eq!(
        image_id(&d1, &name),
        image_id(&d2, &name),
        "same image ID on both daemons"
    );

    let out = d2.docker(&["image", "inspect", "--format", "{{json .RepoDigests}}", &name]);
    assert_success(&out, "inspect RepoDigests");
    assert!(
        stdout(&out).contains(&format!("{name}@{digest}")),
        "{}",
        stdout(&out)
    );

    let out = d2.docker(&["run", "--rm", &name, "echo", "hi"]);
    assert_success(&out, "run pulled image");
    assert_eq!(stdout(&out), "hi\n");

    // Again: nothing to fetch.
    let out = d2.berth(&["pull", &name]);
    assert_success(&out, "second pull");
    assert!(
        stdout(&out).contains("Status: Image is up to date for"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn docker_cli_push_and_pull_through_berthd() {
    let reg = Registry::start(None);
    let name = format!("{}/cli/bb", reg.host());
    let d = Daemon::start();
    d.import_busybox();
    assert_success(&d.docker(&["tag", "busybox", &name]), "tag");
    let out = d.docker(&["push", &name]);
    assert_success(&out, "docker push");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("The push refers to repository [{name}]")),
        "{text}"
    );
    assert!(text.contains("Pushed"), "{text}");
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("latest: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in {text}"))
        .to_string();

    assert_success(&d.docker(&["rmi", &name, "busybox"]), "rmi");
    let out = d.docker(&["pull", &name]);
    assert_success(&out, "docker pull");
    let text = stdout(&out);
    assert!(text.contains("Pull complete"), "{text}");
    assert!(text.contains(&format!("Digest: {digest}")), "{text}");
    assert!(
        text.contains(&format!("Status: Downloaded newer image for {name}:latest")),
        "{text}"
    );

    // By digest.
    assert_success(&d.docker(&["rmi", &name]), "rmi again");
    let by_digest = format!("{name}@{digest}");
    let out = d.docker(&["pull", &by_digest]);
    assert_success(&out, "pull by digest");
    let out = d.docker(&["run", "--rm", &by_digest, "echo", "by-digest"]);
    assert_success(&out, "run by digest");
    assert_eq!(stdout(&out), "by-digest\n");

    // A tag the registry does not have: the docker CLI's error text.
    let out = d.docker(&["pull", &format!("{name}:nope")]);
    assert_failure(&out, "pull missing tag");
    assert!(
        stderr(&out).contains(&format!(
            "Error response from daemon: manifest for {name}:nope not found: manifest unknown"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn login_and_push_to_an_authenticated_registry() {
    let reg = Registry::start(Some(("tester", "s3cret")));
    let name = format!("{}/auth/bb", reg.host());
    let d = Daemon::start();
    d.import_busybox();
    assert_success(&d.docker(&["tag", "busybox", &name]), "tag");

    let out = d.docker(&["push", &name]);
    assert_failure(&out, "push without login");
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));

    let out = d.docker(&["login", &reg.host(), "-u", "tester", "-p", "wrong"]);
    assert_failure(&out, "login with a wrong password");
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));

    let out = d.docker(&["login", &reg.host(), "-u", "tester", "-p", "s3cret"]);
    assert_success(&out, "login");
    assert!(stdout(&out).contains("Login Succeeded"), "{}", stdout(&out));
    let out = d.docker(&["push", &name]);
    assert_success(&out, "push after login");
    assert!(stdout(&out).contains("Pushed"), "{}", stdout(&out));
    let out = d.docker(&["push", &name]);
    assert_success(&out, "second push");
    assert!(stdout(&out).contains("Layer already exists"), "{}", stdout(&out));

    // berth login keeps docker-compatible credentials and pull uses them.
    let cfg = tempfile::tempdir().unwrap();
    let out = berth_with_config(&d, cfg.path(), &["pull", &name], None);
    assert_failure(&out, "berth pull without login");
    let out = berth_with_config(
        &d,
        cfg.path(),
        &["login", "-u", "tester", "--password-stdin", &reg.host()],
        Some("s3cret\n"),
    );
    assert_success(&out, "berth login");
    assert!(stdout(&out).contains("Login Succeeded"));
    let saved = std::fs::read_to_string(cfg.path().join("config.json")).unwrap();
    assert!(saved.contains("dGVzdGVyOnMzY3JldA=="), "config.json: {saved}");
    assert_success(&d.docker(&["rmi", &name]), "rmi");
    let out = berth_with_config(&d, cfg.path(), &["pull", &name], None);
    assert_success(&out, "berth pull after login");
    let out = berth_with_config(&d, cfg.path(), &["logout", &reg.host()], None);
    assert_success(&out, "logout");
    assert!(!std::fs::read_to_string(cfg.path().join("config.json"))
        .unwrap()
        .contains("dGVzdGVy"));
}

#[test]
fn pull_all_tags_brings_every_tag() {
    let reg = Registry::start(None);
    let name = format!("{}/all/bb", reg.host());
    let d1 = Daemon::start();
    d1.import_busybox();
    let rootfs = berth_tests::busybox_rootfs().to_str().unwrap().to_string();
    let two = format!("{name}:two");
    let out = d1.berth(&["import", "--change", "CMD [\"echo\", \"two\"]", &rootfs, &two]);
    assert_success(&out, "import a second image");
    assert_success(&d1.berth(&["tag", "busybox", &format!("{name}:one")]), "tag one");
    assert_success(&d1.berth(&["push", "--all-tags", &name]), "push --all-tags");

    let d2 = Daemon::start();
    // The stock docker CLI: `pull -a` sends fromImage without a tag.
    let out = d2.docker(&["pull", "-a", &name]);
    assert_success(&out, "docker pull -a");
    let text = stdout(&out);
    assert!(text.contains(&format!("one: Pulling from {name}")), "{text}");
    assert!(text.contains(&format!("two: Pulling from {name}")), "{text}");
    // One status line for the whole repository, as dockerd.
    assert_eq!(text.matches("Status: ").count(), 1, "{text}");
    assert!(
        text.contains(&format!("Status: Downloaded newer image for {name}\n")),
        "{text}"
    );
    for tag in ["one", "two"] {
        let tagged = format!("{name}:{tag}");
        assert_eq!(image_id(&d1, &tagged), image_id(&d2, &tagged), "{tagged}");
    }
    assert_ne!(image_id(&d2, &format!("{name}:one")), image_id(&d2, &two));
    let out = d2.docker(&["run", "--rm", &two]);
    assert_success(&out, "run the second tag");
    assert_eq!(stdout(&out), "two\n");
    // No `latest` in the registry: nothing was invented.
    assert_failure(
        &d2.docker(&["image", "inspect", &format!("{name}:latest")]),
        "latest",
    );

    // berth's own `pull -a`, into a third root; a tag with -a is refused.
    let d3 = Daemon::start();
    let out = d3.berth(&["pull", "-a", "-q", &name]);
    assert_success(&out, "berth pull -a");
    assert_eq!(image_id(&d3, &two), image_id(&d1, &two));
    let out = d3.berth(&["pull", "-a", &format!("{name}:one")]);
    assert_failure(&out, "pull -a with a tag");
    assert!(
        stderr(&out).contains("tag can't be used with --all-tags/-a"),
        "{}",
        stderr(&out)
    );

    // A repository the registry does not have.
    let out = d3.docker(&["pull", "-a", &format!("{}/no/such", reg.host())]);
    assert_failure(&out, "pull -a of a missing repository");
}

#[test]
fn token_auth_registry_through_berthd() {
    let reg = Registry::start_berth_token_auth(
        &[("alice", "wonder"), ("bob", "builder")],
        &["alice:*:pull,push", "bob:*:pull"],
    );
    let name = format!("{}/team/bb", reg.host());
    let d = Daemon::start();
    d.import_busybox();
    assert_success(&d.docker(&["tag", "busybox", &name]), "tag");

    let out = d.docker(&["push", &name]);
    assert_failure(&out, "push without login");
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let out = d.docker(&["login", &reg.host(), "-u", "alice", "-p", "wrong"]);
    assert_failure(&out, "login with a wrong password");

    let out = d.docker(&["login", &reg.host(), "-u", "alice", "-p", "wonder"]);
    assert_success(&out, "login alice");
    let out = d.docker(&["push", &name]);
    assert_success(&out, "alice pushes");
    assert!(stdout(&out).contains("Pushed"), "{}", stdout(&out));

    // bob may pull but not push.
    let out = d.docker(&["login", &reg.host(), "-u", "bob", "-p", "builder"]);
    assert_success(&out, "login bob");
    let other = format!("{}/team/other", reg.host());
    assert_success(&d.docker(&["tag", "busybox", &other]), "tag other");
    let out = d.docker(&["push", &other]);
    assert_failure(&out, "bob pushes");
    let err = stderr(&out);
    assert!(err.contains("denied") || err.contains("unauthorized"), "{err}");
    assert_success(&d.docker(&["rmi", &name]), "rmi");
    let out = d.docker(&["pull", &name]);
    assert_success(&out, "bob pulls");
    let out = d.docker(&["run", "--rm", &name, "echo", "pulled"]);
    assert_success(&out, "run");
    assert_eq!(stdout(&out), "pulled\n");

    // A build whose base is in the private registry: the CLI's stored credentials reach the
    // daemon in X-Registry-Config.
    let fresh = Daemon::start();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {name}\nRUN true\n")).unwrap();
    let ctx_s = ctx.path().to_str().unwrap();
    let out = fresh.docker(&["build", "-t", "private:1", ctx_s]);
    assert_failure(&out, "build without credentials");
    let out = fresh.docker(&["login", &reg.host(), "-u", "bob", "-p", "builder"]);
    assert_success(&out, "login bob on the fresh daemon's CLI");
    let out = fresh.docker(&["build", "-t", "private:1", ctx_s]);
    assert_success(&out, "build with a private base");
}

#[test]
fn build_pulls_a_missing_base_and_pull_refreshes_it() {
    let reg = Registry::start(None);
    let name = format!("{}/base/bb:1", reg.host());
    let d1 = Daemon::start();
    d1.import_busybox();
    assert_success(&d1.berth(&["tag", "busybox", &name]), "tag");
    assert_success(&d1.berth(&["push", &name]), "push v1");

    // A daemon without the base: the classic builder pulls it.
    let d2 = Daemon::start();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {name}\nRUN echo built > /b\n"),
    )
    .unwrap();
    let ctx_s = ctx.path().to_str().unwrap();
    let out = d2.docker(&["build", "-t", "app:1", ctx_s]);
    assert_success(&out, "docker build with a base to pull");
    let pulling = format!("1: Pulling from {}/base/bb", reg.host());
    assert!(stdout(&out).contains(&pulling), "{}", stdout(&out));
    assert_eq!(image_id(&d2, &name), image_id(&d1, &name), "the pulled base");
    let out = d2.docker(&["run", "--rm", "app:1", "cat", "/b"]);
    assert_eq!(stdout(&out), "built\n");

    // A new image under the same tag: only --pull sees it.
    let rootfs = berth_tests::busybox_rootfs().to_str().unwrap().to_string();
    let out = d1.berth(&["import", "--change", "CMD [\"echo\", \"v2\"]", &rootfs, &name]);
    assert_success(&out, "import v2");
    assert_success(&d1.berth(&["push", &name]), "push v2");
    let out = d2.docker(&["build", "-t", "app:2", ctx_s]);
    assert_success(&out, "build without --pull");
    assert!(!stdout(&out).contains("Pulling from"), "{}", stdout(&out));
    let out = d2.docker(&["run", "--rm", "app:2", "echo", "old-base"]);
    assert_eq!(stdout(&out), "old-base\n");
    let out = d2.docker(&["inspect", "--format", "{{json .Config.Cmd}}", "app:2"]);
    assert_eq!(stdout(&out).trim(), "[\"sh\"]");
    let out = d2.berth(&["build", "--pull", "-t", "app:3", ctx_s]);
    assert_success(&out, "berth build --pull");
    let out = d2.docker(&["run", "--rm", "app:3"]);
    assert_success(&out, "run app:3");
    assert_eq!(stdout(&out), "v2\n", "the refreshed base's CMD");

    // A base the registry does not have: the pull's error, and nothing tagged.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}/base/missing:1\n", reg.host()),
    )
    .unwrap();
    let out = d2.docker(&["build", "-t", "app:4", ctx_s]);
    assert_failure(&out, "build from a missing base");
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    assert_failure(&d2.docker(&["image", "inspect", "app:4"]), "nothing tagged");
}
