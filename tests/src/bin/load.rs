//! Load benchmark (not a test): one request of many small images through the local stack.
//! Starts its own emulator, serves the images locally, uploads the CSV through the API,
//! waits for the final state, checks the counts and the output CSV, and reports timings.
//!
//!   cargo run -p imgpipe-tests --bin load -- [IMAGES] [URLS_PER_ROW]   (make bench-load)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::ImageServer;
use imgpipe_tests::stack::{LocalStack, workspace_root};

/// Distinct small photos the URLs cycle through (each URL is unique by its query).
const DISTINCT: u32 = 50;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let images: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let per_row: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1).max(1);

    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let files: HashMap<_, _> =
        (0..DISTINCT).map(|n| (format!("s{n}.jpg"), (photo_jpeg(160 + n, 120 + n, n), "image/jpeg"))).collect();
    let bytes_in: usize = files.values().map(|(bytes, _)| bytes.len()).sum::<usize>() / DISTINCT as usize;
    let server = ImageServer::start(files, Duration::ZERO).await;

    let urls: Vec<String> =
        (0..images).map(|i| server.url(&format!("img/s{}.jpg?n={i}", i as u32 % DISTINCT))).collect();
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (row, chunk) in urls.chunks(per_row).enumerate() {
        csv.push_str(&format!("{},Product {},\"{}\"\n", row + 1, row + 1, chunk.join(",")));
    }
    println!("{images} images of ~{bytes_in} B in {} rows, CSV {} KiB", images.div_ceil(per_row), csv.len() / 1024);

    let started = Instant::now();
    let accepted = api.upload(csv.as_bytes(), None).await;
    let accept_time = started.elapsed();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().unwrap().to_string();
    println!("accepted in {:.2} s: {id}", accept_time.as_secs_f64());

    let mut last_report = Instant::now();
    let status = loop {
        let status = api.status(&id).await.body;
        let final_state = matches!(status["status"].as_str(), Some("completed" | "completed_with_errors" | "failed"));
        if final_state || last_report.elapsed() >= Duration::from_secs(5) {
            let done = status["succeeded"].as_u64().unwrap_or(0) + status["failed"].as_u64().unwrap_or(0);
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{:>7.1} s  {:<22} {done}/{images}  {:.0} images/s",
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
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let wall = started.elapsed();

    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!((status["total"].as_u64(), status["succeeded"].as_u64()), (Some(images as u64), Some(images as u64)));
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
    assert_eq!(slots, images, "one output slot per input URL");

    let images_per_s = images as f64 / wall.as_secs_f64();
    println!(
        "\n{images} images: accepted in {:.2} s, final in {:.1} s, {images_per_s:.0} images/s; counts exact, {slots} slots in order",
        accept_time.as_secs_f64(),
        wall.as_secs_f64()
    );
    let result = serde_json::json!({
        "images": images, "urls_per_row": per_row, "image_bytes": bytes_in,
        "accept_seconds": accept_time.as_secs_f64(), "wall_seconds": wall.as_secs_f64(),
        "images_per_second": images_per_s, "status": status["status"], "binaries": "target/debug",
    });
    let path = workspace_root().join(format!("bench/results/load-{images}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).expect("write the result");
    println!("written to {}", path.display());
}
