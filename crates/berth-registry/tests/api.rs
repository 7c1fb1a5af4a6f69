//! Distribution API conformance over real HTTP on 127.0.0.1.

mod common;

use berth_registry::Config;
use common::*;
use serde_json::Value;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn base_endpoint_announces_the_api_version() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let response = client().get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(response.text().await.unwrap(), "{}");
    server.stop().await;
}

#[tokio::test]
async fn monolithic_and_chunked_uploads() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();

    let small = b"hello monolithic".to_vec();
    let digest = digest_of(&small);
    let response = client
        .post(server.url(&format!("/v2/a/b/blobs/uploads/?digest={digest}")))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "location"), format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(header(&response, "docker-content-digest"), digest);
    let head = client
        .head(server.url(&format!("/v2/a/b/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), small.len().to_string());
    assert_eq!(header(&head, "docker-content-digest"), digest);
    let get = client
        .get(server.url(&format!("/v2/a/b/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.bytes().await.unwrap().to_vec(), small);

    // Chunked: POST, PATCH with Content-Range, status, out-of-order 416, PUT with a last chunk.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = digest_of(&data);
    let response = client
        .post(server.url("/v2/a/b/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(header(&response, "range"), "0-0");
    let uuid = header(&response, "docker-upload-uuid");
    let location = header(&response, "location");
    assert_eq!(location, format!("/v2/a/b/blobs/uploads/{uuid}"));

    let response = client
        .patch(server.url(&location))
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(header(&response, "range"), "0-99999");
    assert_eq!(header(&response, "docker-upload-uuid"), uuid);
    let location = header(&response, "location");

    let status = client.get(server.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(header(&status, "range"), "0-99999");

    let out_of_order = client
        .patch(server.url(&location))
        .header("content-range", "150000-199999")
        .body(data[150_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(out_of_order.status(), 416);
    assert_eq!(header(&out_of_order, "range"), "0-99999");
    assert_eq!(error_code(out_of_order).await, "BLOB_UPLOAD_INVALID");

    let response = client
        .patch(server.url(&location))
        .header("content-range", "100000-199999")
        .body(data[100_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(header(&response, "range"), "0-199999");

    let separator = if location.contains('?') { '&' } else { '?' };
    let response = client
        .put(server.url(&format!("{location}{separator}digest={digest}")))
        .body(data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "location"), format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(header(&response, "docker-content-digest"), digest);
    let get = client
        .get(server.url(&format!("/v2/a/b/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.bytes().await.unwrap().to_vec(), data);
    // The session is gone once finished.
    assert_eq!(
        client.get(server.url(&location)).send().await.unwrap().status(),
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();
    let data = b"the real content".to_vec();
    let wrong = digest_of(b"something else");

    let response = client
        .post(server.url("/v2/r/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&response, "location");
    client
        .patch(server.url(&location))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let response = client
        .put(server.url(&format!("{location}?digest={wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");

    let monolithic = client
        .post(server.url(&format!("/v2/r/blobs/uploads/?digest={wrong}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(monolithic.status(), 400);
    assert_eq!(error_code(monolithic).await, "DIGEST_INVALID");

    for digest in [wrong.clone(), digest_of(&data)] {
        let head = client
            .head(server.url(&format!("/v2/r/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 404);
    }
    let get = client
        .get(server.url(&format!("/v2/r/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(get).await, "BLOB_UNKNOWN");
    assert_eq!(
        std::fs::read_dir(root.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(std::fs::read_dir(root.path().join("uploads")).unwrap().count(), 0);
    let status = client.get(server.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), 404);
    assert_eq!(error_code(status).await, "BLOB_UPLOAD_UNKNOWN");
    server.stop().await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();
    let digest = push_blob(&client, &server, "src/repo", b"shared layer").await;

    let response = client
        .post(server.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/dst/repo/blobs/{digest}")
    );
    assert_eq!(header(&response, "docker-content-digest"), digest);
    let head = client
        .head(server.url(&format!("/v2/dst/repo/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // Not in `from`: a normal upload session instead.
    let missing = digest_of(b"nowhere");
    let response = client
        .post(server.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(!header(&response, "docker-upload-uuid").is_empty());
    // A blob in the store but not linked to `from` is not mountable through it.
    let response = client
        .post(server.url(&format!("/v2/third/blobs/uploads/?mount={digest}&from=other")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    server.stop().await;
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"layer bytes";

    // Referenced blobs missing.
    let manifest = image_manifest(config, &[layer], OCI_MANIFEST);
    let response = client
        .put(server.url("/v2/img/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "MANIFEST_BLOB_UNKNOWN");
    let response = client
        .put(server.url("/v2/img/manifests/v1"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "MANIFEST_INVALID");

    push_blob(&client, &server, "img", config).await;
    push_blob(&client, &server, "img", layer).await;
    for (tag, media_type) in [("oci", OCI_MANIFEST), ("docker", DOCKER_MANIFEST)] {
        let manifest = image_manifest(config, &[layer], media_type);
        let digest = digest_of(&manifest);
        let response = client
            .put(server.url(&format!("/v2/img/manifests/{tag}")))
            .header("content-type", media_type)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(header(&response, "docker-content-digest"), digest);
        assert_eq!(
            header(&response, "location"),
            format!("/v2/img/manifests/{digest}")
        );
        for reference in [tag.to_string(), digest.clone()] {
            let url = server.url(&format!("/v2/img/manifests/{reference}"));
            let get = client
                .get(&url)
                .header("accept", media_type)
                .send()
                .await
                .unwrap();
            assert_eq!(get.status(), 200);
            assert_eq!(header(&get, "content-type"), media_type);
            assert_eq!(header(&get, "docker-content-digest"), digest);
            assert_eq!(get.bytes().await.unwrap().to_vec(), manifest);
            let head = client.head(&url).send().await.unwrap();
            assert_eq!(head.status(), 200);
            assert_eq!(header(&head, "content-length"), manifest.len().to_string());
            assert_eq!(header(&head, "docker-content-digest"), digest);
        }
    }

    // Pushed by digest: the digest is verified.
    let manifest = image_manifest(config, &[], OCI_MANIFEST);
    let wrong = digest_of(b"x");
    let response = client
        .put(server.url(&format!("/v2/img/manifests/{wrong}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "DIGEST_INVALID");
    let child = digest_of(&manifest);
    let response = client
        .put(server.url(&format!("/v2/img/manifests/{child}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // An index needs its children in the repository.
    let index = |child: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{ "mediaType": OCI_MANIFEST, "digest": child, "size": 1,
                            "platform": { "architecture": "amd64", "os": "linux" } }],
        }))
        .unwrap()
    };
    let response = client
        .put(server.url("/v2/img/manifests/multi"))
        .body(index(&wrong))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "MANIFEST_BLOB_UNKNOWN");
    let response = client
        .put(server.url("/v2/img/manifests/multi"))
        .body(index(&child))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let get = client
        .get(server.url("/v2/img/manifests/multi"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&get, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );

    let unknown = client
        .get(server.url("/v2/img/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown).await, "MANIFEST_UNKNOWN");
    let invalid = client
        .get(server.url("/v2/Bad/manifests/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    assert_eq!(error_code(invalid).await, "NAME_INVALID");
    server.stop().await;
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();
    for tag in ["t1", "t2", "t3", "t4", "t5"] {
        push_image(&client, &server, "lib/app", tag, b"{}", &[b"l"]).await;
    }
    push_image(&client, &server, "lib/other", "x", b"{}", &[]).await;
    push_image(&client, &server, "zzz", "x", b"{}", &[]).await;

    let mut url = server.url("/v2/lib/app/tags/list?n=2");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let link = header(&response, "link");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["name"], "lib/app");
        seen.extend(
            body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string()),
        );
        pages += 1;
        if link.is_empty() {
            break;
        }
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        let path = link.trim_start_matches('<').split('>').next().unwrap();
        url = server.url(path);
    }
    assert_eq!(seen, ["t1", "t2", "t3", "t4", "t5"]);
    assert_eq!(pages, 3);

    let all: Value = client
        .get(server.url("/v2/lib/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["tags"].as_array().unwrap().len(), 5);
    let missing = client
        .get(server.url("/v2/nothing/here/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(error_code(missing).await, "NAME_UNKNOWN");

    let catalog: Value = client
        .get(server.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["lib/app", "lib/other", "zzz"])
    );
    let page = client
        .get(server.url("/v2/_catalog?n=1&last=lib/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&page, "link"),
        "</v2/_catalog?n=1&last=lib%2Fother>; rel=\"next\""
    );
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["repositories"], serde_json::json!(["lib/other"]));
    server.stop().await;
}

#[tokio::test]
async fn referrers_list_manifests_with_a_subject() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();
    let subject = push_image(&client, &server, "app", "v1", b"{\"os\":\"linux\"}", &[b"layer"]).await;
    let empty = push_blob(&client, &server, "app", b"{}").await;
    let signature = push_blob(&client, &server, "app", b"signature").await;
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2 },
        "layers": [{ "mediaType": "application/octet-stream", "digest": signature, "size": 9 }],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 1 },
        "annotations": { "org.example": "yes" },
    }))
    .unwrap();
    let artifact_digest = digest_of(&artifact);
    let response = client
        .put(server.url(&format!("/v2/app/manifests/{artifact_digest}")))
        .header("content-type", OCI_MANIFEST)
        .body(artifact.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "oci-subject"), subject);

    let response = client
        .get(server.url(&format!("/v2/app/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    let index: Value = response.json().await.unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], artifact_digest);
    assert_eq!(manifests[0]["size"], artifact.len());
    assert_eq!(manifests[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(manifests[0]["annotations"]["org.example"], "yes");

    let filtered = client
        .get(server.url(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/other"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&filtered, "oci-filters-applied"), "artifactType");
    let index: Value = filtered.json().await.unwrap();
    assert!(index["manifests"].as_array().unwrap().is_empty());

    // Deleting the referrer drops it from the list.
    let delete = client
        .delete(server.url(&format!("/v2/app/manifests/{artifact_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 202);
    let index: Value = client
        .get(server.url(&format!("/v2/app/referrers/{subject}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(index["manifests"].as_array().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn deletes_follow_the_configuration() {
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let disabled = TestServer::start(Config {
        root: root.path().to_path_buf(),
        delete_enabled: false,
        ..Config::default()
    })
    .await;
    let digest = push_image(&client, &disabled, "d", "v1", b"{\"a\":1}", &[b"layer-d"]).await;
    let layer = digest_of(b"layer-d");
    let response = client
        .delete(disabled.url(&format!("/v2/d/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(error_code(response).await, "UNSUPPORTED");
    let response = client
        .delete(disabled.url(&format!("/v2/d/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    disabled.stop().await;

    let enabled = TestServer::with_root(root.path()).await;
    let response = client
        .delete(enabled.url(&format!("/v2/d/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let gone = client
        .get(enabled.url(&format!("/v2/d/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(gone).await, "MANIFEST_UNKNOWN");
    let gone = client
        .get(enabled.url("/v2/d/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let tags: Value = client
        .get(enabled.url("/v2/d/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tags["tags"].as_array().unwrap().is_empty());

    let response = client
        .delete(enabled.url(&format!("/v2/d/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let head = client
        .head(enabled.url(&format!("/v2/d/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    // Deleting a tag leaves the manifest reachable by digest.
    let digest = push_image(&client, &enabled, "d", "v2", b"{\"a\":2}", &[]).await;
    let response = client
        .delete(enabled.url("/v2/d/manifests/v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(
        client
            .get(enabled.url("/v2/d/manifests/v2"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let by_digest = client
        .get(enabled.url(&format!("/v2/d/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_digest.status(), 200);
    enabled.stop().await;
}

#[tokio::test]
async fn range_requests_on_blobs() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::with_root(root.path()).await;
    let client = client();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let digest = push_blob(&client, &server, "r", &data).await;
    let url = server.url(&format!("/v2/r/blobs/{digest}"));

    let response = client
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "content-range"), "bytes 10-19/1000");
    assert_eq!(header(&response, "content-length"), "10");
    assert_eq!(response.bytes().await.unwrap().to_vec(), data[10..20]);

    let response = client
        .get(&url)
        .header("range", "bytes=990-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap().to_vec(), data[990..]);

    let response = client
        .get(&url)
        .header("range", "bytes=2000-3000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(header(&response, "content-range"), "bytes */1000");
    server.stop().await;
}

#[tokio::test]
async fn upload_session_survives_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = digest_of(&data);

    let first = TestServer::with_root(root.path()).await;
    let response = client
        .post(first.url("/v2/keep/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&response, "location");
    let response = client
        .patch(first.url(&location))
        .body(data[..1_200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    first.stop().await;

    let second = TestServer::with_root(root.path()).await;
    let status = client.get(second.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(header(&status, "range"), "0-1199999");
    let response = client
        .patch(second.url(&location))
        .header("content-range", "1200000-1999999")
        .body(data[1_200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let response = client
        .put(second.url(&format!("{location}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let get = client
        .get(second.url(&format!("/v2/keep/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.bytes().await.unwrap().to_vec(), data);
    second.stop().await;
}

#[tokio::test]
async fn read_only_mode_refuses_writes() {
    let root = tempfile::tempdir().unwrap();
    let client = client();
    let writable = TestServer::with_root(root.path()).await;
    let digest = push_blob(&client, &writable, "ro", b"before").await;
    writable.stop().await;

    let server = TestServer::start(Config {
        root: root.path().to_path_buf(),
        read_only: true,
        ..Config::default()
    })
    .await;
    let response = client
        .post(server.url("/v2/ro/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(error_code(response).await, "UNSUPPORTED");
    let response = client
        .put(server.url("/v2/ro/manifests/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let get = client
        .get(server.url(&format!("/v2/ro/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.bytes().await.unwrap().as_ref(), b"before");
    server.stop().await;
}
