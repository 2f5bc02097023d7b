//! The AWS IoT certificate provider: what the `certificate-provider` Lambda function does,
//! without the Lambda runtime (the binary `src/bin/certificate-provider.rs` wraps it).
//!
//! Once an account has a certificate provider (`CreateCertificateProvider`), AWS IoT hands
//! every fleet-provisioning `CreateCertificateFromCsr` call to the provider's Lambda function
//! with the device's CSR, and registers the certificate the function returns. This function
//! forwards the CSR to factory-ca's `POST /v1/certificates` over HTTPS as a station (a station
//! token, a station client certificate, or both), so that fleet-provisioned devices get
//! certificates of our CA, checked by our policy and recorded in our ledger like any other.
//!
//! The event and the answer are AWS's documented shapes: `{"certificateSigningRequest":
//! "<PEM>", ...}` in, `{"certificatePem": "<PEM>"}` out. A refusal by factory-ca becomes an
//! error whose message carries factory-ca's code (`csr_policy_violation: ...`), so that AWS
//! IoT rejects the device's request and the Lambda log names the reason.
//!
//! The HTTPS client is hyper's HTTP/1.1 connection over tokio-rustls (one connection per
//! invocation), trusting only the configured CA bundle. The settings come from the
//! environment ([`ProviderSettings::from_lookup`]); the token is never logged.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// The event AWS IoT sends the certificate provider's Lambda function for a
/// `CreateCertificateFromCsr` call. Fields AWS adds later are ignored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateProviderEvent {
    /// The device's CSR, PEM.
    pub certificate_signing_request: String,
    /// The principal that called `CreateCertificateFromCsr` (the claim certificate's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The MQTT client id of the device's connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The function's answer: the signed device certificate, PEM, which AWS IoT registers and
/// returns to the device.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateProviderResponse {
    pub certificate_pem: String,
}

/// Why the function could not return a certificate. The `Display` text is the Lambda error
/// message AWS IoT and the Lambda log see.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The event has no usable CSR.
    #[error("invalid_event: {0}")]
    InvalidEvent(String),
    /// factory-ca answered with an error: its status, stable code and message.
    #[error("{code}: factory-ca refused the CSR ({status}): {detail}")]
    Refused {
        status: u16,
        code: String,
        detail: String,
    },
    /// factory-ca could not be reached, or its answer could not be read.
    #[error("factory_ca_unreachable: {0}")]
    Unreachable(String),
}

impl ProviderError {
    /// factory-ca's error code, or this function's own (`invalid_event`,
    /// `factory_ca_unreachable`).
    pub fn code(&self) -> &str {
        match self {
            ProviderError::InvalidEvent(_) => "invalid_event",
            ProviderError::Refused { code, .. } => code,
            ProviderError::Unreachable(_) => "factory_ca_unreachable",
        }
    }
}

/// The most a factory-ca answer may weigh (a certificate chain is a few KiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// The most a CSR in the event may weigh; factory-ca refuses larger bodies anyway.
const MAX_CSR_BYTES: usize = 64 * 1024;

/// A station secret; `Debug` does not show it.
#[derive(Clone)]
pub struct StationToken(Zeroizing<String>);

impl StationToken {
    pub fn new(token: impl Into<String>) -> Self {
        StationToken(Zeroizing::new(token.into()))
    }
}

impl fmt::Debug for StationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StationToken(..)")
    }
}

/// Where factory-ca is and how to prove we are a station.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// `https://host[:port]`, optionally with a path prefix (a reverse proxy's).
    pub url: Uri,
    /// PEM certificates the server's certificate must chain to.
    pub ca_bundle: PathBuf,
    /// A station token (`Authorization: Bearer`).
    pub token: Option<StationToken>,
    /// A Secrets Manager secret (name or ARN) holding the station token, read at the cold
    /// start into `token` ([`secrets::station_token`]).
    pub token_secret_id: Option<String>,
    /// A station client certificate (PEM, may hold the chain) and its key (PEM), for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Connect, handshake, request and answer together.
    pub timeout: Duration,
}

