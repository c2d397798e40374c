//! Tests on the local stack: the AWS adapters against the emulator, and the whole pipeline
//! through the API with the real function binaries run by the emulator. One test binary,
//! one emulator, started on first use and stopped when the binary exits.

mod adapters;
mod api;
mod auth;
mod cli;
mod endings;
mod faults;
mod hostile;
mod large;
mod limits;
mod manage;
mod openapi;
mod pipeline;
mod promises;
mod repeats;
mod tenants;

/// Tests with requests in flight hold it shared; tests that act on the whole stack (count
/// what is stored, sweep every idle request, kill every worker process) hold it alone.
pub static STACK_USE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
