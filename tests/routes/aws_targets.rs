//! Registration targets: one CA registered in several (region, account) targets, each a fake
//! AWS IoT of its own. One target is made to fail (down, then access denied) while the other
//! succeeds; the answers say per target what happened, the state keeps what failed, and the
//! same call again does only what is missing. Revocations are done only when every target has
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::fake::FakeIotRegistry;
use factory_ca::aws::{AwsError, AwsFailure, IotRegistry};
use factory_ca::config::AwsTargetSettings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/JITP_Role";

fn template() -> Value {
    json!({"simple": {"attributes": {"Country": "Country"}, "policy_name": "My_IoT_Policy",
                      "thing_type": null, "thing_groups": []}})
}

fn unavailable() -> AwsError {
    AwsError::Unavailable(AwsFailure {
        code: Some("ServiceUnavailableException".into()),
        message: "the target is down".into(),
        http_status: Some(503),
        request_id: Some("req-1".into()),
    })
}

fn target_settings(region: &str) -> AwsTargetSettings {
    AwsTargetSettings {
        region: region.into(),
        ..AwsTargetSettings::default()
    }
}

fn entry<'a>(answer: &'a Value, target: &str) -> &'a Value {
    answer["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets: {answer}"))
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target}: {answer}"))
}

fn count(fake: &FakeIotRegistry, operation: &str) -> usize {
    fake.calls().iter().filter(|c| *c == operation).count()
}