/// The environment variables of the function.
pub mod env {
    pub const URL: &str = "CERT_PROVIDER_FACTORY_CA_URL";
    pub const CA_BUNDLE: &str = "CERT_PROVIDER_CA_BUNDLE";
    pub const STATION_TOKEN: &str = "CERT_PROVIDER_STATION_TOKEN";
    pub const STATION_TOKEN_FILE: &str = "CERT_PROVIDER_STATION_TOKEN_FILE";
    pub const STATION_TOKEN_SECRET_ID: &str = "CERT_PROVIDER_STATION_TOKEN_SECRET_ID";
    pub const CLIENT_CERT: &str = "CERT_PROVIDER_CLIENT_CERT";
    pub const CLIENT_KEY: &str = "CERT_PROVIDER_CLIENT_KEY";
    pub const TIMEOUT_SECS: &str = "CERT_PROVIDER_TIMEOUT_SECS";
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl ProviderSettings {
    /// Reads the settings through `lookup` (`std::env::var` in the function). Every mistake is
    /// named with the variable to fix.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url_text = get(env::URL)
            .ok_or_else(|| anyhow::anyhow!("{} is not set: factory-ca's https:// URL", env::URL))?;
        let url: Uri = url_text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{} is not a URL ({e}): {url_text}", env::URL))?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            anyhow::bail!(
                "{} must be an https:// URL with a host (the CSR and the token travel in it): \
                 {url_text}",
                env::URL
            );
        }
        if url.query().is_some() {
            anyhow::bail!("{} must not have a query: {url_text}", env::URL);
        }
        let ca_bundle = get(env::CA_BUNDLE).map(PathBuf::from).ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not set: the PEM file of the CA(s) that issued factory-ca's server \
                 certificate",
                env::CA_BUNDLE
            )
        })?;
        let token_secret_id = get(env::STATION_TOKEN_SECRET_ID).map(|s| s.trim().to_owned());
        let sources = [
            get(env::STATION_TOKEN).is_some(),
            get(env::STATION_TOKEN_FILE).is_some(),
            token_secret_id.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            anyhow::bail!(
                "set one of {}, {} and {}, not several",
                env::STATION_TOKEN,
                env::STATION_TOKEN_FILE,
                env::STATION_TOKEN_SECRET_ID
            );
        }
        let token = match (get(env::STATION_TOKEN), get(env::STATION_TOKEN_FILE)) {
            (Some(_), Some(_)) => unreachable!("refused above"),
            (Some(token), None) => Some(StationToken::new(token.trim())),
            (None, Some(path)) => {
                let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                    anyhow::anyhow!("{} = {path}: cannot read it: {e}", env::STATION_TOKEN_FILE)
                })?);
                let token = text.trim();
                if token.is_empty() {
                    anyhow::bail!("{} = {path}: the file is empty", env::STATION_TOKEN_FILE);
                }
                Some(StationToken::new(token))
            }
            (None, None) => None,
        };
        let client_cert = match (get(env::CLIENT_CERT), get(env::CLIENT_KEY)) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => anyhow::bail!(
                "{} and {} go together: the station's client certificate and its key",
                env::CLIENT_CERT,
                env::CLIENT_KEY
            ),
        };
        if token.is_none() && token_secret_id.is_none() && client_cert.is_none() {
            anyhow::bail!(
                "no station credential: set {} (or {}, or {}) to a station token, or {} and {} \
                 to a station client certificate and key, or both",
                env::STATION_TOKEN,
                env::STATION_TOKEN_FILE,
                env::STATION_TOKEN_SECRET_ID,
                env::CLIENT_CERT,
                env::CLIENT_KEY
            );
        }
        let timeout = match get(env::TIMEOUT_SECS) {
            None => DEFAULT_TIMEOUT,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(secs) if (1..=900).contains(&secs) => Duration::from_secs(secs),
                _ => anyhow::bail!(
                    "{} must be whole seconds from 1 to 900 (Lambda's limit): {text}",
                    env::TIMEOUT_SECS
                ),
            },
        };
        Ok(ProviderSettings {
            url,
            ca_bundle,
            token,
            token_secret_id,
            client_cert,
            timeout,
        })
    }
}

/// factory-ca's issuance endpoint as a station: built once per function instance (cold
/// start), used by every invocation.
#[derive(Clone)]
pub struct FactoryCaClient {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    authority: HeaderValue,
    sign_path: String,
    token: Option<StationToken>,
    timeout: Duration,
}

