//! Load and pipeline benchmark (not a test): one request through the local stack. Starts its
//! own emulator, serves the images locally, uploads the CSV through the API, waits for the
//! final state, checks the counts and the output CSV, and reports: time to accept, images/s,
//! the worker's per-stage times (from its log lines), the worker processes' peak RSS and their
//! CPU time (user + system, /proc/<pid>/stat, summed over every worker process seen).
//!
//!   load [--images N] [--urls-per-row K] [--photos PATH]... [--repeats PERCENT] [--fresh-workers] [--presigned]
//!        [--out FILE]
//!
//! With --presigned the CSV goes the large-CSV way (`make bench-large`): `POST /api/uploads`,
//! a PUT of the bytes to the presigned URL, then the status polled until it stops answering
//! `not_ready`; the time to accept is from the reservation to that answer.
//!
//! Without --photos the images are 50 small generated JPEGs (`make bench-load`); with it, the
//! files given (or every image in the folders given) are served, the URLs cycling through them
//! (`make bench-pipeline`). Each URL is unique by its query, so every image is fetched; with
//! --repeats, that share of the slots names a URL an earlier slot named (a catalogue's logo or
//! colour variants). It counts what the cost model prices: fetches (the image server's log),
//! output PUTs (the worker's `upload` lines) and DynamoDB write units of the results (the
//! worker's `result_write` lines, DynamoDB's consumed capacity), per image. With
//! --fresh-workers the warm worker processes are stopped first, so the peak RSS is this
//! request's own. `IMGPIPE_FUNCTIONS=release` runs release builds of the functions. The JSON
//! summary goes to FILE (default bench/results/load-<N>.json).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::processes::{CLOCK_TICKS_PER_SECOND, ProcessCpu, function_pids, process_cpu, vm_hwm_kib};
use imgpipe_tests::servers::ImageServer;
use imgpipe_tests::stack::{FAN_OUT_CHUNK_VARIABLE, LocalStack, workspace_root};

/// Distinct small photos the URLs cycle through without --photos.
const DISTINCT: u32 = 50;

struct Options {
    images: usize,
    per_row: usize,
    photos: Vec<PathBuf>,
    fresh_workers: bool,
    presigned: bool,
    repeats_percent: usize,
    out: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        images: 10_000,
        per_row: 1,
        photos: Vec::new(),
        fresh_workers: false,
        presigned: false,
        repeats_percent: 0,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--images" => options.images = value().parse().expect("--images N"),
            "--urls-per-row" => options.per_row = value().parse::<usize>().expect("--urls-per-row K").max(1),
            "--photos" => options.photos.push(value().into()),
            "--out" => options.out = Some(value().into()),
            "--repeats" => options.repeats_percent = value().parse::<usize>().expect("--repeats PERCENT").min(99),
            "--fresh-workers" => options.fresh_workers = true,
            "--presigned" => options.presigned = true,
            other => panic!("unknown argument {other}; see the comment at the top of tests/src/bin/load.rs"),
        }
    }
    options
}

/// The files to serve, by name, with their content types.
fn image_files(photos: &[PathBuf]) -> HashMap<String, (Vec<u8>, &'static str)> {
    if photos.is_empty() {
        return (0..DISTINCT).map(|n| (format!("s{n}.jpg"), (photo_jpeg(160 + n, 120 + n, n), "image/jpeg"))).collect();
    }
    let mut files = HashMap::new();
    for path in photos {
        let entries: Vec<PathBuf> = if path.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(path).expect("read the photo folder").flatten().map(|e| e.path()).collect();
            entries.sort();
            entries
        } else {
            vec![path.clone()]
        };
        for file in entries {
            let content_type = match file.extension().and_then(|e| e.to_str()) {
                Some("jpg" | "jpeg") => "image/jpeg",
                Some("png") => "image/png",
                _ => continue,
            };
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, (std::fs::read(&file).expect("read a photo"), content_type));
        }
    }
    assert!(!files.is_empty(), "no .jpg or .png among {photos:?}");
    files
}

