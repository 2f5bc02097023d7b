//! [`CaError`]: why the CA core refused or failed, in words for the caller. No HTTP in it: the
//! HTTP layer maps each variant to a status and a code.

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA certificate or key that we (and AWS IoT) would not accept; the message says why.
    #[error("{0}")]
    Rejected(String),
    /// The CA cannot sign now (e.g. its certificate has expired).
    #[error("{0}")]
    Unavailable(String),
    /// The CA's key is in a device or service (HSM, KMS) that failed to sign now; a later try
    /// may succeed. Nothing was signed.
    #[error("{0}")]
    SignerUnavailable(String),
    /// A failure inside the crypto library; not the caller's fault.
    #[error("signing failed: {0}")]
    Crypto(String),
}

impl CaError {
    /// A signing failure from rcgen: the remote signer's (an HSM or KMS that could not sign
    /// now) or the crypto library's.
    pub(crate) fn signing(e: rcgen::Error) -> CaError {
        match e {
            rcgen::Error::RemoteKeyError => CaError::SignerUnavailable(
                "the CA's key could not sign now (its token or key service failed); nothing was \
                 signed, try again"
                    .into(),
            ),
            other => CaError::Crypto(other.to_string()),
        }
    }
}
