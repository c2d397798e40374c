//! Compiles `csrc/` (DCT-domain requantisation, see `src/domain/codec/requantize.rs`)
//! against the libjpeg headers of the libjpeg-turbo that turbojpeg-sys builds and links: it
//! declares `links = "turbojpeg"` and prints `cargo:include=<dir>`, which reaches this script as
//! DEP_TURBOJPEG_INCLUDE because core depends on turbojpeg-sys directly.

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=DEP_TURBOJPEG_INCLUDE");
    let include = std::env::var("DEP_TURBOJPEG_INCLUDE")
        .expect("DEP_TURBOJPEG_INCLUDE: turbojpeg-sys must build libjpeg-turbo (feature \"cmake\")");
    let mut build = cc::Build::new();
    for dir in include.split(',').filter(|dir| !dir.is_empty()) {
        build.include(dir);
    }
    // -O3 in every profile, dev builds included: the coefficient loops must be vectorised. No
    // fused multiply-adds: arm64 would fuse where x86-64 does not, and the outputs must be
    // byte-identical on both (chroma_downsample.c sums floats).
    build
        .files([
            "csrc/requantize.c",
            "csrc/chroma_downsample.c",
            "csrc/block_store.c",
            "csrc/scan_writer.c",
            "csrc/progressive_reader.c",
        ])
        .flag_if_supported("-ffp-contract=off")
        .opt_level(3)
        .warnings(true)
        .compile("imgpipe_requantize");
}
