//! The image commands through the stock docker CLI (28.2.2) and through `berth`, against a real
//! berthd: each checked for its real output.

use berth_tests::{assert_failure, assert_success, stderr, stdout, Daemon};

/// Runs the same scenario through either CLI.
fn image_lifecycle(d: &Daemon, cli: &dyn Fn(&[&str]) -> std::process::Output, name: &str) {
    let out = cli(&["version", "--format", "{{.Server.Version}}"]);
    assert_success(&out, "version");
    assert_eq!(
        stdout(&out).trim(),
        env!("CARGO_PKG_VERSION"),
        "{name}: server version"
    );

    let out = cli(&["info", "--format", "{{.Images}} {{.OSType}} {{.Driver}}"]);
    assert_success(&out, "info");
    assert_eq!(stdout(&out).trim(), "1 linux overlay", "{name}: info");

    // images: the default table has docker's columns and our busybox.
    let out = cli(&["images"]);
    assert_success(&out, "images");
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{name}: header {header:?}"
    );
    let row = lines.next().expect("a row");
    assert!(row.starts_with("busybox      latest    "), "{name}: row {row:?}");

    // tag, then list with a template and a reference filter.
    assert_success(&cli(&["tag", "busybox", "localhost:5000/team/app:v1"]), "tag");
    let out = cli(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        "reference=localhost:5000/*/*",
    ]);
    assert_success(&out, "images --filter");
    assert_eq!(
        stdout(&out).trim(),
        "localhost:5000/team/app:v1",
        "{name}: reference filter"
    );

    // inspect: the image's real config, through a template and as JSON.
    let out = cli(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{.Os}} {{len .RootFS.Layers}}",
        "busybox",
    ]);
    assert_success(&out, "image inspect");
    assert_eq!(stdout(&out).trim(), r#"["sh"] linux 1"#, "{name}: inspect");
    let out = cli(&["inspect", "localhost:5000/team/app:v1"]);
    assert_success(&out, "inspect");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let tags: Vec<&str> = v[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        ["busybox:latest", "localhost:5000/team/app:v1"],
        "{name}: RepoTags"
    );

    // history: one imported layer with its comment and size.
    let out = cli(&["history", "busybox"]);
    assert_success(&out, "history");
    let text = stdout(&out);
    assert!(
        text.starts_with("IMAGE          CREATED"),
        "{name}: history header: {text}"
    );
    assert!(
        text.contains("Imported from -"),
        "{name}: history comment: {text}"
    );
    assert!(text.contains("MB"), "{name}: history size: {text}");

    // save -o: a docker-archive with manifest.json and an OCI index.
    let tar = d.dir.path().join(format!("{name}-saved.tar"));
    assert_success(&cli(&["save", "-o", tar.to_str().unwrap(), "busybox"]), "save");
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = stdout(&listing);
    for f in ["manifest.json", "index.json", "oci-layout"] {
        assert!(
            listing.lines().any(|l| l == f),
            "{name}: saved archive lacks {f}: {listing}"
        );
    }

    // rmi by name untags; the last name deletes.
    let out = cli(&["rmi", "localhost:5000/team/app:v1"]);
    assert_success(&out, "rmi tag");
    assert_eq!(
        stdout(&out).trim(),
        "Untagged: localhost:5000/team/app:v1",
        "{name}: rmi untag"
    );
    let out = cli(&["rmi", "busybox"]);
    assert_success(&out, "rmi last tag");
    let text = stdout(&out);
    assert!(
        text.starts_with("Untagged: busybox:latest\nDeleted: sha256:"),
        "{name}: rmi delete: {text}"
    );
    let out = cli(&["images", "-q"]);
    assert_eq!(stdout(&out).trim(), "", "{name}: store is empty after rmi");

    // load -i brings it back with its tag.
    let out = cli(&["load", "-i", tar.to_str().unwrap()]);
    assert_success(&out, "load");
    assert_eq!(
        stdout(&out).trim(),
        "Loaded image: busybox:latest",
        "{name}: load"
    );
    let out = cli(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(stdout(&out).trim(), "busybox:latest", "{name}: after load");

    // image prune: only dangling images go.
    assert_success(&cli(&["tag", "busybox", "keep:me"]), "tag keep");
    assert_success(&cli(&["rmi", "keep:me"]), "untag keep");
    let out = cli(&["image", "prune", "-f"]);
    assert_success(&out, "image prune");
    assert!(
        stdout(&out).contains("Total reclaimed space: 0B"),
        "{name}: prune of a tagged image: {}",
        stdout(&out)
    );
    let out = cli(&["images", "-q"]);
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "{name}: tagged image survives prune"
    );

    // errors: unknown image, on stderr, non-zero exit.
    let out = cli(&["rmi", "nosuchimage"]);
    assert_failure(&out, "rmi of a missing image");
    assert!(
        stderr(&out).contains("No such image: nosuchimage:latest"),
        "{name}: {}",
        stderr(&out)
    );
}

#[test]
fn docker_cli_drives_the_image_lifecycle() {
    let d = Daemon::start();
    d.import_busybox();
    image_lifecycle(&d, &|args| d.docker(args), "docker");
}

#[test]
fn berth_cli_drives_the_image_lifecycle() {
    let d = Daemon::start();
    d.import_busybox();
    image_lifecycle(&d, &|args| d.berth(args), "berth");
}

