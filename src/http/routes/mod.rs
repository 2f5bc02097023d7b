//! The handlers, one file per resource. Each is thin: extract, call a service, shape the answer.

pub mod audit;
pub mod aws;
pub mod ca;
pub mod ca_health;
pub mod cas;
pub mod certificate_provider;
pub mod certificates;
pub mod dashboard;
pub mod est;
pub mod health;
pub mod metrics;
pub mod revocation;
pub mod revocation_jobs;
pub mod stats;
pub mod tokens;
