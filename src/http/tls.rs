//! HTTPS and station mTLS: the rustls server configuration built from `[server.tls]` (always on
//! the aws-lc-rs provider), the handshake of each connection (the accept loop, shared with
//! plain HTTP, is `http::server`), and the station identity that a verified client certificate
//! gives every request of its connection ([`ClientIdentity`]).
//!
//! Identity mapping: a client certificate that chains to a configured station CA (checked by
//! rustls-webpki during the handshake, with the `clientAuth` usage and, when configured, the
//! station CRLs) names the station by its subject CN, verbatim; the caller is station
//! `cert:<CN>` (`crate::http::extract::certificate_station_name`). The CN must follow the rules
//! of token names (1 to 64 characters of `a-z A-Z 0-9 . _ -`), and token names cannot hold
//! `:`, so a certificate never takes a token's name (ledger name, rate bucket, idempotency
//! scope); a certificate with no CN, several CNs or another CN authenticates nothing (401).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{PemObject, SectionKind};
use std::sync::{OnceLock, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::error::ApiError;
use super::error_code::ErrorCode;
use crate::config::{ClientAuth, TlsSettings};
use crate::store::CaRecord;

/// What a verified client certificate says about its connection. Inserted as a request
/// extension into every request of a TLS connection whose client presented a certificate that
/// chains to a station CA; absent otherwise (plain HTTP, no certificate).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The certificate's CN, verbatim (the station is named `cert:<CN>`).
    Station { common_name: String },
    /// Verified, but its subject names no usable station; the reason is shown in the 401.
    Unusable { reason: &'static str },
    /// A device certificate: it chains to one of factory-ca's own CAs ([`DeviceTrust`]). It
    /// authenticates for EST simplereenroll only; every other route refuses it (403
    /// `device_certificate_not_allowed`), so a device never acts as a station.
    Device { certificate_der: Arc<[u8]> },
}

/// A device certificate shows as its subject (the log line of each verified connection), not
/// as its bytes.
impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientIdentity::Station { common_name } => f
                .debug_struct("Station")
                .field("common_name", common_name)
                .finish(),
            ClientIdentity::Unusable { reason } => {
                f.debug_struct("Unusable").field("reason", reason).finish()
            }
            ClientIdentity::Device { certificate_der } => {
                let subject = x509_parser::parse_x509_certificate(certificate_der)
                    .map(|(_, c)| c.subject().to_string())
                    .unwrap_or_default();
                f.debug_struct("Device").field("subject", &subject).finish()
            }
        }
    }
}

impl ClientIdentity {
    /// The identity of a verified end-entity certificate (DER).
    pub fn from_certificate(der: &[u8]) -> ClientIdentity {
        let unusable = |reason| ClientIdentity::Unusable { reason };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return unusable("the client certificate cannot be parsed");
        };
        let mut names = cert.subject().iter_common_name();
        let (Some(cn), None) = (names.next(), names.next()) else {
            return unusable("the client certificate's subject must have exactly one CN");
        };
        match cn.as_str() {
            Ok(name) if crate::services::tokens::valid_token_name(name) => {
                ClientIdentity::Station {
                    common_name: name.to_owned(),
                }
            }
            _ => unusable(
                "the client certificate's CN is not a station name (1 to 64 characters of \
                 a-z, A-Z, 0-9, '.', '_' and '-')",
            ),
        }
    }
}

/// Inserted into every request that arrived over TLS, with or without a client certificate:
/// routes that exist only under HTTPS (EST, RFC 7030 section 3.3) look for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverTls;

/// The CAs of this service, as trust anchors for device certificates presented as TLS client
/// certificates (EST simplereenroll). Filled from the store after it is connected and updated
/// when the CAs change ([`DeviceTrust::update`]); empty (nothing verifies) until then.
pub struct DeviceTrust {
    provider: Arc<CryptoProvider>,
    verifier: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    /// The CA ids the verifier was built from, to skip rebuilding an unchanged set.
    ids: RwLock<Vec<String>>,
    /// The subjects sent as acceptable CA names in the CertificateRequest: the station CAs and
    /// the device CAs known at startup (set once: rustls borrows them for the connection).
    hints: OnceLock<Vec<DistinguishedName>>,
}

