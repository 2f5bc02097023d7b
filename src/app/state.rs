//! [`AppState`]: every long-lived value of a running service, shared by the handlers and the
//! background jobs. Cloning it clones one `Arc`: axum clones the state for every request.

use std::ops::Deref;
use std::sync::Arc;

use crate::aws::IotRegistry;
use crate::config::Settings;
use crate::keys::KeyStore;
use crate::provisioning::HealthReport;
use crate::services::ca_admin::CaAdmin;
use crate::services::issuance::IssuanceService;
use crate::services::limits::StationRateLimiter;
use crate::services::rejections::RejectionCounter;
use crate::store::Store;

/// The shared state: one `Arc` around [`AppStateInner`], whose fields it derefs to. Cloned (and
/// dropped) for every request, so it is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub settings: Arc<Settings>,
    pub store: Store,
    /// The same database through the dashboard's read pool (`crate::store::reads`): listing,
    /// export, stats and audit reads use it, so viewers cannot take issuance's connections.
    pub reads: Store,
    /// The CA keys: where they live, their at-rest passphrase, the keys already decrypted.
    pub keys: Arc<KeyStore>,
    /// The ledger audit key: signs the chains' checkpoints; its public key is published.
    pub audit_key: Arc<crate::keys::AuditKey>,
    pub issuance: Arc<IssuanceService>,
    /// AWS IoT, when `aws.enabled`; `None` makes the AWS endpoints answer 503.
    pub iot: Option<Arc<dyn IotRegistry>>,
    /// Every registration target with its registry (the first is the one `iot` reaches);
    /// empty when AWS is not configured.
    pub aws_targets: Arc<Vec<crate::aws::AwsTargetRegistry>>,
    pub station_limiter: Arc<StationRateLimiter>,
    /// Refused signing requests not yet added to the store's counters.
    pub rejections: Arc<RejectionCounter>,
    /// Failed dashboard sign-ins per source and token, and their collapsed audit records.
    pub sign_in: Arc<crate::services::sign_in::SignInGuard>,
    /// Live API tokens seen recently (`server.token_cache_secs`).
    pub tokens: Arc<crate::services::tokens::TokenCache>,
    /// Whether the database answers, as the background probe last found it.
    pub store_health: Arc<crate::services::store_health::StoreHealth>,
    /// The stored CRLs: signed when revocations change, served from the store.
    pub crls: Arc<crate::services::crl::CrlPublisher>,
    /// Bulk revocation jobs: submitted by the API, run by the upkeep job.
    pub bulk_revocations: Arc<crate::services::bulk_revocation::BulkRevocations>,
    /// AWS syncs: this process's lease holder name and the wake-up of its sync runner.
    pub syncs: Arc<crate::provisioning::SyncRunner>,
    /// Our CAs as trust anchors of device certificates (EST simplereenroll), under HTTPS.
    pub device_trust: Option<Arc<crate::http::tls::DeviceTrust>>,
    /// `[est.labels]`: label -> the CA it selects, loaded at start.
    pub est_labels: Arc<std::collections::BTreeMap<String, Arc<crate::ca::CertificateAuthority>>>,
    /// The last CA health report, for the dashboard ([`AppState::recent_health`]).
    pub health_cache: Arc<HealthCache>,
}

/// The last CA health report and when it was made. Its lock is held while a report is being
/// made for [`AppState::recent_health`], so that many dashboards refreshing at once make one.
#[derive(Default)]
pub struct HealthCache(tokio::sync::Mutex<Option<(std::time::Instant, HealthReport)>>);

/// How old a report the dashboard may be shown: its refresh period. Viewers thus cause at most
/// one round of AWS calls a minute, however many dashboards are open.
pub const HEALTH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

impl AppState {
    /// After a CA was created, imported or activated: device certificates of every CA in the
    /// store authenticate for EST simplereenroll from now on.
    pub async fn refresh_device_trust(&self) {
        if let Some(devices) = &self.device_trust {
            match self.store.list_cas().await {
                Ok(cas) => devices.update(&cas),
                Err(e) => tracing::warn!(error = %e, "CAs for device certificates not re-read"),
            }
        }
    }

    /// The CAs of this service: create, import, activate, load.
    pub fn ca_admin(&self) -> CaAdmin<'_> {
        CaAdmin::new(&self.store, &self.keys)
    }

    /// The CA health checks with the configured threshold and target, run now; the report is
    /// kept for [`AppState::recent_health`].
    pub async fn health(&self) -> Result<HealthReport, crate::provisioning::ProvisioningError> {
        let report = self.check_health().await?;
        *self.health_cache.0.lock().await = Some((std::time::Instant::now(), report.clone()));
        Ok(report)
    }

    /// The last report if it is younger than `max_age`, else a new one (kept).
    pub async fn recent_health(
        &self,
        max_age: std::time::Duration,
    ) -> Result<HealthReport, crate::provisioning::ProvisioningError> {
        let mut cached = self.health_cache.0.lock().await;
        if let Some((made, report)) = cached.as_ref()
            && made.elapsed() < max_age
        {
            return Ok(report.clone());
        }
        let report = self.check_health().await?;
        *cached = Some((std::time::Instant::now(), report.clone()));
        Ok(report)
    }

    async fn check_health(&self) -> Result<HealthReport, crate::provisioning::ProvisioningError> {
        self.provisioning()
            .health(self.settings.ca.expiry_warn_days)
            .await
    }

    /// The CAs the CRL publisher signs with: the issuing CA as loaded, any other from the store.
    pub fn crl_cas(&self) -> crate::services::crl::CaSource<'_> {
        crate::services::crl::CaSource {
            ca_admin: self.ca_admin(),
            issuing: self.issuance.issuing_ca(),
        }
    }

    /// The AWS IoT administration of this service's CAs.
    pub fn provisioning(&self) -> crate::provisioning::Provisioning<'_> {
        crate::provisioning::Provisioning {
            store: &self.store,
            targets: &self.aws_targets,
            ca_admin: self.ca_admin(),
            policy: self.issuance.policy(),
            syncs: &self.syncs,
        }
    }
}
