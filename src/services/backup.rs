//! Backup and restore of one deployment: the SQLite ledger as an online snapshot (on
//! PostgreSQL the ledger is PostgreSQL's to back up, with `pg_dump`), the CA key files as they
//! are at rest (encrypted where a passphrase is set; a key in a PKCS#11 token is a reference in
//! the ledger and stays in its HSM), the settings in force without secrets,
//! and a manifest with the SHA-256 of every file. A restore checks the manifest first, writes
//! only into an empty data directory and never overwrites a file.
//!
//! The layout of a backup directory:
//!
//! ```text
//! manifest.json            format, time, version, ledger kind, every file with its SHA-256
//! settings.json            the settings in force; the database password replaced
//! ledger/factory-ca.db     SQLite only: the snapshot
//! data/keys/<ca>.key.pem   each CA's key file, by its path relative to data_dir
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::keys::KeyRef;
use crate::store::Store;
use crate::store::backup::sqlite_file;

const MANIFEST: &str = "manifest.json";
const SETTINGS: &str = "settings.json";
const LEDGER: &str = "ledger/factory-ca.db";
const FORMAT: u32 = 1;

/// What a backup holds of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    /// `ledger/factory-ca.db`, a snapshot of the SQLite ledger.
    Sqlite,
    /// Not included: back the PostgreSQL database up with `pg_dump`.
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    pub factory_ca_version: String,
    pub ledger: LedgerKind,
    pub files: Vec<ManifestFile>,
}