impl fmt::Debug for DeviceTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceTrust")
            .field(
                "ca_ids",
                &self.ids.read().map(|ids| ids.clone()).unwrap_or_default(),
            )
            .finish_non_exhaustive()
    }
}

impl DeviceTrust {
    fn new(provider: Arc<CryptoProvider>) -> DeviceTrust {
        DeviceTrust {
            provider,
            verifier: RwLock::new(None),
            ids: RwLock::new(Vec::new()),
            hints: OnceLock::new(),
        }
    }

    /// Trusts exactly the certificates of `cas` (roots and intermediates alike: a device
    /// presents its own certificate, often without the chain). A CA whose certificate cannot
    /// serve as a trust anchor is skipped with a warning.
    pub fn update(&self, cas: &[CaRecord]) {
        let mut ids: Vec<String> = cas.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        if *self.ids.read().expect("never poisoned") == ids
            && self.verifier.read().expect("never poisoned").is_some()
        {
            return;
        }
        let mut roots = RootCertStore::empty();
        for ca in cas {
            let Ok(der) = ::pem::parse(&ca.certificate_pem) else {
                tracing::warn!(ca_id = %ca.id, "CA certificate is not PEM; its devices cannot renew");
                continue;
            };
            if let Err(e) = roots.add(CertificateDer::from(der.contents().to_vec())) {
                tracing::warn!(ca_id = %ca.id, error = %e, "CA certificate is no trust anchor; its devices cannot renew");
            }
        }
        let verifier = if roots.is_empty() {
            None
        } else {
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| tracing::warn!(error = %e, "device certificate verifier"))
                .ok()
        };
        *self.verifier.write().expect("never poisoned") = verifier;
        *self.ids.write().expect("never poisoned") = ids;
    }

    /// Whether `end_entity` is a valid (signature, validity, `clientAuth`) certificate issued by
    /// one of our CAs.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let verifier = self.verifier.read().expect("never poisoned").clone();
        match verifier {
            Some(v) => v
                .verify_client_cert(end_entity, intermediates, now)
                .map(|_| ()),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    /// Sets the acceptable CA names once: `station` hints first, then the device CAs.
    fn set_hints(&self, station: &[DistinguishedName], cas: &[CaRecord]) {
        let mut hints = station.to_vec();
        for ca in cas {
            if let Ok(der) = ::pem::parse(&ca.certificate_pem)
                && let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.contents())
            {
                hints.push(DistinguishedName::from(cert.subject().as_raw().to_vec()));
            }
        }
        let _ = self.hints.set(hints);
    }
}

