//! Typed settings, layered: built-in defaults -> `config/default.toml` (when present) -> the file
//! given by `--config` or `FACTORY_CA_CONFIG` -> `FACTORY_CA_<SECTION>__<KEY>` environment
//! variables. Validated once at startup with messages that say what to fix. Secrets (the
//! database URL may hold a password) are wrapped so that `Debug` never prints them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::ca::policy::{DuplicateThingName, SubjectField};
use crate::ca::{CaAlgorithm, CaSubject};

mod aws;
mod est;
mod ledger;
mod revocation;
pub use aws::{AwsSettings, AwsTarget, AwsTargetSettings, DEFAULT_AWS_TARGET};
pub use est::{EST_OPERATIONS, EstSettings};
pub use ledger::LedgerSettings;
pub use revocation::RevocationSettings;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the SQLite database and the CA private keys live.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub ca: CaSettings,
    pub policy: PolicySettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub aws: AwsSettings,
    pub revocation: RevocationSettings,
    pub ledger: LedgerSettings,
    pub pkcs11: Pkcs11Settings,
    pub est: EstSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port of the API (`host:port`, an IP address: `127.0.0.1:8080`).
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests taking longer are answered 503 `request_timeout`.
    #[serde(with = "seconds")]
    pub request_timeout_secs: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(with = "seconds")]
    pub shutdown_grace_secs: Duration,
    /// Requests served at once; beyond this, requests are shed with 503 `overloaded` and
    /// Retry-After instead of queueing without bound. /healthz and /readyz are exempt.
    pub max_concurrent_requests: usize,
    /// Certificates per second each station may request (token bucket); 0 = unlimited.
    pub station_rate_per_sec: f64,
    /// Bucket size: how many requests a station may send at once after being idle.
    pub station_burst: u32,
    /// Seconds a live token is trusted without asking the store again; 0 = ask every time.
    /// A revocation through this process applies at once, one elsewhere within this time.
    #[serde(with = "seconds")]
    pub token_cache_secs: Duration,
    /// Open client connections at most (plain HTTP and HTTPS alike). A connection beyond it
    /// is closed as soon as it is accepted. At startup the cap is lowered to stay below the
    /// process's open-file limit (raised to its hard limit first; the log says both).
    pub max_connections: usize,
    /// A request head (HTTP/1) must arrive whole within this time after the connection
    /// opens or after the previous answer; otherwise the connection is closed.
    #[serde(with = "seconds")]
    pub header_read_timeout_secs: Duration,
    /// A request body must arrive whole within this time after its head; otherwise 408
    /// `request_body_timeout` and the connection is closed.
    #[serde(with = "seconds")]
    pub body_read_timeout_secs: Duration,
    /// A connection with no request in progress for this long is closed (HTTP/1 keep-alive
    /// and HTTP/2 alike).
    #[serde(with = "seconds")]
    pub idle_timeout_secs: Duration,
    /// HTTP/2: requests (streams) one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: largest header list of a request (decoded, as RFC 9113 counts it).
    pub http2_max_header_list_bytes: u32,
    /// HTTPS and station mTLS; without `cert_file` and `key_file`, plain HTTP.
    pub tls: TlsSettings,
}

/// `[server.tls]`: serve HTTPS (rustls) instead of plain HTTP, and optionally authenticate
/// stations by client certificate (mTLS). Files are read once, at startup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM: the server certificate, then its intermediates. With `key_file`, turns HTTPS on.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the server certificate (PKCS#8, PKCS#1 or SEC1; not encrypted),
    /// readable by its owner only.
    pub key_file: Option<PathBuf>,
    /// Load a `key_file` that group or others can read (only logs a warning). Off: refused.
    pub allow_insecure_key_permissions: bool,
    /// PEM bundle of the station CA(s). Turns mTLS on: a client certificate that chains to
    /// one of them authenticates its connection as station `cert:<CN>`.
    pub client_ca_file: Option<PathBuf>,
    /// `optional`: a client certificate is verified when presented, and tokens still work;
    /// `required`: the handshake fails without a valid client certificate.
    pub client_auth: ClientAuth,
    /// PEM CRLs of the station CA(s): revoked station certificates are refused. With it,
    /// every station CA must have a CRL in the file.
    pub client_crl_file: Option<PathBuf>,
    /// A TLS handshake that takes longer is dropped (slow or silent clients cannot hold
    /// sockets).
    #[serde(with = "seconds")]
    pub handshake_timeout_secs: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            allow_insecure_key_permissions: false,
            client_ca_file: None,
            client_auth: ClientAuth::Optional,
            client_crl_file: None,
            handshake_timeout_secs: Duration::from_secs(10),
        }
    }
}

