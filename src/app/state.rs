//! [`AppState`]: every long-lived value of a running service, shared by the handlers and the
//! background jobs. Cloning it clones one `Arc`: axum clones the state for every request.

use std::ops::Deref;
use std::sync::Arc;

use crate::aws::IotRegistry;
use crate::config::Settings;
use crate::keys::KeyStore;
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
    pub issuance: Arc<IssuanceService>,
    /// AWS IoT, when `aws.enabled`; `None` makes the AWS endpoints answer 503.
    pub iot: Option<Arc<dyn IotRegistry>>,
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
}

impl AppState {
    /// The CAs of this service: create, import, activate, load.
    pub fn ca_admin(&self) -> CaAdmin<'_> {
        CaAdmin::new(&self.store, &self.keys)
    }

    /// The CA health checks with the configured threshold and target.
    pub async fn health(
        &self,
    ) -> Result<crate::provisioning::HealthReport, crate::provisioning::ProvisioningError> {
        self.provisioning()
            .health(self.settings.ca.expiry_warn_days, &self.settings.aws.region)
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
            registry: self.iot.as_ref(),
            ca_admin: self.ca_admin(),
            policy: self.issuance.policy(),
        }
    }
}
