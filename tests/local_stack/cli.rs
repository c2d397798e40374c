//! The `imgpipe` CLI against the local stack, run as a user runs it: its output on a pipe and
//! under a pseudo-terminal, the files it saves, its exit codes, and a webhook delivery it
//! verifies.

use std::collections::HashMap;
use std::time::Duration;

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::cli::{Cli, CliRun};
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::{Files, ImageServer, WebhookReceiver};
use imgpipe_tests::stack::{DEFAULT_TENANT, LocalStack};
use imgpipe_tests::waits::wait_for;

use crate::STACK_USE;

/// The tenant of the CLI's uploads the large-CSV way (their receipts are under its prefix).
const LARGE_TENANT: &str = "cli-large";

/// Row 1 has one photo, row 2 a photo and a link that answers 404: 3 images, 2 done, 1 failed.
fn catalogue(server: &ImageServer) -> String {
    format!(
        "S. No.,Product Name,Input Image Urls\n1,Mug,{}\n2,Plate,\"{}, {}\"\n",
        server.url("img/a.jpg"),
        server.url("img/b.jpg"),
        server.url("img/missing.jpg")
    )
}

fn photos() -> Files {
    let mut files = HashMap::new();
    files.insert("a.jpg".to_string(), (photo_jpeg(640, 480, 1), "image/jpeg"));
    files.insert("b.jpg".to_string(), (photo_jpeg(500, 400, 2), "image/jpeg"));
    files
}

