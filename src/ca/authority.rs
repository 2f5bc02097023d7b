//! The CA itself: its key and certificate, created or imported, checked against what AWS IoT
//! accepts, the one function that signs an [`ApprovedCsr`], and the CRLs it signs.
//!
//! The private key is held in memory as an rcgen `KeyPair`; it leaves this type only as the PEM
//! returned by [`CertificateAuthority::generate`]/[`CertificateAuthority::import`], which the
//! caller writes to an owner-only file. Nothing here logs.

use std::fmt;

use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    RevokedCertParams, SerialNumber, SignatureAlgorithm,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::csr::DeviceKey;
use super::policy::ApprovedCsr;
use super::profile::{DeviceProfile, Serial};
use super::subject::SubjectField;
use super::{sha256_hex, to_pem};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA certificate or key that we (and AWS IoT) would not accept; the message says why.
    #[error("{0}")]
    Rejected(String),
    /// The CA cannot sign now (e.g. its certificate has expired).
    #[error("{0}")]
    Unavailable(String),
    /// A failure inside the crypto library; not the caller's fault.
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// Key algorithms for a new CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CaAlgorithm {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl CaAlgorithm {
    pub const NAMES: [&str; 5] = [
        "ecdsa-p256",
        "ecdsa-p384",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    fn generate_key(self) -> Result<KeyPair, rcgen::Error> {
        use rcgen::RsaKeySize;
        match self {
            CaAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            CaAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            CaAlgorithm::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
            CaAlgorithm::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
            }
            CaAlgorithm::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
            }
        }
    }
}

/// The subject of a new CA certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSubject {
    pub common_name: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub organizational_unit: Option<String>,
}

