//! Logs and metrics. The tracing subscriber: human-readable in a terminal, JSON lines for log
//! shippers; the Prometheus recorder behind `GET /metrics`. Logs go
//! to stderr so that CLI output on stdout (e.g. a new token) stays clean for scripts.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
///
/// Lines are formatted where they are logged and written to stderr by a thread of their own,
/// which writes every line queued since its last write in one system call: under load the
/// request path neither waits for stderr nor pays a system call per line. The queue is not
/// lossy: were the writer to fall 128,000 lines behind (stderr blocked), logging waits rather
/// than drops lines. What a kill with SIGKILL catches in the queue is lost: normally the lines
/// of the last few milliseconds, more when stderr was slow to take them.
///
/// The returned guard keeps the writer's thread: `main` holds it until the command has
/// finished, and dropping it waits (up to a second) for the thread to write what is queued.
pub fn init(settings: &LogSettings) -> WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("factory-ca-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    // Colours only for a person at a terminal: escape codes in a file or a log shipper are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let _ = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
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

/// Metric handles (`metrics::Counter`, `metrics::Histogram`) by label values, registered with the
/// recorder on first use and reused afterwards.
///
/// `metrics::counter!(name, labels)` builds a key per call (allocating its owned label values
/// and the label list), hashes it and looks it up in the recorder's registry; per certificate
/// that was five registrations. A cached handle costs one hash of `name` and a short scan of
/// `key`s, under a read lock. The label values are few (route templates, CA ids, methods,
/// statuses, key types); past [`SeriesCache::MAX_SERIES`] handles are registered per call as
/// before, so a cache can never grow without bound.
pub struct SeriesCache<K, H> {
    series: std::sync::RwLock<std::collections::HashMap<String, Vec<(K, H)>>>,
}

impl<K: Copy + PartialEq, H: Clone> SeriesCache<K, H> {
    /// Most handles kept.
    pub const MAX_SERIES: usize = 1024;

    pub fn new() -> Self {
        SeriesCache {
            series: std::sync::RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// The handle of `(name, key)`, made by `register` the first time.
    pub fn get(&self, name: &str, key: K, register: impl FnOnce() -> H) -> H {
        // A panic while holding the lock cannot leave the map inconsistent (it only grows), so
        // a poisoned lock is used as it is.
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, handle)) = series
            .get(name)
            .and_then(|handles| handles.iter().find(|(k, _)| *k == key))
        {
            return handle.clone();
        }
        drop(series);
        let handle = register();
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        if series.values().map(Vec::len).sum::<usize>() < Self::MAX_SERIES {
            let handles = series.entry(name.to_owned()).or_default();
            if !handles.iter().any(|(k, _)| *k == key) {
                handles.push((key, handle.clone()));
            }
        }
        handle
    }
}

impl<K: Copy + PartialEq, H: Clone> Default for SeriesCache<K, H> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::SeriesCache;

    #[test]
    fn each_series_is_registered_once_until_the_cache_is_full() {
        let cache: SeriesCache<u32, u64> = SeriesCache::new();
        let mut registered = 0;
        for _ in 0..3 {
            let handle = cache.get("route", 1, || {
                registered += 1;
                10
            });
            assert_eq!(handle, 10);
        }
        assert_eq!(registered, 1);
        assert_eq!(cache.get("route", 2, || 20), 20, "another key, same name");
        assert_eq!(cache.get("other", 1, || 30), 30, "same key, another name");
        assert_eq!(cache.get("route", 1, || unreachable!()), 10);

        let max = SeriesCache::<u32, u64>::MAX_SERIES as u32;
        for key in 0..max {
            cache.get("filler", key, || u64::from(key));
        }
        let mut registered = 0;
        for _ in 0..2 {
            cache.get("late", 0, || {
                registered += 1;
                0
            });
        }
        assert_eq!(registered, 2, "past the bound every call registers anew");
    }
}
