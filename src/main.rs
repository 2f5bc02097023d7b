//! The `factory-ca` command line: `serve` (the default), `migrate`, `ca ...`, `token ...`.
//! Every command reads the same layered configuration and works on the same store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use zeroize::Zeroizing;

use factory_ca::app::Application;
use factory_ca::auth::{self, Role};
use factory_ca::authorities::{Actor, Authorities, KeyFileOutcome};
use factory_ca::ca::{CaAlgorithm, CaSubject};
use factory_ca::config::Settings;
use factory_ca::keystore::PassphraseSource;
use factory_ca::store::Store;
use factory_ca::telemetry;

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
    Ca(CaCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Simulate stations: post N fresh CSRs over C connections and report throughput and latency.
    Bench(factory_ca::bench::BenchArgs),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Generate a new root CA (becomes the issuing CA if there is none, or with --activate).
    Create(CaCreate),
    /// Import an existing CA certificate and private key (PEM).
    Import {
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The private key: PKCS#8, PKCS#1 or SEC1, or encrypted PKCS#8 with a passphrase.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// For an encrypted key: the environment variable holding its passphrase.
        #[arg(long, value_name = "NAME", conflicts_with = "key_passphrase_file")]
        key_passphrase_env: Option<String>,
        /// For an encrypted key: an owner-only file holding its passphrase (one line).
        #[arg(long, value_name = "FILE")]
        key_passphrase_file: Option<PathBuf>,
        /// Make it the issuing CA now (restart running services to pick it up).
        #[arg(long)]
        activate: bool,
    },
    /// List the CAs in the store.
    List,
    /// Make an existing CA the issuing CA (restart running services to pick it up).
    Activate { id: String },
    /// Encrypt every unencrypted CA key file in place with the configured passphrase
    /// (ca.key_passphrase_env or ca.key_passphrase_file).
    EncryptKeys,
}

#[derive(Args)]
struct CaCreate {
    /// ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096.
    #[arg(long, value_parser = parse_algorithm)]
    algorithm: Option<CaAlgorithm>,
    /// Subject CommonName.
    #[arg(long)]
    common_name: Option<String>,
    /// Subject Country (ISO 3166-1 alpha-2).
    #[arg(long)]
    country: Option<String>,
    /// Subject State or Province.
    #[arg(long)]
    state: Option<String>,
    /// Subject Locality.
    #[arg(long)]
    locality: Option<String>,
    /// Subject Organization.
    #[arg(long)]
    organization: Option<String>,
    /// Subject Organizational Unit.
    #[arg(long)]
    organizational_unit: Option<String>,
    /// Validity in days.
    #[arg(long)]
    validity_days: Option<i64>,
    /// Make it the issuing CA now (restart running services to pick it up).
    #[arg(long)]
    activate: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints only the secret on stdout (shown once).
    Create {
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke the live token with this name.
    Revoke { name: String },
}

fn parse_algorithm(s: &str) -> Result<CaAlgorithm, String> {
    CaAlgorithm::from_name(s).ok_or_else(|| {
        format!(
            "unknown algorithm; use one of {}",
            CaAlgorithm::NAMES.join(", ")
        )
    })
}

const CLI_ACTOR: Actor<'static> = Actor {
    name: "cli",
    request_id: None,
};

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
    telemetry::init(&settings.log);
    match run(cli.command.unwrap_or(Command::Serve), settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("factory-ca: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = Store::connect(&settings).await?;
            store.migrate().await?;
            eprintln!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Ca(command) => ca_command(command, settings).await,
        Command::Token(command) => token_command(command, settings).await,
        Command::Bench(args) => factory_ca::bench::run(args).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let store = app.state().store.clone();
    // First start: the token table has never held a token. (Not "no live admin token": an
    // admin who revoked every admin token recovers with `factory-ca token create`, and a
    // secret printed on every restart would end up in log archives.)
    if store.has_no_tokens().await? {
        match auth::create_token(
            &store,
            "bootstrap-admin",
            Role::Admin,
            "system:first-start",
            None,
        )
        .await
        {
            Ok(secret) => eprintln!(
                "\n  First start: an admin token was created. It is shown only this once:\n\n    \
                 {}\n\n  Create a station token with it:\n    curl -H \"Authorization: Bearer <admin token>\" \
                 -H 'Content-Type: application/json' \\\n      -d '{{\"name\": \"line-1\", \"role\": \"station\"}}' \
                 {}://{}/v1/admin/tokens\n  or on this machine: factory-ca token create --role station --name line-1\n",
                secret.expose(),
                app.scheme(),
                app.state().settings.server.listen
            ),
            // Another replica starting at the same moment made it.
            Err(auth::TokenError::NameTaken(_)) => {}
            Err(e) => return Err(e).context("cannot create the bootstrap admin token"),
        }
    }
    let ca = app.state().issuance.issuing_ca();
    tracing::info!(
        listen = %app.state().settings.server.listen,
        port = app.port(),
        store = store.backend(),
        issuing_ca = %ca.id(),
        "factory-ca listening"
    );
    app.run_until_stopped().await
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings).await?;
    store.migrate().await?;
    Ok(store)
}

