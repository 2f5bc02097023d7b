//! The revocation upkeep job of a running service: signs the CRLs that are due (behind their
//! revocations, or near their nextUpdate) every `revocation.check_interval_secs`. Errors are
//! logged and retried on the next round; at shutdown the job is aborted (an unfinished build
//! stores nothing, its number is skipped).

use super::AppState;

pub(super) fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.revocation.check_interval_secs);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh_crls(&state).await;
        }
    })
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
