//! Codec benchmark (not a test): `imgpipe_core::domain::codec::compress` on each file, single-threaded.
//!
//!   codec_bench [--runs N] [--out DIR] [--no-rss] FILE...   one JSON object per file on stdout
//!   codec_bench --one FILE                       child: one compress, prints peak RSS (KiB)
//!
//! Per file: one warm-up, then the median of N timed runs (input already in memory), MP/s as
//! input megapixels / median seconds, output bytes; the output JPEG goes to DIR for the quality
//! comparison. Peak RSS is measured in a fresh child process (VmHWM after one compress), so each
//! file's figure is its own and includes the input bytes and the binary, as Pillow's does.
//! `--no-rss` skips that child (under qemu-user the binary cannot start itself again: the
//! arm64 build's outputs are compared with the host's by bench/arm64_codec.py).
//! Run by `make bench` (bench/run.sh); see docs/performance.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use imgpipe_core::domain::codec::{CodecLimits, compress};
use imgpipe_tests::processes::vm_hwm_kib;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, file] = args.as_slice()
        && flag == "--one"
    {
        let input = std::fs::read(file).expect("read input");
        let out = compress(&input, &CodecLimits::default()).expect("compress");
        std::hint::black_box(&out.jpeg);
        println!("{}", vm_hwm_kib("self").expect("VmHWM in /proc/self/status"));
        return;
    }

    let mut runs = 5usize;
    let mut out_dir = PathBuf::from("bench/results/out-ours");
    let mut rss = true;
    let mut files = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--out" => out_dir = args.next().expect("--out DIR").into(),
            "--no-rss" => rss = false,
            _ => files.push(PathBuf::from(arg)),
        }
    }
    std::fs::create_dir_all(&out_dir).expect("create output dir");
    for file in &files {
        println!("{}", bench_file(file, runs.max(1), &out_dir, rss));
    }
}

fn bench_file(file: &Path, runs: usize, out_dir: &Path, rss: bool) -> serde_json::Value {
    let input = std::fs::read(file).expect("read input");
    let limits = CodecLimits::default();
    let warm = compress(&input, &limits).expect("compress");
    let megapixels = f64::from(warm.width) * f64::from(warm.height) / 1e6;
    let (mut seconds, mut decode, mut encode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let out = compress(&input, &limits).expect("compress");
        std::hint::black_box(&out.jpeg);
        seconds.push(started.elapsed().as_secs_f64());
        decode.push(out.timings.decode.as_secs_f64());
        encode.push(out.timings.encode.as_secs_f64());
    }
    let median = median_of(&mut seconds);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let output = out_dir.join(format!("{name}.jpg"));
    std::fs::write(&output, &warm.jpeg).expect("write output");
    serde_json::json!({
        "file": name,
        "width": warm.width,
        "height": warm.height,
        "megapixels": megapixels,
        "input_bytes": input.len(),
        "output_bytes": warm.jpeg.len(),
        "kept_original": warm.kept_original,
        "runs": runs,
        "path": warm.path.name(),
        "median_s": median,
        "decode_median_s": median_of(&mut decode),
        "encode_median_s": median_of(&mut encode),
        "mp_per_s": megapixels / median,
        "peak_rss_kib": rss.then(|| child_peak_rss_kib(file)),
        "output": output,
    })
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Peak RSS of a fresh process doing one compress of `file`.
fn child_peak_rss_kib(file: &Path) -> u64 {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).arg("--one").arg(file).output().expect("run child");
    assert!(out.status.success(), "child failed on {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("child prints KiB")
}