impl FactoryCaClient {
    /// Loads the CA bundle and the client certificate; refuses settings that cannot work.
    pub fn new(settings: &ProviderSettings) -> anyhow::Result<Self> {
        if settings.token.is_none()
            && let Some(secret) = &settings.token_secret_id
        {
            anyhow::bail!(
                "{} = {secret}: the token must be read from Secrets Manager before the client \
                 is made (secrets::station_token)",
                env::STATION_TOKEN_SECRET_ID
            );
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let bundle = CertificateDer::pem_file_iter(&settings.ca_bundle)
            .map_err(|e| {
                anyhow::anyhow!("{} = {}: {e}", env::CA_BUNDLE, settings.ca_bundle.display())
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!("{} = {}: {e}", env::CA_BUNDLE, settings.ca_bundle.display())
            })?;
        let (added, _) = roots.add_parsable_certificates(bundle);
        if added == 0 {
            anyhow::bail!(
                "{} = {}: no certificate in it",
                env::CA_BUNDLE,
                settings.ca_bundle.display()
            );
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &settings.client_cert {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        anyhow::anyhow!("{} = {}: {e}", env::CLIENT_CERT, cert.display())
                    })?;
                if chain.is_empty() {
                    anyhow::bail!(
                        "{} = {}: no certificate in it",
                        env::CLIENT_CERT,
                        cert.display()
                    );
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| anyhow::anyhow!("{} = {}: {e}", env::CLIENT_KEY, key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    anyhow::anyhow!(
                        "{} and {} do not make a client identity: {e}",
                        env::CLIENT_CERT,
                        env::CLIENT_KEY
                    )
                })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = settings
            .url
            .host()
            .expect("checked by from_lookup")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}: {host}", env::URL))?;
        let port = settings.url.port_u16().unwrap_or(443);
        let authority = HeaderValue::from_str(
            settings
                .url
                .authority()
                .map(|a| a.as_str())
                .unwrap_or(&host),
        )?;
        let prefix = settings.url.path().trim_end_matches('/');
        Ok(FactoryCaClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
            host,
            port,
            authority,
            sign_path: format!("{prefix}/v1/certificates"),
            token: settings.token.clone(),
            timeout: settings.timeout,
        })
    }

    /// `POST /v1/certificates` with `csr_pem`; the device certificate (PEM) on 201.
    ///
    /// The `Idempotency-Key` is derived from the CSR, so that a retried invocation for the same
    /// CSR gets the same certificate instead of a second one.
    pub async fn sign(&self, csr_pem: &str) -> Result<String, ProviderError> {
        tokio::time::timeout(self.timeout, self.sign_unbounded(csr_pem))
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Unreachable(format!(
                    "no answer from factory-ca within {} s",
                    self.timeout.as_secs()
                )))
            })
    }

    async fn sign_unbounded(&self, csr_pem: &str) -> Result<String, ProviderError> {
        let unreachable = |what: &str, e: &dyn fmt::Display| {
            ProviderError::Unreachable(format!("{what} {}:{}: {e}", self.host, self.port))
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable("cannot connect to", &e))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| unreachable("TLS handshake failed with", &e))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable("HTTP/1.1 failed with", &e))?;
        let driver = tokio::spawn(connection);
        let body = serde_json::to_vec(&serde_json::json!({ "csr": csr_pem }))
            .expect("a JSON string serializes");
        let mut request = Request::post(self.sign_path.as_str())
            .header(header::HOST, self.authority.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!(
                    "factory-ca-certificate-provider/",
                    env!("CARGO_PKG_VERSION")
                ),
            )
            .header("idempotency-key", idempotency_key(csr_pem))
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.0.as_str()))
                .map_err(|_| {
                    ProviderError::InvalidEvent(
                        "the station token has characters a header cannot carry".into(),
                    )
                })?;
            value.set_sensitive(true);
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable("no answer from", &e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| unreachable("the answer could not be read from", &*e))?
            .to_bytes();
        driver.abort();
        answer(status, &bytes)
    }
}

/// `fp-` and the hex SHA-256 of the CSR's PEM text as sent.
fn idempotency_key(csr_pem: &str) -> String {
    format!("fp-{}", hex::encode(Sha256::digest(csr_pem.as_bytes())))
}

