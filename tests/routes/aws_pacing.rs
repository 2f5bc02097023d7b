//! AWS IoT pacing against the in-repo fake: a sync interrupted part way resumes at the page it
//! reached, across a restart, and says where it stands meanwhile.

use std::sync::Arc;

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::AwsError;
use factory_ca::aws::fake::FakeIotRegistry;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(an_interrupted_sync_resumes_after_a_restart_at_the_page_it_reached);

async fn an_interrupted_sync_resumes_after_a_restart_at_the_page_it_reached(backend: Backend) {
    // Five devices connect: three pages of two.
    let (app, fake, ca) = registered_with_devices(backend, 5).await;
    let sync_path = format!("/v1/admin/cas/{ca}/aws/sync");

    // The second page fails: the first is recorded, and where the sync stands is kept.
    fake.fail_after(1, AwsError::Unavailable("connection reset".into()));
    let failed = app.admin_json(Method::POST, &sync_path, json!({})).await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    let progress = &health["cas"][0]["targets"][0]["sync_in_progress"];
    assert_eq!(
        (progress["pages"].as_i64(), progress["listed"].as_i64()),
        (Some(1), Some(2)),
        "{health}"
    );
    let audit = json(app.get(&app.admin, "/v1/admin/audit").await).await;
    let detail = audit["items"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("1 page(s) done"), "{audit}");

    // After a restart the next sync asks only for the pages not done.
    let app = app.restart().await;
    let lists_before = list_calls(&fake);
    let resumed = app.admin_json(Method::POST, &sync_path, json!({})).await;
    assert_eq!(resumed.status(), StatusCode::OK);
    let report = json(resumed).await;
    assert_eq!(report["resumed"], true, "{report}");
    assert_eq!(
        (
            report["pages"].as_u64(),
            report["listed"].as_u64(),
            report["matched"].as_u64()
        ),
        (Some(3), Some(5), Some(5)),
        "{report}"
    );
    assert_eq!(list_calls(&fake) - lists_before, 2);
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    assert!(
        health["cas"][0]["targets"][0]["sync_in_progress"].is_null(),
        "{health}"
    );

    // A sync from scratch now reads every page again.
    let again = json(app.admin_json(Method::POST, &sync_path, json!({})).await).await;
    assert_eq!(
        (again["resumed"].as_bool(), again["pages"].as_u64()),
        (Some(false), Some(3))
    );
}

/// A server on the fake AWS IoT (pages of two) whose issuing CA is registered with a template,
/// and `devices` devices that have connected; with the CA's id.
pub(crate) async fn registered_with_devices(
    backend: Backend,
    devices: usize,
) -> (TestApp, Arc<FakeIotRegistry>, String) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake.clone(), |_| {}).await;
    let ca = crate::aws_targets::ca_id(&app).await;
    let registered = app.register_with_jitp(&ca, "default").await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    for i in 0..devices {
        let device = json(app.sign(&csr(&format!("Pace-{i}"), "JP").pem).await).await;
        let der = ::pem::parse(device["certificate_pem"].as_str().unwrap())
            .unwrap()
            .into_contents();
        fake.simulate_first_connection(&der).unwrap();
    }
    (app, fake, ca)
}

pub(crate) fn list_calls(fake: &FakeIotRegistry) -> usize {
    fake.calls()
        .iter()
        .filter(|c| *c == "ListCertificatesByCA")
        .count()
}
