//! The command groups of the `factory-ca` binary. Every command reads the same layered
//! configuration and works on the same store, and audits as the actor `cli`.

use factory_ca::config::Settings;
use factory_ca::services::ca_admin::Actor;
use factory_ca::store::Store;

pub mod ca;
pub mod serve;
pub mod token;

/// The audit actor of every command-line change.
pub const CLI_ACTOR: Actor<'static> = Actor::system("cli");

/// The configured store, migrated.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings).await?;
    store.migrate().await?;
    Ok(store)
}
