//! The services the HTTP layer and the CLI call: the issuance pipeline, CA administration, API
//! tokens, refused-request counting and per-station rate limits. No HTTP types in here.

pub mod audit;
pub mod backup;
pub mod bulk_revocation;
pub mod ca_admin;
pub mod crl;
pub mod issuance;
pub mod limits;
pub mod rejections;
pub mod revocation;
pub mod sessions;
pub mod sign_in;
pub mod store_health;
pub mod tokens;
