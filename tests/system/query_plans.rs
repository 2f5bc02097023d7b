//! Every list and stats query the dashboards send is served by an index, on a PostgreSQL ledger
//! of one million rows: the plans PostgreSQL chooses (`EXPLAIN`) must not scan the table.
//! The plans are written to `target/test-artifacts/query-plans.md`; `docs/query-plans.md` is a
//! copy from one run.

use std::fmt::Write as _;

use crate::common::*;
use factory_ca::aws::AwsCertificateStatus;
use factory_ca::store::stats::StatsGrouping;
use factory_ca::store::{CertificateFilter, Timestamp};
use reqwest::StatusCode;
use time::{Duration, OffsetDateTime};

const ROWS: u32 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_and_stats_query_uses_an_index_on_a_million_row_ledger() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let response = app.sign(&csr("template-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // A year of issuance from eight stations in three countries, 1% revoked, plus a year of
    // hourly rejection counts. Rows copy the real certificate; serials and names differ.
    let columns = "ca_id, subject, key_algorithm, spki_sha256, certificate_der, not_before";
    app.execute_sql(&format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, country, \
           station, issued_at, not_after, status, revoked_at, {columns}) \
         SELECT decode(lpad(to_hex(i), 40, '0'), 'hex'), decode(lpad(to_hex(i), 64, '0'), 'hex'), 'bulk-' || i, \
           (ARRAY['JP', 'US', 'DE'])[1 + i % 3], 'station-' || (i % 8), \
           now() - make_interval(secs => i * 31.5), now() + interval '3650 days', \
           CASE WHEN i % 100 = 0 THEN 'revoked' ELSE 'active' END, \
           CASE WHEN i % 100 = 0 THEN now() - make_interval(secs => i * 15) END, {columns} \
         FROM (SELECT * FROM issued_certificates LIMIT 1) AS t, generate_series(1, {ROWS}) AS i; \
         INSERT INTO rejection_counts (bucket, station, code, ca_id, count) \
         SELECT date_trunc('hour', now()) - make_interval(hours => h), 'station-' || (h % 8), \
           (ARRAY['invalid_csr', 'invalid_thing_name', 'rate_limited'])[1 + h % 3], ca_id, 1 + h % 5 \
         FROM (SELECT ca_id FROM issued_certificates LIMIT 1) AS t, generate_series(0, 8759) AS h"
    ))
    .await;
    // AWS's view per registration target: eu has seen three quarters of the devices (one in
    // 256 of them REVOKED there), us half (one in 256 INACTIVE), and the CA is registered in
    // both. The hex digits of the serial stand in for where a device connected.
    app.execute_sql(
        "INSERT INTO certificate_aws_status (serial, target, aws_status, aws_first_seen_at, \
           recorded_at, issued_at) \
         SELECT serial, 'eu', CASE WHEN right(encode(serial, 'hex'), 2) = 'aa' THEN 'REVOKED' ELSE 'ACTIVE' END, \
           issued_at, now(), issued_at FROM issued_certificates \
         WHERE right(encode(serial, 'hex'), 1) NOT IN ('0', '1', '2', '3'); \
         INSERT INTO certificate_aws_status (serial, target, aws_status, aws_first_seen_at, \
           recorded_at, issued_at) \
         SELECT serial, 'us', CASE WHEN right(encode(serial, 'hex'), 2) = '07' THEN 'INACTIVE' ELSE 'ACTIVE' END, \
           issued_at, now(), issued_at FROM issued_certificates \
         WHERE right(encode(serial, 'hex'), 1) IN ('0', '1', '2', '3', '4', '5', '6', '7'); \
         INSERT INTO ca_aws_registrations (ca_id, target, aws_certificate_id, certificate_arn, \
           mode, status, auto_registration, registered_at, updated_at) \
         SELECT id, t, aws_certificate_id, 'arn:aws:iot:' || t || ':cacert/' || aws_certificate_id, \
           'sni_only', 'ACTIVE', true, now(), now() \
         FROM certificate_authorities, (VALUES ('eu'), ('us')) AS targets (t)",
    )
    .await;
    // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement
    // query. It sets the visibility map, so that index-only scans are possible, as they are on
    // a real ledger that autovacuum keeps up.
    // The stats counters, as the service would have kept them for these rows.
    app.store.recount_certificates().await.unwrap();
    app.execute_sql("VACUUM ANALYZE issued_certificates").await;
    app.execute_sql("VACUUM ANALYZE certificate_counts").await;
    app.execute_sql("VACUUM ANALYZE revocation_counts").await;
    app.execute_sql("VACUUM ANALYZE certificate_counts_daily")
        .await;
    app.execute_sql("VACUUM ANALYZE revocation_counts_daily")
        .await;
    app.execute_sql("VACUUM ANALYZE rejection_counts").await;
    app.execute_sql("VACUUM ANALYZE certificate_aws_status")
        .await;
    app.execute_sql("VACUUM ANALYZE ca_aws_registrations").await;
    assert_eq!(app.ledger_count().await, i64::from(ROWS) + 1);

    let now = OffsetDateTime::now_utc();
    let ts = |t: OffsetDateTime| Timestamp::new(t);
    let cursor = Some((ts(now - Duration::days(30)), "8".repeat(40)));
    let lists: Vec<(&str, CertificateFilter)> = vec![
        (
            "newest first (the default page)",
            CertificateFilter::default(),
        ),
        (
            "oldest first",
            CertificateFilter {
                ascending: true,
                ..Default::default()
            },
        ),
        (
            "next page (keyset cursor)",
            CertificateFilter {
                before: cursor.clone(),
                ..Default::default()
            },
        ),
        (
            "thing name",
            CertificateFilter {
                thing_name: Some("bulk-123456".into()),
                ..Default::default()
            },
        ),
        (
            "thing name prefix (q)",
            CertificateFilter {
                thing_name_prefix: Some("bulk-12345".into()),
                ..Default::default()
            },
        ),
        (
            "station, next page",
            CertificateFilter {
                station: Some("station-3".into()),
                before: cursor.clone(),
                ..Default::default()
            },
        ),
        (
            "country, oldest first",
            CertificateFilter {
                country: Some("DE".into()),
                ascending: true,
                ..Default::default()
            },
        ),
        (
            "issued in a day",
            CertificateFilter {
                issued_after: Some(ts(now - Duration::days(2))),
                issued_before: Some(ts(now - Duration::days(1))),
                ..Default::default()
            },
        ),
        (
            "revoked",
            CertificateFilter {
                status: Some(factory_ca::store::LedgerStatus::Revoked),
                ..Default::default()
            },
        ),
        (
            "never seen by AWS IoT",
            CertificateFilter {
                aws_status: Some(factory_ca::store::AwsStatusFilter::NeverSeen),
                ..Default::default()
            },
        ),
        (
            "ACTIVE in AWS IoT (any target: the summary)",
            CertificateFilter {
                aws_status: Some(factory_ca::store::AwsStatusFilter::Reported(
                    AwsCertificateStatus::Active,
                )),
                ..Default::default()
            },
        ),
        (
            "REVOKED in any AWS target",
            CertificateFilter {
                aws_status: Some(factory_ca::store::AwsStatusFilter::Reported(
                    AwsCertificateStatus::Revoked,
                )),
                ..Default::default()
            },
        ),
        (
            "INACTIVE in one AWS target, next page",
            CertificateFilter {
                aws_status: Some(factory_ca::store::AwsStatusFilter::Reported(
                    AwsCertificateStatus::Inactive,
                )),
                aws_target: Some("us".into()),
                before: cursor.clone(),
                ..Default::default()
            },
        ),
        (
            "ACTIVE in one AWS target, revoked in the ledger",
            CertificateFilter {
                aws_status: Some(factory_ca::store::AwsStatusFilter::Reported(
                    AwsCertificateStatus::Active,
                )),
                aws_target: Some("eu".into()),
                status: Some(factory_ca::store::LedgerStatus::Revoked),
                ..Default::default()
            },
        ),
        (
            "never seen by one AWS target",
            CertificateFilter {
                aws_status: Some(factory_ca::store::AwsStatusFilter::NeverSeen),
                aws_target: Some("eu".into()),
                ..Default::default()
            },
        ),
    ];

    let mut report = String::from(
        "# Query plans on a one-million-row ledger\n\n\
         Written by `tests/system/query_plans.rs` (PostgreSQL, `EXPLAIN` after `VACUUM ANALYZE`).\n",
    );
    let mut table_scans = Vec::new();
    // The ledger is never read whole. The hourly and daily counters (rejections, certificates,
    // revocations) are small (8,760 rows for a year of one station per hour); reading all of
    // them for an all-time range is the right plan, but a narrower range must use the index.
    let mut record = |title: String, plan: Vec<String>, whole_counters: bool| {
        let text = plan.join("\n");
        let counter_scan = [
            "rejection_counts",
            "certificate_counts",
            "revocation_counts",
            "certificate_counts_daily",
            "revocation_counts_daily",
        ]
        .iter()
        .any(|table| text.contains(&format!("Seq Scan on {table}")));
        if text.contains("Seq Scan on issued_certificates")
            || text.contains("Seq Scan on certificate_aws_status")
            || (!whole_counters && counter_scan)
        {
            table_scans.push(format!("{title}:\n{text}"));
        }
        let _ = write!(report, "\n## {title}\n\n```\n{text}\n```\n");
    };
    let mut sorted_pages = Vec::new();
    for (title, filter) in &lists {
        let plan = app.store.explain_list(filter, 101).await.unwrap();
        // A filter of its own index reads its first page in order, without sorting every
        // matching row (there are 10,000 revoked rows here, 150,000 in a 10 M ledger).
        if *title == "revoked" && plan.iter().any(|line| line.contains("Sort")) {
            sorted_pages.push(format!("{title}:\n{}", plan.join("\n")));
        }
        record(format!("GET /v1/certificates: {title}"), plan, false);
    }
    let ranges = [
        ("today", now - Duration::days(1)),
        ("7 days", now - Duration::days(7)),
        ("all time", now - Duration::days(3650)),
    ];
    for grouping in StatsGrouping::ALL {
        for (range, from) in ranges {
            if grouping == StatsGrouping::Hour && range == "all time" {
                continue; // refused by the API: too many buckets
            }
            let plans = app
                .store
                .explain_stats(ts(from), ts(now), grouping, ts(now))
                .await
                .unwrap();
            let whats: Vec<&str> = plans.iter().map(|(what, _)| what.as_str()).collect();
            assert!(
                whats.contains(&"issued, whole hours") && whats.contains(&"revoked, whole hours"),
                "{range}, {grouping:?}: whole hours come from the counters: {whats:?}"
            );
            // Whole days come from the daily counters, but not grouped by hour.
            let by_day = range != "today" && grouping != StatsGrouping::Hour;
            assert_eq!(
                whats.contains(&"issued, whole days") && whats.contains(&"revoked, whole days"),
                by_day,
                "{range}, {grouping:?}: whole days come from the daily counters: {whats:?}"
            );
            for (what, plan) in plans {
                record(
                    format!(
                        "GET /v1/stats: {range}, group_by={}, {what}",
                        grouping.as_str().unwrap_or("(none)")
                    ),
                    plan,
                    range == "all time",
                );
            }
        }
    }

    // The CA health counts per (CA, target) start from the revoked rows.
    let lag = app.store.explain_revocation_lag().await.unwrap();
    record(
        "GET /v1/admin/health: revoked but ACTIVE, and pending, per target".into(),
        lag,
        false,
    );

    // An AWS sync page finds its certificates by AWS id (a hash index since migration 0030).
    let page: Vec<String> = (1..=250).map(|i| format!("{:064x}", i * 3_989)).collect();
    let sync = app.store.explain_aws_sync_page(&page).await.unwrap();
    assert!(
        sync.join("\n")
            .contains("issued_certificates_aws_certificate_id"),
        "an AWS sync page looks its ids up by index:\n{}",
        sync.join("\n")
    );
    record("AWS sync: one page of 250 AWS ids".into(), sync, false);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("query-plans.md");
    std::fs::write(&path, &report).unwrap();
    println!("query plans written to {}", path.display());
    assert!(
        table_scans.is_empty(),
        "queries that scan a table instead of an index:\n\n{}",
        table_scans.join("\n\n")
    );
    assert!(
        sorted_pages.is_empty(),
        "list filters that sort every matching row for one page:\n\n{}",
        sorted_pages.join("\n\n")
    );
}
