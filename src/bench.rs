//! `factory-ca bench`: a station simulator and load generator. It makes N distinct device keys
//! and CSRs, and the whole HTTP request of each, before the clock starts, posts them to a running
//! service over C keep-alive HTTP/1.1 connections (hyper's client connection, one request in
//! flight on each), and reports throughput, latency percentiles and errors by `code`. It doubles
//! as a capacity-planning tool: point it at a staging service with a station token.
//!
//! Every run is bounded: N requests at most, and `--duration-limit` seconds for the whole
//! command (key generation included). Nothing here is used by the service itself.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The environment variable that holds the station token, unless `--token-env` names another.
pub const TOKEN_ENV: &str = "FACTORY_CA_BENCH_TOKEN";

/// How long one request may take before it counts as a transport timeout. The service answers
/// 503 `request_timeout` long before this with its default settings.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the service (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// How many certificates to request; each uses its own key, CSR and thing name.
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Device key type of the generated CSRs.
    #[arg(long, value_enum, default_value_t = DeviceKeyType::EcdsaP256)]
    pub key: DeviceKeyType,
    /// Country (C) of the generated CSRs.
    #[arg(long, default_value = "JP")]
    pub country: String,
    /// Thing names are `<prefix>-<n>`; the default `bench-<random>` never collides with an
    /// earlier run under `policy.duplicate_thing_name = "reject"`.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Hard stop for the whole command, key generation included, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub duration_limit: u64,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// The environment variable that holds the station token (never printed).
    #[arg(long, value_name = "NAME", default_value = TOKEN_ENV)]
    pub token_env: String,
    /// Only make the request bodies: write the `--requests` JSON bodies (`{"csr": "<PEM>"}`),
    /// one per line, to FILE and exit without sending anything (no token needed). For an
    /// external load generator such as `wrk` (see `scripts/bench.sh`).
    #[arg(long, value_name = "FILE")]
    pub write_bodies: Option<std::path::PathBuf>,
}

/// The key a simulated device makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum DeviceKeyType {
    #[value(name = "ecdsa-p256")]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "rsa-2048")]
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

/// A new device key and its CSR (`C=<country>, CN=<thing_name>`) in PEM, as a station makes
/// them. Public so that the signing micro-benchmark feeds the CA the same CSRs.
pub fn device_csr_pem(
    key_type: DeviceKeyType,
    thing_name: &str,
    country: &str,
) -> anyhow::Result<String> {
    let key = match key_type {
        DeviceKeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        DeviceKeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .context("cannot generate a device key")?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CountryName,
        DnValue::PrintableString(country.try_into().context("country")?),
    );
    subject.push(DnType::CommonName, thing_name);
    params.distinguished_name = subject;
    let csr = params
        .serialize_request(&key)
        .context("cannot make a CSR")?;
    csr.pem().context("cannot encode the CSR")
}

