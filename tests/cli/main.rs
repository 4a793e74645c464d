//! The command line: the contract (output kinds, naming, selection, exit codes), the docs and
//! manual pages against the binary, and the rough edges a newcomer hit. One test crate, so the
//! library links once.

#[path = "../common/mod.rs"]
mod common;

mod contract;
mod docs;
mod newcomer;
