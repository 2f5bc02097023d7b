//! Certificate revocation lists (RFC 5280 section 5): why a certificate was revoked, the
//! entries a CRL lists, and the CRL a CA signs.

use rcgen::{CertificateRevocationListParams, KeyUsagePurpose, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use super::authority::{CaError, CertificateAuthority};

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

/// What a CRL says about itself besides its entries: its number and validity window. The
/// caller allocates the number (the store keeps it per CA, so that it only ever grows, also
/// across replicas) and picks the window from settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// cRLNumber (RFC 5280 section 5.2.3): larger for every newer CRL of the same CA.
    pub number: u64,
    /// thisUpdate (RFC 5280 section 5.1.2.4); cut to whole seconds, as the encoding keeps.
    pub this_update: OffsetDateTime,
    /// nextUpdate (RFC 5280 section 5.1.2.5): a newer CRL is published before this.
    pub next_update: OffsetDateTime,
    /// A delta CRL on top of the complete CRL with this number (deltaCRLIndicator, RFC 5280
    /// section 5.2.4): it lists what was revoked since that CRL.
    pub delta_of: Option<u64>,
    /// Where this complete CRL's delta CRLs are published (freshestCRL, RFC 5280 section
    /// 5.2.6).
    pub freshest_crl: Option<String>,
}

impl CrlInfo {
    /// `this_update` and `next_update` without their fraction of a second, as the CRL
    /// encodes them.
    pub fn whole_seconds(self) -> CrlInfo {
        let cut = |t: OffsetDateTime| t.replace_nanosecond(0).expect("0 is a valid nanosecond");
        CrlInfo {
            this_update: cut(self.this_update),
            next_update: cut(self.next_update),
            ..self
        }
    }
}

impl CertificateAuthority {
    /// Signs a CRL (RFC 5280 section 5) listing `revoked`, numbered and dated by `info`.
    /// Expired CAs sign CRLs too: their certificates stay revoked.
    pub fn crl(&self, revoked: &[RevokedEntry], info: &CrlInfo) -> Result<Vec<u8>, CaError> {
        let key_usages = self.issuer.key_usages();
        if !key_usages.is_empty() && !key_usages.contains(&KeyUsagePurpose::CrlSign) {
            return Err(CaError::NotPermitted(format!(
                "the certificate of CA {} has a keyUsage without cRLSign, so it may not sign \
                 CRLs (RFC 5280 section 4.2.1.3); revoke through AWS IoT, or import the CA \
                 again with a certificate whose keyUsage includes cRLSign",
                self.id()
            )));
        }
        let info = info.clone().whole_seconds();
        if info.delta_of.is_some() && info.freshest_crl.is_some() {
            return Err(CaError::Rejected(
                "a delta CRL carries no freshestCRL (RFC 5280 section 5.2.6)".into(),
            ));
        }
        if info.next_update <= info.this_update {
            return Err(CaError::Rejected(
                "a CRL's nextUpdate must be after its thisUpdate".into(),
            ));
        }
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
            this_update: info.this_update,
            next_update: info.next_update,
            crl_number: SerialNumber::from(info.number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.key_identifier.clone(),
        };
        let crl = params.signed_by(&self.issuer).map_err(CaError::signing)?;
        let extra: Vec<Vec<u8>> = info
            .delta_of
            .map(super::crl_der::delta_crl_indicator)
            .into_iter()
            .chain(
                info.freshest_crl
                    .as_deref()
                    .map(super::crl_der::freshest_crl),
            )
            .collect();
        if extra.is_empty() {
            return Ok(crl.der().to_vec());
        }
        super::crl_der::with_extensions(crl.der(), &extra, self.issuer.key())
    }
}
