//! Preflight's `certificate_mode` check: which registration mode lets a CA serve one AWS account
//! of a region or several, before and after registration.

use std::sync::Arc;

use crate::common::*;
use factory_ca::aws::fake::FakeIotRegistry;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn mode_detail(report: &Value) -> String {
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "certificate_mode")
        .unwrap_or_else(|| panic!("no certificate_mode check: {report}"));
    assert_eq!(check["ok"], true);
    check["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn preflight_explains_default_against_sni_only_across_accounts() {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(Backend::Sqlite, fake, |_| {}).await;
    let ca = json(app.get(&app.admin, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let preflight = format!("/v1/admin/cas/{ca}/aws/preflight");
    let before = json(app.get(&app.admin, &preflight).await).await;
    let detail = mode_detail(&before);
    assert!(
        detail.contains("one account per region") && detail.contains("several accounts"),
        "{detail}"
    );
    assert_eq!(before["ok"], true);

    let registered = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "sni_only"}),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let detail = mode_detail(&json(app.get(&app.admin, &preflight).await).await);
    assert!(
        detail.starts_with("registered as SNI_ONLY") && detail.contains("other accounts"),
        "{detail}"
    );
}
