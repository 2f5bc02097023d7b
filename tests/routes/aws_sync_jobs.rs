//! Background syncs against the in-repo fake (pages of two): `POST .../aws/sync?wait=false`
//! answers 202 with the progress at `Location`; the progress shows each target's sync running,
//! finished or failed; one sync per CA and target runs at a time, and one that another process
//! left is taken over and finished.

use std::time::{Duration, Instant};

use crate::aws_pacing::{list_calls, registered_with_devices};
use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::{AwsError, AwsFailure};
use factory_ca::store::Timestamp;
use factory_ca::store::sync_jobs::SyncClaim;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// GETs `path` as admin until `done` holds for the answer (at most 15 s).
async fn poll(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = json(app.get(&app.admin, path).await).await;
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "not reached in 15 s: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn target_state(answer: &Value, target: &str) -> String {
    answer["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == target))
        .map(|t| t["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn counts(sync: &Value) -> (i64, i64, i64, i64) {
    (
        sync["pages"].as_i64().unwrap(),
        sync["listed"].as_i64().unwrap(),
        sync["matched"].as_i64().unwrap(),
        sync["not_in_ledger"].as_i64().unwrap(),
    )
}

async fn audit_actions(app: &TestApp, action: &str) -> Vec<Value> {
    let audit = json(
        app.get(&app.admin, &format!("/v1/admin/audit?action={action}"))
            .await,
    )
    .await;
    audit["items"].as_array().cloned().unwrap_or_default()
}

on_both_backends!(a_background_sync_answers_202_and_its_progress_shows_it_fail_then_finish);

async fn a_background_sync_answers_202_and_its_progress_shows_it_fail_then_finish(
    backend: Backend,
) {
    // Five devices: three pages of two.
    let (app, fake, ca) = registered_with_devices(backend, 5).await;
    let path = format!("/v1/admin/cas/{ca}/aws/sync");
    let before = json(app.get(&app.admin, &path).await).await;
    assert_eq!(before["targets"], json!([]), "{before}");
    assert_eq!(before["running"], false);

    // The second page fails with AWS's error: the sync ends failed with the first page done.
    fake.fail_after(
        1,
        AwsError::Unavailable(AwsFailure {
            code: Some("ServiceUnavailableException".into()),
            message: "Service is temporarily unavailable".into(),
            http_status: Some(503),
            request_id: Some("req-7".into()),
        }),
    );
    let started = app
        .admin_json(Method::POST, &format!("{path}?wait=false"), json!({}))
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    assert_eq!(
        started.headers()["location"].to_str().unwrap(),
        path.as_str()
    );
    let body = json(started).await;
    assert_eq!(body["ca_id"], ca.as_str());
    assert_eq!(body["targets"][0]["target"], "default", "{body}");
    assert_eq!(body["targets"][0]["started_by"], "admin-1", "{body}");

    let failed = poll(&app, &path, |a| target_state(a, "default") == "failed").await;
    let sync = &failed["targets"][0];
    assert_eq!(counts(sync), (1, 2, 2, 0), "{failed}");
    assert_eq!(sync["error"]["kind"], "unavailable", "{failed}");
    assert_eq!(
        sync["error"]["code"], "ServiceUnavailableException",
        "{failed}"
    );
    assert!(
        sync["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temporarily unavailable"),
        "{failed}"
    );
    assert!(sync["finished_at"].is_string(), "{failed}");
    assert_eq!(failed["running"], false);

    // Started again, it resumes at the page it reached and finishes with every page counted once.
    let lists_before = list_calls(&fake);
    let again = app
        .admin_json(Method::POST, &format!("{path}?wait=false"), json!({}))
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let finished = poll(&app, &path, |a| target_state(a, "default") == "finished").await;
    let sync = &finished["targets"][0];
    assert_eq!(counts(sync), (3, 5, 5, 0), "{finished}");
    assert!(sync["error"].is_null(), "{finished}");
    assert!(sync["finished_at"].is_string() && sync["started_at"].is_string());
    assert_eq!(list_calls(&fake) - lists_before, 2);

    // Audited: each start, and each end (the failure and the success) by the admin who started.
    let starts = audit_actions(&app, "ca.aws.sync_started").await;
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0]["actor"], "admin-1");
    assert!(
        starts[0]["detail"]
            .as_str()
            .unwrap()
            .contains("started in default")
    );
    let ends = audit_actions(&app, "ca.aws.sync").await;
    let outcomes: Vec<&str> = ends
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "failure"], "{ends:?}");
    assert!(ends.iter().all(|e| e["actor"] == "admin-1"));

    // The synchronous form answers as it always did, and its sync is shown too.
    let waited = app.admin_json(Method::POST, &path, json!({})).await;
    assert_eq!(waited.status(), StatusCode::OK);
    let report = json(waited).await;
    assert_eq!(report["listed"], 5, "{report}");
    let shown = json(app.get(&app.admin, &path).await).await;
    assert_eq!(target_state(&shown, "default"), "finished", "{shown}");
}

on_both_backends!(sync_routes_refuse_bad_input_unknown_cas_and_other_roles);

