use super::*;
use crate::adapters::memory::{MemoryBlobs, MemoryFetcher, MemoryQueue, MemoryTable};
use crate::domain::api_key::{ApiKey, KeyRecord};
use crate::domain::codec::CodecLimits;
use crate::domain::csv_rules::CsvLimits;
use crate::domain::http_url::HttpUrl;
use crate::domain::request::{ImageState, QueueMessage, RequestRecord, RequestStatus};
use crate::ports::ManageKeys;
use crate::test_support::{NO_QUOTA, tenant};

const CSV: &str = "S. No.,Product Name,Input Image Urls\n1,Shirt,https://img.example/a.png\n";

#[derive(Default)]
struct Fakes {
    fetcher: MemoryFetcher,
    blobs: MemoryBlobs,
    queue: MemoryQueue,
    table: MemoryTable,
}

impl Fakes {
    fn ports(&self) -> WorkerPorts<'_> {
        WorkerPorts::with_table(&self.fetcher, &self.blobs, &self.queue, &self.table)
    }

    /// A request of one image, whose CSV is stored.
    async fn request(&self) -> (RequestId, ImageJob) {
        let id = RequestId::new_random();
        let request = RequestRecord::new(id, tenant(), 1, None, Utc::now());
        self.blobs.put(&request.input_csv_key, CSV.into(), "text/csv").await.unwrap();
        self.table.create(&request, &NO_QUOTA).await.unwrap();
        let url = HttpUrl::parse("https://img.example/a.png").unwrap();
        (id, ImageJob { request_id: id, tenant_id: tenant(), image_index: 0, row: 0, url })
    }

    async fn handle(&self, body: &str, receives: u32, from_dead_letters: bool, time_left: Duration) -> Verdict {
        let delivery = Delivery { body, receives, from_dead_letters, time_left };
        self.handle_batch(vec![delivery]).await.remove(0)
    }

    async fn handle_batch(&self, deliveries: Vec<Delivery<'_>>) -> Vec<Verdict> {
        let retry = RetryPolicy { max_receives: 3, base: Duration::from_secs(10), cap: Duration::from_secs(120) };
        let limits = CsvLimits::default();
        let reserves = TimeReserves {
            fetch: Duration::from_secs(5),
            codec: Duration::from_secs(5),
            store: Duration::from_secs(10),
        };
        let upload = UploadRules { limits: &limits, quota: NO_QUOTA };
        let fan_out_slot = tokio::sync::Semaphore::new(1);
        let rules = WorkerRules { retry: &retry, reserves, upload, chunk_images: 2_000, fan_out_slot: &fan_out_slot };
        let codec = CodecPool::new(CodecLimits::default(), 1);
        handle_queue_batch(self.ports(), &rules, &codec, deliveries, 10).await
    }

    async fn status(&self, id: RequestId) -> RequestStatus {
        self.table.get(id).await.unwrap().unwrap().status
    }
}

const PLENTY: Duration = Duration::from_secs(600);

fn body(message: QueueMessage) -> String {
    serde_json::to_string(&message).unwrap()
}

#[tokio::test]
async fn an_image_from_the_dead_letter_queue_fails_as_retries_exhausted() {
    let fakes = Fakes::default();
    let (id, job) = fakes.request().await;
    let verdict = fakes.handle(&body(QueueMessage::Image(job)), 1, true, PLENTY).await;

    assert_eq!(verdict, Verdict::Acknowledge);
    let images = fakes.table.recorded_images(id).await.unwrap();
    assert_eq!((images[0].state, images[0].error_code.as_deref()), (ImageState::Failed, Some(RETRIES_EXHAUSTED)));
}

#[tokio::test]
async fn a_fan_out_from_the_dead_letter_queue_fails_its_request() {
    let fakes = Fakes::default();
    let (id, _) = fakes.request().await;
    let verdict = fakes.handle(&body(QueueMessage::FanOut { fan_out: id }), 1, true, PLENTY).await;

    assert_eq!(verdict, Verdict::Acknowledge);
    assert_eq!(fakes.status(id).await, RequestStatus::Failed);
    assert!(fakes.queue.jobs.lock().unwrap().is_empty(), "no job queued for it");
}

#[tokio::test]
async fn a_fan_out_queues_the_jobs() {
    let fakes = Fakes::default();
    let (id, job) = fakes.request().await;
    assert_eq!(fakes.handle(&body(QueueMessage::FanOut { fan_out: id }), 1, false, PLENTY).await, Verdict::Acknowledge);
    assert_eq!(fakes.queue.queued_images(), [job]);
    assert_eq!(fakes.status(id).await, RequestStatus::Processing);
}

