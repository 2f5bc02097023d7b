//! `factory-ca ca ...`: create, import, list and activate CAs; encrypt their key files.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use factory_ca::ca::{CaAlgorithm, CaSubject};
use factory_ca::config::Settings;
use factory_ca::keys::{KeyRef, KeyStore, PassphraseSource};
use factory_ca::services::ca_admin::{CaAdmin, KeyFileOutcome, NewCa};
use factory_ca::store::{CaRecord, PendingCaRecord};

use super::{CLI_ACTOR, StoreNeed, open_store};

#[derive(Subcommand)]
pub enum CaCommand {
    /// Generate a new root CA (becomes the issuing CA if there is none, or with --activate).
    Create(CaCreate),
    /// Import an existing CA certificate and private key (PEM).
    Import {
        /// The CA certificate (PEM): basicConstraints CA:TRUE and keyUsage keyCertSign.
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
        /// The certificates above the CA (PEM): its issuer and each one above it up to a
        /// self-signed root. Checked; issued chains then carry each intermediate.
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
        /// Make it the issuing CA now (restart running services to pick it up).
        #[arg(long)]
        activate: bool,
    },
    /// Install the certificate an offline root signed for a pending CA (`ca create
    /// --csr-out`). The CA is then recorded under the id its certificate gives it.
    Install {
        /// The pending CA's id, as `ca create --csr-out` and `ca list` show it.
        id: String,
        /// The CA certificate the root signed (PEM): it must match the CA's key, have
        /// basicConstraints CA:TRUE and keyUsage keyCertSign, and be valid now.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The certificates above it (PEM): each intermediate and the self-signed root.
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// Make it the issuing CA now (restart running services to pick it up).
        #[arg(long)]
        activate: bool,
    },
    /// List the CAs in the store, with a header row (pending CAs last).
    List,
    /// Make an existing CA the issuing CA (restart running services to pick it up).
    Activate {
        /// The CA's id (`ca-` and 16 hex digits), as `ca list` shows it.
        id: String,
    },
    /// Encrypt every unencrypted CA key file in place with the configured passphrase
    /// (ca.key_passphrase_env or ca.key_passphrase_file).
    EncryptKeys,
}

#[derive(Args)]
pub struct CaCreate {
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
    /// Keep the key in a PKCS#11 token: `pkcs11:token=<label>;object=<label>` (RFC 7512).
    /// Uses the key pair labelled `object`, or generates one inside the token (of --algorithm,
    /// or ca.algorithm). Module and PIN come from [pkcs11]; a PIN in the URI is refused.
    /// Or use a key in AWS KMS: `awskms:<key id, key ARN or alias/name>` (ECC_NIST_P256 or
    /// RSA_2048, SIGN_VERIFY), with the region, endpoint and credentials of [aws].
    #[arg(long, value_name = "URI", conflicts_with = "parent")]
    key_uri: Option<String>,
    /// Make a sub-CA signed by this CA we hold (its id, as `ca list` shows it) instead of a
    /// self-signed root; its key goes in a new file.
    #[arg(long, value_name = "CA_ID")]
    parent: Option<String>,
    /// With --parent: the directoryName subtree the sub-CA may sign, e.g. 'C=JP,O=Acme,OU=Line3'
    /// (a critical nameConstraints extension). Device subjects must begin with it.
    #[arg(long, value_name = "DN", requires = "parent")]
    name_constraints: Option<String>,
    /// With --parent: the pathLenConstraint (0: the sub-CA signs devices only).
    #[arg(long, value_name = "N", requires = "parent")]
    path_len: Option<u8>,
    /// The offline-root ceremony: make the key (in the token with --key-uri) and write a CSR
    /// for the CA certificate to FILE; the CA stays pending, and issues nothing, until
    /// `ca install`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["parent", "activate", "validity_days"])]
    csr_out: Option<PathBuf>,
}

fn parse_algorithm(s: &str) -> Result<CaAlgorithm, String> {
    CaAlgorithm::from_name(s).ok_or_else(|| {
        format!(
            "unknown algorithm; use one of {}",
            CaAlgorithm::NAMES.join(", ")
        )
    })
}

