//! Owner-only key files: read one that only its owner may read, write a new one in a directory
//! only the owner may list, and replace one atomically. Shared by the CA keys, the passphrase
//! file (`ca.key_passphrase_file`) and the TLS server key (`server.tls.key_file`).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::KeyError;

/// Reads a private key file that only its owner may read: group- or world-readable is refused,
/// or, when `allow_insecure` (the setting named `setting`) is on, only logged. A key that other
/// local users could copy is a compromised key. `what` names the key in messages.
pub(crate) fn read_owner_only_key_file(
    path: &Path,
    what: &str,
    setting: &str,
    allow_insecure: bool,
) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 && allow_insecure {
            tracing::warn!(
                path = %path.display(),
                "{what} file is readable by group or others (allowed by {setting})"
            );
        } else if mode & 0o077 != 0 {
            return Err(format!(
                "permissions are {:o}; the {what} must be readable by its owner only (chmod 600)",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (what, setting, allow_insecure);
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Creates a new file, for writing, that only the service's user can read; an existing file
/// is an error.
pub(crate) fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes a new key file that only the service's user can read, in a directory only it can
/// list. Never overwrites: an existing file is an error.
pub(super) fn write_key_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let err = |message: String| KeyError::file(path, message);
    let dir = path.parent().expect("key files live in a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| err(format!("cannot create the keys directory: {e}")))?;
    // An existing directory keeps its mode on create: tighten it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            err(format!(
                "cannot restrict the keys directory to its owner: {e}"
            ))
        })?;
    }
    let mut file = create_owner_only(path).map_err(|e| err(format!("cannot create: {e}")))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| err(format!("cannot write: {e}")))
}

/// Writes `text` to a new owner-only file in `path`'s directory, named after it with a random
/// part, and returns that file's path.
fn write_beside(path: &Path, text: &str) -> Result<PathBuf, KeyError> {
    let dir = path.parent().expect("key files live in a directory");
    let name = path
        .file_name()
        .expect("key files have a name")
        .to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    write_key_file(&temporary, text)?;
    Ok(temporary)
}

/// Syncs the directory of `path`, so that a link or rename into it survives a crash.
fn sync_keys_directory(path: &Path) -> Result<(), KeyError> {
    let dir = path.parent().expect("key files live in a directory");
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyError::file(path, format!("cannot sync the keys directory: {e}")))
}

/// Writes a new key file whole, unless one is already there: the text goes to an owner-only
/// file beside it, which is then hard-linked into place (a link never replaces a file), so a
/// reader never sees half a key and two processes writing at once leave exactly one of the two.
/// Returns `false` when another file was there first (this text is then discarded).
pub(super) fn write_key_file_unless_exists(path: &Path, text: &str) -> Result<bool, KeyError> {
    let err = |message: String| KeyError::file(path, message);
    let temporary = write_beside(path, text)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(err(format!("cannot create: {e}"))),
    }
    sync_keys_directory(path)?;
    Ok(true)
}

/// Replaces a key file atomically: a new owner-only file beside it, synced, renamed over it,
/// and the directory synced, so a crash leaves the old key or the new one, never half of one.
pub(super) fn replace_key_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let err = |message: String| KeyError::file(path, message);
    let temporary = write_beside(path, text)?;
    if let Err(e) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(err(format!("cannot replace: {e}")));
    }
    sync_keys_directory(path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_key_file_is_written_owner_only_never_overwritten_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("a.key.pem");
        write_key_file(&path, "one").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let again = write_key_file(&path, "two").unwrap_err().to_string();
        assert!(again.contains("cannot create"), "{again}");
        replace_key_file(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let read = |allow| read_owner_only_key_file(&path, "test key", "test.allow", allow);
        let refused = read(false).unwrap_err();
        assert!(refused.contains("permissions are 640"), "{refused}");
        assert!(refused.contains("test key must be readable by its owner only"));
        assert_eq!(read(true).unwrap(), "key");
    }
}
