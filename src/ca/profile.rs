//! The device-certificate profile (RFC 5280 section 4.2): every extension of an issued
//! certificate comes from here, never from the CSR.
//!
//! - basicConstraints CA:FALSE, critical;
//! - keyUsage digitalSignature (+ keyEncipherment for RSA keys, which TLS 1.2 RSA key
//!   exchange needs), critical;
//! - extendedKeyUsage clientAuth (a device is a TLS client of AWS IoT);
//! - subject and authority key identifiers;
//! - cRLDistributionPoints, only when configured: the issuing CA's CRL URL (RFC 5280 section
//!   4.2.1.13);
//! - validity from configuration, never beyond the CA's notAfter;
//! - serial: 20 bytes, positive (RFC 5280 4.1.2.2 allows at most 20 octets): the second of
//!   issuance, then 112 random bits ([`Serial::ordered`]).

use rand::RngCore;
use rcgen::{
    CertificateParams, CrlDistributionPoint, DistinguishedName, DnValue, ExtendedKeyUsagePurpose,
    IsCa, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::policy::ApprovedCsr;

/// Validity rules for device certificates.
#[derive(Debug, Clone)]
pub struct DeviceProfile {
    /// How long a device certificate is valid (default 365 days, like the openssl workflow).
    pub validity: Duration,
    /// How far `notBefore` is set in the past, so that a device whose clock is slightly behind
    /// does not reject its brand-new certificate.
    pub backdate: Duration,
    /// The URL put into issued certificates as their CRL distribution point, with `{ca_id}`
    /// replaced by the issuing CA's id; `None` (the default) leaves the extension out. AWS IoT
    /// does not read CRLs; brokers and gateways that check them (Mosquitto, EMQX) do.
    pub crl_distribution_point: Option<String>,
}

impl Default for DeviceProfile {
    fn default() -> Self {
        Self {
            validity: Duration::days(365),
            backdate: Duration::seconds(60),
            crl_distribution_point: None,
        }
    }
}

/// A certificate serial: 20 bytes, the first in `0x40..=0x7f` so that the DER INTEGER is
/// positive and always exactly 20 octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial([u8; 20]);

impl Serial {
    /// A device certificate's serial: 20 bytes, the first six the second of issuance (`0x40`
    /// with the top 6 bits of a 46-bit Unix time, then its low 40 bits), the last 14 random
    /// (112 bits: the CA/Browser Forum asks for at least 64 from a CSPRNG, and serials must
    /// not be sequential; these are not, within a second or across seconds). Positive, always
    /// exactly 20 octets in DER, below 2^159.
    ///
    /// Serials of one second sort together and later seconds after them, so the ledger's
    /// unique index on serial grows at one end, as a sequence would, instead of taking each
    /// new serial at a random leaf page: on a ledger of millions of certificates those pages
    /// are no longer in memory. The time they carry is the certificate's notBefore plus its
    /// backdating, which the certificate shows anyway.
    pub fn ordered(now: OffsetDateTime) -> Self {
        let mut bytes = [0u8; 20];
        rand::rng().fill_bytes(&mut bytes[6..]);
        let seconds = now.unix_timestamp().clamp(0, (1 << 46) - 1) as u64;
        let be = seconds.to_be_bytes();
        bytes[0] = 0x40 | (be[2] & 0x3f);
        bytes[1..6].copy_from_slice(&be[3..8]);
        Serial(bytes)
    }

    /// 20 random bytes, the first in `0x40..=0x7f` (158 bits of randomness): the serial of a
    /// CA or verification certificate, which are few and not in the ledger.
    pub fn random() -> Self {
        let mut bytes = [0u8; 20];
        rand::rng().fill_bytes(&mut bytes);
        bytes[0] = (bytes[0] & 0x3f) | 0x40;
        Serial(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, as stored in the ledger and shown by the API.
    pub fn to_hex(&self) -> String {
        super::lower_hex(&self.0)
    }
}

impl DeviceProfile {
    /// The certificate parameters for one approved request by CA `ca_id`. `ca_not_after` caps
    /// the validity.
    pub(crate) fn params(
        &self,
        csr: &ApprovedCsr,
        serial: &Serial,
        now: OffsetDateTime,
        ca_id: &str,
        ca_not_after: OffsetDateTime,
    ) -> CertificateParams {
        let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
        let mut params = CertificateParams::default();
        params.not_before = now - self.backdate;
        params.not_after = (now + self.validity).min(ca_not_after);
        params.serial_number = Some(SerialNumber::from_slice(&serial.0));
        params.distinguished_name = distinguished_name(csr);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if csr.key().is_rsa() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.crl_distribution_point {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.replace("{ca_id}", ca_id)],
            }];
        }
        params
    }
}

/// The subject exactly as requested: same attributes, same order, same string types.
fn distinguished_name(csr: &ApprovedCsr) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for attr in csr.subject() {
        let value = if attr.utf8 {
            DnValue::Utf8String(attr.value.clone())
        } else {
            DnValue::PrintableString(
                attr.value
                    .as_str()
                    .try_into()
                    .expect("the CSR parser only marks valid PrintableStrings as printable"),
            )
        };
        dn.push(attr.field.dn_type(), value);
    }
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_twenty_positive_bytes_and_differ() {
        let a = Serial::random();
        let b = Serial::random();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s.to_hex().len(), 40);
            assert!((0x40..=0x7f).contains(&s.0[0]));
        }
    }

    #[test]
    fn ordered_serials_carry_the_second_and_112_random_bits() {
        let now = OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap();
        let a = Serial::ordered(now);
        let b = Serial::ordered(now + Duration::milliseconds(300));
        let later = Serial::ordered(now + Duration::seconds(1));
        let much_later = Serial::ordered(now + Duration::days(3650));
        for s in [&a, &b, &later, &much_later] {
            assert_eq!(s.to_hex().len(), 40);
            assert_eq!(s.0[0], 0x40, "positive, 20 octets, below 2^159");
        }
        // The first six bytes are the second of issuance.
        let mut seconds = [0u8; 8];
        seconds[2] = a.0[0] & 0x3f;
        seconds[3..].copy_from_slice(&a.0[1..6]);
        assert_eq!(u64::from_be_bytes(seconds), 1_796_000_000);
        assert_eq!(a.0[..6], b.0[..6], "one second, one prefix");
        // Within a second they differ in the random part; across seconds they sort by time,
        // as the ledger's text index sorts their hex.
        assert_ne!(a.0[6..], b.0[6..]);
        assert!(a.to_hex().max(b.to_hex()) < later.to_hex());
        assert!(later.to_hex() < much_later.to_hex());
        // The random part is not a counter: 1,000 serials of one second share no 14 bytes
        // and are not in the order they were made.
        let many: Vec<Serial> = (0..1000).map(|_| Serial::ordered(now)).collect();
        let distinct: std::collections::HashSet<&[u8]> = many.iter().map(|s| &s.0[6..]).collect();
        assert_eq!(distinct.len(), 1000);
        assert!(many.windows(2).any(|w| w[0].0 > w[1].0));
    }
}
