//! The revocation upkeep job of a running service, every `revocation.check_interval_secs` and
//! at once when a bulk revocation is submitted or a certificate revoked: runs unfinished bulk revocation jobs (after a
//! restart, the ones it interrupted), then signs the CRLs that are due (behind their
//! revocations, or near their nextUpdate). Errors are logged and retried on the next round. At
//! shutdown the job is aborted: an unfinished batch or CRL build rolls back, and a bulk job
//! resumes from its last committed batch on the next start.

use super::AppState;

pub(super) fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.revocation.check_interval_secs);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = state.bulk_revocations.submitted() => {}
                () = state.crls.revoked() => {}
            }
            run_bulk_revocations(&state).await;
            refresh_crls(&state).await;
        }
    })
}

async fn run_bulk_revocations(state: &AppState) {
    if let Err(e) = state.bulk_revocations.run_unfinished(&state.store).await {
        tracing::warn!(error = %e, "bulk revocation interrupted; will resume");
    }
}

async fn refresh_crls(state: &AppState) {
    let now = time::OffsetDateTime::now_utc();
    if let Err(e) = state
        .crls
        .refresh_due(&state.store, &state.crl_cas(), now)
        .await
    {
        tracing::warn!(error = %e, "CRL upkeep: store unavailable; will retry");
    }
}
