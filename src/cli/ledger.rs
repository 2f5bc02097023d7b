//! `factory-ca ledger ...`: the tamper-evident ledger's proofs. `verify` recomputes every
//! CA's hash chain from the ledger rows and exits non-zero naming the first record that does
//! not match.

use clap::Subcommand;

use factory_ca::config::Settings;
use factory_ca::services::ledger;

use super::{StoreNeed, open_store};

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Recompute the hash chain of every CA (or one) and name the first record that does not
    /// match; exits with status 1 when any does.
    Verify {
        /// Only this CA (an id as `ca list` shows it).
        #[arg(long = "ca", value_name = "ID")]
        ca_id: Option<String>,
    },
}

pub async fn run(command: LedgerCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings, StoreNeed::Existing).await?;
    match command {
        LedgerCommand::Verify { ca_id } => {
            let results = ledger::verify(&store, ca_id.as_deref()).await?;
            let mut failed = Vec::new();
            for r in &results {
                match &r.mismatch {
                    None => println!(
                        "{}\tok\t{} records\t{:.2} s",
                        r.ca_id, r.verified, r.seconds
                    ),
                    Some(m) => {
                        println!(
                            "{}\tmismatch\trecord {}\t{}\t{}",
                            r.ca_id,
                            m.seq,
                            m.serial.as_deref().unwrap_or("-"),
                            m.problem
                        );
                        failed.push(format!("CA {}: {}", r.ca_id, m.problem));
                    }
                }
            }
            if !failed.is_empty() {
                anyhow::bail!(
                    "the ledger does not match its hash chain: {}",
                    failed.join("; ")
                );
            }
            eprintln!("every record of {} CA chain(s) matches", results.len());
        }
    }
    Ok(())
}
