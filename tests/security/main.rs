//! Security properties, each tested from outside: hostile input (a generated corpus and a
//! property test), secrets kept out of logs and answers, CA keys encrypted at rest, and the
//! role matrix of every route. Like `tests/routes/`, these run in every `cargo test`: the
//! server in this process, `openssl`, and the `factory-ca` binary where a property is about the
//! process itself (what it logs, what it refuses at startup, what its CLI writes).

#[path = "../common/mod.rs"]
mod common;

mod access;
mod hostile;
mod keys;
mod secrets;
