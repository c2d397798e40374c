//! The worker: one SQS batch of image jobs in, a partial batch response out. It also reads
//! the jobs' dead-letter queue, recording each job found there as a failed image.

mod handler;

use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue, sdk_config};
use imgpipe_core::adapters::http_fetch::HttpFetcher;
use imgpipe_core::config::{WorkerConfig, sdk_operation_timeout};
use imgpipe_core::use_cases::process_image::CodecPool;
use lambda_runtime::service_fn;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    imgpipe_core::logging::init();
    let config = WorkerConfig::from_env()?;
    let sdk = sdk_config(sdk_operation_timeout()?).await;
    let worker = handler::Worker {
        fetcher: HttpFetcher::new(config.fetch.clone(), config.fetch_exempt_hosts.clone())?,
        blobs: S3Blobs::new(&sdk, &config.bucket),
        table: DynamoTable::new(&sdk, &config.table, config.item_lifetime),
        queue: SqsQueue::new(&sdk, &config.queue_url),
        codec: CodecPool::new(config.codec.clone(), config.codec_slots)
            .with_panic_marker(config.codec_panic_marker.clone()),
        fan_out_slot: tokio::sync::Semaphore::new(1),
        config,
    };
    lambda_runtime::run(service_fn(|event| worker.handle(event))).await
}
