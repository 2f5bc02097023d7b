//! The CRL publisher: each CA's CRL is signed when its revocations change or its nextUpdate
//! nears, stored, and served from storage. Serving reads one stored row; only a build reads the
//! CA's revoked certificates from the ledger and signs.
//!
//! Delta CRLs (RFC 5280 section 5.2.4) build on a base: a complete CRL chosen once per refresh
//! period (`crl_validity_secs - crl_refresh_before_secs`), so that relying parties fetch the
//! complete CRL rarely and the small delta often. A delta lists the revocations since its base
//! was signed (with a margin, see [`DELTA_OVERLAP`]).
//!
//! Builds of one CA are serialized in this process (concurrent requests for a stale CRL wait for
//! one build and share it). Across replicas the store hands out cRLNumbers, so two replicas
//! building at once sign different numbers and the larger one stays stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use time::OffsetDateTime;

use crate::ca::{CaError, CertificateAuthority, CrlInfo};
use crate::config::RevocationSettings;
use crate::services::ca_admin::{CaAdmin, CaAdminError};
use crate::store::crls::{CrlState, StoredCrl};
use crate::store::{Store, StoreError, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// No such CA, or its key cannot be loaded.
    #[error(transparent)]
    Ca(#[from] CaAdminError),
    /// The CA cannot sign this CRL.
    #[error("CA {ca_id}: {source}")]
    Signing { ca_id: String, source: CaError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the publisher finds a CA to sign with: the issuing CA, already loaded, or any other
/// CA of the store.
pub struct CaSource<'a> {
    pub ca_admin: CaAdmin<'a>,
    pub issuing: Arc<CertificateAuthority>,
}

impl CaSource<'_> {
    async fn load(&self, ca_id: &str) -> Result<Arc<CertificateAuthority>, CaAdminError> {
        if self.issuing.id() == ca_id {
            return Ok(self.issuing.clone());
        }
        Ok(Arc::new(self.ca_admin.load_by_id(ca_id).await?))
    }
}

/// A delta lists revocations from this long before its base's thisUpdate: a revocation whose
/// transaction began before the base read the ledger but committed after it is on the delta.
/// Listing a few certificates the base lists too is harmless.
pub const DELTA_OVERLAP: time::Duration = time::Duration::minutes(5);

/// Which of a CA's CRLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlKind {
    /// The complete CRL.
    Complete,
    /// The delta CRL on the current base.
    Delta,
}

impl CrlKind {
    /// How its `ETag` starts: `crl` or `delta`.
    pub fn etag_prefix(self) -> &'static str {
        match self {
            CrlKind::Complete => "crl",
            CrlKind::Delta => "delta",
        }
    }
}

/// Which CRL a build makes.
#[derive(Clone, Copy)]
enum Kind {
    /// A complete CRL; with `as_base`, delta CRLs build on it from now on.
    Complete { as_base: bool },
    /// A delta CRL on the complete CRL numbered `base`, signed at `since`.
    Delta { base: u64, since: Timestamp },
}

pub struct CrlPublisher {
    validity: time::Duration,
    refresh_before: time::Duration,
    /// The freshestCRL URL template of complete CRLs (`{ca_id}` replaced).
    delta_url: Option<String>,
    /// One lock per CA id, so that one process signs one CA's CRL at a time.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the upkeep job after a revocation through this process, so that the new CRL is
    /// signed before anyone asks for it.
    revoked: tokio::sync::Notify,
}

impl CrlPublisher {
    pub fn new(settings: &RevocationSettings) -> Self {
        let duration = |d: std::time::Duration| {
            time::Duration::try_from(d).expect("validated settings fit a time::Duration")
        };
        Self {
            validity: duration(settings.crl_validity_secs),
            refresh_before: duration(settings.crl_refresh_before_secs),
            delta_url: settings.delta_crl_url.clone(),
            building: Mutex::new(HashMap::new()),
            revoked: tokio::sync::Notify::new(),
        }
    }

    /// Says that this process revoked certificates: the upkeep job signs the CRLs now behind.
    pub fn revocations_changed(&self) {
        self.revoked.notify_one();
    }

    /// Returns when [`CrlPublisher::revocations_changed`] was called since the last call.
    pub async fn revoked(&self) {
        self.revoked.notified().await
    }

    /// The current CRL of `kind` of `ca_id`: the stored one while it is current (see
    /// [`CrlPublisher::fresh`]), otherwise a new one signed and stored now. A delta CRL is
    /// built after the complete CRL, when that is due too: the complete CRL picks the base.
    pub async fn current(
        &self,
        kind: CrlKind,
        store: &Store,
        cas: &CaSource<'_>,
        ca_id: &str,
        now: OffsetDateTime,
    ) -> Result<StoredCrl, CrlError> {
        let delta = kind == CrlKind::Delta;
        if let Some(crl) = self.fresh(kind, store.crl_state_for(ca_id, delta).await?, now) {
            return Ok(crl);
        }
        if delta {
            // The complete CRL first: it picks the base the delta is on.
            Box::pin(self.current(CrlKind::Complete, store, cas, ca_id, now)).await?;
        }
        let lock = self.lock_of(ca_id);
        let _building = lock.lock().await;
        // Another request may have built it while this one waited.
        let state = store.crl_state_for(ca_id, delta).await?;
        if let Some(crl) = self.fresh(kind, state.clone(), now) {
            return Ok(crl);
        }
        let base = state.and_then(|s| s.base);
        let build = match kind {
            CrlKind::Complete => {
                // A new base once the current one is a refresh period old.
                let period = self.validity - self.refresh_before;
                Kind::Complete {
                    as_base: base.is_none_or(|(_, since)| since.get() + period <= now),
                }
            }
            CrlKind::Delta => {
                let Some((base, since)) = base else {
                    return Err(CrlError::Store(StoreError(sqlx::Error::Protocol(format!(
                        "CA {ca_id} has no base CRL after one was built"
                    )))));
                };
                Kind::Delta { base, since }
            }
        };
        let ca = cas.load(ca_id).await?;
        self.build(store, &ca, now, build).await
    }

