//! Repeated URLs in one request (a brand's logo, a placeholder, one photo for every colour):
//! each distinct URL is fetched, compressed and stored once, and every slot that names it gets
//! the result, its own image with its own link, or the same failure.

use std::collections::HashMap;
use std::time::Duration;

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::ImageServer;
use imgpipe_tests::stack::LocalStack;

use crate::STACK_USE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_repeated_in_a_request_is_fetched_once_and_fills_every_slot_that_names_it() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let files = HashMap::from([
        ("logo.jpg".to_string(), (photo_jpeg(400, 300, 1), "image/jpeg")),
        ("shirt.jpg".to_string(), (photo_jpeg(500, 400, 2), "image/jpeg")),
        ("shoe.jpg".to_string(), (photo_jpeg(450, 350, 3), "image/jpeg")),
    ]);
    let server = ImageServer::start(files, Duration::ZERO).await;
    let url = |path: &str| server.url(path);
    // The logo three times, once with the scheme in capitals (the same URL once normalised);
    // a missing image twice.
    let logo_shouting = url("img/logo.jpg").replacen("http://", "HTTP://", 1);
    let rows = [
        vec![url("img/logo.jpg"), url("img/shirt.jpg")],
        vec![logo_shouting, url("img/shoe.jpg")],
        vec![url("img/logo.jpg"), url("img/missing.jpg")],
        vec![url("img/missing.jpg"), url("img/shirt.jpg")],
    ];
    let mut csv = String::from("S. No.,Product Name,Input Image Urls\n");
    for (i, urls) in rows.iter().enumerate() {
        csv.push_str(&format!("{},Product {},\"{}\"\n", i + 1, i + 1, urls.join(", ")));
    }
    let accepted = api.upload(csv.as_bytes(), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["request_id"].as_str().unwrap().to_string();

    let (status, _) = api.wait_until_final(&id, Duration::from_secs(120)).await;
    let counts = ["total", "succeeded", "failed", "pending"].map(|field| status[field].as_u64().unwrap());
    assert_eq!(counts, [8, 6, 2, 0], "every slot counted: {status}");
    let mut failures: Vec<(u64, &str)> = status["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["image_index"].as_u64().unwrap(), f["error_code"].as_str().unwrap()))
        .collect();
    failures.sort();
    assert_eq!(failures, [(5, "http_status_404"), (6, "http_status_404")], "the same failure for both slots");

    let mut fetched = server.requested();
    fetched.sort();
    assert_eq!(
        fetched,
        ["/img/logo.jpg", "/img/missing.jpg", "/img/shirt.jpg", "/img/shoe.jpg"],
        "one fetch per distinct URL"
    );

    // Same rows, same slots, each linking its own image; the slots of one URL get the same bytes.
    let output = api.download(status["output_csv_url"].as_str().unwrap()).await;
    let mut reader = csv::Reader::from_reader(output.as_slice());
    let slots: Vec<Vec<String>> =
        reader.records().map(|record| record.unwrap()[3].split(',').map(String::from).collect()).collect();
    assert_eq!(slots.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2, 2], "{slots:?}");
    let links: Vec<&String> = slots.iter().flatten().collect();
    for (index, link) in links.iter().enumerate() {
        match index {
            5 | 6 => assert_eq!(link.as_str(), "", "a failed slot stays empty"),
            _ => assert!(link.ends_with(&format!("/images/{index}")), "slot {index} links its own image: {link}"),
        }
    }
    let logo = api.download(links[0]).await;
    assert_eq!(api.download(links[2]).await, logo, "the logo's second slot");
    assert_eq!(api.download(links[4]).await, logo, "the logo's third slot");
    assert_eq!(api.download(links[7]).await, api.download(links[1]).await, "the shirt's second slot");
    assert_ne!(logo, api.download(links[1]).await);
}
