//! The AWS IoT admin endpoints (`/v1/admin/cas/{id}/aws/...`), driven against the in-repo fake
//! registry (`factory_ca::aws::fake`) that enforces AWS's rules, and the fake's rules
//! themselves. The SDK client against moto is in `tests/system/aws_moto.rs`.

use std::sync::Arc;

use crate::common::aws::{device_certificate, test_ca};
use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::fake::FakeIotRegistry;
use factory_ca::aws::{
    AwsError, CaUpdate, CertificateMode, IotRegistry, RegisterCaRequest, RegistrationConfig,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

on_both_backends!(registers_a_ca_with_a_jitp_template_and_manages_it);

const ROLE: &str = "arn:aws:iam::123456789012:role/JITP_Role";

fn simple_template() -> serde_json::Value {
    json!({"simple": {"attributes": {"Country": "Country", "version": "v1"},
                      "policy_name": "My_IoT_Policy", "thing_type": null, "thing_groups": []}})
}

async fn issuing_ca_id(app: &TestApp) -> String {
    json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn registers_a_ca_with_a_jitp_template_and_manages_it(backend: Backend) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake.clone(), |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    let base = format!("/v1/admin/cas/{ca}/aws");

    let preflight = json(app.get(&app.admin, &format!("{base}/preflight")).await).await;
    assert_eq!(preflight["ok"], true, "{preflight}");

    let body = json!({"mode": "default", "activate": true, "auto_registration": true,
                      "role_arn": ROLE, "template": simple_template()});
    let response = app
        .admin_json(Method::POST, &format!("{base}/register"), body.clone())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered = json(response).await;
    let ca_view = json(app.get(&app.admin, &format!("/v1/admin/cas/{ca}")).await).await;
    assert_eq!(
        registered["aws_certificate_id"],
        ca_view["aws_certificate_id"]
    );
    assert_eq!(registered["status"], "ACTIVE");
    assert_eq!(registered["auto_registration"], true);
    assert_eq!(registered["template_kind"], "inline");
    assert_eq!(ca_view["aws"]["mode"], "default");
    assert_eq!(
        fake.calls(),
        [
            "GetRegistrationCode",
            "RegisterCACertificate",
            "DescribeCACertificate"
        ]
    );

    // Idempotent: a second call returns the stored registration, reconciled, without
    // registering again.
    let again = app
        .admin_json(Method::POST, &format!("{base}/register"), body)
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        json(again).await["aws_certificate_id"],
        registered["aws_certificate_id"]
    );
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|c| *c == "RegisterCACertificate")
            .count(),
        1
    );

    // The registration-config file carries the template as an escaped string.
    let config = json(
        app.get(&app.admin, &format!("{base}/registration-config"))
            .await,
    )
    .await;
    assert_eq!(config["roleArn"], ROLE);
    let template: serde_json::Value =
        serde_json::from_str(config["templateBody"].as_str().unwrap()).unwrap();
    assert!(template["Parameters"]["AWS::IoT::Certificate::Country"].is_object());
    assert_eq!(
        template["Resources"]["certificate"]["Properties"]["CertificateId"],
        json!({"Ref": "AWS::IoT::Certificate::Id"})
    );

    // Live state beside ours; no drift, then drift when AWS is changed behind our back.
    let state = json(app.get(&app.admin, &base).await).await;
    assert_eq!(state["drift"], json!([]), "{state}");
    assert_eq!(state["live"]["status"], "ACTIVE");
    let aws_id = registered["aws_certificate_id"].as_str().unwrap();
    fake.update_ca_certificate(
        aws_id,
        CaUpdate {
            auto_registration: Some(false),
            ..CaUpdate::default()
        },
    )
    .await
    .unwrap();
    let state = json(app.get(&app.admin, &base).await).await;
    assert!(
        state["drift"][0]
            .as_str()
            .unwrap()
            .starts_with("auto_registration"),
        "{state}"
    );

    // PATCH: status and auto-registration.
    let patched = app
        .admin_json(
            Method::PATCH,
            &base,
            json!({"status": "inactive", "auto_registration": true}),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let live = fake.describe_ca_certificate(aws_id).await.unwrap();
    assert_eq!(
        (live.status.as_str(), live.auto_registration_status.as_str()),
        ("INACTIVE", "ENABLE")
    );
    let bad = app
        .admin_json(Method::PATCH, &base, json!({"status": "paused"}))
        .await;
    assert_eq!(json(bad).await["code"], "invalid_request");

    // Attach a named template: CreateProvisioningTemplate, then templateName on the CA.
    let put = app
        .admin_json(
            Method::PUT,
            &format!("{base}/template"),
            json!({"role_arn": ROLE, "template": simple_template(), "attach": "named"}),
        )
        .await;
    assert_eq!(put.status(), StatusCode::OK);
    let put = json(put).await;
    assert_eq!(put["template_kind"], "named");
    assert!(
        fake.calls()
            .contains(&"CreateProvisioningTemplate".to_owned())
    );
    let config = json(
        app.get(&app.admin, &format!("{base}/registration-config"))
            .await,
    )
    .await;
    assert_eq!(config, json!({"templateName": put["template_name"]}));

    // DELETE: deactivate, then DeleteCACertificate; the registration is forgotten.
    fake.update_ca_certificate(
        aws_id,
        CaUpdate {
            active: Some(true),
            ..CaUpdate::default()
        },
    )
    .await
    .unwrap();
    let deleted = app
        .client
        .delete(app.url(&base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(matches!(
        fake.describe_ca_certificate(aws_id).await,
        Err(AwsError::NotFound(_))
    ));
    let state = json(app.get(&app.admin, &base).await).await;
    assert!(state["stored"].is_null());

    // Every step is in the audit log.
    let audit = json(app.get(&app.admin, "/v1/admin/audit?limit=50").await).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "ca.aws.register",
        "ca.aws.update",
        "ca.aws.template",
        "ca.aws.delete",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn preflight_catches_template_fields_the_policy_does_not_guarantee_before_aws_sees_them() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake.clone(), |s| {
        s.policy.require_country = false
    })
    .await;
    let ca = issuing_ca_id(&app).await;
    let register_path = format!("/v1/admin/cas/{ca}/aws/register");
    let register = |template: serde_json::Value| {
        app.admin_json(
            Method::POST,
            &register_path,
            json!({"mode": "default", "activate": true, "auto_registration": true, "role_arn": ROLE, "template": template}),
        )
    };

    // Country is read by the template, but the policy lets certificates without C through.
    let response = register(simple_template()).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json(response).await;
    assert_eq!(body["code"], "preflight_failed");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("AWS::IoT::Certificate::Country"),
        "{body}"
    );

    // A raw template with a parameter JITP does not supply.
    let raw = json!({"body": {"Parameters": {"AWS::IoT::Certificate::Email": {"Type": "String"}}, "Resources": {}}});
    let response = register(raw).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(response).await["code"], "invalid_template");

    // A body without a role ARN, and a role ARN that is not an IAM role.
    let no_role = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default", "template": {"simple": {"policy_name": "P"}}}),
        )
        .await;
    assert_eq!(json(no_role).await["code"], "invalid_request");
    let bad_role = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default", "role_arn": "arn:aws:iam::123:user/x", "template": {"simple": {"policy_name": "P"}}}),
        )
        .await;
    assert_eq!(json(bad_role).await["code"], "invalid_template");

    // None of this reached AWS.
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    // The preflight endpoint tells the same once a template is attached; SNI_ONLY needs no
    // registration code.
    let sni = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "sni_only", "activate": false}),
        )
        .await;
    assert_eq!(sni.status(), StatusCode::CREATED);
    assert_eq!(
        fake.calls(),
        ["RegisterCACertificate", "DescribeCACertificate"]
    );
    let attach = app
        .admin_json(
            Method::PUT,
            &format!("/v1/admin/cas/{ca}/aws/template"),
            json!({"role_arn": ROLE, "template": simple_template()}),
        )
        .await;
    assert_eq!(json(attach).await["code"], "preflight_failed");
}