    /// Signs and stores a new CRL of every CA whose stored CRL is missing, behind its
    /// revocations, or near its nextUpdate. Returns how many were built; a CA that fails is
    /// logged and tried again on the next round.
    pub async fn refresh_due(
        &self,
        store: &Store,
        cas: &CaSource<'_>,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let mut built = 0;
        for ca_id in store
            .crls_due(Timestamp::new(now + self.refresh_before))
            .await?
        {
            match self
                .current(CrlKind::Complete, store, cas, &ca_id, now)
                .await
            {
                Ok(_) => built += 1,
                Err(e) => tracing::warn!(%ca_id, error = %e, "CRL not signed; will retry"),
            }
        }
        Ok(built)
    }

    /// The stored CRL of `kind` while it lists every revocation, its nextUpdate is not near
    /// and, for a delta, it is on the current base.
    fn fresh(
        &self,
        kind: CrlKind,
        state: Option<CrlState>,
        now: OffsetDateTime,
    ) -> Option<StoredCrl> {
        let state = state?;
        let (crl, on_current_base) = match kind {
            CrlKind::Complete => (state.crl?, true),
            CrlKind::Delta => {
                let delta = state.delta?;
                let base = state.base.map(|(n, _)| n);
                let on_base = delta.base_number.is_some() && delta.base_number == base;
                (delta, on_base)
            }
        };
        let current = on_current_base
            && crl.built_generation >= state.revocation_generation
            && crl.next_update.get() - self.refresh_before > now;
        current.then_some(crl)
    }

    fn lock_of(&self, ca_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.building
            .lock()
            .expect("the CRL lock table is never poisoned: nothing panics while holding it")
            .entry(ca_id.to_owned())
            .or_default()
            .clone()
    }

    /// Allocates a number, reads the revoked certificates, signs and stores. The generation
    /// is read with the number, before the entries: a revocation committed in between is
    /// listed, and only makes the next request build once more.
    async fn build(
        &self,
        store: &Store,
        ca: &Arc<CertificateAuthority>,
        now: OffsetDateTime,
        kind: Kind,
    ) -> Result<StoredCrl, CrlError> {
        let started = Instant::now();
        let (number, generation) = store
            .allocate_crl_number(ca.id(), now.unix_timestamp())
            .await?;
        let (since, delta_of, freshest_crl) = match kind {
            Kind::Complete { .. } => (
                None,
                None,
                self.delta_url
                    .as_ref()
                    .map(|url| url.replace("{ca_id}", ca.id())),
            ),
            Kind::Delta { base, since } => (
                Some(Timestamp::new(since.get() - DELTA_OVERLAP)),
                Some(base),
                None,
            ),
        };
        let revoked = store.revoked_entries_since(ca.id(), since).await?;
        let info = CrlInfo {
            number,
            this_update: now,
            next_update: now + self.validity,
            delta_of,
            freshest_crl,
        }
        .whole_seconds();
        // A key in a token or key service signs with a round trip: off the reactor.
        let signed = if ca.signs_remotely() {
            let (signer, revoked, info) = (Arc::clone(ca), revoked.clone(), info.clone());
            crate::keys::off_reactor(move || signer.crl(&revoked, &info)).await
        } else {
            ca.crl(&revoked, &info)
        };
        let der = signed.map_err(|source| CrlError::Signing {
            ca_id: ca.id().to_owned(),
            source,
        })?;
        let crl = StoredCrl {
            der,
            number,
            built_generation: generation,
            this_update: Timestamp::new(info.this_update),
            next_update: Timestamp::new(info.next_update),
            revoked_count: i64::try_from(revoked.len()).unwrap_or(i64::MAX),
            base_number: delta_of,
        };
        let saved = match kind {
            Kind::Complete { as_base } => store.save_crl(ca.id(), &crl, as_base).await?,
            Kind::Delta { .. } => store.save_delta_crl(ca.id(), &crl).await?,
        };
        if !saved {
            tracing::debug!(ca_id = %ca.id(), number, "a newer CRL was stored meanwhile");
        }
        let kind = match kind {
            Kind::Complete { .. } => "complete",
            Kind::Delta { .. } => "delta",
        };
        let labels = [("ca_id", ca.id().to_owned()), ("kind", kind.to_owned())];
        metrics::counter!("factory_ca_crl_builds_total", &labels).increment(1);
        metrics::histogram!("factory_ca_crl_build_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("factory_ca_crl_entries", &labels).set(revoked.len() as f64);
        tracing::info!(
            ca_id = %ca.id(),
            crl_number = number,
            delta_of,
            entries = revoked.len(),
            bytes = crl.der.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "CRL signed and stored"
        );
        Ok(crl)
    }
}