/// Runs the benchmark. Errors when any request did not get a certificate, after the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_limit);
    if let Some(path) = &args.write_bodies {
        return write_bodies(&args, path, deadline).await;
    }
    let token = std::env::var(&args.token_env)
        .with_context(|| format!("set {} to a station token", args.token_env))?;
    let token_header = HeaderValue::try_from(format!("Bearer {token}"))
        .map(|mut v| {
            v.set_sensitive(true);
            v
        })
        .map_err(|_| anyhow::anyhow!("{} is not a valid token", args.token_env))?;
    drop(token);
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let prefix = checked_prefix(&args)?;
    let endpoint = Endpoint::parse(&args.url)?;
    let interactive = std::io::stderr().is_terminal();

    // Before the clock starts: one key, CSR and request body per certificate.
    let keygen_started = Instant::now();
    let bodies = bodies_off_reactor(&args, &prefix, deadline, interactive).await?;
    let keygen_secs = keygen_started.elapsed().as_secs_f64();

    let concurrency = args.concurrency.min(args.requests);
    let load = Load {
        endpoint,
        token: token_header,
        bodies,
        next: AtomicUsize::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        deadline,
        deadline_hit: AtomicBool::new(false),
    };
    let load = Arc::new(load);
    let cpu_at_load_start = process_cpu_secs();
    let load_started = Instant::now();
    let progress = interactive.then(|| tokio::spawn(progress_line(load.clone(), load_started)));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        // One connection per worker, kept alive: C workers are C connections.
        workers.push(tokio::spawn(worker(load.clone())));
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await.context("a worker panicked")?);
    }
    let elapsed = load_started.elapsed();
    let load_cpu_secs = process_cpu_secs()
        .zip(cpu_at_load_start)
        .map(|(b, a)| b - a);
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
        eprintln!();
    }

    let sent = load.next.load(Ordering::Relaxed).min(args.requests);
    let summary = Summary::new(
        &args,
        concurrency,
        &prefix,
        keygen_secs,
        sent,
        tally,
        elapsed,
        load.deadline_hit.load(Ordering::Relaxed),
    );
    let summary = Summary {
        load_cpu_secs,
        process_cpu_secs: process_cpu_secs(),
        ..summary
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.report());
    }
    let unanswered = summary.failed + summary.not_sent;
    if unanswered > 0 {
        bail!(
            "{unanswered} of {} requests got no certificate",
            summary.requests
        );
    }
    Ok(())
}

/// `--write-bodies`: the bodies of the run, one JSON object per line (a PEM inside a JSON
/// string has its line breaks escaped, so one body is one line), written to `path`.
async fn write_bodies(
    args: &BenchArgs,
    path: &std::path::Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    let prefix = checked_prefix(args)?;
    let interactive = std::io::stderr().is_terminal();
    let generated = Instant::now();
    let bodies = bodies_off_reactor(args, &prefix, deadline, interactive).await?;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for body in &bodies {
        debug_assert!(!body.contains(&b'\n'));
        out.write_all(body)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {} request bodies (thing names {prefix}-0 to {prefix}-{}) to {} in {:.1?}",
        bodies.len(),
        bodies.len() - 1,
        path.display(),
        generated.elapsed()
    );
    Ok(())
}

/// The checks of `--duration-limit` and `--country`, and the thing-name prefix: `--prefix`,
/// checked, or a random one.
fn checked_prefix(args: &BenchArgs) -> anyhow::Result<String> {
    if args.duration_limit == 0 {
        bail!("--duration-limit must be at least 1 second");
    }
    if args.country.len() != 2 || !args.country.bytes().all(|b| b.is_ascii_uppercase()) {
        bail!("--country must be two upper-case letters (ISO 3166-1 alpha-2)");
    }
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{:08x}", rand::random::<u32>()));
    check_prefix(&prefix)?;
    Ok(prefix)
}

/// [`generate_bodies`] for `--requests` bodies, on the blocking pool (key generation is CPU
/// work).
async fn bodies_off_reactor(
    args: &BenchArgs,
    prefix: &str,
    deadline: Instant,
    interactive: bool,
) -> anyhow::Result<Vec<Bytes>> {
    let (key, country, prefix, n) = (
        args.key,
        args.country.clone(),
        prefix.to_owned(),
        args.requests,
    );
    tokio::task::spawn_blocking(move || {
        generate_bodies(key, &country, &prefix, n, deadline.into_std(), interactive)
    })
    .await
    .context("key generation panicked")?
}

fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    // The thing name is `<prefix>-<n>` and must stay within the policy's 128 characters of
    // [a-zA-Z0-9:_-]; 100 leaves room for any `n`.
    if prefix.is_empty()
        || prefix.len() > 100
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-')
    {
        bail!("--prefix must be 1 to 100 characters of [a-zA-Z0-9:_-]");
    }
    Ok(())
}

/// A request body and its index in the run.
type NumberedBody = (usize, Bytes);

