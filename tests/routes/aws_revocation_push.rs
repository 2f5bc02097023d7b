//! Revocations pushed to AWS IoT against the in-repo fake: a revocation every target has is
//! done in the ledger too, even when a crash (or an older version) recorded the last target's
//! push without clearing the flag, or two replicas push its targets at once; pushes to a slow
//! target overlap, and each failure leaves exactly its revocation pending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::fake::FakeIotRegistry;
use factory_ca::aws::{AwsError, IotRegistry};
use factory_ca::store::Timestamp;
use serde_json::Value;

async fn row(app: &TestApp, serial: &str) -> Value {
    json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await
}

/// `revocations_pending` of each (CA, target) in the health report, as (target, count).
async fn health_pending(app: &TestApp, ca: &str) -> Vec<(String, i64)> {
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    health["cas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ca_id"] == ca)
        .flat_map(|c| c["targets"].as_array().unwrap().iter())
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_owned(),
                t["revocations_pending"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The serials the ledger flags pending in AWS, in serial order.
async fn flagged(app: &TestApp) -> Vec<String> {
    let listed = json(
        app.get(&app.viewer, "/v1/certificates?status=revoked&limit=200")
            .await,
    )
    .await;
    let mut serials: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["aws_revocation_pending"] == true)
        .map(|r| r["serial"].as_str().unwrap().to_owned())
        .collect();
    serials.sort();
    serials
}

/// The state a SIGKILL between the two steps of an older version left: `eu` recorded as having
/// the revocation of `serial` (as after its push), the flag not cleared.
async fn record_eu_push_without_finishing(app: &TestApp, serial: &str) {
    app.execute_sql(&format!(
        "INSERT INTO aws_revocation_targets (serial, target, pushed_at) \
         SELECT serial, 'eu', revoked_at FROM issued_certificates WHERE serial = {}",
        app.hex_sql(serial)
    ))
    .await;
}

/// Asserts that the revocation of `d` is done everywhere: in the ledger (flag cleared, each
/// target REVOKED), in each fake, and in health.
async fn assert_done(app: &TestApp, ca: &str, d: &Device, fakes: &[&FakeIotRegistry]) {
    let r = row(app, &d.serial).await;
    assert_eq!(r["aws_revocation_pending"], false, "{r}");
    assert_eq!(r["aws_status"], "REVOKED", "{r}");
    for t in r["aws_targets"].as_array().unwrap() {
        assert_eq!(t["aws_status"], "REVOKED", "{r}");
        assert_eq!(t["aws_revocation_pending"], false, "{r}");
    }
    for fake in fakes {
        let seen = fake.describe_certificate(&d.aws_id).await.unwrap();
        assert_eq!(seen.status, "REVOKED");
    }
    assert!(
        health_pending(app, ca).await.iter().all(|(_, n)| *n == 0),
        "{:?}",
        health_pending(app, ca).await
    );
}

on_both_backends!(
    a_revocation_every_target_has_but_still_flagged_is_finished,
    the_retry_job_finishes_a_revocation_left_flagged_by_a_crash,
    two_replicas_pushing_the_two_targets_at_once_finish_each_revocation,
    pushes_overlap_and_each_failure_stays_pending_alone,
);

