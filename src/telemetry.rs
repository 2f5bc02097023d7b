//! Logs and metrics. The tracing subscriber: human-readable in a terminal, JSON lines for log
//! shippers; the Prometheus recorder behind `GET /metrics`. Logs go
//! to stderr so that CLI output on stdout (e.g. a new token) stays clean for scripts.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    // Colours only for a person at a terminal: escape codes in a file or a log shipper are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// How often histogram samples are drained into their buckets.
const METRICS_UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The Prometheus recorder of this process, installed as the global `metrics` recorder on first
/// use. One per process: several `Application`s in one process (the tests) share it, which is
/// why every series carries labels (CA id, route) that tell them apart.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        // Seconds: from 100 µs (an ECDSA signature) to 10 s (a request timeout).
        const LATENCY_BUCKETS: [f64; 16] = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Histogram samples wait in buckets until they are drained, by a scrape or by upkeep:
        // without upkeep an unscraped process grows by every sample (the 10-minute soak in
        // scripts/soak.sh showed ~1 MiB per 20,000 certificates). One thread per process, as
        // the recorder is.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
        }
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        describe_metrics();
        metrics::gauge!(
            "factory_ca_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
        )
        .set(1.0);
        handle
    })
}

fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "factory_ca_build_info",
        "Always 1; the version label is the running build"
    );
    describe_counter!(
        "factory_ca_certificates_issued_total",
        "Device certificates issued and committed to the ledger, by issuing CA and key type"
    );
    describe_gauge!(
        "factory_ca_store_reachable",
        "1 while the database probe succeeds, 0 once it has failed twice in a row"
    );
    describe_histogram!(
        "factory_ca_store_probe_duration_seconds",
        Unit::Seconds,
        "One round trip of the database reachability probe"
    );
    describe_gauge!(
        "factory_ca_connections_open",
        "Client connections open now (server.max_connections caps them)"
    );
    describe_counter!(
        "factory_ca_connections_refused_total",
        "Client connections closed at once because server.max_connections were open"
    );
    describe_counter!(
        "factory_ca_crl_ledger_scans_total",
        "Reads of a CA's revoked certificates from the ledger to build its CRL, by CA"
    );
    describe_counter!(
        "factory_ca_crl_builds_total",
        "CRLs signed and stored, by CA (served CRLs come from storage)"
    );
    describe_histogram!(
        "factory_ca_crl_build_seconds",
        Unit::Seconds,
        "Time to read a CA's revoked certificates, sign its CRL and store it"
    );
    describe_gauge!(
        "factory_ca_crl_entries",
        "Revoked certificates listed on the newest CRL this process built, by CA"
    );
    describe_counter!(
        "factory_ca_rejections_total",
        "Signing requests refused with a 4xx, by error code"
    );
    describe_histogram!(
        "factory_ca_issuance_duration_seconds",
        Unit::Seconds,
        "Time from receiving a CSR to its committed ledger row"
    );
    describe_histogram!(
        "factory_ca_store_duration_seconds",
        Unit::Seconds,
        "Time of ledger operations, by operation"
    );
    describe_gauge!(
        "factory_ca_db_pool_connections",
        "Database pool connections, by state (in_use, idle), at scrape time"
    );
    describe_counter!(
        "factory_ca_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "factory_ca_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by method and route template"
    );
    describe_counter!(
        "factory_ca_aws_calls_total",
        "AWS IoT API calls, by operation and outcome"
    );
    describe_histogram!(
        "factory_ca_aws_call_duration_seconds",
        Unit::Seconds,
        "AWS IoT API call latency, by operation"
    );
}