/// Makes `n` JSON request bodies on every core. RSA-2048 keys take tens of milliseconds each,
/// so this is the slow part of a run, and it happens before timing starts.
fn generate_bodies(
    key: DeviceKeyType,
    country: &str,
    prefix: &str,
    n: usize,
    deadline: std::time::Instant,
    interactive: bool,
) -> anyhow::Result<Vec<Bytes>> {
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(n);
    let next = AtomicUsize::new(0);
    let made = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let results: Vec<anyhow::Result<Vec<NumberedBody>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(out);
                        }
                        if std::time::Instant::now() >= deadline {
                            bail!("--duration-limit reached while generating keys ({i} of {n})");
                        }
                        let pem = device_csr_pem(key, &format!("{prefix}-{i}"), country)?;
                        out.push((
                            i,
                            serde_json::to_vec(&serde_json::json!({ "csr": pem }))?.into(),
                        ));
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        if interactive {
            while !handles.iter().all(|h| h.is_finished()) {
                let m = made.load(Ordering::Relaxed);
                eprint!(
                    "\r\x1b[2Kgenerating keys and CSRs: {m}/{n} ({:.0}/s on {threads} threads)",
                    m as f64 / started.elapsed().as_secs_f64().max(1e-3)
                );
                let _ = std::io::stderr().flush();
                std::thread::sleep(PROGRESS_EVERY);
            }
            eprintln!(
                "\r\x1b[2Kgenerated {n} keys and CSRs in {:.1?}",
                started.elapsed()
            );
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("key generation panicked"))
            })
            .collect()
    });
    let mut bodies = vec![Bytes::new(); n];
    for part in results {
        for (i, body) in part? {
            bodies[i] = body;
        }
    }
    Ok(bodies)
}

/// Where the requests go: a plain-HTTP `host:port` and the request path.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `host:port`, for the TCP connection and the Host header.
    authority: String,
    /// `/<base path>/v1/certificates`.
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must be plain http:// (the load generator speaks no TLS)");
        }
        let host = uri
            .host()
            .with_context(|| format!("--url {url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Endpoint {
            authority: format!("{host}:{port}"),
            path: format!("{}/v1/certificates", uri.path().trim_end_matches('/')),
        })
    }
}

/// What the workers share.
struct Load {
    endpoint: Endpoint,
    token: HeaderValue,
    bodies: Vec<Bytes>,
    /// Index of the next body to send.
    next: AtomicUsize,
    done: AtomicU64,
    failed: AtomicU64,
    deadline: Instant,
    deadline_hit: AtomicBool,
}

/// One worker's results, merged at the end so the hot loop shares no lock.
#[derive(Debug, Default)]
struct Tally {
    succeeded: u64,
    errors: BTreeMap<String, u64>,
    /// Every answered request, in microseconds.
    latencies_us: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.succeeded += other.succeeded;
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    fn error(&mut self, code: String) {
        *self.errors.entry(code).or_default() += 1;
    }
}