/// The client certificate verifier of the HTTPS listener: a device certificate (chains to one
/// of our CAs, see [`DeviceTrust`]) or a station certificate (chains to `client_ca_file`).
/// Device certificates are tried first, so that one never passes as a station even if a station
/// CA were to chain to our CAs; which kind it was is decided again after the handshake
/// ([`TlsServer::accept`]), by the same test.
#[derive(Debug)]
struct ClientVerifier {
    station: Option<Arc<dyn ClientCertVerifier>>,
    devices: Arc<DeviceTrust>,
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match self.devices.hints.get() {
            Some(hints) => hints,
            None => self
                .station
                .as_ref()
                .map(|s| s.root_hint_subjects())
                .unwrap_or(&[]),
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let device = match self.devices.verify(end_entity, intermediates, now) {
            Ok(()) => return Ok(ClientCertVerified::assertion()),
            Err(e) => e,
        };
        let station = match &self.station {
            Some(station) => station.verify_client_cert(end_entity, intermediates, now),
            None => Err(device.clone()),
        };
        // A certificate of ours that failed (expired, wrong usage) is refused for that reason,
        // not as "unknown CA": the device's technician reads the alert.
        station.map_err(|e| match device {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => e,
            device => device,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A `[server.tls]` file or setting that cannot work, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid TLS configuration: {0}")]
pub struct TlsSetupError(String);

fn file_error(key: &str, path: &Path, message: impl fmt::Display) -> TlsSetupError {
    TlsSetupError(format!("server.tls.{key} {}: {message}", path.display()))
}

/// The HTTPS side of the server: the acceptor and what the station CAs are.
pub struct TlsServer {
    acceptor: TlsAcceptor,
    handshake_timeout: std::time::Duration,
    /// The station CA certificates (`client_ca_file`), empty without mTLS.
    station_cas: Vec<CertificateDer<'static>>,
    client_auth: Option<ClientAuth>,
    /// Our CAs, for device certificates (EST simplereenroll).
    devices: Arc<DeviceTrust>,
    /// The station CAs' names, for the CertificateRequest.
    station_hints: Vec<DistinguishedName>,
    crl_count: usize,
    certificate_subject: String,
    certificate_not_after: String,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("certificate_subject", &self.certificate_subject)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads and checks the files named in `[server.tls]`; `None` when HTTPS is not configured
    /// (plain HTTP). Every error names the setting and the file, and says what is wrong.
    pub fn from_settings(tls: &TlsSettings) -> Result<Option<TlsServer>, TlsSetupError> {
        let (cert_file, key_file) = match (&tls.cert_file, &tls.key_file) {
            (Some(cert_file), Some(key_file)) => (cert_file, key_file),
            (None, None) if tls.client_ca_file.is_none() => return Ok(None),
            // Settings::validate says so too; never fall back to plain HTTP silently.
            _ => {
                return Err(TlsSetupError(
                    "server.tls.cert_file and server.tls.key_file go together (and \
                     client_ca_file needs both): set both for HTTPS, or none of them"
                        .into(),
                ));
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = read_certificates("cert_file", cert_file)?;
        let (certificate_subject, certificate_not_after) = check_server_certificate(
            cert_file,
            chain
                .first()
                .expect("read_certificates returns at least one"),
        )?;
        let key = read_private_key(key_file, tls.allow_insecure_key_permissions)?;

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsSetupError(format!("the TLS provider refused TLS 1.2/1.3: {e}")))?;
        let mut station_cas = Vec::new();
        let mut crl_count = 0;
        let station: Option<Arc<dyn ClientCertVerifier>> = match &tls.client_ca_file {
            None => None,
            Some(ca_file) => {
                station_cas = read_station_cas(ca_file)?;
                let mut roots = RootCertStore::empty();
                for (i, ca) in station_cas.iter().enumerate() {
                    roots.add(ca.clone()).map_err(|e| {
                        file_error(
                            "client_ca_file",
                            ca_file,
                            format!("certificate {} is not a usable trust anchor: {e}", i + 1),
                        )
                    })?;
                }
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if let Some(crl_file) = &tls.client_crl_file {
                    let crls = read_crls(crl_file, &station_cas)?;
                    crl_count = crls.len();
                    // Only the station certificate's own status: a station CA is a trust
                    // anchor here. An unknown status (a station CA without a CRL in the file)
                    // is refused: fail closed.
                    verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
                }
                if tls.client_auth == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().map_err(|e| {
                    TlsSetupError(format!(
                        "server.tls.client_ca_file / client_crl_file cannot be used: {e}"
                    ))
                })?;
                Some(verifier)
            }
        };
        // Client certificates are always asked for (optionally, unless station mTLS is
        // required): a device renews (EST simplereenroll) with its own certificate.
        let devices = Arc::new(DeviceTrust::new(provider.clone()));
        let station_hints = station
            .as_ref()
            .map(|s| s.root_hint_subjects().to_vec())
            .unwrap_or_default();
        let builder = builder.with_client_cert_verifier(Arc::new(ClientVerifier {
            mandatory: tls.client_ca_file.is_some() && tls.client_auth == ClientAuth::Required,
            station,
            devices: devices.clone(),
            provider: provider.clone(),
        }));
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsSetupError(format!(
                    "the key in server.tls.key_file {} does not match the certificate in \
                     server.tls.cert_file {} (the first certificate must be the server's own)",
                    key_file.display(),
                    cert_file.display()
                ))
            }
            other => file_error("key_file", key_file, format!("unusable key: {other}")),
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: tls.handshake_timeout_secs,
            client_auth: tls.client_ca_file.as_ref().map(|_| tls.client_auth),
            station_cas,
            devices,
            station_hints,
            crl_count,
            certificate_subject,
            certificate_not_after,
        }))
    }

    /// Refuses a station CA bundle under which factory-ca's own certificates would chain: with
    /// it, every device certificate (EKU clientAuth, CN = thing name) would authenticate as a
    /// station and could sign CSRs. Caught when a station CA has the key of one of our CAs, or
    /// is the issuer (by name) of one of them.
    pub fn refuse_own_cas(&self, own: &[CaRecord]) -> Result<(), TlsSetupError> {
        for station_ca in &self.station_cas {
            let Ok((_, station)) = x509_parser::parse_x509_certificate(station_ca) else {
                continue;
            };
            for record in own {
                let Ok(der) = ::pem::parse(&record.certificate_pem) else {
                    continue;
                };
                let Ok((_, ours)) = x509_parser::parse_x509_certificate(der.contents()) else {
                    continue;
                };
                let same_key = ours.public_key().raw == station.public_key().raw;
                let issued_ours = ours.issuer().as_raw() == station.subject().as_raw();
                if same_key || issued_ours {
                    return Err(TlsSetupError(format!(
                        "server.tls.client_ca_file holds {} ({}), which {} factory-ca's CA {}: \
                         every device certificate would authenticate as a station. Use a \
                         separate CA for station certificates",
                        station.subject(),
                        if same_key { "same key" } else { "issuer" },
                        if same_key { "is" } else { "issued" },
                        record.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Our CAs as the trust anchors of device certificates (EST simplereenroll): call once
    /// the store is connected, with every CA it holds; keep it current with
    /// [`DeviceTrust::update`] through [`TlsServer::device_trust`].
    pub fn trust_devices_of(&self, cas: &[CaRecord]) {
        self.devices.set_hints(&self.station_hints, cas);
        self.devices.update(cas);
    }

    /// The device trust, shared with the application (it refreshes it when CAs change).
    pub fn device_trust(&self) -> Arc<DeviceTrust> {
        self.devices.clone()
    }

    /// One line for the startup log.
    pub fn describe(&self) -> String {
        let mtls = match self.client_auth {
            None => "off".to_owned(),
            Some(mode) => format!(
                "{} ({} station CA(s), {} CRL(s))",
                match mode {
                    ClientAuth::Optional => "optional",
                    ClientAuth::Required => "required",
                },
                self.station_cas.len(),
                self.crl_count
            ),
        };
        format!(
            "HTTPS with certificate {:?} valid until {}; station mTLS {mtls}",
            self.certificate_subject, self.certificate_not_after
        )
    }
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| file_error(key, path, format!("cannot read: {e}")))
}

/// Every `CERTIFICATE` block of a PEM file, in order; at least one.
fn read_certificates(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read_file(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            key,
            path,
            "holds no certificate (expected PEM blocks -----BEGIN CERTIFICATE-----)",
        ));
    }
    for (i, der) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(der).is_err() {
            return Err(file_error(
                key,
                path,
                format!("certificate {} is not a valid X.509 certificate", i + 1),
            ));
        }
    }
    Ok(certs)
}

/// The server certificate must be valid now; a client would refuse it otherwise. Returns its
/// subject and notAfter for the startup log.
fn check_server_certificate(
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<(String, String), TlsSetupError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| file_error("cert_file", path, "the first certificate cannot be parsed"))?;
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(file_error(
            "cert_file",
            path,
            format!(
                "the server certificate is not valid now (valid from {} to {})",
                validity.not_before, validity.not_after
            ),
        ));
    }
    Ok((cert.subject().to_string(), validity.not_after.to_string()))
}

/// The one private key of `key_file`, after the owner-only permission check the CA keys get.
fn read_private_key(
    path: &Path,
    allow_insecure: bool,
) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let text = crate::keys::files::read_owner_only_key_file(
        path,
        "TLS server key",
        "server.tls.allow_insecure_key_permissions",
        allow_insecure,
    )
    .map_err(|message| file_error("key_file", path, message))?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(file_error(
            "key_file",
            path,
            "the key is encrypted; give an unencrypted PEM key (PKCS#8, PKCS#1 or SEC1) in an \
             owner-only file",
        ));
    }
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("key_file", path, format!("not valid PEM: {e}")))?;
    let mut keys = sections.into_iter().filter_map(|(kind, der)| match kind {
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
            PrivateKeyDer::from_pem(kind, der)
        }
        _ => None,
    });
    match (keys.next(), keys.next()) {
        (Some(key), None) => Ok(key),
        (None, _) => Err(file_error(
            "key_file",
            path,
            "holds no private key (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or \
             EC PRIVATE KEY)",
        )),
        (Some(_), Some(_)) => Err(file_error(
            "key_file",
            path,
            "holds more than one private key; keep only the server certificate's key",
        )),
    }
}

