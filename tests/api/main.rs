//! Integration tests: the real server on port 0, over HTTP, on SQLite and on PostgreSQL
//! (a fresh database per test; `TEST_POSTGRES_URL` names the server).

mod access;
mod aws_admin;
mod aws_moto;
mod bad_input;
mod cli;
mod dashboard;
mod group_commit;
mod helpers;
mod hostile;
mod keys;
mod limits;
mod openapi;
mod outage;
mod query_plans;
mod replicas;
mod revocation;
mod secrets;
mod shutdown;
mod signing;
mod stats;
mod tls;
mod verifiers;
