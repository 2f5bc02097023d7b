//! Wiring: [`AppState`], [`Application::build`] (which tests call with port 0), and graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use time::Duration as TimeDuration;
use tokio::net::TcpListener;

use crate::aws::IotRegistry;
use crate::aws::sdk::SdkIotRegistry;
use crate::ca::DeviceProfile;
use crate::config::Settings;
use crate::keys::KeyStore;
use crate::services::ca_admin::{Actor, CaAdmin};
use crate::services::issuance::IssuanceService;
use crate::services::limits::StationRateLimiter;
use crate::services::rejections::RejectionCounter;
use crate::store::Store;

mod files;
mod jobs;
mod shutdown;
mod state;
mod upkeep;

pub use state::{AppState, AppStateInner, HEALTH_MAX_AGE, HealthCache};

pub struct Application {
    listener: TcpListener,
    /// `[server.tls]`: HTTPS (and station mTLS) on `listener`; `None` serves plain HTTP.
    tls: Option<crate::http::tls::TlsServer>,
    /// `metrics.listen`, when metrics have an address of their own.
    metrics_listener: Option<TcpListener>,
    /// Timeouts and caps of every client connection (`[server]`).
    limits: crate::http::server::ConnectionLimits,
    state: AppState,
}

impl Application {
    /// Connects the store (migrating when configured), loads the issuing CA (creating a
    /// development CA on first start when configured) and binds the listen address. Use
    /// `127.0.0.1:0` to get a free port.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let mut targets = Vec::new();
        if settings.aws.enabled {
            for target in settings.aws.resolved_targets() {
                let registry: Arc<dyn IotRegistry> =
                    Arc::new(SdkIotRegistry::from_target(&settings.aws, &target).await);
                targets.push((target.name, registry));
            }
        }
        Self::build_with_targets(settings, targets).await
    }

    /// [`Application::build`] with one registry per named registration target (tests pass
    /// fakes, or SDK clients against moto). Each name must be a configured target.
    pub async fn build_with_targets(
        settings: Settings,
        registries: Vec<(String, Arc<dyn IotRegistry>)>,
    ) -> anyhow::Result<Application> {
        let configured = settings.aws.resolved_targets();
        let mut targets = Vec::new();
        for (name, registry) in registries {
            let Some(target) = configured.iter().find(|t| t.name == name) else {
                anyhow::bail!("AWS target {name:?} is not configured (aws.targets.{name})");
            };
            targets.push((target.clone(), registry));
        }
        Self::build_inner(settings, targets).await
    }

    /// [`Application::build`] with a given AWS IoT registry (tests pass the fake or a
    /// moto-backed client).
    /// The registry serves the first configured target (`default` without named targets).
    pub async fn build_with_registry(
        settings: Settings,
        iot: Option<Arc<dyn IotRegistry>>,
    ) -> anyhow::Result<Application> {
        let targets = match iot {
            Some(registry) => {
                let first = settings
                    .aws
                    .resolved_targets()
                    .into_iter()
                    .next()
                    .expect("there is always at least one target");
                vec![(first, registry)]
            }
            None => Vec::new(),
        };
        Self::build_inner(settings, targets).await
    }

    async fn build_inner(
        settings: Settings,
        targets: Vec<(crate::config::AwsTarget, Arc<dyn IotRegistry>)>,
    ) -> anyhow::Result<Application> {
        // The TLS files first: a bad certificate or key fails before anything is touched.
        let tls = crate::http::tls::TlsServer::from_settings(&settings.server.tls)?;
        let store = Store::connect(&settings)
            .await
            .context("cannot connect to the database (database.url)")?;
        if settings.database.migrate_on_start {
            store.migrate().await.context("database migration failed")?;
        }
        let reads = Store::connect_reads(&settings)
            .await
            .context("cannot set up the dashboard's read pool (database.url)")?;
        let keys = Arc::new(KeyStore::from_settings(&settings));
        let ca = ensure_issuing_ca(&settings, &store, &keys).await?;
        let audit_key = Arc::new(load_audit_key(&settings, &store, &keys).await?);
        if let Some(tls) = &tls {
            let cas = store.list_cas().await?;
            tls.refuse_own_cas(&cas)?;
            tls.trust_devices_of(&cas);
            tracing::info!("{}", tls.describe());
        }

        let policy = settings.issuance_policy();
        let profile = DeviceProfile {
            validity: TimeDuration::days(settings.policy.validity_days),
            backdate: TimeDuration::try_from(settings.policy.backdate_secs)
                .context("policy.backdate_secs is out of range")?,
            crl_distribution_point: settings.revocation.crl_distribution_point_url.clone(),
        };
        let issuance = IssuanceService::new(
            store.clone(),
            policy,
            profile,
            settings.policy.duplicate_thing_name,
            ca,
        );
        let issuance = if settings.database.group_commit {
            issuance.with_group_commit(crate::store::ledger_writer::GroupCommitConfig {
                max_batch: settings.database.group_commit_max_batch,
                writers: settings
                    .database
                    .group_commit_writers
                    .min(settings.database.max_connections) as usize,
            })
        } else {
            issuance
        };
        let est_labels = est_label_cas(&settings, &store, &keys, &issuance.issuing_ca()).await?;
        let addr = settings.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
        let metrics_listener = match (settings.metrics.enabled, settings.metrics.listen) {
            (true, Some(addr)) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?,
            ),
            _ => None,
        };
        if settings.metrics.enabled {
            crate::telemetry::prometheus();
        }
        let files = files::raise_open_file_limit();
        let cap = files::connection_cap(
            settings.server.max_connections,
            files.soft,
            settings.database.max_connections,
        );
        let show = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
        if cap < settings.server.max_connections {
            tracing::warn!(
                "open files: soft limit {} (was {}, hard {}); at most {cap} connections, fewer \
                 than server.max_connections = {} to stay below the file limit: raise the hard \
                 limit (LimitNOFILE, ulimit -Hn)",
                show(files.soft),
                show(files.before),
                show(files.hard),
                settings.server.max_connections
            );
        } else {
            tracing::info!(
                "open files: soft limit {} (was {}, hard {}); at most {cap} connections \
                 (server.max_connections)",
                show(files.soft),
                show(files.before),
                show(files.hard)
            );
        }
        let limits = crate::http::server::ConnectionLimits::new(&settings.server, cap);
        // One token bucket per target: each (region, account) has its own AWS rates.
        let aws_targets: Vec<crate::aws::AwsTargetRegistry> = targets
            .into_iter()
            .map(|(target, registry)| {
                let pace = crate::aws::throttled::Pace {
                    rate_per_sec: target.api_rate_per_sec,
                    burst: target.api_burst,
                    throttle_retries: settings.aws.throttle_retries,
                };
                let metered: Arc<dyn IotRegistry> = Arc::new(
                    crate::aws::metered::MeteredRegistry::new(registry, &target.name),
                );
                let throttled = crate::aws::throttled::ThrottledRegistry::new(metered, pace)
                    .for_target(&target.name);
                crate::aws::AwsTargetRegistry {
                    account: target
                        .role_arn
                        .as_deref()
                        .and_then(crate::aws::role_account),
                    name: target.name,
                    region: target.region,
                    registry: Arc::new(throttled),
                    push_concurrency: target.revocation_push_concurrency as usize,
                }
            })
            .collect();
        let iot = aws_targets.first().map(|t| t.registry.clone());
        let device_trust = tls.as_ref().map(|t| t.device_trust());
        Ok(Application {
            listener,
            tls,
            metrics_listener,
            limits,
            state: AppState::new(AppStateInner {
                store,
                reads,
                keys,
                audit_key,
                issuance: Arc::new(issuance),
                iot,
                aws_targets: Arc::new(aws_targets),
                station_limiter: Arc::new(StationRateLimiter::new(
                    settings.server.station_rate_per_sec,
                    settings.server.station_burst,
                )),
                rejections: Arc::new(RejectionCounter::new()),
                sign_in: Arc::new(crate::services::sign_in::SignInGuard::new()),
                tokens: Arc::new(crate::services::tokens::TokenCache::new(
                    settings.server.token_cache_secs,
                )),
                store_health: crate::services::store_health::StoreHealth::new(),
                crls: Arc::new(crate::services::crl::CrlPublisher::new(
                    &settings.revocation,
                )),
                bulk_revocations: Arc::new(crate::services::bulk_revocation::BulkRevocations::new(
                    settings.revocation.bulk_batch_size,
                )),
                syncs: Arc::default(),
                device_trust,
                est_labels: Arc::new(est_labels),
                health_cache: Arc::default(),
                settings: Arc::new(settings),
            }),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// `https` with `[server.tls]`, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The port of `metrics.listen`, when metrics have an address of their own.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener.as_ref().map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown::shutdown_signal()).await
    }

    /// Serves until `signal` completes, then stops accepting connections and lets in-flight
    /// requests finish for at most `server.shutdown_grace_secs`.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = self.state.settings.server.shutdown_grace_secs;
        let store = self.state.store.clone();
        let rejections = self.state.rejections.clone();
        let audit_key = self.state.audit_key.clone();
        let checkpoints_enabled = self.state.settings.ledger.checkpoints_enabled();
        let syncs = self.state.syncs.clone();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let mut jobs = jobs::background_jobs(&self.state);
        if let Some(listener) = self.metrics_listener {
            let metrics = crate::http::routes::metrics::separate_router(self.state.clone());
            // A scraper needs few connections; the metrics port must not eat the file limit.
            let mut limits = self.limits.clone();
            limits.max_connections = limits.max_connections.min(64);
            jobs.push(tokio::spawn(crate::http::server::serve(
                listener,
                None,
                metrics,
                limits,
                std::future::pending(),
            )));
        }
        let app = crate::http::router(self.state);
        let signal = async move {
            signal.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            let _ = stopping_tx.send(());
        };
        // Plain HTTP and HTTPS share one accept loop and its limits.
        let server = crate::http::server::serve(self.listener, self.tls, app, self.limits, signal);
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!("shutdown grace period over; dropping remaining requests"),
        }
        // The last flush runs after the flush job has finished, so no counts are in flight.
        jobs.stop().await;
        syncs.release(&store).await;
        if let Err(e) = rejections.flush(&store).await {
            tracing::warn!(error = %e, "rejection counts of the last seconds were not saved");
        }
        if checkpoints_enabled {
            // The records of the last moments get their checkpoint now, not at the next start.
            let last = crate::services::ledger::checkpoint_chains(
                &store,
                &audit_key,
                crate::services::ledger::CheckpointWhen::Pending,
                crate::store::Timestamp::now(),
            );
            match tokio::time::timeout(std::time::Duration::from_secs(5), last).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "no ledger checkpoint at shutdown"),
                Err(_) => tracing::warn!("no ledger checkpoint at shutdown: the store is slow"),
            }
        }
        store.close().await;
        Ok(())
    }
}

