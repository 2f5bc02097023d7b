//! `/v1/admin/tokens`: a token's secret is shown once, names are unique, revocation takes
//! effect at once (through the token cache too), and every token action is audited.

use crate::common::*;
use crate::on_both_backends;
use factory_ca::services::tokens::Role;
use reqwest::StatusCode;

on_both_backends!(token_admin_api_shows_secret_once);

async fn token_admin_api_shows_secret_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "line-9", "role": "station"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("fca_"));

    // The new token signs.
    let signed = app.sign_as(&secret, &csr("Line9-1", "JP").pem, None).await;
    assert_eq!(signed.status(), StatusCode::CREATED);
    assert_eq!(
        json(
            app.get(&app.viewer, "/v1/certificates?station=line-9")
                .await
        )
        .await["items"][0]["thing_name"],
        "Line9-1"
    );

    // Listing never shows secrets or hashes.
    let list = app
        .get(&app.admin, "/v1/admin/tokens")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("line-9"));
    assert!(!list.contains(&secret));
    assert!(!list.contains(&factory_ca::services::tokens::token_hash(&secret)));

    // Names are unique among live tokens.
    let dup = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "line-9", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert_eq!(json(dup).await["code"], "token_name_taken");
    let bad = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "no spaces", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(bad).await["code"], "invalid_token_name");
    let bad_role = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_role.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad_role).await["code"], "invalid_request");

    // Revocation takes effect at once.
    let revoked = app
        .client
        .delete(app.url("/v1/admin/tokens/line-9"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = app.sign_as(&secret, &csr("Line9-2", "JP").pem, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let again = app
        .client
        .delete(app.url("/v1/admin/tokens/line-9"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // Every admin action is in the audit log, with the admin's name.
    let audit = json(app.get(&app.admin, "/v1/admin/audit").await).await;
    let actions: Vec<(String, String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "admin-1")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, o: &str| (a.to_owned(), "line-9".to_owned(), o.to_owned());
    assert!(
        actions.contains(&expect("token.create", "success")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&expect("token.create", "failure")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&expect("token.revoke", "success")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&expect("token.revoke", "failure")),
        "{actions:?}"
    );
    assert!(audit["items"][0]["request_id"].as_str().is_some());
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_this_process_stops_at_once_despite_the_cache() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.server.token_cache_secs = std::time::Duration::from_secs(300)
    })
    .await;
    let created = json(
        app.admin_json(
            reqwest::Method::POST,
            "/v1/admin/tokens",
            serde_json::json!({"name": "line-7", "role": "station"}),
        )
        .await,
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let first = app.sign_as(&token, &csr("Cached-1", "JP").pem, None).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    let revoked = app
        .client
        .delete(app.url("/v1/admin/tokens/line-7"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = app.sign_as(&token, &csr("Cached-2", "JP").pem, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

/// A revocation made elsewhere (another replica, the CLI; here: SQL) is honoured within the
/// TTL: with a cache the token keeps working until then, with `token_cache_secs = 0` it stops
/// at once.
async fn revocation_elsewhere(cache_secs: u64) -> StatusCode {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.server.token_cache_secs = std::time::Duration::from_secs(cache_secs)
    })
    .await;
    let token = new_token(&app.store, "line-8", Role::Station).await;
    let first = app
        .sign_as(&token, &csr("Elsewhere-1", "JP").pem, None)
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    app.execute_sql("UPDATE api_tokens SET revoked_at = now() WHERE name = 'line-8'")
        .await;
    app.sign_as(&token, &csr("Elsewhere-2", "JP").pem, None)
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_elsewhere_works_until_the_cache_ttl_and_not_without_a_cache() {
    assert_eq!(revocation_elsewhere(300).await, StatusCode::CREATED);
    assert_eq!(revocation_elsewhere(0).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_are_refused_with_the_cache_on() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.server.token_cache_secs = std::time::Duration::from_secs(300)
    })
    .await;
    for _ in 0..3 {
        let forged = format!("fca_{}", random_hex(32).get(..43).unwrap());
        let response = app.sign_as(&forged, &csr("Forged-1", "JP").pem, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.ledger_count().await, 0);
}
