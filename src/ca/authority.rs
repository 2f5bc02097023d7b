//! The CA itself: its certificate and key, created or imported, checked against what AWS IoT
//! accepts, and the one function that signs an [`ApprovedCsr`]. Its neighbours: the CA key
//! types ([`super::key`]), the import checks ([`super::import`]), CRLs ([`super::crl`]) and the
//! AWS verification certificate ([`super::verification`]).
//!
//! The CA signs through a [`CaSigner`]: a key in memory (a key file's), or one it cannot read
//! (an HSM's or a KMS's). A key in memory leaves this module only as the [`SecretKey`] returned
//! by [`CertificateAuthority::generate`]/[`CertificateAuthority::import`], which the caller
//! stores. Nothing here logs.

use std::fmt;

use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::constraints::{self, DirectoryConstraints};
use super::csr::KeyAlgorithm;
use super::import::{
    check_ca_extensions, check_ca_key, check_import_certificate, parse_certificate_pem,
};
use super::policy::ApprovedCsr;
use super::profile::{DeviceProfile, Serial};
use super::subject::ca_distinguished_name;
use super::{sha256_hex, to_pem};

// The paths these had before the CA core was split.
pub use super::crl::{RevocationReason, RevokedEntry};
pub use super::key::{CaAlgorithm, CaSigner, ENCRYPTED_KEY_LABEL, SecretKey};
pub use super::subject::{CaSubject, SubjectField};

pub use super::error::CaError;

/// A CA able to sign device certificates.
pub struct CertificateAuthority {
    id: String,
    certificate_der: Vec<u8>,
    certificate_pem: String,
    subject: String,
    key_algorithm: KeyAlgorithm,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// The signing half, for [`super::crl`] and [`super::verification`] too.
    pub(super) issuer: Issuer<'static, CaSigner>,
    /// How the authority key identifier of what this CA signs is made: the CA certificate's
    /// own subject key identifier when it has one (as rcgen does for device certificates), so
    /// that a CRL names its CA exactly as the certificates it covers do.
    pub(super) key_identifier: KeyIdMethod,
    /// The certificates above this CA up to and including a self-signed root (PEM, ordered);
    /// empty for a root, or for a CA imported without its chain.
    chain_pem: String,
    /// What a device presents after this CA: `chain_pem` without the root.
    intermediates_pem: String,
    /// The directoryName subtrees of its nameConstraints, checked before every signature.
    constraints: DirectoryConstraints,
    /// Those of the intermediates above it (verifiers apply every one on the path).
    chain_constraints: Vec<DirectoryConstraints>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("key_algorithm", &self.key_algorithm)
            .finish_non_exhaustive()
    }
}

/// A CSR for a pending CA's certificate ([`CertificateAuthority::request`]).
#[derive(Debug, Clone)]
pub struct CaRequest {
    /// The pending CA's id: `ca-` and the first 16 hex digits of the CSR's SHA-256.
    pub id: String,
    pub csr_pem: String,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
}

