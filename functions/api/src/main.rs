//! The HTTP API: upload a CSV (or reserve a presigned upload for a large one), poll its status,
//! download its output CSV.

mod answers;
mod caller;
mod list;
mod manage;
mod openapi;
mod requests;
mod routes;
mod upload;
mod upload_form;
mod uploads;

use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue, sdk_config, webhook_signing_key};
use imgpipe_core::config::{ApiConfig, sdk_operation_timeout};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    imgpipe_core::logging::init();
    let config = ApiConfig::from_env()?;
    let sdk = sdk_config(sdk_operation_timeout()?).await;
    let state = routes::AppState {
        blobs: S3Blobs::new(&sdk, &config.bucket),
        table: DynamoTable::new(&sdk, &config.table, config.item_lifetime),
        queue: SqsQueue::new(&sdk, &config.queue_url),
        signing_key: webhook_signing_key(&sdk, &config.webhook_signing_secret_id).await?,
        config,
    };
    lambda_http::run(routes::router(state)).await
}
