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

fn item<'a>(outcome: &'a serde_json::Value, field: &str) -> &'a serde_json::Value {
    outcome["requested_vs_actual"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == field)
        .unwrap_or_else(|| panic!("no {field} in {outcome}"))
}

#[tokio::test]
async fn register_and_patch_state_requested_versus_actual_and_name_each_difference() {
    let fake = Arc::new(FakeIotRegistry::new());
    // AWS (here: the fake, as the moto emulator does) accepts the flag and keeps it off.
    fake.ignore_auto_registration();
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
    let outcome = json(response).await;
    // The stored registration is still at the top level, now AWS's view.
    assert_eq!(outcome["auto_registration"], false);
    assert_eq!(outcome["status"], "ACTIVE");
    let auto = item(&outcome, "auto_registration");
    assert_eq!(
        (&auto["requested"], &auto["actual"], &auto["matches"]),
        (&json!(true), &json!(false), &json!(false))
    );
    for (field, value) in [
        ("status", "ACTIVE"),
        ("mode", "DEFAULT"),
        ("template", "inline"),
    ] {
        let f = item(&outcome, field);
        assert_eq!(
            (&f["requested"], &f["actual"]),
            (&json!(value), &json!(value))
        );
        assert_eq!(f["matches"], true);
    }
    assert_eq!(
        outcome["differences"],
        json!(["auto_registration: requested true, AWS says false"])
    );
    let warnings = outcome["warnings"].to_string();
    assert!(
        warnings.contains("jitp_ready: auto_registration is off"),
        "{warnings}"
    );

    // PATCH: AWS's spelling is accepted as well as ours, and the answer compares again.
    let response = app
        .admin_json(
            Method::PATCH,
            &base,
            json!({"status": "INACTIVE", "auto_registration": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = json(response).await;
    assert_eq!(outcome["status"], "INACTIVE");
    assert_eq!(item(&outcome, "status")["matches"], true);
    assert_eq!(
        outcome["differences"],
        json!(["auto_registration: requested true, AWS says false"])
    );
    let response = app
        .admin_json(Method::PATCH, &base, json!({"status": "Active"}))
        .await;
    let outcome = json(response).await;
    assert_eq!(outcome["status"], "ACTIVE", "{outcome}");
    assert_eq!(outcome["requested_vs_actual"].as_array().unwrap().len(), 1);
    assert_eq!(outcome["differences"], json!([]));
    let response = app
        .admin_json(Method::PATCH, &base, json!({"status": "on"}))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let detail = json(response).await["detail"].to_string();
    assert!(
        detail.contains("\\\"active\\\" or \\\"inactive\\\""),
        "{detail}"
    );

    // Registering again answers 200 and says the body was ignored.
    let response = app
        .admin_json(
            Method::POST,
            &format!("{base}/register"),
            json!({"mode": "sni_only"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = json(response).await;
    assert_eq!(outcome["requested_vs_actual"], json!([]));
    assert!(
        outcome["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("the CA was already registered, so the request body was ignored")
    );
}

#[tokio::test]
async fn auto_registration_without_a_template_is_flagged_by_preflight_register_and_patch() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake.clone(), |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    let base = format!("/v1/admin/cas/{ca}/aws");
    let jitp_ready = |report: &serde_json::Value| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "jitp_ready")
            .cloned()
            .unwrap()
    };

    // Not registered: the check says what JITP needs, as a warning; preflight still passes.
    let report = json(app.get(&app.admin, &format!("{base}/preflight")).await).await;
    assert_eq!(report["ok"], true, "{report}");
    let check = jitp_ready(&report);
    assert_eq!(
        (&check["ok"], &check["warning"]),
        (&json!(false), &json!(true))
    );
    assert!(check["detail"].as_str().unwrap().contains("not registered"));

    // Registered with auto-registration and no template: accepted, with the warning.
    let response = app
        .admin_json(
            Method::POST,
            &format!("{base}/register"),
            json!({"mode": "default", "auto_registration": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let outcome = json(response).await;
    assert_eq!(outcome["differences"], json!([]));
    let warnings = outcome["warnings"].to_string();
    assert!(
        warnings.contains("auto_registration is on but no JITP template is attached")
            && warnings.contains("never become things"),
        "{warnings}"
    );
    let report = json(app.get(&app.admin, &format!("{base}/preflight")).await).await;
    assert_eq!(report["ok"], true);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("jitp_ready: auto_registration is on but no JITP template"),
        "{report}"
    );

    // PATCH warns the same way while no template is attached.
    let outcome = json(
        app.admin_json(Method::PATCH, &base, json!({"auto_registration": true}))
            .await,
    )
    .await;
    assert!(
        outcome["warnings"]
            .to_string()
            .contains("no JITP template is attached"),
        "{outcome}"
    );

    // With a template attached, JITP is ready and nothing is flagged.
    let response = app
        .admin_json(
            Method::PUT,
            &format!("{base}/template"),
            json!({"role_arn": ROLE, "template": simple_template()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report = json(app.get(&app.admin, &format!("{base}/preflight")).await).await;
    assert_eq!(jitp_ready(&report)["ok"], true, "{report}");
    assert_eq!(report["warnings"], json!([]));
    let outcome = json(
        app.admin_json(Method::PATCH, &base, json!({"status": "active"}))
            .await,
    )
    .await;
    assert_eq!(outcome["warnings"], json!([]), "{outcome}");
}

#[tokio::test]
async fn a_preview_from_a_csr_has_a_null_certificate_id() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake, |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    let with_id = json!({"simple": {"attributes": {"cert": "Id"}, "policy_name": "P"}});
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/template/preview"),
            json!({"csr": csr("Preview-Id", "JP").pem, "template": with_id}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json(response).await;
    assert!(answer["device"]["certificate_id"].is_null(), "{answer}");
    assert_eq!(answer["would_provision"], true, "{answer}");
    assert_eq!(
        answer["preview"]["attributes"]["cert"],
        "certificate-id-computed-by-aws"
    );
}

#[tokio::test]
async fn viewers_see_the_issuing_cas_live_aws_drift_without_its_template() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake.clone(), |_| {}).await;
    let ca = issuing_ca_id(&app).await;
    let drift = json(app.get(&app.viewer, "/v1/ca/aws").await).await;
    assert_eq!(drift["registered"], false, "{drift}");
    assert_eq!(drift["drift"], json!([]));

    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default", "auto_registration": true,
                   "role_arn": ROLE, "template": simple_template()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = json(response).await["aws_certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let drift = json(app.get(&app.viewer, "/v1/ca/aws").await).await;
    assert_eq!(
        (&drift["registered"], &drift["live_status"], &drift["drift"]),
        (&json!(true), &json!("ACTIVE"), &json!([]))
    );

    // Someone turns auto-registration off in the AWS console.
    fake.update_ca_certificate(
        &id,
        CaUpdate {
            auto_registration: Some(false),
            ..CaUpdate::default()
        },
    )
    .await
    .unwrap();
    let response = app.get(&app.viewer, "/v1/ca/aws").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("JITP_Role") && !body.contains("templateBody"),
        "{body}"
    );
    let drift: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(drift["live_auto_registration"], false);
    assert_eq!(
        drift["drift"],
        json!(["auto_registration: stored true, AWS DISABLE"])
    );
    assert_eq!(
        app.get(&app.station, "/v1/ca/aws").await.status(),
        StatusCode::FORBIDDEN
    );
}
