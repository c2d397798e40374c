//! What `wait` prints: one progress line per change, and at the end the summary (counts,
//! bytes in and out, failures grouped by error code with the first URLs of each). Pure: the
//! numbers come in, the text goes out.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::answers::{Image, Status};

/// How many URLs of each error code the summary shows.
pub const URLS_PER_CODE: usize = 3;

/// One progress line for a terminal-less output: `processing: 12 done, 1 failed, 7 pending of 20 (3.1 images/s, ETA 2s)`.
pub fn progress_line(status: &Status, rate: Option<f64>) -> String {
    let mut line = format!("{}: {} of {}", status.status, counts(status), status.total);
    if let Some(rate) = rate.filter(|rate| *rate > 0.0) {
        let _ = write!(line, " ({rate:.1} images/s");
        if status.pending > 0 {
            let _ = write!(line, ", ETA {}", eta(status.pending, rate));
        }
        line.push(')');
    }
    line
}

/// `12 done, 1 failed, 7 pending`, with `N cancelled` before `pending` when there are.
pub fn counts(status: &Status) -> String {
    let cancelled = if status.cancelled > 0 { format!(", {} cancelled", status.cancelled) } else { String::new() };
    format!("{} done, {} failed{cancelled}, {} pending", status.succeeded, status.failed, status.pending)
}

/// Time left at `rate` images per second, rounded to what a person reads: `45s`, `3m05s`, `1h02m`.
pub fn eta(pending: u64, rate: f64) -> String {
    let seconds = (pending as f64 / rate).ceil() as u64;
    human_duration(Duration::from_secs(seconds))
}

pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// How long the wait took: tenths of a second under 10 s (a small request takes about one).
fn took(elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(10) { format!("{:.1}s", elapsed.as_secs_f64()) } else { human_duration(elapsed) }
}

/// Failed images of one error code: how many, and the first few URLs.
#[derive(Debug, PartialEq)]
pub struct FailureGroup {
    pub error_code: String,
    pub count: u64,
    pub first_urls: Vec<String>,
}

/// Failures grouped by error code (codes in order of first appearance by image index), the
/// first `URLS_PER_CODE` URLs of each in image order.
pub fn group_failures(images: &[Image]) -> Vec<FailureGroup> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, FailureGroup> = BTreeMap::new();
    let mut failed: Vec<&Image> = images.iter().filter(|image| image.state == "FAILED").collect();
    failed.sort_by_key(|image| image.image_index);
    for image in failed {
        let code = image.error_code.clone().unwrap_or_else(|| "unknown".into());
        let group = groups.entry(code.clone()).or_insert_with(|| {
            order.push(code.clone());
            FailureGroup { error_code: code, count: 0, first_urls: Vec::new() }
        });
        group.count += 1;
        if group.first_urls.len() < URLS_PER_CODE {
            group.first_urls.push(image.input_url.clone());
        }
    }
    order.into_iter().filter_map(|code| groups.remove(&code)).collect()
}

/// The final summary: state and counts, bytes, failures by code.
pub fn summary(status: &Status, images: &[Image], elapsed: Duration) -> String {
    let mut text = format!(
        "Request {} {} in {}: {} images, {} done, {} failed",
        status.request_id,
        status.status,
        took(elapsed),
        status.total,
        status.succeeded,
        status.failed
    );
    if status.cancelled > 0 {
        let _ = write!(text, ", {} cancelled", status.cancelled);
    }
    if status.pending > 0 {
        let _ = write!(text, ", {} without a result", status.pending);
    }
    text.push('\n');
    let bytes_in: u64 = images.iter().filter_map(|image| image.bytes_in).sum();
    let bytes_out: u64 = images.iter().filter_map(|image| image.bytes_out).sum();
    if bytes_in > 0 {
        let _ = writeln!(
            text,
            "Bytes: {} in, {} out ({:.1}% of the input)",
            human_bytes(bytes_in),
            human_bytes(bytes_out),
            100.0 * bytes_out as f64 / bytes_in as f64
        );
    }
    if let Some(reason) = &status.failure_reason {
        let _ = writeln!(text, "Failure reason: {reason}");
    }
    let groups = group_failures(images);
    if !groups.is_empty() {
        text.push_str("Failures by error code:\n");
        for group in groups {
            let _ = writeln!(text, "  {}: {}", group.error_code, group.count);
            for url in &group.first_urls {
                let _ = writeln!(text, "    {url}");
            }
            let more = group.count - group.first_urls.len() as u64;
            if more > 0 {
                let _ = writeln!(text, "    ... and {more} more");
            }
        }
    }
    text
}

