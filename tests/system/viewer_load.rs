//! Viewers cannot starve issuance: on a PostgreSQL ledger of 300,000 rows, 64 viewer loops
//! send the dashboard's slowest queries (`?aws_status=never_seen&limit=1000` and all-time
//! stats) while a station signs. The dashboard's reads have a pool of their own, so issuance
//! keeps its connections: the test samples `pg_stat_activity` during the load and checks that
//! every viewer statement runs on the reads pool (`factory-ca-reads`), never on the issuance
//! pool, and that every signature succeeds. The latencies are printed (run with
//! `--nocapture`) and quoted in SECURITY.md, not asserted: on shared cores they follow the
//! machine's load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use factory_ca::store::Store;
use reqwest::StatusCode;

const ROWS: u32 = 300_000;
const VIEWERS: usize = 64;
const SIGNATURES: usize = 60;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn sign_and_time(app: &TestApp, prefix: &str) -> Vec<Duration> {
    let mut times = Vec::with_capacity(SIGNATURES);
    for i in 0..SIGNATURES {
        let csr = csr(&format!("{prefix}-{i}"), "JP").pem;
        let started = Instant::now();
        let response = app.sign(&csr).await;
        times.push(started.elapsed());
        assert_eq!(response.status(), StatusCode::CREATED, "{prefix}-{i}");
    }
    times.sort();
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_viewer_loops_do_not_slow_issuance() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.database.max_connections = 16;
    })
    .await;
    let response = app.sign(&csr("template-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Rows copied from the real certificate; one in ten never seen by AWS IoT, scattered over
    // the year, as on a ledger whose devices mostly connected.
    let columns = "ca_id, subject, key_algorithm, spki_sha256, certificate_der, not_before";
    app.execute_sql(&format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, country, \
           station, issued_at, not_after, status, aws_status, {columns}) \
         SELECT decode(lpad(to_hex(i), 40, '0'), 'hex'), decode(lpad(to_hex(i), 64, '0'), 'hex'), 'bulk-' || i, 'JP', \
           'station-' || (i % 8), now() - make_interval(secs => i * 100), \
           now() + interval '3650 days', 'active', \
           CASE WHEN i % 10 = 0 THEN NULL ELSE 'ACTIVE' END, {columns} \
         FROM (SELECT * FROM issued_certificates LIMIT 1) AS t, generate_series(1, {ROWS}) AS i"
    ))
    .await;
    app.execute_sql("VACUUM ANALYZE issued_certificates").await;

    let quiet = sign_and_time(&app, "quiet").await;

    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut viewers = Vec::new();
    for v in 0..VIEWERS {
        let (app, stop, served, refused, slowest_ms) = (
            app.clone(),
            stop.clone(),
            served.clone(),
            refused.clone(),
            slowest_ms.clone(),
        );
        viewers.push(tokio::spawn(async move {
            let paths = [
                "/v1/certificates?aws_status=never_seen&limit=1000",
                "/v1/stats?from=2000-01-01T00:00:00Z",
                "/v1/stats?group_by=station&from=2000-01-01T00:00:00Z",
            ];
            let mut n = v;
            // Bounded in time and count.
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < v + 10_000 {
                let started = Instant::now();
                let response = app.get(&app.viewer, paths[n % paths.len()]).await;
                let status = response.status();
                let _ = response.bytes().await;
                slowest_ms.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if status == StatusCode::OK {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "viewer read");
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    // Which pool runs each viewer statement, sampled from the server's view until the viewers
    // stop (bounded in count).
    let sampler = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let Store::Postgres(pool) = &app.store else {
                unreachable!("the test runs on PostgreSQL")
            };
            let (mut on_reads, mut elsewhere) = (0u64, Vec::new());
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let active: Vec<(String, String)> = sqlx::query_as(
                    "SELECT application_name, query FROM pg_stat_activity \
                     WHERE datname = current_database() AND state = 'active' \
                     AND pid <> pg_backend_pid()",
                )
                .fetch_all(pool)
                .await
                .expect("pg_stat_activity reads");
                for (application, query) in active {
                    if !is_viewer_statement(&query) {
                        continue;
                    }
                    if application == "factory-ca-reads" {
                        on_reads += 1;
                    } else {
                        elsewhere.push(format!("{application}: {query}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (on_reads, elsewhere)
        })
    };
    // Let the viewers fill their pool first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = sign_and_time(&app, "loaded").await;
    stop.store(true, Ordering::Relaxed);
    for viewer in viewers {
        viewer.await.unwrap();
    }
    let (viewer_statements_on_reads, viewer_statements_elsewhere) = sampler.await.unwrap();

    let line = |name: &str, t: &[Duration]| {
        format!(
            "{name}: p50 {:?}, p99 {:?}, max {:?}",
            percentile(t, 0.5),
            percentile(t, 0.99),
            t[t.len() - 1]
        )
    };
    eprintln!("{}", line("issuance, no viewers", &quiet));
    eprintln!(
        "{}",
        line(&format!("issuance, {VIEWERS} viewer loops"), &loaded)
    );
    eprintln!(
        "viewer reads: {} answered, {} refused 503, slowest {} ms",
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        slowest_ms.load(Ordering::Relaxed)
    );
    assert!(
        served.load(Ordering::Relaxed) > 0,
        "the viewers were served too"
    );
    // Before the read pool, the viewers' statements held the issuance pool's connections and
    // 64 viewer loops made issuance take about 4 s (every signature above still succeeded).
    assert!(
        viewer_statements_on_reads > 0,
        "the sampler saw the viewers' statements running"
    );
    assert!(
        viewer_statements_elsewhere.is_empty(),
        "viewer statements ran outside the reads pool: {viewer_statements_elsewhere:?}"
    );
}

/// A statement only the viewers send: the `never_seen` list or a read of the stats counters
/// (issuance only adds to the counters, with `INSERT ... ON CONFLICT`).
fn is_viewer_statement(query: &str) -> bool {
    !query.contains("INSERT") && (query.contains("aws_status IS NULL") || query.contains("_counts"))
}