async fn worker(load: Arc<Load>) -> Tally {
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(load.bodies.len() / 8 + 16),
        ..Tally::default()
    };
    let mut connection: Option<http1::SendRequest<Full<Bytes>>> = None;
    loop {
        if Instant::now() >= load.deadline {
            load.deadline_hit.store(true, Ordering::Relaxed);
            return tally;
        }
        let i = load.next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = load.bodies.get(i) else {
            return tally;
        };
        let sent_at = Instant::now();
        let outcome = tokio::time::timeout_at(
            load.deadline.min(sent_at + REQUEST_TIMEOUT),
            send(&load, &mut connection, body.clone()),
        )
        .await;
        match outcome {
            Err(_) if Instant::now() >= load.deadline => {
                load.deadline_hit.store(true, Ordering::Relaxed);
                tally.error("duration_limit".into());
                load.failed.fetch_add(1, Ordering::Relaxed);
                load.done.fetch_add(1, Ordering::Relaxed);
                return tally;
            }
            Err(_) => {
                connection = None;
                tally.error("transport_timeout".into());
                load.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(kind)) => {
                connection = None;
                tally.error(format!("transport_{kind}"));
                load.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok((status, bytes))) => {
                tally
                    .latencies_us
                    .push(sent_at.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
                if status.is_success() {
                    tally.succeeded += 1;
                } else {
                    tally.error(problem_code(status, &bytes));
                    load.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        load.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one request on the worker's connection (opening it first when there is none) and reads
/// the whole answer. A failure names its kind (`connect`, `request`, `body`); the caller drops
/// the connection then, and the next request opens a new one.
async fn send(
    load: &Load,
    connection: &mut Option<http1::SendRequest<Full<Bytes>>>,
    body: Bytes,
) -> Result<(StatusCode, Bytes), &'static str> {
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        let tcp = TcpStream::connect(&load.endpoint.authority)
            .await
            .map_err(|_| "connect")?;
        tcp.set_nodelay(true).map_err(|_| "connect")?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|_| "connect")?;
        tokio::spawn(conn);
        *connection = Some(sender);
    }
    let sender = connection.as_mut().expect("opened above");
    sender.ready().await.map_err(|_| "request")?;
    let request = Request::post(load.endpoint.path.as_str())
        .header(header::HOST, load.endpoint.authority.as_str())
        .header(header::AUTHORIZATION, load.token.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|_| "request")?;
    let response = sender.send_request(request).await.map_err(|_| "request")?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|_| "body")?
        .to_bytes();
    Ok((status, bytes))
}

/// The `code` of a problem+json body, or `http_<status>` when the body has none.
fn problem_code(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http_{}", status.as_u16()))
}

async fn progress_line(load: Arc<Load>, started: Instant) {
    let total = load.bodies.len();
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let done = load.done.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r\x1b[2K{done}/{total} answered, {} errors, {:.0} certs/s, {:.0}s",
            load.failed.load(Ordering::Relaxed),
            done as f64 / secs,
            secs
        );
        let _ = std::io::stderr().flush();
    }
}

