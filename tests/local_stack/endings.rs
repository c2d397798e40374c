//! Requests that end without their images, and webhooks whose sender died: each one still
//! ends and is announced once, through the real functions.

use std::time::Duration;

use imgpipe_tests::api_client::ApiClient;
use imgpipe_tests::fixtures::photo_jpeg;
use imgpipe_tests::requests::record_accepted_request;
use imgpipe_tests::servers::{ImageServer, WebhookReceiver};
use imgpipe_tests::stack::LocalStack;
use imgpipe_tests::waits::wait_for;
use serde_json::{Value, json};

use crate::STACK_USE;

async fn sweep(stack: &LocalStack) -> Value {
    stack.invoke(&stack.notifier_function_name, &json!({"sweep": {"idle_seconds": 900}})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_killed_between_the_final_write_and_the_post_still_delivers_the_webhook_once() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    // Kills the notifier's processes: no other test may be finishing a request meanwhile.
    let _alone = STACK_USE.write().await;
    let server =
        ImageServer::start([("a.jpg".into(), (photo_jpeg(320, 240, 1), "image/jpeg"))].into(), Duration::ZERO).await;
    let hooks = WebhookReceiver::start().await;
    hooks.set_stalled(true);
    let csv = format!("S. No.,Product Name,Input Image Urls\n1,Shirt,{}\n", server.url("img/a.jpg"));
    let answer = api.upload(csv.as_bytes(), Some(&hooks.url("killed"))).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap().to_string();

    // The request is final and the notifier is inside its POST: kill it there.
    wait_for("the notifier's POST", Duration::from_secs(60), || async {
        (!hooks.stalled("killed").is_empty()).then_some(())
    })
    .await;
    assert!(stack.kill_function_processes(&stack.notifier_function_name) > 0, "a notifier process was running");
    hooks.set_stalled(false);
    assert_eq!(api.status(&id).await.body["status"], "completed");
    assert!(hooks.received("killed").is_empty(), "nothing answered yet");

    // Once it can no longer be in flight, the sweeper makes the delivery.
    assert!(stack.make_webhook_due(&id).await, "the webhook is owed");
    assert_eq!(sweep(stack).await["webhooks_tried"], 1);
    // Were it still owed, it would be delivered again once due.
    stack.make_webhook_due(&id).await;
    assert_eq!(sweep(stack).await["webhooks_tried"], 0, "delivered: nothing owed");
    let delivered = hooks.deliveries("killed");
    assert_eq!(delivered.len(), 1, "exactly one delivery answered");
    let first_try = &hooks.stalled("killed")[0];
    assert_eq!(delivered[0].headers["webhook-id"], first_try.headers["webhook-id"], "the same webhook-id");
    assert_eq!(delivered[0].headers["webhook-id"].to_str().unwrap(), format!("msg_{id}"));
    let body: Value = serde_json::from_slice(&delivered[0].body).unwrap();
    assert_eq!((body["status"].as_str(), body["succeeded"].as_u64()), (Some("completed"), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_in_the_dead_letter_queue_fails_its_request_and_announces_it_once() {
    let stack = LocalStack::shared();
    let api = ApiClient::new(stack);
    let _in_flight = STACK_USE.read().await;
    let hooks = WebhookReceiver::start().await;
    // A request accepted as the API accepts one, whose fan-out then failed on every delivery.
    let csv = "S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.jpg\n";
    let id = record_accepted_request(stack, csv, 1, Some(&hooks.url("dead-fan-out")), chrono::Utc::now()).await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk_config().await);
    let fan_out = json!({"fan_out": id}).to_string();
    sqs.send_message().queue_url(&stack.jobs_dead_letters_url).message_body(fan_out).send().await.unwrap();

    let (status, _) = api.wait_until_final(&id.to_string(), Duration::from_secs(60)).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["failure_reason"], "its image jobs could not be queued in any attempt");
    assert_eq!(status["output_csv_url"], Value::Null);

    // Owed at once, delivered by the sweeper (the emulator's own schedule is off).
    sweep(stack).await;
    wait_for("the failed request's webhook", Duration::from_secs(30), || async {
        (!hooks.received("dead-fan-out").is_empty()).then_some(())
    })
    .await;
    sweep(stack).await;
    let received = hooks.received("dead-fan-out");
    assert_eq!(received.len(), 1, "announced once");
    let body: Value = serde_json::from_slice(&received[0]).unwrap();
    assert_eq!((body["status"].as_str(), &body["output_csv_url"]), (Some("failed"), &Value::Null));
    assert!(body["failure_reason"].as_str().unwrap().contains("could not be queued"), "{body}");
}