async fn sync_routes_refuse_bad_input_unknown_cas_and_other_roles(backend: Backend) {
    let (app, _fake, ca) = registered_with_devices(backend, 0).await;
    let path = format!("/v1/admin/cas/{ca}/aws/sync");
    let code = |r: reqwest::Response| async move {
        let status = r.status();
        (
            status,
            json(r).await["code"].as_str().unwrap_or("").to_owned(),
        )
    };

    for (query, status, expected) in [
        ("?wait=maybe", StatusCode::BAD_REQUEST, "invalid_query"),
        (
            "?wait=false&when=now",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "?wait=false&targets=mars",
            StatusCode::BAD_REQUEST,
            "unknown_aws_target",
        ),
        (
            "?wait=false&targets=",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ] {
        let answer = app
            .admin_json(Method::POST, &format!("{path}{query}"), json!({}))
            .await;
        assert_eq!(code(answer).await, (status, expected.to_owned()), "{query}");
    }
    let unknown = "/v1/admin/cas/ca-0000000000000000/aws/sync";
    let answer = app
        .admin_json(Method::POST, &format!("{unknown}?wait=false"), json!({}))
        .await;
    assert_eq!(
        code(answer).await,
        (StatusCode::NOT_FOUND, "ca_not_found".into())
    );
    assert_eq!(
        code(app.get(&app.admin, unknown).await).await,
        (StatusCode::NOT_FOUND, "ca_not_found".into())
    );
    assert_eq!(
        code(app.get(&app.admin, &format!("{path}?targets=mars")).await).await,
        (StatusCode::BAD_REQUEST, "unknown_aws_target".into())
    );

    // Admin only, for reading the progress too.
    for token in [&app.viewer, &app.station] {
        assert_eq!(
            code(app.get(token, &path).await).await,
            (StatusCode::FORBIDDEN, "forbidden".into())
        );
        let post = app
            .client
            .post(app.url(&format!("{path}?wait=false")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            code(post).await,
            (StatusCode::FORBIDDEN, "forbidden".into())
        );
    }
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Nothing was started by any refused request.
    let shown = json(app.get(&app.admin, &path).await).await;
    assert_eq!(shown["targets"], json!([]), "{shown}");
}

on_both_backends!(a_sync_another_process_holds_runs_once_and_is_taken_over_when_it_lets_go);

async fn a_sync_another_process_holds_runs_once_and_is_taken_over_when_it_lets_go(
    backend: Backend,
) {
    let (app, fake, ca) = registered_with_devices(backend, 3).await;
    let path = format!("/v1/admin/cas/{ca}/aws/sync");
    // Another replica runs this CA's sync and holds its lease for a minute.
    let now = Timestamp::now();
    let claim = SyncClaim {
        ca_id: &ca,
        target: "default",
        now,
    };
    let until = now.checked_add(time::Duration::minutes(1)).unwrap();
    assert!(
        app.store
            .begin_sync(claim, "admin-2", None, "replica-2", until)
            .await
            .unwrap()
    );

    // Neither form runs it a second time.
    let waited = app.admin_json(Method::POST, &path, json!({})).await;
    assert_eq!(waited.status(), StatusCode::CONFLICT);
    let problem = json(waited).await;
    assert_eq!(problem["code"], "aws_sync_running", "{problem}");
    let queued = app
        .admin_json(Method::POST, &format!("{path}?wait=false"), json!({}))
        .await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let body = json(queued).await;
    let sync = &body["targets"][0];
    assert_eq!(
        (&sync["state"], &sync["claimed"], &sync["started_by"]),
        (&json!("running"), &json!(true), &json!("admin-2")),
        "{body}"
    );
    let starts = audit_actions(&app, "ca.aws.sync_started").await;
    assert!(
        starts[0]["detail"]
            .as_str()
            .unwrap()
            .contains("running already in default"),
        "{starts:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(list_calls(&fake), 0);

    // That replica stops and lets go: this one's runner takes the sync over and finishes it.
    assert_eq!(app.store.release_sync_leases("replica-2").await.unwrap(), 1);
    let finished = poll(&app, &path, |a| target_state(a, "default") == "finished").await;
    assert_eq!(counts(&finished["targets"][0]), (2, 3, 3, 0), "{finished}");
    assert_eq!(list_calls(&fake), 2);
}

on_both_backends!(a_failing_target_fails_its_background_sync_and_the_other_finishes);

async fn a_failing_target_fails_its_background_sync_and_the_other_finishes(backend: Backend) {
    let (app, eu, us) = TestApp::spawn_eu_us(backend).await;
    let ca = crate::aws_targets::ca_id(&app).await;
    let registered = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/register"),
            json!({"mode": "sni_only", "activate": true, "auto_registration": false}),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED, "{:?}", registered);
    eu.go_down(AwsError::Unavailable(AwsFailure {
        code: Some("ServiceUnavailableException".into()),
        message: "the target is down".into(),
        http_status: Some(503),
        request_id: None,
    }));
    let path = format!("/v1/admin/cas/{ca}/aws/sync");
    let started = app
        .admin_json(Method::POST, &format!("{path}?wait=false"), json!({}))
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let ended = poll(&app, &path, |a| {
        target_state(a, "eu") == "failed" && target_state(a, "us") == "finished"
    })
    .await;
    let eu_sync = ended["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "eu")
        .unwrap();
    assert_eq!(
        eu_sync["error"]["code"], "ServiceUnavailableException",
        "{ended}"
    );
    assert_eq!(ended["running"], false);
    // Only the named target is shown with `?targets=`.
    let us_only = json(app.get(&app.admin, &format!("{path}?targets=us")).await).await;
    assert_eq!(us_only["targets"].as_array().unwrap().len(), 1, "{us_only}");
    assert!(us.calls().iter().any(|c| c == "ListCertificatesByCA"));
}
