//! factory-ca: the signing backend of a device factory, a private CA for AWS IoT Just-In-Time
//! Provisioning. The README has a tour of the code.

/// Wiring: application state, router assembly, startup and graceful shutdown.
pub mod app;
/// API tokens, roles and principals; tokens are stored as SHA-256 hashes.
pub mod auth;
/// CA lifecycle: create/import, owner-only key files, the issuing CA.
pub mod authorities;
/// AWS IoT behind the `IotRegistry` trait; the only place that imports aws-sdk-iot.
pub mod aws;
/// `factory-ca bench`: the station simulator and load generator (not used by the service).
pub mod bench;
/// The certificate authority: CSR parsing, policy, profile, signing. No HTTP, SQL or AWS.
pub mod ca;
/// Layered, validated settings.
pub mod config;
/// Thin HTTP handlers, the error shape, extractors.
pub mod http;
/// The one issuance pipeline: policy -> sign -> record (commit) -> respond.
pub mod issuance;
/// JITP provisioning templates: build, validate, preview, and the CA's registrationConfig.
pub mod jitp;
/// CA keys at rest: the passphrase and the encrypted PKCS#8 (PBES2) key form.
pub mod keystore;
/// Per-station rate limiting (token buckets).
pub mod limits;
/// AWS IoT JITP administration of our CAs: preflight, registration, template, status.
pub mod provisioning;
/// Refused signing requests, counted per hour for the dashboards and flushed to the store.
pub mod rejections;
/// All SQL, for PostgreSQL and SQLite.
pub mod store;
/// The tracing subscriber.
pub mod telemetry;
/// HTTPS (rustls on aws-lc-rs), the TLS accept loop, and station identity from mTLS.
pub mod tls;