#[tokio::main]
async fn main() {
    let options = options();
    let images = options.images;
    let per_row = options.per_row;
    if std::env::var(FAN_OUT_CHUNK_VARIABLE).is_err() {
        // As deployed, not the tests' 20. SAFETY: nothing has read the environment yet.
        unsafe { std::env::set_var(FAN_OUT_CHUNK_VARIABLE, "2000") };
    }
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let files = image_files(&options.photos);
    let mut names: Vec<String> = files.keys().cloned().collect();
    names.sort();
    let bytes_in: usize = files.values().map(|(bytes, _)| bytes.len()).sum::<usize>() / files.len();
    let server = ImageServer::start(files, Duration::ZERO).await;

    let distinct = distinct_urls(images, options.repeats_percent);
    let urls: Vec<String> = (0..images)
        .map(|slot| {
            let n = url_of_slot(slot, images, distinct);
            server.url(&format!("img/{}?n={n}", names[n % names.len()]))
        })
        .collect();
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (row, chunk) in urls.chunks(per_row).enumerate() {
        csv.push_str(&format!("{},Product {},\"{}\"\n", row + 1, row + 1, chunk.join(",")));
    }
    println!(
        "{images} images ({distinct} distinct URLs, {} distinct files, ~{} KB each) in {} rows, CSV {} KiB",
        names.len(),
        bytes_in / 1000,
        images.div_ceil(per_row),
        csv.len() / 1024
    );
    if options.fresh_workers {
        println!("stopped {} warm worker process(es)", stack.kill_function_processes(&stack.worker_function_name));
    }

    let mut workers = WorkerPeaks { endpoint: stack.endpoint.clone(), ..WorkerPeaks::default() };
    let started = Instant::now();
    let id = if options.presigned {
        upload_presigned(&api, csv.as_bytes(), started).await
    } else {
        let accepted = api.upload(csv.as_bytes(), None).await;
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        accepted.body["request_id"].as_str().unwrap().to_string()
    };
    let accept_time = started.elapsed();
    println!("accepted in {:.2} s: {id}", accept_time.as_secs_f64());

    let mut last_report = Instant::now();
    let status = loop {
        workers.sample(&stack.worker_function_name);
        let status = api.status(&id).await.body;
        let final_state = matches!(status["status"].as_str(), Some("completed" | "completed_with_errors" | "failed"));
        if final_state || last_report.elapsed() >= Duration::from_secs(5) {
            let done = status["succeeded"].as_u64().unwrap_or(0) + status["failed"].as_u64().unwrap_or(0);
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{:>7.1} s  {:<22} {done}/{images}  {:.1} images/s",
                elapsed,
                status["status"],
                done as f64 / elapsed
            );
            last_report = Instant::now();
        }
        if final_state {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(3600), "no final state after an hour");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wall = started.elapsed();
    workers.sample(&stack.worker_function_name);

    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!((status["total"].as_u64(), status["succeeded"].as_u64()), (Some(images as u64), Some(images as u64)));
    let slots = check_output_csv(&api, &status, per_row).await;
    assert_eq!(slots, images, "one output slot per input URL");
    // The figures below are read from the worker's log lines, which can reach the emulator's log
    // after the request is final: each distinct URL's image is decoded, encoded and uploaded once.
    for stage in ["decode", "encode", "upload"] {
        stack.wait_for_logged(&id, stage, distinct).await;
    }

    let images_per_s = images as f64 / wall.as_secs_f64();
    println!(
        "\n{images} images: accepted in {:.2} s, final in {:.1} s, {images_per_s:.1} images/s; counts exact, {slots} slots in order",
        accept_time.as_secs_f64(),
        wall.as_secs_f64()
    );
    let stages = stage_summary(&stack.state.join("emulator.log"), &id);
    println!("\nworker stages per image (ms): stage, count, median, p90, max, mean");
    for (stage, summary) in &stages {
        let ms = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {stage:<10} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            summary["count"],
            ms("median_ms"),
            ms("p90_ms"),
            ms("max_ms"),
            ms("mean_ms")
        );
    }
    println!(
        "worker processes seen: {}, peak RSS of the largest: {:.1} MB",
        workers.peaks.len(),
        workers.max_kib() as f64 / 1024.0
    );
    let worker_cpu_seconds = workers.cpu_seconds();
    let (worker_sys_seconds, worker_minor_faults) = (workers.sys_seconds(), workers.minor_faults());
    println!(
        "worker CPU (user + sys, every worker process): {worker_cpu_seconds:.2} s, {:.1} ms per image \
         (sys {worker_sys_seconds:.2} s; {:.0} minor page faults per image)",
        worker_cpu_seconds * 1000.0 / images as f64,
        worker_minor_faults as f64 / images as f64
    );
    let file_of_slot: Vec<&str> =
        (0..images).map(|slot| names[url_of_slot(slot, images, distinct) % names.len()].as_str()).collect();
    let codec_by_file = codec_ms_by_file(&stack.state.join("emulator.log"), &id, &file_of_slot);
    let fetches = server.requests();
    let output_puts = stages.get("upload").map_or(0, |upload| upload["count"].as_u64().unwrap_or(0));
    let (write_units, result_writes) = result_write_units(&stack.state.join("emulator.log"), &id);
    let per_image = |n: f64| n / images as f64;
    println!(
        "per image: {:.3} fetches ({fetches} for {distinct} distinct URLs), {:.3} output PUTs ({output_puts}), \
         {:.3} DynamoDB write units of results ({write_units} in {result_writes} transactions)",
        per_image(fetches as f64),
        per_image(output_puts as f64),
        per_image(write_units),
    );

    let binaries = if std::env::var("IMGPIPE_FUNCTIONS").is_ok_and(|p| p == "release") { "release" } else { "debug" };
    let result = serde_json::json!({
        "images": images, "path": if options.presigned { "presigned" } else { "inline" }, "urls_per_row": per_row, "distinct_files": names, "mean_image_bytes": bytes_in,
        "accept_seconds": accept_time.as_secs_f64(), "wall_seconds": wall.as_secs_f64(),
        "images_per_second": images_per_s, "status": status["status"], "functions": binaries,
        "worker_stages_ms": stages, "worker_processes": workers.peaks.len(),
        "worker_peak_rss_mb": workers.max_kib() as f64 / 1024.0,
        "worker_cpu_seconds": worker_cpu_seconds, "worker_cpu_ms_per_image": worker_cpu_seconds * 1000.0 / images as f64,
        "worker_sys_seconds": worker_sys_seconds, "worker_minor_faults": worker_minor_faults,
        "worker_codec_ms_by_file": codec_by_file,
        "repeats_percent": options.repeats_percent, "distinct_urls": distinct,
        "fetches": fetches, "output_puts": output_puts,
        "result_write_units": write_units, "result_writes": result_writes,
        "fetches_per_image": per_image(fetches as f64), "output_puts_per_image": per_image(output_puts as f64),
        "write_units_per_image": per_image(write_units),
        "machine": format!("{} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), std::env::consts::ARCH),
    });
    let path = options.out.unwrap_or_else(|| workspace_root().join(format!("bench/results/load-{images}.json")));
    std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).expect("write the result");
    println!("written to {}", path.display());
}

