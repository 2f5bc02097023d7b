//! Overload protection that a station can observe: the per-station rate limit.

use crate::helpers::*;
use factory_ca::services::tokens::Role;
use reqwest::StatusCode;

#[tokio::test]
async fn a_station_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.station_rate_per_sec = 0.2;
        s.server.station_burst = 2;
    })
    .await;
    for i in 0..2 {
        let response = app.sign(&csr(&format!("Rate-{i}"), "JP").pem).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let limited = app.sign(&csr("Rate-2", "JP").pem).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(json(limited).await["code"], "rate_limited");
    assert_eq!(app.ledger_count().await, 2);

    let other = new_token(&app.store, "station-2", Role::Station).await;
    let response = app.sign_as(&other, &csr("Rate-3", "JP").pem, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}
