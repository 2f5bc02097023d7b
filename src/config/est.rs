//! `[est]` settings: EST (RFC 7030) labels, each selecting a CA for
//! `/.well-known/est/<label>/...`.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[est]`: EST (RFC 7030) enrollment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EstSettings {
    /// `[est.labels]`: label -> CA id. `/.well-known/est/<label>/...` issues with (and
    /// `cacerts` answers) that CA instead of the issuing CA. A label is 1 to 64 characters of
    /// `a-z A-Z 0-9 . _ -`, and not the name of an EST operation.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The EST operations, which a label may not be named after (`/.well-known/est/cacerts/...`
/// would be ambiguous to a reader).
pub const EST_OPERATIONS: &[&str] = &[
    "cacerts",
    "simpleenroll",
    "simplereenroll",
    "csrattrs",
    "fullcmc",
    "serverkeygen",
];

impl EstSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (label, ca_id) in &self.labels {
            let valid = (1..=64).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid || label == "." || label == ".." {
                return Err(ConfigError(format!(
                    "est.labels: the label {label:?} must be 1 to 64 characters of a-z, A-Z, \
                     0-9, '.', '_' and '-' (it is a URL path segment)"
                )));
            }
            if EST_OPERATIONS.contains(&label.as_str()) {
                return Err(ConfigError(format!(
                    "est.labels: {label:?} is the name of an EST operation; choose another label"
                )));
            }
            if ca_id.trim().is_empty() {
                return Err(ConfigError(format!(
                    "est.labels.{label} must be a CA id (GET /v1/admin/cas lists them, e.g. \
                     \"ca-0123456789abcdef\")"
                )));
            }
        }
        Ok(())
    }
}
