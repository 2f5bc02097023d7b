//! The verification certificate AWS IoT asks for when a CA is registered in DEFAULT mode
//! (AWS IoT developer guide, "Register your CA certificate"): proof that we hold the CA key.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::authority::{CaError, CertificateAuthority};
use super::profile::Serial;

impl CertificateAuthority {
    /// A verification certificate for AWS IoT's RegisterCACertificate (DEFAULT mode): a fresh
    /// key whose certificate has CN = the account's registration code, signed by this CA,
    /// valid for one day. Its private key is discarded: the certificate only proves that we
    /// hold the CA key.
    pub fn verification_certificate(
        &self,
        registration_code: &str,
        now: OffsetDateTime,
    ) -> Result<String, CaError> {
        if registration_code.is_empty()
            || registration_code.len() > 64
            || !registration_code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(CaError::Crypto(
                "AWS returned a registration code that is not 1-64 letters, digits or '-'".into(),
            ));
        }
        let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            DnValue::Utf8String(registration_code.to_owned()),
        );
        params.not_before = now - Duration::minutes(5);
        params.not_after = (now + Duration::days(1)).min(self.not_after());
        params.serial_number = Some(rcgen::SerialNumber::from_slice(Serial::random().as_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| CaError::Crypto(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::signing)?;
        Ok(cert.pem())
    }
}
