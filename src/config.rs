//! Typed settings, layered: built-in defaults -> `config/default.toml` (when present) -> the file
//! given by `--config` or `FACTORY_CA_CONFIG` -> `FACTORY_CA_<SECTION>__<KEY>` environment
//! variables. Validated once at startup with messages that say what to fix. Secrets (the
//! database URL may hold a password) are wrapped so that `Debug` never prints them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::ca::policy::{DuplicateThingName, SubjectField};
use crate::ca::{CaAlgorithm, CaSubject};

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
    pub aws: AwsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests taking longer are answered 503 `request_timeout`.
    pub request_timeout_secs: u64,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// Requests served at once; beyond this, requests are shed with 503 `overloaded` and
    /// Retry-After instead of queueing without bound. /healthz and /readyz are exempt.
    pub max_concurrent_requests: usize,
    /// Certificates per second each station may request (token bucket); 0 = unlimited.
    pub station_rate_per_sec: f64,
    /// Bucket size: how many requests a station may send at once after being idle.
    pub station_burst: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite:...`; empty means `sqlite:<data_dir>/factory-ca.db`.
    pub url: Secret,
    pub max_connections: u32,
    /// Apply pending migrations when `serve` starts (the `migrate` command always does).
    pub migrate_on_start: bool,
    pub connect_timeout_secs: u64,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Device certificate validity.
    pub validity_days: i64,
    /// `notBefore` is set this many seconds in the past, for devices with a slow clock.
    pub backdate_secs: i64,
    /// `reject` (409 thing_already_provisioned) or `allow` a second active certificate.
    pub duplicate_thing_name: DuplicateThingName,
    /// Require a Country (C) attribute (the JITP template reads it).
    pub require_country: bool,
    /// Subject attributes a CSR may carry, by short name.
    pub allowed_subject_attributes: Vec<String>,
    /// Subject attributes every CSR must carry besides CN (and C with require_country): the
    /// fields your JITP template reads. Checked by the AWS preflight.
    pub required_subject_attributes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Off by default: the AWS endpoints answer 503 aws_not_configured, everything else works.
    pub enabled: bool,
    pub region: String,
    /// Another endpoint (an emulator, a VPC endpoint). Credentials always come from the
    /// standard AWS chain (environment, profile, SSO, container or instance role).
    pub endpoint_url: Option<String>,
    /// Attempts per AWS call, the first included (the SDK's standard retry with backoff).
    pub max_attempts: u32,
    /// Upper bound on one AWS call, retries included.
    pub operation_timeout_secs: u64,
    /// How often revocations AWS has not been told of yet are pushed again.
    pub revocation_retry_secs: u64,
    /// How often every registered CA is synced with ListCertificatesByCA; 0 = never (use
    /// POST /v1/admin/cas/{id}/aws/sync).
    pub sync_interval_secs: u64,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            region: "us-east-1".into(),
            endpoint_url: None,
            max_attempts: 3,
            operation_timeout_secs: 20,
            revocation_retry_secs: 60,
            sync_interval_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `pretty` for a terminal, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `factory_ca=debug,tower_http=info`.
    pub level: String,
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
            aws: AwsSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            max_concurrent_requests: 1024,
            station_rate_per_sec: 500.0,
            station_burst: 1000,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: 16,
            migrate_on_start: true,
            connect_timeout_secs: 5,
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
        }
    }
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            validity_days: 365,
            backdate_secs: 60,
            duplicate_thing_name: DuplicateThingName::Reject,
            require_country: true,
            allowed_subject_attributes: SubjectField::ALL
                .iter()
                .map(|f| f.short_name().to_owned())
                .collect(),
            required_subject_attributes: Vec::new(),
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
                // Not settings: the config file path, and the token `factory-ca bench` reads.
                .ignore(&["config", "bench_token"])
                .split("__"),
        );
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError(describe_figment_error(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks everything that can be checked before connecting to anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
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
        if self.server.request_timeout_secs == 0 {
            return Err(ConfigError(
                "server.request_timeout_secs must be at least 1".into(),
            ));
        }
        if !(1..=3650).contains(&self.policy.validity_days) {
            return Err(ConfigError(
                "policy.validity_days must be between 1 and 3650".into(),
            ));
        }
        if !(0..=86_400).contains(&self.policy.backdate_secs) {
            return Err(ConfigError(
                "policy.backdate_secs must be between 0 and 86400".into(),
            ));
        }
        if !(1..=36_500).contains(&self.ca.validity_days) {
            return Err(ConfigError(
                "ca.validity_days must be between 1 and 36500".into(),
            ));
        }
        let fields = self.allowed_subject_fields()?;
        self.required_subject_fields()?;
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
        if self.aws.enabled {
            if self.aws.region.is_empty() {
                return Err(ConfigError(
                    "aws.region must be set when aws.enabled is true".into(),
                ));
            }
            if !(1..=10).contains(&self.aws.max_attempts) {
                return Err(ConfigError(
                    "aws.max_attempts must be between 1 and 10".into(),
                ));
            }
            if self.aws.revocation_retry_secs == 0 {
                return Err(ConfigError(
                    "aws.revocation_retry_secs must be at least 1".into(),
                ));
            }
            if self.aws.operation_timeout_secs == 0 {
                return Err(ConfigError(
                    "aws.operation_timeout_secs must be at least 1".into(),
                ));
            }
            if let Some(url) = &self.aws.endpoint_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ConfigError(
                    "aws.endpoint_url must be an http(s) URL".into(),
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError(format!(
                "log.level {:?} is not a valid filter: {e}",
                self.log.level
            ))
        })?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError(format!(
                "server.listen {:?} is not an address such as 127.0.0.1:8080",
                self.server.listen
            ))
        })
    }

    pub fn allowed_subject_fields(&self) -> Result<Vec<SubjectField>, ConfigError> {
        subject_fields(
            "allowed_subject_attributes",
            &self.policy.allowed_subject_attributes,
        )
    }

    pub fn required_subject_fields(&self) -> Result<Vec<SubjectField>, ConfigError> {
        let required = subject_fields(
            "required_subject_attributes",
            &self.policy.required_subject_attributes,
        )?;
        let allowed = self.allowed_subject_fields()?;
        match required.iter().find(|f| !allowed.contains(f)) {
            Some(f) => Err(ConfigError(format!(
                "policy.required_subject_attributes has {} but policy.allowed_subject_attributes \
                 does not allow it",
                f.short_name()
            ))),
            None => Ok(required),
        }
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
    pub fn issuance_policy(&self) -> Result<crate::ca::IssuancePolicy, ConfigError> {
        Ok(crate::ca::IssuancePolicy::new(
            self.allowed_subject_fields()?,
            self.policy.require_country,
        )
        .with_required(self.required_subject_fields()?))
    }
}

fn subject_fields(key: &str, names: &[String]) -> Result<Vec<SubjectField>, ConfigError> {
    names
        .iter()
        .map(|name| {
            SubjectField::from_short_name(name).ok_or_else(|| {
                ConfigError(format!(
                    "policy.{key}: unknown attribute {name:?}; known: \
                     C, ST, L, O, OU, CN, serialNumber, dnQualifier"
                ))
            })
        })
        .collect()
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
mod tests {
    use super::*;

    #[test]
    fn config_default_toml_matches_the_built_in_defaults() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
                .unwrap();
        let from_file: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(&text))
            .extract()
            .unwrap();
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn production_example_documents_a_valid_configuration() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/production.example.toml"
        ))
        .unwrap();
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(&text))
            .extract()
            .unwrap();
        settings.validate().unwrap();
        assert!(!settings.ca.create_on_first_start);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut s = Settings::default();
        s.database.url = Secret::new("postgres://u:hunter2@db/x");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn validation_says_what_to_fix() {
        let mut s = Settings::default();
        s.policy.allowed_subject_attributes = vec!["CN".into(), "E".into()];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("unknown attribute \"E\""), "{err}");

        let mut s = Settings::default();
        s.server.listen = "localhost".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("server.listen")
        );
    }
}
