//! Certificate revocation lists (RFC 5280 section 5): why a certificate was revoked, the
//! entries a CRL lists, and the CRL a CA signs.

use rcgen::{CertificateRevocationListParams, KeyUsagePurpose, RevokedCertParams, SerialNumber};
use time::{Duration, OffsetDateTime};

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

/// How long a CRL is valid (its nextUpdate, RFC 5280 section 5.1.2.5). CRLs are signed on
/// request, so a client that fetches daily always has a current one.
const CRL_VALIDITY: Duration = Duration::days(1);

impl CertificateAuthority {
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
                self.id()
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
        let crl = params.signed_by(&self.issuer).map_err(CaError::signing)?;
        Ok(crl.der().to_vec())
    }
}