/// Bytes as a person reads them: `512 B`, `41.0 KiB`, `3.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(index: u32, state: &str, code: Option<&str>, bytes: Option<(u64, u64)>) -> Image {
        Image {
            image_index: index,
            row: index + 1,
            input_url: format!("https://img.example/{index}.jpg"),
            state: state.into(),
            output_url: None,
            error_code: code.map(Into::into),
            error_message: None,
            bytes_in: bytes.map(|(i, _)| i),
            bytes_out: bytes.map(|(_, o)| o),
        }
    }

    fn status(state: &str, total: u64, succeeded: u64, failed: u64) -> Status {
        serde_json::from_value(serde_json::json!({
            "request_id": "r1", "status": state, "total": total, "succeeded": succeeded, "failed": failed,
            "pending": total - succeeded - failed, "created_at": "2026-11-30T00:00:00Z", "completed_at": null,
            "output_csv_url": null, "errors_csv_url": null, "failure_reason": null
        }))
        .unwrap()
    }

    #[test]
    fn failures_are_grouped_by_code_in_order_of_first_appearance_with_the_first_urls() {
        let images = vec![
            image(5, "FAILED", Some("timed_out"), None),
            image(0, "DONE", None, Some((100, 20))),
            image(1, "FAILED", Some("http_status_404"), None),
            image(2, "FAILED", Some("http_status_404"), None),
            image(3, "FAILED", Some("http_status_404"), None),
            image(4, "FAILED", Some("http_status_404"), None),
            image(6, "PENDING", None, None),
        ];
        let groups = group_failures(&images);
        assert_eq!(
            groups,
            [
                FailureGroup {
                    error_code: "http_status_404".into(),
                    count: 4,
                    first_urls: (1..=3).map(|i| format!("https://img.example/{i}.jpg")).collect()
                },
                FailureGroup {
                    error_code: "timed_out".into(),
                    count: 1,
                    first_urls: vec!["https://img.example/5.jpg".into()]
                },
            ]
        );
    }

    #[test]
    fn the_summary_has_counts_bytes_with_the_ratio_and_the_failures() {
        let images = vec![
            image(0, "DONE", None, Some((3 * 1024 * 1024, 1024 * 1024))),
            image(1, "DONE", None, Some((1024 * 1024, 0))),
            image(2, "FAILED", Some("decode_error"), None),
            image(3, "FAILED", Some("decode_error"), None),
            image(4, "FAILED", Some("decode_error"), None),
            image(5, "FAILED", Some("decode_error"), None),
        ];
        let text = summary(&status("completed_with_errors", 6, 2, 4), &images, Duration::from_secs(75));
        assert_eq!(
            text,
            "Request r1 completed_with_errors in 1m15s: 6 images, 2 done, 4 failed\n\
             Bytes: 4.0 MiB in, 1.0 MiB out (25.0% of the input)\n\
             Failures by error code:\n  decode_error: 4\n\
             \x20   https://img.example/2.jpg\n    https://img.example/3.jpg\n    https://img.example/4.jpg\n\
             \x20   ... and 1 more\n"
        );
    }

    #[test]
    fn progress_lines_show_the_rate_and_eta_only_when_known() {
        let running = status("processing", 20, 12, 1);
        assert_eq!(progress_line(&running, None), "processing: 12 done, 1 failed, 7 pending of 20");
        assert_eq!(
            progress_line(&running, Some(2.0)),
            "processing: 12 done, 1 failed, 7 pending of 20 (2.0 images/s, ETA 4s)"
        );
        let cancelled: Status = serde_json::from_value(serde_json::json!({
            "request_id": "r1", "status": "cancelled", "total": 5, "succeeded": 2, "failed": 1, "cancelled": 2,
            "pending": 0, "created_at": "2026-11-30T00:00:00Z", "completed_at": null,
            "output_csv_url": null, "errors_csv_url": null, "failure_reason": null
        }))
        .unwrap();
        assert_eq!(progress_line(&cancelled, None), "cancelled: 2 done, 1 failed, 2 cancelled, 0 pending of 5");
        assert!(
            summary(&cancelled, &[], Duration::from_secs(3))
                .starts_with("Request r1 cancelled in 3.0s: 5 images, 2 done, 1 failed, 2 cancelled\n")
        );
        assert_eq!(eta(1000, 2.0), "8m20s");
        assert_eq!(eta(10_000, 1.0), "2h46m");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
