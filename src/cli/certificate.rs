//! `factory-ca certificate ...`: revoke a certificate in the ledger, through the same service
//! function as `POST /v1/admin/certificates/{serial}/revoke`, audited as actor `cli`.

use clap::Subcommand;

use factory_ca::ca::authority::RevocationReason;
use factory_ca::config::Settings;
use factory_ca::services::revocation;

use super::{CLI_ACTOR, StoreNeed, open_store};

#[derive(Subcommand)]
pub enum CertificateCommand {
    /// Revoke an active certificate; the running service tells AWS IoT (the ledger row shows
    /// aws_revocation_pending until it has).
    Revoke {
        /// The certificate's serial: 40 hex characters, as the ledger and the API show it.
        serial: String,
        /// Why, as an RFC 5280 CRLReason: unspecified, key_compromise, ca_compromise,
        /// affiliation_changed, superseded, cessation_of_operation, privilege_withdrawn or
        /// aa_compromise.
        #[arg(long, value_parser = parse_reason, default_value = "unspecified")]
        reason: RevocationReason,
    },
}

fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    RevocationReason::from_name(s).ok_or_else(|| {
        let names: Vec<_> = RevocationReason::ALL.iter().map(|r| r.name()).collect();
        format!(
            "not a revocation reason; use one of {} (a revocation is final: certificate_hold \
             is not supported)",
            names.join(", ")
        )
    })
}

pub async fn run(command: CertificateCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings, StoreNeed::Existing).await?;
    match command {
        CertificateCommand::Revoke { serial, reason } => {
            let serial = revocation::revoke_certificate(&store, &serial, reason, CLI_ACTOR).await?;
            println!("{serial}\trevoked\t{}", reason.name());
            eprintln!(
                "revoked {serial} ({}); the running service tells AWS IoT when it is configured \
                 (aws.enabled), and the CRLs list it from now on",
                reason.name()
            );
        }
    }
    Ok(())
}
