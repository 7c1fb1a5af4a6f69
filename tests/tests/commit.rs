//! `commit`: a container's changes become a new image, through `berth` and the stock docker CLI.

use berth_tests::{assert_success, stdout, Daemon};

#[test]
fn committed_changes_and_config_changes_reach_the_new_image() {
    let d = Daemon::start();
    d.import_busybox();
    let out = d.berth(&[
        "run",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo committed > /hello.txt",
    ]);
    assert_success(&out, "run");
    let out = d.berth(&[
        "commit",
        "-m",
        "a message",
        "-a",
        "me",
        "-c",
        "CMD [\"cat\", \"/hello.txt\"]",
        "c1",
        "snap:v1",
    ]);
    assert_success(&out, "berth commit");
    assert!(stdout(&out).trim().starts_with("sha256:"), "{}", stdout(&out));
    let out = d.berth(&["run", "--rm", "snap:v1"]);
    assert_success(&out, "run committed image");
    assert_eq!(stdout(&out).trim(), "committed");
    let (status, inspect) = d.api_json("GET", "/images/snap:v1/json", b"");
    assert_eq!(status, 200);
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["cat", "/hello.txt"]));
    assert_eq!(inspect["Author"], "me");
    assert_eq!(inspect["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // The stock CLI, without a tag: the image is still made.
    let out = d.docker(&["commit", "--change", "ENV FOO=bar", "c1", "snap2"]);
    assert_success(&out, "docker commit");
    let (_, inspect) = d.api_json("GET", "/images/snap2/json", b"");
    let env = inspect["Config"]["Env"].to_string();
    assert!(env.contains("FOO=bar"), "{env}");
    let out = d.docker(&["run", "--rm", "snap2", "cat", "/hello.txt"]);
    assert_success(&out, "docker run committed");
    assert_eq!(stdout(&out).trim(), "committed");

    let (status, _) = d.api("POST", "/commit?container=nope", b"");
    assert_eq!(status, 404);
}
