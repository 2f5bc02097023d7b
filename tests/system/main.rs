//! System tests: real processes beside the server (the `factory-ca` binary as an operator runs
//! it, brokers, emulators, TLS clients, independent verifiers), a browser, outages, and huge
//! data. They need the tools `scripts/test.sh` installs (Chromium and chromedriver, Mosquitto,
//! curl, the moto emulator, PostgreSQL's server binaries), take minutes rather than seconds,
//! and run only with `--features system-tests` (`scripts/test.sh` sets it):
//!
//! - `outage`: a private PostgreSQL cluster stopped and started under load;
//! - `shutdown`: SIGTERM and SIGINT to `factory-ca serve` under load;
//! - `backup`: `factory-ca backup` under load and `factory-ca restore`;
//! - `disk_full`: the SQLite data directory on a full tmpfs, then space returns;
//! - `crash`: `kill -9` of `factory-ca serve` under load, on SQLite and PostgreSQL;
//! - `replicas`: three `factory-ca serve` processes on one database;
//! - `query_plans`: a million-row ledger and its `EXPLAIN` plans;
//! - `dashboard`: the page in headless Chromium through chromedriver;
//! - `aws_moto`: the aws-sdk-iot client against the moto emulator;
//! - `aws_sync_job`: a background sync against moto's pages, killed part way and resumed;
//! - `verifiers`: issued chains checked by openssl, rustls-webpki and a Mosquitto broker;
//! - `tls`: HTTPS and station mTLS against rustls, tokio-rustls and curl clients;
//! - `cli`: the command line, run as an operator runs it;
//! - `early_answers`: 404/405/401/413/415 before the body is read, over HTTP/2 and HTTP/1.1;
//! - `connections`: thousands of slow loopback clients, unfinished bodies, the connection cap;
//! - `pkcs11`: CA keys in a SoftHSM2 token, checked with openssl and OpenSC's pkcs11-tool;
//! - `awskms`: CA keys in AWS KMS (the moto emulator), certificates and CRLs checked with
//!   openssl, a key disabled at signing time and at startup;
//! - `bulk_revocation`: bulk revocation of many certificates on PostgreSQL, stored CRLs served
//!   many times, a job interrupted by a restart;
//! - `viewer_load`: 64 viewer loops on a large ledger while a station signs;
//! - `hierarchy`: an openssl-made offline root, an imported issuing CA and a line sub-CA with
//!   name constraints, checked with openssl and Mosquitto; the offline root ceremony;
//! - `ledger`: `factory-ca ledger verify` on an untouched and on tampered ledgers, and on a
//!   million-row chain;
//! - `est`: the EST quick start with openssl, curl and Python `cryptography`; EST beside JSON
//!   issuance over TLS;
//! - `certificate_provider`: the fleet-provisioning Lambda handler against factory-ca over
//!   HTTPS, its certificates checked with openssl; with the `certificate-provider` feature, the
//!   token from moto's Secrets Manager and the binary itself behind a Lambda Runtime API
//!   stand-in.

#[path = "../common/mod.rs"]
mod common;

mod aws_moto;
mod aws_sync_job;
mod aws_targets;
mod awskms;
mod backup;
mod bulk_revocation;
mod certificate_provider;
mod cli;
mod connections;
mod crash;
mod dashboard;
mod disk_full;
mod early_answers;
mod est;
mod est_reenroll;
mod hierarchy;
mod ledger;
mod outage;
mod pkcs11;
mod query_plans;
mod replicas;
mod shutdown;
mod tls;
mod verifiers;
mod viewer_load;