/// A signed device certificate and the facts the ledger records about it.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub serial: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
    pub spki_sha256: String,
    pub aws_certificate_id: String,
    pub certificate_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CertificateAuthority {
    /// Creates a self-signed root CA that AWS IoT accepts, with a new key held in memory: its
    /// [`SecretKey`] comes back for the caller to store.
    pub fn generate(
        algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<(Self, SecretKey), CaError> {
        // The parameters first: a bad subject or validity costs no key generation.
        let params = root_params(subject, validity, now)?;
        let key = algorithm
            .generate_key()
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        // rcgen generates PKCS#8.
        let secret = SecretKey::from_pkcs8_der(Zeroizing::new(key.serialize_der()));
        let ca = Self::self_signed_with(params, CaSigner::new(key))?;
        Ok((ca, secret))
    }

    /// [`CertificateAuthority::generate`] for a key that is already somewhere, such as one
    /// made inside an HSM or a KMS, which the CA signs with but never reads.
    pub fn self_signed(
        key: CaSigner,
        subject: &CaSubject,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        Self::self_signed_with(root_params(subject, validity, now)?, key)
    }

    /// Checks what [`CertificateAuthority::self_signed`] would refuse in its subject and
    /// validity, before a key is made for it (a key made in a device stays there).
    pub fn check_root(
        subject: &CaSubject,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<(), CaError> {
        root_params(subject, validity, now).map(|_| ())
    }

    fn self_signed_with(params: CertificateParams, key: CaSigner) -> Result<Self, CaError> {
        let cert = params.self_signed(&key).map_err(CaError::signing)?;
        Self::from_parts(cert.der(), key)
    }

    /// A new CA key held in memory: its signer, and its [`SecretKey`] for the caller to store.
    pub fn new_key(algorithm: CaAlgorithm) -> Result<(CaSigner, SecretKey), CaError> {
        let key = algorithm
            .generate_key()
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        let secret = SecretKey::from_pkcs8_der(Zeroizing::new(key.serialize_der()));
        Ok((CaSigner::new(key), secret))
    }

    /// A CSR for a CA certificate an external (offline) root will sign: the subject, the key's
    /// public half, and the CA:TRUE and keyCertSign/cRLSign the certificate should carry.
    /// Signed with the key, which may be in a token.
    pub fn request(key: &CaSigner, subject: &CaSubject) -> Result<CaRequest, CaError> {
        let params = root_params(subject, Duration::days(1), OffsetDateTime::now_utc())?;
        let mut request = CertificateParams::default();
        request.distinguished_name = params.distinguished_name;
        request.is_ca = params.is_ca;
        request.key_usages = params.key_usages;
        let csr = request.serialize_request(key).map_err(CaError::signing)?;
        let pem = csr.pem().map_err(|e| CaError::Crypto(e.to_string()))?;
        // Read back as a device CSR is read: its signature verifies, its key is one we sign
        // with.
        let parsed = super::csr::parse(csr.der())
            .map_err(|e| CaError::Crypto(format!("the CA's own CSR does not read back: {e}")))?;
        let subject = parsed
            .subject()
            .iter()
            .map(|a| {
                let name =
                    SubjectField::from_oid(&a.oid).map_or(a.oid.as_str(), |f| f.short_name());
                format!("{name}={}", a.value.as_deref().unwrap_or(""))
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(CaRequest {
            id: format!("ca-{}", &sha256_hex(csr.der())[..16]),
            csr_pem: pem,
            subject,
            key_algorithm: parsed.key(),
        })
    }

    /// Checks that `secret` is the key of a pending CA's own CSR (`csr_pem`, as
    /// [`CertificateAuthority::request`] made it): a pending CA has no certificate yet, and
    /// its key file must not be rewritten with another key.
    pub fn check_request_key(csr_pem: &str, secret: &SecretKey) -> Result<(), CaError> {
        let parsed = super::csr::parse(csr_pem.as_bytes())
            .map_err(|e| CaError::Rejected(format!("the pending CA's CSR: {e}")))?;
        if parsed.public_key != secret.key_pair()?.der_bytes() {
            return Err(CaError::Rejected(
                "the private key does not match the pending CA's CSR".into(),
            ));
        }
        Ok(())
    }

    /// A CA certificate an external root signed for a key we hold (the end of the offline
    /// ceremony): a single CA certificate (CA:TRUE, keyCertSign, a key AWS IoT accepts) for
    /// this key, valid now, whose chain verifies up to a self-signed root.
    pub fn install(
        certificate_pem: &str,
        key: CaSigner,
        chain_pem: &str,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let der = check_import_certificate(certificate_pem)?;
        let ca = Self::from_parts(&der, key)?;
        if now < ca.not_before || now >= ca.not_after {
            return Err(CaError::Rejected(format!(
                "the CA certificate is not valid now (valid from {} to {})",
                ca.not_before, ca.not_after
            )));
        }
        ca.with_chain(chain_pem, now)
    }

    /// Imports an existing CA from PEM, refusing what AWS IoT would refuse. The key comes
    /// back as PKCS#8, whatever form it was given in.
    pub fn import(
        certificate_pem: &str,
        key_pem: &str,
        now: OffsetDateTime,
    ) -> Result<(Self, SecretKey), CaError> {
        // The certificate first: its problems (not a CA, weak key) explain more than a key
        // that will not load.
        check_import_certificate(certificate_pem)?;
        Self::import_key(certificate_pem, SecretKey::from_pem(key_pem)?, now)
    }

    /// [`CertificateAuthority::import`] with a key already read (for example decrypted).
    pub fn import_key(
        certificate_pem: &str,
        secret: SecretKey,
        now: OffsetDateTime,
    ) -> Result<(Self, SecretKey), CaError> {
        let der = check_import_certificate(certificate_pem)?;
        let ca = Self::from_parts(&der, CaSigner::from_secret(&secret)?)?;
        if now < ca.not_before || now >= ca.not_after {
            return Err(CaError::Rejected(format!(
                "the CA certificate is not valid now (valid from {} to {}); AWS IoT refuses to \
                 register an expired or not-yet-valid CA",
                ca.not_before, ca.not_after
            )));
        }
        Ok((ca, secret))
    }

    /// Loads a CA the store already knows (certificate PEM and unencrypted key PEM).
    /// Expired CAs load too: they still serve reads, revocation and CRLs.
    pub fn load(certificate_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        Self::load_key(certificate_pem, &SecretKey::from_pem(key_pem)?)
    }

    /// [`CertificateAuthority::load`] with a key already read (for example decrypted).
    pub fn load_key(certificate_pem: &str, secret: &SecretKey) -> Result<Self, CaError> {
        Self::from_signer(certificate_pem, CaSigner::from_secret(secret)?)
    }

    /// [`CertificateAuthority::load`] with a key wherever it is: in memory, or in an HSM or a
    /// KMS that signs for us. The same checks whatever the key: it must be the certificate's,
    /// and certificates it signs must chain to the certificate.
    pub fn from_signer(certificate_pem: &str, key: CaSigner) -> Result<Self, CaError> {
        let der = parse_certificate_pem(certificate_pem)?;
        Self::from_parts(&der, key)
    }

    /// Checks certificate and key together, then proves the pair can sign a certificate that
    /// chains to it (so an imported CA whose name rcgen cannot reproduce is caught here, once,
    /// and not by devices in the field).
    fn from_parts(der: &[u8], key: CaSigner) -> Result<Self, CaError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|_| CaError::Rejected("the CA certificate is not valid DER X.509".into()))?;
        if !rest.is_empty() {
            return Err(CaError::Rejected(
                "trailing data after the CA certificate".into(),
            ));
        }
        check_ca_extensions(&cert)?;
        let key_algorithm = check_ca_key(&cert)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CaError::Rejected(
                "the private key does not match the CA certificate's public key".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der.to_vec().into(), key).map_err(|_| {
            CaError::Rejected(
                "the CA subject uses a form this CA cannot reproduce (multi-valued RDNs or \
                 repeated attributes)"
                    .into(),
            )
        })?;
        let key_identifier = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => {
                    Some(KeyIdMethod::PreSpecified(ski.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        let constraints = DirectoryConstraints::of(&cert)?;
        let ca = CertificateAuthority {
            id: format!("ca-{}", &sha256_hex(der)[..16]),
            certificate_der: der.to_vec(),
            certificate_pem: to_pem("CERTIFICATE", der),
            subject: cert.subject().to_string(),
            key_algorithm,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            issuer,
            key_identifier,
            chain_pem: String::new(),
            intermediates_pem: String::new(),
            constraints,
            chain_constraints: Vec::new(),
        };
        ca.self_check()?;
        Ok(ca)
    }

    /// Signs a probe certificate and verifies it: issuer name bytes equal the CA subject bytes
    /// and the signature verifies with the CA certificate's key.
    fn self_check(&self) -> Result<(), CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "factory-ca self-check");
        let probe = params
            .signed_by(self.issuer.key(), &self.issuer)
            .map_err(CaError::signing)?;
        let (_, ca) = X509Certificate::from_der(&self.certificate_der)
            .map_err(|_| CaError::Rejected("the CA certificate is not valid DER X.509".into()))?;
        let (_, probe) = X509Certificate::from_der(probe.der())
            .map_err(|e| CaError::Crypto(format!("probe certificate unreadable: {e}")))?;
        if probe.issuer().as_raw() != ca.subject().as_raw() {
            return Err(CaError::Rejected(
                "certificates signed by this CA would not name it exactly as its certificate \
                 does (the subject uses an unusual encoding); re-issue the CA certificate with a \
                 plain subject"
                    .into(),
            ));
        }
        verify_with_ca(&ca, &probe)
    }

    /// Creates a CA below this one with a new key held in memory (returned for the caller to
    /// store): CA:TRUE with `path_len` as its pathLenConstraint when given, a critical
    /// nameConstraints extension permitting the one directoryName subtree when given, valid
    /// for `validity` but never past this CA. Its chain is this CA and this CA's chain, which
    /// must reach a self-signed root.
    pub fn generate_subordinate(
        &self,
        algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity: Duration,
        name_constraints: Option<&[(SubjectField, String)]>,
        path_len: Option<u8>,
        now: OffsetDateTime,
    ) -> Result<(Self, SecretKey), CaError> {
        if now >= self.not_after {
            return Err(CaError::Rejected(format!(
                "the parent CA {} expired at {}; it cannot sign a new CA",
                self.id, self.not_after
            )));
        }
        let mut params = root_params(subject, validity, now)?;
        params.not_after = params.not_after.min(self.not_after);
        params.is_ca = match path_len {
            Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
            None => IsCa::Ca(BasicConstraints::Unconstrained),
        };
        params.name_constraints = name_constraints.map(constraints::extension);
        params.use_authority_key_identifier_extension = true;
        let key = algorithm
            .generate_key()
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        let secret = SecretKey::from_pkcs8_der(Zeroizing::new(key.serialize_der()));
        let key = CaSigner::new(key);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::signing)?;
        let child = Self::from_parts(cert.der(), key)?;
        let chain = format!("{}{}", self.certificate_pem, self.chain_pem);
        Ok((child.with_chain(&chain, now)?, secret))
    }

    /// Refuses, before signing, a device subject outside this CA's nameConstraints, or those
    /// of an intermediate above it (directoryName subtrees); the message says what the
    /// subject must begin with.
    pub fn check_name_constraints(&self, csr: &ApprovedCsr) -> Result<(), String> {
        self.constraints.check(csr.subject())?;
        for above in &self.chain_constraints {
            above.check(csr.subject())?;
        }
        Ok(())
    }

    /// Signs one device certificate. The only signing path in the service.
    pub fn sign(
        &self,
        csr: &ApprovedCsr,
        profile: &DeviceProfile,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CaError> {
        if now >= self.not_after {
            return Err(CaError::Unavailable(format!(
                "the issuing CA {} expired at {}; activate a valid CA",
                self.id, self.not_after
            )));
        }
        let serial = Serial::ordered(now);
        let params = profile.params(csr, &serial, now, &self.id, self.not_after);
        let device_key = DevicePublicKey {
            key: csr.key(),
            bits: csr.public_key(),
        };
        let cert = params
            .signed_by(&device_key, &self.issuer)
            .map_err(CaError::signing)?;
        let der = cert.der().to_vec();
        Ok(IssuedCertificate {
            serial: serial.to_hex(),
            thing_name: csr.thing_name().to_owned(),
            country: csr.country().map(str::to_owned),
            subject: super::policy::subject_string(csr.subject()),
            key_algorithm: csr.key(),
            spki_sha256: csr.spki_sha256().to_owned(),
            aws_certificate_id: sha256_hex(&der),
            certificate_der: der,
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }

    /// Checks `chain_pem` as the chain above this CA up to a self-signed root
    /// ([`super::chain::verify_chain`]) and keeps it, ordered.
    pub fn with_chain(self, chain_pem: &str, now: OffsetDateTime) -> Result<Self, CaError> {
        let ordered = super::chain::verify_chain(&self.certificate_der, chain_pem, now)?;
        self.with_stored_chain(&ordered)
    }

    /// Keeps a chain the store holds, checked when it was recorded.
    pub fn with_stored_chain(mut self, chain_pem: &str) -> Result<Self, CaError> {
        self.intermediates_pem = super::chain::intermediates_pem(chain_pem);
        self.chain_pem = chain_pem.to_owned();
        self.chain_constraints = Vec::new();
        for block in pem::parse_many(&self.intermediates_pem)
            .map_err(|e| CaError::Rejected(format!("the stored chain cannot be decoded: {e}")))?
        {
            let (_, cert) = X509Certificate::from_der(block.contents()).map_err(|_| {
                CaError::Rejected("a certificate of the stored chain is not valid DER X.509".into())
            })?;
            let constraints = DirectoryConstraints::of(&cert)?;
            if !constraints.is_empty() {
                self.chain_constraints.push(constraints);
            }
        }
        Ok(self)
    }

    /// The certificates above this CA up to and including its root, or empty.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The certificates a device presents after this CA's: each intermediate above it up to,
    /// not including, the self-signed root. Empty for a root CA.
    pub fn intermediates_pem(&self) -> &str {
        &self.intermediates_pem
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }
    /// Whether each signature asks a device or a service (an HSM or KMS key): callers sign
    /// on the blocking pool.
    pub fn signs_remotely(&self) -> bool {
        self.issuer.key().is_remote()
    }
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
    /// The id AWS IoT will give this CA certificate: SHA-256 of its DER.
    pub fn aws_certificate_id(&self) -> String {
        sha256_hex(&self.certificate_der)
    }
}

/// A root CA certificate that AWS IoT accepts: basicConstraints CA:TRUE and keyUsage
/// keyCertSign + cRLSign, both critical, and a subject key identifier.
fn root_params(
    subject: &CaSubject,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    if validity <= Duration::ZERO {
        return Err(CaError::Rejected("the CA validity must be positive".into()));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_distinguished_name(subject)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(Serial::random().as_bytes()));
    Ok(params)
}

/// The device's public key as the CSR gave it, with the algorithm identifier rcgen writes for
/// it in the certificate's SubjectPublicKeyInfo.
struct DevicePublicKey<'a> {
    key: KeyAlgorithm,
    bits: &'a [u8],
}

impl PublicKeyData for DevicePublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        // Only the key algorithm OIDs of these are written (rsaEncryption, or id-ecPublicKey
        // with the named curve); the hash part is irrelevant for a subject key.
        match self.key {
            KeyAlgorithm::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::EcdsaP521 => &rcgen::PKCS_ECDSA_P521_SHA512,
        }
    }
}

/// Verifies `cert`'s signature with the CA certificate's public key.
pub(crate) fn verify_with_ca(
    ca: &X509Certificate<'_>,
    cert: &X509Certificate<'_>,
) -> Result<(), CaError> {
    let alg: &'static dyn VerificationAlgorithm =
        match cert.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.11" => &sig::RSA_PKCS1_2048_8192_SHA256,
            "1.2.840.113549.1.1.12" => &sig::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &sig::RSA_PKCS1_2048_8192_SHA512,
            "1.2.840.10045.4.3.2" => match ca.public_key().subject_public_key.data.len() {
                65 => &sig::ECDSA_P256_SHA256_ASN1,
                97 => &sig::ECDSA_P384_SHA256_ASN1,
                _ => &sig::ECDSA_P521_SHA256_ASN1,
            },
            "1.2.840.10045.4.3.3" => match ca.public_key().subject_public_key.data.len() {
                65 => &sig::ECDSA_P256_SHA384_ASN1,
                97 => &sig::ECDSA_P384_SHA384_ASN1,
                _ => &sig::ECDSA_P521_SHA384_ASN1,
            },
            "1.2.840.10045.4.3.4" => &sig::ECDSA_P521_SHA512_ASN1,
            other => {
                return Err(CaError::Rejected(format!(
                    "unsupported signature algorithm {other}; use RSA PKCS#1 v1.5 or ECDSA with \
                     SHA-256, SHA-384 or SHA-512"
                )));
            }
        };
    sig::UnparsedPublicKey::new(alg, &ca.public_key().subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| {
            CaError::Rejected(
                "a certificate signed with this key does not verify with the CA certificate".into(),
            )
        })
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
