//! `/v1/admin/aws/certificate-providers` against the in-repo fake AWS IoT (moto has no
//! certificate providers): create, describe, delete; AWS's rules checked before any call;
//! one provider per account; audited; admin only; 503 without AWS.

use std::sync::Arc;

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::fake::FakeIotRegistry;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PATH: &str = "/v1/admin/aws/certificate-providers";
const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:factory-ca-provider";

on_both_backends!(an_admin_creates_describes_and_deletes_the_certificate_provider);

async fn create(app: &TestApp, body: Value) -> reqwest::Response {
    app.admin_json(Method::POST, PATH, body).await
}

async fn an_admin_creates_describes_and_deletes_the_certificate_provider(backend: Backend) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake.clone(), |_| {}).await;

    // AWS's rules, checked before AWS is called.
    for (body, part) in [
        (
            json!({"name": "has space", "lambda_function_arn": LAMBDA}),
            "name",
        ),
        (
            json!({"name": "p", "lambda_function_arn": "arn:aws:iam::123456789012:role/r"}),
            "lambda_function_arn",
        ),
        (
            json!({"name": "p", "lambda_function_arn": LAMBDA,
                   "account_default_for_operations": ["CreateKeysAndCertificate"]}),
            "account_default_for_operations",
        ),
    ] {
        let response = create(&app, body).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem = json(response).await;
        assert_eq!(problem["code"], "invalid_certificate_provider");
        assert!(
            problem["detail"].as_str().unwrap().contains(part),
            "{problem}"
        );
    }
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.contains("CertificateProvider")),
        "nothing was sent to AWS: {:?}",
        fake.calls()
    );

    let response = create(
        &app,
        json!({"name": "factory-ca", "lambda_function_arn": LAMBDA}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        "/v1/admin/aws/certificate-providers/factory-ca"
    );
    let created = json(response).await;
    assert_eq!(created["name"], "factory-ca");
    assert!(
        created["arn"]
            .as_str()
            .unwrap()
            .ends_with(":certificateprovider/factory-ca")
    );

    let described = json(app.get(&app.admin, &format!("{PATH}/factory-ca")).await).await;
    assert_eq!(described["lambda_function_arn"], LAMBDA);
    assert_eq!(
        described["account_default_for_operations"],
        json!(["CreateCertificateFromCsr"])
    );
    assert_eq!(described["arn"], created["arn"]);
    assert!(described["created_at"].is_string(), "{described}");

    // One provider per account: AWS refuses a second, and the refusal is audited.
    let second = create(
        &app,
        json!({"name": "another", "lambda_function_arn": LAMBDA}),
    )
    .await;
    assert_eq!(second.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = json(second).await;
    assert_eq!(problem["code"], "aws_invalid_request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("LimitExceededException"),
        "{problem}"
    );
    let same = create(
        &app,
        json!({"name": "factory-ca", "lambda_function_arn": LAMBDA}),
    )
    .await;
    assert_eq!(json(same).await["code"], "aws_resource_already_exists");

    // Admin only.
    for token in [&app.viewer, &app.station] {
        let response = app.get(token, &format!("{PATH}/factory-ca")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    let deleted = app
        .admin_json(Method::DELETE, &format!("{PATH}/factory-ca"), json!(null))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app.get(&app.admin, &format!("{PATH}/factory-ca")).await;
    assert_eq!(json(gone).await["code"], "aws_resource_not_found");
    let bad_name = app.get(&app.admin, &format!("{PATH}/no%20spaces")).await;
    assert_eq!(json(bad_name).await["code"], "invalid_certificate_provider");

    let audit = json(
        app.get(&app.admin, "/v1/admin/audit?target=factory-ca&limit=10")
            .await,
    )
    .await;
    let mut entries: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            ("aws.certificate_provider.create".into(), "failure".into()),
            ("aws.certificate_provider.create".into(), "success".into()),
            ("aws.certificate_provider.delete".into(), "success".into()),
        ],
        "{audit}"
    );
    let refused = json(
        app.get(&app.admin, "/v1/admin/audit?target=another&outcome=failure")
            .await,
    )
    .await;
    assert_eq!(refused["items"].as_array().unwrap().len(), 1, "{refused}");
}

#[tokio::test]
async fn without_aws_the_certificate_provider_routes_answer_aws_not_configured() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = create(
        &app,
        json!({"name": "factory-ca", "lambda_function_arn": LAMBDA}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["code"], "aws_not_configured");
}
