//! The command groups of the `factory-ca` binary. Every command reads the same layered
//! configuration and works on the same store, and audits as the actor `cli`.

use factory_ca::config::Settings;
use factory_ca::services::ca_admin::Actor;
use factory_ca::store::{Existence, Store, describe_location};

pub mod backup;
pub mod ca;
pub mod certificate;
pub mod ledger;
pub mod revocation;
pub mod serve;
pub mod token;

/// The audit actor of every command-line change.
pub const CLI_ACTOR: Actor<'static> = Actor::system("cli");

/// A `--*-after`/`--*-before` argument: an RFC 3339 instant.
pub fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time like 2026-11-01T00:00:00Z: {e}"))
}

/// What a command needs of the store it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreNeed {
    /// It may start a new store (`ca create`, `ca import`: the first thing a deployment does).
    MayCreate,
    /// A store that exists and holds a CA: every other command. Run from the wrong directory
    /// it would otherwise work on a new, empty ledger that the running service never reads.
    Existing,
}

/// The configured store, migrated, after saying on stderr which one it is. Refuses, with what to
/// do, a missing store or one without a CA unless the command may create one.
pub async fn open_store(settings: &Settings, need: StoreNeed) -> anyhow::Result<Store> {
    let location = describe_location(settings);
    let (store, existence) = Store::probe_existing(settings).await?;
    match (need, existence) {
        (StoreNeed::Existing, Existence::Missing) => anyhow::bail!(
            "there is no factory-ca store at {location}. Run this command with the settings of \
             the running service (its working directory, --config FILE or FACTORY_CA_* \
             variables); to start a new store, create its CA first: factory-ca ca create"
        ),
        (StoreNeed::Existing, Existence::NoCa) => anyhow::bail!(
            "the store at {location} holds no CA, so no service issues from it. Check that this \
             is the service's store (its working directory, --config FILE or FACTORY_CA_* \
             variables), or create the CA first: factory-ca ca create"
        ),
        (StoreNeed::MayCreate, Existence::Missing) => {
            eprintln!("factory-ca: creating a new store: {location}")
        }
        _ => eprintln!("factory-ca: store: {location}"),
    }
    let store = match store {
        Some(store) => store,
        None => Store::connect(settings).await?,
    };
    store.migrate().await?;
    Ok(store)
}
