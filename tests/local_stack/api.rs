//! The API's answers to bad or odd requests, through the emulator's HTTP API and the real
//! API binary.

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::stack::LocalStack;

use crate::STACK_USE;

/// Keys under `requests/` and items in the request table: what an accepted upload leaves.
async fn stored_footprint(stack: &LocalStack) -> (usize, usize) {
    let sdk = stack.sdk_config().await;
    let s3 = stack.s3_client().await;
    let objects = s3.list_objects_v2().bucket(&stack.bucket_name).prefix("requests/").send().await.unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let items = dynamodb
        .scan()
        .table_name(&stack.table_name)
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .unwrap();
    (objects.key_count.unwrap_or(0) as usize, items.count as usize)
}

#[tokio::test]
async fn a_bad_csv_gets_every_problem_with_its_line_and_nothing_is_stored() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _alone = STACK_USE.write().await;
    let before = stored_footprint(stack).await;

    let csv = "S. No.,Product Name,Input Image Urls\n\
        1,Shirt,https://img.example/a.jpg\n\
        2,,https://img.example/b.jpg\n\
        3,Shoe,ftp://img.example/c.jpg\n\
        1,Hat,https://img.example/d.jpg\n";
    let answer = api.upload(csv.as_bytes(), None).await;

    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.body["error"], "invalid_csv");
    let problems = answer.body["problems"].as_array().expect("a list of problems");
    let lines: Vec<u64> = problems.iter().map(|p| p["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5], "{problems:?}");
    assert_eq!(problems[0]["column"], 2, "the empty product name is in column 2");
    assert!(problems[1]["message"].as_str().unwrap().contains("http or https"), "{problems:?}");
    assert!(problems[2]["message"].as_str().unwrap().contains("line 2"), "names the first use: {problems:?}");
    assert!(answer.body.get("request_id").is_none());
    assert_eq!(stored_footprint(stack).await, before, "a rejected CSV must leave nothing behind");
}

#[tokio::test]
async fn binary_files_and_bad_webhooks_are_refused_with_a_reason() {
    let api = ApiClient::new(LocalStack::shared());

    let png = imgpipe_tests::fixtures::cutout_png(8);
    let answer = api.upload(&png, None).await;
    assert_eq!(answer.status, 422);
    assert!(answer.body["problems"][0]["message"].as_str().unwrap().contains("PNG"), "{}", answer.body);

    let csv = b"S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.jpg\n";
    let answer = api.upload(csv, Some("not a url")).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["error"], "invalid_webhook_url");

    let answer = api.upload_raw(csv, "application/json").await;
    assert_eq!(answer.status, 415);
    assert_eq!(answer.body["error"], "unsupported_media_type");

    let answer = api.upload(b"", None).await;
    assert_eq!(answer.status, 422);
}

#[tokio::test]
async fn unknown_requests_and_paths_are_404_json() {
    let api = ApiClient::new(LocalStack::shared());

    let answer = api.status(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (404, Some("not_found")));
    let answer = api.status("not-a-uuid").await;
    assert_eq!(answer.status, 404);
    let response = api.get(&format!("/api/requests/{}/output.csv", uuid::Uuid::new_v4())).await;
    assert_eq!(response.status(), 404);
    let response = api.get("/api/nothing-here").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
}

#[tokio::test]
async fn urls_separated_by_semicolons_or_line_breaks_are_refused_with_where_and_how_to_fix() {
    let api = ApiClient::new(LocalStack::shared());

    let csv = "S. No.,Product Name,Input Image Urls\r\n\
        1,Shirt,\"https://img.example/a.jpg, https://img.example/b.jpg\"\r\n\
        2,Shoe,https://img.example/c.jpg;https://img.example/d.jpg\r\n\
        3,Hat,\"https://img.example/e.jpg\r\nhttps://img.example/f.jpg\"\r\n\
        4,Sock,https://img.example/g.jpg;jsessionid=1\r\n";
    let answer = api.upload(csv.as_bytes(), None).await;

    assert_eq!((answer.status, answer.body["error"].as_str()), (422, Some("invalid_csv")), "{}", answer.body);
    let problems = answer.body["problems"].as_array().expect("a list of problems");
    let places: Vec<(u64, u64)> =
        problems.iter().map(|p| (p["line"].as_u64().unwrap(), p["column"].as_u64().unwrap())).collect();
    assert_eq!(places, [(3, 3), (4, 3)], "a `;` inside one URL (line 5) is fine: {problems:?}");
    for (problem, separator) in problems.iter().zip(["semicolons", "line breaks"]) {
        let message = problem["message"].as_str().unwrap();
        assert!(message.contains(&format!("this holds 2 URLs separated by {separator}")), "{message}");
        assert!(message.contains("separate URLs with commas"), "{message}");
    }
}