async fn a_revocation_every_target_has_but_still_flagged_is_finished(backend: Backend) {
    let (app, eu, us) =
        TestApp::spawn_eu_us_retrying_every(backend, Duration::from_secs(3600)).await;
    let ca = app.register_ca_with_jitp().await;
    let d = app.device("Crash-1").await;
    eu.simulate_first_connection(&d.der).unwrap();
    us.simulate_first_connection(&d.der).unwrap();

    // eu is down when the revocation is pushed: us has it, eu does not.
    eu.go_down(AwsError::Unavailable("connection refused".into()));
    app.revoke(&d.serial).await;
    assert_eq!(flagged(&app).await, vec![d.serial.clone()]);
    assert_eq!(
        health_pending(&app, &ca).await,
        vec![("eu".into(), 1), ("us".into(), 0)]
    );

    // eu is told, and the process dies after recording that and before clearing the flag.
    eu.restore();
    eu.update_certificate(&d.aws_id, "REVOKED").await.unwrap();
    record_eu_push_without_finishing(&app, &d.serial).await;
    // The defect's state: health counts nothing pending, the ledger still flags it, and a
    // round of pushes finds nothing to push (every target has it).
    assert_eq!(
        health_pending(&app, &ca).await,
        vec![("eu".into(), 0), ("us".into(), 0)]
    );
    assert_eq!(flagged(&app).await, vec![d.serial.clone()]);
    let provisioning = app.state.provisioning();
    let (pushed, error) = provisioning
        .push_revocations(None, None, 500)
        .await
        .unwrap();
    assert_eq!((pushed, error.is_none()), (0, true));
    assert_eq!(flagged(&app).await, vec![d.serial.clone()]);

    // The sweep of each retry round finishes it; a second sweep has nothing to do.
    assert_eq!(provisioning.finish_told_revocations().await.unwrap(), 1);
    assert_done(&app, &ca, &d, &[&eu, &us]).await;
    assert!(flagged(&app).await.is_empty());
    assert_eq!(provisioning.finish_told_revocations().await.unwrap(), 0);
}