/// The certificate of a 201, or the problem of an error answer.
fn answer(status: StatusCode, body: &[u8]) -> Result<String, ProviderError> {
    #[derive(Deserialize)]
    struct Issued {
        certificate_pem: String,
    }
    #[derive(Deserialize)]
    struct Problem {
        code: String,
        #[serde(default)]
        detail: String,
    }
    if status.is_success() {
        let issued: Issued = serde_json::from_slice(body).map_err(|e| {
            ProviderError::Unreachable(format!(
                "factory-ca answered {status} without a certificate_pem: {e}"
            ))
        })?;
        return Ok(issued.certificate_pem);
    }
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) => Err(ProviderError::Refused {
            status: status.as_u16(),
            code: problem.code,
            detail: problem.detail,
        }),
        Err(_) => Err(ProviderError::Refused {
            status: status.as_u16(),
            code: format!("http_{}", status.as_u16()),
            detail: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        }),
    }
}

/// The station token from AWS Secrets Manager (the function reads it once, at its cold start).
#[cfg(feature = "certificate-provider")]
pub mod secrets {
    use super::StationToken;
    use zeroize::Zeroizing;

    /// The token in secret `secret_id` (name or ARN): its `SecretString`, either the token
    /// itself or a JSON object with a `token` key (the console's key/value form). The function's
    /// role needs `secretsmanager:GetSecretValue` on it (and `kms:Decrypt` for a customer
    /// managed key).
    pub async fn station_token(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> anyhow::Result<StationToken> {
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} = {secret_id}: Secrets Manager did not give the secret: {}",
                    super::env::STATION_TOKEN_SECRET_ID,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        let text = Zeroizing::new(out.secret_string().map(str::to_owned).ok_or_else(|| {
            anyhow::anyhow!(
                "{} = {secret_id}: the secret has no SecretString (a binary secret cannot hold \
                 a token)",
                super::env::STATION_TOKEN_SECRET_ID
            )
        })?);
        let token = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map
                .get("token")
                .and_then(|v| v.as_str())
                .map(|t| Zeroizing::new(t.trim().to_owned()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} = {secret_id}: the secret is a JSON object without a \"token\" \
                         string",
                        super::env::STATION_TOKEN_SECRET_ID
                    )
                })?,
            _ => Zeroizing::new(text.trim().to_owned()),
        };
        if token.is_empty() {
            anyhow::bail!(
                "{} = {secret_id}: the secret is empty",
                super::env::STATION_TOKEN_SECRET_ID
            );
        }
        Ok(StationToken::new(token.as_str()))
    }
}

/// Anything that signs a CSR for the handler: factory-ca over HTTPS in the function.
#[async_trait::async_trait]
pub trait CsrSigner: Send + Sync {
    async fn sign(&self, csr_pem: &str) -> Result<String, ProviderError>;
}

#[async_trait::async_trait]
impl CsrSigner for FactoryCaClient {
    async fn sign(&self, csr_pem: &str) -> Result<String, ProviderError> {
        FactoryCaClient::sign(self, csr_pem).await
    }
}

