//! Volumes and mounts through the stock docker CLI, `berth` and raw HTTP: named volumes that
//! outlive containers and the daemon, read-only mounts, binds (recursive or not), tmpfs limits,
//! copy-up, volumes-from, in-use refusal, prune, `rm -v`, and the bad input Docker refuses.

use berth_tests::{assert_failure, assert_success, mounts_under, stderr, stdout, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn mountpoint(d: &Daemon, volume: &str) -> PathBuf {
    let out = d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]);
    assert_success(&out, "volume inspect");
    PathBuf::from(stdout(&out).trim())
}

fn volume_names(d: &Daemon) -> Vec<String> {
    let out = d.docker(&["volume", "ls", "-q"]);
    assert_success(&out, "volume ls -q");
    let mut v: Vec<String> = stdout(&out).lines().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn named_volume_outlives_its_container_and_the_daemon() {
    let mut d = Daemon::with_busybox();
    let out = d.docker(&["volume", "create", "--label", "team=web", "data"]);
    assert_success(&out, "volume create");
    assert_eq!(stdout(&out).trim(), "data");

    let out = d.docker(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    assert_success(&out, "write into the volume");
    assert_success(&d.docker(&["rm", "writer"]), "rm writer");
    let out = d.docker(&["run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"]);
    assert_success(&out, "read from the volume");
    assert_eq!(stdout(&out), "hello\n");
    // The data is a plain directory on the host.
    let host = mountpoint(&d, "data");
    assert!(host.starts_with(d.root()), "{host:?}");
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "hello\n");

    d.restart();
    let out = d.docker(&["run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"]);
    assert_success(&out, "read after a daemon restart");
    assert_eq!(stdout(&out), "hello\n");
    let out = d.docker(&[
        "volume",
        "ls",
        "--filter",
        "label=team=web",
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert_eq!(stdout(&out), "local data\n");
    let (status, v) = d.api_json("GET", "/v1.44/volumes/data", b"");
    assert_eq!(status, 200);
    assert_eq!(v["Labels"]["team"], "web");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Driver"], "local");

    assert_success(&d.docker(&["volume", "rm", "data"]), "volume rm");
    assert!(!host.exists());
    let out = d.docker(&["volume", "inspect", "data"]);
    assert_failure(&out, "inspect of a removed volume");
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
}

#[test]
fn read_only_mounts_refuse_writes() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "ro-data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f",
    ]);
    assert_failure(&out, "write to a :ro volume");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    let out = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=ro-data,target=/data,readonly",
        "busybox",
        "touch",
        "/data/f",
    ]);
    assert_failure(&out, "write to a readonly --mount");
    assert!(!mountpoint(&d, "ro-data").join("f").exists());
    // The same volume mounted read-write takes the write.
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "ro-data:/data",
        "busybox",
        "touch",
        "/data/f",
    ]);
    assert_success(&out, "write to the volume mounted rw");
    assert!(mountpoint(&d, "ro-data").join("f").exists());
}

#[test]
fn bind_mounts_show_host_files_and_write_through() {
    let d = Daemon::with_busybox();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from the host\n").unwrap();
    let spec = format!("{}:/host", host.path().display());
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /host/in; echo back > /host/out",
    ]);
    assert_success(&out, "run with a bind mount");
    assert_eq!(stdout(&out), "from the host\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "back\n"
    );

    // Read-only bind.
    let spec = format!("{}:/host:ro", host.path().display());
    let out = d.docker(&["run", "--rm", "-v", &spec, "busybox", "rm", "/host/in"]);
    assert_failure(&out, "rm through a :ro bind");
    assert!(host.path().join("in").exists());

    // `-v` with a missing host path makes it, as Docker does.
    let missing = host.path().join("made/by/berth");
    let spec = format!("{}:/m", missing.display());
    assert_success(
        &d.docker(&["run", "--rm", "-v", &spec, "busybox", "touch", "/m/x"]),
        "-v with a missing path",
    );
    assert!(missing.join("x").exists());

    // `--mount type=bind` with a missing source fails with Docker's message and makes nothing.
    let gone = host.path().join("absent");
    let m = format!("type=bind,source={},target=/x", gone.display());
    let out = d.docker(&["run", "--rm", "--mount", &m, "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("bind source path does not exist: {}", gone.display())),
        "{}",
        stderr(&out)
    );
    assert!(!gone.exists());
    assert_eq!(stdout(&d.docker(&["ps", "-aq"])), "");
    assert_eq!(mounts_under(&d.root()), 0);
}

