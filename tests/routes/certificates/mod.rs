//! `/v1/certificates`: signing, bad input, idempotency, reading and listing the ledger, and the
//! group-commit ledger writer behind signing.

mod bad_input;
mod group_commit;
mod idempotency;
mod listing;
mod signing;
