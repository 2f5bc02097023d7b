//! `[ledger]` settings: when the ledger's hash chains are checkpointed, each checkpoint signed
//! by the ledger audit key (docs/certificates.md, "Checkpoints").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, seconds};

/// `[ledger]`: signed checkpoints of each CA's hash chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// A CA's chain is checkpointed once this many records were appended after its last
    /// checkpoint (within a second, when the service checks). 0: not by count.
    pub checkpoint_every_records: u64,
    /// ... and at the latest this long after its last checkpoint when records were appended
    /// since (a CA's first record is checkpointed within a second). 0: not by time.
    #[serde(with = "seconds")]
    pub checkpoint_interval_secs: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            checkpoint_every_records: 10_000,
            checkpoint_interval_secs: Duration::from_secs(300),
        }
    }
}

/// Largest `checkpoint_every_records`: beyond it, a rewrite of the chain could go unsigned for
/// days on a busy line.
pub const MAX_EVERY_RECORDS: u64 = 10_000_000;
/// Largest `checkpoint_interval_secs`: one day.
pub const MAX_INTERVAL_SECS: u64 = 86_400;

impl LedgerSettings {
    /// Whether the service makes checkpoints at all.
    pub fn checkpoints_enabled(&self) -> bool {
        self.checkpoint_every_records > 0 || !self.checkpoint_interval_secs.is_zero()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.checkpoint_every_records > MAX_EVERY_RECORDS {
            return Err(ConfigError(format!(
                "ledger.checkpoint_every_records must be between 0 (not by count) and \
                 {MAX_EVERY_RECORDS}"
            )));
        }
        if self.checkpoint_interval_secs.as_secs() > MAX_INTERVAL_SECS {
            return Err(ConfigError(format!(
                "ledger.checkpoint_interval_secs must be between 0 (not by time) and \
                 {MAX_INTERVAL_SECS} (one day)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn checkpoint_settings_are_bounded_and_zero_turns_a_trigger_off() {
        let mut s = Settings::default();
        s.ledger.checkpoint_every_records = MAX_EVERY_RECORDS + 1;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("ledger.checkpoint_every_records"), "{err}");

        let mut s = Settings::default();
        s.ledger.checkpoint_interval_secs = Duration::from_secs(MAX_INTERVAL_SECS + 1);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("ledger.checkpoint_interval_secs"), "{err}");

        let mut s = Settings::default();
        assert!(s.ledger.checkpoints_enabled());
        s.ledger.checkpoint_every_records = 0;
        assert!(s.ledger.checkpoints_enabled(), "by time only");
        s.ledger.checkpoint_interval_secs = Duration::ZERO;
        s.validate().unwrap();
        assert!(!s.ledger.checkpoints_enabled());
    }
}
