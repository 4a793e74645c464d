//! Data safety: damaged and hostile inputs (corruption sweeps, bombs, names that try to leave
//! the output directory, named pipes), bounded memory, and the manners of a Unix tool
//! (outputs that never destroy data, interrupts, locks, closed pipes). One test crate, so the
//! library links once.

#[path = "../common/mod.rs"]
mod common;

mod freeze;

mod hardening;
mod hostile;
mod manners;
mod memory;
mod sweep;
