//! `factory-ca revocation ...`: bulk revocation from the command line. `create` validates a
//! filter, then counts (`--dry-run`) or creates a job and runs it in the foreground with its
//! progress on stderr; `show` prints a job; `resume` runs the unfinished jobs. The same jobs as
//! `POST /v1/admin/revocations`: a job this command leaves unfinished (interrupted) is resumed
//! by a running service or by `resume`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use time::OffsetDateTime;

use factory_ca::ca::RevocationReason;
use factory_ca::config::Settings;
use factory_ca::services::bulk_revocation::BulkRevocations;
use factory_ca::store::bulk_revocation::{RevocationFilter, RevocationJob};

use super::{CLI_ACTOR, StoreNeed, open_store, parse_time};

#[derive(Subcommand)]
pub enum RevocationCommand {
    /// Revoke every active certificate that matches all the given criteria (at least one),
    /// or with --dry-run only count them and print the first ones.
    Create {
        /// Certificates issued by this CA (an id as `ca list` shows it).
        #[arg(long = "ca", value_name = "ID")]
        ca_id: Option<String>,
        /// Certificates requested by this station.
        #[arg(long)]
        station: Option<String>,
        /// Thing names starting with this (case-sensitive).
        #[arg(long, value_name = "PREFIX")]
        thing_name_prefix: Option<String>,
        /// Issued at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        issued_after: Option<OffsetDateTime>,
        /// Issued before this time (RFC 3339).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        issued_before: Option<OffsetDateTime>,
        /// This serial (40 hex characters); repeat for several, at most 1,000 in all.
        #[arg(long = "serial", value_name = "SERIAL")]
        serials: Vec<String>,
        /// A file of serials, one per line (blank lines and lines starting with # skipped).
        #[arg(long, value_name = "FILE")]
        serials_file: Option<PathBuf>,
        /// This thing name; repeat for several, at most 1,000 in all.
        #[arg(long = "thing-name", value_name = "NAME")]
        thing_names: Vec<String>,
        /// RFC 5280 CRLReason in snake_case: unspecified, key_compromise, ca_compromise,
        /// affiliation_changed, superseded, cessation_of_operation, privilege_withdrawn,
        /// aa_compromise.
        #[arg(long, default_value = "unspecified", value_parser = parse_reason)]
        reason: RevocationReason,
        /// Count and list the first matching certificates; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a job: id, status, reason, matched, revoked, times, filter.
    Show {
        /// The job id (`rev-...`).
        id: String,
    },
    /// Run every unfinished job to its end (a running service does this by itself).
    Resume,
}

fn parse_reason(text: &str) -> Result<RevocationReason, String> {
    RevocationReason::from_name(text).ok_or_else(|| {
        let names: Vec<_> = RevocationReason::ALL.iter().map(|r| r.name()).collect();
        format!("not one of {}", names.join(", "))
    })
}

pub async fn run(command: RevocationCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings, StoreNeed::Existing).await?;
    let bulk = BulkRevocations::new(settings.revocation.bulk_batch_size);
    match command {
        RevocationCommand::Create {
            ca_id,
            station,
            thing_name_prefix,
            issued_after,
            issued_before,
            mut serials,
            serials_file,
            thing_names,
            reason,
            dry_run,
        } => {
            if let Some(path) = serials_file {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                serials.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
            let filter = RevocationFilter {
                ca_id,
                station,
                thing_name_prefix,
                issued_after,
                issued_before,
                serials,
                thing_names,
            };
            let filter = bulk.validate(&store, filter).await?;
            if dry_run {
                let found = bulk.dry_run(&store, &filter).await?;
                println!("matched\t{}", found.matched);
                println!("SERIAL\tTHING_NAME\tCA\tSTATION\tISSUED_AT");
                for c in found.first {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        c.serial,
                        c.thing_name,
                        c.ca_id,
                        c.station,
                        c.issued_at.rfc3339()
                    );
                }
                return Ok(());
            }
            let (job, _) = bulk
                .submit(&store, &filter, reason, CLI_ACTOR, None)
                .await?;
            eprintln!(
                "job {} created: {} certificates match; revoking",
                job.id, job.matched
            );
            let interactive = std::io::stderr().is_terminal();
            let matched = job.matched;
            let job = bulk
                .run(&store, &job, |revoked| {
                    if interactive {
                        eprint!("\rrevoked {revoked} of {matched}");
                    }
                })
                .await?;
            if interactive {
                eprintln!();
            }
            print_job(&job);
        }
        RevocationCommand::Show { id } => print_job(&bulk.job(&store, &id).await?),
        RevocationCommand::Resume => {
            let finished = bulk.run_unfinished(&store).await?;
            eprintln!("{finished} unfinished job(s) run to their end");
        }
    }
    Ok(())
}

fn print_job(job: &RevocationJob) {
    println!("id\t{}", job.id);
    println!(
        "status\t{}",
        if job.is_finished() {
            "succeeded"
        } else {
            "running"
        }
    );
    println!("reason\t{}", job.reason.name());
    println!("matched\t{}", job.matched);
    println!("revoked\t{}", job.revoked);
    println!("actor\t{}", job.actor);
    println!("created_at\t{}", job.created_at.rfc3339());
    println!(
        "finished_at\t{}",
        job.finished_at.map(|t| t.rfc3339()).unwrap_or("-".into())
    );
    println!(
        "filter\t{}",
        serde_json::to_string(&job.filter).unwrap_or_default()
    );
}
