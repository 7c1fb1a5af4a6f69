//! Authentication and authorization: htpasswd basic auth, the access list, Docker token auth, TLS.

mod common;

use std::path::Path;

use berth_registry::config::{AccessRule, AuthConfig, TlsFiles, TokenConfig};
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

fn rules() -> Vec<AccessRule> {
    vec![
        AccessRule {
            account: "alice".into(),
            name: "*".into(),
            actions: vec!["*".into()],
        },
        AccessRule {
            account: "bob".into(),
            name: "team/*".into(),
            actions: vec!["pull".into()],
        },
    ]
}

fn users(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("htpasswd");
    write_htpasswd(&path, &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    path
}

#[tokio::test]
async fn htpasswd_basic_auth_and_access_list() {
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::start(Config {
        root: work.path().join("root"),
        auth: AuthConfig::Htpasswd {
            realm: "corp registry".into(),
            path: users(work.path()),
        },
        access: rules(),
        ..Config::default()
    })
    .await;
    let client = client();
    let upload = server.url("/v2/team/app/blobs/uploads/");

    let response = client.post(&upload).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(&response, "www-authenticate"),
        "Basic realm=\"corp registry\""
    );
    assert_eq!(error_code(response).await, "UNAUTHORIZED");
    let response = client
        .get(server.url("/v2/"))
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .get(server.url("/v2/"))
        .basic_auth("mallory", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .get(server.url("/v2/"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let digest = digest_of(b"private layer");
    let pushed = client
        .post(server.url(&format!("/v2/team/app/blobs/uploads/?digest={digest}")))
        .basic_auth("alice", Some("alice-pw"))
        .body("private layer")
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);

    // bob may pull team/* but not push, and nothing elsewhere.
    let blob = server.url(&format!("/v2/team/app/blobs/{digest}"));
    let pulled = client
        .get(&blob)
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    let denied = client
        .post(&upload)
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(error_code(denied).await, "DENIED");
    let denied = client
        .get(server.url(&format!("/v2/elsewhere/blobs/{digest}")))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    // The catalog shows each user what they may pull.
    for repo in ["team/app", "elsewhere/app"] {
        let config = b"{}";
        let digest = digest_of(config);
        let pushed = client
            .post(server.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .basic_auth("alice", Some("alice-pw"))
            .body(&config[..])
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 201);
        let manifest = image_manifest(config, &[], OCI_MANIFEST);
        let pushed = client
            .put(server.url(&format!("/v2/{repo}/manifests/v1")))
            .basic_auth("alice", Some("alice-pw"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 201);
    }
    for (user, password, expected) in [
        (
            "alice",
            "alice-pw",
            serde_json::json!(["elsewhere/app", "team/app"]),
        ),
        ("bob", "bob-pw", serde_json::json!(["team/app"])),
    ] {
        let response = client
            .get(server.url("/v2/_catalog"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["repositories"], expected, "{user}");
    }
    server.stop().await;
}

fn token_config(work: &Path, realm: Option<String>) -> Config {
    Config {
        root: work.join("root"),
        auth: AuthConfig::Token(TokenConfig {
            htpasswd: users(work),
            realm,
            service: "corp-registry".into(),
            issuer: "berth-test".into(),
            signing_key: None,
            expiration: 300,
        }),
        access: rules(),
        ..Config::default()
    }
}

async fn fetch_token(
    client: &reqwest::Client,
    server: &TestServer,
    user: &str,
    password: &str,
    scope: &str,
) -> reqwest::Response {
    client
        .get(server.url("/token"))
        .query(&[("service", "corp-registry"), ("scope", scope)])
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_flow_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::start(token_config(work.path(), None)).await;
    let client = client();

    let response = client.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let realm = server.url("/token");
    assert_eq!(
        header(&response, "www-authenticate"),
        format!("Bearer realm=\"{realm}\",service=\"corp-registry\"")
    );
    let upload = server.url("/v2/team/app/blobs/uploads/");
    let response = client.post(&upload).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(&response, "www-authenticate"),
        format!("Bearer realm=\"{realm}\",service=\"corp-registry\",scope=\"repository:team/app:pull,push\"")
    );

    assert_eq!(
        fetch_token(
            &client,
            &server,
            "alice",
            "wrong",
            "repository:team/app:pull,push"
        )
        .await
        .status(),
        401
    );
    let response = fetch_token(
        &client,
        &server,
        "alice",
        "alice-pw",
        "repository:team/app:pull,push",
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], token.as_str());
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().contains('T'));

    let digest = digest_of(b"token layer");
    let pushed = client
        .post(server.url(&format!("/v2/team/app/blobs/uploads/?digest={digest}")))
        .bearer_auth(&token)
        .body("token layer")
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    // The token is for team/app only.
    let other = client
        .post(server.url("/v2/team/other/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    let tampered = format!("{token}x");
    let response = client
        .get(server.url("/v2/"))
        .bearer_auth(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // bob asks for pull,push and gets pull only: pulling works, pushing is insufficient_scope.
    let response = fetch_token(&client, &server, "bob", "bob-pw", "repository:team/app:pull,push").await;
    let bob: Value = response.json().await.unwrap();
    let bob = bob["token"].as_str().unwrap().to_string();
    let pulled = client
        .get(server.url(&format!("/v2/team/app/blobs/{digest}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), b"token layer");
    let denied = client.post(&upload).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(header(&denied, "www-authenticate").contains("error=\"insufficient_scope\""));
    assert_eq!(error_code(denied).await, "DENIED");

    // containerd's OAuth2 password grant.
    let response = client
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=alice&password=alice-pw&service=corp-registry&client_id=test&scope=repository%3Ateam%2Fapp%3Apull")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "repository:team/app:pull");
    let oauth = body["access_token"].as_str().unwrap().to_string();
    let pulled = client
        .get(server.url(&format!("/v2/team/app/blobs/{digest}")))
        .bearer_auth(&oauth)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    let response = client
        .post(server.url("/token"))
        .body("grant_type=password&username=alice&password=bad&scope=repository%3Ateam%2Fapp%3Apull")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The catalog needs registry:catalog:*.
    let catalog = client
        .get(server.url("/v2/_catalog"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(catalog.status(), 401);
    let response = fetch_token(&client, &server, "alice", "alice-pw", "registry:catalog:*").await;
    let catalog_token: Value = response.json().await.unwrap();
    let catalog = client
        .get(server.url("/v2/_catalog"))
        .bearer_auth(catalog_token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(catalog.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn tls_with_a_certificate() {
    let work = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert_path = work.path().join("cert.pem");
    let key_path = work.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let server = TestServer::start(Config {
        root: work.path().join("root"),
        tls: Some(TlsFiles {
            certificate: cert_path,
            key: key_path,
        }),
        ..Config::default()
    })
    .await;
    assert!(server.base.starts_with("https://"));

    let untrusting = reqwest::Client::new();
    assert!(
        untrusting.get(server.url("/v2/")).send().await.is_err(),
        "an unknown CA is refused"
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = client.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let digest = digest_of(b"over tls");
    let response = client
        .post(server.url(&format!("/v2/secure/blobs/uploads/?digest={digest}")))
        .body("over tls")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body = client
        .get(server.url(&format!("/v2/secure/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(body.bytes().await.unwrap().as_ref(), b"over tls");
    server.stop().await;
}