/// The station CA bundle: CA certificates only (a leaf here would never chain anything).
fn read_station_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let cas = read_certificates("client_ca_file", path)?;
    for (i, der) in cas.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parsed above");
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err(file_error(
                "client_ca_file",
                path,
                format!(
                    "certificate {} ({}) is not a CA certificate (basicConstraints CA:TRUE); \
                     this file holds the station CA(s), not station certificates",
                    i + 1,
                    cert.subject()
                ),
            ));
        }
    }
    Ok(cas)
}

/// The station CRLs: each must be issued by one of the station CAs (by name; rustls-webpki
/// checks the signature on every handshake).
fn read_crls(
    path: &Path,
    station_cas: &[CertificateDer<'static>],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let bytes = read_file("client_crl_file", path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("client_crl_file", path, format!("not valid PEM: {e}")))?;
    if crls.is_empty() {
        return Err(file_error(
            "client_crl_file",
            path,
            "holds no CRL (expected PEM blocks -----BEGIN X509 CRL-----)",
        ));
    }
    let subjects: Vec<Vec<u8>> = station_cas
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, c)| c.subject().as_raw().to_vec())
        .collect();
    for (i, crl) in crls.iter().enumerate() {
        let (_, parsed) = x509_parser::parse_x509_crl(crl).map_err(|_| {
            file_error(
                "client_crl_file",
                path,
                format!("CRL {} is not a valid X.509 CRL", i + 1),
            )
        })?;
        if !subjects.iter().any(|s| s == parsed.issuer().as_raw()) {
            return Err(file_error(
                "client_crl_file",
                path,
                format!(
                    "CRL {} is issued by {}, which is not a CA in server.tls.client_ca_file",
                    i + 1,
                    parsed.issuer()
                ),
            ));
        }
    }
    Ok(crls)
}

