//! Stored CRLs (`GET /v1/cas/{id}/crl`): signed when revocations change, served from storage
//! with `ETag`, `If-None-Match` and cache headers, numbered by a per-CA counter in the store.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use x509_parser::prelude::*;

on_both_backends!(
    serving_the_crl_many_times_reads_the_ledger_once,
    a_revocation_makes_the_next_crl_list_it_with_a_larger_number,
    if_none_match_answers_304_until_a_newer_crl_exists,
    crl_dates_follow_the_revocation_settings,
    a_revocation_through_the_store_alone_is_listed_on_the_next_crl,
    issued_certificates_name_their_crl_only_when_configured,
    a_revocation_signs_the_new_crl_before_anyone_asks,
    a_delta_crl_on_the_base_makes_openssl_refuse_a_later_revocation,
);

async fn issue(app: &TestApp, thing: &str) -> (String, String) {
    let response = app.sign(&csr(thing, "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    let body = json(response).await;
    (
        body["serial"].as_str().unwrap().to_owned(),
        body["issuing_ca"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(app: &TestApp, serial: &str) {
    let response = app
        .admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/certificates/{serial}/revoke"),
            serde_json::json!({ "reason": "key_compromise" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "revoke {serial}");
}

async fn get_crl(app: &TestApp, ca_id: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(&format!("/v1/cas/{ca_id}/crl")));
    if let Some(tag) = if_none_match {
        request = request.header("If-None-Match", tag);
    }
    request.send().await.expect("request sent")
}

/// `factory_ca_crl_ledger_scans_total` of one CA, as `/metrics` reports it (0 when absent).
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
        .map(|value| value.trim().parse().expect("a counter value"))
        .unwrap_or(0)
}

/// (CRL number, thisUpdate, nextUpdate, revoked serials in lowercase hex).
fn parse_crl(der: &[u8]) -> (u64, i64, i64, Vec<String>) {
    let (_, crl) = CertificateRevocationList::from_der(der).expect("a DER CRL");
    let number = crl.crl_number().expect("a CRL number");
    let serials = crl
        .iter_revoked_certificates()
        .map(|entry| {
            let hex: String = entry
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            hex
        })
        .collect();
    (
        number.to_string().parse().unwrap(),
        crl.last_update().timestamp(),
        crl.next_update().unwrap().timestamp(),
        serials,
    )
}

async fn serving_the_crl_many_times_reads_the_ledger_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (serial, ca_id) = issue(&app, "Stored-1").await;
    issue(&app, "Stored-2").await;
    revoke(&app, &serial).await;

    let first = get_crl(&app, &ca_id, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let first = first.bytes().await.unwrap();
    let scans = ledger_scans(&app, &ca_id).await;
    assert!(scans >= 1, "the first request builds the CRL");

    for _ in 0..200 {
        let response = get_crl(&app, &ca_id, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["etag"].to_str().unwrap(), etag);
        // The same bytes: ECDSA signatures differ every time, so nothing was signed again.
        assert_eq!(response.bytes().await.unwrap(), first);
    }
    assert_eq!(
        ledger_scans(&app, &ca_id).await,
        scans,
        "serving 200 CRLs read no revoked certificates from the ledger"
    );
    let (_, _, _, listed) = parse_crl(&first);
    assert_eq!(listed, vec![serial]);
}

async fn a_revocation_makes_the_next_crl_list_it_with_a_larger_number(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (first_serial, ca_id) = issue(&app, "Number-1").await;
    let (second_serial, _) = issue(&app, "Number-2").await;

    let empty = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    let (empty_number, _, _, listed) = parse_crl(&empty);
    assert!(listed.is_empty());
    // The first number is the Unix time of the first build: above the clock-based numbers
    // that earlier versions put on CRLs.
    assert!(empty_number > 1_700_000_000, "{empty_number}");

    revoke(&app, &first_serial).await;
    let one = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    let (one_number, _, _, listed) = parse_crl(&one);
    assert_eq!(listed, vec![first_serial.clone()]);
    assert_eq!(one_number, empty_number + 1);

    revoke(&app, &second_serial).await;
    let two = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    let (two_number, _, _, mut listed) = parse_crl(&two);
    listed.sort();
    let mut expected = vec![first_serial, second_serial];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(two_number, one_number + 1);

    // The counter is in the store: a restarted service continues it.
    let app = app.restart().await;
    let (third_serial, _) = issue(&app, "Number-3").await;
    revoke(&app, &third_serial).await;
    let three = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    let (three_number, _, _, listed) = parse_crl(&three);
    assert_eq!(three_number, two_number + 1);
    assert_eq!(listed.len(), 3);
}

async fn if_none_match_answers_304_until_a_newer_crl_exists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (serial, ca_id) = issue(&app, "Etag-1").await;

    let response = get_crl(&app, &ca_id, None).await;
    let headers = response.headers().clone();
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with("\"crl-") && etag.ends_with("-der\""),
        "{etag}"
    );
    let cache_control = headers["cache-control"].to_str().unwrap();
    assert_eq!(cache_control, "public, max-age=60");
    assert!(headers["last-modified"].to_str().unwrap().ends_with(" GMT"));
    assert!(headers.contains_key("expires"));

    let not_modified = get_crl(&app, &ca_id, Some(&etag)).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    assert!(not_modified.bytes().await.unwrap().is_empty());
    // A list of tags, a weak tag and `*` match too.
    for header in [
        format!("\"other\", {etag}"),
        format!("W/{etag}"),
        "*".to_owned(),
    ] {
        let response = get_crl(&app, &ca_id, Some(&header)).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{header}");
    }
    // The PEM form is another representation with a tag of its own.
    let pem = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/crl?format=pem")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(pem.status(), StatusCode::OK);
    assert!(pem.headers()["etag"].to_str().unwrap().ends_with("-pem\""));

    revoke(&app, &serial).await;
    let changed = get_crl(&app, &ca_id, Some(&etag)).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let (_, _, _, listed) = parse_crl(&changed.bytes().await.unwrap());
    assert_eq!(listed, vec![serial]);
}

async fn crl_dates_follow_the_revocation_settings(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.revocation.crl_validity_secs = std::time::Duration::from_secs(3600);
        s.revocation.crl_refresh_before_secs = std::time::Duration::from_secs(600);
        s.revocation.crl_cache_max_age_secs = std::time::Duration::from_secs(7200);
    })
    .await;
    let (_, ca_id) = issue(&app, "Dates-1").await;
    let response = get_crl(&app, &ca_id, None).await;
    // max-age never reaches past nextUpdate.
    let cache_control = response.headers()["cache-control"].to_str().unwrap();
    let max_age: i64 = cache_control
        .strip_prefix("public, max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&max_age), "{cache_control}");
    let (_, this_update, next_update, _) = parse_crl(&response.bytes().await.unwrap());
    assert_eq!(next_update - this_update, 3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - this_update).abs() < 60);
}