pub(crate) async fn ca_id(app: &TestApp) -> String {
    json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn revoke(app: &TestApp, serial: &str) -> Value {
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

on_both_backends!(a_failing_target_does_not_block_the_other_and_a_retry_does_what_is_missing);

async fn a_failing_target_does_not_block_the_other_and_a_retry_does_what_is_missing(
    backend: Backend,
) {
    let (app, eu, us) = TestApp::spawn_eu_us(backend).await;
    let ca = ca_id(&app).await;
    let base = format!("/v1/admin/cas/{ca}/aws");
    let body = json!({"mode": "default", "activate": true, "auto_registration": true,
                      "role_arn": ROLE, "template": template()});

    // An unknown target is refused before AWS is asked.
    let mut unknown = body.clone();
    unknown["targets"] = json!(["eu", "mars"]);
    let refused = app
        .admin_json(Method::POST, &format!("{base}/register"), unknown)
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let problem = json(refused).await;
    assert_eq!(problem["code"], "unknown_aws_target", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("eu, us"),
        "{problem}"
    );
    assert!(eu.calls().is_empty() && us.calls().is_empty());

    // us is down: eu registers, us is named as failed with what failed.
    us.go_down(unavailable());
    let first = app
        .admin_json(Method::POST, &format!("{base}/register"), body.clone())
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = json(first).await;
    assert_eq!(first["target"], "eu", "{first}");
    assert_eq!(first["status"], "ACTIVE", "{first}");
    assert_eq!(first["failed_targets"], json!(["us"]), "{first}");
    assert_eq!(entry(&first, "eu")["result"], "registered");
    assert_eq!(entry(&first, "eu")["region"], "eu-west-1");
    let us_entry = entry(&first, "us");
    assert_eq!(us_entry["ok"], false);
    // The AWS call metrics name the target: eu's calls succeeded, us's found it down.
    let metrics = app.get(&app.viewer, "/metrics").await.text().await.unwrap();
    for (target, outcome) in [("eu", "ok"), ("us", "unavailable")] {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with("factory_ca_aws_calls_total{")
                    && line.contains(&format!("target=\"{target}\""))
                    && line.contains(&format!("outcome=\"{outcome}\""))),
            "no AWS call of target {target} with outcome {outcome} in:\n{metrics}"
        );
    }
    assert_eq!(us_entry["error"]["kind"], "unavailable", "{us_entry}");
    assert_eq!(us_entry["error"]["code"], "ServiceUnavailableException");

    // The state keeps per target what failed, and when.
    let state = json(app.get(&app.admin, &base).await).await;
    assert_eq!(state["stored"]["target"], "eu", "{state}");
    let us_state = entry(&state, "us");
    assert_eq!(us_state["registered"], false, "{state}");
    assert_eq!(us_state["last_attempt"]["operation"], "register");
    assert_eq!(us_state["last_attempt"]["ok"], false);
    assert_eq!(us_state["last_attempt"]["error_kind"], "unavailable");
    assert_eq!(
        us_state["last_attempt"]["error_code"],
        "ServiceUnavailableException"
    );
    assert!(us_state["last_attempt"]["attempted_at"].is_string());
    let eu_state = entry(&state, "eu");
    assert_eq!(eu_state["registered"], true);
    assert_eq!(eu_state["live"]["status"], "ACTIVE");
    assert_eq!(eu_state["drift"], json!([]));

    // Fixed, the same call again registers in us only.
    us.restore();
    let second = app
        .admin_json(Method::POST, &format!("{base}/register"), body.clone())
        .await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second = json(second).await;
    assert_eq!(second["failed_targets"], json!([]), "{second}");
    assert_eq!(entry(&second, "eu")["result"], "already_registered");
    assert_eq!(entry(&second, "us")["result"], "registered");
    // eu was not registered again; us failed at its first call (GetRegistrationCode), so
    // RegisterCACertificate reached it once, now.
    assert_eq!(count(&eu, "RegisterCACertificate"), 1);
    assert_eq!(count(&us, "RegisterCACertificate"), 1);
    // Each account was asked for its own registration code.
    assert_eq!(count(&eu, "GetRegistrationCode"), 1);
    assert_eq!(count(&us, "GetRegistrationCode"), 2);
    let state = json(app.get(&app.admin, &base).await).await;
    assert_eq!(entry(&state, "us")["last_attempt"]["ok"], true, "{state}");
    assert_eq!(entry(&state, "us")["live"]["status"], "ACTIVE");
    // A third time: everywhere registered, 200.
    let third = app
        .admin_json(Method::POST, &format!("{base}/register"), body.clone())
        .await;
    assert_eq!(third.status(), StatusCode::OK);

    // Every target failing: the error of the first, naming each.
    eu.go_down(unavailable());
    us.go_down(AwsError::Unauthorized(AwsFailure {
        code: Some("AccessDeniedException".into()),
        message: "not allowed".into(),
        http_status: Some(403),
        request_id: None,
    }));
    let patch = app
        .admin_json(Method::PATCH, &base, json!({"status": "inactive"}))
        .await;
    assert_eq!(patch.status(), StatusCode::BAD_GATEWAY);
    let problem = json(patch).await;
    assert_eq!(problem["code"], "aws_unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("target eu:") && detail.contains("target us:"),
        "{detail}"
    );
    // Only the failing target asked: its error. Beside one that answers: per target.
    let only_us = app.get(&app.admin, &format!("{base}?targets=us")).await;
    assert_eq!(only_us.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(json(only_us).await["code"], "aws_access_denied");
    eu.restore();
    let state = json(app.get(&app.admin, &base).await).await;
    assert_eq!(state["stored"]["target"], "eu", "{state}");
    let us_state = entry(&state, "us");
    assert_eq!(us_state["error"]["kind"], "access_denied", "{state}");
    assert_eq!(us_state["error"]["code"], "AccessDeniedException");
    assert_eq!(us_state["last_attempt"]["operation"], "update");
    assert_eq!(us_state["last_attempt"]["error_kind"], "access_denied");
    assert_eq!(
        entry(&state, "eu")["last_attempt"]["error_kind"],
        "unavailable"
    );
    us.restore();

    // A status change in one target only.
    let patch = app
        .admin_json(
            Method::PATCH,
            &base,
            json!({"status": "inactive", "targets": ["eu"]}),
        )
        .await;
    assert_eq!(patch.status(), StatusCode::OK);
    let patch = json(patch).await;
    assert_eq!(patch["targets"].as_array().unwrap().len(), 1, "{patch}");
    let state = json(app.get(&app.admin, &base).await).await;
    assert_eq!(entry(&state, "eu")["live"]["status"], "INACTIVE", "{state}");
    assert_eq!(entry(&state, "us")["live"]["status"], "ACTIVE", "{state}");
    let patch = app
        .admin_json(Method::PATCH, &base, json!({"status": "active"}))
        .await;
    assert_eq!(patch.status(), StatusCode::OK);

    // The template in both; a retry after one failed attaches it only where it is missing.
    us.go_down(unavailable());
    let attach = app
        .admin_json(
            Method::PUT,
            &format!("{base}/template"),
            json!({"role_arn": ROLE, "template": {"simple": {"attributes": {"Country": "Country"},
                "policy_name": "Other_Policy", "thing_type": null, "thing_groups": []}}}),
        )
        .await;
    assert_eq!(attach.status(), StatusCode::OK);
    let attach = json(attach).await;
    assert_eq!(attach["failed_targets"], json!(["us"]), "{attach}");
    assert_eq!(entry(&attach, "eu")["result"], "attached");
    us.restore();
    let eu_updates = count(&eu, "UpdateCACertificate");
    let attach = json(
        app.admin_json(
            Method::PUT,
            &format!("{base}/template"),
            json!({"role_arn": ROLE, "template": {"simple": {"attributes": {"Country": "Country"},
                "policy_name": "Other_Policy", "thing_type": null, "thing_groups": []}}}),
        )
        .await,
    )
    .await;
    assert_eq!(entry(&attach, "eu")["result"], "unchanged", "{attach}");
    assert_eq!(entry(&attach, "us")["result"], "attached", "{attach}");
    assert_eq!(count(&eu, "UpdateCACertificate"), eu_updates);
    let eu_body = eu
        .describe_ca_certificate(first["aws_certificate_id"].as_str().unwrap())
        .await
        .unwrap()
        .registration_config
        .unwrap()
        .template_body
        .unwrap();
    let us_body = us
        .describe_ca_certificate(first["aws_certificate_id"].as_str().unwrap())
        .await
        .unwrap()
        .registration_config
        .unwrap()
        .template_body
        .unwrap();
    assert!(eu_body.contains("Other_Policy") && us_body == eu_body);

    // Health: one entry per target.
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    let ours = health["cas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ca_id"] == ca.as_str())
        .unwrap();
    let names: Vec<_> = ours["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["eu", "us"], "{ours}");
    assert!(
        ours["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["registered"] == true && t["aws_status"] == "ACTIVE"),
        "{ours}"
    );

    // Deregister from one target; the other keeps the CA.
    let deleted = app
        .client
        .delete(app.url(&format!("{base}?targets=us")))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let state = json(app.get(&app.admin, &base).await).await;
    assert_eq!(entry(&state, "us")["registered"], false, "{state}");
    assert_eq!(entry(&state, "eu")["registered"], true, "{state}");
}

on_both_backends!(a_revocation_is_done_when_every_target_has_it);

async fn a_revocation_is_done_when_every_target_has_it(backend: Backend) {
    let (app, eu, us) = TestApp::spawn_eu_us(backend).await;
    let ca = ca_id(&app).await;
    let register = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "sni_only", "activate": true, "auto_registration": true,
                   "role_arn": ROLE, "template": template()}),
        )
        .await;
    assert_eq!(register.status(), StatusCode::CREATED);

    let device = json(app.sign(&csr("Multi-1", "JP").pem).await).await;
    let serial = device["serial"].as_str().unwrap().to_owned();
    let aws_id = device["aws_certificate_id"].as_str().unwrap().to_owned();
    let der = ::pem::parse(device["certificate_pem"].as_str().unwrap())
        .unwrap()
        .into_contents();
    // The device connected in eu only; us never saw it.
    eu.simulate_first_connection(&der).unwrap();

    // eu is down at revocation time: us has it, eu waits; the revocation stays pending.
    eu.go_down(unavailable());
    let revoked = revoke(&app, &serial).await;
    assert_eq!(revoked["aws_revocation_pending"], true, "{revoked}");
    assert_eq!(
        us.describe_certificate(&aws_id).await.unwrap().status,
        "REVOKED"
    );
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    let ours = health["cas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ca_id"] == ca.as_str())
        .unwrap()
        .clone();
    let pending = |t: &str| {
        ours["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["target"] == t)
            .unwrap()["revocations_pending"]
            .clone()
    };
    assert_eq!(pending("eu"), 1, "{ours}");
    assert_eq!(pending("us"), 0, "{ours}");

    // eu back: the retry job pushes to eu only, then the revocation is done.
    eu.restore();
    let us_calls = us.calls().len();
    let path = format!("/v1/certificates/{serial}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = json(app.get(&app.viewer, &path).await).await;
        if row["aws_revocation_pending"] == false {
            assert_eq!(row["aws_status"], "REVOKED", "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "the retry did not reach eu");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        eu.describe_certificate(&aws_id).await.unwrap().status,
        "REVOKED"
    );
    assert!(
        !us.calls()[us_calls..]
            .iter()
            .any(|c| c == "UpdateCertificate" || c == "RegisterCertificate"),
        "us was told again: {:?}",
        us.calls()
    );

    // A sync in both targets: each answers for itself.
    let sync = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/sync"),
            json!({}),
        )
        .await;
    assert_eq!(sync.status(), StatusCode::OK);
    let sync = json(sync).await;
    assert_eq!(sync["targets"].as_array().unwrap().len(), 2, "{sync}");
    assert_eq!(entry(&sync, "eu")["report"]["listed"], 1, "{sync}");
    assert_eq!(entry(&sync, "us")["report"]["listed"], 1, "{sync}");
}

#[tokio::test]
async fn preflight_explains_the_mode_per_target_across_accounts() {
    let eu = Arc::new(FakeIotRegistry::new());
    let staging = Arc::new(FakeIotRegistry::new());
    let targets: Vec<(String, Arc<dyn IotRegistry>)> =
        vec![("prod".into(), eu.clone()), ("staging".into(), staging)];
    let app = TestApp::spawn_with_targets(Backend::Sqlite, targets, |s| {
        s.aws.enabled = true;
        s.aws.targets = BTreeMap::from([
            ("prod".to_owned(), target_settings("eu-west-1")),
            (
                "staging".to_owned(),
                AwsTargetSettings {
                    role_arn: Some("arn:aws:iam::222222222222:role/Factory".into()),
                    ..target_settings("eu-west-1")
                },
            ),
        ]);
    })
    .await;
    let ca = ca_id(&app).await;
    let preflight = format!("/v1/admin/cas/{ca}/aws/preflight");
    let report = json(app.get(&app.admin, &preflight).await).await;
    let staging = entry(&report, "staging");
    assert_eq!(staging["account"], "222222222222", "{report}");
    let detail = staging["detail"].as_str().unwrap();
    assert!(
        detail.contains("sni_only") && detail.contains("prod"),
        "{detail}"
    );
    let registered = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "default", "targets": ["prod"]}),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let report = json(app.get(&app.admin, &preflight).await).await;
    assert_eq!(entry(&report, "prod")["registered_mode"], "default");
    let detail = entry(&report, "staging")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("registered as DEFAULT") && detail.contains("sni_only"),
        "{detail}"
    );
}