/// A CA private key as unencrypted PKCS#8 DER (RFC 5958), the one form in which keys leave
/// this module, whatever form they were imported in. Its `Debug` never shows the key, and its
/// bytes are zeroed when it is dropped. Encrypting it for storage is the key store's business
/// (`crate::keys`), not the CA's.
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl SecretKey {
    /// Reads one unencrypted private key block: PKCS#8 (`PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, possibly after an `EC PARAMETERS` block, as
    /// `openssl ecparam -genkey` writes), and converts it to PKCS#8. An `ENCRYPTED PRIVATE KEY`
    /// is refused here: decrypting needs a passphrase, which the caller holds.
    pub fn from_pem(text: &str) -> Result<SecretKey, CaError> {
        let blocks = pem::parse_many(text)
            .map_err(|_| CaError::Rejected("the private key PEM cannot be decoded".into()))?;
        if blocks.iter().any(|b| b.tag() == ENCRYPTED_KEY_LABEL) {
            return Err(CaError::Rejected(
                "the private key is encrypted (ENCRYPTED PRIVATE KEY); give its passphrase with \
                 the key, or decrypt it first"
                    .into(),
            ));
        }
        let keys: Vec<_> = blocks
            .iter()
            .filter(|b| {
                matches!(
                    b.tag(),
                    "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
                )
            })
            .collect();
        let [block] = keys.as_slice() else {
            return Err(CaError::Rejected(format!(
                "expected one PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block, found {}",
                keys.len()
            )));
        };
        let unreadable = || {
            CaError::Rejected(
                "the private key cannot be read; supported: RSA 2048+ and ECDSA \
                 P-256/P-384/P-521"
                    .into(),
            )
        };
        let pkcs8 = match block.tag() {
            "RSA PRIVATE KEY" => {
                use aws_lc_rs::encoding::AsDer;
                let key = sig::RsaKeyPair::from_der(block.contents()).map_err(|_| unreadable())?;
                let der = key.as_der().map_err(|_| unreadable())?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            "EC PRIVATE KEY" => {
                let der = [
                    &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                    &sig::ECDSA_P521_SHA512_ASN1_SIGNING,
                ]
                .into_iter()
                .find_map(|alg| sig::EcdsaKeyPair::from_private_key_der(alg, block.contents()).ok())
                .and_then(|key| key.to_pkcs8v1().ok())
                .ok_or_else(unreadable)?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            _ => Zeroizing::new(block.contents().to_vec()),
        };
        Ok(SecretKey(pkcs8))
    }

    /// A key from PKCS#8 DER, such as the plaintext of an encrypted key. Checked when a CA is
    /// built from it.
    pub fn from_pkcs8_der(der: Zeroizing<Vec<u8>>) -> SecretKey {
        SecretKey(der)
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0
    }

    /// The key as an unencrypted `PRIVATE KEY` PEM block.
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(to_pem("PRIVATE KEY", &self.0))
    }

    fn key_pair(&self) -> Result<KeyPair, CaError> {
        KeyPair::try_from(self.0.as_slice()).map_err(|_| {
            CaError::Rejected(
                "the private key cannot be read; supported: RSA 2048+ and ECDSA \
                 P-256/P-384/P-521"
                    .into(),
            )
        })
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The PEM label of an encrypted PKCS#8 key (RFC 7468 section 11).
pub const ENCRYPTED_KEY_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// A CA able to sign device certificates.
pub struct CertificateAuthority {
    id: String,
    certificate_der: Vec<u8>,
    certificate_pem: String,
    subject: String,
    key_algorithm: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
    /// How the authority key identifier of what this CA signs is made: the CA certificate's
    /// own subject key identifier when it has one (as rcgen does for device certificates), so
    /// that a CRL names its CA exactly as the certificates it covers do.
    key_identifier: KeyIdMethod,
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

/// A signed device certificate and the facts the ledger records about it.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub serial: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub key_algorithm: String,
    pub spki_sha256: String,
    pub aws_certificate_id: String,
    pub certificate_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Why a certificate was revoked: the CRLReason values of RFC 5280 section 5.3.1 that an
/// operator may choose, named in snake_case. certificateHold and removeFromCRL are left out on
/// purpose: a revocation here is final, there is no hold to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 8] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The name the API accepts and the ledger stores.
    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key_compromise",
            RevocationReason::CaCompromise => "ca_compromise",
            RevocationReason::AffiliationChanged => "affiliation_changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation_of_operation",
            RevocationReason::PrivilegeWithdrawn => "privilege_withdrawn",
            RevocationReason::AaCompromise => "aa_compromise",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    fn crl_reason(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => rcgen::RevocationReason::AaCompromise,
        }
    }
}

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial as the ledger stores it: lowercase hex of the DER INTEGER's content.
    pub serial_hex: String,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// How long a CRL is valid (its nextUpdate, RFC 5280 section 5.1.2.5). CRLs are signed on
/// request, so a client that fetches daily always has a current one.
const CRL_VALIDITY: Duration = Duration::days(1);

impl CertificateAuthority {
    /// Creates a self-signed root CA that AWS IoT accepts: basicConstraints CA:TRUE and keyUsage
    /// keyCertSign + cRLSign, both critical, and a subject key identifier.
    pub fn generate(
        algorithm: CaAlgorithm,
        subject: &CaSubject,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<(Self, SecretKey), CaError> {
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
        let key = algorithm
            .generate_key()
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        // rcgen generates PKCS#8.
        let secret = SecretKey(Zeroizing::new(key.serialize_der()));
        let ca = Self::from_parts(cert.der(), key)?;
        Ok((ca, secret))
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
        let ca = Self::from_parts(&der, secret.key_pair()?)?;
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
        let key = secret.key_pair()?;
        let der = parse_certificate_pem(certificate_pem)?;
        Self::from_parts(&der, key)
    }

    /// Checks certificate and key together, then proves the pair can sign a certificate that
    /// chains to it (so an imported CA whose name rcgen cannot reproduce is caught here, once,
    /// and not by devices in the field).
    fn from_parts(der: &[u8], key: KeyPair) -> Result<Self, CaError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|_| CaError::Rejected("the CA certificate is not valid DER X.509".into()))?;
        if !rest.is_empty() {
            return Err(CaError::Rejected(
                "trailing data after the CA certificate".into(),
            ));
        }
        check_ca_extensions(&cert)?;
        let key_algorithm = check_ca_key(&cert)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
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
            .map_err(|e| CaError::Crypto(e.to_string()))?;
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
        let serial = Serial::random();
        let params = profile.params(csr, &serial, now, self.not_after);
        let device_key = DevicePublicKey {
            key: csr.key(),
            bits: csr.public_key(),
        };
        let cert = params
            .signed_by(&device_key, &self.issuer)
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        let der = cert.der().to_vec();
        Ok(IssuedCertificate {
            serial: serial.to_hex(),
            thing_name: csr.thing_name().to_owned(),
            country: csr.country().map(str::to_owned),
            subject: super::policy::subject_string(csr.subject()),
            key_algorithm: csr.key().name(),
            spki_sha256: csr.spki_sha256().to_owned(),
            aws_certificate_id: sha256_hex(&der),
            certificate_der: der,
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }

    /// Signs a CRL (RFC 5280 section 5) listing `revoked`, with thisUpdate `now` and
    /// nextUpdate a day later. Expired CAs sign CRLs too: their certificates stay revoked.
    ///
    /// The CRL number (RFC 5280 section 5.2.3) is `now` in Unix seconds. It increases without
    /// any stored counter, also across replicas whose clocks agree; two CRLs signed within the
    /// same second share a number.
    pub fn crl(&self, revoked: &[RevokedEntry], now: OffsetDateTime) -> Result<Vec<u8>, CaError> {
        let key_usages = self.issuer.key_usages();
        if !key_usages.is_empty() && !key_usages.contains(&KeyUsagePurpose::CrlSign) {
            return Err(CaError::Rejected(format!(
                "the certificate of CA {} has a keyUsage without cRLSign, so it may not sign \
                 CRLs (RFC 5280 section 4.2.1.3)",
                self.id
            )));
        }
        let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
        let crl_number = u64::try_from(now.unix_timestamp()).map_err(|_| {
            CaError::Unavailable("the clock reads before 1970; no CRL number can be made".into())
        })?;
        let revoked_certs = revoked
            .iter()
            .map(|entry| {
                let serial = hex::decode(&entry.serial_hex).map_err(|_| {
                    CaError::Crypto(format!("revoked serial {:?} is not hex", entry.serial_hex))
                })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial),
                    revocation_time: entry.revoked_at,
                    // rcgen leaves the reason out for unspecified, as RFC 5280 section
                    // 5.3.1 asks.
                    reason_code: Some(entry.reason.crl_reason()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + CRL_VALIDITY,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.key_identifier.clone(),
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        Ok(crl.der().to_vec())
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
    pub fn key_algorithm(&self) -> &str {
        &self.key_algorithm
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

impl CertificateAuthority {
    /// A verification certificate for AWS IoT's RegisterCACertificate (DEFAULT mode): a fresh
    /// key whose certificate has CN = the account's registration code, signed by this CA,
    /// valid for one day. Its private key is discarded: the certificate only proves that we
    /// hold the CA key.
    pub fn verification_certificate(
        &self,
        registration_code: &str,
        now: OffsetDateTime,
    ) -> Result<String, CaError> {
        if registration_code.is_empty()
            || registration_code.len() > 64
            || !registration_code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(CaError::Crypto(
                "AWS returned a registration code that is not 1-64 letters, digits or '-'".into(),
            ));
        }
        let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            DnValue::Utf8String(registration_code.to_owned()),
        );
        params.not_before = now - Duration::minutes(5);
        params.not_after = (now + Duration::days(1)).min(self.not_after);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(Serial::random().as_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| CaError::Crypto(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        Ok(cert.pem())
    }
}

/// The device's public key as the CSR gave it, with the algorithm identifier rcgen writes for
/// it in the certificate's SubjectPublicKeyInfo.
struct DevicePublicKey<'a> {
    key: DeviceKey,
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
            DeviceKey::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            DeviceKey::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            DeviceKey::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            DeviceKey::EcdsaP521 => &rcgen::PKCS_ECDSA_P521_SHA512,
        }
    }
}

fn ca_distinguished_name(subject: &CaSubject) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    if let Some(c) = &subject.country {
        if !super::country::is_assigned_alpha2(c) {
            return Err(CaError::Rejected(format!(
                "the CA country {c:?} is not an ISO 3166-1 alpha-2 code in upper case"
            )));
        }
        let printable = c
            .as_str()
            .try_into()
            .expect("two upper-case letters are printable");
        dn.push(DnType::CountryName, DnValue::PrintableString(printable));
    }
    let fields = [
        (SubjectField::StateOrProvince, &subject.state),
        (SubjectField::Locality, &subject.locality),
        (SubjectField::Organization, &subject.organization),
        (
            SubjectField::OrganizationalUnit,
            &subject.organizational_unit,
        ),
    ];
    for (field, value) in fields {
        if let Some(v) = value {
            check_ca_subject_value(field.short_name(), v)?;
            dn.push(field.dn_type(), DnValue::Utf8String(v.clone()));
        }
    }
    check_ca_subject_value("CN", &subject.common_name)?;
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(subject.common_name.clone()),
    );
    Ok(dn)
}

fn check_ca_subject_value(name: &str, value: &str) -> Result<(), CaError> {
    if value.trim().is_empty() || value.chars().count() > 64 || value.chars().any(char::is_control)
    {
        return Err(CaError::Rejected(format!(
            "the CA subject {name} must have 1 to 64 printable characters"
        )));
    }
    Ok(())
}

fn parse_certificate_pem(text: &str) -> Result<Vec<u8>, CaError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| CaError::Rejected(format!("the CA certificate PEM cannot be decoded: {e}")))?;
    let certs: Vec<_> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    match certs.as_slice() {
        [one] => Ok(one.contents().to_vec()),
        [] => Err(CaError::Rejected(
            "no CERTIFICATE block found in the CA certificate file".into(),
        )),
        _ => Err(CaError::Rejected(
            "the CA certificate file holds several certificates; give only the CA's own".into(),
        )),
    }
}

/// The checks of an imported CA certificate that do not need its key; returns its DER.
fn check_import_certificate(certificate_pem: &str) -> Result<Vec<u8>, CaError> {
    let der = parse_certificate_pem(certificate_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|_| CaError::Rejected("the CA certificate is not valid DER X.509".into()))?;
    check_ca_extensions(&cert)?;
    check_ca_key(&cert)?;
    Ok(der)
}

fn check_ca_extensions(cert: &X509Certificate<'_>) -> Result<(), CaError> {
    let mut is_ca = false;
    let mut key_cert_sign = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => key_cert_sign = Some(ku.key_cert_sign()),
            _ => {}
        }
    }
    if !is_ca {
        return Err(CaError::Rejected(
            "the certificate lacks basicConstraints CA:TRUE; AWS IoT rejects it (\"Contents of \
             the CA Certificate certificate are not correct\"). Re-issue it with \
             basicConstraints=critical,CA:TRUE"
                .into(),
        ));
    }
    if key_cert_sign != Some(true) {
        return Err(CaError::Rejected(
            "the certificate's keyUsage does not allow keyCertSign; AWS IoT requires a CA \
             certificate that may sign certificates. Re-issue it with \
             keyUsage=critical,keyCertSign,cRLSign"
                .into(),
        ));
    }
    Ok(())
}