#[test]
fn import_applies_changes_and_message() {
    let d = Daemon::start();
    let tar = berth_tests::busybox_rootfs().to_str().unwrap().to_string();
    let out = d.berth(&[
        "import",
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /srv",
        "-c",
        "EXPOSE 8080",
        "-c",
        "USER nobody",
        "-c",
        "LABEL team=core",
        "-c",
        r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
        "-m",
        "made by test",
        &tar,
        "custom:1",
    ]);
    assert_success(&out, "import with changes");
    let id = stdout(&out).trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import prints the image ID: {id}"
    );
    let out = d.docker(&[
        "image", "inspect", "--format",
        "{{json .Config.Env}}|{{.Config.WorkingDir}}|{{json .Config.ExposedPorts}}|{{.Config.User}}|{{.Config.Labels.team}}|{{json .Config.Entrypoint}}",
        "custom:1",
    ]);
    assert_success(&out, "inspect imported");
    assert_eq!(
        stdout(&out).trim(),
        r#"["GREETING=hello"]|/srv|{"8080/tcp":{}}|nobody|core|["/bin/sh","-c"]"#
    );
    let out = d.berth(&["history", "--format", "{{.Comment}}", "custom:1"]);
    assert_eq!(stdout(&out).trim(), "made by test");
    // The image list filters by label, as docker's does.
    let out = d.docker(&[
        "images",
        "--filter",
        "label=team=core",
        "--format",
        "{{.Repository}}",
    ]);
    assert_eq!(stdout(&out).trim(), "custom");
    let out = d.docker(&["images", "--filter", "label=team=other", "-q"]);
    assert_eq!(stdout(&out).trim(), "");
    // A bad change is refused, and nothing is added.
    let out = d.berth(&["import", "-c", "FROBNICATE x", &tar, "bad:1"]);
    assert_failure(&out, "import with a bad change");
    assert!(stderr(&out).contains("FROBNICATE"), "{}", stderr(&out));
    assert_eq!(stdout(&d.berth(&["images", "-q"])).lines().count(), 1);
}

#[test]
fn rmi_by_id_with_several_repositories_needs_force() {
    let d = Daemon::start();
    let id = d.import_busybox();
    assert_success(&d.berth(&["tag", "busybox", "other/name:x"]), "tag");
    let short = &id["sha256:".len().."sha256:".len() + 12];
    let out = d.docker(&["rmi", short]);
    assert_failure(&out, "rmi by id of a multiply-tagged image");
    assert!(
        stderr(&out).contains(&format!(
            "unable to delete {short} (must be forced) - image is referenced in multiple repositories"
        )),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["rmi", "-f", short]);
    assert_success(&out, "rmi -f by id");
    let text = stdout(&out);
    assert!(
        text.contains("Untagged: busybox:latest") && text.contains("Untagged: other/name:x"),
        "{text}"
    );
    assert!(text.contains(&format!("Deleted: {id}")), "{text}");
    // Layers and blobs are gone from disk too.
    let layers = std::fs::read_dir(d.root().join("layers")).unwrap().count();
    let blobs = std::fs::read_dir(d.root().join("content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        (layers, blobs),
        (0, 0),
        "store on disk after deleting the only image"
    );
}

#[test]
fn save_of_a_repository_name_saves_all_its_tags() {
    let d = Daemon::start();
    d.import_busybox();
    assert_success(&d.berth(&["tag", "busybox", "busybox:1.36"]), "tag");
    let tar = d.dir.path().join("all.tar");
    assert_success(
        &d.berth(&["save", "-o", tar.to_str().unwrap(), "busybox"]),
        "save repo",
    );
    assert_success(
        &d.berth(&["rmi", "-f", "busybox:latest", "busybox:1.36"]),
        "rmi both",
    );
    let out = d.berth(&["load", "-i", tar.to_str().unwrap()]);
    assert_success(&out, "load");
    let mut tags: Vec<String> = stdout(&out).lines().map(String::from).collect();
    tags.sort();
    assert_eq!(
        tags,
        ["Loaded image: busybox:1.36", "Loaded image: busybox:latest"]
    );
}

#[test]
fn bad_flags_exit_125_and_errors_go_to_stderr() {
    let d = Daemon::start();
    let out = d.berth(&["images", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--no-such-flag"));
    let out = d.berth(&["image", "inspect", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No such image: missing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), "[]");
    let out = d.berth(&["images", "--format", "{{.Nope"]);
    assert_failure(&out, "bad template");
    assert!(
        stderr(&out).to_lowercase().contains("template"),
        "{}",
        stderr(&out)
    );
    let out = d.berth(&["tag", "busybox", "Bad/Name"]);
    assert_failure(&out, "tag with an invalid name");
}

#[test]
fn system_df_counts_images() {
    let d = Daemon::start();
    d.import_busybox();
    let out = d.docker(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert_success(&out, "system df");
    assert!(stdout(&out).lines().any(|l| l == "Images 1"), "{}", stdout(&out));
    let out = d.berth(&["system", "df"]);
    assert_success(&out, "berth system df");
    let images_line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("Images"))
        .unwrap()
        .to_string();
    assert!(images_line.contains("MB"), "{images_line}");
}