/// The certificate provider is an account's and region's: with several targets the request
/// names one (body `target`, `?target=`), and only that target's AWS IoT is called.
#[tokio::test]
async fn the_certificate_provider_goes_to_the_target_named() {
    const PROVIDERS: &str = "/v1/admin/aws/certificate-providers";
    const LAMBDA: &str = "arn:aws:lambda:eu-west-1:123456789012:function:factory-ca-provider";
    let (app, eu, us) = TestApp::spawn_eu_us(Backend::Sqlite).await;

    // Several targets and none named: refused before AWS is called.
    let response = app
        .admin_json(
            Method::POST,
            PROVIDERS,
            json!({"name": "factory-ca", "lambda_function_arn": LAMBDA}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = json(response).await;
    assert_eq!(problem["code"], "invalid_request");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("name one with target"),
        "{problem}"
    );
    let response = app
        .admin_json(
            Method::POST,
            PROVIDERS,
            json!({"name": "factory-ca", "lambda_function_arn": LAMBDA, "target": "ap"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response).await["code"], "unknown_aws_target");
    assert_eq!(count(&eu, "CreateCertificateProvider"), 0);
    assert_eq!(count(&us, "CreateCertificateProvider"), 0);

    let response = app
        .admin_json(
            Method::POST,
            PROVIDERS,
            json!({"name": "factory-ca", "lambda_function_arn": LAMBDA, "target": "eu"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(count(&eu, "CreateCertificateProvider"), 1);
    assert_eq!(count(&us, "CreateCertificateProvider"), 0);

    let one = format!("{PROVIDERS}/factory-ca");
    let described = app.get(&app.admin, &format!("{one}?target=eu")).await;
    assert_eq!(described.status(), StatusCode::OK);
    assert_eq!(json(described).await["lambda_function_arn"], LAMBDA);
    let elsewhere = app.get(&app.admin, &format!("{one}?target=us")).await;
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(elsewhere).await["code"], "aws_resource_not_found");

    let deleted = app
        .admin_json(Method::DELETE, &format!("{one}?target=eu"), json!({}))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(count(&eu, "DeleteCertificateProvider"), 1);
    assert_eq!(count(&us, "DeleteCertificateProvider"), 0);
}
