//! Tenants through the real authorizer: each caller sees only its own requests, retries an
//! upload safely with an idempotency key, stays within its quota, and no webhook secret is kept.

use std::collections::HashSet;
use std::time::Duration;

use imgpipe_core::domain::quota::DEFAULT_MAX_OPEN_IMAGES;
use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::servers::{ImageServer, WebhookReceiver};
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::tables::set_open_images;
use serde_json::Value;

use crate::STACK_USE;

fn catalogue(server: &ImageServer, images: usize) -> String {
    let urls: Vec<String> = (0..images).map(|_| server.url("img/a.jpg")).collect();
    format!("S. No.,Product Name,Input Image Urls\n1,Shirt,\"{}\"\n", urls.join(","))
}

async fn image_server() -> ImageServer {
    ImageServer::start([("a.jpg".into(), (photo_jpeg(320, 240, 1), "image/jpeg"))].into(), Duration::ZERO).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_request_is_not_found_on_any_route_and_not_listed() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let (a, b) = (ApiClient::for_tenant(stack, "tenant-a"), ApiClient::for_tenant(stack, "tenant-b"));
    let server = image_server().await;
    let answer = b.upload(catalogue(&server, 1).as_bytes(), None).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap().to_string();
    let (status, _) = b.wait_until_final(&id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed");

    for path in [
        "status/{id}/",
        "requests/{id}/images",
        "requests/{id}/images/0",
        "requests/{id}/output.csv",
        "requests/{id}/errors.csv",
    ] {
        let path = format!("/api/{}", path.replace("{id}", &id));
        let theirs = a.get(&path).await;
        assert_eq!(theirs.status().as_u16(), 404, "{path}");
        let body: Value = theirs.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}: the same answer as an unknown id");
        let own: Value = b.get(&path).await.json().await.unwrap_or(Value::Null);
        assert_ne!(own["error"], "not_found", "{path} is there for its owner: {own}");
    }
    let listed: Value = a.get("/api/requests").await.json().await.unwrap();
    let ids: HashSet<&str> =
        listed["requests"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert!(!ids.contains(id.as_str()), "A's list holds none of B's: {listed}");
    let owned: Value = b.get("/api/requests").await.json().await.unwrap();
    assert_eq!(owned["requests"][0]["request_id"], id.as_str(), "B's newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_repeated_with_its_key_makes_one_request() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let api = ApiClient::for_tenant(stack, "idempotent");
    let server = image_server().await;
    let csv = catalogue(&server, 2);

    let (first, replayed) = api.upload_with_key(csv.as_bytes(), "order-7").await;
    assert_eq!((first.status, replayed), (202, false), "{}", first.body);
    let (again, replayed) = api.upload_with_key(csv.as_bytes(), "order-7").await;
    assert_eq!((again.status, replayed), (202, true), "{}", again.body);
    assert_eq!(again.body["request_id"], first.body["request_id"]);
    let (other, _) = api.upload_with_key(catalogue(&server, 3).as_bytes(), "order-7").await;
    assert_eq!((other.status, other.body["error"].as_str()), (422, Some("idempotency_key_reused")));

    let csv = catalogue(&server, 1);
    let (one, two) =
        tokio::join!(api.upload_with_key(csv.as_bytes(), "order-8"), api.upload_with_key(csv.as_bytes(), "order-8"));
    let made: HashSet<&str> =
        [&one.0, &two.0].iter().filter(|a| a.status == 202).map(|a| a.body["request_id"].as_str().unwrap()).collect();
    assert_eq!(made.len(), 1, "one request for one key: {:?} {:?}", one.0, two.0);
    for answer in [&one.0, &two.0].iter().filter(|a| a.status != 202) {
        assert_eq!(answer.status, 409, "{:?}", answer.body);
    }
    let listed: Value = api.get("/api/requests").await.json().await.unwrap();
    assert_eq!(listed["requests"].as_array().unwrap().len(), 2, "two keys, two requests: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_tenants_quota_gets_429_and_stores_nothing() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let api = ApiClient::for_tenant(stack, "quota");
    let server = image_server().await;
    // The quota is large (MaxOpenImagesPerTenant); the tenant's open images are set just under it.
    let quota = DEFAULT_MAX_OPEN_IMAGES;
    set_open_images(stack, "quota", quota - 3).await;

    let first = api.upload(catalogue(&server, 3).as_bytes(), None).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let over = api.upload(catalogue(&server, 3).as_bytes(), None).await;
    assert_eq!((over.status, over.body["error"].as_str()), (429, Some("quota_exceeded")));
    let listed: Value = api.get("/api/requests").await.json().await.unwrap();
    assert_eq!(listed["requests"].as_array().unwrap().len(), 1, "nothing stored for it");

    let id = first.body["request_id"].as_str().unwrap();
    api.wait_until_final(id, Duration::from_secs(60)).await;
    let next = api.upload(catalogue(&server, 3).as_bytes(), None).await;
    assert_eq!(next.status, 202, "accepted once the first ended: {}", next.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_item_holds_a_webhook_secret_and_the_webhook_still_verifies() {
    let stack = LocalStack::shared();
    let _in_flight = STACK_USE.read().await;
    let api = ApiClient::new(stack);
    let server = image_server().await;
    let hooks = WebhookReceiver::start().await;
    let answer = api.upload(catalogue(&server, 1).as_bytes(), Some(&hooks.url("secret"))).await;
    let secret = answer.body["webhook_secret"].as_str().expect("a secret").to_string();
    let id = answer.body["request_id"].as_str().unwrap().to_string();
    api.wait_until_final(&id, Duration::from_secs(60)).await;
    let delivery = imgpipe_tests::waits::wait_for("the webhook", Duration::from_secs(30), || async {
        hooks.deliveries("secret").into_iter().next()
    })
    .await;
    let signing = imgpipe_core::domain::webhook_signature::WebhookSecret::parse(&secret).unwrap();
    assert_eq!(delivery.verify(&signing), Ok(()), "signed with the secret the upload answered");

    let encoded = secret.trim_start_matches("whsec_");
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
    let items: Vec<_> =
        dynamo.scan().table_name(&stack.table_name).into_paginator().items().send().collect::<Vec<_>>().await;
    assert!(!items.is_empty());
    for item in items {
        let item = format!("{:?}", item.expect("a scanned item"));
        assert!(!item.contains(encoded) && !item.contains("whsec_"), "an item holds a webhook secret: {item}");
    }
}
