//! AWS's view of each certificate, per registration target: two fake AWS IoTs (`eu`, `us`) with
//! one CA registered in both. A sync of one target records that target's view and leaves the
//! other's alone; the summary `aws_status` and the `aws_status` filter answer for any target,
//! `aws_target` for one; CA health counts per target; the CSV export shows each target.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::aws::{AwsError, AwsFailure, IotRegistry};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The serials a listing answers, in its order.
async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    let response = app
        .get(&app.viewer, &format!("/v1/certificates?{query}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    json(response).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["serial"].as_str().unwrap().to_owned())
        .collect()
}

fn target_entry<'a>(row: &'a Value, target: &str) -> &'a Value {
    row["aws_targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no aws_targets: {row}"))
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target}: {row}"))
}

async fn row(app: &TestApp, serial: &str) -> Value {
    json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await
}

async fn sync(app: &TestApp, ca: &str, targets: &str) -> Value {
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/cas/{ca}/aws/sync?targets={targets}"),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

fn target_health(report: &Value, ca: &str, target: &str) -> Value {
    let ours = report["cas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ca_id"] == ca)
        .unwrap();
    let mut entry = ours["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == target)
        .unwrap()
        .clone();
    entry["findings"] = json!(
        ours["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["target"] == target)
            .map(|f| f["code"].clone())
            .collect::<Vec<_>>()
    );
    entry
}

on_both_backends!(each_target_keeps_its_own_view_of_each_certificate);

async fn each_target_keeps_its_own_view_of_each_certificate(backend: Backend) {
    let (app, eu, us) = TestApp::spawn_eu_us(backend).await;
    let ca = app.register_ca_with_jitp().await;

    // Both connected in eu and in us; travelling and second connected in us only; silent never
    // connected.
    let both = app.device("Both-1").await;
    let travelling = app.device("Travelling-1").await;
    let silent = app.device("Silent-1").await;
    let second = app.device("Second-1").await;
    eu.simulate_first_connection(&both.der).unwrap();
    us.simulate_first_connection(&both.der).unwrap();
    us.simulate_first_connection(&travelling.der).unwrap();
    us.simulate_first_connection(&second.der).unwrap();
    // us deactivated `both` there.
    us.update_certificate(&both.aws_id, "INACTIVE")
        .await
        .unwrap();

    // Sync eu only: eu's view, us has none yet.
    let report = sync(&app, &ca, "eu").await;
    assert_eq!(report["targets"].as_array().unwrap().len(), 1, "{report}");
    let b = row(&app, &both.serial).await;
    assert_eq!(b["aws_status"], "ACTIVE", "{b}");
    assert_eq!(target_entry(&b, "eu")["aws_status"], "ACTIVE", "{b}");
    assert!(
        target_entry(&b, "eu")["aws_first_seen_at"].is_string(),
        "{b}"
    );
    // us is listed (the CA is registered there) but has not reported the certificate.
    assert!(target_entry(&b, "us")["aws_status"].is_null(), "{b}");
    let t = row(&app, &travelling.serial).await;
    assert!(t["aws_status"].is_null(), "{t}");

    // Sync us: us's view is added, eu's stays what eu reported.
    sync(&app, &ca, "us").await;
    let b = row(&app, &both.serial).await;
    assert_eq!(target_entry(&b, "eu")["aws_status"], "ACTIVE", "{b}");
    assert_eq!(target_entry(&b, "us")["aws_status"], "INACTIVE", "{b}");
    // ACTIVE somewhere: the summary is ACTIVE, whichever target synced last.
    assert_eq!(b["aws_status"], "ACTIVE", "{b}");
    let t = row(&app, &travelling.serial).await;
    assert_eq!(t["aws_status"], "ACTIVE", "{t}");
    assert!(target_entry(&t, "eu")["aws_status"].is_null(), "{t}");
    assert_eq!(target_entry(&t, "us")["aws_status"], "ACTIVE", "{t}");
    // eu again: us's INACTIVE is not overwritten.
    sync(&app, &ca, "eu").await;
    let b = row(&app, &both.serial).await;
    assert_eq!(target_entry(&b, "us")["aws_status"], "INACTIVE", "{b}");

    // The filter: any target without aws_target, one target with it.
    let set = |serials: &[&Device]| {
        let mut v: Vec<String> = serials.iter().map(|d| d.serial.clone()).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(listed(&app, "aws_status=ACTIVE").await),
        set(&[&both, &travelling, &second])
    );
    assert_eq!(
        listed(&app, "aws_status=ACTIVE&aws_target=eu").await,
        set(&[&both])
    );
    assert_eq!(listed(&app, "aws_status=INACTIVE").await, set(&[&both]));
    assert_eq!(
        listed(&app, "aws_status=INACTIVE&aws_target=us").await,
        set(&[&both])
    );
    assert!(
        listed(&app, "aws_status=inactive&aws_target=eu")
            .await
            .is_empty()
    );
    assert_eq!(listed(&app, "aws_status=never_seen").await, set(&[&silent]));
    // Newest first, as every listing.
    assert_eq!(
        listed(&app, "aws_status=never_seen&aws_target=eu").await,
        vec![
            second.serial.clone(),
            silent.serial.clone(),
            travelling.serial.clone()
        ]
    );
    assert_eq!(
        listed(&app, "aws_status=never_seen&aws_target=eu&sort=asc").await,
        vec![
            travelling.serial.clone(),
            silent.serial.clone(),
            second.serial.clone()
        ]
    );
    let page = json(
        app.get(
            &app.viewer,
            "/v1/certificates?aws_status=ACTIVE&aws_target=us&limit=1",
        )
        .await,
    )
    .await;
    // Paging through a per-target filter keeps its order and ends.
    assert_eq!(page["items"][0]["serial"], second.serial.as_str(), "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = json(
        app.get(
            &app.viewer,
            &format!("/v1/certificates?aws_status=ACTIVE&aws_target=us&limit=1&cursor={cursor}"),
        )
        .await,
    )
    .await;
    assert_eq!(
        next["items"][0]["serial"],
        travelling.serial.as_str(),
        "{next}"
    );
    assert!(next["next_cursor"].is_null(), "{next}");
    // Bad input: 4xx with a stable code.
    let unknown = app
        .get(
            &app.viewer,
            "/v1/certificates?aws_status=ACTIVE&aws_target=mars",
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let problem = json(unknown).await;
    assert_eq!(problem["code"], "unknown_aws_target", "{problem}");
    let alone = app.get(&app.viewer, "/v1/certificates?aws_target=eu").await;
    assert_eq!(alone.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(alone).await["code"], "invalid_query");

    // Revoked while eu is down: us has it (REVOKED there), eu still has the device ACTIVE.
    eu.go_down(AwsError::Unavailable(AwsFailure {
        code: Some("ServiceUnavailableException".into()),
        message: "eu is down".into(),
        http_status: Some(503),
        request_id: None,
    }));
    let revoked = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/certificates/{}/revoke", both.serial),
            json!({"reason": "key_compromise"}),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let revoked = json(revoked).await;
    assert_eq!(revoked["aws_revocation_pending"], true, "{revoked}");
    assert_eq!(target_entry(&revoked, "us")["aws_status"], "REVOKED");
    assert_eq!(
        target_entry(&revoked, "us")["aws_revocation_pending"],
        false
    );
    assert_eq!(target_entry(&revoked, "eu")["aws_status"], "ACTIVE");
    assert_eq!(target_entry(&revoked, "eu")["aws_revocation_pending"], true);
    assert_eq!(revoked["aws_status"], "ACTIVE", "{revoked}");

    // Health per (CA, target): eu has the revoked-but-active device and the pending push.
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    let eu_health = target_health(&health, &ca, "eu");
    let us_health = target_health(&health, &ca, "us");
    assert_eq!(eu_health["revoked_but_active"], 1, "{eu_health}");
    assert_eq!(eu_health["revocations_pending"], 1, "{eu_health}");
    assert!(
        eu_health["findings"]
            .as_array()
            .unwrap()
            .contains(&json!("revoked_device_active_in_aws")),
        "{eu_health}"
    );
    assert_eq!(us_health["revoked_but_active"], 0, "{us_health}");
    assert_eq!(us_health["revocations_pending"], 0, "{us_health}");
    assert!(
        !us_health["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "revoked_device_active_in_aws" || f == "revocations_pending_in_aws"),
        "{us_health}"
    );
    let fix = health["cas"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["findings"].as_array().unwrap())
        .find(|f| f["code"] == "revoked_device_active_in_aws")
        .unwrap()["fix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(fix.contains("aws_target=eu"), "{fix}");
    assert_eq!(
        listed(&app, "status=revoked&aws_status=ACTIVE&aws_target=eu").await,
        set(&[&both])
    );
    assert!(
        listed(&app, "status=revoked&aws_status=ACTIVE&aws_target=us")
            .await
            .is_empty()
    );

    // The CSV export: each target's view, and which targets still wait for the revocation.
    let csv = app
        .get(&app.viewer, "/v1/certificates/export.csv?aws_status=ACTIVE")
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].ends_with(",aws_status_by_target,aws_revocation_pending_targets"),
        "{}",
        lines[0]
    );
    let line_of = |serial: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(serial))
            .unwrap_or_else(|| panic!("{serial} not in\n{csv}"))
            .to_string()
    };
    assert!(
        line_of(&both.serial).ends_with(",eu=ACTIVE;us=REVOKED,eu"),
        "{}",
        line_of(&both.serial)
    );
    assert!(
        line_of(&travelling.serial).ends_with(",eu=never_seen;us=ACTIVE,"),
        "{}",
        line_of(&travelling.serial)
    );
    assert_eq!(lines.len(), 4, "{csv}");
    let per_target = app
        .get(
            &app.viewer,
            "/v1/certificates/export.csv?aws_status=ACTIVE&aws_target=us",
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(per_target.lines().count(), 3, "{per_target}");
    assert!(per_target.contains(&travelling.serial), "{per_target}");
    assert!(!per_target.contains(&both.serial), "{per_target}");

    // eu back: the retry tells eu, the revocation is done, the finding clears.
    eu.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = row(&app, &both.serial).await;
        if b["aws_revocation_pending"] == false {
            assert_eq!(b["aws_status"], "REVOKED", "{b}");
            assert_eq!(target_entry(&b, "eu")["aws_status"], "REVOKED", "{b}");
            assert_eq!(target_entry(&b, "us")["aws_status"], "REVOKED", "{b}");
            break;
        }
        assert!(Instant::now() < deadline, "the retry did not reach eu");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = json(app.get(&app.admin, "/v1/admin/health").await).await;
    let eu_health = target_health(&health, &ca, "eu");
    assert_eq!(eu_health["revoked_but_active"], 0, "{eu_health}");
    assert_eq!(eu_health["revocations_pending"], 0, "{eu_health}");
    assert!(
        eu_health["findings"].as_array().unwrap().is_empty(),
        "{eu_health}"
    );
    // The device stays unseen everywhere it never connected.
    let s = row(&app, &silent.serial).await;
    assert!(s["aws_status"].is_null(), "{s}");
    assert!(
        s["aws_targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["aws_status"].is_null() && t["aws_revocation_pending"] == false),
        "{s}"
    );
}

on_both_backends!(a_ledger_from_before_targets_keeps_each_status_in_the_first_target);

/// PostgreSQL's serial and SHA-256 columns as text, as before migration 0031 (once `certificate_aws_status`
/// is gone), and 0031 due again.
const SERIALS_AS_TEXT: &str = "\
    DROP VIEW issued_certificates_hex; \
    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_serial_fkey; \
    ALTER TABLE aws_revocation_targets DROP CONSTRAINT aws_revocation_targets_serial_fkey; \
    ALTER TABLE issued_certificates DROP CONSTRAINT issued_certificates_serial_check, \
        DROP CONSTRAINT issued_certificates_superseded_by_length, \
        ALTER COLUMN serial TYPE text USING encode(serial, 'hex'), \
        ALTER COLUMN superseded_by TYPE text USING encode(superseded_by, 'hex'), \
        DROP CONSTRAINT issued_certificates_spki_sha256_length, \
        DROP CONSTRAINT issued_certificates_aws_certificate_id_length, \
        ALTER COLUMN spki_sha256 TYPE text USING encode(spki_sha256, 'hex'), \
        ALTER COLUMN aws_certificate_id TYPE text USING encode(aws_certificate_id, 'hex'), \
        ADD CONSTRAINT issued_certificates_serial_check CHECK (serial ~ '^[0-9a-f]{40}$'); \
    ALTER TABLE thing_claims ALTER COLUMN serial TYPE text USING encode(serial, 'hex'); \
    ALTER TABLE idempotency_keys ALTER COLUMN serial TYPE text USING encode(serial, 'hex'); \
    ALTER TABLE ledger_chain ALTER COLUMN serial TYPE text USING encode(serial, 'hex'); \
    ALTER TABLE aws_revocation_targets ALTER COLUMN serial TYPE text \
        USING encode(serial, 'hex'); \
    ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_serial_fkey \
        FOREIGN KEY (serial) REFERENCES issued_certificates (serial) \
        DEFERRABLE INITIALLY IMMEDIATE; \
    ALTER TABLE aws_revocation_targets ADD CONSTRAINT aws_revocation_targets_serial_fkey \
        FOREIGN KEY (serial) REFERENCES issued_certificates (serial); \
    DELETE FROM _sqlx_migrations WHERE version = 31;";

/// Migration 0022 on a ledger written before it: each certificate's single status becomes the
/// entry of the target its CA's registration is described by (here `eu`, the first by name of
/// `eu` and `us`), the summary stays as it was, and a certificate AWS never saw stays unseen.
async fn a_ledger_from_before_targets_keeps_each_status_in_the_first_target(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seen = app.device("Seen-1").await;
    let revoked = app.device("Revoked-1").await;
    let silent = app.device("Silent-1").await;
    // The ledger as it was before 0022: the status in issued_certificates only (and on
    // PostgreSQL, serials as text, as before 0031, which then applies to it as well).
    app.execute_sql(&format!(
        "INSERT INTO ca_aws_registrations (ca_id, target, aws_certificate_id, certificate_arn, \
           mode, status, auto_registration, registered_at, updated_at) \
         SELECT id, t, aws_certificate_id, 'arn:aws:iot:' || t || ':cacert/x', 'sni_only', \
           'ACTIVE', true, created_at, created_at \
         FROM certificate_authorities, (SELECT 'us' AS t UNION ALL SELECT 'eu') AS targets; \
         DROP TABLE certificate_aws_status; \
         DELETE FROM _sqlx_migrations WHERE version = 22; \
         {} \
         UPDATE issued_certificates SET aws_status = 'ACTIVE', aws_first_seen_at = issued_at, \
           aws_synced_at = issued_at WHERE serial = '{}'; \
         UPDATE issued_certificates SET aws_status = 'REVOKED', aws_synced_at = issued_at \
           WHERE serial = '{}'",
        match backend {
            Backend::Postgres => SERIALS_AS_TEXT,
            Backend::Sqlite => "",
        },
        seen.serial,
        revoked.serial
    ))
    .await;
    app.store
        .migrate()
        .await
        .expect("0022 applies to the old ledger");

    let s = row(&app, &seen.serial).await;
    assert_eq!(s["aws_status"], "ACTIVE", "{s}");
    assert_eq!(target_entry(&s, "eu")["aws_status"], "ACTIVE", "{s}");
    assert_eq!(
        target_entry(&s, "eu")["aws_first_seen_at"],
        s["aws_first_seen_at"],
        "{s}"
    );
    assert!(target_entry(&s, "us")["aws_status"].is_null(), "{s}");
    let r = row(&app, &revoked.serial).await;
    assert_eq!(r["aws_status"], "REVOKED", "{r}");
    assert_eq!(target_entry(&r, "eu")["aws_status"], "REVOKED", "{r}");
    let q = row(&app, &silent.serial).await;
    assert!(q["aws_status"].is_null(), "{q}");
    assert!(
        q["aws_targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["aws_status"].is_null()),
        "{q}"
    );
    // The filters read the migrated rows: the per-target one through the store (no target is
    // configured in this app, so the API refuses aws_target).
    let filter = |status, target: Option<&str>| factory_ca::store::CertificateFilter {
        aws_status: Some(status),
        aws_target: target.map(str::to_owned),
        ..Default::default()
    };
    let serials = |rows: Vec<factory_ca::store::CertificateRecord>| {
        rows.into_iter().map(|r| r.serial).collect::<Vec<_>>()
    };
    use factory_ca::aws::AwsCertificateStatus::{Active, Revoked};
    use factory_ca::store::AwsStatusFilter::{NeverSeen, Reported};
    let store = &app.store;
    assert_eq!(
        serials(
            store
                .list_certificates(&filter(Reported(Active), Some("eu")), 10)
                .await
                .unwrap()
        ),
        vec![seen.serial.clone()]
    );
    assert!(
        store
            .list_certificates(&filter(Reported(Active), Some("us")), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        serials(
            store
                .list_certificates(&filter(Reported(Revoked), None), 10)
                .await
                .unwrap()
        ),
        vec![revoked.serial.clone()]
    );
    assert_eq!(
        serials(
            store
                .list_certificates(&filter(NeverSeen, None), 10)
                .await
                .unwrap()
        ),
        vec![silent.serial.clone()]
    );
    assert_eq!(
        serials(
            store
                .list_certificates(&filter(NeverSeen, Some("us")), 10)
                .await
                .unwrap()
        ),
        vec![
            silent.serial.clone(),
            revoked.serial.clone(),
            seen.serial.clone()
        ]
    );
    assert_eq!(
        listed(&app, "aws_status=REVOKED").await,
        vec![revoked.serial.clone()]
    );
}