/// The CAs of `[est.labels]`, each loaded with its key; an unknown CA id fails the start.
async fn est_label_cas(
    settings: &Settings,
    store: &Store,
    keys: &KeyStore,
    issuing: &Arc<crate::ca::CertificateAuthority>,
) -> anyhow::Result<std::collections::BTreeMap<String, Arc<crate::ca::CertificateAuthority>>> {
    let ca_admin = CaAdmin::new(store, keys);
    let mut labels = std::collections::BTreeMap::new();
    for (label, ca_id) in &settings.est.labels {
        if ca_id == issuing.id() {
            labels.insert(label.clone(), Arc::clone(issuing));
            continue;
        }
        let ca = ca_admin.load_by_id(ca_id).await.with_context(|| {
            format!(
                "est.labels.{label} = {ca_id:?}: no usable CA with this id (factory-ca ca list \
                 shows the ids)"
            )
        })?;
        labels.insert(label.clone(), Arc::new(ca));
    }
    Ok(labels)
}

/// The ledger audit key, generated on first start. Warns when the chains' latest checkpoints
/// were signed by another key: replicas must share the data directory's `keys/`, or each
/// signs with a key of its own and `ledger verify` trusts only one of them.
async fn load_audit_key(
    settings: &Settings,
    store: &Store,
    keys: &KeyStore,
) -> anyhow::Result<crate::keys::AuditKey> {
    let key = keys.audit_key().await.with_context(|| {
        format!(
            "cannot load or create the ledger audit key ({} under data_dir)",
            crate::keys::AUDIT_KEY_FILE
        )
    })?;
    if !settings.ledger.checkpoints_enabled() {
        tracing::warn!(
            "ledger checkpoints are off (ledger.checkpoint_every_records and \
             ledger.checkpoint_interval_secs are 0): nothing signs the chains' heads"
        );
    }
    for state in store.checkpoint_states().await? {
        let Some(seq) = state.last_seq else { continue };
        let last = store.checkpoints_page(&state.ca_id, seq - 1, 1).await?;
        if let Some(cp) = last.first()
            && cp.key_id != key.key_id()
        {
            tracing::warn!(
                ca_id = %state.ca_id,
                checkpoint_key_id = %cp.key_id,
                key_id = %key.key_id(),
                "the chain's last checkpoint was signed by another audit key than this data \
                 directory's: give every replica the same keys/ledger-audit.key.pem"
            );
        }
    }
    tracing::info!(key_id = %key.key_id(), "ledger audit key loaded");
    Ok(key)
}

/// The issuing CA, created on first start when configured (the development default).
async fn ensure_issuing_ca(
    settings: &Settings,
    store: &Store,
    keys: &KeyStore,
) -> anyhow::Result<crate::ca::CertificateAuthority> {
    let ca_admin = CaAdmin::new(store, keys);
    if let Some(ca) = ca_admin.load_issuing().await? {
        return Ok(ca);
    }
    if !settings.ca.create_on_first_start {
        anyhow::bail!(
            "there is no issuing CA: create one with `factory-ca ca create` or import one with \
             `factory-ca ca import --cert F --key F` (or set ca.create_on_first_start = true)"
        );
    }
    let (record, ca) = ca_admin
        .create(
            settings.ca.algorithm,
            &settings.ca.subject,
            settings.ca.validity_days,
            true,
            Actor::system("system:first-start"),
        )
        .await?;
    tracing::warn!(
        ca_id = %record.id,
        subject = %record.subject,
        "created a development CA because the store had none (ca.create_on_first_start); \
         for production, create or import the CA on purpose"
    );
    Ok(ca)
}