/// The distinct URLs of a request of `images` slots of which `repeats_percent` repeat an earlier one.
fn distinct_urls(images: usize, repeats_percent: usize) -> usize {
    (images * (100 - repeats_percent)).div_ceil(100).max(1)
}

/// Which distinct URL a slot names: the repeats are spread over the request (slot `slot` starts
/// distinct URL `slot * distinct / images` when it is the first slot with that value), and each
/// names one of the URLs already seen, not always the last one.
fn url_of_slot(slot: usize, images: usize, distinct: usize) -> usize {
    let seen = slot * distinct / images;
    let starts_one = slot == 0 || (slot - 1) * distinct / images != seen;
    if starts_one { seen } else { (slot * 31) % (seen + 1) }
}

/// The DynamoDB write units the worker's result transactions consumed for one request, and how
/// many transactions they were (its `result_write` log lines).
fn result_write_units(log: &Path, request_id: &str) -> (f64, u64) {
    let text = std::fs::read_to_string(log).expect("read the emulator log");
    let lines = text.lines().filter(|line| line.contains(request_id) && line.contains("\"result_write\""));
    let entries = lines.filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
    entries
        .filter(|entry| entry["request_id"] == request_id && entry["stage"] == "result_write")
        .fold((0.0, 0), |(units, writes), entry| (units + entry["write_units"].as_f64().unwrap_or(0.0), writes + 1))
}