/// A tmpfs mounted on the host for one test, unmounted when dropped.
struct HostTmpfs(PathBuf);

impl HostTmpfs {
    fn mount(at: &Path) -> HostTmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert_success(&out, "mount a tmpfs on the host");
        HostTmpfs(at.to_path_buf())
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_nonrecursive_bind_leaves_the_mounts_below_its_source_out() {
    let d = Daemon::with_busybox();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("top"), "top\n").unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let _tmpfs = HostTmpfs::mount(&sub);
    std::fs::write(sub.join("inner"), "inner\n").unwrap();
    let bind = format!("type=bind,source={},target=/h", host.path().display());
    let list = |mount: &str| {
        let out = d.docker(&[
            "run",
            "--rm",
            "--mount",
            mount,
            "busybox",
            "sh",
            "-c",
            "cat /h/top; ls /h/sub",
        ]);
        assert_success(&out, &format!("run --mount {mount}"));
        stdout(&out)
    };
    // A bind is recursive by default: the tmpfs below the source comes along.
    assert_eq!(list(&bind), "top\ninner\n");
    // The old and the new spelling of a non-recursive bind.
    for option in ["bind-nonrecursive", "bind-recursive=disabled"] {
        assert_eq!(list(&format!("{bind},{option}")), "top\n", "{option}");
    }
}

#[test]
fn tmpfs_sizes_are_enforced() {
    let d = Daemon::with_busybox();
    let fill = "dd if=/dev/zero of=/t/f bs=1024 count=2048";
    for args in [
        vec!["--tmpfs", "/t:size=1m"],
        vec!["--mount", "type=tmpfs,target=/t,tmpfs-size=1m"],
    ] {
        let mut cmd = vec!["run", "--rm"];
        cmd.extend(args.iter().copied());
        cmd.extend(["busybox", "sh", "-c", fill]);
        let out = d.docker(&cmd);
        assert_failure(&out, "2 MiB into a 1 MiB tmpfs");
        assert!(
            stderr(&out).contains("No space left on device"),
            "{args:?}: {}",
            stderr(&out)
        );
        let mut cmd = vec!["run", "--rm"];
        cmd.extend(args.iter().copied());
        cmd.extend(["busybox", "sh", "-c", "dd if=/dev/zero of=/t/f bs=1024 count=512"]);
        assert_success(&d.docker(&cmd), "512 KiB into a 1 MiB tmpfs");
    }
    // A volume made with the local driver's tmpfs options is a sized tmpfs while in use.
    let out = d.docker(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "small",
    ]);
    assert_success(&out, "volume create tmpfs");
    let out = d.docker(&["run", "--rm", "-v", "small:/t", "busybox", "sh", "-c", fill]);
    assert_failure(&out, "2 MiB into a 1 MiB tmpfs volume");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    // Not mounted once no container uses it.
    assert_eq!(mounts_under(&d.root().join("volumes")), 0);
}

#[test]
fn a_fresh_named_volume_gets_the_images_content() {
    let d = Daemon::with_busybox();
    let out = d.docker(&["run", "--rm", "-v", "etc:/etc", "busybox", "cat", "/etc/passwd"]);
    assert_success(&out, "run with a volume over /etc");
    assert!(stdout(&out).starts_with("root:"), "{}", stdout(&out));
    let host = mountpoint(&d, "etc");
    let passwd = std::fs::read_to_string(host.join("passwd")).unwrap();
    assert!(passwd.starts_with("root:"));
    // A volume that already has content is left as it is.
    std::fs::write(host.join("passwd"), "changed\n").unwrap();
    let out = d.docker(&["run", "--rm", "-v", "etc:/etc", "busybox", "cat", "/etc/passwd"]);
    assert_eq!(stdout(&out), "changed\n");
    // nocopy: the volume stays empty.
    let out = d.docker(&["run", "--rm", "-v", "bare:/etc:nocopy", "busybox", "ls", "/etc"]);
    assert_success(&out, "run with nocopy");
    assert!(!stdout(&out).contains("passwd"), "{}", stdout(&out));
    assert!(!mountpoint(&d, "bare").join("passwd").exists());
}

