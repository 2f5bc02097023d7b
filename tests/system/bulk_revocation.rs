//! Revocation at scale on PostgreSQL: N certificates (default 20,000; `FACTORY_CA_BULK_N` for
//! the 100,000 of docs/certificates.md) revoked by one bulk job while stations keep signing, the
//! CRL built once and then served many times without reading the ledger, openssl refusing a
//! revoked device and accepting a good one with that CRL, and a job interrupted by a restart
//! that finishes exactly once. Figures are printed (run with `--nocapture`).

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use factory_ca::services::tokens::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn rows() -> u32 {
    std::env::var("FACTORY_CA_BULK_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

/// Adds `n` ledger rows of station `station` (thing names `bulk-<i>`), copies of a real
/// certificate with their own serials: what the revocation and the CRL read is all there.
async fn add_rows(app: &TestApp, station: &str, n: u32) {
    let columns = "ca_id, country, subject, key_algorithm, spki_sha256, certificate_der, \
                   not_before, not_after";
    app.execute_sql(&format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, station, \
           issued_at, {columns}) \
         SELECT decode(lpad(to_hex(i), 40, '0'), 'hex'), decode(lpad(to_hex(i), 64, '0'), 'hex'), 'bulk-' || i, '{station}', \
           now() - make_interval(secs => i), {columns} \
         FROM (SELECT * FROM issued_certificates LIMIT 1) AS t, generate_series(1, {n}) AS i; \
         INSERT INTO thing_claims (thing_name, serial, not_after) \
         SELECT 'bulk-' || i, decode(lpad(to_hex(i), 40, '0'), 'hex'), now() + interval '365 days' \
         FROM generate_series(1, {n}) AS i"
    ))
    .await;
    app.execute_sql("VACUUM ANALYZE issued_certificates").await;
    app.execute_sql("VACUUM ANALYZE thing_claims").await;
}

async fn issue_as(app: &TestApp, token: &str, thing: &str) -> Value {
    let response = app.sign_as(token, &csr(thing, "JP").pem, None).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    json(response).await
}