impl TlsSettings {
    /// Whether HTTPS is configured (`cert_file` and `key_file` set).
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// Whether a station client certificate is needed to connect (`server.tls.client_auth`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Optional,
    Required,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite:...`; empty means `sqlite:<data_dir>/factory-ca.db`.
    pub url: Secret,
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts (the `migrate` command always does).
    pub migrate_on_start: bool,
    #[serde(with = "seconds")]
    pub connect_timeout_secs: Duration,
    /// PostgreSQL: concurrent issuances share ledger transactions (one multi-row insert and
    /// one commit per batch). SQLite always records one transaction per certificate.
    pub group_commit: bool,
    /// Most certificates per group-commit transaction.
    pub group_commit_max_batch: usize,
    /// Group-commit writers (each keeps one pooled connection from batch to batch). One by
    /// default: batches for one CA wait for each other at its chain head, so a second writer
    /// mostly makes batches smaller.
    pub group_commit_writers: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaSettings {
    /// On `serve`, create a CA when the store has none (the development default). Turn off in
    /// production, where the CA is created or imported on purpose.
    pub create_on_first_start: bool,
    /// Defaults for a created CA (`ca create` flags override them).
    pub algorithm: CaAlgorithm,
    pub validity_days: i64,
    pub subject: CaSubject,
    /// Load CA key files that group or others can read. Off: such a key is refused, since
    /// other local users could copy it.
    pub allow_insecure_key_permissions: bool,
    /// Name of an environment variable holding the passphrase that CA keys are encrypted with
    /// at rest (encrypted PKCS#8). At most one of this and `key_passphrase_file`.
    pub key_passphrase_env: Option<String>,
    /// A file (owner-only) whose content, without one trailing newline, is that passphrase.
    pub key_passphrase_file: Option<PathBuf>,
    /// `GET /v1/admin/health` warns when a CA certificate expires within this many days.
    pub expiry_warn_days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Device certificate validity.
    pub validity_days: i64,
    /// `notBefore` is set this many seconds in the past, for devices with a slow clock.
    #[serde(with = "seconds")]
    pub backdate_secs: Duration,
    /// `reject` (409 thing_already_provisioned) or `allow` a second active certificate.
    pub duplicate_thing_name: DuplicateThingName,
    /// Require a Country (C) attribute (the JITP template reads it).
    pub require_country: bool,
    /// Subject attributes a CSR may carry, by short name.
    pub allowed_subject_attributes: Vec<SubjectField>,
    /// Subject attributes every CSR must carry besides CN (and C with require_country): the
    /// fields your JITP template reads. Checked by the AWS preflight.
    pub required_subject_attributes: Vec<SubjectField>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `pretty` for a terminal, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `factory_ca=debug,tower_http=info`.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve `GET /metrics` (Prometheus text format).
    pub enabled: bool,
    /// Empty: `/metrics` is served on `server.listen`. An address (e.g. `10.0.0.5:9100`):
    /// served only there, plain HTTP, so that scrapers and stations can be kept apart.
    #[serde(with = "optional_socket_addr")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            ca: CaSettings::default(),
            policy: PolicySettings::default(),
            log: LogSettings::default(),
            metrics: MetricsSettings::default(),
            aws: AwsSettings::default(),
            revocation: RevocationSettings::default(),
            ledger: LedgerSettings::default(),
            pkcs11: Pkcs11Settings::default(),
            est: EstSettings::default(),
        }
    }
}

/// `[pkcs11]`: CA keys in a PKCS#11 token (`pkcs11:` key URIs, see `crate::keys`). The PIN is
/// read from the environment or an owner-only file when a key is opened, never stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Settings {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`; a key
    /// URI's `module-path` overrides it.
    pub module: Option<PathBuf>,
    /// Name of an environment variable holding the token's user PIN. At most one of this and
    /// `pin_file`.
    pub pin_env: Option<String>,
    /// A file (owner-only) whose content, without one trailing newline, is the user PIN.
    pub pin_file: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: Duration::from_secs(30),
            shutdown_grace_secs: Duration::from_secs(30),
            max_concurrent_requests: 1024,
            station_rate_per_sec: 500.0,
            station_burst: 1000,
            token_cache_secs: Duration::from_secs(5),
            max_connections: 10_000,
            header_read_timeout_secs: Duration::from_secs(10),
            body_read_timeout_secs: Duration::from_secs(20),
            idle_timeout_secs: Duration::from_secs(60),
            http2_max_concurrent_streams: 128,
            http2_max_header_list_bytes: 16 * 1024,
            tls: TlsSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: 16,
            migrate_on_start: true,
            connect_timeout_secs: Duration::from_secs(5),
            group_commit: true,
            group_commit_max_batch: 128,
            group_commit_writers: 1,
        }
    }
}