#[test]
fn volumes_from_shares_another_containers_mounts() {
    let d = Daemon::with_busybox();
    let out = d.docker(&[
        "run",
        "--name",
        "owner",
        "-v",
        "shared:/s",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo one > /s/f; echo two > /anon/g",
    ]);
    assert_success(&out, "owner");
    let out = d.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "owner",
        "busybox",
        "cat",
        "/s/f",
        "/anon/g",
    ]);
    assert_success(&out, "volumes-from");
    assert_eq!(stdout(&out), "one\ntwo\n");
    let out = d.docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "owner:ro",
        "busybox",
        "touch",
        "/s/x",
    ]);
    assert_failure(&out, "write through volumes-from :ro");
    // (Through the API: on any 404 from create, the docker CLI goes off to pull the image.)
    let body = br#"{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"VolumesFrom": ["nosuch"]}}"#;
    let (status, v) = d.api_json("POST", "/v1.44/containers/create", body);
    assert_eq!(status, 404);
    assert_eq!(v["message"], "No such container: nosuch");
}

#[test]
fn a_volume_in_use_cannot_be_removed() {
    let d = Daemon::with_busybox();
    let out = d.docker(&["create", "--name", "user", "-v", "busy:/d", "busybox", "true"]);
    assert_success(&out, "create with a volume");
    let id = stdout(&out).trim().to_string();
    let out = d.docker(&["volume", "rm", "busy"]);
    assert_failure(&out, "volume rm of a used volume");
    assert!(stderr(&out).contains("volume is in use"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&id), "{}", stderr(&out));
    let (status, body) = d.api_json("DELETE", "/v1.44/volumes/busy?force=1", b"");
    assert_eq!(status, 409);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("remove busy: volume is in use - ["));
    // Still in use after a daemon restart.
    let mut d = d;
    d.restart();
    assert_failure(&d.docker(&["volume", "rm", "busy"]), "volume rm after restart");
    let out = d.docker(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(stdout(&out), "");
    assert_success(&d.docker(&["rm", "user"]), "rm the user");
    assert_success(&d.docker(&["volume", "rm", "busy"]), "volume rm once unused");
    assert!(volume_names(&d).is_empty());
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_run_rm_and_prune() {
    let d = Daemon::with_busybox();
    // --rm takes its anonymous volumes along, but not named ones.
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "-v",
        "keep:/k",
        "busybox",
        "touch",
        "/scratch/x",
    ]);
    assert_success(&out, "run --rm with an anonymous volume");
    assert_eq!(volume_names(&d), vec!["keep".to_string()]);

    let out = d.docker(&["create", "--name", "ca", "-v", "/cache", "busybox", "true"]);
    assert_success(&out, "create ca");
    let anon_a: Vec<String> = volume_names(&d).into_iter().filter(|v| v != "keep").collect();
    assert_eq!(anon_a.len(), 1);
    assert_eq!(anon_a[0].len(), 64, "anonymous volumes have random hex names");
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
        "ca",
    ]);
    assert_eq!(stdout(&out).trim(), format!("volume {} /cache true", anon_a[0]));
    assert_success(&d.docker(&["rm", "-v", "ca"]), "rm -v");
    assert_eq!(volume_names(&d), vec!["keep".to_string()]);

    // Without -v the anonymous volume stays, dangling; prune takes it (and, without --all,
    // only it).
    assert_success(
        &d.docker(&["create", "--name", "cb", "-v", "/cache", "busybox", "true"]),
        "create cb",
    );
    assert_success(
        &d.docker(&[
            "create", "--name", "cc", "-v", "/cache", "-v", "used:/u", "busybox", "true",
        ]),
        "create cc",
    );
    assert_success(&d.docker(&["rm", "cb"]), "rm cb");
    assert_eq!(volume_names(&d).len(), 4);
    let out = d.docker(&["volume", "prune", "-f"]);
    assert_success(&out, "volume prune");
    assert!(stdout(&out).contains("Deleted Volumes:"), "{}", stdout(&out));
    let left = volume_names(&d);
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&"keep".to_string()) && left.contains(&"used".to_string()));
    let out = d.docker(&["volume", "prune", "-af"]);
    assert_success(&out, "volume prune --all");
    let left = volume_names(&d);
    assert_eq!(left.len(), 2, "only c's volumes stay: {left:?}");
    assert!(left.contains(&"used".to_string()) && !left.contains(&"keep".to_string()));
}

