//! The notifier: reads the table's stream and finishes each request whose last image just
//! got its result.

mod handler;

use imgpipe_core::adapters::aws::{DynamoTable, S3Blobs, SqsQueue, sdk_config, webhook_signing_key};
use imgpipe_core::adapters::http_webhook::HttpWebhookSender;
use imgpipe_core::config::{NotifierConfig, sdk_operation_timeout};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    imgpipe_core::logging::init();
    let config = NotifierConfig::from_env()?;
    let sdk = sdk_config(sdk_operation_timeout()?).await;
    let notifier = handler::Notifier {
        table: DynamoTable::new(&sdk, &config.table, config.item_lifetime),
        blobs: S3Blobs::new(&sdk, &config.bucket),
        queue: SqsQueue::new(&sdk, &config.queue_url),
        webhooks: HttpWebhookSender::with_exempt_hosts(
            config.webhook_timeout,
            config.webhook_tries_per_delivery,
            config.webhook_exempt_hosts.clone(),
            webhook_signing_key(&sdk, &config.webhook_signing_secret_id).await?,
        )?
        .with_redelivery_base(config.webhook_redelivery_base),
        config,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| notifier.handle(event))).await
}
