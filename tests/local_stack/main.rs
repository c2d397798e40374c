//! Tests on the local stack: the AWS adapters against the emulator, and the whole pipeline
//! through the API with the real function binaries run by the emulator. One test binary,
//! one emulator, started on first use and stopped when the binary exits.

mod adapters;
mod api;
mod pipeline;

/// Tests that look at global state (every object under a prefix) run alone among the
/// tests that create requests.
pub static UPLOADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
