//! The one issuance pipeline: decode -> verify -> policy -> sign -> record (commit) -> respond.
//!
//! Every certificate the service hands out goes through [`IssuanceService::issue`], and its
//! ledger row is committed before the function returns it. Idempotency lives here: the same
//! `Idempotency-Key` from the same station with the same CSR yields the same certificate, also
//! after a restart and across replicas, because the key is committed in the same transaction as
//! the certificate and looked up in the database, never in memory.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use time::OffsetDateTime;

use crate::ca::policy::DuplicateThingName;
use crate::ca::{
    self, CaError, CertificateAuthority, CsrError, DeviceProfile, IssuancePolicy, PolicyViolation,
};
use crate::store::{CertificateRecord, NewIssuance, RecordOutcome, Store, StoreError, Timestamp};

/// Why a request got no certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    #[error(
        "the thing name {0:?} already has an active (unrevoked, unexpired) certificate; a new one can be issued once it is revoked or has expired"
    )]
    ThingAlreadyProvisioned(String),
    #[error(
        "this Idempotency-Key was already used by this station with a different CSR; use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("{0}")]
    CaUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// One signing request as the pipeline sees it (no HTTP types).
#[derive(Debug, Clone, Copy)]
pub struct IssuanceRequest<'a> {
    /// The CSR, PEM or DER.
    pub csr: &'a [u8],
    /// The name of the station's token.
    pub station: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

/// A certificate that is committed to the ledger and may be sent.
#[derive(Debug, Clone)]
pub struct Issued {
    pub record: CertificateRecord,
    pub certificate_pem: String,
    pub ca_certificate_pem: String,
    /// True when an earlier request with the same Idempotency-Key produced it.
    pub replayed: bool,
}

impl Issued {
    /// Device certificate then CA certificate: what the device presents for JITP.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.certificate_pem, self.ca_certificate_pem)
    }
}

pub struct IssuanceService {
    store: Store,
    policy: IssuancePolicy,
    profile: DeviceProfile,
    duplicate_thing_name: DuplicateThingName,
    issuing_ca: RwLock<Arc<CertificateAuthority>>,
}

impl IssuanceService {
    pub fn new(
        store: Store,
        policy: IssuancePolicy,
        profile: DeviceProfile,
        duplicate_thing_name: DuplicateThingName,
        issuing_ca: CertificateAuthority,
    ) -> Self {
        Self {
            store,
            policy,
            profile,
            duplicate_thing_name,
            issuing_ca: RwLock::new(Arc::new(issuing_ca)),
        }
    }

    pub fn issuing_ca(&self) -> Arc<CertificateAuthority> {
        self.issuing_ca
            .read()
            .expect("the issuing CA lock is never poisoned: nothing panics while holding it")
            .clone()
    }

    /// Swaps the issuing CA (rotation). In-flight requests finish with the CA they started with.
    pub fn set_issuing_ca(&self, ca: CertificateAuthority) {
        *self
            .issuing_ca
            .write()
            .expect("the issuing CA lock is never poisoned") = Arc::new(ca);
    }

    pub fn policy(&self) -> &IssuancePolicy {
        &self.policy
    }

