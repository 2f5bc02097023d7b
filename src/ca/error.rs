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
    /// The CA's certificate does not allow what was asked (a keyUsage without cRLSign may not
    /// sign CRLs); a property of the CA, not a failure.
    #[error("{0}")]
    NotPermitted(String),
    /// A failure inside the crypto library; not the caller's fault.
    #[error("signing failed: {0}")]
    Crypto(String),
}