async fn the_retry_job_finishes_a_revocation_left_flagged_by_a_crash(backend: Backend) {
    // The retry job runs every second here.
    let (app, eu, us) = TestApp::spawn_eu_us(backend).await;
    let ca = app.register_ca_with_jitp().await;
    let d = app.device("Crash-2").await;
    us.simulate_first_connection(&d.der).unwrap();
    eu.go_down(AwsError::Unavailable("connection refused".into()));
    app.revoke(&d.serial).await;
    // eu never saw the device: it was registered there as REVOKED, then the process died.
    eu.restore();
    let ca_pem = app
        .store
        .get_ca(&ca)
        .await
        .unwrap()
        .unwrap()
        .certificate_pem;
    let cert_pem = factory_ca::ca::to_pem("CERTIFICATE", &d.der);
    eu.register_certificate(&cert_pem, &ca_pem, "REVOKED")
        .await
        .unwrap();
    record_eu_push_without_finishing(&app, &d.serial).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    while !flagged(&app).await.is_empty() {
        assert!(Instant::now() < deadline, "the retry job left it flagged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_done(&app, &ca, &d, &[&eu, &us]).await;
}

async fn two_replicas_pushing_the_two_targets_at_once_finish_each_revocation(backend: Backend) {
    let (app, eu, us) =
        TestApp::spawn_eu_us_retrying_every(backend, Duration::from_secs(3600)).await;
    let ca = app.register_ca_with_jitp().await;
    let down = || AwsError::Unavailable("connection refused".into());
    eu.go_down(down());
    us.go_down(down());
    let mut devices = Vec::new();
    for i in 0..12 {
        let d = app.device(&format!("Race-{i}")).await;
        app.revoke(&d.serial).await;
        devices.push(d);
    }
    assert_eq!(flagged(&app).await.len(), 12);
    eu.restore();
    us.restore();

    // Two replicas record the pushes of one certificate's two targets at the same moment,
    // each on its own connection; whichever commits second must see the other's record.
    let names = vec!["eu".to_owned(), "us".to_owned()];
    for d in &devices {
        let record = |target: &'static str| {
            let store = app.store.clone();
            let serials = vec![d.serial.clone()];
            let names = names.clone();
            tokio::spawn(async move {
                store
                    .record_revocations_pushed(target, &serials, &names, Timestamp::now())
                    .await
                    .unwrap()
            })
        };
        let (a, b) = tokio::join!(record("eu"), record("us"));
        assert_eq!(
            a.unwrap() + b.unwrap(),
            1,
            "exactly one of them finishes it"
        );
    }
    assert!(flagged(&app).await.is_empty());
    assert!(
        health_pending(&app, &ca).await.iter().all(|(_, n)| *n == 0),
        "{:?}",
        health_pending(&app, &ca).await
    );
    let r = row(&app, &devices[0].serial).await;
    for t in r["aws_targets"].as_array().unwrap() {
        assert_eq!(t["aws_status"], "REVOKED", "{r}");
    }
}

const PUSHES: usize = 40;
const CONCURRENCY: usize = 8;
const LATENCY: Duration = Duration::from_millis(100);

async fn pushes_overlap_and_each_failure_stays_pending_alone(backend: Backend) {
    let fake = Arc::new(FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake.clone(), |s| {
        s.aws.enabled = true;
        // Rounds run only when the test asks; no bucket, so that the overlap is what is timed.
        s.aws.revocation_retry_secs = Duration::from_secs(3600);
        s.aws.api_rate_per_sec = 0.0;
        s.aws.revocation_push_concurrency = CONCURRENCY as u32;
    })
    .await;
    let ca = app.register_ca_with_jitp().await;
    fake.go_down(AwsError::Unavailable("connection refused".into()));
    let mut devices = Vec::new();
    for i in 0..PUSHES {
        let d = app.device(&format!("Slow-{i}")).await;
        // Devices that connected: one UpdateCertificate each.
        fake.restore();
        fake.simulate_first_connection(&d.der).unwrap();
        fake.go_down(AwsError::Unavailable("connection refused".into()));
        app.revoke(&d.serial).await;
        devices.push(d);
    }
    assert_eq!(flagged(&app).await.len(), PUSHES);
    let provisioning = app.state.provisioning();
    let updates = || {
        fake.calls()
            .iter()
            .filter(|c| *c == "UpdateCertificate")
            .count()
    };

    // The target is down: the round stops after three failures in a row, plus what was in
    // flight then, and every revocation stays pending.
    let before = updates();
    let (pushed, error) = provisioning
        .push_revocations(None, None, 500)
        .await
        .unwrap();
    assert_eq!(pushed, 0);
    assert!(matches!(error, Some(AwsError::Unavailable(_))), "{error:?}");
    let calls = updates() - before;
    assert!(
        (3..=3 + CONCURRENCY - 1).contains(&calls),
        "{calls} calls to a target that is down"
    );
    assert_eq!(flagged(&app).await.len(), PUSHES);

    // Back, slow (100 ms a call), and refusing three certificates.
    fake.restore();
    fake.set_latency(LATENCY);
    let refused: Vec<&Device> = [3, 17, 31].iter().map(|&i| &devices[i]).collect();
    for d in &refused {
        fake.refuse_certificate(
            &d.aws_id,
            AwsError::InvalidRequest("the certificate is locked".into()),
        );
    }
    let (pushed, error) = provisioning
        .push_revocations(None, None, 500)
        .await
        .unwrap();
    assert_eq!(pushed, PUSHES - refused.len());
    assert!(
        matches!(error, Some(AwsError::InvalidRequest(_))),
        "{error:?}"
    );
    // The calls overlapped, up to the concurrency and no further (the fake counts the calls
    // under way at once; each lasts 100 ms, so the pushes had every chance to overlap). How
    // fast a backlog drains is a benchmark's question (docs/benchmarks.md), not this test's.
    assert_eq!(fake.most_in_flight(), CONCURRENCY);

    // Exactly the refused ones are pending, in the ledger, in health and in AWS.
    let mut expected: Vec<String> = refused.iter().map(|d| d.serial.clone()).collect();
    expected.sort();
    assert_eq!(flagged(&app).await, expected);
    assert_eq!(
        health_pending(&app, &ca).await,
        vec![("default".into(), refused.len() as i64)]
    );
    for d in &devices {
        let status = fake.describe_certificate(&d.aws_id).await.unwrap().status;
        let was_refused = refused.iter().any(|r| r.serial == d.serial);
        assert_eq!(status == "ACTIVE", was_refused, "{}: {status}", d.serial);
    }

    // AWS accepts them now: the next round pushes those three only.
    fake.restore();
    let before = updates();
    let (pushed, error) = provisioning
        .push_revocations(None, None, 500)
        .await
        .unwrap();
    assert_eq!((pushed, error.is_none()), (refused.len(), true));
    assert_eq!(updates() - before, refused.len());
    for d in &devices {
        assert_done(&app, &ca, d, &[&fake]).await;
    }
}