/// Latency percentiles over every answered request, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Sorts the samples (microseconds) and reads the nearest-rank percentiles. All zero when
    /// there are none.
    pub fn from_micros(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let ms = |us: Option<u64>| us.unwrap_or(0) as f64 / 1000.0;
        let mean = if samples.is_empty() {
            0.0
        } else {
            samples.iter().map(|&us| us as f64).sum::<f64>() / samples.len() as f64 / 1000.0
        };
        Self {
            count: samples.len(),
            mean,
            p50: ms(percentile(&samples, 50.0)),
            p90: ms(percentile(&samples, 90.0)),
            p99: ms(percentile(&samples, 99.0)),
            max: ms(samples.last().copied()),
        }
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample with at least `p`
/// percent of the samples at or below it. `None` when there are no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What `--json` prints and the text report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub url: String,
    pub key: DeviceKeyType,
    pub country: String,
    pub prefix: String,
    pub concurrency: usize,
    /// Requests asked for.
    pub requests: usize,
    /// Requests sent (fewer than `requests` when the duration limit stopped the run).
    pub sent: usize,
    pub succeeded: u64,
    pub failed: u64,
    pub not_sent: u64,
    /// Failures by problem+json `code`, `http_<status>`, `transport_<kind>` or
    /// `duration_limit`.
    pub errors: BTreeMap<String, u64>,
    pub keygen_secs: f64,
    pub elapsed_secs: f64,
    /// Certificates issued per second of the timed phase.
    pub throughput: f64,
    pub latency_ms: LatencySummary,
    pub duration_limit_hit: bool,
    /// CPU time this process (the load generator) used during the timed phase, where the
    /// platform tells (Linux); on a shared machine it is what the service did not get.
    pub load_cpu_secs: Option<f64>,
    /// CPU time of this whole process, key generation included (Linux).
    pub process_cpu_secs: Option<f64>,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &BenchArgs,
        concurrency: usize,
        prefix: &str,
        keygen_secs: f64,
        sent: usize,
        tally: Tally,
        elapsed: Duration,
        duration_limit_hit: bool,
    ) -> Self {
        let failed = tally.errors.values().sum();
        let elapsed_secs = elapsed.as_secs_f64();
        Self {
            url: args.url.clone(),
            key: args.key,
            country: args.country.clone(),
            prefix: prefix.to_owned(),
            concurrency,
            requests: args.requests,
            sent,
            succeeded: tally.succeeded,
            failed,
            not_sent: (args.requests as u64).saturating_sub(tally.succeeded + failed),
            errors: tally.errors,
            keygen_secs,
            elapsed_secs,
            throughput: throughput(tally.succeeded, elapsed_secs),
            latency_ms: LatencySummary::from_micros(tally.latencies_us),
            duration_limit_hit,
            load_cpu_secs: None,
            process_cpu_secs: None,
        }
    }

    /// The text report.
    pub fn report(&self) -> String {
        let l = &self.latency_ms;
        let mut out = format!(
            "url          {}\n\
             device key   {}, C={}, thing names {}-<n>\n\
             connections  {}\n\
             requests     {} ({} sent, {} succeeded, {} failed, {} not sent)\n\
             key gen      {:.2} s (before timing)\n\
             elapsed      {:.3} s\n\
             throughput   {:.1} certs/s\n\
             latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}  (n={})\n",
            self.url,
            serde_json::to_value(self.key)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.country,
            self.prefix,
            self.concurrency,
            self.requests,
            self.sent,
            self.succeeded,
            self.failed,
            self.not_sent,
            self.keygen_secs,
            self.elapsed_secs,
            self.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            l.mean,
            l.count,
        );
        for (code, count) in &self.errors {
            out.push_str(&format!("error        {code}: {count}\n"));
        }
        if let Some(cpu) = self.load_cpu_secs {
            out.push_str(&format!(
                "load-gen CPU {cpu:.2} s during the timed phase (shares the machine)\n"
            ));
        }
        if self.duration_limit_hit {
            out.push_str("stopped      --duration-limit reached\n");
        }
        out
    }
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux only).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_secs_from_proc_stat(&stat)
}

