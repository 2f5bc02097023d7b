//! The `factory-ca` command line: `serve` (the default), `migrate`, `ca ...`, `token ...`,
//! `certificate revoke`, `backup`, `restore`, `bench`. Parsing and dispatch only; each command
//! group lives in `src/cli/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use factory_ca::config::Settings;
use factory_ca::telemetry;

mod cli;

/// mimalloc instead of glibc's malloc: issuing a certificate allocates and frees many
/// small blocks across threads; glibc's malloc and free took ~117,000 instructions per
/// certificate (8 % of the service's), mimalloc ~40,000 (docs/benchmarks.md). It keeps more
/// memory: RSS settles near 62 MiB under load instead of ~30.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "factory-ca",
    version,
    about = "Private CA for AWS IoT Just-In-Time Provisioning"
)]
struct Cli {
    /// Configuration file (TOML), layered over config/default.toml; also FACTORY_CA_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage certificate authorities.
    #[command(subcommand)]
    Ca(cli::ca::CaCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
    /// Revoke certificates in bulk by a filter (dry run, jobs, resume).
    #[command(subcommand)]
    Revocation(cli::revocation::RevocationCommand),
    /// Revoke device certificates in the ledger.
    #[command(subcommand)]
    Certificate(cli::certificate::CertificateCommand),
    /// Write a backup (SQLite ledger snapshot, CA key files, settings, manifest) into a new
    /// directory while the service keeps serving.
    Backup {
        /// The backup directory: new, or empty.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Restore a backup into an empty data directory, after checking its manifest.
    Restore {
        /// A directory written by `factory-ca backup`.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
    /// The tamper-evident ledger: verify its hash chains and checkpoints, the audit key,
    /// checkpoints now, signed exports.
    #[command(subcommand)]
    Ledger(cli::ledger::LedgerCommand),
    /// Simulate stations: post N fresh CSRs over C connections and report throughput and latency.
    Bench(factory_ca::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("factory-ca: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = telemetry::init(&settings.log);
    let result = run(cli.command.unwrap_or(Command::Serve), settings).await;
    // Every queued log line is out before the last word on stderr.
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("factory-ca: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => cli::serve::serve(settings).await,
        Command::Migrate => cli::serve::migrate(settings).await,
        Command::Ca(command) => cli::ca::run(command, settings).await,
        Command::Token(command) => cli::token::run(command, settings).await,
        Command::Revocation(command) => cli::revocation::run(command, settings).await,
        Command::Certificate(command) => cli::certificate::run(command, settings).await,
        Command::Backup { out } => cli::backup::backup(settings, &out).await,
        Command::Restore { from } => cli::backup::restore(settings, &from).await,
        Command::Ledger(command) => cli::ledger::run(command, settings).await,
        Command::Bench(args) => factory_ca::bench::run(args).await,
    }
}
