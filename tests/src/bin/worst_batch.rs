//! Memory benchmark (not a test): the release worker's peak RSS on the worst batch its limits
//! allow (issue 11, item 9). Starts its own local stack with release builds of the functions.
//!
//!   worst_batch [--out FILE]      JSON summary to FILE (default bench/results/worker-worst-batch.json)
//!
//! The batch: the worst image the pixel limit allows, 50 MP of 16-bit RGBA in a PNG whose EXIF
//! orientation (6) turns it, padded to MAX_IMAGE_BYTES; and nine other images of MAX_IMAGE_BYTES
//! each (small JPEGs with random bytes after their end), served 100 ms later, so that the worst
//! image takes the codec first and all nine downloads are held, waiting for it, while it decodes
//! (checked from the worker's log lines: each of the nine fetched before that decode ended). The ten jobs
//! reach one fresh worker process as one SQS batch (`worker_batch`), and its peak RSS is its
//! VmHWM (tests/src/processes.rs). A batch of one small photo on a fresh process gives the
//! baseline. The worker keeps freed memory for the next image (its GLIBC_TUNABLES in
//! template.yaml), so the worst batch runs twice: on a fresh process, and on one that has just
//! compressed a batch of large JPEGs, whose freed coefficient arrays it still holds.
//! Fails if either peak is not under the function's MemorySize. Run by
//! `make bench-pipeline`; docs/performance.md has the figures and the arithmetic.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use imgpipe_core::domain::worker_memory::{PROCESS_BASELINE_BYTES, WorkerMemory};
use imgpipe_fixtures::jpeg::exif_orientation;
use imgpipe_fixtures::png::png_chunk;
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::processes::{function_pids, vm_hwm_kib};
use imgpipe_tests::servers::{Files, ImageServer};
use imgpipe_tests::stack::{Functions, LocalStack, workspace_root};
use imgpipe_tests::worker_batch::{image_jobs_event, record_request};
use serde_json::{Value, json};