/// A revocation written by another process on the same store (another replica, the CLI) marks
/// the CRL behind in the store itself, so the next request signs a new one.
async fn a_revocation_through_the_store_alone_is_listed_on_the_next_crl(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (serial, ca_id) = issue(&app, "Replica-1").await;
    let before = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    assert!(parse_crl(&before).3.is_empty());

    let outcome = app
        .store
        .revoke_certificate(
            &serial,
            factory_ca::ca::RevocationReason::Superseded,
            factory_ca::store::Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        factory_ca::store::revocation::RevokeOutcome::Revoked
    );
    let after = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    assert_eq!(parse_crl(&after).3, vec![serial]);
}

/// The URIs of a certificate's cRLDistributionPoints extension; `None` without one.
fn crl_distribution_points(pem: &str) -> Option<Vec<String>> {
    let der = der_of(pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => Some(
                points
                    .points
                    .iter()
                    .flat_map(|p| match &p.distribution_point {
                        Some(DistributionPointName::FullName(names)) => names
                            .iter()
                            .filter_map(|n| match n {
                                GeneralName::URI(uri) => Some(uri.to_string()),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    })
                    .collect(),
            ),
            _ => None,
        })
}

async fn issued_certificates_name_their_crl_only_when_configured(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json(app.sign(&csr("Cdp-off", "JP").pem).await).await;
    assert_eq!(
        crl_distribution_points(body["certificate_pem"].as_str().unwrap()),
        None,
        "off by default"
    );
    drop(app);

    let app = TestApp::spawn_with(backend, |s| {
        s.revocation.crl_distribution_point_url =
            Some("http://pki.example.test/v1/cas/{ca_id}/crl".into());
    })
    .await;
    let body = json(app.sign(&csr("Cdp-on", "JP").pem).await).await;
    let ca_id = body["issuing_ca"].as_str().unwrap();
    assert_eq!(
        crl_distribution_points(body["certificate_pem"].as_str().unwrap()),
        Some(vec![format!("http://pki.example.test/v1/cas/{ca_id}/crl")])
    );
}

async fn a_revocation_signs_the_new_crl_before_anyone_asks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (serial, ca_id) = issue(&app, "Eager-1").await;
    revoke(&app, &serial).await;
    // No CRL request: the upkeep job, woken by the revocation, signs and stores it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stored = loop {
        let state = app.store.crl_state(&ca_id).await.unwrap().unwrap();
        if let Some(crl) = state.crl
            && crl.built_generation >= state.revocation_generation
        {
            break crl;
        }
        assert!(std::time::Instant::now() < deadline, "no CRL was stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(stored.revoked_count, 1);
    assert_eq!(parse_crl(&stored.der).3, vec![serial]);
    let served = get_crl(&app, &ca_id, None).await.bytes().await.unwrap();
    assert_eq!(served, stored.der, "the stored CRL is the one served");
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn get_pem(app: &TestApp, path: &str) -> String {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.unwrap()
}

/// Issues `thing` and returns (serial, certificate PEM, CA PEM, CA id).
async fn issue_pem(app: &TestApp, thing: &str) -> (String, String, String, String) {
    let body = json(app.sign(&csr(thing, "JP").pem).await).await;
    let get = |k: &str| body[k].as_str().unwrap().to_owned();
    (
        get("serial"),
        get("certificate_pem"),
        get("ca_certificate_pem"),
        get("issuing_ca"),
    )
}

async fn a_delta_crl_on_the_base_makes_openssl_refuse_a_later_revocation(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.revocation.delta_crl_url =
            Some("http://pki.example.test/v1/cas/{ca_id}/delta-crl".into());
    })
    .await;
    let dir = app.dir.path();
    let (first, _, ca_pem, ca_id) = issue_pem(&app, "Delta-1").await;
    let (later, later_pem, _, _) = issue_pem(&app, "Delta-2").await;
    let (_, good_pem, _, _) = issue_pem(&app, "Delta-3").await;
    write(dir, "ca.pem", &ca_pem);
    write(dir, "later.pem", &later_pem);
    write(dir, "good.pem", &good_pem);

    revoke(&app, &first).await;
    // The first complete CRL becomes the base of the deltas.
    let base = get_pem(&app, &format!("/v1/cas/{ca_id}/crl?format=pem")).await;
    write(dir, "base.pem", &base);
    let base_text = openssl(
        dir,
        &[
            "crl", "-in", "base.pem", "-CAfile", "ca.pem", "-noout", "-text",
        ],
    );
    assert!(base_text.contains("verify OK"), "{base_text}");
    assert!(base_text.contains("Freshest CRL"), "{base_text}");
    assert!(
        base_text.contains(&format!(
            "URI:http://pki.example.test/v1/cas/{ca_id}/delta-crl"
        )),
        "{base_text}"
    );
    let base_number = parse_crl(&der_of(&base)).0;

    revoke(&app, &later).await;
    let delta = get_pem(&app, &format!("/v1/cas/{ca_id}/delta-crl?format=pem")).await;
    write(dir, "delta.pem", &delta);
    let delta_text = openssl(
        dir,
        &[
            "crl",
            "-in",
            "delta.pem",
            "-CAfile",
            "ca.pem",
            "-noout",
            "-text",
        ],
    );
    assert!(delta_text.contains("verify OK"), "{delta_text}");
    assert!(
        delta_text.contains("Delta CRL Indicator: critical"),
        "{delta_text}"
    );
    assert!(!delta_text.contains("Freshest CRL"), "{delta_text}");
    let (delta_number, _, _, listed) = parse_crl(&der_of(&delta));
    assert!(delta_number > base_number);
    assert!(listed.contains(&later), "{listed:?}");
    // The complete CRL moved on; the base of the delta stays the first one.
    let complete = get_pem(&app, &format!("/v1/cas/{ca_id}/crl?format=pem")).await;
    assert!(parse_crl(&der_of(&complete)).0 > base_number);
    let base_hex = format!("{base_number:X}");
    assert!(
        delta_text.replace(':', "").contains(&base_hex)
            || delta_text.contains(&base_number.to_string()),
        "the delta names base {base_number}: {delta_text}"
    );

    let verify = |cert: &str, crls: &[&str]| {
        let mut args = vec!["verify", "-crl_check", "-use_deltas", "-CAfile", "ca.pem"];
        for crl in crls {
            args.extend(["-CRLfile", crl]);
        }
        args.push(cert);
        openssl(dir, &args)
    };
    // The base alone does not know of the later revocation; with the delta, openssl refuses it.
    let base_only = verify("later.pem", &["base.pem"]);
    assert!(base_only.contains("later.pem: OK"), "{base_only}");
    let with_delta = verify("later.pem", &["base.pem", "delta.pem"]);
    assert!(with_delta.contains("certificate revoked"), "{with_delta}");
    let good = verify("good.pem", &["base.pem", "delta.pem"]);
    assert!(good.contains("good.pem: OK"), "{good}");

    // Served from storage with its own validators.
    let response = get_crl_path(&app, &format!("/v1/cas/{ca_id}/delta-crl")).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with("\"delta-") && etag.ends_with("-der\""),
        "{etag}"
    );
    let again = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/delta-crl")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

async fn get_crl_path(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}
