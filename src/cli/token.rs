//! `factory-ca token ...`: create, list and revoke API tokens.

use clap::Subcommand;

use factory_ca::config::Settings;
use factory_ca::services::tokens::{self, Role};

use super::{CLI_ACTOR, StoreNeed, open_store};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints only the secret on stdout (shown once).
    Create {
        /// What the token may do: station (sign), viewer (read the ledger, the dashboard) or
        /// admin (everything).
        #[arg(long, value_enum)]
        role: Role,
        /// A name unique among live tokens: 1 to 64 characters of a-z A-Z 0-9 . _ -; stations
        /// are recorded in the ledger under it.
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets), with a header row.
    List,
    /// Revoke the live token with this name.
    Revoke {
        /// The token's name, as `token list` shows it.
        name: String,
    },
}

pub async fn run(command: TokenCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings, StoreNeed::Existing).await?;
    match command {
        TokenCommand::Create { role, name } => {
            let secret = tokens::create_token(&store, &name, role, CLI_ACTOR.name, None).await?;
            println!("{}", secret.expose());
        }
        TokenCommand::List => {
            println!("NAME\tROLE\tSTATUS\tCREATED_AT");
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
                    t.created_at.rfc3339()
                );
            }
        }
        TokenCommand::Revoke { name } => {
            if !tokens::revoke_token(&store, &name, CLI_ACTOR.name, None).await? {
                anyhow::bail!("no live token named {name:?}");
            }
            eprintln!("revoked {name}");
        }
    }
    Ok(())
}
