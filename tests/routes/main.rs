//! The HTTP API, resource by resource: the real server built in this process
//! (`Application::build` on port 0) and driven over HTTP, on SQLite and on PostgreSQL (a fresh
//! database per test on the server named by `TEST_POSTGRES_URL`, default the local trust-auth
//! one). Besides the server and PostgreSQL, tests here run only `openssl`, for test input and to
//! check CRLs. Anything that starts a process of its own (a browser, a broker, an emulator, the
//! `factory-ca` binary as a service) or needs huge data is in `tests/system/`.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod aws;
mod aws_accounts;
mod aws_answers;
mod aws_pacing;
mod aws_revocation_push;
mod aws_sync_jobs;
mod aws_target_ledger;
mod aws_targets;
mod bulk_revocation;
mod ca_chain;
mod ca_health;
mod cas;
mod certificate_provider;
mod certificates;
mod connections;
mod crl;
mod dashboard;
mod est;
mod hardening;
mod health;
mod ledger;
mod messages;
mod openapi;
mod query_fuzz;
mod query_input;
mod revocation;
mod stats;
mod stats_and_export;
mod stats_counters;
mod tokens;