const MIB: f64 = 1024.0 * 1024.0;
/// The largest image the pixel limit (MAX_IMAGE_PIXELS, 50,000,000) allows, near 3:2.
const WORST: (u32, u32) = (8660, 5773);
/// The warm-up batch: this many 24 MP JPEGs (4:2:0, quality 92).
const WARM_UP_PHOTOS: u32 = 3;
const LARGE_PHOTO: (u32, u32) = (6000, 4000);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut out = workspace_root().join("bench/results/worker-worst-batch.json");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().expect("--out FILE").into(),
            other => panic!("unknown argument {other}; see the comment at the top of tests/src/bin/worst_batch.rs"),
        }
    }
    let stack = LocalStack::shared_with(Functions::Release);
    let api = ApiClient::new(stack);
    let memory_mb = memory_size_mb(stack).await;
    // template.yaml keeps the worker's defaults of WORKER_CONCURRENCY, MAX_IMAGE_BYTES and
    // CODEC_SLOTS (10, 25 MiB, 1); Lambda (and the emulator) set the memory from MemorySize.
    let memory = WorkerMemory { function_mb: memory_mb, ..WorkerMemory::default() };
    let decode_limit = memory.decode_limit().expect("the deployed settings leave memory to decode");
    let max_bytes = memory.max_image_bytes as usize;

    let started = Instant::now();
    let worst = worst_png(max_bytes);
    println!(
        "worst image: {} x {} 16-bit RGBA PNG, orientation 6, {} bytes (made in {:.1} s)",
        WORST.0,
        WORST.1,
        worst.len(),
        started.elapsed().as_secs_f64()
    );
    let mut files: Files = HashMap::new();
    files.insert("worst.png".into(), (worst, "image/png"));
    files.insert("small.jpg".into(), (photo_jpeg(640, 480, 99), "image/jpeg"));
    for n in 0..9 {
        files.insert(format!("big{n}.jpg"), (padded_jpeg(n, max_bytes), "image/jpeg"));
    }
    // 24 MP photos: their coefficient arrays (~72 MB each) are what the heap keeps afterwards.
    let (large_width, large_height) = LARGE_PHOTO;
    for n in 0..WARM_UP_PHOTOS {
        files.insert(format!("large{n}.jpg"), (photo_jpeg(large_width, large_height, n), "image/jpeg"));
    }
    let server = ImageServer::start(files, Duration::from_millis(100)).await;

    let baseline = run_batch(stack, &api, &[server.url("img/small.jpg")], Process::Fresh).await;
    println!("baseline, one small photo: peak RSS {:.1} MiB", baseline.peak_kib as f64 / 1024.0);
    let mut urls = vec![server.url("img/worst.png")];
    urls.extend((0..9).map(|n| server.url(&format!("slow/big{n}.jpg"))));
    let batch = run_batch(stack, &api, &urls, Process::Fresh).await;
    let peak_mib = batch.peak_kib as f64 / 1024.0;
    println!("worst batch: peak RSS {peak_mib:.1} MiB of {memory_mb} MB, in {:.1} s", batch.seconds);
    let large: Vec<String> = (0..WARM_UP_PHOTOS).map(|n| server.url(&format!("img/large{n}.jpg"))).collect();
    let warm_up = run_batch(stack, &api, &large, Process::Fresh).await;
    let after_warm_up = run_batch(stack, &api, &urls, Process::Same).await;
    let warm_peak_mib = after_warm_up.peak_kib as f64 / 1024.0;
    println!(
        "worst batch after {WARM_UP_PHOTOS} large JPEGs on the same process: peak RSS {warm_peak_mib:.1} MiB (the JPEGs alone {:.1} MiB)",
        warm_up.peak_kib as f64 / 1024.0
    );
    // The worker's log lines can reach the emulator's log after the batch's request is final.
    stack.wait_for_logged(&batch.request_id, "fetch", urls.len()).await;
    stack.wait_for_logged(&batch.request_id, "decode", 1).await;
    let stages = stage_times(&stack.state.join("emulator.log"), &batch.request_id);
    let (decode_ended, decode_ms) = stages[&(0, "decode")];
    let decode_started = decode_ended - chrono::Duration::microseconds((decode_ms * 1000.0) as i64);
    let fetched: Vec<f64> = (1..urls.len() as u64)
        .map(|index| (stages[&(index, "fetch")].0 - decode_started).num_microseconds().unwrap() as f64 / 1000.0)
        .collect();
    let held = fetched.iter().filter(|&&ms| ms < decode_ms).count();
    let last_fetch_ms = fetched.iter().copied().fold(f64::MIN, f64::max);
    println!(
        "the worst image decoded in {decode_ms:.0} ms; {held} of {} other downloads were complete before it ended (the last {last_fetch_ms:.0} ms after it started)",
        fetched.len()
    );

    let pixels = u64::from(WORST.0) * u64::from(WORST.1);
    // The codec's estimate for it (`codec::decode_memory`): 8 bytes per pixel decoded, plus the
    // 3 of the flattened copy (the turn copies flattened pixels: 6, less).
    let estimate = pixels * 8 + pixels * 3;
    let result = json!({
        "functions": "release",
        "memory_size_mb": memory_mb,
        "worker_concurrency": memory.concurrency,
        "max_image_bytes": max_bytes,
        "process_baseline_mib": PROCESS_BASELINE_BYTES as f64 / MIB,
        "kept_free_mib": memory.kept_free_bytes as f64 / MIB,
        "decode_limit_mib": decode_limit as f64 / MIB,
        "worst_image": {"width": WORST.0, "height": WORST.1, "pixels": pixels, "format": "png", "bits": 16,
                        "channels": "rgba", "exif_orientation": 6, "bytes": max_bytes,
                        "codec_estimate_mib": estimate as f64 / MIB},
        "other_downloads": {"count": 9, "bytes_each": max_bytes},
        "baseline_peak_rss_mib": baseline.peak_kib as f64 / 1024.0,
        "worst_batch_peak_rss_mib": peak_mib,
        "warm_up": {"photos": WARM_UP_PHOTOS, "width": LARGE_PHOTO.0, "height": LARGE_PHOTO.1,
                    "peak_rss_mib": warm_up.peak_kib as f64 / 1024.0},
        "worst_batch_after_warm_up_peak_rss_mib": warm_peak_mib,
        "worst_batch_after_warm_up_status": after_warm_up.status["status"],
        "worst_batch_seconds": batch.seconds,
        "worst_batch_status": batch.status["status"],
        "worst_image_decode_ms": decode_ms,
        "downloads_complete_before_its_decode_ended": held,
        "last_download_complete_ms_after_its_decode_started": last_fetch_ms,
        "worker_processes": batch.processes,
        "machine": format!("{} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), std::env::consts::ARCH),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).expect("write the result");
    println!("written to {}", out.display());
    assert_eq!(batch.status["status"], "completed", "every image of the worst batch is done: {}", batch.status);
    assert_eq!(held, fetched.len(), "every other download was held while the worst image decoded");
    assert_eq!(after_warm_up.status["status"], "completed", "after the warm-up: {}", after_warm_up.status);
    for peak in [peak_mib, warm_peak_mib] {
        assert!(peak < memory_mb as f64, "peak RSS {peak:.1} MiB is not under MemorySize {memory_mb} MB");
    }
}

/// Which worker process a batch meets.
#[derive(PartialEq)]
enum Process {
    /// A new one (the running ones are killed first).
    Fresh,
    /// The one the previous batch left running, with whatever memory it kept.
    Same,
}

struct BatchRun {
    request_id: String,
    peak_kib: u64,
    processes: usize,
    seconds: f64,
    status: Value,
}

/// `urls` as one batch on a worker process: its peak RSS, and the request's final status.
async fn run_batch(stack: &LocalStack, api: &ApiClient, urls: &[String], process: Process) -> BatchRun {
    if process == Process::Fresh {
        stack.kill_function_processes(&stack.worker_function_name);
    }
    let id = record_request(stack, urls).await;
    let event = image_jobs_event(stack, id, urls);
    let started = Instant::now();
    let mut peaks: HashMap<String, u64> = HashMap::new();
    let mut answer = invoke_sampling_peaks(stack, &event, &mut peaks).await;
    // A process killed just before may still be handed the invocation: the emulator then answers
    // Runtime.ExitError without having run it (the batch logs nothing), so it is sent again,
    // once. A batch that really kills its process fails the same way the second time.
    if process == Process::Fresh && answer["errorType"] == "Runtime.ExitError" {
        answer = invoke_sampling_peaks(stack, &event, &mut peaks).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(answer, json!({"batchItemFailures": []}), "the batch was done in one invocation");
    let (status, _) = api.wait_until_final(&id.to_string(), Duration::from_secs(60)).await;
    let peak_kib = peaks.values().copied().max().unwrap_or(0);
    BatchRun { request_id: id.to_string(), peak_kib, processes: peaks.len(), seconds, status }
}

/// Invokes the worker with `event`, sampling its processes' peak RSS into `peaks` meanwhile.
async fn invoke_sampling_peaks(stack: &LocalStack, event: &Value, peaks: &mut HashMap<String, u64>) -> Value {
    let mut invoke = std::pin::pin!(stack.invoke(&stack.worker_function_name, event));
    let sample = |peaks: &mut HashMap<String, u64>| {
        for pid in function_pids(&stack.worker_function_name, &stack.endpoint) {
            if let Some(hwm) = vm_hwm_kib(&pid) {
                let peak = peaks.entry(pid).or_default();
                *peak = (*peak).max(hwm);
            }
        }
    };
    // VmHWM is the process's own high-water mark: sampling only has to find the process alive.
    let answer = loop {
        tokio::select! {
            answer = &mut invoke => break answer,
            _ = tokio::time::sleep(Duration::from_millis(200)) => sample(peaks),
        }
    };
    sample(peaks);
    answer
}

/// When each (image, stage) of a request ended and how long it took, from the worker's log
/// lines (the emulator writes the functions' output to its log).
fn stage_times(log: &Path, request_id: &str) -> HashMap<(u64, &'static str), (DateTime<Utc>, f64)> {
    let text = std::fs::read_to_string(log).expect("read the emulator log");
    let mut times = HashMap::new();
    for line in text.lines().filter(|line| line.contains(request_id)) {
        let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
        let stage = match entry["stage"].as_str() {
            Some("fetch") => "fetch",
            Some("decode") => "decode",
            _ => continue,
        };
        let (Some(index), Some(ms), Some(at)) =
            (entry["image_index"].as_u64(), entry["duration_ms"].as_f64(), entry["timestamp"].as_str())
        else {
            continue;
        };
        let at = DateTime::parse_from_rfc3339(at).expect("an RFC 3339 timestamp").with_timezone(&Utc);
        times.insert((index, stage), (at, ms));
    }
    times
}

/// The function's MemorySize, as deployed.
async fn memory_size_mb(stack: &LocalStack) -> u64 {
    let url = format!("{}/2015-03-31/functions/{}/configuration", stack.endpoint, stack.worker_function_name);
    let config: Value = reqwest::get(url).await.expect("reach the emulator").json().await.expect("JSON");
    config["MemorySize"].as_u64().expect("MemorySize")
}

/// 50 MP of 16-bit RGBA: smooth gradients (so the PNG fits the download limit) under a varying
/// alpha, with an eXIf chunk saying orientation 6 (turn 90 degrees), padded to `size` bytes by a
/// private ancillary chunk that decoders skip.
fn worst_png(size: usize) -> Vec<u8> {
    let (width, height) = WORST;
    let mut samples = Vec::with_capacity(width as usize * height as usize * 8);
    for y in 0..height {
        for x in 0..width {
            let pixel = [x * 7, y * 11, (x + y) * 3, 65535 - (x % 4096) * 8];
            samples.extend(pixel.iter().flat_map(|v| (*v as u16).to_be_bytes()));
        }
    }
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Default, FilterType::Sub)
        .write_image(&samples, width, height, ExtendedColorType::Rgba16)
        .expect("encode the worst PNG");
    drop(samples);
    let ihdr_end = 8 + 25;
    let iend = png.len() - 12;
    let mut out = [&png[..ihdr_end], &png_chunk(b"eXIf", &exif_orientation(6)), &png[ihdr_end..iend]].concat();
    let padding = size.checked_sub(out.len() + 12 + 12).expect("the worst PNG fits the download limit");
    out.extend(png_chunk(b"imPd", &noise(padding, 7)));
    out.extend(&png[iend..]);
    assert_eq!(out.len(), size);
    out
}

/// A small photo JPEG followed by random bytes up to `size`: a download of the full size that
/// decodes in milliseconds (decoders stop at the end of the image).
fn padded_jpeg(seed: u32, size: usize) -> Vec<u8> {
    let mut jpeg = photo_jpeg(640, 480, seed);
    jpeg.extend(noise(size - jpeg.len(), seed));
    jpeg
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}