    /// Issues one device certificate. Steps, in this order:
    pub async fn issue(&self, req: IssuanceRequest<'_>) -> Result<Issued, IssuanceError> {
        let started = Instant::now();
        if let Some(key) = req.idempotency_key
            && !valid_idempotency_key(key)
        {
            return Err(IssuanceError::InvalidIdempotencyKey);
        }

        // 1. Decode the CSR, check its key, verify its signature (proof of possession).
        let parsed = ca::csr::parse(req.csr)?;

        // 2. A retried request: answer with what was committed for this key.
        if let Some(key) = req.idempotency_key
            && let Some(issued) = self.replay(req.station, key, parsed.csr_sha256()).await?
        {
            return Ok(issued);
        }

        // 3. Policy: thing name, country, allowed subject attributes.
        let approved = self.policy.approve(parsed)?;

        // 4. Sign with the issuing CA, from the profile only.
        let ca = self.issuing_ca();
        let now = OffsetDateTime::now_utc();
        let issued_at = Timestamp::new(now);
        let certificate = ca
            .sign(&approved, &self.profile, now)
            .map_err(|e| match e {
                CaError::Unavailable(m) => IssuanceError::CaUnavailable(m),
                other => IssuanceError::Internal(other.to_string()),
            })?;

        // 5. Record: certificate, thing claim and idempotency key in one transaction.
        let new = NewIssuance {
            certificate: &certificate,
            ca_id: ca.id(),
            station: req.station,
            request_id: req.request_id,
            issued_at,
            idempotency: req.idempotency_key.map(|key| (key, approved.csr_sha256())),
            reject_duplicate_thing: self.duplicate_thing_name == DuplicateThingName::Reject,
        };
        match self.store.record_issuance(&new).await? {
            RecordOutcome::Recorded => {}
            RecordOutcome::ThingAlreadyProvisioned => {
                return Err(IssuanceError::ThingAlreadyProvisioned(
                    certificate.thing_name.clone(),
                ));
            }
            RecordOutcome::IdempotencyKeyTaken => {
                // A concurrent request with the same key won; ours rolled back. Answer as a
                // retry would.
                let key = req.idempotency_key.unwrap_or_default();
                return self
                    .replay(req.station, key, approved.csr_sha256())
                    .await?
                    .ok_or_else(|| {
                        IssuanceError::Internal("idempotency key vanished after a conflict".into())
                    });
            }
        }

        // 6. Respond: only now may the certificate leave the service.
        tracing::info!(
            serial = %certificate.serial,
            thing_name = %certificate.thing_name,
            station = %req.station,
            issuing_ca = %ca.id(),
            latency_us = started.elapsed().as_micros() as u64,
            "certificate issued"
        );
        let certificate_pem = ca::to_pem("CERTIFICATE", &certificate.certificate_der);
        let record = CertificateRecord {
            serial: certificate.serial,
            ca_id: ca.id().to_owned(),
            thing_name: certificate.thing_name,
            country: certificate.country,
            subject: certificate.subject,
            key_algorithm: certificate.key_algorithm,
            spki_sha256: certificate.spki_sha256,
            aws_certificate_id: certificate.aws_certificate_id,
            certificate_der: certificate.certificate_der,
            not_before: Timestamp::new(certificate.not_before),
            not_after: Timestamp::new(certificate.not_after),
            issued_at,
            station: req.station.to_owned(),
            request_id: req.request_id.map(str::to_owned),
            status: "active".into(),
            revoked_at: None,
            revocation_reason: None,
            aws_revocation_pending: false,
            aws_status: None,
            aws_first_seen_at: None,
        };
        Ok(Issued {
            record,
            certificate_pem,
            ca_certificate_pem: ca.certificate_pem().to_owned(),
            replayed: false,
        })
    }

    async fn replay(
        &self,
        station: &str,
        key: &str,
        csr_sha256: &str,
    ) -> Result<Option<Issued>, IssuanceError> {
        let Some((stored_sha256, serial)) = self.store.find_idempotency_key(station, key).await?
        else {
            return Ok(None);
        };
        if stored_sha256 != csr_sha256 {
            return Err(IssuanceError::IdempotencyKeyReused);
        }
        let record = self.store.get_certificate(&serial).await?.ok_or_else(|| {
            IssuanceError::Internal(format!("idempotency key points at missing serial {serial}"))
        })?;
        let ca_certificate_pem = self.ca_certificate_pem(&record.ca_id).await?;
        Ok(Some(Issued {
            certificate_pem: ca::to_pem("CERTIFICATE", &record.certificate_der),
            ca_certificate_pem,
            record,
            replayed: true,
        }))
    }

    /// The certificate of the CA that issued a ledger row (the issuing CA, or an older one).
    pub async fn ca_certificate_pem(&self, ca_id: &str) -> Result<String, IssuanceError> {
        let current = self.issuing_ca();
        if current.id() == ca_id {
            return Ok(current.certificate_pem().to_owned());
        }
        let ca = self.store.get_ca(ca_id).await?.ok_or_else(|| {
            IssuanceError::Internal(format!("ledger row names unknown CA {ca_id}"))
        })?;
        Ok(ca.certificate_pem)
    }
}

/// RFC 9110 field values are visible ASCII; keys are opaque to us beyond that.
fn valid_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}