async fn wait_finished(app: &TestApp, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let job = json(
            app.get(&app.admin, &format!("/v1/admin/revocations/{id}"))
                .await,
        )
        .await;
        if job["status"] == "succeeded" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ledger_scans(app: &TestApp, ca_id: &str) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("factory_ca_crl_ledger_scans_total{{ca_id=\"{ca_id}\"}}");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0)
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_revocation_of_many_certificates_while_issuing_and_a_crl_served_from_storage() {
    let n = rows();
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.revocation.delta_crl_url =
            Some("http://pki.example.test/v1/cas/{ca_id}/delta-crl".into());
    })
    .await;
    let dir = app.dir.path();
    let line = new_token(&app.store, "line-7", Role::Station).await;
    let revoked_device = issue_as(&app, &line, "Device-revoked").await;
    let good_device = issue_as(&app, &app.station, "Device-good").await;
    let ca_id = good_device["issuing_ca"].as_str().unwrap().to_owned();
    add_rows(&app, "line-7", n).await;
    let total = i64::from(n) + 1;
    // The complete CRL before the job: the base of the delta CRLs, listing nothing.
    let base = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/crl?format=pem")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    write(dir, "base.pem", &base);

    let dry = json(
        app.admin_json(
            reqwest::Method::POST,
            "/v1/admin/revocations",
            json!({"filter": {"station": "line-7"}, "dry_run": true}),
        )
        .await,
    )
    .await;
    assert_eq!(dry["matched"], total);

    // Stations keep signing while the job runs.
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let signer = {
        let (stop, issued) = (stop.clone(), issued.clone());
        let (client, url, token) = (
            app.client.clone(),
            app.url("/v1/certificates"),
            app.station.clone(),
        );
        let csrs: Vec<String> = (0..2000)
            .map(|i| csr(&format!("During-{i}"), "JP").pem)
            .collect();
        tokio::spawn(async move {
            for csr in csrs {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "csr": csr }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                issued.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_start = issued.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = issued.load(Ordering::Relaxed);
    println!(
        "issuance before the job: {}/s (one client, one request at a time)",
        before - baseline_start
    );
    let started = Instant::now();
    let response = app
        .admin_json(
            reqwest::Method::POST,
            "/v1/admin/revocations",
            json!({"filter": {"station": "line-7"}, "reason": "key_compromise"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = json(response).await["id"].as_str().unwrap().to_owned();
    let job = wait_finished(&app, &id, Duration::from_secs(300)).await;
    let wall = started.elapsed();
    let during = issued.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    signer.await.unwrap();
    assert_eq!(job["revoked"], total);
    assert_eq!(job["matched"], total);
    println!(
        "bulk revocation: {total} certificates in {:.2} s ({:.0}/s); {during} certificates \
         issued meanwhile ({:.0}/s)",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        during as f64 / wall.as_secs_f64()
    );
    assert!(during > 0, "issuance went on during the job");

    // The first request after the job may build the CRL (unless the upkeep job did).
    let started = Instant::now();
    let first = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/crl")))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let crl = first.bytes().await.unwrap();
    println!(
        "CRL: {} entries, {} bytes, first request {:.3} s",
        total,
        crl.len(),
        started.elapsed().as_secs_f64()
    );
    let scans = ledger_scans(&app, &ca_id).await;

    let serves: u32 = std::env::var("FACTORY_CA_CRL_SERVES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let started = Instant::now();
    for _ in 0..serves {
        let response = app
            .client
            .get(app.url(&format!("/v1/cas/{ca_id}/crl")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(response.bytes().await.unwrap().len(), crl.len());
    }
    let elapsed = started.elapsed();
    assert_eq!(
        ledger_scans(&app, &ca_id).await,
        scans,
        "no ledger reads while serving"
    );
    println!(
        "CRL served {serves} times in {:.2} s ({:.2} ms each), ledger reads: 0",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / f64::from(serves)
    );

    // openssl: the CRL verifies, lists the revoked device, and refuses it with -crl_check.
    std::fs::write(dir.join("crl.der"), &crl).unwrap();
    write(
        dir,
        "ca.pem",
        good_device["ca_certificate_pem"].as_str().unwrap(),
    );
    write(
        dir,
        "revoked.pem",
        revoked_device["certificate_pem"].as_str().unwrap(),
    );
    write(
        dir,
        "good.pem",
        good_device["certificate_pem"].as_str().unwrap(),
    );
    let checked = openssl(
        dir,
        &[
            "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem", "-noout", "-text",
        ],
    );
    let crl_text = text(&checked);
    assert!(
        crl_text.contains("verify OK"),
        "{}",
        &crl_text[..crl_text.len().min(2000)]
    );
    assert!(
        crl_text
            .to_ascii_lowercase()
            .contains(revoked_device["serial"].as_str().unwrap())
    );
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"]));
    let verify = |cert: &str| {
        text(&openssl(
            dir,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "ca.pem",
                "-CRLfile",
                "crl.pem",
                cert,
            ],
        ))
    };
    let refused = verify("revoked.pem");
    assert!(refused.contains("certificate revoked"), "{refused}");
    let accepted = verify("good.pem");
    assert!(accepted.contains("good.pem: OK"), "{accepted}");

    // The delta CRL on the base from before the job lists the job's revocations: with it,
    // openssl refuses the revoked device; with the base alone it cannot know.
    let started = Instant::now();
    let delta = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/delta-crl?format=pem")))
        .send()
        .await
        .unwrap();
    assert_eq!(delta.status(), StatusCode::OK);
    let delta = delta.text().await.unwrap();
    println!(
        "delta CRL on the empty base: {} bytes of PEM, first request {:.3} s",
        delta.len(),
        started.elapsed().as_secs_f64()
    );
    write(dir, "delta.pem", &delta);
    let with_deltas = |cert: &str, crls: &[&str]| {
        let mut args = vec!["verify", "-crl_check", "-use_deltas", "-CAfile", "ca.pem"];
        for crl in crls {
            args.extend(["-CRLfile", crl]);
        }
        args.push(cert);
        text(&openssl(dir, &args))
    };
    let base_only = with_deltas("revoked.pem", &["base.pem"]);
    assert!(base_only.contains("revoked.pem: OK"), "{base_only}");
    let refused = with_deltas("revoked.pem", &["base.pem", "delta.pem"]);
    assert!(refused.contains("certificate revoked"), "{refused}");
    let accepted = with_deltas("good.pem", &["base.pem", "delta.pem"]);
    assert!(accepted.contains("good.pem: OK"), "{accepted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_job_interrupted_by_a_restart_finishes_exactly_once_on_postgres() {
    let n = 20_000;
    // Small batches, so that the restart lands mid-job.
    let app = TestApp::spawn_with(Backend::Postgres, |s| s.revocation.bulk_batch_size = 100).await;
    issue_as(&app, &app.station, "Template-1").await;
    add_rows(&app, "line-9", n).await;

    let response = app
        .admin_json(
            reqwest::Method::POST,
            "/v1/admin/revocations",
            json!({"filter": {"station": "line-9"}, "reason": "superseded"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = json(response).await["id"].as_str().unwrap().to_owned();
    // Wait for the first batches, then stop the service mid-job.
    let deadline = Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let job = json(
            app.get(&app.admin, &format!("/v1/admin/revocations/{id}"))
                .await,
        )
        .await;
        let revoked = job["revoked"].as_i64().unwrap();
        if revoked > 0 {
            assert_eq!(
                job["status"], "running",
                "the job finished before the restart"
            );
            break revoked;
        }
        assert!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let app = app.restart().await;
    let job = wait_finished(&app, &id, Duration::from_secs(300)).await;
    println!(
        "restart after {progress} of {n}; the job finished with {}",
        job["revoked"]
    );
    assert_eq!(job["revoked"], i64::from(n));
    assert_eq!(job["matched"], i64::from(n));

    assert_eq!(
        count(
            &app,
            &id,
            "SELECT COUNT(*) FROM issued_certificates WHERE revocation_job = $1"
        )
        .await,
        i64::from(n)
    );
    assert_eq!(
        count(
            &app,
            &id,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'certificate.bulk_revoke' \
             AND target = $1"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            &id,
            "SELECT COUNT(*) FROM issued_certificates WHERE station = 'line-9' \
             AND status = 'active' AND $1 <> ''"
        )
        .await,
        0
    );
}

async fn count(app: &TestApp, id: &str, sql: &str) -> i64 {
    let factory_ca::store::Store::Postgres(pool) = &app.store else {
        unreachable!("these tests run on PostgreSQL")
    };
    let (count,): (i64,) = sqlx::query_as(sql).bind(id).fetch_one(pool).await.unwrap();
    count
}