impl TlsServer {
    /// The TLS handshake on an accepted connection (bounded by `handshake_timeout_secs`), and
    /// the station identity its client certificate gives. `None` when the connection is done:
    /// the handshake failed or timed out, or the client spoke plain HTTP and was answered 400.
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(
        tokio_rustls::server::TlsStream<TcpStream>,
        Option<ClientIdentity>,
    )> {
        let handshake =
            tokio::time::timeout(self.handshake_timeout, handshake(tcp, &self.acceptor));
        let stream = match handshake.await {
            Ok(Ok(Some(stream))) => stream,
            Ok(Ok(None)) => {
                tracing::debug!(%peer, "plain HTTP on the HTTPS port: answered 400 https_required");
                return None;
            }
            Ok(Err(e)) => {
                log_handshake_failure(peer, &e);
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out (server.tls.handshake_timeout_secs)");
                return None;
            }
        };
        let identity = stream.get_ref().1.peer_certificates().and_then(|chain| {
            let (leaf, intermediates) = chain.split_first()?;
            // The handshake accepted it as a device or as a station certificate; the same test
            // as the verifier's tells which (a device certificate is never a station).
            if self
                .devices
                .verify(leaf, intermediates, UnixTime::now())
                .is_ok()
            {
                Some(ClientIdentity::Device {
                    certificate_der: Arc::from(leaf.as_ref()),
                })
            } else {
                Some(ClientIdentity::from_certificate(leaf))
            }
        });
        if let Some(identity) = &identity {
            tracing::debug!(%peer, ?identity, "client certificate verified");
        }
        Some((stream, identity))
    }
}

