//! factory-ca: the signing backend of a device factory, a private CA for AWS IoT Just-In-Time
//! Provisioning. See the README for a tour of the code.

/// The certificate authority: CSR parsing, policy, profile, signing. No HTTP, SQL or AWS.
pub mod ca;
