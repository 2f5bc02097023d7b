//! Integration tests: the real server on port 0, over HTTP, on SQLite and on PostgreSQL
//! (a fresh database per test; `TEST_POSTGRES_URL` names the server).

mod access;
mod bad_input;
mod cli;
mod helpers;
mod signing;
mod verifiers;
