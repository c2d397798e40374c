//! The worker: one SQS batch of image jobs in, a partial batch response out.

mod handler;

use imgpipe_core::aws::{DynamoTable, S3Blobs, sdk_config};
use imgpipe_core::config::WorkerConfig;
use imgpipe_core::fetch::HttpFetcher;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    imgpipe_core::logging::init();
    let config = WorkerConfig::from_env()?;
    let sdk = sdk_config().await;
    let worker = handler::Worker {
        fetcher: HttpFetcher::new(config.fetch.clone())?,
        blobs: S3Blobs::new(&sdk, &config.bucket),
        table: DynamoTable::new(&sdk, &config.table, config.item_lifetime),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        worker.handle(event.payload)
    }))
    .await
}