#[test]
fn inspect_and_df_show_mounts_and_volumes_as_docker_does() {
    let d = Daemon::with_busybox();
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/b:ro", host.path().display());
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "mnt",
        "-v",
        "named:/n",
        "-v",
        &bind,
        "--mount",
        "type=tmpfs,target=/t",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/n/blob bs=1024 count=64; sleep 60",
    ]);
    assert_success(&out, "run with three kinds of mounts");
    let (_, c) = d.api_json("GET", "/v1.44/containers/mnt/json", b"");
    let mounts = c["Mounts"].as_array().unwrap();
    let by_dest = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let n = by_dest("/n");
    assert_eq!(n["Type"], "volume");
    assert_eq!(n["Name"], "named");
    assert_eq!(n["Driver"], "local");
    assert_eq!(n["RW"], true);
    assert_eq!(
        n["Source"].as_str().unwrap(),
        mountpoint(&d, "named").to_str().unwrap()
    );
    let b = by_dest("/b");
    assert_eq!(b["Type"], "bind");
    assert_eq!(b["Source"].as_str().unwrap(), host.path().to_str().unwrap());
    assert_eq!(b["RW"], false);
    assert_eq!(b["Mode"], "ro");
    assert_eq!(b["Propagation"], "rprivate");
    assert_eq!(by_dest("/t")["Type"], "tmpfs");
    // The docker CLI sends `-v` binds from a Go map, so their order is not the command line's.
    let binds = c["HostConfig"]["Binds"].as_array().unwrap();
    assert_eq!(binds.len(), 2, "{binds:?}");
    assert!(binds.contains(&Value::from(bind.as_str())), "{binds:?}");
    assert!(binds.contains(&Value::from("named:/n")), "{binds:?}");
    assert_eq!(c["HostConfig"]["Mounts"][0]["Type"], "tmpfs");

    // The mounts are what the container sees.
    let out = d.docker(&[
        "exec",
        "mnt",
        "sh",
        "-c",
        "grep -c ' /n \\| /b \\| /t ' /proc/mounts",
    ]);
    assert_eq!(stdout(&out).trim(), "3", "{}", stderr(&out));

    // system df counts the volume and its size once the writer is done.
    let mut size = 0;
    for _ in 0..100 {
        let (_, df) = d.api_json("GET", "/v1.44/system/df", b"");
        let v = df["Volumes"].as_array().unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["UsageData"]["RefCount"], 1);
        size = v[0]["UsageData"]["Size"].as_i64().unwrap();
        if size == 65536 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(size, 65536);
    let out = d.docker(&["system", "df"]);
    assert_success(&out, "docker system df");
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap()
        .to_string();
    assert!(
        line.split_whitespace().collect::<Vec<_>>()[2..4] == ["1", "1"],
        "{line}"
    );
    assert_success(&d.docker(&["rm", "-f", "mnt"]), "rm -f");
    assert_eq!(mounts_under(&d.root()), 0);
}

