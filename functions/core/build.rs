//! Compiles `csrc/requantize.c` (DCT-domain requantisation, see `src/codec/requantize.rs`)
//! against the libjpeg headers of the libjpeg-turbo that turbojpeg-sys builds and links: it
//! declares `links = "turbojpeg"` and prints `cargo:include=<dir>`, which reaches this script as
//! DEP_TURBOJPEG_INCLUDE because core depends on turbojpeg-sys directly.

fn main() {
    println!("cargo:rerun-if-changed=csrc/requantize.c");
    println!("cargo:rerun-if-env-changed=DEP_TURBOJPEG_INCLUDE");
    let include = std::env::var("DEP_TURBOJPEG_INCLUDE")
        .expect("DEP_TURBOJPEG_INCLUDE: turbojpeg-sys must build libjpeg-turbo (feature \"cmake\")");
    let mut build = cc::Build::new();
    for dir in include.split(',').filter(|dir| !dir.is_empty()) {
        build.include(dir);
    }
    // -O3 in every profile, dev builds included: the coefficient loop must be vectorised.
    build.file("csrc/requantize.c").opt_level(3).warnings(true).compile("imgpipe_requantize");
}