impl Default for CaSettings {
    fn default() -> Self {
        Self {
            create_on_first_start: true,
            algorithm: CaAlgorithm::EcdsaP256,
            validity_days: 3650,
            subject: CaSubject {
                common_name: "factory-ca development root".into(),
                country: None,
                state: None,
                locality: None,
                organization: Some("factory-ca".into()),
                organizational_unit: None,
            },
            allow_insecure_key_permissions: false,
            key_passphrase_env: None,
            key_passphrase_file: None,
            expiry_warn_days: 30,
        }
    }
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            validity_days: 365,
            backdate_secs: Duration::from_secs(60),
            duplicate_thing_name: DuplicateThingName::Reject,
            require_country: true,
            allowed_subject_attributes: SubjectField::ALL.to_vec(),
            required_subject_attributes: Vec::new(),
        }
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// A string that never appears in `Debug` output or logs.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"[redacted]\"")
        }
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// A secret is read from an environment variable or a file, never both: `(setting, is set)`
/// of each.
fn one_source(env: (&str, bool), file: (&str, bool)) -> Result<(), ConfigError> {
    if env.1 && file.1 {
        return Err(ConfigError(format!(
            "set at most one of {} and {}",
            env.0, file.0
        )));
    }
    Ok(())
}

impl Settings {
    /// Loads the layers. `file` is `--config`; when absent, `FACTORY_CA_CONFIG` is used.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let defaults = Path::new("config/default.toml");
        if defaults.exists() {
            figment = figment.merge(Toml::file(defaults));
        }
        let env_file = std::env::var_os("FACTORY_CA_CONFIG").map(PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "the configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("FACTORY_CA_")
                // Not settings: the config file path, the token `factory-ca bench` reads, and
                // the conventional variable for the CA key passphrase (ca.key_passphrase_env).
                .ignore(&["config", "bench_token", "key_passphrase"])
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Parses and validates the layers: every value is typed here, once.
    fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError(describe_figment_error(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks everything that can be checked before connecting to anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose();
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return Err(ConfigError(
                "database.url must start with postgres://, postgresql:// or sqlite: (or be empty \
                 for SQLite under data_dir)"
                    .into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError(
                "database.max_connections must be at least 1".into(),
            ));
        }
        if !(1..=1000).contains(&self.database.group_commit_max_batch) {
            return Err(ConfigError(
                "database.group_commit_max_batch must be between 1 and 1000".into(),
            ));
        }
        if !(1..=64).contains(&self.database.group_commit_writers) {
            return Err(ConfigError(
                "database.group_commit_writers must be between 1 and 64 (it is also capped at \
                 database.max_connections)"
                    .into(),
            ));
        }
        if self.server.token_cache_secs > Duration::from_secs(300) {
            return Err(ConfigError(
                "server.token_cache_secs must be between 0 (no cache) and 300: a token revoked \
                 on another replica keeps working for up to this long"
                    .into(),
            ));
        }
        if self.server.body_limit_bytes < 4096 {
            return Err(ConfigError(
                "server.body_limit_bytes must be at least 4096 (an RSA-8192 CSR is ~2.5 KB)".into(),
            ));
        }
        if self.server.max_concurrent_requests == 0 {
            return Err(ConfigError(
                "server.max_concurrent_requests must be at least 1".into(),
            ));
        }
        if !(self.server.station_rate_per_sec >= 0.0
            && self.server.station_rate_per_sec.is_finite())
        {
            return Err(ConfigError(
                "server.station_rate_per_sec must be 0 (unlimited) or a positive number".into(),
            ));
        }
        if self.server.request_timeout_secs.is_zero() {
            return Err(ConfigError(
                "server.request_timeout_secs must be at least 1".into(),
            ));
        }
        self.validate_connections()?;
        self.validate_tls()?;
        self.est.validate()?;
        if !(1..=3650).contains(&self.policy.validity_days) {
            return Err(ConfigError(
                "policy.validity_days must be between 1 and 3650".into(),
            ));
        }
        if self.policy.backdate_secs > Duration::from_secs(86_400) {
            return Err(ConfigError(
                "policy.backdate_secs must be between 0 and 86400".into(),
            ));
        }
        if !(1..=36_500).contains(&self.ca.validity_days) {
            return Err(ConfigError(
                "ca.validity_days must be between 1 and 36500".into(),
            ));
        }
        if !(0..=36_500).contains(&self.ca.expiry_warn_days) {
            return Err(ConfigError(
                "ca.expiry_warn_days must be between 0 and 36500".into(),
            ));
        }
        self.validate_key_passphrase()?;
        self.validate_pkcs11()?;
        let fields = self.allowed_subject_fields();
        if let Some(f) = self
            .required_subject_fields()
            .iter()
            .find(|f| !fields.contains(f))
        {
            return Err(ConfigError(format!(
                "policy.required_subject_attributes has {} but policy.allowed_subject_attributes \
                 does not allow it",
                f.short_name()
            )));
        }
        if !fields.contains(&SubjectField::CommonName) {
            return Err(ConfigError(
                "policy.allowed_subject_attributes must include CN (the thing name)".into(),
            ));
        }
        if self.policy.require_country && !fields.contains(&SubjectField::Country) {
            return Err(ConfigError(
                "policy.require_country is true but C is not in policy.allowed_subject_attributes"
                    .into(),
            ));
        }
        self.aws.validate()?;
        self.revocation.validate()?;
        self.ledger.validate()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError(format!(
                "log.level {:?} is not a valid filter: {e}",
                self.log.level
            ))
        })?;
        Ok(())
    }

