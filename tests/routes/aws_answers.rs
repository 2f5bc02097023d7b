//! What the AWS IoT routes say back: AWS's own words when AWS refuses (code, message, HTTP
//! status, request id; never the SDK's debug dump), requested versus actual settings after a
//! register or PATCH, and the JITP-readiness of auto-registration. Against the in-repo fake.

use std::sync::Arc;

use crate::common::*;
use factory_ca::aws::fake::FakeIotRegistry;
use factory_ca::aws::{AwsError, AwsFailure, CaUpdate, IotRegistry};
use reqwest::{Method, StatusCode};
use serde_json::json;

const ROLE: &str = "arn:aws:iam::123456789012:role/JITP_Role";

fn simple_template() -> serde_json::Value {
    json!({"simple": {"attributes": {"Country": "Country"},
                      "policy_name": "My_IoT_Policy", "thing_type": null, "thing_groups": []}})
}

async fn issuing_ca_id(app: &TestApp) -> String {
    json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn last_audit(app: &TestApp, action: &str) -> serde_json::Value {
    let page = json(
        app.get(
            &app.admin,
            &format!("/v1/admin/audit?action={action}&limit=1"),
        )
        .await,
    )
    .await;
    page["items"][0].clone()
}

#[tokio::test]
async fn aws_refusals_show_awss_code_message_status_and_request_id_in_detail_and_audit() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake.clone(), |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    let base = format!("/v1/admin/cas/{ca}/aws");
    let response = app
        .admin_json(
            Method::POST,
            &format!("{base}/register"),
            json!({"mode": "default", "activate": true, "auto_registration": true,
                   "role_arn": ROLE, "template": simple_template()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // AWS refuses the named template (as the SDK reports it: code, message, status, id).
    fake.fail_next(AwsError::InvalidRequest(AwsFailure {
        code: Some("InvalidRequestException".into()),
        message: "The provisioning template does not exist".into(),
        http_status: Some(400),
        request_id: Some("6c1e3f0a-1111-4a4a-9b9b-0123456789ab".into()),
    }));
    let response = app
        .admin_json(
            Method::PUT,
            &format!("{base}/template"),
            json!({"role_arn": ROLE, "template": simple_template(), "attach": "named"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = json(response).await;
    assert_eq!(problem["code"], "aws_invalid_request");
    let detail = problem["detail"].as_str().unwrap();
    assert_eq!(
        detail,
        "AWS IoT rejected the request: InvalidRequestException: The provisioning template does \
         not exist (HTTP 400, request id 6c1e3f0a-1111-4a4a-9b9b-0123456789ab)"
    );
    let audit = last_audit(&app, "ca.aws.template").await;
    assert_eq!(audit["outcome"], "failure");
    assert_eq!(audit["detail"], detail);

    // A CA deleted in AWS behind factory-ca's back: the fake answers as AWS does.
    let id = json(app.get(&app.admin, &base).await).await["stored"]["aws_certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.update_ca_certificate(
        &id,
        CaUpdate {
            active: Some(false),
            ..CaUpdate::default()
        },
    )
    .await
    .unwrap();
    fake.delete_ca_certificate(&id).await.unwrap();
    let response = app
        .admin_json(Method::PATCH, &base, json!({"status": "inactive"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let problem = json(response).await;
    assert_eq!(problem["code"], "aws_resource_not_found");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("ResourceNotFoundException: CA certificate ")
            && detail.contains("(HTTP 404, request id fake-"),
        "{detail}"
    );
    assert!(detail.len() < 300, "{detail}");
    let audit = last_audit(&app, "ca.aws.update").await;
    assert_eq!(audit["outcome"], "failure", "{audit}");
    assert_eq!(audit["detail"], detail);
}
