//! Codec benchmark (not a test): `imgpipe_core::domain::codec::compress` on each file, single-threaded.
//!
//!   codec_bench [--runs N] [--out DIR] [--no-rss] FILE...   one JSON object per file on stdout
//!   codec_bench --one FILE                       child: one compress, prints peak RSS (KiB)
//!   codec_bench --loop IMAGES FILE...            the pipeline benchmark's images, CPU per image
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
use imgpipe_tests::processes::{CLOCK_TICKS_PER_SECOND, process_cpu, vm_hwm_kib};

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

    if let [flag, images, files @ ..] = args.as_slice()
        && flag == "--loop"
    {
        println!("{}", codec_loop(images.parse().expect("--loop IMAGES"), files));
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

/// `--loop IMAGES`: the pipeline benchmark's images in its order (image i is file i mod the
/// number of files, sorted by name, as load.rs serves them and bench/pillow_loop.py loops over
/// them), each compressed once in one thread, from memory: the codec's CPU per image measured as
/// the Pillow loop measures its own, without the worker's fetch, upload and record around it.
fn codec_loop(images: usize, files: &[String]) -> serde_json::Value {
    let mut files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    files.sort_by_key(|file| file.file_name().map(ToOwned::to_owned));
    let inputs: Vec<Vec<u8>> = files.iter().map(|file| std::fs::read(file).expect("read input")).collect();
    let limits = CodecLimits::default();
    let before = process_cpu("self").expect("/proc/self/stat");
    for image in 0..images {
        let out = compress(&inputs[image % inputs.len()], &limits).expect("compress");
        std::hint::black_box(&out.jpeg);
    }
    let after = process_cpu("self").expect("/proc/self/stat");
    let per_image = |ticks: u64| ticks as f64 * 1000.0 / CLOCK_TICKS_PER_SECOND / images as f64;
    serde_json::json!({
        "images": images,
        "cpu_ms_per_image": per_image(after.user_ticks + after.sys_ticks - before.user_ticks - before.sys_ticks),
        "sys_ms_per_image": per_image(after.sys_ticks - before.sys_ticks),
        "minor_faults_per_image": (after.minor_faults - before.minor_faults) as f64 / images as f64,
    })
}
