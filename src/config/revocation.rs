//! `[revocation]` settings: the stored CRLs each CA publishes, the CRL distribution point put
//! into issued certificates, and bulk revocation jobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, seconds};

/// `[revocation]`: the stored CRLs each CA publishes, and bulk revocation jobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationSettings {
    /// How long a CRL is valid: its nextUpdate is this long after its thisUpdate.
    #[serde(with = "seconds")]
    pub crl_validity_secs: Duration,
    /// A stored CRL is signed again once its nextUpdate is closer than this (and at once
    /// whenever a certificate of its CA is revoked).
    #[serde(with = "seconds")]
    pub crl_refresh_before_secs: Duration,
    /// `Cache-Control: max-age` of a served CRL (never past its nextUpdate): how long caches
    /// and clients may keep it without asking again.
    #[serde(with = "seconds")]
    pub crl_cache_max_age_secs: Duration,
    /// How often the background job looks for CRLs to sign again and bulk revocation jobs to
    /// resume.
    #[serde(with = "seconds")]
    pub check_interval_secs: Duration,
    /// Certificates revoked per transaction of a bulk revocation job.
    pub bulk_batch_size: u32,
    /// Put this URL into issued certificates as their CRL distribution point, `{ca_id}`
    /// replaced by the issuing CA's id (e.g. `http://pki.example.com/v1/cas/{ca_id}/crl`).
    /// Unset (the default): no distribution point.
    pub crl_distribution_point_url: Option<String>,
    /// Where delta CRLs are published, `{ca_id}` replaced (e.g.
    /// `http://pki.example.com/v1/cas/{ca_id}/delta-crl`): named in every complete CRL as its
    /// freshestCRL, which clients such as OpenSSL need before they use deltas. Unset: complete
    /// CRLs name none (the delta CRLs are served all the same).
    pub delta_crl_url: Option<String>,
}

impl Default for RevocationSettings {
    fn default() -> Self {
        Self {
            crl_validity_secs: Duration::from_secs(86_400),
            crl_refresh_before_secs: Duration::from_secs(43_200),
            crl_cache_max_age_secs: Duration::from_secs(60),
            check_interval_secs: Duration::from_secs(30),
            bulk_batch_size: 2000,
            crl_distribution_point_url: None,
            delta_crl_url: None,
        }
    }
}

impl RevocationSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let validity = self.crl_validity_secs;
        if !(Duration::from_secs(300)..=Duration::from_secs(366 * 86_400)).contains(&validity) {
            return Err(ConfigError(
                "revocation.crl_validity_secs must be between 300 (5 minutes) and 31622400 \
                 (366 days)"
                    .into(),
            ));
        }
        if self.crl_refresh_before_secs.is_zero() || self.crl_refresh_before_secs >= validity {
            return Err(ConfigError(
                "revocation.crl_refresh_before_secs must be at least 1 and less than \
                 revocation.crl_validity_secs (a CRL is signed again this long before it \
                 expires)"
                    .into(),
            ));
        }
        if self.check_interval_secs.is_zero()
            || self.check_interval_secs >= self.crl_refresh_before_secs
        {
            return Err(ConfigError(
                "revocation.check_interval_secs must be at least 1 and less than \
                 revocation.crl_refresh_before_secs, or CRLs could expire between two checks"
                    .into(),
            ));
        }
        for (key, url) in [
            (
                "crl_distribution_point_url",
                &self.crl_distribution_point_url,
            ),
            ("delta_crl_url", &self.delta_crl_url),
        ] {
            let Some(url) = url else { continue };
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || !url.bytes().all(|b| b.is_ascii_graphic()) || url.len() > 1024 {
                return Err(ConfigError(format!(
                    "revocation.{key} must be an http:// or https:// URL of at most 1024 \
                     visible ASCII characters (no spaces), e.g. \
                     http://pki.example.com/v1/cas/{{ca_id}}/crl"
                )));
            }
        }
        if !(1..=10_000).contains(&self.bulk_batch_size) {
            return Err(ConfigError(
                "revocation.bulk_batch_size must be between 1 and 10000".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    /// A setting to break, and the key the message must name.
    type Refused = (&'static str, fn(&mut RevocationSettings));

    #[test]
    fn revocation_settings_are_checked_together() {
        let refused: [Refused; 6] = [
            ("crl_validity_secs", |r| {
                r.crl_validity_secs = Duration::from_secs(60)
            }),
            ("crl_refresh_before_secs", |r| {
                r.crl_refresh_before_secs = r.crl_validity_secs
            }),
            ("check_interval_secs", |r| {
                r.check_interval_secs = r.crl_refresh_before_secs
            }),
            ("bulk_batch_size", |r| r.bulk_batch_size = 0),
            ("crl_distribution_point_url", |r| {
                r.crl_distribution_point_url = Some("ldap://pki/crl".into())
            }),
            ("delta_crl_url", |r| {
                r.delta_crl_url = Some("http://pki/delta crl".into())
            }),
        ];
        for (key, change) in refused {
            let mut s = Settings::default();
            change(&mut s.revocation);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("revocation.{key}")), "{key}: {err}");
        }
        let mut s = Settings::default();
        s.revocation.crl_distribution_point_url =
            Some("http://pki.example.com/v1/cas/{ca_id}/crl".into());
        s.validate().unwrap();
    }
}
