//! Tests only the binaries that ship can answer: the local stack running release builds of the
//! functions, built with `[profile.release]` of Cargo.toml (its panic strategy above all).
//! `cargo test --release` would not do: Cargo ignores `panic` for test targets. A test binary
//! of its own, so that its stack is not local_stack's debug one.

mod codec_panic;
