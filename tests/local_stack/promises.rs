//! The API's documented answers (docs/api.md) that the other modules do not reach, each
//! through the API: 413 over MAX_CSV_BYTES, a wrong method's JSON 405, `not_ready`,
//! `no_errors` and `image_failed`, paging with `after`, and links that follow
//! `X-Forwarded-Proto`.

use std::collections::HashMap;
use std::time::Duration;

use imgpipe_tests::api_client::{Answer, ApiClient};
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::multipart_form;
use imgpipe_tests::servers::ImageServer;
use imgpipe_tests::stack::LocalStack;
use reqwest::Method;
use serde_json::Value;

use crate::STACK_USE;

/// MAX_CSV_BYTES's default, which the local stack keeps: what API Gateway and Lambda can carry
/// once base64-encoded (docs/api.md, "Limits").
const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    Answer { status, body: response.json().await.unwrap_or(Value::Null) }
}

/// An error answer in the documented shape: exactly `error` and `message`.
fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!((answer.status, answer.body["error"].as_str()), (status, Some(code)), "{}", answer.body);
    assert!(answer.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", answer.body);
}

async fn get(api: &ApiClient, path: &str) -> Answer {
    answer(api.get(path).await).await
}

/// `Location` of a redirect.
async fn location(api: &ApiClient, path: &str) -> String {
    let response = api.get(path).await;
    assert_eq!(response.status(), 302, "{path}");
    response.headers()["location"].to_str().unwrap().to_string()
}

fn csv_of(rows: &[Vec<String>]) -> String {
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (i, urls) in rows.iter().enumerate() {
        csv.push_str(&format!("{},Item {},\"{}\"\n", i + 1, i + 1, urls.join(",")));
    }
    csv
}

async fn accept(api: &ApiClient, csv: &str) -> String {
    let answer = api.upload(csv.as_bytes(), None).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["request_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_csv_over_max_csv_bytes_is_413_and_one_at_the_limit_is_read() {
    let api = ApiClient::new(LocalStack::shared());

    // Nothing but the size is looked at: these bytes are not even a CSV.
    let mut over = b"\x89PNG\r\n\x1a\n".to_vec();
    over.resize(MAX_CSV_BYTES + 1, b'x');
    let answer = api.upload_raw(&over, "text/csv").await;
    assert_error(&answer, 413, "csv_too_large");
    assert_eq!(
        answer.body["message"],
        "the CSV is larger than 4194304 bytes, the most an upload's body can carry; send CSVs of up to 104857600 \
         bytes with POST /api/uploads (a presigned upload)"
    );
    let answer = api.upload(&over, None).await;
    assert_error(&answer, 413, "csv_too_large");

    // At the limit the CSV is read (and refused for what it holds, not for its size).
    let header = "S. No.,Product Name,Input Image Urls\n";
    let at_limit = format!("{header}{}", ",".repeat(MAX_CSV_BYTES - header.len()));
    assert_eq!(at_limit.len(), MAX_CSV_BYTES);
    let answer = api.upload_raw(at_limit.as_bytes(), "text/csv").await;
    assert_error(&answer, 422, "invalid_csv");
}

#[tokio::test]
async fn a_wrong_method_gets_a_json_405_and_the_allowed_methods() {
    let stack = LocalStack::shared();
    let http = stack.http_client();
    let id = uuid::Uuid::new_v4();
    let cases = [
        (Method::GET, "/api/upload/".to_string(), "POST"),
        (Method::PUT, "/api/upload".to_string(), "POST"),
        (Method::POST, format!("/api/status/{id}/"), "GET"),
        (Method::DELETE, format!("/api/requests/{id}/output.csv"), "GET"),
        (Method::POST, format!("/api/requests/{id}/images/0"), "GET"),
    ];
    for (method, path, allowed) in cases {
        let response = http.request(method.clone(), format!("{}{path}", stack.api_url)).send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let answer = answer(response).await;
        assert_error(&answer, 405, "method_not_allowed");
        assert_eq!(answer.body.as_object().unwrap().len(), 2, "{method} {path}: {}", answer.body);
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains(method.as_str()), "{method} {path}: {message}");
        assert!(allow.as_deref().is_some_and(|allow| allow.contains(allowed)), "{method} {path}: Allow {allow:?}");
    }
}

