//! The passphrase CA keys are encrypted with at rest: where it comes from (an environment
//! variable, `ca.key_passphrase_env`, or an owner-only file, `ca.key_passphrase_file`; never
//! the configuration itself) and the value, which is never shown and is zeroed when dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a passphrase cannot be had: a variable unset, a file unreadable or too open, an empty
/// value. The message names the variable or file, never the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PassphraseError(String);

/// A passphrase for CA keys. Never empty; its `Debug` never shows it, and it is zeroed when
/// dropped.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// `source` says where it came from, for the error when it is empty.
    pub fn new(value: Zeroizing<String>, source: &str) -> Result<Passphrase, PassphraseError> {
        if value.is_empty() {
            return Err(PassphraseError(format!(
                "the CA key passphrase from {source} is empty; an empty passphrase protects \
                 nothing"
            )));
        }
        Ok(Passphrase(value))
    }

    /// The passphrase bytes, for key derivation.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

/// Where a passphrase is read from. Holds names, never the passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The name of an environment variable.
    Env(String),
    /// An owner-only file; its content without one trailing newline is the passphrase.
    File(PathBuf),
}

impl PassphraseSource {
    /// The at-rest passphrase of `[ca]`, if one is configured. Settings validation makes sure
    /// at most one of the two keys is set.
    pub fn from_settings(ca: &crate::config::CaSettings) -> Option<PassphraseSource> {
        match (&ca.key_passphrase_env, &ca.key_passphrase_file) {
            (Some(name), _) => Some(PassphraseSource::Env(name.clone())),
            (None, Some(path)) => Some(PassphraseSource::File(path.clone())),
            (None, None) => None,
        }
    }

    /// Where the passphrase comes from, for messages: a variable name or a path, never a value.
    pub fn describe(&self) -> String {
        match self {
            PassphraseSource::Env(name) => format!("the environment variable {name}"),
            PassphraseSource::File(path) => format!("the file {}", path.display()),
        }
    }

    /// Reads the passphrase. A file must be readable by its owner only, unless
    /// `allow_insecure` (which then only logs a warning).
    pub fn read(&self, allow_insecure: bool) -> Result<Passphrase, PassphraseError> {
        match self {
            PassphraseSource::Env(name) => {
                let value = match std::env::var(name) {
                    Ok(v) => Zeroizing::new(v),
                    Err(std::env::VarError::NotPresent) => {
                        return Err(PassphraseError(format!(
                            "the environment variable {name} is not set; export the CA key \
                             passphrase in it"
                        )));
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(PassphraseError(format!(
                            "the environment variable {name} is not valid UTF-8"
                        )));
                    }
                };
                Passphrase::new(value, &self.describe())
            }
            PassphraseSource::File(path) => {
                let text = super::files::read_owner_only_key_file(
                    path,
                    "CA key passphrase",
                    "ca.allow_insecure_key_permissions",
                    allow_insecure,
                )
                .map(Zeroizing::new)
                .map_err(|message| {
                    PassphraseError(format!(
                        "CA key passphrase file {}: {message}",
                        path.display()
                    ))
                })?;
                passphrase_from_file_text(text, path)
            }
        }
    }
}

/// The passphrase in a file's text: one trailing newline (LF or CRLF) is not part of it, as
/// with `openssl -passin file:`. A second line is refused rather than guessed at, since OpenSSL
/// would read only the first.
fn passphrase_from_file_text(
    mut text: Zeroizing<String>,
    path: &Path,
) -> Result<Passphrase, PassphraseError> {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.contains(['\n', '\r']) {
        return Err(PassphraseError(format!(
            "CA key passphrase file {}: holds more than one line; put the passphrase alone on \
             the first line",
            path.display()
        )));
    }
    Passphrase::new(text, &format!("the file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_file_loses_one_trailing_newline_and_may_not_hold_two_lines() {
        let path = Path::new("/p");
        let read = |s: &str| passphrase_from_file_text(Zeroizing::new(s.to_owned()), path);
        assert_eq!(read("secret\n").unwrap().expose_bytes(), b"secret");
        assert_eq!(read("secret\r\n").unwrap().expose_bytes(), b"secret");
        assert_eq!(read("secret").unwrap().expose_bytes(), b"secret");
        assert_eq!(read(" secret ").unwrap().expose_bytes(), b" secret ");
        assert!(read("a\nb\n").is_err());
        assert!(read("secret\n\n").is_err());
        let empty = read("\n").unwrap_err().to_string();
        assert!(empty.contains("is empty"), "{empty}");
        assert_eq!(
            format!("{:?}", read("secret").unwrap()),
            "Passphrase([redacted])"
        );
    }
}