pub async fn run(command: CaCommand, settings: Settings) -> anyhow::Result<()> {
    let need = match command {
        CaCommand::Create(_) | CaCommand::Import { .. } => StoreNeed::MayCreate,
        _ => StoreNeed::Existing,
    };
    let store = open_store(&settings, need).await?;
    let keys = KeyStore::from_settings(&settings);
    let ca_admin = CaAdmin::new(&store, &keys);
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
            let validity_days = args.validity_days.unwrap_or(defaults.validity_days);
            if let Some(path) = &args.csr_out {
                let (pending, csr_pem) = ca_admin
                    .create_pending(
                        args.key_uri.as_deref(),
                        args.algorithm,
                        defaults.algorithm,
                        &subject,
                        CLI_ACTOR,
                    )
                    .await?;
                std::fs::write(path, &csr_pem)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                print_pending(&pending);
                eprintln!(
                    "{} is pending: have the offline root sign {}, then run factory-ca ca \
                     install {} --cert FILE --chain FILE",
                    pending.id,
                    path.display(),
                    pending.id
                );
                return Ok(());
            }
            let new = NewCa {
                algorithm: args.algorithm,
                subject,
                validity_days,
                activate: args.activate,
                key_uri: args.key_uri,
                parent_id: args.parent,
                name_constraints: args.name_constraints,
                path_len: args.path_len,
            };
            let (record, _) = ca_admin
                .create_ca(&new, defaults.algorithm, CLI_ACTOR)
                .await?;
            print_ca(&record);
        }
        CaCommand::Import {
            cert,
            key,
            key_passphrase_env,
            key_passphrase_file,
            chain,
            activate,
        } => {
            let chain_pem = chain
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))
                })
                .transpose()?;
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
            let (record, _) = ca_admin
                .import(
                    &cert_pem,
                    &key_pem,
                    key_passphrase,
                    chain_pem.as_deref(),
                    activate,
                    CLI_ACTOR,
                )
                .await?;
            print_ca(&record);
        }
        CaCommand::Install {
            id,
            cert,
            chain,
            activate,
        } => {
            let cert_pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let chain_pem = std::fs::read_to_string(&chain)
                .with_context(|| format!("cannot read {}", chain.display()))?;
            let (record, _) = ca_admin
                .install(&id, &cert_pem, &chain_pem, activate, CLI_ACTOR)
                .await?;
            print_ca(&record);
            eprintln!("pending CA {id} is installed as {}", record.id);
        }
        CaCommand::List => {
            println!("ID\tISSUING\tKEY\tSOURCE\tNOT_AFTER\tSUBJECT\tKEY_URI");
            for record in store.list_cas().await? {
                print_ca(&record);
            }
            for pending in store.list_pending_cas().await? {
                print_pending(&pending);
            }
        }
        CaCommand::Activate { id } => {
            ca_admin.activate(&id, CLI_ACTOR).await?;
            if let Some(record) = store.get_ca(&id).await? {
                print_ca(&record);
            }
            eprintln!("{id} is now the issuing CA; restart running factory-ca services to use it");
        }
        CaCommand::EncryptKeys => {
            let mut failed = 0;
            for (id, outcome) in ca_admin.encrypt_key_files(CLI_ACTOR).await? {
                match outcome {
                    KeyFileOutcome::Encrypted => println!("{id}\tencrypted"),
                    KeyFileOutcome::AlreadyEncrypted => println!("{id}\talready encrypted"),
                    KeyFileOutcome::InToken => println!("{id}\tin a PKCS#11 token (no file)"),
                    KeyFileOutcome::InKms => println!("{id}\tin AWS KMS (no file)"),
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

/// A pending CA in `ca list`'s columns: no certificate yet, so no validity.
fn print_pending(r: &PendingCaRecord) {
    println!(
        "{}\tpending\t{}\tpending\tnot_after=-\t{}\t{}",
        r.id,
        r.key_algorithm,
        r.subject,
        KeyRef::uri_of_record(&r.key_file)
    );
}

fn print_ca(r: &CaRecord) {
    println!(
        "{}\t{}\t{}\t{}\tnot_after={}\t{}\t{}",
        r.id,
        if r.is_issuing { "issuing" } else { "-" },
        r.key_algorithm,
        r.source,
        r.not_after.rfc3339(),
        r.subject,
        KeyRef::uri_of_record(&r.key_file)
    );
}