#[tokio::test]
async fn a_job_without_time_to_finish_is_handed_back_unstarted() {
    let fakes = Fakes::default();
    let (id, job) = fakes.request().await;
    let verdict = fakes.handle(&body(QueueMessage::Image(job)), 1, false, Duration::from_secs(19)).await;

    assert_eq!(verdict, Verdict::HandBack { delay: Some(Duration::ZERO) });
    assert!(fakes.table.recorded_images(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_transient_failure_is_handed_back_with_the_policys_delay_until_the_last_attempt() {
    let mut fakes = Fakes::default();
    let (id, job) = fakes.request().await;
    fakes.fetcher.responses.insert(job.url.to_string(), Err(503));
    let message = body(QueueMessage::Image(job));

    assert_eq!(
        fakes.handle(&message, 2, false, PLENTY).await,
        Verdict::HandBack { delay: Some(Duration::from_secs(20)) }
    );
    assert!(fakes.table.recorded_images(id).await.unwrap().is_empty(), "a retry records nothing");
    assert_eq!(fakes.handle(&message, 3, false, PLENTY).await, Verdict::Acknowledge);
    let images = fakes.table.recorded_images(id).await.unwrap();
    assert_eq!(images[0].error_code.as_deref(), Some(RETRIES_EXHAUSTED), "the last attempt records its failure");
}

#[tokio::test]
async fn a_dropped_csv_from_the_dead_letter_queue_gets_a_receipt_and_no_request() {
    let fakes = Fakes::default();
    fakes.blobs.put("incoming/acme/shirts.csv", CSV.into(), "text/csv").await.unwrap();
    let verdict = fakes.handle(&dropped_notification(), 5, true, PLENTY).await;

    assert_eq!(verdict, Verdict::Acknowledge);
    let receipt = fakes.blobs.get("receipts/acme/shirts.json").await.unwrap().expect("a receipt");
    let receipt: serde_json::Value = serde_json::from_slice(&receipt).unwrap();
    assert_eq!(receipt["status"], "rejected");
    assert!(receipt["error"].as_str().unwrap().contains("drop the file again"), "{receipt}");
    assert!(fakes.queue.fan_outs.lock().unwrap().is_empty(), "not accepted as a fresh drop");
}

#[tokio::test]
async fn a_body_nobody_wrote_is_acknowledged_and_changes_nothing() {
    let fakes = Fakes::default();
    assert_eq!(fakes.handle("{\"hello\": 1}", 1, false, PLENTY).await, Verdict::Acknowledge);
    assert!(fakes.blobs.objects.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_notification_of_a_dropped_csv_makes_a_request_and_an_outage_hands_it_back() {
    let fakes = Fakes::default();
    let key = KeyRecord::new(&ApiKey::generate().unwrap(), tenant(), Utc::now());
    fakes.table.add_key(&key).await.unwrap();
    fakes.blobs.put("incoming/acme/shirts.csv", CSV.into(), "text/csv").await.unwrap();
    let notification = dropped_notification();

    fakes.queue.outage.set(true);
    assert_eq!(fakes.handle(&notification, 1, false, PLENTY).await, Verdict::HandBack { delay: None });
    fakes.queue.outage.set(false);
    assert_eq!(fakes.handle(&notification, 2, false, PLENTY).await, Verdict::Acknowledge);
    assert!(fakes.blobs.get("receipts/acme/shirts.json").await.unwrap().is_some(), "a receipt is written");
}

fn dropped_notification() -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-30T00:00:00.123Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "incoming-csv",
            "bucket": {"name": "bucket", "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": "arn:aws:s3:::bucket"},
            "object": {"key": "incoming/acme/shirts.csv", "size": CSV.len(), "eTag": "e", "sequencer": "01"}
        }
    }]})
    .to_string()
}

#[tokio::test]
async fn a_chunk_without_the_time_to_queue_its_jobs_is_queued_again_as_a_new_message() {
    let fakes = Fakes::default();
    let (id, _) = fakes.request().await;
    let chunk = crate::domain::fan_out_chunks::FanOutChunk { request_id: id, first: 0, count: 1 };
    let message = body(QueueMessage::FanOutChunk { fan_out_chunk: chunk });

    // Less than the reserves' 20 s left (after waiting for the fan-out slot, say): handing it
    // back would spend one of its deliveries, and five such would fail its request.
    assert_eq!(fakes.handle(&message, 4, false, Duration::from_secs(19)).await, Verdict::Acknowledge);
    assert_eq!(*fakes.queue.chunks.lock().unwrap(), [chunk], "queued again, with a delivery count of its own");
    assert!(fakes.queue.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_image_results_of_one_request_in_a_batch_are_recorded_in_one_write() {
    let fakes = Fakes::default();
    let id = RequestId::new_random();
    fakes.table.create(&RequestRecord::new(id, tenant(), 4, None, Utc::now()), &NO_QUOTA).await.unwrap();
    let job = |index: u32, url: &str| ImageJob {
        request_id: id,
        tenant_id: tenant(),
        image_index: index,
        row: index,
        url: HttpUrl::parse(url).unwrap(),
    };
    // A URL named by two images, two more of one image each (all missing: 404), and one
    // message nobody wrote: each message is answered on its own.
    let mut logo = crate::domain::fetch_jobs::FetchJob::from(job(0, "https://img.example/logo.png"));
    logo.images.push(crate::domain::fetch_jobs::Slot { image_index: 3, row: 3 });
    let bodies = [
        body(QueueMessage::Fetch { fetch: logo }),
        body(QueueMessage::Image(job(1, "https://img.example/a.png"))),
        "{\"hello\": 1}".to_string(),
        body(QueueMessage::Image(job(2, "https://img.example/b.png"))),
    ];
    let deliveries =
        bodies.iter().map(|body| Delivery { body, receives: 1, from_dead_letters: false, time_left: PLENTY }).collect();
    let verdicts = fakes.handle_batch(deliveries).await;

    assert_eq!(verdicts, (0..4).map(|_| Verdict::Acknowledge).collect::<Vec<_>>());
    assert_eq!(fakes.fetcher.fetches.load(std::sync::atomic::Ordering::SeqCst), 3, "one fetch per distinct URL");
    assert_eq!(fakes.table.result_writes.load(std::sync::atomic::Ordering::SeqCst), 1, "one write");
    let request = fakes.table.get(id).await.unwrap().unwrap();
    assert_eq!((request.failed, request.remaining), (4, 0));
    let images = fakes.table.recorded_images(id).await.unwrap();
    assert!(images.iter().all(|image| image.error_code.as_deref() == Some("http_status_404")), "{images:?}");
}