#[tokio::test]
async fn aws_errors_map_to_clear_api_errors_and_no_aws_means_503() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ca = issuing_ca_id(&app).await;
    for (method, path) in [
        (Method::POST, format!("/v1/admin/cas/{ca}/aws/register")),
        (Method::GET, format!("/v1/admin/cas/{ca}/aws")),
    ] {
        let response = app
            .admin_json(method, &path, json!({"mode": "default"}))
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(response).await["code"], "aws_not_configured");
    }
    // Everything else works without AWS.
    assert_eq!(
        app.sign(&csr("NoAws-1", "JP").pem).await.status(),
        StatusCode::CREATED
    );

    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake.clone(), |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    let register_path = format!("/v1/admin/cas/{ca}/aws/register");
    let register = || app.admin_json(Method::POST, &register_path, json!({"mode": "default"}));
    for (error, status, code) in [
        (
            AwsError::Unavailable("throttled".into()),
            StatusCode::BAD_GATEWAY,
            "aws_unavailable",
        ),
        (
            AwsError::Unauthorized("no".into()),
            StatusCode::BAD_GATEWAY,
            "aws_access_denied",
        ),
        (
            AwsError::CertificateValidation("bad".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "aws_certificate_validation",
        ),
    ] {
        fake.fail_next(error);
        let response = register().await;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(json(response).await["code"], code);
    }
    assert!(json(app.get(&app.admin, &format!("/v1/admin/cas/{ca}")).await).await["aws"].is_null());
    let unknown = app
        .get(
            &app.admin,
            "/v1/admin/cas/ca-0000000000000000/aws/preflight",
        )
        .await;
    assert_eq!(json(unknown).await["code"], "ca_not_found");
    let not_registered = app
        .admin_json(
            Method::PATCH,
            &format!("/v1/admin/cas/{ca}/aws"),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(json(not_registered).await["code"], "aws_not_registered");
}

#[tokio::test]
async fn the_fake_enforces_the_aws_rules() {
    let fake = FakeIotRegistry::new();
    let ca = test_ca("Fake Root");
    let code = fake.get_registration_code().await.unwrap();
    let request = |verification: Option<String>, mode| RegisterCaRequest {
        ca_certificate_pem: ca.certificate_pem().to_owned(),
        verification_certificate_pem: verification,
        mode,
        set_as_active: true,
        allow_auto_registration: true,
        registration_config: None,
    };
    let now = OffsetDateTime::now_utc();

    // Verification CN must be the registration code, and the CA must have signed it.
    let wrong_cn = ca.verification_certificate("not-the-code", now).unwrap();
    assert!(matches!(
        fake.register_ca_certificate(request(Some(wrong_cn), CertificateMode::Default))
            .await,
        Err(AwsError::CertificateValidation(_))
    ));
    let other_ca = test_ca("Other Root");
    let foreign = other_ca.verification_certificate(&code, now).unwrap();
    assert!(matches!(
        fake.register_ca_certificate(request(Some(foreign), CertificateMode::Default))
            .await,
        Err(AwsError::CertificateValidation(_))
    ));
    assert!(matches!(
        fake.register_ca_certificate(request(None, CertificateMode::Default))
            .await,
        Err(AwsError::InvalidRequest(_))
    ));
    let good = ca.verification_certificate(&code, now).unwrap();
    assert!(matches!(
        fake.register_ca_certificate(request(Some(good.clone()), CertificateMode::SniOnly))
            .await,
        Err(AwsError::InvalidRequest(_))
    ));

    // A device certificate is not a CA.
    let (device_pem, device_id) = device_certificate(&ca, "Fake-Thing");
    let not_ca = RegisterCaRequest {
        ca_certificate_pem: device_pem.clone(),
        ..request(None, CertificateMode::SniOnly)
    };
    assert!(matches!(
        fake.register_ca_certificate(not_ca).await,
        Err(AwsError::CertificateValidation(_))
    ));

    // Templates may use only the parameters JITP supplies.
    let bad_template = RegisterCaRequest {
        registration_config: Some(RegistrationConfig {
            template_body: Some(
                r#"{"Parameters":{"Email":{"Type":"String"}},"Resources":{}}"#.into(),
            ),
            role_arn: Some(ROLE.into()),
            template_name: None,
        }),
        ..request(Some(good.clone()), CertificateMode::Default)
    };
    assert!(matches!(
        fake.register_ca_certificate(bad_template).await,
        Err(AwsError::InvalidRequest(_))
    ));

    let registered = fake
        .register_ca_certificate(request(Some(good.clone()), CertificateMode::Default))
        .await
        .unwrap();
    assert_eq!(registered.certificate_id, ca.aws_certificate_id());
    assert!(matches!(
        fake.register_ca_certificate(request(Some(good), CertificateMode::Default))
            .await,
        Err(AwsError::AlreadyExists(_))
    ));

    // Delete only when INACTIVE.
    assert!(matches!(
        fake.delete_ca_certificate(&registered.certificate_id).await,
        Err(AwsError::InvalidState(_))
    ));

    // JITP registers a device on first connection; revoked certificates never activate.
    assert_eq!(
        fake.simulate_first_connection(&::pem::parse(&device_pem).unwrap().into_contents())
            .unwrap(),
        device_id
    );
    let page = fake
        .list_certificates_by_ca(&registered.certificate_id, None)
        .await
        .unwrap();
    assert_eq!(page.certificates[0].certificate_id, device_id);
    let (second_pem, second_id) = device_certificate(&ca, "Fake-Thing-2");
    fake.register_certificate(&second_pem, ca.certificate_pem(), "REVOKED")
        .await
        .unwrap();
    assert!(
        fake.simulate_first_connection(&::pem::parse(&second_pem).unwrap().into_contents())
            .is_err()
    );
    assert_eq!(
        fake.describe_certificate(&second_id).await.unwrap().status,
        "REVOKED"
    );

    fake.update_ca_certificate(
        &registered.certificate_id,
        CaUpdate {
            active: Some(false),
            ..CaUpdate::default()
        },
    )
    .await
    .unwrap();
    fake.delete_ca_certificate(&registered.certificate_id)
        .await
        .unwrap();
}

async fn revoke(app: &TestApp, serial: &str) -> serde_json::Value {
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/certificates/{serial}/revoke"),
            json!({"reason": "key_compromise"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

async fn register_with_template(app: &TestApp, ca: &str) {
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default", "activate": true, "auto_registration": true, "role_arn": ROLE, "template": simple_template()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

on_both_backends!(revocations_reach_aws_and_sync_marks_devices_that_connected);

async fn revocations_reach_aws_and_sync_marks_devices_that_connected(backend: Backend) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake.clone(), |s| {
        s.aws.revocation_retry_secs = std::time::Duration::from_secs(1)
    })
    .await;
    let ca = issuing_ca_id(&app).await;

    // Revoked before the CA is registered: pending until registration pushes it.
    let early = json(app.sign(&csr("Early-1", "JP").pem).await).await;
    let revoked = revoke(&app, early["serial"].as_str().unwrap()).await;
    assert_eq!(revoked["aws_revocation_pending"], true);
    register_with_template(&app, &ca).await;
    let early_id = early["aws_certificate_id"].as_str().unwrap();
    assert_eq!(
        fake.describe_certificate(early_id).await.unwrap().status,
        "REVOKED"
    );
    let row = json(
        app.get(
            &app.viewer,
            &format!("/v1/certificates/{}", early["serial"].as_str().unwrap()),
        )
        .await,
    )
    .await;
    assert_eq!(row["aws_revocation_pending"], false);

    // One device connects, one never does; sync tells them apart.
    let connected = json(app.sign(&csr("Connected-1", "JP").pem).await).await;
    let silent = json(app.sign(&csr("Silent-1", "JP").pem).await).await;
    let der = ::pem::parse(connected["certificate_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    fake.simulate_first_connection(&der).unwrap();
    let sync = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/sync"),
            json!({}),
        )
        .await;
    assert_eq!(sync.status(), StatusCode::OK);
    let report = json(sync).await;
    assert_eq!(
        (report["listed"].as_u64(), report["matched"].as_u64()),
        (Some(2), Some(2)),
        "{report}"
    );
    let active = json(
        app.get(&app.viewer, "/v1/certificates?aws_status=ACTIVE")
            .await,
    )
    .await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    assert_eq!(active["items"][0]["serial"], connected["serial"]);
    assert!(active["items"][0]["aws_first_seen_at"].is_string());
    let never = json(
        app.get(&app.viewer, "/v1/certificates?aws_status=never_seen")
            .await,
    )
    .await;
    let never: Vec<_> = never["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["serial"].clone())
        .collect();
    assert_eq!(never, vec![silent["serial"].clone()]);

    // Revoking a device AWS knows: UpdateCertificate; one it never saw: RegisterCertificate
    // as REVOKED, so JITP can never activate it.
    revoke(&app, connected["serial"].as_str().unwrap()).await;
    let connected_id = connected["aws_certificate_id"].as_str().unwrap();
    assert_eq!(
        fake.describe_certificate(connected_id)
            .await
            .unwrap()
            .status,
        "REVOKED"
    );
    revoke(&app, silent["serial"].as_str().unwrap()).await;
    let silent_der = ::pem::parse(silent["certificate_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    assert!(fake.simulate_first_connection(&silent_der).is_err());
    // AWS holds it as REVOKED now, as a sync would report: no longer "never seen", and still
    // no first connection.
    let silent_row = revoke_answer_row(&app, silent["serial"].as_str().unwrap()).await;
    assert_eq!(silent_row["aws_status"], "REVOKED", "{silent_row}");
    assert!(silent_row["aws_first_seen_at"].is_null(), "{silent_row}");
    let never = json(
        app.get(&app.viewer, "/v1/certificates?aws_status=never_seen")
            .await,
    )
    .await;
    assert!(never["items"].as_array().unwrap().is_empty(), "{never}");

    // AWS down at revocation time: the ledger revokes, the push waits and is retried.
    let later = json(app.sign(&csr("Later-1", "JP").pem).await).await;
    fake.fail_next(AwsError::Unavailable("throttled".into()));
    let revoked = revoke(&app, later["serial"].as_str().unwrap()).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["aws_revocation_pending"], true);
    let path = format!("/v1/certificates/{}", later["serial"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let row = json(app.get(&app.viewer, &path).await).await;
        if row["aws_revocation_pending"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retry job did not push the revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let later_id = later["aws_certificate_id"].as_str().unwrap();
    assert_eq!(
        fake.describe_certificate(later_id).await.unwrap().status,
        "REVOKED"
    );
}

#[tokio::test]
async fn template_preview_shows_the_thing_a_device_would_become() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake, |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    register_with_template(&app, &ca).await;
    let issued = json(app.sign(&csr("Preview-1", "DE").pem).await).await;

    let by_serial = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/template/preview"),
            json!({"serial": issued["serial"]}),
        )
        .await;
    assert_eq!(by_serial.status(), StatusCode::OK);
    let by_serial = json(by_serial).await;
    assert_eq!(by_serial["would_provision"], true, "{by_serial}");
    assert_eq!(by_serial["preview"]["thing_name"], "Preview-1");
    assert_eq!(
        by_serial["preview"]["attributes"],
        json!({"Country": "DE", "version": "v1"})
    );
    assert_eq!(
        by_serial["preview"]["policy_names"],
        json!(["My_IoT_Policy"])
    );

    // A template tried before attaching, reading a field this CSR lacks.
    let with_org = json!({"simple": {"attributes": {"org": "Organization"}, "policy_name": "P"}});
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/template/preview"),
            json!({"csr": csr("Preview-2", "JP").pem, "template": with_org}),
        )
        .await;
    let answer = json(response).await;
    assert_eq!(answer["would_provision"], false);
    assert_eq!(
        answer["missing_field"],
        "AWS::IoT::Certificate::Organization"
    );

    let neither = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/template/preview"),
            json!({}),
        )
        .await;
    assert_eq!(json(neither).await["code"], "invalid_request");
}

/// A ledger row as `GET /v1/certificates/{serial}` shows it.
async fn revoke_answer_row(app: &TestApp, serial: &str) -> serde_json::Value {
    json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await
}