/// Fields 14 (utime) and 15 (stime) of `/proc/<pid>/stat`, counted after the command name,
/// which may itself contain spaces and parentheses. They are in USER_HZ ticks, which the
/// Linux ABI fixes at 100 per second.
fn cpu_secs_from_proc_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Certificates per second; 0 for an empty interval.
pub fn throughput(succeeded: u64, elapsed_secs: f64) -> f64 {
    if elapsed_secs > 0.0 {
        succeeded as f64 / elapsed_secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_no_samples_is_none() {
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn percentile_of_one_sample_is_that_sample() {
        for p in [0.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7], p), Some(7));
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 90.0), Some(90));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 99.0), Some(990));
        // Ten samples: p99 is the largest, p90 the ninth.
        let samples: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&samples, 99.0), Some(10));
        assert_eq!(percentile(&samples, 90.0), Some(9));
        assert_eq!(percentile(&samples, 50.0), Some(5));
    }

    #[test]
    fn latency_summary_sorts_and_converts_microseconds_to_milliseconds() {
        let mut samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        samples.reverse();
        let s = LatencySummary::from_micros(samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert!((s.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn latency_summary_of_no_samples_is_all_zero() {
        let s = LatencySummary::from_micros(Vec::new());
        assert_eq!(s.count, 0);
        assert_eq!((s.p50, s.p99, s.max, s.mean), (0.0, 0.0, 0.0, 0.0));
    }

    #[tokio::test]
    async fn write_bodies_makes_one_distinct_valid_csr_body_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bodies.jsonl");
        let args = BenchArgs {
            url: "http://127.0.0.1:1".into(),
            requests: 5,
            concurrency: 1,
            key: DeviceKeyType::EcdsaP256,
            country: "DE".into(),
            prefix: Some("wb".into()),
            duration_limit: 60,
            json: false,
            // Not set: writing bodies needs no token.
            token_env: "FACTORY_CA_BENCH_TOKEN_UNSET_IN_THIS_TEST".into(),
            write_bodies: Some(path.clone()),
        };
        run(args).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        let mut pems = std::collections::HashSet::new();
        for (i, line) in lines.iter().enumerate() {
            let body: serde_json::Value = serde_json::from_str(line).unwrap();
            let pem = body["csr"].as_str().unwrap();
            let parsed = crate::ca::csr::parse(pem.as_bytes()).unwrap();
            let cn = parsed
                .subject()
                .iter()
                .find(|a| a.oid == "2.5.4.3")
                .and_then(|a| a.value.clone());
            assert_eq!(cn, Some(format!("wb-{i}")));
            assert!(pems.insert(pem.to_owned()), "every body is a new CSR");
        }
    }

    #[test]
    fn throughput_is_certificates_per_second() {
        assert_eq!(throughput(500, 0.25), 2000.0);
        assert_eq!(throughput(0, 1.0), 0.0);
        assert_eq!(throughput(10, 0.0), 0.0);
    }

    #[test]
    fn summary_counts_failures_and_unsent_requests() {
        let args = BenchArgs {
            url: "http://127.0.0.1:1".into(),
            requests: 10,
            concurrency: 2,
            key: DeviceKeyType::EcdsaP256,
            country: "JP".into(),
            prefix: None,
            duration_limit: 1,
            json: true,
            token_env: TOKEN_ENV.into(),
            write_bodies: None,
        };
        let mut tally = Tally {
            succeeded: 6,
            latencies_us: vec![3000, 1000, 2000, 4000, 5000, 6000, 7000],
            ..Tally::default()
        };
        tally.error("thing_already_provisioned".into());
        tally.error("transport_connect".into());
        let s = Summary::new(
            &args,
            2,
            "bench-x",
            0.0,
            9,
            tally,
            Duration::from_secs(2),
            true,
        );
        assert_eq!((s.succeeded, s.failed, s.not_sent), (6, 2, 2));
        assert_eq!(s.errors["thing_already_provisioned"], 1);
        assert_eq!(s.throughput, 3.0);
        assert_eq!(s.latency_ms.p50, 4.0);
        assert_eq!(s.latency_ms.max, 7.0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["key"], "ecdsa-p256");
        assert_eq!(json["errors"]["transport_connect"], 1);
        assert!(
            s.report()
                .contains("error        thing_already_provisioned: 1")
        );
    }

    #[test]
    fn problem_code_reads_the_code_field_or_falls_back_to_the_status() {
        let body = br#"{"type":"urn:factory-ca:error:unauthorized","code":"unauthorized"}"#;
        assert_eq!(problem_code(StatusCode::UNAUTHORIZED, body), "unauthorized");
        assert_eq!(problem_code(StatusCode::BAD_GATEWAY, b"<html>"), "http_502");
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194304 1200 0 0 0 250 50 0 0 20 0 \
                    3 0 100 1000000 500 18446744073709551615";
        assert_eq!(cpu_secs_from_proc_stat(stat), Some(3.0));
        assert_eq!(cpu_secs_from_proc_stat("garbage"), None);
    }

    #[test]
    fn prefixes_must_make_valid_thing_names() {
        assert!(check_prefix("bench-0a1b:line_3").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("has space").is_err());
        assert!(check_prefix(&"a".repeat(101)).is_err());
    }

    #[test]
    fn device_csrs_pass_the_service_checks() {
        use crate::ca::policy::SubjectField;
        let policy = crate::ca::IssuancePolicy::new(SubjectField::ALL.to_vec(), true);
        let pem = device_csr_pem(DeviceKeyType::EcdsaP256, "bench-test-1", "JP").unwrap();
        let approved = policy
            .approve(crate::ca::csr::parse(pem.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(approved.thing_name(), "bench-test-1");
        assert_eq!(approved.country(), Some("JP"));
    }
}
