//! The codec once on each file, for memory checkers (not a benchmark): bench/valgrind_codec.py
//! runs it under valgrind memcheck on valid, truncated and corrupt JPEGs (`make bench-valgrind`).
//!
//!   codec_check FILE...   one line per file: `ok PATH BYTES WIDTHxHEIGHT` or `err CODE`
//!
//! An error from the codec is an answer (a damaged file must be refused, not crash): it exits 0
//! unless a file cannot be read or the codec panics, so that what fails the check is valgrind's
//! verdict (--error-exitcode) or a crash.

use imgpipe_core::domain::codec::{CodecLimits, compress};

fn main() {
    let limits = CodecLimits::default();
    for file in std::env::args().skip(1) {
        let input = std::fs::read(&file).unwrap_or_else(|e| panic!("read {file}: {e}"));
        match compress(&input, &limits) {
            Ok(out) => println!("{file}: ok {} {} {}x{}", out.path.name(), out.jpeg.len(), out.width, out.height),
            Err(error) => println!("{file}: err {}", error.code()),
        }
    }
}