async fn ca_command(command: CaCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let authorities = Authorities::new(&store, &settings);
    match command {
        CaCommand::Create(args) => {
            let defaults = &settings.ca;
            let subject = CaSubject {
                common_name: args
                    .common_name
                    .unwrap_or(defaults.subject.common_name.clone()),
                country: args.country.or(defaults.subject.country.clone()),
                state: args.state.or(defaults.subject.state.clone()),
                locality: args.locality.or(defaults.subject.locality.clone()),
                organization: args.organization.or(defaults.subject.organization.clone()),
                organizational_unit: args
                    .organizational_unit
                    .or(defaults.subject.organizational_unit.clone()),
            };
            let (record, _) = authorities
                .create(
                    args.algorithm.unwrap_or(defaults.algorithm),
                    &subject,
                    args.validity_days.unwrap_or(defaults.validity_days),
                    args.activate,
                    CLI_ACTOR,
                )
                .await?;
            print_ca(&record);
        }
        CaCommand::Import {
            cert,
            key,
            key_passphrase_env,
            key_passphrase_file,
            activate,
        } => {
            let cert_pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let key_pem = Zeroizing::new(
                std::fs::read_to_string(&key)
                    .with_context(|| format!("cannot read {}", key.display()))?,
            );
            // The passphrase of the key being imported, which need not be the one keys are
            // stored with; never an argument value, which other local users could read.
            let source = match (key_passphrase_env, key_passphrase_file) {
                (Some(name), _) => Some(PassphraseSource::Env(name)),
                (None, Some(path)) => Some(PassphraseSource::File(path)),
                (None, None) => None,
            };
            let key_passphrase = source
                .map(|s| s.read(settings.ca.allow_insecure_key_permissions))
                .transpose()?;
            let (record, _) = authorities
                .import(&cert_pem, &key_pem, key_passphrase, activate, CLI_ACTOR)
                .await?;
            print_ca(&record);
        }
        CaCommand::List => {
            for record in store.list_cas().await? {
                print_ca(&record);
            }
        }
        CaCommand::Activate { id } => {
            authorities.activate(&id, CLI_ACTOR).await?;
            if let Some(record) = store.get_ca(&id).await? {
                print_ca(&record);
            }
            eprintln!("{id} is now the issuing CA; restart running factory-ca services to use it");
        }
        CaCommand::EncryptKeys => {
            let mut failed = 0;
            for (id, outcome) in authorities.encrypt_key_files(CLI_ACTOR).await? {
                match outcome {
                    KeyFileOutcome::Encrypted => println!("{id}\tencrypted"),
                    KeyFileOutcome::AlreadyEncrypted => println!("{id}\talready encrypted"),
                    KeyFileOutcome::Failed(message) => {
                        failed += 1;
                        println!("{id}\tfailed\t{message}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} CA key file(s) could not be encrypted; see above");
            }
        }
    }
    Ok(())
}

fn print_ca(r: &factory_ca::store::CaRecord) {
    println!(
        "{}\t{}\t{}\t{}\tnot_after={}\t{}",
        r.id,
        if r.is_issuing { "issuing" } else { "-" },
        r.key_algorithm,
        r.source,
        factory_ca::http::rfc3339_string(r.not_after),
        r.subject
    );
}

async fn token_command(command: TokenCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    match command {
        TokenCommand::Create { role, name } => {
            let secret = auth::create_token(&store, &name, role, CLI_ACTOR.name, None).await?;
            println!("{}", secret.expose());
        }
        TokenCommand::List => {
            for t in store.list_tokens().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.name,
                    t.role,
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    factory_ca::http::rfc3339_string(t.created_at)
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !auth::revoke_token(&store, &name, CLI_ACTOR.name, None).await? {
                anyhow::bail!("no live token named {name:?}");
            }
            eprintln!("revoked {name}");
        }
    }
    Ok(())
}