#[test]
fn bad_volume_input_is_refused_with_dockers_messages() {
    let d = Daemon::with_busybox();
    let (status, v) = d.api_json("POST", "/v1.44/volumes/create", br#"{"Name": "a/b"}"#);
    assert_eq!(status, 400);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("includes invalid characters for a local volume name"));
    let (status, _) = d.api_json(
        "POST",
        "/v1.44/volumes/create",
        br#"{"Name": "x", "Driver": "nfs-magic"}"#,
    );
    assert_eq!(status, 400);
    let (status, _) = d.api_json(
        "POST",
        "/v1.44/volumes/create",
        br#"{"Name": "x", "DriverOpts": {"bogus": "1"}}"#,
    );
    assert_eq!(status, 400);
    let (status, v) = d.api_json("GET", "/v1.44/volumes/nosuch", b"");
    assert_eq!(status, 404);
    assert_eq!(v["message"], "get nosuch: no such volume");
    let (status, _) = d.api_json(
        "GET",
        "/v1.44/volumes?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        b"",
    );
    assert_eq!(status, 400);
    assert!(volume_names(&d).is_empty());

    for (flag, value, message) in [
        ("-v", "data:relative", "mount path must be absolute"),
        ("-v", "data:/d:bogus", "invalid mode: bogus"),
        ("-v", "bad/name:/d", "includes invalid characters"),
        (
            "--mount",
            "type=tmpfs,source=x,target=/t",
            "field Source must not be specified",
        ),
    ] {
        let out = d.docker(&["run", "--rm", flag, value, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag} {value}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{flag} {value}: {}", stderr(&out));
    }
    let out = d.docker(&["run", "--rm", "-v", "one:/d", "-v", "two:/d", "busybox", "true"]);
    assert!(
        stderr(&out).contains("Duplicate mount point: /d"),
        "{}",
        stderr(&out)
    );
    assert!(volume_names(&d).is_empty(), "a refused run makes no volume");
    assert_eq!(stdout(&d.docker(&["ps", "-aq"])), "");
}

#[test]
fn berth_cli_manages_volumes() {
    let d = Daemon::with_busybox();
    let out = d.berth(&["volume", "create", "--label", "a=b", "v1"]);
    assert_success(&out, "berth volume create");
    assert_eq!(stdout(&out), "v1\n");
    let out = d.berth(&["volume", "ls"]);
    assert_eq!(stdout(&out), "DRIVER    VOLUME NAME\nlocal     v1\n");
    let out = d.berth(&[
        "run",
        "--rm",
        "--mount",
        "source=v1,target=/v",
        "busybox",
        "sh",
        "-c",
        "echo hi > /v/f",
    ]);
    assert_success(&out, "berth run --mount");
    let out = d.berth(&["run", "--rm", "-v", "v1:/v:ro", "busybox", "cat", "/v/f"]);
    assert_eq!(stdout(&out), "hi\n");
    let out = d.berth(&["volume", "inspect", "-f", "{{.Name}} {{.Labels}}", "v1"]);
    assert_eq!(stdout(&out), "v1 map[a:b]\n");
    let out = d.berth(&["inspect", "--type", "volume", "-f", "{{.Driver}}", "v1"]);
    assert_eq!(stdout(&out), "local\n");
    let out = d.berth(&["volume", "rm", "v1", "nosuch"]);
    assert_failure(&out, "rm of one existing and one missing volume");
    assert_eq!(stdout(&out), "v1\n");
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
    assert!(!Path::new(&d.root().join("volumes/v1")).exists());
}

#[test]
fn an_images_volume_becomes_an_anonymous_volume_with_its_content() {
    let d = Daemon::with_busybox();
    let tar = berth_tests::busybox_rootfs().to_str().unwrap().to_string();
    let out = d.berth(&[
        "import",
        "--change",
        "VOLUME /etc",
        "--change",
        "CMD [\"sh\"]",
        &tar,
        "withvol",
    ]);
    assert_success(&out, "import with VOLUME");
    let out = d.docker(&["run", "--name", "uses", "withvol", "cat", "/etc/passwd"]);
    assert_success(&out, "run an image with a VOLUME");
    assert!(stdout(&out).starts_with("root:"));
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}} {{len .Name}}{{end}}",
        "uses",
    ]);
    assert_eq!(stdout(&out).trim(), "volume /etc 64");
    // A bind over the same path wins over the image's VOLUME.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("passwd"), "mine\n").unwrap();
    let spec = format!("{}:/etc", host.path().display());
    let out = d.docker(&["run", "--rm", "-v", &spec, "withvol", "cat", "/etc/passwd"]);
    assert_eq!(stdout(&out), "mine\n");
    assert_success(&d.docker(&["rm", "-v", "uses"]), "rm -v");
    assert!(volume_names(&d).is_empty(), "{:?}", volume_names(&d));
}
