//! Helpers shared by the test targets: `TestApp` (the server in process, on SQLite or
//! PostgreSQL), device CSRs, the `factory-ca` binary as a process, a CA core outside any
//! server, and running other programs. Each target includes this folder as `mod common`.

// Each target uses a part of the helpers.
#![allow(dead_code)]

pub mod app;
pub mod aws;
pub mod binary;
pub mod csr;
pub mod process;

pub use app::*;
pub use csr::*;
pub use process::{run, write};
