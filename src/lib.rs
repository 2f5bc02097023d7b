//! factory-ca: the signing backend of a device factory, a private CA for AWS IoT Just-In-Time
//! Provisioning. `docs/architecture.md` shows the layers and one request's path through them.

/// Wiring: application state, startup, background jobs and graceful shutdown.
pub mod app;
/// AWS IoT behind the `IotRegistry` trait; the only place that imports aws-sdk-iot.
pub mod aws;
/// `factory-ca bench`: the station simulator and load generator (not used by the service).
pub mod bench;
/// The certificate authority: CSR parsing, policy, profile, signing. No HTTP, SQL or AWS.
pub mod ca;
/// The AWS IoT certificate provider (fleet provisioning): the Lambda function's handler, which
/// forwards a device's CSR to this service over HTTPS as a station.
pub mod certificate_provider;
/// Layered, validated settings.
pub mod config;
/// The HTTP API: router and layers, errors, extractors, OpenAPI, TLS, and the handlers.
pub mod http;
/// JITP provisioning templates: build, validate, preview, and the CA's registrationConfig.
pub mod jitp;
/// CA keys at rest: key files, the passphrase, and the encrypted PKCS#8 (PBES2) form.
pub mod keys;
/// AWS IoT JITP administration of our CAs: preflight, registration, template, status, sync.
pub mod provisioning;
/// Issuance, CA administration, tokens, rejections and rate limits.
pub mod services;
/// All SQL, for PostgreSQL and SQLite.
pub mod store;
/// The tracing subscriber and the Prometheus recorder.
pub mod telemetry;