/// Writes a backup of the deployment `settings` describe into `out`, which must not exist or
/// be an empty directory. The service may keep serving meanwhile.
pub async fn backup(settings: &Settings, store: &Store, out: &Path) -> anyhow::Result<Manifest> {
    if out.exists() {
        let mut entries =
            std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; give a new or empty directory (a backup never overwrites)",
                out.display()
            );
        }
    }
    private_dir(out)?;
    let ledger = if sqlite_file(settings).is_some() {
        private_dir(&out.join("ledger"))?;
        store
            .snapshot_sqlite(&out.join(LEDGER))
            .await
            .context("the SQLite snapshot failed")?;
        restrict(&out.join(LEDGER))?;
        LedgerKind::Sqlite
    } else {
        LedgerKind::Postgres
    };
    // After the snapshot: every CA the snapshot holds is listed here too (CAs are never
    // deleted), so every key the restored ledger names is in the backup.
    for ca in store.list_cas().await? {
        let relative = match KeyRef::parse(&ca.key_file)? {
            KeyRef::File(relative) => relative,
            // A token key never leaves its HSM: the ledger's key URI is the whole reference,
            // and the HSM is backed up by its own means.
            KeyRef::Pkcs11(_) => continue,
        };
        let relative = checked_relative(&relative.to_string_lossy())
            .with_context(|| format!("the key file of CA {}", ca.id))?;
        let source = settings.data_dir.join(&relative);
        let bytes = std::fs::read(&source).with_context(|| {
            format!("cannot read the key of CA {}: {}", ca.id, source.display())
        })?;
        write_new(&out.join("data").join(&relative), &bytes)?;
    }
    let shown = serde_json::to_vec_pretty(&settings_without_secrets(settings))?;
    write_new(&out.join(SETTINGS), &shown)?;

    let mut files = Vec::new();
    for path in files_under(out)? {
        let bytes = std::fs::read(out.join(&path))?;
        files.push(ManifestFile {
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
            path,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        factory_ca_version: env!("CARGO_PKG_VERSION").to_owned(),
        ledger,
        files,
    };
    write_new(&out.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

/// Restores the backup in `from` into the data directory (and SQLite file) `settings` name.
/// Checks the manifest against every file first; refuses a data directory that is not empty
/// and a ledger of the other kind than the settings use.
pub fn restore(settings: &Settings, from: &Path) -> anyhow::Result<Manifest> {
    let manifest = verify(from)?;
    let sqlite = sqlite_file(settings);
    match (manifest.ledger, &sqlite) {
        (LedgerKind::Sqlite, None) => bail!(
            "this backup holds a SQLite ledger, but database.url names PostgreSQL; restore with \
             the settings of a SQLite deployment"
        ),
        (LedgerKind::Postgres, Some(_)) => bail!(
            "this backup comes from a PostgreSQL deployment (its ledger is restored with \
             pg_restore), but database.url names SQLite; set database.url to the restored \
             PostgreSQL database"
        ),
        _ => {}
    }
    let data_dir = &settings.data_dir;
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .with_context(|| format!("cannot read {}", data_dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "the data directory {} is not empty; restore into a new or empty one (a restore \
             never overwrites)",
            data_dir.display()
        );
    }
    if let Some(file) = &sqlite
        && file.exists()
    {
        bail!(
            "{} exists; a restore never overwrites a ledger",
            file.display()
        );
    }
    private_dir(data_dir)?;
    for file in &manifest.files {
        let bytes = std::fs::read(from.join(&file.path))?;
        if let Some(relative) = file.path.strip_prefix("data/") {
            write_new(&data_dir.join(relative), &bytes)?;
        } else if file.path == LEDGER {
            let target = sqlite.as_ref().expect("checked above");
            write_new(target, &bytes)?;
        }
    }
    Ok(manifest)
}

/// Reads the manifest of `dir` and checks that the files are exactly those it lists, each
/// with its SHA-256.
pub fn verify(dir: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read(dir.join(MANIFEST))
        .with_context(|| format!("{} has no readable {MANIFEST}", dir.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{MANIFEST} is not a factory-ca backup manifest"))?;
    if manifest.format != FORMAT {
        bail!(
            "{MANIFEST} has format {}; this release reads format {FORMAT}",
            manifest.format
        );
    }
    let listed: BTreeMap<&str, &ManifestFile> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    for path in listed.keys() {
        checked_relative(path)?;
    }
    let present = files_under(dir)?;
    for path in &present {
        if path != MANIFEST && !listed.contains_key(path.as_str()) {
            bail!("{path} is in the backup but not in its manifest");
        }
    }
    for (path, file) in &listed {
        let bytes = std::fs::read(dir.join(path))
            .with_context(|| format!("{path} is in the manifest but missing or unreadable"))?;
        if hex::encode(Sha256::digest(&bytes)) != file.sha256 {
            bail!("{path} does not match its SHA-256 in the manifest: the backup is damaged");
        }
    }
    if (manifest.ledger == LedgerKind::Sqlite) != listed.contains_key(LEDGER) {
        bail!("the manifest's ledger kind and its files disagree");
    }
    Ok(manifest)
}

/// The settings as JSON, with the password of `database.url` replaced.
fn settings_without_secrets(settings: &Settings) -> serde_json::Value {
    let mut value = serde_json::to_value(settings).expect("settings serialize");
    let url = settings.database.url.expose();
    value["database"]["url"] = serde_json::Value::String(redact_password(url));
    value
}

/// `scheme://user:password@host/db` -> `scheme://user:[redacted]@host/db`; also a `password=`
/// query parameter.
fn redact_password(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        shown = format!("{scheme}://{user}:[redacted]@{host}");
    }
    if let Some(at) = shown.find("password=") {
        let end = shown[at..].find('&').map_or(shown.len(), |e| at + e);
        shown.replace_range(at..end, "password=[redacted]");
    }
    shown
}

/// A relative path without `..`, as manifests and key records must hold.
fn checked_relative(path: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(path);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || path.as_os_str().is_empty() {
        bail!("{} is not a plain relative path", path.display());
    }
    Ok(path)
}

/// Every regular file under `dir`, as relative paths with `/`, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                found.push(path.to_string_lossy().replace('\\', "/"));
            } else {
                bail!("{} is neither a file nor a directory", path.display());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Creates `dir` (and its parents) and makes it owner-only.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn restrict(file: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = file;
    Ok(())
}

/// Writes a new owner-only file (refusing an existing one), creating owner-only parents.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    let mut file = crate::keys::files::create_owner_only(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_saved_settings() {
        assert_eq!(
            redact_password("postgres://ca:s3cret@db:5432/ledger?sslmode=require"),
            "postgres://ca:[redacted]@db:5432/ledger?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://db/ledger?user=ca&password=s3cret&sslmode=require"),
            "postgres://db/ledger?user=ca&password=[redacted]&sslmode=require"
        );
        assert_eq!(redact_password(""), "");
    }

    #[test]
    fn manifest_paths_stay_inside_the_backup() {
        assert!(checked_relative("data/keys/ca.key.pem").is_ok());
        for bad in ["../x", "/etc/passwd", "data/../../x", ""] {
            assert!(checked_relative(bad).is_err(), "{bad}");
        }
    }
}