/// The large-CSV way: reserve, PUT, then poll until the status stops answering `not_ready`.
async fn upload_presigned(api: &ApiClient, csv: &[u8], started: Instant) -> String {
    let reserved = api.reserve_upload("{}").await;
    assert_eq!(reserved.status, 201, "{}", reserved.body);
    let id = reserved.body["request_id"].as_str().unwrap().to_string();
    assert_eq!(api.put_to(reserved.body["upload_url"].as_str().unwrap(), csv).await, 200, "the PUT");
    println!("reserved and PUT in {:.2} s", started.elapsed().as_secs_f64());
    loop {
        let answer = api.status(&id).await;
        if answer.status == 200 {
            return id;
        }
        assert_eq!((answer.status, answer.body["error"].as_str()), (404, Some("not_ready")), "{}", answer.body);
        assert!(started.elapsed() < Duration::from_secs(600), "not accepted after 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows in order, each slot linking its own image; returns the number of slots.
async fn check_output_csv(api: &ApiClient, status: &serde_json::Value, per_row: usize) -> usize {
    let output = api.download(status["output_csv_url"].as_str().unwrap()).await;
    let mut reader = csv::Reader::from_reader(output.as_slice());
    let mut slots = 0;
    for (row, record) in reader.records().enumerate() {
        let record = record.expect("a CSV record");
        assert_eq!(&record[0], (row + 1).to_string(), "rows keep their order");
        for (slot, link) in record[3].split(',').enumerate() {
            let index = row * per_row + slot;
            assert!(link.ends_with(&format!("/images/{index}")), "slot {index} links its own image: {link}");
            slots += 1;
        }
    }
    slots
}

/// Count, median, p90, max and mean of each stage's `duration_ms` in the worker's log lines
/// of one request (the emulator writes the functions' output to its log).
fn stage_summary(log: &Path, request_id: &str) -> BTreeMap<String, serde_json::Value> {
    let text = std::fs::read_to_string(log).expect("read the emulator log");
    let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut unreadable = 0;
    for line in text.lines().filter(|line| line.contains(request_id) && line.contains("\"stage\"")) {
        // The functions' processes share the emulator's log: now and then two lines interleave.
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            unreadable += 1;
            continue;
        };
        if entry["request_id"] != request_id {
            continue;
        }
        if let (Some(stage), Some(ms)) = (entry["stage"].as_str(), entry["duration_ms"].as_f64()) {
            durations.entry(stage.to_owned()).or_default().push(ms);
        }
    }
    if unreadable > 0 {
        println!("{unreadable} worker log line(s) of this request could not be read (interleaved writes)");
    }
    durations
        .into_iter()
        .map(|(stage, mut ms)| {
            ms.sort_by(f64::total_cmp);
            let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
            let summary = serde_json::json!({
                "count": ms.len(), "median_ms": at(0.5), "p90_ms": at(0.9), "max_ms": at(1.0),
                "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64,
            });
            (stage, summary)
        })
        .collect()
}

/// The codec's share of the worker's time per input file (`file_of_slot` names each image's):
/// the `decode` and `encode` log lines of each image, summed by file. Wall-clock time of the
/// codec's blocking thread, so it includes the turns other processes took on the cores. More
/// `decode` lines than images means some images went through the codec twice (a job out of
/// time is retried).
fn codec_ms_by_file(log: &Path, request_id: &str, file_of_slot: &[&str]) -> BTreeMap<String, serde_json::Value> {
    let text = std::fs::read_to_string(log).expect("read the emulator log");
    let mut by_file: BTreeMap<String, (u64, f64, f64)> = BTreeMap::new();
    for line in text.lines().filter(|line| line.contains(request_id) && line.contains("\"image_index\"")) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(index), Some(stage), Some(ms)) =
            (entry["image_index"].as_u64(), entry["stage"].as_str(), entry["duration_ms"].as_f64())
        else {
            continue;
        };
        if entry["request_id"] != request_id {
            continue;
        }
        let Some(name) = file_of_slot.get(index as usize) else { continue };
        let file = by_file.entry((*name).to_owned()).or_default();
        match stage {
            "decode" => (file.0, file.1) = (file.0 + 1, file.1 + ms),
            "encode" => file.2 += ms,
            _ => {}
        }
    }
    by_file
        .into_iter()
        .map(|(file, (runs, decode, encode))| {
            (file, serde_json::json!({ "codec_runs": runs, "decode_ms": decode, "encode_ms": encode }))
        })
        .collect()
}

/// Peak RSS (VmHWM) and CPU time of every worker process of this stack seen during the run, by pid.
#[derive(Default)]
struct WorkerPeaks {
    /// This stack's emulator: every stack deploys the same function names, so on a machine
    /// running other stacks (other checkouts' tests) their workers are told apart by the
    /// endpoint the emulator gives its function processes.
    endpoint: String,
    peaks: HashMap<String, u64>,
    cpu: HashMap<String, ProcessCpu>,
}

impl WorkerPeaks {
    fn sample(&mut self, function_name: &str) {
        for pid in function_pids(function_name, &self.endpoint) {
            if let Some(hwm) = vm_hwm_kib(&pid) {
                let peak = self.peaks.entry(pid.clone()).or_default();
                *peak = (*peak).max(hwm);
            }
            if let Some(now) = process_cpu(&pid) {
                // Every field only grows: the last sample is the largest.
                self.cpu.insert(pid, now);
            }
        }
    }

    /// User + system CPU of every worker process, as last sampled (a process that ended
    /// between two samples, 250 ms apart, lost at most that interval's CPU from the figure).
    fn cpu_seconds(&self) -> f64 {
        self.sys_seconds() + self.cpu.values().map(|cpu| cpu.user_ticks).sum::<u64>() as f64 / CLOCK_TICKS_PER_SECOND
    }

    /// The kernel's share of `cpu_seconds` (page faults, system calls).
    fn sys_seconds(&self) -> f64 {
        self.cpu.values().map(|cpu| cpu.sys_ticks).sum::<u64>() as f64 / CLOCK_TICKS_PER_SECOND
    }

    fn minor_faults(&self) -> u64 {
        self.cpu.values().map(|cpu| cpu.minor_faults).sum()
    }

    fn max_kib(&self) -> u64 {
        self.peaks.values().copied().max().unwrap_or(0)
    }
}
