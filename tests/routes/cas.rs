//! `/v1/admin/cas`: creating, importing and activating CAs over the API (rotation of the
//! issuing CA), and the import refusing what AWS IoT would refuse.

use crate::common::aws::{device_certificate, test_ca};
use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn issuing_ca_id(app: &TestApp) -> String {
    json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn ca_management_creates_imports_and_rotates_the_issuing_ca() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let first = issuing_ca_id(&app).await;
    let created = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"algorithm": "ecdsa-p384", "subject": {"common_name": "Line Root 2", "country": "JP"}, "validity_days": 365}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    assert_eq!(created["is_issuing"], false);
    assert!(created.get("private_key_pem").is_none());
    let second = created["id"].as_str().unwrap();

    let activated = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{second}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(activated.status(), StatusCode::OK);
    let issued = json(app.sign(&csr("Rotated-1", "JP").pem).await).await;
    assert_eq!(issued["issuing_ca"], second);
    let list = json(app.get(&app.admin, "/v1/admin/cas").await).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|c| c["is_issuing"] == true).count(), 1);
    assert!(items.iter().any(|c| c["id"] == first.as_str()));
    for item in items {
        // File keys show where their file is, relative to the data directory.
        let id = item["id"].as_str().unwrap();
        assert_eq!(item["key_uri"], format!("file:keys/{id}.key.pem"));
    }

    // Import over the API; a non-CA certificate is refused with the AWS explanation.
    let ca = test_ca("Imported Over API");
    let (device_pem, _) = device_certificate(&ca, "Not-A-CA");
    let refused = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas/import",
            json!({"certificate_pem": device_pem, "private_key_pem": "x"}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = json(refused).await;
    assert_eq!(refused["code"], "ca_rejected");
    assert!(refused["detail"].as_str().unwrap().contains("CA:TRUE"));
    let viewer = app.get(&app.viewer, "/v1/admin/cas").await;
    assert_eq!(viewer.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_ca_key_uri_that_cannot_name_a_token_key_is_refused_before_anything_is_made() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let before = json(app.get(&app.admin, "/v1/admin/cas").await).await["items"]
        .as_array()
        .unwrap()
        .len();
    let cases = [
        // A PIN is never stored with a CA, so never accepted in its URI (nor echoed).
        (
            "pkcs11:token=line;object=root?pin-value=123456",
            "a PIN is never stored",
        ),
        ("pkcs11:token=line", "both the token and the object"),
        (
            "gcpkms:projects/p/keys/k",
            "starts with pkcs11: (a key in a PKCS#11 token) or awskms: (a key in AWS KMS)",
        ),
        ("awskms:", "names no key"),
        ("awskms:alias/root?region=eu-west-1", "nothing else"),
        // This app has no [pkcs11] module.
        (
            "pkcs11:token=line;object=root",
            "no PKCS#11 module is configured: set pkcs11.module",
        ),
        (
            "pkcs11:token=line;object=root?module-path=/nonexistent/module.so",
            "(module-path in the key URI) cannot be loaded",
        ),
    ];
    for (key_uri, expected) in cases {
        let refused = app
            .admin_json(
                Method::POST,
                "/v1/admin/cas",
                json!({"subject": {"common_name": "HSM Root"}, "key_uri": key_uri}),
            )
            .await;
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{key_uri}"
        );
        let refused = json(refused).await;
        assert_eq!(refused["code"], "ca_rejected", "{key_uri}");
        let detail = refused["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{key_uri}: {detail}");
        assert!(!detail.contains("123456"), "{detail}");
    }
    // The subject is checked before the token is asked for a key.
    let refused = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"subject": {"common_name": "HSM Root", "country": "XX"},
                   "key_uri": "pkcs11:token=line;object=root"}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let detail = json(refused).await["detail"].as_str().unwrap().to_owned();
    assert!(!detail.contains("PKCS#11"), "{detail}");
    let after = json(app.get(&app.admin, "/v1/admin/cas").await).await["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "nothing was recorded");
}

#[tokio::test]
async fn a_kms_key_that_cannot_be_reached_is_signer_unavailable_and_nothing_is_made() {
    // A KMS endpoint on a loopback port nobody listens on: the connection is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::spawn_with(Backend::Sqlite, |settings| {
        settings.aws.kms_endpoint_url = Some(url.clone());
        settings.aws.max_attempts = 1;
    })
    .await;
    let refused = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"subject": {"common_name": "KMS Root"}, "key_uri": "awskms:alias/root"}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused = json(refused).await;
    assert_eq!(refused["code"], "signer_unavailable");
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("AWS KMS at {url} (aws.kms_endpoint_url)"))
            && detail.contains("was not reached"),
        "{detail}"
    );
    let cas = json(app.get(&app.admin, "/v1/admin/cas").await).await;
    assert!(
        cas["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ca| !ca["key_uri"].as_str().unwrap().starts_with("awskms:")),
        "{cas}"
    );
}