fn request_id(run: &CliRun) -> String {
    let id = run.stdout.lines().next().unwrap_or_default().to_string();
    assert_eq!(id.len(), 36, "the first line on stdout is the request id: {run:?}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_submit_wait_prints_progress_lines_and_the_summary_and_saves_the_output_csv() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let cli = Cli::new(stack, DEFAULT_TENANT, "submit_wait");
    std::fs::write(cli.file("products.csv"), catalogue(&server)).unwrap();

    let run = cli.run(&["submit", "products.csv", "--wait"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    let id = request_id(&run);
    let progress: Vec<&str> = run.stderr.lines().filter(|line| line.contains(" pending of 3")).collect();
    assert!(!progress.is_empty(), "plain progress lines on a pipe: {}", run.stderr);
    let last = progress.last().unwrap();
    assert!(last.starts_with("completed_with_errors: 2 done, 1 failed, 0 pending of 3"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "no terminal escapes on a pipe: {:?}", run.stderr);
    let summary = run.stdout.lines().nth(1).unwrap_or_default();
    assert!(summary.starts_with(&format!("Request {id} completed_with_errors in ")), "{}", run.stdout);
    assert!(summary.ends_with(": 3 images, 2 done, 1 failed"), "{}", run.stdout);
    let bytes_in = photos().values().map(|(bytes, _)| bytes.len() as u64).sum::<u64>();
    assert!(run.stdout.contains("\nBytes: "), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("{:.1} KiB in", bytes_in as f64 / 1024.0)), "{bytes_in}: {}", run.stdout);
    assert!(
        run.stdout.contains(&format!(
            "Failures by error code:\n  http_status_404: 1\n    {}\n",
            server.url("img/missing.jpg")
        )),
        "{}",
        run.stdout
    );
    let saved = format!("{id}.output.csv");
    assert!(run.stdout.ends_with(&format!("Output CSV saved to {saved}\n")), "{}", run.stdout);
    let api = ApiClient::new(stack);
    let output = api.download(&format!("/api/requests/{id}/output.csv")).await;
    assert_eq!(std::fs::read(cli.file(&saved)).unwrap(), output, "the saved CSV is the API's output CSV");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_wait_on_a_terminal_draws_a_bar_that_ends_full() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let cli = Cli::new(stack, DEFAULT_TENANT, "terminal");
    std::fs::write(cli.file("products.csv"), catalogue(&server)).unwrap();

    // `script` gives the CLI a pseudo-terminal and copies what it draws; without rows and
    // columns the terminal's size is unknown and the bar falls back to 80 columns.
    let shell = format!("stty cols 120 rows 40; '{}' submit products.csv --wait", cli.binary().display());
    let mut command = cli.command("script".as_ref());
    command.args(["-qec", &shell, "/dev/null"]);
    let run = cli.run_command(command).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains('\u{1b}'), "drawn with terminal escapes: {:?}", run.stdout);
    let screen = strip_escapes(&run.stdout);
    assert!(
        screen.contains("[=========================] 3/3 completed_with_errors: 2 done, 1 failed, 0 pending"),
        "the bar's final state: {screen:?}"
    );
    assert!(!screen.contains("pending of 3"), "no plain lines on a terminal: {screen:?}");
    assert!(screen.contains("Failures by error code:"), "the summary follows: {screen:?}");
}

/// Text as a terminal shows it, without the escape sequences that draw it.
fn strip_escapes(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_download_images_fetches_every_output_named_by_row_and_position() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let api = ApiClient::new(stack);
    let accepted = api.upload(catalogue(&server).as_bytes(), None).await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let id = accepted.body["request_id"].as_str().unwrap().to_string();
    api.wait_until_final(&id, Duration::from_secs(60)).await;
    let cli = Cli::new(stack, DEFAULT_TENANT, "download");

    let run = cli.run(&["download", &id, "-o", "out.csv", "--images", "images"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        std::fs::read(cli.file("out.csv")).unwrap(),
        api.download(&format!("/api/requests/{id}/output.csv")).await
    );
    let mut names: Vec<String> = std::fs::read_dir(cli.file("images"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["row0001-1.jpg", "row0002-1.jpg"], "every output; the failed image has none");
    for (name, index) in [("row0001-1.jpg", 0), ("row0002-1.jpg", 1)] {
        let expected = api.download(&format!("/api/requests/{id}/images/{index}")).await;
        assert_eq!(std::fs::read(cli.file("images").join(name)).unwrap(), expected, "{name}");
    }
    assert!(run.stdout.contains("2 images saved to images\n1 images have no output"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_status_list_and_failures_show_a_request_and_errors_have_their_exit_codes() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let cli = Cli::new(stack, "cli-views", "views");
    std::fs::write(cli.file("products.csv"), catalogue(&server)).unwrap();
    let submitted = cli.run(&["submit", "products.csv"]).await;
    assert_eq!(submitted.code, 0, "{submitted:?}");
    let id = request_id(&submitted);
    let api = ApiClient::for_tenant(stack, "cli-views");
    api.wait_until_final(&id, Duration::from_secs(60)).await;

    let status = cli.run(&["status", &id]).await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.stdout.starts_with(&format!("Request {id}: completed_with_errors: 2 done, 1 failed, 0 pending of 3\n")),
        "{}",
        status.stdout
    );
    let json = cli.run(&["status", &id, "--json"]).await;
    let answer: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|_| panic!("JSON: {json:?}"));
    assert_eq!((answer["request_id"].as_str(), answer["failed"].as_u64()), (Some(id.as_str()), Some(1)));
    let list = cli.run(&["list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    let row = list.stdout.lines().find(|line| line.starts_with(&id)).unwrap_or_else(|| panic!("{}", list.stdout));
    assert_eq!(row.split_whitespace().take(5).collect::<Vec<_>>(), [&id, "completed_with_errors", "3", "2", "1"]);
    let failures = cli.run(&["failures", &id]).await;
    assert_eq!(failures.code, 0, "{failures:?}");
    let missing = server.url("img/missing.jpg");
    assert_eq!(failures.stdout, format!("row 2\timage 2\thttp_status_404\t{missing}\tthe server answered HTTP 404\n"));

    let unknown = cli.run(&["status", "00000000-0000-4000-8000-000000000000"]).await;
    assert_eq!(unknown.code, 4, "not found: {unknown:?}");
    assert_eq!(unknown.stderr.lines().count(), 1, "one line: {}", unknown.stderr);
    let other_tenant = Cli::new(stack, DEFAULT_TENANT, "views_other_tenant").run(&["status", &id]).await;
    assert_eq!(other_tenant.code, 4, "another tenant's request is not found: {other_tenant:?}");
    let bad_key = cli.run(&["--api-key", "ik_not_a_key", "status", &id]).await;
    assert_eq!(bad_key.code, 3, "auth: {bad_key:?}");
    std::fs::write(cli.file("broken.csv"), "S. No.,Product Name,Input Image Urls\n1,Mug,not a url\n").unwrap();
    let refused = cli.run(&["submit", "broken.csv"]).await;
    assert_eq!(refused.code, 5, "refused input: {refused:?}");
    assert!(refused.stderr.starts_with("imgpipe: POST /api/upload/: invalid_csv: "), "{}", refused.stderr);
    assert!(refused.stderr.contains("\n  line 2"), "the problem by line: {}", refused.stderr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = cli.run(&["--api-url", &format!("http://{closed}"), "status", &id]).await;
    assert_eq!(unreachable.code, 6, "network: {unreachable:?}");
    let usage = cli.run(&["status"]).await;
    assert_eq!(usage.code, 2, "usage: {usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verify_webhook_accepts_a_real_delivery_and_refuses_a_tampered_one() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let hooks = WebhookReceiver::start().await;
    let cli = Cli::new(stack, DEFAULT_TENANT, "verify_webhook");
    std::fs::write(cli.file("products.csv"), catalogue(&server)).unwrap();
    let submitted = cli.run(&["submit", "products.csv", "--webhook", &hooks.url("cli")]).await;
    assert_eq!(submitted.code, 0, "{submitted:?}");
    let secret = submitted
        .stderr
        .lines()
        .find_map(|line| line.split_once("): ").map(|(_, secret)| secret.to_string()))
        .unwrap_or_else(|| panic!("the webhook secret is shown: {}", submitted.stderr));
    let delivery = wait_for("the webhook", Duration::from_secs(60), || async { hooks.deliveries("cli").pop() }).await;
    let head: String =
        delivery.headers.iter().map(|(name, value)| format!("{name}: {}\r\n", value.to_str().unwrap())).collect();
    let raw = [format!("POST /hook/cli HTTP/1.1\r\n{head}\r\n").into_bytes(), delivery.body.to_vec()].concat();
    std::fs::write(cli.file("delivery.http"), &raw).unwrap();
    std::fs::write(cli.file("headers.txt"), &head).unwrap();
    std::fs::write(cli.file("body.json"), &delivery.body).unwrap();
    let mut tampered = delivery.body.to_vec();
    tampered.extend_from_slice(b" ");
    std::fs::write(cli.file("tampered.json"), tampered).unwrap();

    let valid = cli.run(&["verify-webhook", "--secret", &secret, "--request", "delivery.http"]).await;
    assert_eq!((valid.code, valid.stdout.as_str()), (0, "valid\n"), "{valid:?}");
    let split =
        cli.run(&["verify-webhook", "--secret", &secret, "--headers", "headers.txt", "--body", "body.json"]).await;
    assert_eq!((split.code, split.stdout.as_str()), (0, "valid\n"), "{split:?}");
    let invalid =
        cli.run(&["verify-webhook", "--secret", &secret, "--headers", "headers.txt", "--body", "tampered.json"]).await;
    assert_eq!(invalid.code, 5, "{invalid:?}");
    assert_eq!(
        invalid.stderr,
        "imgpipe: invalid: no signature in webhook-signature matches this secret, id, timestamp and body\n"
    );
    let other_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let wrong = cli.run(&["verify-webhook", "--secret", other_secret, "--request", "delivery.http"]).await;
    assert_eq!(wrong.code, 5, "another request's secret: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_cancel_ends_a_running_request_cancelled_with_exact_counts() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let cli = Cli::new(stack, "cli-cancel", "cancel");
    // One photo done, one 404, two held by the server: the request stays running.
    let csv = format!(
        "S. No.,Product Name,Input Image Urls\n1,Mug,\"{}, {}\"\n2,Plate,\"{}, {}\"\n",
        server.url("img/a.jpg"),
        server.url("held/b.jpg"),
        server.url("img/missing.jpg"),
        server.url("held/a.jpg")
    );
    std::fs::write(cli.file("products.csv"), csv).unwrap();
    let submitted = cli.run(&["submit", "products.csv"]).await;
    assert_eq!(submitted.code, 0, "{submitted:?}");
    let id = request_id(&submitted);
    let api = ApiClient::for_tenant(stack, "cli-cancel");
    wait_for("two results and both held downloads", Duration::from_secs(60), || async {
        let status = api.status(&id).await.body;
        let held = server.requested().iter().filter(|path| path.starts_with("/held/")).count();
        (status["succeeded"] == 1 && status["failed"] == 1 && held >= 2).then_some(())
    })
    .await;

    let cancel = cli.run(&["cancel", &id]).await;
    server.release_held();

    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert!(
        cancel.stdout.starts_with(&format!("Request {id}: cancelled: 1 done, 1 failed, 2 cancelled, 0 pending of 4\n")),
        "{}",
        cancel.stdout
    );
    let again = cli.run(&["cancel", &id]).await;
    assert_eq!(again.code, 5, "409 already_final: {again:?}");
    assert!(
        again.stderr.starts_with(&format!("imgpipe: POST /api/requests/{id}/cancel: already_final: ")),
        "{again:?}"
    );
    let wait = cli.run(&["wait", &id, "--no-output"]).await;
    assert_eq!(wait.code, 5, "a cancelled request is exit code 5: {wait:?}");
    assert!(wait.stdout.contains(": 4 images, 1 done, 1 failed, 2 cancelled\n"), "{}", wait.stdout);
    assert!(wait.stdout.contains("\n  cancelled: 2\n"), "grouped by error code: {}", wait.stdout);
    assert_eq!(wait.stderr.lines().last(), Some(format!("imgpipe: request {id} ended cancelled").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_retry_processes_only_the_failed_images_and_saves_a_complete_output_csv() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let cli = Cli::new(stack, "cli-retry", "retry");
    // b.jpg is published only after the first run, which fails it (404).
    let csv = format!(
        "S. No.,Product Name,Input Image Urls\n1,Mug,{}\n2,Plate,\"{}, {}\"\n",
        server.url("img/a.jpg"),
        server.url("later/b.jpg"),
        server.url("img/a.jpg")
    );
    std::fs::write(cli.file("products.csv"), csv).unwrap();
    let first = cli.run(&["submit", "products.csv", "--wait", "--no-output"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let first_id = request_id(&first);
    assert!(first.stdout.contains(": 3 images, 2 done, 1 failed\n"), "{}", first.stdout);
    server.publish_later();
    let fetched_before = server.requested().len();

    let retry = cli.run(&["retry", &first_id, "--wait", "-o", "retried.csv"]).await;

    assert_eq!(retry.code, 0, "{retry:?}");
    let retry_id = request_id(&retry);
    assert_ne!(retry_id, first_id);
    assert!(retry.stderr.starts_with(&format!("retry of {first_id}: 3 images")), "{}", retry.stderr);
    assert!(retry.stdout.contains(&format!("Request {retry_id} completed in ")), "{}", retry.stdout);
    let fetched: Vec<String> = server.requested()[fetched_before..].to_vec();
    assert_eq!(fetched, ["/later/b.jpg"], "only the failed image is fetched again");
    let output = std::fs::read(cli.file("retried.csv")).unwrap();
    let slots: Vec<Vec<String>> = csv::Reader::from_reader(&output[..])
        .records()
        .map(|row| row.unwrap()[3].split(',').map(|slot| slot.trim().to_string()).collect())
        .collect();
    assert_eq!(slots.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2], "same rows, same slots");
    assert!(slots.iter().flatten().all(|slot| slot.starts_with("http")), "every slot filled: {slots:?}");
    let nothing = cli.run(&["retry", &retry_id]).await;
    assert_eq!(nothing.code, 5, "409 nothing_to_retry: {nothing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_submit_above_the_inline_limit_goes_the_presigned_way_and_completes() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let hooks = WebhookReceiver::start().await;
    // A tenant of its own: its receipts stay out of the dropped-CSV test's listing of the default's.
    let cli = Cli::new(stack, LARGE_TENANT, "presigned");
    let csv = catalogue(&server);
    std::fs::write(cli.file("products.csv"), &csv).unwrap();
    let limit = (csv.len() - 1).to_string();

    let run =
        cli.run(&["submit", "products.csv", "--inline-limit", &limit, "--webhook", &hooks.url("big"), "--wait"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("products.csv was sent the large-CSV way"), "{}", run.stderr);
    assert!(run.stderr.contains("webhook secret (shown once"), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("completed_with_errors: 2 done, 1 failed, 0 pending of 3"), "{}", run.stderr);
    let id = request_id(&run);
    let api = ApiClient::for_tenant(stack, LARGE_TENANT);
    let output = api.download(&format!("/api/requests/{id}/output.csv")).await;
    assert_eq!(std::fs::read(cli.file(&format!("{id}.output.csv"))).unwrap(), output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_submit_falls_back_to_the_presigned_way_when_the_api_answers_csv_too_large() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let server = ImageServer::start(photos(), Duration::ZERO).await;
    let cli = Cli::new(stack, LARGE_TENANT, "fallback");
    // 3 images, but over the API's 4 MiB inline limit: a product name of 4.5 MB.
    let name = "x".repeat(4_500_000);
    let csv = catalogue(&server).replacen("Mug", &name, 1);
    std::fs::write(cli.file("products.csv"), &csv).unwrap();

    // The CLI is told the limit is higher, so it tries inline first and gets 413 csv_too_large.
    let run = cli.run(&["submit", "products.csv", "--inline-limit", "8388608", "--wait", "--no-output"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("products.csv was sent the large-CSV way"), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("completed_with_errors: 2 done, 1 failed, 0 pending of 3"), "{}", run.stderr);
}
