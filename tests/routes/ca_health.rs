//! `GET /v1/admin/health` against the in-repo fake AWS IoT: every finding produced on purpose,
//! then cleared, and the metrics gauges following.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::fake::FakeIotRegistry;
use factory_ca::aws::{AwsError, CaUpdate, IotRegistry};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn health(app: &TestApp) -> Value {
    let response = app.get(&app.admin, "/v1/admin/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

/// The CA's entry of the report.
fn ca_entry<'a>(report: &'a Value, ca: &str) -> &'a Value {
    report["cas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ca_id"] == ca)
        .unwrap_or_else(|| panic!("no entry for {ca}: {report}"))
}

/// The codes of the CA's findings, sorted.
fn codes(report: &Value, ca: &str) -> Vec<String> {
    let mut codes: Vec<String> = ca_entry(report, ca)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect();
    codes.sort();
    codes
}

async fn finding_codes(app: &TestApp, ca: &str) -> Vec<String> {
    codes(&health(app).await, ca)
}

async fn patch_status(app: &TestApp, ca: &str, status: &str) {
    let response = app
        .admin_json(
            Method::PATCH,
            &format!("/v1/admin/cas/{ca}/aws"),
            json!({"status": status}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
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

/// The value of the `factory_ca_health_finding` gauge of this CA and code.
async fn finding_gauge(app: &TestApp, ca: &str, code: &str) -> Option<String> {
    let text = app.get(&app.viewer, "/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("factory_ca_health_finding{")
                && l.contains(&format!("ca_id=\"{ca}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}

on_both_backends!(every_health_finding_is_produced_and_cleared);

async fn every_health_finding_is_produced_and_cleared(backend: Backend) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake.clone(), |s| {
        s.ca.expiry_warn_days = 36_500;
        s.aws.revocation_retry_secs = Duration::from_secs(1);
    })
    .await;
    let ca = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Expiry against the threshold, before any AWS registration.
    let report = health(&app).await;
    assert_eq!(codes(&report, &ca), ["ca_expiring"], "{report}");
    let entry = ca_entry(&report, &ca);
    let finding = &entry["findings"][0];
    assert_eq!(finding["severity"], "warning");
    assert!(finding["target"].is_null());
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains("POST /v1/admin/cas")
    );
    assert!(entry["days_until_expiry"].as_i64().unwrap() > 300);
    assert_eq!(entry["targets"][0]["target"], "default");
    assert_eq!(entry["targets"][0]["registered"], false);
    assert_eq!(
        (report["warning"].as_u64(), report["critical"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        finding_gauge(&app, &ca, "ca_expiring").await.as_deref(),
        Some("1")
    );
    let not_after = entry["not_after"].as_str().unwrap().to_owned();
    let key_algorithm = entry["key_algorithm"].as_str().unwrap().to_owned();

    // Expired, and a weak key: from the CA's record.
    app.execute_sql(&format!(
        "UPDATE certificate_authorities SET not_after = '2020-01-01T00:00:00.000000Z', \
         key_algorithm = 'rsa-1024' WHERE id = '{ca}'"
    ))
    .await;
    let report = health(&app).await;
    assert_eq!(
        codes(&report, &ca),
        ["ca_expired", "ca_key_weak"],
        "{report}"
    );
    assert_eq!(report["critical"], 2);
    assert_eq!(
        finding_gauge(&app, &ca, "ca_key_weak").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        finding_gauge(&app, &ca, "ca_expiring").await.as_deref(),
        Some("0")
    );
    app.execute_sql(&format!(
        "UPDATE certificate_authorities SET not_after = '{not_after}', \
         key_algorithm = '{key_algorithm}' WHERE id = '{ca}'"
    ))
    .await;
    assert_eq!(finding_codes(&app, &ca).await, ["ca_expiring"]);
    assert_eq!(
        finding_gauge(&app, &ca, "ca_key_weak").await.as_deref(),
        Some("0")
    );

    // Registered in AWS, ACTIVE with auto-registration: nothing to say about the target.
    let registered = app.register_with_jitp(&ca, "default").await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let aws_id = json(registered).await["aws_certificate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = health(&app).await;
    assert_eq!(codes(&report, &ca), ["ca_expiring"], "{report}");
    let target = &ca_entry(&report, &ca)["targets"][0];
    assert_eq!(
        (
            &target["registered"],
            &target["aws_status"],
            &target["aws_auto_registration"]
        ),
        (&json!(true), &json!("ACTIVE"), &json!(true))
    );

    // Inactive here and in AWS, auto-registration still on.
    patch_status(&app, &ca, "inactive").await;
    let report = health(&app).await;
    assert_eq!(
        codes(&report, &ca),
        ["auto_registration_on_inactive_ca", "ca_expiring"],
        "{report}"
    );
    let finding = ca_entry(&report, &ca)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "auto_registration_on_inactive_ca")
        .unwrap()
        .clone();
    assert_eq!(finding["target"], "default");
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("/v1/admin/cas/{ca}/aws"))
    );

    // Someone activates it in AWS behind factory-ca's back.
    let activate = CaUpdate {
        active: Some(true),
        ..CaUpdate::default()
    };
    fake.update_ca_certificate(&aws_id, activate).await.unwrap();
    assert_eq!(
        finding_codes(&app, &ca).await,
        ["ca_active_in_aws", "ca_expiring"]
    );
    patch_status(&app, &ca, "active").await;
    assert_eq!(finding_codes(&app, &ca).await, ["ca_expiring"]);

    // Someone deactivates it in AWS.
    let deactivate = CaUpdate {
        active: Some(false),
        ..CaUpdate::default()
    };
    fake.update_ca_certificate(&aws_id, deactivate.clone())
        .await
        .unwrap();
    assert_eq!(
        finding_codes(&app, &ca).await,
        [
            "auto_registration_on_inactive_ca",
            "ca_expiring",
            "ca_inactive_in_aws"
        ]
    );
    patch_status(&app, &ca, "active").await;
    assert_eq!(finding_codes(&app, &ca).await, ["ca_expiring"]);

    // AWS cannot be asked: a finding, not an error.
    fake.fail_next(AwsError::Unavailable("throttled".into()));
    let report = health(&app).await;
    assert_eq!(
        codes(&report, &ca),
        ["aws_check_failed", "ca_expiring"],
        "{report}"
    );
    assert!(ca_entry(&report, &ca)["targets"][0]["aws_status"].is_null());
    assert_eq!(finding_codes(&app, &ca).await, ["ca_expiring"]);

    // A device AWS saw ACTIVE is revoked while AWS is down: revoked here, ACTIVE there, and the
    // push pending; the retry job's push clears both.
    let device = json(app.sign(&csr("Health-1", "JP").pem).await).await;
    let der = ::pem::parse(device["certificate_pem"].as_str().unwrap())
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
    // Down until restored: the retry job (every second) cannot take the failure meant for the
    // revocation's own push.
    fake.go_down(AwsError::Unavailable("throttled".into()));
    let revoked = revoke(&app, device["serial"].as_str().unwrap()).await;
    assert_eq!(revoked["aws_revocation_pending"], true);
    let report = health(&app).await;
    fake.restore();
    // The retry job may have pushed it already; the findings are checked only while pending.
    let row = json(
        app.get(
            &app.viewer,
            &format!("/v1/certificates/{}", device["serial"].as_str().unwrap()),
        )
        .await,
    )
    .await;
    if row["aws_revocation_pending"] == true {
        let found = codes(&report, &ca);
        assert!(
            found.contains(&"revocations_pending_in_aws".to_owned())
                && found.contains(&"revoked_device_active_in_aws".to_owned()),
            "{report}"
        );
        let target = &ca_entry(&report, &ca)["targets"][0];
        assert_eq!(
            (
                &target["revocations_pending"],
                &target["revoked_but_active"]
            ),
            (&json!(1), &json!(1))
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if finding_codes(&app, &ca).await == ["ca_expiring"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pushed revocation did not clear the findings"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = json(
        app.get(
            &app.viewer,
            &format!("/v1/certificates/{}", device["serial"].as_str().unwrap()),
        )
        .await,
    )
    .await;
    assert_eq!(row["aws_status"], "REVOKED", "{row}");

    // Revoked in the ledger, ACTIVE in AWS after a sync: found from the ledger alone.
    let aws_cert = device["aws_certificate_id"].as_str().unwrap();
    fake.update_certificate(aws_cert, "ACTIVE").await.unwrap();
    let sync = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/sync"),
            json!({}),
        )
        .await;
    assert_eq!(sync.status(), StatusCode::OK);
    let report = health(&app).await;
    assert_eq!(
        codes(&report, &ca),
        ["ca_expiring", "revoked_device_active_in_aws"],
        "{report}"
    );
    assert_eq!(report["critical"], 1);
    fake.update_certificate(aws_cert, "REVOKED").await.unwrap();
    let sync = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/sync"),
            json!({}),
        )
        .await;
    assert_eq!(sync.status(), StatusCode::OK);
    assert_eq!(finding_codes(&app, &ca).await, ["ca_expiring"]);

    // Deleted in AWS behind factory-ca's back; deregistering here clears it.
    fake.update_ca_certificate(&aws_id, deactivate)
        .await
        .unwrap();
    fake.delete_ca_certificate(&aws_id).await.unwrap();
    let report = health(&app).await;
    assert_eq!(
        codes(&report, &ca),
        ["ca_expiring", "ca_not_in_aws"],
        "{report}"
    );
    assert_eq!(
        finding_gauge(&app, &ca, "ca_not_in_aws").await.as_deref(),
        Some("1")
    );
    let gone = app
        .admin_json(
            Method::DELETE,
            &format!("/v1/admin/cas/{ca}/aws"),
            json!({}),
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let report = health(&app).await;
    assert_eq!(codes(&report, &ca), ["ca_expiring"], "{report}");
    assert_eq!(ca_entry(&report, &ca)["targets"][0]["registered"], false);
    assert_eq!(
        finding_gauge(&app, &ca, "ca_not_in_aws").await.as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn without_aws_the_ca_checks_still_run_and_a_long_validity_is_healthy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let report = health(&app).await;
    let ca = report["cas"][0]["ca_id"].as_str().unwrap().to_owned();
    assert_eq!(codes(&report, &ca), Vec::<String>::new(), "{report}");
    assert_eq!(report["expiry_warn_days"], 30);
    assert_eq!(ca_entry(&report, &ca)["targets"], json!([]));
    assert_eq!(
        (report["warning"].as_u64(), report["critical"].as_u64()),
        (Some(0), Some(0))
    );
}

on_both_backends!(viewers_read_the_last_report_at_most_a_minute_old);

/// `GET /v1/ca/health` (the dashboard's panel): viewers get the admin report's findings; two
/// viewer reads within a minute share one run of the checks, and an admin's fresh report is
/// the one viewers see next. Stations are refused.
async fn viewers_read_the_last_report_at_most_a_minute_old(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.ca.expiry_warn_days = 36_500).await;
    let ca = json(app.get(&app.viewer, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = |token: String| {
        let app = &app;
        async move {
            let response = app.get(&token, "/v1/ca/health").await;
            assert_eq!(response.status(), StatusCode::OK);
            json(response).await
        }
    };
    let first = read(app.viewer.clone()).await;
    assert_eq!(codes(&first, &ca), ["ca_expiring"], "{first}");
    let finding = &ca_entry(&first, &ca)["findings"][0];
    assert_eq!(finding["severity"], "warning");
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains("POST /v1/admin/cas")
    );
    let second = read(app.viewer.clone()).await;
    assert_eq!(
        second["checked_at"], first["checked_at"],
        "one run for both"
    );

    tokio::time::sleep(Duration::from_millis(20)).await;
    let fresh = health(&app).await;
    assert_ne!(fresh["checked_at"], first["checked_at"]);
    let after = read(app.viewer.clone()).await;
    assert_eq!(
        after["checked_at"], fresh["checked_at"],
        "the admin's report"
    );

    let station = app.get(&app.station, "/v1/ca/health").await;
    assert_eq!(station.status(), StatusCode::FORBIDDEN);
}