/// The TLS handshake; `Ok(None)` when the client spoke plain HTTP and was answered 400.
async fn handshake(
    tcp: TcpStream,
    acceptor: &TlsAcceptor,
) -> io::Result<Option<tokio_rustls::server::TlsStream<TcpStream>>> {
    // A TLS client starts with a handshake record (content type 22); an HTTP client with a
    // method name. Telling the latter what is wrong beats a reset connection.
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase() {
        answer_plain_http(tcp).await;
        return Ok(None);
    }
    acceptor.accept(tcp).await.map(Some)
}

/// Answers a plain HTTP request on the HTTPS port with 400 `https_required` and closes. The
/// request head is read first and the rest drained after (both bounded, and the caller bounds
/// the time), so that closing does not reset the connection before the client reads the answer.
async fn answer_plain_http(mut tcp: TcpStream) {
    const HEAD_LIMIT: usize = 16 * 1024;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while head.len() < HEAD_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = ApiError::new(
        ErrorCode::HttpsRequired,
        "this port speaks HTTPS: use https:// (TLS), not http://",
    )
    .problem_json();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(response.as_bytes()).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let mut drained = 0;
    while drained < 64 * 1024 {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// A refused client certificate is worth an operator's attention (info); scanners, resets
/// and protocol noise are not (debug). rustls errors carry no key material.
fn log_handshake_failure(peer: SocketAddr, e: &io::Error) {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            error @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)),
        ) => {
            tracing::info!(%peer, %error, "TLS handshake refused: client certificate");
        }
        _ => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_with_subject(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in subject {
            params.distinguished_name.push(ty.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_station_is_the_certificates_cn_verbatim() {
        let der = certificate_with_subject(&[
            (rcgen::DnType::OrganizationName, "Example Factory"),
            (rcgen::DnType::CommonName, "line-3.station_07"),
        ]);
        assert_eq!(
            ClientIdentity::from_certificate(&der),
            ClientIdentity::Station {
                common_name: "line-3.station_07".into()
            }
        );
    }

    #[test]
    fn a_certificate_without_one_valid_cn_names_no_station() {
        let cases: &[&[(rcgen::DnType, &str)]] = &[
            &[(rcgen::DnType::OrganizationName, "no CN")],
            &[(rcgen::DnType::CommonName, "")],
            &[(rcgen::DnType::CommonName, "line 3")],
            &[(rcgen::DnType::CommonName, "line-3\u{7}")],
            &[(rcgen::DnType::CommonName, "ライン")],
            // Two CNs: rcgen merges a repeated DnType, so the second is the CN OID spelled out.
            &[
                (rcgen::DnType::CommonName, "a"),
                (rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]), "b"),
            ],
        ];
        for subject in cases {
            let der = certificate_with_subject(subject);
            assert!(
                matches!(
                    ClientIdentity::from_certificate(&der),
                    ClientIdentity::Unusable { .. }
                ),
                "{subject:?}"
            );
        }
        let too_long = "a".repeat(65);
        let der = certificate_with_subject(&[(rcgen::DnType::CommonName, &too_long)]);
        assert!(matches!(
            ClientIdentity::from_certificate(&der),
            ClientIdentity::Unusable { .. }
        ));
        assert!(matches!(
            ClientIdentity::from_certificate(b"not DER"),
            ClientIdentity::Unusable { .. }
        ));
    }
}
