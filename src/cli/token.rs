//! `factory-ca token ...`: create, list and revoke API tokens.

use clap::Subcommand;

use factory_ca::config::Settings;
use factory_ca::services::tokens::{self, Role};

use super::{CLI_ACTOR, open_store};

#[derive(Subcommand)]
pub enum TokenCommand {
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

pub async fn run(command: TokenCommand, settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    match command {
        TokenCommand::Create { role, name } => {
            let secret = tokens::create_token(&store, &name, role, CLI_ACTOR.name, None).await?;
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
