//! Bulk revocation (`POST /v1/admin/revocations`, `GET /v1/admin/revocations/{id}`): dry runs,
//! jobs that revoke in batches, their filters, refusals, idempotent retries, and a job
//! interrupted by a restart that finishes exactly once.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::ca::RevocationReason;
use factory_ca::services::tokens::Role;
use factory_ca::store::Timestamp;
use factory_ca::store::bulk_revocation::{NewRevocationJob, RevocationFilter};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    a_dry_run_counts_and_lists_without_revoking,
    a_job_revokes_every_match_in_batches_and_is_audited_once,
    filters_narrow_by_station_window_serials_and_thing_names,
    bad_filters_are_refused_with_a_code,
    a_retry_with_the_same_idempotency_key_answers_with_the_same_job,
    a_job_interrupted_by_a_restart_finishes_exactly_once,
);

async fn issue_as(app: &TestApp, token: &str, thing: &str) -> String {
    let response = app.sign_as(token, &csr(thing, "JP").pem, None).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    json(response).await["serial"].as_str().unwrap().to_owned()
}

async fn submit(app: &TestApp, body: Value) -> reqwest::Response {
    app.admin_json(Method::POST, "/v1/admin/revocations", body)
        .await
}

/// Polls the job until it has finished (at most 20 s).
async fn wait_finished(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = app
            .get(&app.admin, &format!("/v1/admin/revocations/{id}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let job = json(response).await;
        if job["status"] == "succeeded" {
            return job;
        }
        assert_eq!(job["status"], "running");
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn row(app: &TestApp, serial: &str) -> Value {
    json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await
}

/// The `certificate.bulk_revoke` audit records: (target, detail).
async fn bulk_audit(app: &TestApp) -> Vec<(String, String)> {
    let audit = json(app.get(&app.admin, "/v1/admin/audit").await).await;
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "certificate.bulk_revoke")
        .map(|r| {
            assert_eq!(r["actor"], "admin-1");
            assert_eq!(r["outcome"], "success");
            (
                r["target"].as_str().unwrap().to_owned(),
                r["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn a_dry_run_counts_and_lists_without_revoking(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut line = Vec::new();
    for n in 0..3 {
        line.push(issue_as(&app, &app.station, &format!("Line7-{n}")).await);
    }
    issue_as(&app, &app.station, "Line8-0").await;

    let response = submit(
        &app,
        json!({"filter": {"thing_name_prefix": "Line7-"}, "reason": "key_compromise",
               "dry_run": true}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let found = json(response).await;
    assert_eq!(found["dry_run"], true);
    assert_eq!(found["matched"], 3);
    assert_eq!(found["reason"], "key_compromise");
    assert_eq!(found["filter"], json!({"thing_name_prefix": "Line7-"}));
    let first: Vec<_> = found["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["serial"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, line, "oldest issuance first");
    assert_eq!(found["first"][0]["thing_name"], "Line7-0");
    assert_eq!(found["first"][0]["station"], "station-1");
    for serial in &line {
        assert_eq!(row(&app, serial).await["status"], "active");
    }
    assert!(bulk_audit(&app).await.is_empty());
}

async fn a_job_revokes_every_match_in_batches_and_is_audited_once(backend: Backend) {
    // Batches of 2: five certificates take three batches.
    let app = TestApp::spawn_with(backend, |s| s.revocation.bulk_batch_size = 2).await;
    let mut line = Vec::new();
    for n in 0..5 {
        line.push(issue_as(&app, &app.station, &format!("Batch-{n}")).await);
    }
    let kept = issue_as(&app, &app.station, "Kept-0").await;

    let response = submit(
        &app,
        json!({"filter": {"thing_name_prefix": "Batch-"}, "reason": "cessation_of_operation"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job = json(response).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rev-") && id.len() == 36, "{id}");
    assert_eq!(location, format!("/v1/admin/revocations/{id}"));
    assert_eq!(job["matched"], 5);
    assert_eq!(job["actor"], "admin-1");

    let job = wait_finished(&app, &id).await;
    assert_eq!(job["revoked"], 5);
    // Each revocation is a record of the chain, after the issuances, and the chain verifies.
    let verified = app.verify_ledger().await;
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
    assert!(job["finished_at"].is_string());
    for serial in &line {
        let row = row(&app, serial).await;
        assert_eq!(row["status"], "revoked");
        assert_eq!(row["revocation_reason"], "cessation_of_operation");
        assert_eq!(row["aws_revocation_pending"], true);
    }
    assert_eq!(row(&app, &kept).await["status"], "active");
    // The thing names are free again.
    issue_as(&app, &app.station, "Batch-0").await;

    let audit = bulk_audit(&app).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].0, id);
    assert!(
        audit[0]
            .1
            .starts_with("reason=cessation_of_operation; revoked=5; matched=5; filter="),
        "{}",
        audit[0].1
    );

    // The CRL lists them.
    let ca_id = row(&app, &kept).await["issuing_ca"]
        .as_str()
        .unwrap()
        .to_owned();
    let crl = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/crl?format=pem")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    use x509_parser::prelude::FromDer;
    let der = der_of(&crl);
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let mut listed: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|entry| {
            entry
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    listed.sort();
    line.sort();
    assert_eq!(listed, line);
}

async fn filters_narrow_by_station_window_serials_and_thing_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other = new_token(&app.store, "station-2", Role::Station).await;
    let a = issue_as(&app, &app.station, "Filter-a").await;
    let b = issue_as(&app, &other, "Filter-b").await;
    let middle = Timestamp::now().rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c = issue_as(&app, &other, "Filter-c").await;

    let matched = |filter: Value| {
        let app = &app;
        async move {
            let response = submit(app, json!({"filter": filter, "dry_run": true})).await;
            assert_eq!(response.status(), StatusCode::OK, "{filter}");
            let found = json(response).await;
            let mut serials: Vec<String> = found["first"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["serial"].as_str().unwrap().to_owned())
                .collect();
            serials.sort();
            serials
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        matched(json!({"station": "station-2"})).await,
        sorted(vec![b.clone(), c.clone()])
    );
    assert_eq!(
        matched(json!({"station": "station-2", "issued_before": middle})).await,
        vec![b.clone()]
    );
    assert_eq!(
        matched(json!({"issued_after": middle})).await,
        vec![c.clone()]
    );
    assert_eq!(
        matched(json!({"serials": [a.to_uppercase(), c.clone()]})).await,
        sorted(vec![a.clone(), c.clone()])
    );
    assert_eq!(
        matched(json!({"thing_names": ["Filter-a", "Filter-b", "Nobody"]})).await,
        sorted(vec![a.clone(), b.clone()])
    );
    let ca_id = row(&app, &a).await["issuing_ca"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        matched(json!({"ca_id": ca_id, "thing_names": ["Filter-c"]})).await,
        vec![c.clone()]
    );

    // A revoked certificate is not matched again.
    let response = submit(
        &app,
        json!({"filter": {"serials": [a.clone()]}, "reason": "superseded"}),
    )
    .await;
    let id = json(response).await["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_finished(&app, &id).await["revoked"], 1);
    assert_eq!(
        matched(json!({"thing_name_prefix": "Filter-"})).await,
        sorted(vec![b, c])
    );
}

async fn bad_filters_are_refused_with_a_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let too_many: Vec<String> = (0..1001).map(|n| format!("{n:040x}")).collect();
    let cases = [
        (json!({"filter": {}}), 422, "invalid_revocation_filter"),
        (
            json!({"filter": {"serials": ["xyz"]}}),
            422,
            "invalid_revocation_filter",
        ),
        (
            json!({"filter": {"station": ""}}),
            422,
            "invalid_revocation_filter",
        ),
        (
            json!({"filter": {"issued_after": "2026-01-02T00:00:00Z",
                               "issued_before": "2026-01-01T00:00:00Z"}}),
            422,
            "invalid_revocation_filter",
        ),
        (
            json!({"filter": {"serials": too_many}}),
            422,
            "revocation_list_too_long",
        ),
        (
            json!({"filter": {"ca_id": "ca-0000000000000000"}}),
            404,
            "ca_not_found",
        ),
        (
            json!({"filter": {"station": "s"}, "reason": "certificate_hold"}),
            422,
            "invalid_revocation_reason",
        ),
        (
            json!({"filter": {"station": "s"}, "why": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"filter": {"issued_after": "yesterday"}}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let response = submit(&app, body.clone()).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let problem = json(response).await;
        assert_eq!(problem["code"], code, "{body}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.len() > 10,
            "{body}: a message saying what to fix: {problem}"
        );
    }
    let unknown = app
        .get(&app.admin, "/v1/admin/revocations/rev-nothing")
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(unknown).await["code"], "revocation_job_not_found");

    let as_viewer = app
        .client
        .post(app.url("/v1/admin/revocations"))
        .bearer_auth(&app.viewer)
        .json(&json!({"filter": {"station": "station-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(as_viewer.status(), StatusCode::FORBIDDEN);
}

async fn a_retry_with_the_same_idempotency_key_answers_with_the_same_job(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue_as(&app, &app.station, "Retry-0").await;
    let post = |body: Value, key: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/admin/revocations"))
                .bearer_auth(&app.admin)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let body = json!({"filter": {"thing_name_prefix": "Retry-"}, "reason": "superseded"});
    let first = post(body.clone(), "job-1").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = json(first).await["id"].as_str().unwrap().to_owned();
    wait_finished(&app, &id).await;

    let again = post(body.clone(), "job-1").await;
    assert_eq!(again.status(), StatusCode::OK);
    let again = json(again).await;
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["revoked"], 1);

    let other = post(
        json!({"filter": {"thing_name_prefix": "Retry-"}, "reason": "key_compromise"}),
        "job-1",
    )
    .await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(other).await["code"], "idempotency_key_reused");
    let bad_key = post(body, "with space").await;
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad_key).await["code"], "invalid_idempotency_key");
    assert_eq!(bulk_audit(&app).await.len(), 1);
}

/// A job whose process stopped after its first batch: the next start resumes it, revokes the
/// rest, and counts and audits every certificate once.
async fn a_job_interrupted_by_a_restart_finishes_exactly_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.revocation.bulk_batch_size = 3).await;
    let mut serials = Vec::new();
    for n in 0..8 {
        serials.push(issue_as(&app, &app.station, &format!("Resume-{n}")).await);
    }
    // The job as the API creates it, and one batch committed, as if the process then stopped.
    let filter = RevocationFilter {
        thing_name_prefix: Some("Resume-".into()),
        ..RevocationFilter::default()
    };
    let (job, created) = app
        .store
        .create_revocation_job(&NewRevocationJob {
            id: "rev-interrupted",
            now: Timestamp::now(),
            actor: "admin-1",
            request_id: None,
            idempotency_key: None,
            filter: &filter,
            reason: RevocationReason::KeyCompromise,
        })
        .await
        .unwrap();
    assert!(created);
    assert_eq!(job.matched, 8);
    let first = app
        .store
        .revoke_batch(&job, 3, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(first, 3);

    let app = app.restart().await;
    let job = wait_finished(&app, "rev-interrupted").await;
    assert_eq!(job["revoked"], 8);
    assert_eq!(job["matched"], 8);
    for serial in &serials {
        let row = row(&app, serial).await;
        assert_eq!(row["status"], "revoked", "{serial}");
        assert_eq!(row["revocation_reason"], "key_compromise");
    }
    let audit = bulk_audit(&app).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].1.contains("revoked=8"), "{}", audit[0].1);

    // Running it again (another replica resuming it too) changes nothing.
    let again = app
        .store
        .revoke_batch(
            &app.store
                .revocation_job("rev-interrupted")
                .await
                .unwrap()
                .unwrap(),
            3,
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert!(
        app.store
            .finish_revocation_job("rev-interrupted", Timestamp::now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(bulk_audit(&app).await.len(), 1);
}
