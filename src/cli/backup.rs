//! `factory-ca backup --out DIR` and `factory-ca restore --from DIR` (see
//! `factory_ca::services::backup` for what a backup holds).

use std::path::Path;

use factory_ca::config::Settings;
use factory_ca::services::backup::{self, LedgerKind, Manifest};

use super::{StoreNeed, open_store};

/// Backs up the deployment the settings describe; the service may keep serving.
pub async fn backup(settings: Settings, out: &Path) -> anyhow::Result<()> {
    let store = open_store(&settings, StoreNeed::Existing).await?;
    let manifest = backup::backup(&settings, &store, out).await;
    store.close().await;
    let manifest = manifest?;
    print_files(&manifest);
    match manifest.ledger {
        LedgerKind::Sqlite => println!("ledger\tSQLite snapshot (ledger/factory-ca.db)"),
        LedgerKind::Postgres => println!(
            "ledger\tnot included: the ledger is in PostgreSQL; back it up with pg_dump \
             (docs/operations.md, Backup and restore)"
        ),
    }
    eprintln!("factory-ca: backup written to {}", out.display());
    Ok(())
}

/// Restores a backup into an empty data directory, after checking its manifest.
pub async fn restore(settings: Settings, from: &Path) -> anyhow::Result<()> {
    let manifest = backup::restore(&settings, from)?;
    print_files(&manifest);
    match manifest.ledger {
        LedgerKind::Sqlite => println!("ledger\trestored"),
        LedgerKind::Postgres => println!(
            "ledger\tnot included: restore the PostgreSQL ledger with pg_restore before \
             starting the service"
        ),
    }
    eprintln!(
        "factory-ca: restored {} into {}",
        from.display(),
        settings.data_dir.display()
    );
    Ok(())
}

fn print_files(manifest: &Manifest) {
    for file in &manifest.files {
        println!("{}\t{}\t{}", file.path, file.bytes, file.sha256);
    }
}