    /// The connection limits of `[server]`.
    fn validate_connections(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        let seconds = |value: Duration, key: &str, max: u64| {
            if (Duration::from_secs(1)..=Duration::from_secs(max)).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError(format!(
                    "server.{key} must be between 1 and {max}"
                )))
            }
        };
        seconds(
            server.header_read_timeout_secs,
            "header_read_timeout_secs",
            300,
        )?;
        seconds(server.body_read_timeout_secs, "body_read_timeout_secs", 600)?;
        seconds(server.idle_timeout_secs, "idle_timeout_secs", 3600)?;
        if server.max_connections < 16 {
            return Err(ConfigError(
                "server.max_connections must be at least 16".into(),
            ));
        }
        if !(1..=1000).contains(&server.http2_max_concurrent_streams) {
            return Err(ConfigError(
                "server.http2_max_concurrent_streams must be between 1 and 1000".into(),
            ));
        }
        if !(4096..=1024 * 1024).contains(&server.http2_max_header_list_bytes) {
            return Err(ConfigError(
                "server.http2_max_header_list_bytes must be between 4096 and 1048576".into(),
            ));
        }
        Ok(())
    }

    /// `[server.tls]` without touching the files (they are read when the server is built).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.server.tls;
        let files = [
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
            ("client_ca_file", &tls.client_ca_file),
            ("client_crl_file", &tls.client_crl_file),
        ];
        for (key, file) in files {
            if file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(ConfigError(format!(
                    "server.tls.{key} is empty; remove it or give a file path"
                )));
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(ConfigError(
                "server.tls.cert_file and server.tls.key_file go together: set both for HTTPS, \
                 or neither for plain HTTP"
                    .into(),
            ));
        }
        if !tls.enabled() && tls.client_ca_file.is_some() {
            return Err(ConfigError(
                "server.tls.client_ca_file (station mTLS) needs HTTPS: set server.tls.cert_file \
                 and server.tls.key_file too"
                    .into(),
            ));
        }
        if tls.client_ca_file.is_none() && tls.client_auth == ClientAuth::Required {
            return Err(ConfigError(
                "server.tls.client_auth = \"required\" needs server.tls.client_ca_file (the \
                 station CA that client certificates must chain to)"
                    .into(),
            ));
        }
        if tls.client_ca_file.is_none() && tls.client_crl_file.is_some() {
            return Err(ConfigError(
                "server.tls.client_crl_file needs server.tls.client_ca_file (the CRLs are those \
                 of the station CAs)"
                    .into(),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300))
            .contains(&tls.handshake_timeout_secs)
        {
            return Err(ConfigError(
                "server.tls.handshake_timeout_secs must be between 1 and 300".into(),
            ));
        }
        Ok(())
    }

    /// The CA key passphrase settings name one source; the passphrase itself is read when a
    /// key is (see `crate::keys`).
    fn validate_key_passphrase(&self) -> Result<(), ConfigError> {
        let ca = &self.ca;
        one_source(
            ("ca.key_passphrase_env", ca.key_passphrase_env.is_some()),
            ("ca.key_passphrase_file", ca.key_passphrase_file.is_some()),
        )?;
        if let Some(name) = &ca.key_passphrase_env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(ConfigError(
                    "ca.key_passphrase_env must be the name of an environment variable, such as \
                     FACTORY_CA_KEY_PASSPHRASE"
                        .into(),
                ));
            }
            // Other FACTORY_CA_* variables are read as settings, so the passphrase would be
            // refused as an unknown setting.
            if name.starts_with("FACTORY_CA_") && name != "FACTORY_CA_KEY_PASSPHRASE" {
                return Err(ConfigError(format!(
                    "ca.key_passphrase_env {name:?}: variables starting with FACTORY_CA_ hold \
                     settings; use FACTORY_CA_KEY_PASSPHRASE or a name without that prefix"
                )));
            }
        }
        if ca
            .key_passphrase_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError(
                "ca.key_passphrase_file must be a path (or be left out)".into(),
            ));
        }
        Ok(())
    }

    /// `[pkcs11]` names at most one PIN source, by a usable name; the PIN is read when a token
    /// key is opened.
    fn validate_pkcs11(&self) -> Result<(), ConfigError> {
        let p = &self.pkcs11;
        one_source(
            ("pkcs11.pin_env", p.pin_env.is_some()),
            ("pkcs11.pin_file", p.pin_file.is_some()),
        )?;
        if let Some(name) = &p.pin_env
            && (name.is_empty() || name.contains(['=', '\0']) || name.starts_with("FACTORY_CA_"))
        {
            return Err(ConfigError(format!(
                "pkcs11.pin_env {name:?} must name an environment variable outside the \
                 FACTORY_CA_ prefix (which holds settings), such as PKCS11_PIN"
            )));
        }
        let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        if empty(&p.module) || empty(&p.pin_file) {
            return Err(ConfigError(
                "pkcs11.module and pkcs11.pin_file must be paths (or be left out)".into(),
            ));
        }
        Ok(())
    }

    /// The subject attributes CSRs may carry.
    pub fn allowed_subject_fields(&self) -> &[SubjectField] {
        &self.policy.allowed_subject_attributes
    }

    /// The subject attributes every CSR must carry; each is also allowed (checked by
    /// [`Settings::validate`]).
    pub fn required_subject_fields(&self) -> &[SubjectField] {
        &self.policy.required_subject_attributes
    }

    /// The database URL in effect: the configured one, or SQLite under `data_dir`.
    pub fn database_url(&self) -> String {
        let url = self.database.url.expose();
        if url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("factory-ca.db").display()
            )
        } else {
            url.to_owned()
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// The issuance policy these settings describe.
    pub fn issuance_policy(&self) -> crate::ca::IssuancePolicy {
        crate::ca::IssuancePolicy::new(
            self.allowed_subject_fields().to_vec(),
            self.policy.require_country,
        )
        .with_required(self.required_subject_fields().to_vec())
    }
}

/// Durations as whole seconds, as the `*_secs` settings are written.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// A listen address, with a message that shows the form expected.
mod socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(super) fn parse(text: &str) -> Result<SocketAddr, String> {
        text.parse().map_err(|_| {
            format!("{text:?} is not an address such as 127.0.0.1:8080 (an IP address and a port)")
        })
    }
}

/// An optional listen address; the empty string is none.
mod optional_socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<SocketAddr>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(addr) => serializer.collect_str(addr),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        super::socket_addr::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

fn describe_figment_error(e: figment::Error) -> String {
    // figment's messages name the key and the source (file or environment variable); they
    // never include the offending value for string keys, so secrets are not echoed.
    e.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