/// One invocation: checks the event, has the CSR signed, answers in AWS's shape.
pub async fn handle(
    event: CertificateProviderEvent,
    signer: &dyn CsrSigner,
) -> Result<CertificateProviderResponse, ProviderError> {
    let csr = event.certificate_signing_request.trim();
    if csr.is_empty() {
        return Err(ProviderError::InvalidEvent(
            "certificateSigningRequest is empty".into(),
        ));
    }
    if csr.len() > MAX_CSR_BYTES {
        return Err(ProviderError::InvalidEvent(format!(
            "certificateSigningRequest is {} bytes, more than {MAX_CSR_BYTES}",
            csr.len()
        )));
    }
    if !csr.starts_with("-----BEGIN") {
        return Err(ProviderError::InvalidEvent(
            "certificateSigningRequest is not PEM (-----BEGIN CERTIFICATE REQUEST-----)".into(),
        ));
    }
    let result = signer.sign(csr).await;
    match &result {
        Ok(_) => tracing::info!(
            principal = event.principal.as_deref().unwrap_or(""),
            client_id = event.client_id.as_deref().unwrap_or(""),
            "certificate issued by factory-ca"
        ),
        Err(e) => tracing::warn!(
            principal = event.principal.as_deref().unwrap_or(""),
            client_id = event.client_id.as_deref().unwrap_or(""),
            code = e.code(),
            error = %e,
            "no certificate"
        ),
    }
    Ok(CertificateProviderResponse {
        certificate_pem: result?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_event_and_answer_have_aws_field_names() {
        let event: CertificateProviderEvent = serde_json::from_value(serde_json::json!({
            "certificateSigningRequest": "-----BEGIN CERTIFICATE REQUEST-----\n...",
            "principal": "abc123",
            "clientId": "device-1",
            "futureField": 1
        }))
        .unwrap();
        assert_eq!(event.client_id.as_deref(), Some("device-1"));
        assert_eq!(event.principal.as_deref(), Some("abc123"));
        let answer = serde_json::to_value(CertificateProviderResponse {
            certificate_pem: "PEM".into(),
        })
        .unwrap();
        assert_eq!(answer, serde_json::json!({ "certificatePem": "PEM" }));
    }

    #[test]
    fn settings_need_https_a_bundle_and_a_credential() {
        const URL: (&str, &str) = (env::URL, "https://ca.example:8443");
        const BUNDLE: (&str, &str) = (env::CA_BUNDLE, "/etc/ca.pem");
        const TOKEN: (&str, &str) = (env::STATION_TOKEN, "t");
        const SECRET: (&str, &str) = (env::STATION_TOKEN_SECRET_ID, "factory-ca/t");
        // Refused, and what the message says to fix.
        let refused: [(&[(&str, &str)], &str); 6] = [
            (&[URL, BUNDLE], "no station credential"),
            (
                &[(env::URL, "http://ca.example"), BUNDLE, TOKEN],
                "https://",
            ),
            (&[URL, BUNDLE, (env::CLIENT_CERT, "/c.pem")], "go together"),
            (
                &[URL, BUNDLE, TOKEN, (env::STATION_TOKEN_FILE, "/t")],
                "not several",
            ),
            (&[URL, BUNDLE, SECRET, TOKEN], "not several"),
            (
                &[URL, BUNDLE, TOKEN, (env::TIMEOUT_SECS, "0")],
                "from 1 to 900",
            ),
        ];
        for (vars, says) in refused {
            let err = ProviderSettings::from_lookup(lookup(vars)).unwrap_err();
            assert!(err.to_string().contains(says), "{vars:?}: {err}");
        }
        let with_token = [URL, BUNDLE, (env::STATION_TOKEN, "fca_x")];
        let s = ProviderSettings::from_lookup(lookup(&with_token)).unwrap();
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert!(!format!("{s:?}").contains("fca_x"), "Debug hides the token");
        let s = ProviderSettings::from_lookup(lookup(&[URL, BUNDLE, SECRET])).unwrap();
        assert_eq!(s.token_secret_id.as_deref(), Some("factory-ca/t"));
    }

    #[test]
    fn factory_ca_problems_become_errors_with_their_code() {
        let body = br#"{"type":"urn:factory-ca:error:csr_policy_violation","title":"Unprocessable Entity","status":422,"detail":"the CN must match","code":"csr_policy_violation"}"#;
        let err = answer(StatusCode::UNPROCESSABLE_ENTITY, body).unwrap_err();
        assert_eq!(err.code(), "csr_policy_violation");
        let text = err.to_string();
        assert!(text.starts_with("csr_policy_violation: "), "{text}");
        assert!(text.contains("the CN must match"), "{text}");
        let err = answer(StatusCode::BAD_GATEWAY, b"<html>proxy</html>").unwrap_err();
        assert_eq!(err.code(), "http_502");
        let ok = answer(
            StatusCode::CREATED,
            br#"{"certificate_pem":"PEM","serial":"1"}"#,
        );
        assert_eq!(ok.unwrap(), "PEM");
    }

    #[test]
    fn the_idempotency_key_is_a_function_of_the_csr() {
        let a = idempotency_key("csr-a");
        assert_eq!(a, idempotency_key("csr-a"));
        assert_ne!(a, idempotency_key("csr-b"));
        assert_eq!(a.len(), 3 + 64);
    }

    struct Refuses;

    #[async_trait::async_trait]
    impl CsrSigner for Refuses {
        async fn sign(&self, _: &str) -> Result<String, ProviderError> {
            panic!("an invalid event never reaches factory-ca")
        }
    }

    #[tokio::test]
    async fn events_without_a_pem_csr_are_refused_before_any_request() {
        for csr in ["", "   ", "MIIB...base64 without armour"] {
            let event = CertificateProviderEvent {
                certificate_signing_request: csr.into(),
                principal: None,
                client_id: None,
            };
            let err = handle(event, &Refuses).await.unwrap_err();
            assert_eq!(err.code(), "invalid_event");
        }
    }
}