/// A request with a failed image, a slow one and enough images to page through: while the
/// slow image is on its way, nothing final exists yet (`not_ready`); afterwards the failed
/// image answers `image_failed` and the listing pages with `after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_and_after_the_final_state_each_download_answers_as_documented() {
    let api = ApiClient::new(LocalStack::shared());
    let _in_flight = STACK_USE.read().await;
    let files: HashMap<String, (Vec<u8>, &str)> =
        (0..4).map(|n| (format!("p{n}.jpg"), (photo_jpeg(320 + 16 * n, 240 + 8 * n, 40 + n), "image/jpeg"))).collect();
    let server = ImageServer::start(files, Duration::from_secs(4)).await;
    // Images 0 (slow), 1 (404), 2, 3 and 4.
    let rows = vec![
        vec![server.url("slow/p0.jpg"), server.url("img/missing.jpg")],
        vec![server.url("img/p1.jpg"), server.url("img/p2.jpg")],
        vec![server.url("img/p3.jpg")],
    ];
    let id = accept(&api, &csv_of(&rows)).await;

    let answer = get(&api, &format!("/api/requests/{id}/output.csv")).await;
    assert_error(&answer, 404, "not_ready");
    let answer = get(&api, &format!("/api/requests/{id}/errors.csv")).await;
    assert_error(&answer, 404, "not_ready");
    let answer = get(&api, &format!("/api/requests/{id}/images/0")).await;
    assert_error(&answer, 404, "not_ready");
    let status = api.status(&id).await;
    assert!(status.body["completed_at"].is_null(), "the slow image is still on its way: {}", status.body);

    let (status, _) = api.wait_until_final(&id, Duration::from_secs(120)).await;
    assert_eq!(status["status"], "completed_with_errors", "{status}");
    let answer = get(&api, &format!("/api/requests/{id}/images/1")).await;
    assert_error(&answer, 404, "image_failed");
    let message = answer.body["message"].as_str().unwrap();
    assert_eq!(message, "this image failed: the server answered HTTP 404");
    assert!(location(&api, &format!("/api/requests/{id}/images/0")).await.contains("/output/"));
    assert!(location(&api, &format!("/api/requests/{id}/errors.csv")).await.contains("errors.csv"));
    let answer = get(&api, &format!("/api/requests/{id}/images/5")).await;
    assert_error(&answer, 404, "not_found");

    // Two pages of 3: every image once, in order, and the last page says so.
    let first = get(&api, &format!("/api/requests/{id}/images?limit=3")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["next_after"], 2, "{}", first.body);
    let second = get(&api, &format!("/api/requests/{id}/images?limit=3&after=2")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(second.body["next_after"].is_null(), "{}", second.body);
    let listed: Vec<&Value> =
        [&first, &second].iter().flat_map(|page| page.body["images"].as_array().unwrap().iter()).collect();
    let indexes: Vec<u64> = listed.iter().map(|image| image["image_index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    let urls: Vec<&str> = listed.iter().map(|image| image["input_url"].as_str().unwrap()).collect();
    assert_eq!(urls, rows.concat().iter().map(String::as_str).collect::<Vec<_>>());
    let states: Vec<&str> = listed.iter().map(|image| image["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["DONE", "FAILED", "DONE", "DONE", "DONE"]);
    assert_eq!(listed[1]["error_code"], "http_status_404");
}

/// A request whose images all succeeded has no errors report; its links follow the scheme the
/// client was reached by (`X-Forwarded-Proto`, as API Gateway sets it), `http` without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_errors_report_without_failures_and_links_follow_x_forwarded_proto() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let http = stack.http_client();
    let _in_flight = STACK_USE.read().await;
    let files = HashMap::from([("a.jpg".to_string(), (photo_jpeg(300, 200, 51), "image/jpeg"))]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let csv = csv_of(&[vec![server.url("img/a.jpg")], vec![server.url("img/a.jpg")]]);

    let (content_type, body) = multipart_form(&[("file", Some("products.csv"), csv.as_bytes())]);
    let response = http
        .post(format!("{}/api/upload/", stack.api_url))
        .header("content-type", content_type)
        .header("x-forwarded-proto", "https")
        .body(body)
        .send()
        .await
        .unwrap();
    let accepted = answer(response).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().unwrap().to_string();
    let host = stack.api_url.trim_start_matches("http://");
    assert_eq!(accepted.body["status_url"], format!("https://{host}/api/status/{id}/"));

    let (status, _) = api.wait_until_final(&id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["output_csv_url"], format!("http://{host}/api/requests/{id}/output.csv"));
    let forwarded = http
        .get(format!("{}/api/status/{id}/", stack.api_url))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let forwarded = answer(forwarded).await;
    assert_eq!(forwarded.status, 200, "{}", forwarded.body);
    assert_eq!(forwarded.body["output_csv_url"], format!("https://{host}/api/requests/{id}/output.csv"));
    assert_eq!(forwarded.body["images_url"], format!("https://{host}/api/requests/{id}/images"));
    assert!(forwarded.body["errors_csv_url"].is_null(), "{}", forwarded.body);

    let answer = get(&api, &format!("/api/requests/{id}/errors.csv")).await;
    assert_error(&answer, 404, "no_errors");
}
