//! The ledger's part of a backup: an online snapshot of the SQLite database, taken by SQLite
//! itself while the service keeps writing (`VACUUM INTO`: one read transaction, so the copy is
//! a consistent state of the ledger, never a torn file copy), and where a restore puts it.

use std::path::{Path, PathBuf};

use super::{Store, StoreResult};
use crate::config::Settings;

/// The SQLite file the settings name; `None` for PostgreSQL (whose ledger `pg_dump` backs up)
/// and for an in-memory database.
pub fn sqlite_file(settings: &Settings) -> Option<PathBuf> {
    super::sqlite_path(&settings.database_url())
}

impl Store {
    /// Writes a consistent snapshot of the SQLite ledger to `target` (which must not exist).
    /// `None` on PostgreSQL: its ledger is PostgreSQL's to back up.
    pub async fn snapshot_sqlite(&self, target: &Path) -> StoreResult<Option<()>> {
        match self {
            Store::Postgres(_) => Ok(None),
            Store::Sqlite(pool) => {
                sqlx::query("VACUUM INTO $1")
                    .bind(target.to_string_lossy().into_owned())
                    .execute(pool)
                    .await?;
                Ok(Some(()))
            }
        }
    }
}
