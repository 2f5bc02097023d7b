//! The one issuance pipeline: decode -> verify -> policy -> sign -> record (commit) -> respond.
//!
//! Every certificate the service hands out goes through [`IssuanceService::issue`], and its
//! ledger row is committed before the function returns it. Idempotency lives here: the same
//! `Idempotency-Key` from the same station with the same CSR yields the same certificate, also
//! after a restart and across replicas, because the key is committed in the same transaction as
//! the certificate and looked up in the database, never in memory.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use time::OffsetDateTime;

use crate::ca::policy::DuplicateThingName;
use crate::ca::{
    self, CaError, CertificateAuthority, CsrError, DeviceProfile, IssuancePolicy, KeyAlgorithm,
    PolicyViolation,
};
pub use crate::store::Channel;
use crate::store::ledger_writer::{GroupCommitConfig, LedgerWriter};
use crate::store::{
    CertificateFilter, CertificateRecord, LedgerStatus, NewIssuance, RecordOutcome, Store,
    StoreError, Superseding, Timestamp,
};
use crate::telemetry::SeriesCache;

/// Why a request got no certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    /// The subject is outside the issuing CA's nameConstraints; nothing was signed.
    #[error("{0}")]
    NameConstraintsViolation(String),
    #[error(
        "the thing name {thing_name:?} already has an active (unrevoked, unexpired) certificate{holder}; a new one can be issued once it is revoked or has expired"
    )]
    ThingAlreadyProvisioned {
        thing_name: String,
        /// `, serial <serial>, issued to station <station>`, or empty when the ledger could
        /// not say.
        holder: String,
    },
    #[error(
        "this Idempotency-Key was already used by this station with a different CSR; use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("{0}")]
    CaUnavailable(String),
    /// The issuing CA's key is in a token or key service that failed to sign; nothing was
    /// recorded, and the next request tries again.
    #[error("{0}")]
    SignerUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A renewal's CSR names another subject than the certificate it renews (RFC 7030 section
    /// 4.2.2: they must be identical).
    #[error(
        "the CSR's subject ({requested}) differs from the subject of the certificate being renewed ({current}); a renewal keeps the subject, send a CSR with exactly the current one"
    )]
    RenewalSubjectMismatch { requested: String, current: String },
    /// The certificate being renewed was revoked or renewed while this renewal ran.
    #[error("certificate {serial} was revoked or renewed meanwhile; nothing was issued")]
    RenewedCertificateNotActive { serial: String },
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
    /// The interface the request came through, recorded in the ledger row.
    pub channel: Channel,
    /// The CA to sign with instead of the issuing CA (an EST label's CA).
    pub ca: Option<&'a Arc<CertificateAuthority>>,
    /// A renewal: the certificate this one replaces. The CSR must name the same subject; the
    /// old certificate becomes `superseded` and its thing claim passes to the new one, in the
    /// new certificate's transaction.
    pub renews: Option<&'a CertificateRecord>,
}

/// A certificate that is committed to the ledger and may be sent.
#[derive(Debug, Clone)]
pub struct Issued {
    pub record: CertificateRecord,
    /// The issuing CA's certificate and the intermediates above it.
    pub ca: Arc<CaPems>,
    /// True when an earlier request with the same Idempotency-Key produced it.
    pub replayed: bool,
}

impl Issued {
    /// The device certificate as PEM.
    pub fn certificate_pem(&self) -> String {
        ca::to_pem("CERTIFICATE", &self.record.certificate_der)
    }

    /// Device certificate, the issuing CA, then each intermediate up to (not including) the
    /// root: what the device presents for JITP.
    pub fn chain_pem(&self) -> String {
        let certificate_pem = self.certificate_pem();
        let mut chain = String::with_capacity(
            certificate_pem.len() + self.ca.certificate_pem.len() + self.ca.intermediates_pem.len(),
        );
        chain.push_str(&certificate_pem);
        chain.push_str(&self.ca.certificate_pem);
        chain.push_str(&self.ca.intermediates_pem);
        chain
    }
}

/// A CA's certificate and the intermediates above it (up to, not including, the root), as PEM
/// and as the contents of a JSON string: made once per CA and shared by every answer, instead
/// of being copied and escaped again for each certificate.
#[derive(Debug)]
pub struct CaPems {
    pub certificate_pem: String,
    /// Empty when the CA is a root.
    pub intermediates_pem: String,
    /// `certificate_pem` escaped as JSON string contents (no quotes).
    pub certificate_pem_json: String,
    /// `intermediates_pem` escaped as JSON string contents (no quotes).
    pub intermediates_pem_json: String,
}