fn check_ca_key(cert: &X509Certificate<'_>) -> Result<String, CaError> {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = super::csr::unsigned_bit_length(rsa.modulus);
            if bits < 2048 {
                return Err(CaError::Rejected(format!(
                    "the CA key is RSA-{bits}; AWS IoT requires RSA keys of at least 2048 bits"
                )));
            }
            Ok(format!("rsa-{bits}"))
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok("ecdsa-p256".into()),
                Some("1.3.132.0.34") => Ok("ecdsa-p384".into()),
                Some("1.3.132.0.35") => Ok("ecdsa-p521".into()),
                _ => Err(CaError::Rejected(
                    "the CA key uses an EC curve AWS IoT does not accept; use P-256, P-384 or P-521"
                        .into(),
                )),
            }
        }
        _ => Err(CaError::Rejected(
            "the CA key type is not supported; use RSA 2048+ or ECDSA P-256/P-384/P-521".into(),
        )),
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
                return Err(CaError::Crypto(format!(
                    "unexpected signature algorithm {other} on the self-check certificate"
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
mod tests {
    use super::*;
    use time::macros::datetime;

    fn subject() -> CaSubject {
        CaSubject {
            common_name: "Test Root".into(),
            country: Some("JP".into()),
            state: None,
            locality: None,
            organization: Some("Org".into()),
            organizational_unit: None,
        }
    }

    fn ca_pem(configure: impl FnOnce(&mut CertificateParams), key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Imported");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = datetime!(2026-01-01 0:00 UTC);
        params.not_after = datetime!(2027-01-01 0:00 UTC);
        configure(&mut params);
        params.self_signed(key).unwrap().pem()
    }

    #[test]
    fn a_generated_ca_has_the_extensions_aws_iot_requires() {
        let now = datetime!(2026-11-28 10:00 UTC);
        let (ca, key) = CertificateAuthority::generate(
            CaAlgorithm::EcdsaP256,
            &subject(),
            Duration::days(10),
            now,
        )
        .unwrap();
        let (_, cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(cert.extensions().iter().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::SubjectKeyIdentifier(_)
        )));
        assert_eq!(ca.subject(), "C=JP, O=Org, CN=Test Root");
        assert!(key.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
        CertificateAuthority::load(ca.certificate_pem(), &key.to_pem()).unwrap();
        CertificateAuthority::load_key(ca.certificate_pem(), &key).unwrap();
    }

    #[test]
    fn import_refuses_an_expired_or_not_yet_valid_ca() {
        let key = KeyPair::generate().unwrap();
        let pem = ca_pem(|_| {}, &key);
        let inside = datetime!(2026-06-01 0:00 UTC);
        CertificateAuthority::import(&pem, &key.serialize_pem(), inside).unwrap();
        for outside in [
            datetime!(2027-01-02 0:00 UTC),
            datetime!(2025-12-31 0:00 UTC),
        ] {
            let err =
                CertificateAuthority::import(&pem, &key.serialize_pem(), outside).unwrap_err();
            assert!(err.to_string().contains("not valid now"), "{err}");
        }
    }

    #[test]
    fn import_refuses_a_non_ca_a_ca_without_cert_sign_and_a_foreign_key() {
        let key = KeyPair::generate().unwrap();
        let now = datetime!(2026-06-01 0:00 UTC);
        let not_ca = ca_pem(|p| p.is_ca = IsCa::ExplicitNoCa, &key);
        let err = CertificateAuthority::import(&not_ca, &key.serialize_pem(), now).unwrap_err();
        assert!(err.to_string().contains("CA:TRUE"), "{err}");

        let no_sign = ca_pem(
            |p| p.key_usages = vec![KeyUsagePurpose::DigitalSignature],
            &key,
        );
        let err = CertificateAuthority::import(&no_sign, &key.serialize_pem(), now).unwrap_err();
        assert!(err.to_string().contains("keyCertSign"), "{err}");

        let other = KeyPair::generate().unwrap();
        let good = ca_pem(|_| {}, &key);
        let err = CertificateAuthority::import(&good, &other.serialize_pem(), now).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn revocation_reasons_round_trip_and_exclude_hold() {
        for reason in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_name(reason.name()), Some(reason));
        }
        for refused in ["certificate_hold", "remove_from_crl", "KeyCompromise", ""] {
            assert_eq!(RevocationReason::from_name(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_crl_names_its_ca_and_lists_each_revoked_serial_with_its_reason() {
        use x509_parser::revocation_list::CertificateRevocationList;
        use x509_parser::x509::ReasonCode;

        let now = datetime!(2026-11-28 10:00:00.5 UTC);
        let (ca, _) = CertificateAuthority::generate(
            CaAlgorithm::EcdsaP256,
            &subject(),
            Duration::days(10),
            now,
        )
        .unwrap();
        let revoked = [
            RevokedEntry {
                serial_hex: "4a".repeat(20),
                revoked_at: datetime!(2026-11-27 09:00 UTC),
                reason: RevocationReason::KeyCompromise,
            },
            RevokedEntry {
                serial_hex: "7f".repeat(20),
                revoked_at: datetime!(2026-11-28 09:30 UTC),
                reason: RevocationReason::Unspecified,
            },
        ];
        let der = ca.crl(&revoked, now).unwrap();
        let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
        assert!(rest.is_empty());

        let (_, ca_cert) = X509Certificate::from_der(ca.certificate_der()).unwrap();
        assert_eq!(crl.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(
            crl.last_update().to_datetime(),
            datetime!(2026-11-28 10:00 UTC)
        );
        assert_eq!(
            crl.next_update().unwrap().to_datetime(),
            datetime!(2026-11-29 10:00 UTC)
        );
        let number = crl.crl_number().unwrap();
        assert_eq!(number.to_string(), now.unix_timestamp().to_string());

        let ski = ca_cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
                _ => None,
            })
            .unwrap();
        let aki = crl
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ski.as_slice());

        let listed: Vec<_> = crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    hex::encode(r.raw_serial()),
                    r.revocation_date.to_datetime(),
                    r.reason_code().map(|(_, code)| code),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "4a".repeat(20),
                    datetime!(2026-11-27 09:00 UTC),
                    Some(ReasonCode::KeyCompromise)
                ),
                // RFC 5280 section 5.3.1: no reasonCode rather than unspecified (0).
                ("7f".repeat(20), datetime!(2026-11-28 09:30 UTC), None),
            ]
        );
    }

    #[test]
    fn a_ca_whose_key_usage_lacks_crl_sign_signs_no_crl() {
        let key = KeyPair::generate().unwrap();
        let pem = ca_pem(|p| p.key_usages = vec![KeyUsagePurpose::KeyCertSign], &key);
        let ca = CertificateAuthority::load(&pem, &key.serialize_pem()).unwrap();
        let err = ca.crl(&[], datetime!(2026-06-01 0:00 UTC)).unwrap_err();
        assert!(
            matches!(&err, CaError::Rejected(m) if m.contains("cRLSign")),
            "{err}"
        );
    }

    #[test]
    fn signing_caps_validity_at_the_ca_not_after_and_stops_when_it_expired() {
        let now = datetime!(2026-11-28 10:00 UTC);
        let (ca, _) = CertificateAuthority::generate(
            CaAlgorithm::EcdsaP256,
            &subject(),
            Duration::days(10),
            now,
        )
        .unwrap();
        let policy = super::super::IssuancePolicy::new(SubjectField::ALL.to_vec(), true);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "JP");
        params.distinguished_name.push(DnType::CommonName, "Cap-1");
        let csr = params.serialize_request(&key).unwrap();
        let approved = policy
            .approve(crate::ca::csr::parse(csr.der()).unwrap())
            .unwrap();
        let issued = ca.sign(&approved, &DeviceProfile::default(), now).unwrap();
        assert_eq!(issued.not_after, ca.not_after());
        let err = ca
            .sign(
                &approved,
                &DeviceProfile::default(),
                now + Duration::days(11),
            )
            .unwrap_err();
        assert!(matches!(err, CaError::Unavailable(_)));
    }
}