impl CaPems {
    pub fn new(certificate_pem: String, intermediates_pem: String) -> CaPems {
        CaPems {
            certificate_pem_json: json_string_contents(&certificate_pem),
            intermediates_pem_json: json_string_contents(&intermediates_pem),
            certificate_pem,
            intermediates_pem,
        }
    }

    fn of(ca: &CertificateAuthority) -> CaPems {
        CaPems::new(
            ca.certificate_pem().to_owned(),
            ca.intermediates_pem().to_owned(),
        )
    }
}

/// `s` as serde_json writes it inside a JSON string.
fn json_string_contents(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string always serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

/// The issuing CA and its PEMs, swapped together.
struct IssuingCa {
    ca: Arc<CertificateAuthority>,
    pems: Arc<CaPems>,
}

impl IssuingCa {
    fn new(ca: CertificateAuthority) -> IssuingCa {
        IssuingCa {
            pems: Arc::new(CaPems::of(&ca)),
            ca: Arc::new(ca),
        }
    }
}

pub struct IssuanceService {
    store: Store,
    policy: IssuancePolicy,
    profile: DeviceProfile,
    duplicate_thing_name: DuplicateThingName,
    issuing_ca: RwLock<IssuingCa>,
    /// Group commit (PostgreSQL with `database.group_commit`); `None`: one transaction per
    /// certificate.
    ledger_writer: Option<LedgerWriter>,
    metrics: IssuanceMetrics,
}

/// The pipeline's metric handles, registered on first use: the recorder is installed after
/// this service is built. Registering per certificate cost a key (with its owned CA id and key
/// type) and a registry look-up for each of the three.
#[derive(Default)]
struct IssuanceMetrics {
    /// `factory_ca_store_duration_seconds{operation="record_issuance"}`.
    recording: OnceLock<metrics::Histogram>,
    /// `factory_ca_issuance_duration_seconds`.
    duration: OnceLock<metrics::Histogram>,
    /// `factory_ca_certificates_issued_total`, by CA id and key type.
    issued: SeriesCache<KeyAlgorithm, metrics::Counter>,
}

impl IssuanceMetrics {
    fn record_recording(&self, seconds: f64) {
        self.recording
            .get_or_init(|| {
                metrics::histogram!(
                    "factory_ca_store_duration_seconds",
                    "operation" => "record_issuance"
                )
            })
            .record(seconds);
    }

    fn record_issued(&self, ca_id: &str, key: KeyAlgorithm, seconds: f64) {
        self.issued
            .get(ca_id, key, || {
                metrics::counter!(
                    "factory_ca_certificates_issued_total",
                    "ca" => ca_id.to_owned(),
                    "key_type" => key.name(),
                )
            })
            .increment(1);
        self.duration
            .get_or_init(|| metrics::histogram!("factory_ca_issuance_duration_seconds"))
            .record(seconds);
    }
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
            issuing_ca: RwLock::new(IssuingCa::new(issuing_ca)),
            ledger_writer: None,
            metrics: IssuanceMetrics::default(),
        }
    }

    /// Records through the batching ledger writer (group commit) when the store supports it
    /// (PostgreSQL); SQLite keeps one transaction per certificate. Needs a tokio runtime.
    pub fn with_group_commit(mut self, config: GroupCommitConfig) -> Self {
        self.ledger_writer = self.store.ledger_writer(config);
        self
    }

    /// Whether certificates are recorded by group commit.
    pub fn group_commit(&self) -> bool {
        self.ledger_writer.is_some()
    }

    pub fn issuing_ca(&self) -> Arc<CertificateAuthority> {
        self.issuing_ca_and_pems().0
    }

    fn issuing_ca_and_pems(&self) -> (Arc<CertificateAuthority>, Arc<CaPems>) {
        let issuing = self
            .issuing_ca
            .read()
            .expect("the issuing CA lock is never poisoned: nothing panics while holding it");
        (issuing.ca.clone(), issuing.pems.clone())
    }

    /// Swaps the issuing CA (rotation). In-flight requests finish with the CA they started with.
    pub fn set_issuing_ca(&self, ca: CertificateAuthority) {
        let issuing = IssuingCa::new(ca);
        *self
            .issuing_ca
            .write()
            .expect("the issuing CA lock is never poisoned") = issuing;
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

        // 3. Policy: thing name, country, allowed subject attributes; a renewal keeps the
        // subject of the certificate it renews.
        let approved = self.policy.approve(parsed)?;
        if let Some(old) = req.renews {
            same_subject(&approved, old)?;
        }

        // 4. Sign with the issuing CA, from the profile only; first, a subject outside the
        // CA's name constraints is refused (verifiers would refuse the certificate).
        let (ca, ca_pems) = match req.ca {
            // An EST label's CA: its PEMs are made for this answer (labels are rare).
            Some(ca) => (Arc::clone(ca), Arc::new(CaPems::of(ca))),
            None => self.issuing_ca_and_pems(),
        };
        ca.check_name_constraints(&approved)
            .map_err(IssuanceError::NameConstraintsViolation)?;
        let now = OffsetDateTime::now_utc();
        let issued_at = Timestamp::new(now);
        let (approved, signed) = self.sign(&ca, approved, now).await?;
        let certificate = signed.map_err(|e| match e {
            CaError::Unavailable(m) => IssuanceError::CaUnavailable(m),
            CaError::SignerUnavailable(m) => IssuanceError::SignerUnavailable(m),
            other => IssuanceError::Internal(other.to_string()),
        })?;

        // 5. Record: certificate, thing claim and idempotency key in one transaction (shared
        // with concurrent requests under group commit; the outcome is still this row's own).
        let new = NewIssuance {
            certificate,
            ca_id: ca.id().to_owned(),
            station: req.station.to_owned(),
            request_id: req.request_id.map(str::to_owned),
            channel: req.channel,
            issued_at,
            idempotency: req
                .idempotency_key
                .map(|key| (key.to_owned(), approved.csr_sha256().to_owned())),
            reject_duplicate_thing: self.duplicate_thing_name == DuplicateThingName::Reject,
        };
        let record = new.record();
        let recording = Instant::now();
        let outcome = match (&self.ledger_writer, req.renews) {
            // A renewal changes two rows: always its own transaction, never a batch's.
            (_, Some(old)) => {
                self.store
                    .record_renewal(
                        &new,
                        &Superseding {
                            serial: old.serial.clone(),
                            ca_id: old.ca_id.clone(),
                        },
                    )
                    .await
            }
            (Some(writer), None) => writer.record(new).await,
            (None, None) => self.store.record_issuance(&new).await,
        };
        self.metrics
            .record_recording(recording.elapsed().as_secs_f64());
        match outcome? {
            RecordOutcome::Recorded => {}
            RecordOutcome::ThingAlreadyProvisioned => {
                let holder = self.thing_holder(&record.thing_name).await;
                return Err(IssuanceError::ThingAlreadyProvisioned {
                    thing_name: record.thing_name.clone(),
                    holder,
                });
            }
            RecordOutcome::SupersededNotActive => {
                return Err(IssuanceError::RenewedCertificateNotActive {
                    serial: req.renews.map(|r| r.serial.clone()).unwrap_or_default(),
                });
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
        self.metrics.record_issued(
            ca.id(),
            record.key_algorithm,
            started.elapsed().as_secs_f64(),
        );
        tracing::info!(
            serial = %record.serial,
            thing_name = %record.thing_name,
            station = %req.station,
            issuing_ca = %ca.id(),
            latency_us = started.elapsed().as_micros() as u64,
            "certificate issued"
        );
        Ok(Issued {
            record,
            ca: ca_pems,
            replayed: false,
        })
    }

    /// Step 4, on the calling task or on tokio's blocking pool.
    ///
    /// Measured with `scripts/bench.sh` on a 2-core machine (docs/benchmarks.md): for an
    /// RSA-2048 CA (~1 ms per signature here) `spawn_blocking` was no faster than signing inline
    /// (16 connections: 843 and 1001 vs 940 and 977 certificates/s; 64: 1195 and 1176 vs 1189
    /// and 1260; p99 alike) and cost more CPU per certificate for the hop: once the cores are
    /// busy, another thread adds no CPU. So ECDSA and RSA-2048 sign inline. Larger RSA keys
    /// (3 ms for 3072 bits, 6 ms for 4096 here) would hold a reactor thread, and every
    /// connection it serves, for that long: they go to the blocking pool. So does every key in
    /// a token or a key service, whose signature is a round trip that blocks.
    async fn sign(
        &self,
        ca: &Arc<CertificateAuthority>,
        approved: ca::ApprovedCsr,
        now: OffsetDateTime,
    ) -> Result<(ca::ApprovedCsr, Result<ca::IssuedCertificate, CaError>), IssuanceError> {
        if !slow_signer(ca.key_algorithm()) && !ca.signs_remotely() {
            let signed = ca.sign(&approved, &self.profile, now);
            return Ok((approved, signed));
        }
        let ca = Arc::clone(ca);
        let profile = self.profile.clone();
        tokio::task::spawn_blocking(move || {
            let signed = ca.sign(&approved, &profile, now);
            (approved, signed)
        })
        .await
        .map_err(|e| IssuanceError::Internal(format!("the signing task failed: {e}")))
    }

    /// Which certificate holds `thing_name`, for the 409 answer: the newest active row (under
    /// `duplicate_thing_name = "reject"` the only unexpired one). Empty when the ledger cannot
    /// say; the refusal stands either way.
    async fn thing_holder(&self, thing_name: &str) -> String {
        let filter = CertificateFilter {
            thing_name: Some(thing_name.to_owned()),
            status: Some(LedgerStatus::Active),
            ..CertificateFilter::default()
        };
        match self.store.list_certificates(&filter, 1).await {
            Ok(rows) => rows
                .first()
                .map(|r| format!(", serial {}, issued to station {:?}", r.serial, r.station))
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "the holder of a thing name could not be read");
                String::new()
            }
        }
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
        let ca = self.ca_certificates(&record.ca_id).await?;
        Ok(Some(Issued {
            ca,
            record,
            replayed: true,
        }))
    }

    /// The certificate of the CA that issued a ledger row (the issuing CA, or an older one).
    pub async fn ca_certificate_pem(&self, ca_id: &str) -> Result<String, IssuanceError> {
        Ok(self.ca_certificates(ca_id).await?.certificate_pem.clone())
    }

    /// The certificate of the CA that issued a ledger row and the intermediates above it (up
    /// to, not including, the root).
    async fn ca_certificates(&self, ca_id: &str) -> Result<Arc<CaPems>, IssuanceError> {
        let (current, pems) = self.issuing_ca_and_pems();
        if current.id() == ca_id {
            return Ok(pems);
        }
        let ca = self.store.get_ca(ca_id).await?.ok_or_else(|| {
            IssuanceError::Internal(format!("ledger row names unknown CA {ca_id}"))
        })?;
        let intermediates = ca::chain::intermediates_pem(&ca.chain_pem);
        Ok(Arc::new(CaPems::new(ca.certificate_pem, intermediates)))
    }
}

/// RFC 7030 section 4.2.2: a renewal's subject is identical to the renewed certificate's. The
/// attributes are compared in order, by type and value (the string encoding may differ: the
/// certificate's is the one the first CSR chose).
fn same_subject(approved: &ca::ApprovedCsr, old: &CertificateRecord) -> Result<(), IssuanceError> {
    let (_, cert) = x509_parser::parse_x509_certificate(&old.certificate_der).map_err(|e| {
        IssuanceError::Internal(format!(
            "ledger row {} holds no certificate: {e}",
            old.serial
        ))
    })?;
    let current: Vec<(String, String)> = cert
        .subject()
        .iter_attributes()
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let requested: Vec<(String, String)> = approved
        .subject()
        .iter()
        .map(|a| (a.field.oid().to_owned(), a.value.clone()))
        .collect();
    if current == requested {
        return Ok(());
    }
    Err(IssuanceError::RenewalSubjectMismatch {
        requested: ca::policy::subject_string(approved.subject()),
        current: cert.subject().to_string(),
    })
}

/// RSA keys above 2048 bits (`rsa-3072`, `rsa-4096`, ...): milliseconds per signature.
fn slow_signer(key_algorithm: KeyAlgorithm) -> bool {
    matches!(key_algorithm, KeyAlgorithm::Rsa { bits } if bits > 2048)
}

/// RFC 9110 field values are visible ASCII; keys are opaque to us beyond that.
pub(crate) fn valid_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_keys_above_2048_bits_sign_off_the_reactor() {
        for inline in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::EcdsaP521,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            assert!(!slow_signer(inline), "{inline}");
        }
        for bits in [3072, 4096, 8192] {
            assert!(slow_signer(KeyAlgorithm::Rsa { bits }), "{bits}");
        }
    }
}
